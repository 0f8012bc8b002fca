// Process, /proc and admin-API helpers for plugd-soak (tests/soak/soak.cc):
// a real plugd daemon run as a child, its lifecycle events read from the
// admin API's WatchEvents stream, and process-tree scans for leak checks.
//
//   soak::Daemon daemon;
//   absl::Status s = daemon.Start(bin + "/plugd", dir + "/plugd.yaml");
//   soak::EventFeed events(soak::AdminChannel(admin), /*history=*/1000);
//   std::optional<plugd::v1::Event> e = events.Next(absl::Now() + guard);
//   daemon.Kill(SIGKILL);
//   daemon.Wait(absl::Seconds(10));
//
// Everything here waits on events (pidfds, pipe reads, stream reads,
// condition variables); every timeout is a hang guard.
#ifndef PLUGD_TESTS_SOAK_SOAK_UTIL_H_
#define PLUGD_TESTS_SOAK_SOAK_UTIL_H_

#include <grpcpp/grpcpp.h>
#include <sys/types.h>

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "plugd/v1/broker.grpc.pb.h"

namespace plugd::soak {

// A plugd daemon run as a child of this process; its stdout and stderr are
// drained by a thread (the last 256 KiB are kept for error reports).
class Daemon {
 public:
  Daemon() = default;
  ~Daemon();  // SIGKILLs and reaps a daemon still running
  Daemon(const Daemon&) = delete;
  Daemon& operator=(const Daemon&) = delete;

  // Spawns `plugd --config config` and waits (up to `guard`) until it logs
  // that it serves the admin API. FAILED_PRECONDITION with its output when
  // it exits first, DEADLINE_EXCEEDED after the guard.
  absl::Status Start(const std::string& plugd, const std::string& config,
                     absl::Duration guard = absl::Seconds(20));

  pid_t pid() const { return pid_; }
  // True until the process has exited (its pidfd is readable).
  bool Running() const;
  // The pidfd, for poll(2) alongside other fds; -1 when not started.
  int pidfd() const { return pidfd_; }

  absl::Status Kill(int sig);
  // Waits until it exits (pidfd), reaps it and returns the wait status.
  // DEADLINE_EXCEEDED after `guard` (the daemon is left running).
  absl::StatusOr<int> Wait(absl::Duration guard);

  // The last 256 KiB of its output.
  std::string Tail() const;
  // Makes the reader count every output line containing one of `needles`
  // (e.g. "terminate called", "a handler threw"). Call before Start.
  void CountLinesWith(std::vector<std::string> needles) {
    needles_ = std::move(needles);
  }
  // How many output lines contained one of those needles.
  int64_t CountedLines() const;
  // Bytes of output read so far.
  int64_t OutputBytes() const;

 private:
  void Read(int fd);

  pid_t pid_ = -1;
  int pidfd_ = -1;
  bool reaped_ = false;
  std::thread reader_;
  std::vector<std::string> needles_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::string tail_;
  std::string partial_;
  int64_t bytes_ = 0;
  int64_t counted_ = 0;
  bool serving_ = false;
  bool eof_ = false;
};

// A channel to a plugd admin socket ("unix:/path").
std::shared_ptr<grpc::Channel> AdminChannel(const std::string& address);

// A WatchEvents(follow) stream read by a thread into a queue.
class EventFeed {
 public:
  // Streams every plugin's events, starting with up to `history` past ones.
  EventFeed(std::shared_ptr<grpc::Channel> admin, uint32_t history);
  ~EventFeed();  // cancels the stream and joins the thread
  EventFeed(const EventFeed&) = delete;
  EventFeed& operator=(const EventFeed&) = delete;

  // The next event, waiting until `deadline`; nullopt on timeout or when the
  // stream has ended (see ended()).
  std::optional<v1::Event> Next(absl::Time deadline);
  // True once the stream has ended and every event was taken; `status()` is
  // why it ended.
  bool ended() const;
  grpc::Status status() const;

 private:
  grpc::ClientContext context_;
  std::thread reader_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<v1::Event> queue_;
  bool ended_ = false;
  grpc::Status status_;
};

// Reads of /proc.
struct ProcInfo {
  pid_t pid = 0;
  pid_t ppid = 0;
  pid_t pgrp = 0;
  char state = 0;
  std::string comm;     // the thread name, e.g. "plugd-reaper"
  std::string cmdline;  // arguments joined by spaces
};
// Every process on the machine.
std::vector<ProcInfo> ScanProc();
// Live (not zombie) processes whose parent chain leads to `root` (not
// `root` itself), from one scan.
std::vector<ProcInfo> Descendants(const std::vector<ProcInfo>& all, pid_t root);
// Open file descriptors of `pid`; -1 if unreadable.
int FdCount(pid_t pid);
// VmRSS of `pid` in KiB; -1 if unreadable.
int64_t RssKb(pid_t pid);
// CPU time (user + system) used so far by process `pid`, and by its busiest
// thread (with the thread's name); zero if unreadable.
struct CpuUse {
  absl::Duration process;
  absl::Duration busiest_thread;
  std::string busiest_name;
};
CpuUse ReadCpu(pid_t pid);
// "3.2 s of 20 s (16%); busiest thread plugd-loop 2.9 s"
std::string CpuText(const CpuUse& before, const CpuUse& after,
                    absl::Duration wall);
// True while `pid` exists and is not a zombie.
bool Alive(pid_t pid);
// Reaps every exited child (this process is a child subreaper, so orphans
// end up here) without blocking; returns how many.
int ReapZombies();
// pidfd_open; -1 (errno set) on failure.
int PidfdOpen(pid_t pid);
// Waits until every pidfd in `fds` is readable (its process exited) or
// `guard` passes. Returns the indexes of those still running.
std::vector<size_t> WaitPidfds(const std::vector<int>& fds,
                               absl::Duration guard);

// "12.3 ms"
std::string Millis(absl::Duration d);

// A temp dir (short path, for socket length limits) removed on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

}  // namespace plugd::soak

#endif  // PLUGD_TESTS_SOAK_SOAK_UTIL_H_
