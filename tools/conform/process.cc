#include "process.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/close_range.h>
#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "plugd/broker/proc_stat.h"

extern char** environ;

namespace plugd::conform {
namespace {

constexpr size_t kMaxKeptBytes = 1 << 20;  // per stream, for reports only

int PollTimeoutMs(absl::Time deadline) {
  const absl::Duration left = deadline - absl::Now();
  if (left <= absl::ZeroDuration()) return 0;
  if (left > absl::Hours(1)) return 3600 * 1000;
  return static_cast<int>(absl::ToInt64Milliseconds(left)) + 1;
}

int PidfdOpen(pid_t pid) {
  return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
}

void SignalPid(pid_t pid, int signal) {
  // Through a pidfd where possible, so a recycled pid is never signalled.
  const int fd = PidfdOpen(pid);
  if (fd < 0) return;
  ::syscall(SYS_pidfd_send_signal, fd, signal, nullptr, 0);
  ::close(fd);
}

std::string ErrnoText(int error) { return std::strerror(error); }

// command[0] as exec will find it: as given when it holds a '/', else the
// first executable match in PATH.
absl::StatusOr<std::string> ResolveExecutable(const std::string& name) {
  if (name.empty()) {
    return absl::InvalidArgumentError("the plugin command is empty");
  }
  if (absl::StrContains(name, '/')) {
    if (::access(name.c_str(), X_OK) != 0) {
      return absl::NotFoundError(
          absl::StrCat("cannot run ", name, ": ", ErrnoText(errno)));
    }
    return name;
  }
  const char* path = std::getenv("PATH");
  for (absl::string_view dir :
       absl::StrSplit(path != nullptr ? path : "/usr/bin:/bin", ':')) {
    if (dir.empty()) continue;
    std::string candidate = absl::StrCat(dir, "/", name);
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return absl::NotFoundError(
      absl::StrCat("cannot run ", name, ": not found in PATH"));
}

bool Unset(const std::vector<std::string>& patterns, absl::string_view key) {
  for (const std::string& pattern : patterns) {
    if (absl::EndsWith(pattern, "*")) {
      if (absl::StartsWith(
              key, absl::string_view(pattern).substr(0, pattern.size() - 1))) {
        return true;
      }
    } else if (key == pattern) {
      return true;
    }
  }
  return false;
}

}  // namespace

absl::StatusOr<std::unique_ptr<PluginRun>> PluginRun::Start(
    const SpawnOptions& options) {
  if (options.command.empty()) {
    return absl::InvalidArgumentError("the plugin command is empty");
  }
  absl::StatusOr<std::string> path = ResolveExecutable(options.command[0]);
  if (!path.ok()) return path.status();

  // Everything the child needs is built before fork: between fork and exec
  // only async-signal-safe calls are allowed (gRPC threads may hold locks).
  std::vector<std::string> env_strings;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    absl::string_view entry(*e);
    absl::string_view key = entry.substr(0, entry.find('='));
    if (Unset(options.unset, key) || options.env.count(std::string(key))) {
      continue;
    }
    env_strings.emplace_back(entry);
  }
  for (const auto& [key, value] : options.env) {
    env_strings.push_back(absl::StrCat(key, "=", value));
  }
  std::vector<char*> envp;
  for (std::string& s : env_strings) envp.push_back(s.data());
  envp.push_back(nullptr);
  std::vector<std::string> argv_strings = options.command;
  std::vector<char*> argv;
  for (std::string& s : argv_strings) argv.push_back(s.data());
  argv.push_back(nullptr);

