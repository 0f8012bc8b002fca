// A plugd daemon (build/bin/plugd) run by the benchmark, and a follower of
// its lifecycle events (admin WatchEvents).
#ifndef PLUGD_BENCH_DAEMON_H_
#define PLUGD_BENCH_DAEMON_H_

#include <grpcpp/grpcpp.h>

#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "plugd/v1/broker.grpc.pb.h"
#include "util.h"

namespace plugd::bench {

class Daemon {
 public:
  // Writes `dir`/plugd.yaml (admin socket and socket_dir in `dir`, then
  // `plugins_yaml`, the YAML of the plugins list), starts plugd on it and
  // waits for its sd_notify READY=1 (admin API up, plugins being started).
  // start_time() is taken right before the fork.
  static absl::StatusOr<std::unique_ptr<Daemon>> Start(
      const std::string& dir, const std::string& plugins_yaml,
      int event_history);
  // SIGTERM (graceful stop of every plugin), then waits.
  ~Daemon();

  pid_t pid() const { return child_->pid(); }
  const std::string& admin() const { return admin_; }
  absl::Time start_time() const { return start_time_; }
  plugd::v1::Broker::Stub& stub() { return *stub_; }
  // Current pid of a plugin (0 when none).
  pid_t PluginPid(const std::string& name);
  std::string log_file() const { return log_file_; }

 private:
  Daemon() = default;
  std::unique_ptr<Child> child_;
  std::string admin_;
  std::string log_file_;
  absl::Time start_time_;
  std::unique_ptr<plugd::v1::Broker::Stub> stub_;
};

// Follows WatchEvents (history first, then live) on a thread of its own.
class EventFollower {
 public:
  EventFollower(plugd::v1::Broker::Stub& stub, const std::string& plugin,
                uint32_t history);
  ~EventFollower();
  // Waits for the first event after index `from` (count of events seen
  // before) that matches; its index, or -1 at `timeout`.
  int WaitFor(size_t from,
              const std::function<bool(const plugd::v1::Event&)>& match,
              absl::Duration timeout);
  size_t size();
  plugd::v1::Event At(size_t i);

 private:
  grpc::ClientContext context_;
  absl::Mutex mu_;
  std::vector<plugd::v1::Event> events_ ABSL_GUARDED_BY(mu_);
  bool ended_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

absl::Time FromTimestamp(const google::protobuf::Timestamp& t);

}  // namespace plugd::bench

#endif  // PLUGD_BENCH_DAEMON_H_
