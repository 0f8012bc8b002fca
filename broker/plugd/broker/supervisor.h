// The supervisor: owns many plugins, keeps each in its desired state, restarts
// the ones that crash or hang according to their policy, and records what
// happened.
//
//   plugd::broker::Supervisor supervisor;
//   plugd::broker::SupervisedPluginSpec spec;
//   spec.launch.name = "random";
//   spec.launch.command = {"build/bin/plugd-random"};
//   spec.launch.socket_path = dir + "/random.sock";
//   spec.restart = plugd::v1::RESTART_POLICY_ALWAYS;
//   supervisor.Add(spec);                      // starts it (autostart)
//   supervisor.WaitForState("random", {plugd::v1::PLUGIN_STATE_READY},
//                           absl::Seconds(10));
//   supervisor.Restart("random");              // blocks until ready/failed
//   supervisor.StopAll();                      // graceful, all at once
//
// States: stopped, starting, ready, unhealthy, backing-off, failed, stopping
// (plugd.v1.PluginState). A plugin's socket path never changes across
// restarts, and a new instance starts only once the old process group is
// gone, so a host's channel stays valid.
//
// Threads: the supervisor owns one EventLoop thread; every plugin's state,
// process, timers and health checks live on it. Crash detection is the
// launcher's pidfd exit notification; health is a grpc.health.v1 Watch stream
// per plugin plus one supervisor-wide liveness sweep, so idle wake-ups do not
// grow with the number of plugins. Public methods are thread-safe; the
// blocking ones must not be called from an event callback.
#ifndef PLUGD_BROKER_SUPERVISOR_H_
#define PLUGD_BROKER_SUPERVISOR_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "plugd/broker/event_loop.h"
#include "plugd/broker/launcher.h"
#include "plugd/broker/output.h"
#include "plugd/v1/broker.pb.h"

namespace plugd::broker {

// Delay between restarts: the first restart after a stable run has none;
// then `initial`, multiplied by `multiplier` each time, capped at `max`, each
// with +-`jitter` (a fraction) of randomness.
struct BackoffPolicy {
  absl::Duration initial = absl::Milliseconds(100);
  absl::Duration max = absl::Seconds(30);
  double multiplier = 2.0;
  double jitter = 0.2;
};

// One supervised plugin. `launch.name`, `launch.command` and
// `launch.socket_path` are required; everything else has a default.
struct SupervisedPluginSpec {
  LaunchOptions launch;
  // always (default), on-failure, never.
  v1::RestartPolicy restart = v1::RESTART_POLICY_ALWAYS;
  BackoffPolicy backoff;
  // More than this many restarts within restart_window: failed. 0: no limit.
  uint32_t max_restarts = 5;
  // Also: a plugin that stays up this long has its backoff reset.
  absl::Duration restart_window = absl::Seconds(60);
  // Liveness checks (grpc.health.v1 Check) are sent this often, each with
  // this deadline.
  absl::Duration health_interval = absl::Seconds(1);
  // NOT_SERVING for longer than this: restarted.
  absl::Duration unhealthy_timeout = absl::Seconds(5);
  // No health answer for longer than this (hung, SIGSTOPped): restarted.
  absl::Duration liveness_timeout = absl::Seconds(5);
  // Start when added.
  bool autostart = true;
  // Output kept per plugin across restarts (for TailLogs), and forwarded to
  // plugd's log under the plugin's name.
  size_t log_buffer_bytes = 1 << 20;
  size_t log_rate_bytes = 256 * 1024;

  // True when the two specs would run the same process the same way.
  bool SameAs(const SupervisedPluginSpec& other) const;
};

class Supervisor {
 public:
  struct Options {
    // Lifecycle events kept for WatchEvents / Events(). Default 1000.
    size_t event_history = 1000;
    // Uniform random numbers in [0, 1) for backoff jitter. Default: a
    // seeded generator. Tests may inject a fixed one.
    std::function<double()> random;
    // Called on the loop thread when a plugin's process group starts and
    // when it is gone (pgid == pid of the leader). The daemon feeds its
    // reaper with these, so that plugins never outlive it.
    std::function<void(pid_t pgid)> on_group_started;
    std::function<void(pid_t pgid)> on_group_gone;
  };