  int out[2], err[2], exec_error[2];
  if (::pipe2(out, O_CLOEXEC) != 0) {
    return absl::InternalError(absl::StrCat("pipe2: ", ErrnoText(errno)));
  }
  if (::pipe2(err, O_CLOEXEC) != 0) {
    const int e = errno;
    ::close(out[0]);
    ::close(out[1]);
    return absl::InternalError(absl::StrCat("pipe2: ", ErrnoText(e)));
  }
  if (::pipe2(exec_error, O_CLOEXEC) != 0) {
    const int e = errno;
    for (int fd : {out[0], out[1], err[0], err[1]}) ::close(fd);
    return absl::InternalError(absl::StrCat("pipe2: ", ErrnoText(e)));
  }
  const int dev_null = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  const pid_t parent = ::getpid();
  const absl::Time started = absl::Now();
  const pid_t pid = ::fork();
  if (pid == 0) {
    // The child: the launch environment of docs/launcher.md.
    ::setpgid(0, 0);
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(1);
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    struct sigaction default_action = {};
    default_action.sa_handler = SIG_DFL;
    for (int sig = 1; sig < NSIG; ++sig) {
      if (sig == SIGKILL || sig == SIGSTOP) continue;
      ::sigaction(sig, &default_action, nullptr);
    }
    if (dev_null >= 0) ::dup2(dev_null, 0);
    ::dup2(out[1], 1);
    ::dup2(err[1], 2);
    ::syscall(SYS_close_range, 3U, ~0U, CLOSE_RANGE_CLOEXEC);
    ::execve(path->c_str(), argv.data(), envp.data());
    const int e = errno;
    ssize_t ignored = ::write(exec_error[1], &e, sizeof(e));
    (void)ignored;
    ::_exit(127);
  }
  const int fork_errno = errno;
  if (dev_null >= 0) ::close(dev_null);
  ::close(out[1]);
  ::close(err[1]);
  ::close(exec_error[1]);
  if (pid < 0) {
    for (int fd : {out[0], err[0], exec_error[0]}) ::close(fd);
    return absl::InternalError(absl::StrCat("fork: ", ErrnoText(fork_errno)));
  }
  ::setpgid(pid, pid);  // also here, so signals to the group never race it
  int exec_errno = 0;
  ssize_t got;
  do {
    got = ::read(exec_error[0], &exec_errno, sizeof(exec_errno));
  } while (got < 0 && errno == EINTR);
  ::close(exec_error[0]);
  if (got == static_cast<ssize_t>(sizeof(exec_errno))) {
    ::waitpid(pid, nullptr, 0);
    ::close(out[0]);
    ::close(err[0]);
    return absl::NotFoundError(
        absl::StrCat("cannot execute ", *path, ": ", ErrnoText(exec_errno)));
  }

  auto run = std::unique_ptr<PluginRun>(new PluginRun());
  run->pid_ = pid;
  run->started_ = started;
  run->out_fd_ = out[0];
  run->err_fd_ = err[0];
  run->pidfd_ = PidfdOpen(pid);
  run->wake_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (run->pidfd_ < 0 || run->wake_fd_ < 0) {
    const int e = errno;
    ::kill(-pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
    return absl::InternalError(
        absl::StrCat("pidfd_open/eventfd: ", ErrnoText(e)));
  }
  run->reader_ = std::thread([r = run.get()] { r->ReadLoop(); });
  return run;
}

PluginRun::~PluginRun() {
  bool exited;
  {
    absl::MutexLock lock(&mu_);
    exited = exit_.has_value();
  }
  if (!exited) {
    ::kill(-pid_, SIGKILL);
    SignalPid(pid_, SIGKILL);  // in case it left its group
    WaitExit(absl::Now() + absl::Seconds(5));
  }
  const uint64_t one = 1;
  ssize_t ignored = ::write(wake_fd_, &one, sizeof(one));
  (void)ignored;
  if (reader_.joinable()) reader_.join();
  {
    absl::MutexLock lock(&mu_);
    if (!exit_) ::waitpid(pid_, nullptr, WNOHANG);
  }
  for (int fd : {pidfd_, out_fd_, err_fd_, wake_fd_}) {
    if (fd >= 0) ::close(fd);
  }
}

void PluginRun::Reap() {
  int status = 0;
  const pid_t got = ::waitpid(pid_, &status, WNOHANG);
  if (got == pid_) {
    exit_ = broker::ExitStatus::FromWaitStatus(status);
    exit_time_ = absl::Now();
  } else if (got < 0 && errno == ECHILD) {
    broker::ExitStatus unknown;
    unknown.code = -1;
    exit_ = unknown;
    exit_time_ = absl::Now();
  }
  // got == 0: the readiness was a hint only; keep waiting.
}

void PluginRun::OnReadable(int fd, std::string* buffer,
                           std::vector<std::string>* lines, bool* eof) {
  char chunk[16384];
  const ssize_t n = ::read(fd, chunk, sizeof(chunk));
  if (n < 0) {
    if (errno == EINTR || errno == EAGAIN) return;
    *eof = true;
  } else if (n == 0) {
    *eof = true;
  } else {
    buffer->append(chunk, static_cast<size_t>(n));
  }
  size_t start = 0;
  for (size_t nl; (nl = buffer->find('\n', start)) != std::string::npos;
       start = nl + 1) {
    if (lines == &out_lines_ && lines->empty()) first_line_time_ = absl::Now();
    lines->push_back(buffer->substr(start, nl - start));
    // Keep memory bounded: a plugin flooding output is not the checker's
    // subject, only the first lines and the last ones matter to reports.
    if (lines->size() > 4096) lines->erase(lines->begin() + 1);
  }
  buffer->erase(0, start);
  if (buffer->size() > kMaxKeptBytes) buffer->resize(kMaxKeptBytes);
  if (*eof && !buffer->empty()) {
    lines->push_back(*buffer);
    buffer->clear();
  }
}

void PluginRun::ReadLoop() {
  for (;;) {
    pollfd fds[4];
    int count = 0;
    int out_index = -1, err_index = -1, pid_index = -1;
    {
      absl::MutexLock lock(&mu_);
      if (!out_eof_) {
        out_index = count;
        fds[count++] = {out_fd_, POLLIN, 0};
      }
      if (!err_eof_) {
        err_index = count;
        fds[count++] = {err_fd_, POLLIN, 0};
      }
      if (!exit_) {
        pid_index = count;
        fds[count++] = {pidfd_, POLLIN, 0};
      }
    }
    const int wake_index = count;
    fds[count++] = {wake_fd_, POLLIN, 0};
    const int n = ::poll(fds, count, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      return;
    }
    if (fds[wake_index].revents != 0) return;
    absl::MutexLock lock(&mu_);
    if (out_index >= 0 && fds[out_index].revents != 0) {
      OnReadable(out_fd_, &out_buffer_, &out_lines_, &out_eof_);
    }
    if (err_index >= 0 && fds[err_index].revents != 0) {
      OnReadable(err_fd_, &err_buffer_, &err_lines_, &err_eof_);
    }
    if (pid_index >= 0 && fds[pid_index].revents != 0) Reap();
  }
}

std::optional<std::string> PluginRun::WaitFirstStdoutLine(absl::Time deadline) {
  absl::MutexLock lock(&mu_);
  auto has_line_or_end = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return !out_lines_.empty() || out_eof_;
  };
  auto any = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return has_line_or_end() || exit_.has_value();
  };
  mu_.AwaitWithDeadline(absl::Condition(&any), deadline);
  // The pipe's end and the exit come in either order: give the other a
  // moment (a descendant may hold the pipe open; an exit is reaped later).
  const absl::Time moment = std::min(deadline, absl::Now() + absl::Seconds(1));
  if (exit_ && !has_line_or_end()) {
    mu_.AwaitWithDeadline(absl::Condition(&has_line_or_end), moment);
  } else if (out_lines_.empty() && out_eof_ && !exit_) {
    auto exited = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return exit_.has_value();
    };
    mu_.AwaitWithDeadline(absl::Condition(&exited), moment);
  }
  if (out_lines_.empty()) return std::nullopt;
  return out_lines_.front();
}

