#include "soak_util.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "plugd/broker/proc_stat.h"

extern char** environ;

namespace plugd::soak {
namespace {

constexpr size_t kTailBytes = 256 * 1024;

int PollMs(absl::Time deadline) {
  absl::Duration left = deadline - absl::Now();
  if (left <= absl::ZeroDuration()) return 0;
  return static_cast<int>(absl::ToInt64Milliseconds(left)) + 1;
}

// ReadPath: a /proc file of a process that exits under the read fails with
// ESRCH, which std::filebuf would throw past an istreambuf_iterator.
std::string ReadWhole(const std::string& path) {
  return broker::internal::ReadPath(path).value_or(std::string());
}

}  // namespace

// --------------------------------------------------------------- Daemon ---

Daemon::~Daemon() {
  if (pid_ > 0 && !reaped_) {
    ::kill(pid_, SIGKILL);
    Wait(absl::Seconds(30)).IgnoreError();
  }
  if (reader_.joinable()) reader_.join();
  if (pidfd_ >= 0) ::close(pidfd_);
}

absl::Status Daemon::Start(const std::string& plugd, const std::string& config,
                           absl::Duration guard) {
  int out[2];
  if (::pipe2(out, O_CLOEXEC) != 0) {
    return absl::InternalError(
        absl::StrCat("start plugd: pipe: ", std::strerror(errno)));
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, out[1], 1);
  posix_spawn_file_actions_adddup2(&actions, out[1], 2);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  std::vector<std::string> args = {plugd, "--config", config};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  int rc = ::posix_spawn(&pid_, plugd.c_str(), &actions, nullptr, argv.data(),
                         environ);
  posix_spawn_file_actions_destroy(&actions);
  ::close(out[1]);
  if (rc != 0) {
    ::close(out[0]);
    pid_ = -1;
    return absl::FailedPreconditionError(
        absl::StrCat("start plugd: cannot run ", plugd, ": ", std::strerror(rc),
                     "; build it with `make build`"));
  }
  pidfd_ = PidfdOpen(pid_);
  reader_ = std::thread([this, fd = out[0]] { Read(fd); });
  std::unique_lock<std::mutex> lock(mu_);
  bool done = cv_.wait_for(lock, absl::ToChronoNanoseconds(guard),
                           [this] { return serving_ || eof_; });
  if (serving_) return absl::OkStatus();
  std::string tail =
      tail_.substr(tail_.size() > 4000 ? tail_.size() - 4000 : 0);
  if (!done) {
    return absl::DeadlineExceededError(
        absl::StrCat("start plugd (pid ", pid_,
                     "): not serving the admin API "
                     "after ",
                     absl::FormatDuration(guard), "; it said:\n", tail));
  }
  return absl::FailedPreconditionError(
      absl::StrCat("start plugd (pid ", pid_,
                   "): exited before serving the admin API; it said:\n", tail));
}

void Daemon::Read(int fd) {
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    std::lock_guard<std::mutex> lock(mu_);
    if (n <= 0) {
      eof_ = true;
      cv_.notify_all();
      break;
    }
    bytes_ += n;
    tail_.append(buf, static_cast<size_t>(n));
    if (tail_.size() > 2 * kTailBytes)
      tail_.erase(0, tail_.size() - kTailBytes);
    partial_.append(buf, static_cast<size_t>(n));
    size_t start = 0, nl;
    while ((nl = partial_.find('\n', start)) != std::string::npos) {
      absl::string_view line(partial_.data() + start, nl - start);
      if (!serving_ && absl::StrContains(line, "serving the admin API")) {
        serving_ = true;
        cv_.notify_all();
      }
      for (const auto& needle : needles_) {
        if (absl::StrContains(line, needle)) {
          ++counted_;
          break;
        }
      }
      start = nl + 1;
    }
    partial_.erase(0, start);
    if (partial_.size() > 1 << 20) partial_.clear();  // a runaway line
  }
  ::close(fd);
}

bool Daemon::Running() const {
  if (pid_ <= 0 || reaped_) return false;
  pollfd p{pidfd_, POLLIN, 0};
  return ::poll(&p, 1, 0) == 0;
}

