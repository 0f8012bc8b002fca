#include "child.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "absl/time/clock.h"

namespace plugd::plugctl::testing {
namespace {

[[noreturn]] void Die(const char* what) {
  std::fprintf(stderr, "child.cc: %s: %s\n", what, std::strerror(errno));
  std::abort();
}

}  // namespace

std::unique_ptr<Child> Child::Spawn(const std::string& path,
                                    const std::vector<std::string>& args,
                                    const std::vector<std::string>& env) {
  int out[2], err[2];
  if (pipe2(out, O_CLOEXEC) != 0 || pipe2(err, O_CLOEXEC) != 0) Die("pipe2");
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, out[1], 1);
  posix_spawn_file_actions_adddup2(&actions, err[1], 2);
  // The child starts with default signal dispositions and an empty mask,
  // whatever the test runner set.
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t all, none;
  sigfillset(&all);
  sigemptyset(&none);
  posix_spawnattr_setsigdefault(&attr, &all);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setflags(&attr,
                           POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);

  std::vector<char*> argv = {const_cast<char*>(path.c_str())};
  for (const std::string& a : args)
    argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  std::vector<char*> envp;
  for (const std::string& e : env) envp.push_back(const_cast<char*>(e.c_str()));
  envp.push_back(nullptr);

  std::unique_ptr<Child> child(new Child());
  int rc = posix_spawn(&child->pid_, path.c_str(), &actions, &attr, argv.data(),
                       envp.data());
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  close(out[1]);
  close(err[1]);
  if (rc != 0) {
    errno = rc;
    Die("posix_spawn");
  }
  child->out_fd_ = out[0];
  child->err_fd_ = err[0];
  child->pidfd_ = static_cast<int>(syscall(SYS_pidfd_open, child->pid_, 0));
  if (child->pidfd_ < 0) Die("pidfd_open");
  return child;
}

Child::~Child() {
  if (!exited_) Kill();
  for (int fd : {out_fd_, err_fd_, pidfd_}) {
    if (fd >= 0) close(fd);
  }
}

void Child::Kill() {
  if (exited_ || pid_ <= 0) return;
  kill(pid_, SIGKILL);
  int status;
  while (waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
  }
  exited_ = true;
  exit_code_ = 128 + SIGKILL;
}

void Child::Signal(int signo) {
  if (!exited_) kill(pid_, signo);
}

bool Child::PollOnce(absl::Time deadline) {
  pollfd fds[3];
  int n = 0;
  if (out_fd_ >= 0) fds[n++] = {out_fd_, POLLIN, 0};
  if (err_fd_ >= 0) fds[n++] = {err_fd_, POLLIN, 0};
  if (!exited_) fds[n++] = {pidfd_, POLLIN, 0};
  if (n == 0) return true;
  const absl::Duration left = deadline - absl::Now();
  if (left <= absl::ZeroDuration()) return false;
  int ready =
      poll(fds, n, static_cast<int>(absl::ToInt64Milliseconds(left)) + 1);
  if (ready < 0) {
    if (errno == EINTR) return true;
    Die("poll");
  }
  if (ready == 0) return absl::Now() < deadline;
  for (int i = 0; i < n; ++i) {
    if (fds[i].revents == 0) continue;
    if (fds[i].fd == pidfd_) {
      int status;
      if (waitpid(pid_, &status, 0) == pid_) {
        exited_ = true;
        exit_code_ =
            WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      }
      continue;
    }
    char buf[4096];
    ssize_t got = read(fds[i].fd, buf, sizeof(buf));
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) {
      close(fds[i].fd);
      (fds[i].fd == out_fd_ ? out_fd_ : err_fd_) = -1;
      continue;
    }
    (fds[i].fd == out_fd_ ? out_ : err_).append(buf, got);
  }
  return true;
}

std::optional<std::string> Child::ReadLine(absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  for (;;) {
    size_t nl = out_.find('\n');
    if (nl != std::string::npos) {
      std::string line = out_.substr(0, nl);
      out_.erase(0, nl + 1);
      return line;
    }
    if (out_fd_ < 0) return std::nullopt;
    if (!PollOnce(deadline)) return std::nullopt;
  }
}

std::optional<Child::Result> Child::Wait(absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (out_fd_ >= 0 || err_fd_ >= 0 || !exited_) {
    if (!PollOnce(deadline)) {
      Kill();
      return std::nullopt;
    }
  }
  return Result{exit_code_, out_, err_};
}

}  // namespace plugd::plugctl::testing
