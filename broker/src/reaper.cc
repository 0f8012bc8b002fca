#include "plugd/broker/reaper.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <set>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "plugd/common/log.h"

namespace plugd::broker {
namespace {

// The reaper's whole life. Runs in the forked child only.
[[noreturn]] void ReaperMain(int fd) {
  prctl(PR_SET_NAME, "plugd-reaper", 0, 0, 0);
  // Out of the broker's process group, so a terminal's Ctrl-C (aimed at the
  // broker's group) does not take the reaper down first.
  setpgid(0, 0);
  for (int sig :
       {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGPIPE, SIGUSR1, SIGUSR2}) {
    signal(sig, SIG_IGN);
  }
  // Nothing but the pipe stays open: no inherited sockets or files.
  const int max_fd = static_cast<int>(sysconf(_SC_OPEN_MAX));
  for (int i = 0; i < max_fd && i < 65536; ++i) {
    if (i != fd) close(i);
  }
  int devnull = open("/dev/null", O_RDWR);
  if (devnull >= 0) {
    dup2(devnull, 0);
    dup2(devnull, 1);
    dup2(devnull, 2);
    if (devnull > 2) close(devnull);
  }
  std::set<pid_t> groups;
  std::string pending;
  char buf[4096];
  for (;;) {
    ssize_t n = read(fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;  // EOF: the broker is gone
    pending.append(buf, static_cast<size_t>(n));
    size_t nl;
    while ((nl = pending.find('\n')) != std::string::npos) {
      std::string line = pending.substr(0, nl);
      pending.erase(0, nl + 1);
      int pgid = 0;
      if (line.size() < 2 || !absl::SimpleAtoi(line.substr(1), &pgid) ||
          pgid <= 1) {
        continue;
      }
      if (line[0] == '+') groups.insert(pgid);
      if (line[0] == '-') groups.erase(pgid);
    }
  }
  for (pid_t pgid : groups) kill(-pgid, SIGKILL);
  _exit(0);
}

}  // namespace

absl::StatusOr<std::unique_ptr<Reaper>> Reaper::Start() {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) {
    return absl::ErrnoToStatus(errno, "reaper: cannot create a pipe");
  }
  pid_t pid = fork();
  if (pid < 0) {
    int err = errno;
    close(fds[0]);
    close(fds[1]);
    return absl::ErrnoToStatus(err, "reaper: cannot fork");
  }
  if (pid == 0) {
    close(fds[1]);
    ReaperMain(fds[0]);
  }
  close(fds[0]);
  // A dead reaper must not kill the broker with SIGPIPE; writes then fail
  // with EPIPE, which Send() logs.
  signal(SIGPIPE, SIG_IGN);
  return std::unique_ptr<Reaper>(new Reaper(pid, fds[1]));
}

Reaper::~Reaper() {
  close(fd_);
  // The reaper exits at EOF; collect it so it is not left a zombie.
  while (waitpid(pid_, nullptr, 0) < 0 && errno == EINTR) {
  }
}

void Reaper::Track(pid_t pgid) { Send('+', pgid); }
void Reaper::Untrack(pid_t pgid) { Send('-', pgid); }

void Reaper::Send(char op, pid_t pgid) {
  std::string line = absl::StrCat(std::string(1, op), pgid, "\n");
  // Lines are far below PIPE_BUF, so each write is atomic.
  ssize_t n;
  do {
    n = write(fd_, line.data(), line.size());
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    PLUGD_LOG(ERROR) << "reaper (pid " << pid_ << ") is gone ("
                     << std::strerror(errno)
                     << "); plugins' children may outlive a crash of plugd";
  }
}

}  // namespace plugd::broker