absl::Time PluginRun::first_line_time() {
  absl::MutexLock lock(&mu_);
  return first_line_time_;
}

std::optional<broker::ExitStatus> PluginRun::WaitExit(absl::Time deadline) {
  absl::MutexLock lock(&mu_);
  auto exited = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return exit_.has_value();
  };
  mu_.AwaitWithDeadline(absl::Condition(&exited), deadline);
  return exit_;
}

std::optional<broker::ExitStatus> PluginRun::exit_status() {
  absl::MutexLock lock(&mu_);
  return exit_;
}

absl::Time PluginRun::exit_time() {
  absl::MutexLock lock(&mu_);
  return exit_time_;
}

bool PluginRun::WaitOutputEnd(absl::Time deadline) {
  absl::MutexLock lock(&mu_);
  auto ended = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return out_eof_ && err_eof_;
  };
  return mu_.AwaitWithDeadline(absl::Condition(&ended), deadline);
}

std::vector<std::string> PluginRun::StdoutLines() {
  absl::MutexLock lock(&mu_);
  return out_lines_;
}

std::vector<std::string> PluginRun::StderrLines() {
  absl::MutexLock lock(&mu_);
  return err_lines_;
}

void PluginRun::SignalGroup(int signal) {
  {
    absl::MutexLock lock(&mu_);
    if (exit_) return;
  }
  ::kill(-pid_, signal);
}

absl::Status BecomeSubreaper() {
  if (::prctl(PR_SET_CHILD_SUBREAPER, 1) != 0) {
    return absl::InternalError(
        absl::StrCat("prctl(PR_SET_CHILD_SUBREAPER): ", ErrnoText(errno)));
  }
  return absl::OkStatus();
}

std::string ProcessInfo::ToString() const {
  return absl::StrCat("pid ", pid, " (", command, "), process group ", pgid,
                      sid == pid ? ", in a session of its own (setsid)" : "");
}