absl::Status Daemon::Kill(int sig) {
  if (pid_ <= 0 || reaped_) {
    return absl::FailedPreconditionError("kill plugd: not running");
  }
  if (::kill(pid_, sig) != 0) {
    return absl::InternalError(
        absl::StrCat("kill plugd (pid ", pid_, "): ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

absl::StatusOr<int> Daemon::Wait(absl::Duration guard) {
  if (pid_ <= 0 || reaped_) {
    return absl::FailedPreconditionError("wait for plugd: not running");
  }
  pollfd p{pidfd_, POLLIN, 0};
  int n;
  do {
    n = ::poll(&p, 1, static_cast<int>(absl::ToInt64Milliseconds(guard)));
  } while (n < 0 && errno == EINTR);
  if (n == 0) {
    return absl::DeadlineExceededError(
        absl::StrCat("plugd (pid ", pid_, ") still running after ",
                     absl::FormatDuration(guard)));
  }
  int status = 0;
  ::waitpid(pid_, &status, 0);
  reaped_ = true;
  if (reader_.joinable()) reader_.join();
  return status;
}

std::string Daemon::Tail() const {
  std::lock_guard<std::mutex> lock(mu_);
  return tail_.size() > kTailBytes ? tail_.substr(tail_.size() - kTailBytes)
                                   : tail_;
}

int64_t Daemon::CountedLines() const {
  std::lock_guard<std::mutex> lock(mu_);
  return counted_;
}

int64_t Daemon::OutputBytes() const {
  std::lock_guard<std::mutex> lock(mu_);
  return bytes_;
}

// ------------------------------------------------------------ EventFeed ---

std::shared_ptr<grpc::Channel> AdminChannel(const std::string& address) {
  return grpc::CreateChannel(address, grpc::InsecureChannelCredentials());
}

EventFeed::EventFeed(std::shared_ptr<grpc::Channel> admin, uint32_t history) {
  reader_ = std::thread([this, admin, history] {
    auto stub = v1::Broker::NewStub(admin);
    v1::WatchEventsRequest request;
    request.set_follow(true);
    request.set_history(history);
    context_.set_wait_for_ready(true);
    auto reader = stub->WatchEvents(&context_, request);
    v1::Event event;
    while (reader->Read(&event)) {
      std::lock_guard<std::mutex> lock(mu_);
      queue_.push_back(event);
      cv_.notify_all();
    }
    grpc::Status status = reader->Finish();
    std::lock_guard<std::mutex> lock(mu_);
    ended_ = true;
    status_ = status;
    cv_.notify_all();
  });
}

EventFeed::~EventFeed() {
  context_.TryCancel();
  if (reader_.joinable()) reader_.join();
}

std::optional<v1::Event> EventFeed::Next(absl::Time deadline) {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait_until(lock, absl::ToChronoTime(deadline),
                 [this] { return !queue_.empty() || ended_; });
  if (queue_.empty()) return std::nullopt;
  v1::Event event = std::move(queue_.front());
  queue_.pop_front();
  return event;
}

bool EventFeed::ended() const {
  std::lock_guard<std::mutex> lock(mu_);
  return ended_ && queue_.empty();
}

grpc::Status EventFeed::status() const {
  std::lock_guard<std::mutex> lock(mu_);
  return status_;
}

// ----------------------------------------------------------------- /proc ---

std::vector<ProcInfo> ScanProc() {
  std::vector<ProcInfo> out;
  DIR* proc = ::opendir("/proc");
  if (proc == nullptr) return out;
  while (dirent* entry = ::readdir(proc)) {
    int pid = 0;
    if (!absl::SimpleAtoi(entry->d_name, &pid)) continue;
    std::string text = ReadWhole(absl::StrCat("/proc/", pid, "/stat"));
    size_t close = text.rfind(')');
    if (close == std::string::npos || close + 2 >= text.size()) continue;
    ProcInfo info;
    info.pid = pid;
    int ppid = 0, pgrp = 0;
    if (std::sscanf(text.c_str() + close + 2, "%c %d %d", &info.state, &ppid,
                    &pgrp) != 3) {
      continue;
    }
    size_t open = text.find('(');
    if (open != std::string::npos && open < close) {
      info.comm = text.substr(open + 1, close - open - 1);
    }
    info.ppid = ppid;
    info.pgrp = pgrp;
    info.cmdline = ReadWhole(absl::StrCat("/proc/", pid, "/cmdline"));
    std::replace(info.cmdline.begin(), info.cmdline.end(), '\0', ' ');
    out.push_back(std::move(info));
  }
  ::closedir(proc);
  return out;
}

std::vector<ProcInfo> Descendants(const std::vector<ProcInfo>& all,
                                  pid_t root) {
  std::map<pid_t, pid_t> parent;
  for (const auto& p : all) parent[p.pid] = p.ppid;
  std::vector<ProcInfo> out;
  for (const auto& p : all) {
    if (p.pid == root || p.state == 'Z' || p.state == 'X') continue;
    pid_t up = p.ppid;
    for (int depth = 0; up > 1 && depth < 64; ++depth) {
      if (up == root) {
        out.push_back(p);
        break;
      }
      auto it = parent.find(up);
      if (it == parent.end()) break;
      up = it->second;
    }
  }
  return out;
}

int FdCount(pid_t pid) {
  DIR* dir = ::opendir(absl::StrCat("/proc/", pid, "/fd").c_str());
  if (dir == nullptr) return -1;
  int n = 0;
  while (dirent* entry = ::readdir(dir)) {
    if (entry->d_name[0] != '.') ++n;
  }
  ::closedir(dir);
  return n;
}

int64_t RssKb(pid_t pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(in, line)) {
    if (absl::StartsWith(line, "VmRSS:")) {
      std::string v(absl::StripAsciiWhitespace(line.substr(6)));
      int64_t kb = -1;
      absl::SimpleAtoi(absl::StripSuffix(v, " kB"), &kb);
      return kb;
    }
  }
  return -1;
}

namespace {

// utime + stime of a /proc/.../stat file, and its comm.
absl::Duration StatCpu(const std::string& path, std::string* comm) {
  std::string text = ReadWhole(path);
  size_t open = text.find('(');
  size_t close = text.rfind(')');
  if (open == std::string::npos || close == std::string::npos ||
      close + 2 >= text.size()) {
    return absl::ZeroDuration();
  }
  if (comm != nullptr) *comm = text.substr(open + 1, close - open - 1);
  // Fields after ")": state(3) ppid pgrp session tty tpgid flags minflt
  // cminflt majflt cmajflt utime(14) stime(15).
  std::vector<std::string> f;
  size_t pos = close + 2;
  while (pos < text.size() && f.size() < 13) {
    size_t sp = text.find(' ', pos);
    if (sp == std::string::npos) sp = text.size();
    f.push_back(text.substr(pos, sp - pos));
    pos = sp + 1;
  }
  int64_t utime = 0, stime = 0;
  if (f.size() < 13 || !absl::SimpleAtoi(f[11], &utime) ||
      !absl::SimpleAtoi(f[12], &stime)) {
    return absl::ZeroDuration();
  }
  static const int64_t kTicks = ::sysconf(_SC_CLK_TCK);
  return absl::Milliseconds((utime + stime) * 1000 / kTicks);
}

}  // namespace

CpuUse ReadCpu(pid_t pid) {
  CpuUse use;
  use.process = StatCpu(absl::StrCat("/proc/", pid, "/stat"), nullptr);
  DIR* dir = ::opendir(absl::StrCat("/proc/", pid, "/task").c_str());
  if (dir == nullptr) return use;
  while (dirent* entry = ::readdir(dir)) {
    if (entry->d_name[0] == '.') continue;
    std::string comm;
    absl::Duration t = StatCpu(
        absl::StrCat("/proc/", pid, "/task/", entry->d_name, "/stat"), &comm);
    if (t > use.busiest_thread) {
      use.busiest_thread = t;
      use.busiest_name = absl::StrCat(comm, " (tid ", entry->d_name, ")");
    }
  }
  ::closedir(dir);
  return use;
}

std::string CpuText(const CpuUse& before, const CpuUse& after,
                    absl::Duration wall) {
  const absl::Duration used = after.process - before.process;
  return absl::StrFormat(
      "%.1f s of %.0f s wall (%.0f%% of one core); busiest thread %s: %.1f s "
      "in all",
      absl::ToDoubleSeconds(used), absl::ToDoubleSeconds(wall),
      100 * absl::ToDoubleSeconds(used) /
          std::max(0.001, absl::ToDoubleSeconds(wall)),
      after.busiest_name, absl::ToDoubleSeconds(after.busiest_thread));
}

bool Alive(pid_t pid) {
  std::string text = ReadWhole(absl::StrCat("/proc/", pid, "/stat"));
  size_t close = text.rfind(')');
  if (close == std::string::npos || close + 2 >= text.size()) return false;
  char state = text[close + 2];
  return state != 'Z' && state != 'X';
}

int ReapZombies() {
  int n = 0;
  while (::waitpid(-1, nullptr, WNOHANG) > 0) ++n;
  return n;
}

int PidfdOpen(pid_t pid) {
  return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
}

std::vector<size_t> WaitPidfds(const std::vector<int>& fds,
                               absl::Duration guard) {
  absl::Time deadline = absl::Now() + guard;
  std::vector<size_t> pending;
  for (size_t i = 0; i < fds.size(); ++i) {
    if (fds[i] >= 0) pending.push_back(i);  // -1: it was gone already
  }
  while (!pending.empty()) {
    std::vector<pollfd> polls;
    for (size_t i : pending) polls.push_back(pollfd{fds[i], POLLIN, 0});
    int n = ::poll(polls.data(), polls.size(), PollMs(deadline));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;  // the hang guard passed
    std::vector<size_t> still;
    for (size_t k = 0; k < polls.size(); ++k) {
      if (polls[k].revents == 0) still.push_back(pending[k]);
    }
    pending = std::move(still);
  }
  return pending;
}

std::string Millis(absl::Duration d) {
  return absl::StrFormat("%.1f ms", absl::ToDoubleMilliseconds(d));
}

TempDir::TempDir() {
  char tmpl[] = "/tmp/soak-XXXXXX";
  if (::mkdtemp(tmpl) != nullptr) path_ = tmpl;
}

TempDir::~TempDir() {
  if (path_.empty()) return;
  std::error_code ignored;
  std::filesystem::remove_all(path_, ignored);
}

}  // namespace plugd::soak
