#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "plugd/broker/proc_stat.h"
#include "plugd/broker/spawn.h"

extern char** environ;

namespace plugd::bench {

std::string BinDir() {
  char buffer[4096];
  ssize_t n = readlink("/proc/self/exe", buffer, sizeof(buffer) - 1);
  if (n <= 0) return "build/bin";
  std::string path(buffer, static_cast<size_t>(n));
  return path.substr(0, path.find_last_of('/'));
}

std::string Bin(const std::string& name) { return BinDir() + "/" + name; }

bool IsExecutable(const std::string& path) {
  return access(path.c_str(), X_OK) == 0;
}

TempDir::TempDir() {
  char tmpl[] = "/tmp/pbXXXXXX";
  if (mkdtemp(tmpl) == nullptr) {
    std::perror("plugd-bench: mkdtemp");
    std::abort();
  }
  path_ = tmpl;
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

bool WaitReadable(int fd, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  for (;;) {
    const int64_t ms =
        std::max<int64_t>(0, absl::ToInt64Milliseconds(deadline - absl::Now()));
    pollfd p{fd, POLLIN, 0};
    int n = poll(&p, 1, static_cast<int>(std::min<int64_t>(ms, 1 << 30)));
    if (n > 0) return true;
    if (n == 0) return false;
    if (errno != EINTR) return false;
  }
}

absl::StatusOr<std::unique_ptr<Child>> Child::Start(
    const std::vector<std::string>& argv,
    const std::map<std::string, std::string>& env,
    const std::string& stderr_file, const std::vector<std::string>& unset_env) {
  if (argv.empty()) return absl::InvalidArgumentError("empty command");
  // Everything the child needs is built before the clone: only
  // async-signal-safe calls between it and exec.
  std::vector<std::string> env_strings;
  for (char** e = environ; *e != nullptr; ++e) {
    std::string entry = *e;
    std::string name = entry.substr(0, entry.find('='));
    if (env.count(name) || std::find(unset_env.begin(), unset_env.end(),
                                     name) != unset_env.end()) {
      continue;
    }
    env_strings.push_back(std::move(entry));
  }
  for (const auto& [k, v] : env) env_strings.push_back(k + "=" + v);
  std::vector<char*> envp;
  for (auto& s : env_strings) envp.push_back(s.data());
  envp.push_back(nullptr);
  std::vector<std::string> args = argv;
  std::vector<char*> argvp;
  for (auto& s : args) argvp.push_back(s.data());
  argvp.push_back(nullptr);

  int out[2];
  if (pipe2(out, O_CLOEXEC) != 0) {
    return absl::InternalError(absl::StrCat("pipe2: ", std::strerror(errno)));
  }
  int err_fd = -1;
  if (!stderr_file.empty()) {
    err_fd = open(stderr_file.c_str(),
                  O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  }
  // Started the way the launcher starts plugins (clone with CLONE_VFORK,
  // plugd/broker/spawn.h), so that the floor and the bare servers pay for a
  // spawn what plugd pays.
  struct ChildArgs {
    pid_t parent;
    int out_fd;
    int err_fd;
    char* const* argv;
    char* const* envp;
  } child_args{getpid(), out[1], err_fd, argvp.data(), envp.data()};
  const pid_t pid = broker::internal::CloneVfork(
      [](void* p) -> int {
        const auto* a = static_cast<const ChildArgs*>(p);
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != a->parent) _exit(127);
        dup2(a->out_fd, 1);
        if (a->err_fd >= 0) dup2(a->err_fd, 2);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, nullptr);
        execve(a->argv[0], a->argv, a->envp);
        const char msg[] = "plugd-bench: exec failed\n";
        broker::internal::ChildWrite(2, msg, sizeof(msg) - 1);
        _exit(127);
      },
      &child_args);
  if (pid < 0) {
    const int err = errno;
    close(out[0]);
    close(out[1]);
    if (err_fd >= 0) close(err_fd);
    return absl::InternalError(absl::StrCat("clone: ", std::strerror(err)));
  }
  close(out[1]);
  if (err_fd >= 0) close(err_fd);
  std::unique_ptr<Child> child(new Child());
  child->pid_ = pid;
  child->out_fd_ = out[0];
  child->pidfd_ = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
  return child;
}

Child::~Child() {
  if (!reaped_ && pid_ > 0) {
    kill(pid_, SIGKILL);
    int status;
    waitpid(pid_, &status, 0);
  }
  if (out_fd_ >= 0) close(out_fd_);
  if (pidfd_ >= 0) close(pidfd_);
}

absl::StatusOr<std::string> Child::ReadLine(absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  for (;;) {
    size_t nl = buffer_.find('\n');
    if (nl != std::string::npos) {
      std::string line = buffer_.substr(0, nl);
      buffer_.erase(0, nl + 1);
      return line;
    }
    if (!WaitReadable(out_fd_, deadline - absl::Now())) {
      return absl::DeadlineExceededError(
          absl::StrCat("no line from pid ", pid_, " within ",
                       absl::FormatDuration(timeout)));
    }
    char chunk[4096];
    ssize_t n = read(out_fd_, chunk, sizeof(chunk));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      return absl::NotFoundError(
          absl::StrCat("pid ", pid_, " closed its stdout"));
    }
    buffer_.append(chunk, static_cast<size_t>(n));
  }
}