  Supervisor();
  explicit Supervisor(Options options);
  // Stops every plugin (StopAll) and the loop thread.
  ~Supervisor();

  Supervisor(const Supervisor&) = delete;
  Supervisor& operator=(const Supervisor&) = delete;

  // Adds a plugin and, when spec.autostart, starts it (without waiting).
  // ALREADY_EXISTS for a name in use; INVALID_ARGUMENT for a bad spec.
  absl::Status Add(SupervisedPluginSpec spec);
  // Stops a plugin (blocking) and forgets it. NOT_FOUND if unknown.
  absl::Status Remove(const std::string& name);
  // Names, sorted.
  std::vector<std::string> Names() const;
  // The spec a plugin runs with.
  absl::StatusOr<SupervisedPluginSpec> Spec(const std::string& name) const;

  // Snapshots. NOT_FOUND (listing the known names) for an unknown plugin.
  absl::StatusOr<v1::PluginStatus> Get(const std::string& name) const;
  std::vector<v1::PluginStatus> List() const;
  absl::StatusOr<v1::ResolveResponse> Resolve(const std::string& name) const;
  // The broker's connection to the plugin's running instance
  // (PluginProcess::channel(): its health checks' channel, connected since
  // the start's connect check), for a quick question of the supervisor's
  // owner such as Control/Describe; not for applications' calls.
  // NOT_FOUND for an unknown plugin, FAILED_PRECONDITION when no instance
  // is running.
  absl::StatusOr<std::shared_ptr<grpc::Channel>> Channel(
      const std::string& name) const;

  // Operator actions. Each resets the restart count and clears a failed
  // state. They complete when the plugin is ready (Start, Restart), stopped
  // (Stop), or its start failed; `done` runs on the loop thread with the
  // resulting status, or the error (NOT_FOUND, or why the start failed).
  using StatusCallback =
      std::function<void(absl::StatusOr<v1::PluginStatus> status)>;
  void AsyncStart(const std::string& name, StatusCallback done);
  void AsyncStop(const std::string& name, StatusCallback done);
  void AsyncRestart(const std::string& name, StatusCallback done);
  // Blocking forms (not from the loop thread).
  absl::StatusOr<v1::PluginStatus> Start(const std::string& name);
  absl::StatusOr<v1::PluginStatus> Stop(const std::string& name);
  absl::StatusOr<v1::PluginStatus> Restart(const std::string& name);

  // Blocks until the plugin is in one of `states` or `timeout` passes
  // (DEADLINE_EXCEEDED, with the state it is in).
  absl::StatusOr<v1::PluginStatus> WaitForState(
      const std::string& name, const std::set<v1::PluginState>& states,
      absl::Duration timeout);

  // Stops every plugin at once; blocks until all are stopped. Idempotent.
  void StopAll();

  // Lifecycle events. `Events` returns up to `max` most recent (0: all kept),
  // for one plugin or all (empty name), oldest first.
  std::vector<v1::Event> Events(const std::string& plugin, size_t max) const;
  // `callback` runs on the loop thread for every new event; it must not
  // block. Returns an id for UnsubscribeEvents.
  int SubscribeEvents(std::function<void(const v1::Event&)> callback);
  void UnsubscribeEvents(int id);

  // A plugin's output across restarts (stderr, and stdout after the
  // handshake). NOT_FOUND for an unknown plugin.
  absl::StatusOr<std::shared_ptr<OutputCapture>> Logs(
      const std::string& name) const;

  // The loop all plugins live on.
  EventLoop& loop() { return *loop_; }

  class Impl;

 private:
  std::unique_ptr<EventLoop> loop_;
  std::shared_ptr<Impl> impl_;
};

// "stopped", "starting", "ready", "unhealthy", "backing-off", "failed",
// "stopping".
std::string StateName(v1::PluginState state);
// "starting", "ready", "exited", ... (lower case, '-' for '_').
std::string EventTypeName(v1::EventType type);

}  // namespace plugd::broker

#endif  // PLUGD_BROKER_SUPERVISOR_H_