namespace {

// /proc/PID/stat: "PID (COMM) STATE PPID PGRP SESSION ...". COMM may hold
// spaces and parentheses; the fields after the last ')' do not.
bool ReadStat(pid_t pid, ProcessInfo* info, std::string* comm) {
  std::optional<std::string> read = broker::internal::ReadProcFile(pid, "stat");
  if (!read) return false;  // gone meanwhile
  const std::string& text = *read;
  const size_t open = text.find('(');
  const size_t close = text.rfind(')');
  if (open == std::string::npos || close == std::string::npos || close < open) {
    return false;
  }
  *comm = text.substr(open + 1, close - open - 1);
  std::istringstream rest(text.substr(close + 1));
  rest >> info->state >> info->ppid >> info->pgid >> info->sid;
  info->pid = pid;
  return !rest.fail();
}

std::string ReadCommand(pid_t pid, const std::string& comm) {
  std::string text =
      broker::internal::ReadProcFile(pid, "cmdline").value_or(std::string());
  for (char& c : text) {
    if (c == '\0') c = ' ';
  }
  absl::string_view trimmed = absl::StripTrailingAsciiWhitespace(text);
  if (trimmed.empty()) return comm;
  if (trimmed.size() > 120) return absl::StrCat(trimmed.substr(0, 117), "...");
  return std::string(trimmed);
}

}  // namespace

std::vector<ProcessInfo> Descendants(const std::set<pid_t>& keep) {
  const pid_t self = ::getpid();
  std::multimap<pid_t, ProcessInfo> by_parent;
  std::map<pid_t, std::string> comms;
  if (DIR* dir = ::opendir("/proc")) {
    while (dirent* entry = ::readdir(dir)) {
      pid_t pid = 0;
      if (!absl::SimpleAtoi(entry->d_name, &pid) || pid <= 0) continue;
      ProcessInfo info;
      std::string comm;
      if (!ReadStat(pid, &info, &comm)) continue;  // gone meanwhile
      comms[pid] = comm;
      by_parent.emplace(info.ppid, info);
    }
    ::closedir(dir);
  }
  std::vector<ProcessInfo> found;
  std::vector<pid_t> frontier = {self};
  while (!frontier.empty()) {
    const pid_t parent = frontier.back();
    frontier.pop_back();
    auto [begin, end] = by_parent.equal_range(parent);
    for (auto it = begin; it != end; ++it) {
      ProcessInfo info = it->second;
      frontier.push_back(info.pid);
      if (info.state == 'Z' || info.state == 'X') {
        if (parent == self && !keep.count(info.pid)) {
          ::waitpid(info.pid, nullptr, WNOHANG);  // an orphan: reap it
        }
        continue;
      }
      info.command = ReadCommand(info.pid, comms[info.pid]);
      found.push_back(info);
    }
  }
  return found;
}

namespace {

// Waits until every process in `pids` has exited (its pidfd is readable) or
// `deadline` passes.
void WaitPidsExit(const std::vector<pid_t>& pids, absl::Time deadline) {
  std::vector<pollfd> fds;
  for (pid_t pid : pids) {
    const int fd = PidfdOpen(pid);
    if (fd >= 0) fds.push_back({fd, POLLIN, 0});
  }
  size_t done = 0;
  while (done < fds.size()) {
    const int n = ::poll(fds.data(), fds.size(), PollTimeoutMs(deadline));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    for (pollfd& p : fds) {
      if (p.revents != 0 && p.fd >= 0) {
        ::close(p.fd);
        p.fd = -1;  // poll() ignores negative descriptors
        ++done;
      }
    }
  }
  for (pollfd& p : fds) {
    if (p.fd >= 0) ::close(p.fd);
  }
}

// Waits until any one process in `pids` has exited, or `deadline`.
void WaitAnyExit(const std::vector<ProcessInfo>& processes,
                 absl::Time deadline) {
  std::vector<pollfd> fds;
  for (const ProcessInfo& p : processes) {
    const int fd = PidfdOpen(p.pid);
    if (fd < 0) {  // already gone: nothing to wait for
      for (pollfd& f : fds) ::close(f.fd);
      return;
    }
    fds.push_back({fd, POLLIN, 0});
  }
  int n;
  do {
    n = ::poll(fds.data(), fds.size(), PollTimeoutMs(deadline));
  } while (n < 0 && errno == EINTR);
  for (pollfd& f : fds) ::close(f.fd);
}

}  // namespace

std::vector<ProcessInfo> WaitDescendantsGone(absl::Time deadline) {
  for (;;) {
    std::vector<ProcessInfo> alive = Descendants();
    if (alive.empty() || absl::Now() >= deadline) return alive;
    // One exit may orphan others (re-parented to us): rescan after each.
    WaitAnyExit(alive, deadline);
  }
}

std::vector<ProcessInfo> KillDescendants() {
  const absl::Time deadline = absl::Now() + absl::Seconds(5);
  for (;;) {
    std::vector<ProcessInfo> alive = Descendants();
    if (alive.empty() || absl::Now() >= deadline) return alive;
    std::vector<pid_t> pids;
    for (const ProcessInfo& p : alive) {
      SignalPid(p.pid, SIGKILL);
      pids.push_back(p.pid);
    }
    WaitPidsExit(pids, deadline);
  }
}

}  // namespace plugd::conform
