// Follows a plugin's lifecycle events at a plugd daemon, for a plugin the
// host attached to (internal to the host library): tells the host when the
// plugin is ready again after a restart (so that its channel reconnects at
// once instead of waiting out gRPC's reconnect backoff, at least 100 ms),
// and, with RetryMode::kWhileUnstable, keeps the channel's RetryWindow
// (idempotent_retry.h) open while the plugin is unstable.
//
// The watch follows the daemon's WatchEvents stream for the plugin (the
// most recent past event first) with gRPC's callback API: no thread of its
// own, so a host can attach hundreds of plugins (each stream is one HTTP/2
// stream on the host's connection to the daemon). A `ready` event calls
// `on_ready`. An exit, an unhealthy report or a failed start opens the window
// for `span`. Until the stream delivers its first event, and whenever it is
// down (the daemon restarting, say), the window is held open: calls are taken
// over rather than risk losing the retries; the watch subscribes again after
// kResubscribeDelay (a grpc::Alarm).
//
//   auto window = std::make_shared<RetryWindow>();  // or nullptr
//   auto watch = std::make_unique<AttachedEventWatch>(
//       broker, "echo", window, absl::Seconds(60),
//       ResetBackoffOnReady(channel));
//   ...                       // calls take window->IsOpen() into account
//   watch.reset();            // cancels the stream, waits for its callbacks
#ifndef PLUGD_HOSTS_SRC_EVENT_WATCH_H_
#define PLUGD_HOSTS_SRC_EVENT_WATCH_H_

#include <grpcpp/alarm.h>
#include <grpcpp/channel.h>
#include <grpcpp/client_context.h>

#include <functional>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "idempotent_retry.h"
#include "plugd/v1/broker.grpc.pb.h"

namespace plugd::host::internal {

inline constexpr absl::Duration kResubscribeDelay = absl::Seconds(1);

// The events that open a RetryWindow: the plugin exited, turned unhealthy or
// failed a start (for supervised plugins, Host::LaunchSupervised applies it
// to the embedded supervisor's events).
inline bool SignalsInstability(v1::EventType type) {
  return type == v1::EVENT_TYPE_EXITED || type == v1::EVENT_TYPE_UNHEALTHY ||
         type == v1::EVENT_TYPE_START_FAILED;
}

// The events that say how an instance ended (for CrashCount): an exit, or a
// failed start of a process that had started (its exit in the event; a crash
// during the start counts as one after it).
inline bool EndsAnInstance(const v1::Event& event) {
  return event.type() == v1::EVENT_TYPE_EXITED ||
         (event.type() == v1::EVENT_TYPE_START_FAILED && event.has_exit());
}

// For a plugin's `ready` event (AttachedEventWatch's `on_ready`, or the
// embedded supervisor's events): `channel` connects at once instead of
// waiting out gRPC's reconnect backoff (at least 100 ms after a failed
// attempt, and attempts fail while the plugin restarts).
std::function<void()> ResetBackoffOnReady(std::weak_ptr<grpc::Channel> channel);

class AttachedEventWatch {
 public:
  // Starts following at once; the window (if any) is held open until then.
  // `on_ready`: called on a gRPC callback thread for each `ready` event.
  // `on_change` (tests): called on a gRPC callback thread after each event
  // the watch acted on and after each end of the stream.
  // `crashes` (if any) observes each `exited` event.
  AttachedEventWatch(std::shared_ptr<v1::Broker::Stub> broker,
                     std::string plugin, std::shared_ptr<RetryWindow> window,
                     absl::Duration span, std::function<void()> on_ready,
                     std::function<void()> on_change = nullptr,
                     std::shared_ptr<CrashCount> crashes = nullptr);
  // Cancels the stream (or the pending resubscription) and waits until no
  // callback of the watch runs any more; the window stays as it was. Must
  // not be called from `on_ready` or `on_change`.
  ~AttachedEventWatch();

  AttachedEventWatch(const AttachedEventWatch&) = delete;
  AttachedEventWatch& operator=(const AttachedEventWatch&) = delete;

 private:
  class Subscription;  // one WatchEvents stream

  // Starts a subscription unless stopping.
  void Subscribe() ABSL_LOCKS_EXCLUDED(mu_);
  // From the subscription's callbacks.
  void OnEvent(const v1::Event& event);
  void OnStreamDone(const grpc::Status& status, bool followed)
      ABSL_LOCKS_EXCLUDED(mu_);
  // From the resubscription alarm.
  void OnAlarm(bool fired) ABSL_LOCKS_EXCLUDED(mu_);

  const std::shared_ptr<v1::Broker::Stub> broker_;
  const std::string plugin_;
  const std::shared_ptr<RetryWindow> window_;
  const absl::Duration span_;
  const std::function<void()> on_ready_;
  const std::function<void()> on_change_;
  const std::shared_ptr<CrashCount> crashes_;
  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  // The subscription and the alarm in flight: at most one of them is, as
  // each starts the other when it ends. Replaced only while not stopping,
  // so the destructor may use them outside `mu_` once it set `stopping_`.
  std::unique_ptr<Subscription> subscription_ ABSL_GUARDED_BY(mu_);
  std::unique_ptr<grpc::Alarm> alarm_ ABSL_GUARDED_BY(mu_);
  // Subscriptions and alarms whose last callback has not finished.
  int in_flight_ ABSL_GUARDED_BY(mu_) = 0;
  // A failed subscription was logged; cleared once one follows again.
  bool warned_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace plugd::host::internal

#endif  // PLUGD_HOSTS_SRC_EVENT_WATCH_H_