std::string Child::ReadAll(absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  for (;;) {
    if (!WaitReadable(out_fd_, deadline - absl::Now())) break;
    char chunk[4096];
    ssize_t n = read(out_fd_, chunk, sizeof(chunk));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    buffer_.append(chunk, static_cast<size_t>(n));
  }
  std::string all = std::move(buffer_);
  buffer_.clear();
  return all;
}

std::optional<int> Child::Wait(absl::Duration timeout) {
  if (reaped_) return std::nullopt;
  if (pidfd_ >= 0 && !WaitReadable(pidfd_, timeout)) return std::nullopt;
  int status = 0;
  if (waitpid(pid_, &status, 0) != pid_) return std::nullopt;
  reaped_ = true;
  return status;
}

int Child::Stop(int signo, absl::Duration timeout) {
  if (reaped_) return 0;
  kill(pid_, signo);
  if (std::optional<int> status = Wait(timeout)) return *status;
  kill(pid_, SIGKILL);
  return Wait(absl::Seconds(30)).value_or(-1);
}

void Samples::Append(const Samples& other) {
  values_.insert(values_.end(), other.values_.begin(), other.values_.end());
  sorted_ = false;
}

double Samples::Percentile(double p) const {
  if (values_.empty()) return 0;
  if (!sorted_) {
    std::sort(values_.begin(), values_.end());
    sorted_ = true;
  }
  size_t rank = static_cast<size_t>(
      std::ceil(p / 100.0 * static_cast<double>(values_.size())));
  rank = std::clamp<size_t>(rank, 1, values_.size());
  return values_[rank - 1];
}

double Samples::Max() const {
  return values_.empty() ? 0
                         : *std::max_element(values_.begin(), values_.end());
}

double Samples::Mean() const {
  if (values_.empty()) return 0;
  return std::accumulate(values_.begin(), values_.end(), 0.0) /
         static_cast<double>(values_.size());
}

absl::StatusOr<ProcUsage> ReadProcUsage(pid_t pid) {
  ProcUsage usage;
  const std::string base = absl::StrCat("/proc/", pid);
  {
    // read(2): a process exiting under an ifstream read would throw.
    std::string text =
        broker::internal::ReadProcFile(pid, "stat").value_or(std::string());
    size_t close = text.rfind(')');
    if (close == std::string::npos) {
      return absl::NotFoundError(absl::StrCat("no process ", pid));
    }
    std::vector<std::string> fields =
        absl::StrSplit(text.substr(close + 2), ' ');
    // Fields after ")": state is [0]; utime is field 14 of stat, i.e. [11].
    int64_t utime = 0, stime = 0;
    if (fields.size() > 12 && absl::SimpleAtoi(fields[11], &utime) &&
        absl::SimpleAtoi(fields[12], &stime)) {
      usage.cpu_seconds = static_cast<double>(utime + stime) /
                          static_cast<double>(sysconf(_SC_CLK_TCK));
    }
  }
  {
    std::ifstream status(base + "/status");
    std::string line;
    while (std::getline(status, line)) {
      if (absl::StartsWith(line, "VmRSS:")) {
        std::vector<std::string> parts =
            absl::StrSplit(line, ' ', absl::SkipEmpty());
        if (parts.size() >= 2) absl::SimpleAtoi(parts[1], &usage.rss_kib);
      }
    }
  }
  std::error_code ec;
  for (const auto& task :
       std::filesystem::directory_iterator(base + "/task", ec)) {
    std::ifstream status(task.path() / "status");
    std::string line;
    ++usage.threads;
    while (std::getline(status, line)) {
      if (absl::StartsWith(line, "voluntary_ctxt_switches:") ||
          absl::StartsWith(line, "nonvoluntary_ctxt_switches:")) {
        int64_t n = 0;
        if (absl::SimpleAtoi(
                absl::StripAsciiWhitespace(line.substr(line.find(':') + 1)),
                &n)) {
          usage.context_switches += n;
        }
      }
    }
  }
  return usage;
}

std::optional<int64_t> ReadPssKib(pid_t pid) {
  const std::optional<std::string> rollup =
      broker::internal::ReadProcFile(pid, "smaps_rollup");
  if (!rollup) return std::nullopt;
  for (absl::string_view line : absl::StrSplit(*rollup, '\n')) {
    if (absl::ConsumePrefix(&line, "Pss:")) {
      absl::ConsumeSuffix(&line, "kB");
      int64_t kib = 0;
      if (absl::SimpleAtoi(absl::StripAsciiWhitespace(line), &kib)) return kib;
      return std::nullopt;
    }
  }
  return std::nullopt;
}

// Two counts side by side by nature; the header names which is which.
// NOLINTNEXTLINE(bugprone-easily-swappable-parameters)
void RotatingRounds(int rounds, int n, const std::function<bool(int)>& run) {
  for (int r = 0; r < rounds; ++r) {
    for (int k = 0; k < n; ++k) {
      if (!run((k + r) % n)) return;
    }
  }
}

std::string Payload(size_t bytes) {
  std::string payload(bytes, 'x');
  for (size_t i = 0; i < bytes; ++i)
    payload[i] = static_cast<char>('a' + i % 26);
  return payload;
}

std::string SizeName(size_t bytes) {
  if (bytes >= (1 << 20) && bytes % (1 << 20) == 0) {
    return absl::StrCat(bytes >> 20, " MiB");
  }
  if (bytes >= 1024 && bytes % 1024 == 0)
    return absl::StrCat(bytes >> 10, " KiB");
  return absl::StrCat(bytes, " B");
}

}  // namespace plugd::bench
