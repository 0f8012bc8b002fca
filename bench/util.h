// Helpers of the benchmark driver (plugd-bench): paths, child processes,
// timing and statistics. Not a library for anything else.
#ifndef PLUGD_BENCH_UTIL_H_
#define PLUGD_BENCH_UTIL_H_

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace plugd::bench {

// The directory holding plugd-bench, i.e. build/bin.
std::string BinDir();
std::string Bin(const std::string& name);
bool IsExecutable(const std::string& path);

// A private temp directory with a short path (Unix socket paths are limited
// to 108 bytes), removed with its contents when destroyed.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string File(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// Monotonic time in nanoseconds.
inline int64_t NowNanos() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// A child process with its stdout on a pipe (stderr to `stderr_file`, or
// inherited when empty). Killed (SIGKILL) and reaped on destruction unless
// it was waited for.
class Child {
 public:
  static absl::StatusOr<std::unique_ptr<Child>> Start(
      const std::vector<std::string>& argv,
      const std::map<std::string, std::string>& env = {},
      const std::string& stderr_file = "",
      const std::vector<std::string>& unset_env = {});
  ~Child();
  pid_t pid() const { return pid_; }
  // One line of stdout, without "\n"; NOT_FOUND at EOF, DEADLINE_EXCEEDED
  // after `timeout` (a hang guard).
  absl::StatusOr<std::string> ReadLine(absl::Duration timeout);
  // Everything left on stdout until EOF (bounded by `timeout`).
  std::string ReadAll(absl::Duration timeout);
  // Sends `signo`, then waits (pidfd) up to `timeout`; SIGKILL after that.
  // Returns the wait status.
  int Stop(int signo, absl::Duration timeout);
  // Waits for the exit up to `timeout`; the wait status, or nullopt.
  std::optional<int> Wait(absl::Duration timeout);

 private:
  Child() = default;
  pid_t pid_ = -1;
  int out_fd_ = -1;
  int pidfd_ = -1;
  bool reaped_ = false;
  std::string buffer_;
};

// Waits until `fd` is readable, up to `timeout`; false on timeout.
bool WaitReadable(int fd, absl::Duration timeout);

// Samples (any unit) and their order statistics.
class Samples {
 public:
  void Add(double v) { values_.push_back(v); }
  void Append(const Samples& other);
  size_t size() const { return values_.size(); }
  bool empty() const { return values_.empty(); }
  // The p-th percentile (0..100), nearest rank; 0 when empty.
  double Percentile(double p) const;
  double Median() const { return Percentile(50); }
  double Max() const;
  double Mean() const;

 private:
  mutable std::vector<double> values_;
  mutable bool sorted_ = false;
};

// /proc figures of a process, summed over its threads.
struct ProcUsage {
  double cpu_seconds = 0;        // utime + stime
  int64_t context_switches = 0;  // voluntary + nonvoluntary, all threads
  int64_t rss_kib = 0;           // VmRSS
  int threads = 0;
};
absl::StatusOr<ProcUsage> ReadProcUsage(pid_t pid);

// Pss of /proc/PID/smaps_rollup in KiB: resident pages, each shared one
// divided among the processes that map it (the static binary's text,
// shared by every plugin of that executable); nullopt if unreadable. The
// kernel walks every mapping for it, so it is read only where wanted.
std::optional<int64_t> ReadPssKib(pid_t pid);

// `rounds` rounds over `n` targets, each round running run(0..n-1) with the
// order rotated by one (0 1 2, 1 2 0, 2 0 1, ...), so that the machine's
// background load falls on all alike; stops at the first run that returns
// false.
void RotatingRounds(int rounds, int n, const std::function<bool(int)>& run);

// The payload of `bytes` bytes (printable, valid UTF-8, so that the
// dynamic call can carry it as a string).
std::string Payload(size_t bytes);
// "64 B", "4 KiB", "1 MiB".
std::string SizeName(size_t bytes);

}  // namespace plugd::bench

#endif  // PLUGD_BENCH_UTIL_H_
