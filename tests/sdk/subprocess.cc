#include "subprocess.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>

#include "absl/strings/str_cat.h"

namespace plugd::testing {
namespace {

int PollTimeoutMs(absl::Time deadline) {
  const absl::Duration left = deadline - absl::Now();
  if (left <= absl::ZeroDuration()) return 0;
  return static_cast<int>(absl::ToInt64Milliseconds(left)) + 1;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Subprocess>> Subprocess::Start(
    const std::string& path, const std::vector<std::string>& args,
    const std::map<std::string, std::string>& env) {
  int out[2], err[2];
  if (pipe2(out, O_CLOEXEC) != 0 || pipe2(err, O_CLOEXEC) != 0) {
    return absl::InternalError(absl::StrCat("pipe2: ", std::strerror(errno)));
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, out[1], 1);
  posix_spawn_file_actions_adddup2(&actions, err[1], 2);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  // Default signal dispositions in the child, whatever the test runner set.
  sigset_t all;
  sigfillset(&all);
  posix_spawnattr_setsigdefault(&attr, &all);
  sigset_t none;
  sigemptyset(&none);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setflags(&attr,
                           POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);

  std::vector<std::string> argv_strings = {path};
  argv_strings.insert(argv_strings.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (std::string& s : argv_strings) argv.push_back(s.data());
  argv.push_back(nullptr);
  std::vector<std::string> env_strings;
  for (const auto& [key, value] : env) {
    env_strings.push_back(absl::StrCat(key, "=", value));
  }
  std::vector<char*> envp;
  for (std::string& s : env_strings) envp.push_back(s.data());
  envp.push_back(nullptr);

  pid_t pid = -1;
  const int rc = posix_spawn(&pid, path.c_str(), &actions, &attr, argv.data(),
                             envp.data());
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  close(out[1]);
  close(err[1]);
  if (rc != 0) {
    close(out[0]);
    close(err[0]);
    return absl::InternalError(
        absl::StrCat("posix_spawn ", path, ": ", std::strerror(rc)));
  }
  auto child = std::unique_ptr<Subprocess>(new Subprocess());
  child->pid_ = pid;
  child->pidfd_ = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
  if (child->pidfd_ < 0) {
    return absl::InternalError(
        absl::StrCat("pidfd_open: ", std::strerror(errno)));
  }
  child->reader_ = std::thread(
      [c = child.get(), o = out[0], e = err[0]] { c->ReadLoop(o, e); });
  return child;
}

Subprocess::~Subprocess() {
  if (!exit_code_.has_value()) {
    kill(pid_, SIGKILL);
    WaitExit(absl::Seconds(30));
  }
  if (reader_.joinable()) reader_.join();
  if (pidfd_ >= 0) close(pidfd_);
}

void Subprocess::ReadLoop(int out_fd, int err_fd) {
  pollfd fds[2] = {{out_fd, POLLIN, 0}, {err_fd, POLLIN, 0}};
  int open_fds = 2;
  char buffer[4096];
  while (open_fds > 0) {
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || fds[i].revents == 0) continue;
      const ssize_t n = read(fds[i].fd, buffer, sizeof(buffer));
      if (n < 0 && errno == EINTR) continue;
      absl::MutexLock lock(&mu_);
      if (n <= 0) {
        close(fds[i].fd);
        fds[i].fd = -1;
        --open_fds;
        (i == 0 ? stdout_eof_ : stderr_eof_) = true;
      } else {
        (i == 0 ? stdout_ : stderr_).append(buffer, static_cast<size_t>(n));
      }
    }
  }
  absl::MutexLock lock(&mu_);
  stdout_eof_ = stderr_eof_ = true;
}

absl::StatusOr<std::string> Subprocess::ReadStdoutLine(absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return stdout_.find('\n') != std::string::npos || stdout_eof_;
  };
  mu_.AwaitWithTimeout(absl::Condition(&ready), timeout);
  const size_t newline = stdout_.find('\n');
  if (newline == std::string::npos) {
    if (stdout_eof_) {
      return absl::FailedPreconditionError(
          absl::StrCat("stdout closed before a full line; stderr: ", stderr_));
    }
    return absl::DeadlineExceededError(
        absl::StrCat("no line on stdout; stderr: ", stderr_));
  }
  std::string line = stdout_.substr(0, newline);
  stdout_.erase(0, newline + 1);
  return line;
}

std::optional<int> Subprocess::WaitExit(absl::Duration timeout) {
  if (exit_code_.has_value()) return exit_code_;
  const absl::Time deadline = absl::Now() + timeout;
  pollfd pfd = {pidfd_, POLLIN, 0};
  while (true) {
    const int n = poll(&pfd, 1, PollTimeoutMs(deadline));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return std::nullopt;
    break;
  }
  int status = 0;
  while (waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
  }
  exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  // The output is complete once both pipes reached end of file.
  absl::MutexLock lock(&mu_);
  auto drained = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return stdout_eof_ && stderr_eof_;
  };
  mu_.AwaitWithDeadline(absl::Condition(&drained),
                        std::max(deadline, absl::Now() + absl::Seconds(5)));
  return exit_code_;
}

void Subprocess::Signal(int signo) {
  if (!exit_code_.has_value()) kill(pid_, signo);
}

std::string Subprocess::Stderr() {
  absl::MutexLock lock(&mu_);
  return stderr_;
}

}  // namespace plugd::testing
