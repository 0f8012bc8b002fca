// Follows a plugin's lifecycle events at a plugd daemon, for a plugin the
// host attached to (internal to the host library): tells the host when the
// plugin is ready again after a restart (so that its channel reconnects at
// once instead of waiting out gRPC's reconnect backoff, at least 100 ms),
// and, with RetryMode::kWhileUnstable, keeps the channel's RetryWindow
// (idempotent_retry.h) open while the plugin is unstable.
//
// A thread follows the daemon's WatchEvents stream for the plugin (the most
// recent past event first). A `ready` event calls `on_ready`. An exit, an
// unhealthy report or a failed start opens the window for `span`. Until the
// stream delivers its first event, and whenever it is down (the daemon
// restarting, say), the window is held open: calls are taken over rather
// than risk losing the retries; the thread subscribes again after
// kResubscribeDelay.
//
//   auto window = std::make_shared<RetryWindow>();  // or nullptr
//   auto watch = std::make_unique<AttachedEventWatch>(
//       broker, "echo", window, absl::Seconds(60),
//       [channel] { ChannelResetConnectionBackoff(channel.get()); });
//   ...                       // calls take window->IsOpen() into account
//   watch.reset();            // cancels the stream and joins the thread
#ifndef PLUGD_HOSTS_SRC_EVENT_WATCH_H_
#define PLUGD_HOSTS_SRC_EVENT_WATCH_H_

#include <grpcpp/channel.h>
#include <grpcpp/client_context.h>

#include <functional>
#include <memory>
#include <string>
#include <thread>

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

// For a plugin's `ready` event (AttachedEventWatch's `on_ready`, or the
// embedded supervisor's events): `channel` connects at once instead of
// waiting out gRPC's reconnect backoff (at least 100 ms after a failed
// attempt, and attempts fail while the plugin restarts).
std::function<void()> ResetBackoffOnReady(std::weak_ptr<grpc::Channel> channel);

class AttachedEventWatch {
 public:
  // Starts following at once; the window (if any) is held open until then.
  // `on_ready`: called on the watch's thread for each `ready` event.
  // `on_change` (tests): called on the watch's thread after each event it
  // acted on and after each end of the stream.
  AttachedEventWatch(std::shared_ptr<v1::Broker::Stub> broker,
                     std::string plugin, std::shared_ptr<RetryWindow> window,
                     absl::Duration span, std::function<void()> on_ready,
                     std::function<void()> on_change = nullptr);
  // Cancels the stream and joins the thread; the window stays as it was.
  ~AttachedEventWatch();

  AttachedEventWatch(const AttachedEventWatch&) = delete;
  AttachedEventWatch& operator=(const AttachedEventWatch&) = delete;

 private:
  void Run();
  // One subscription, until the stream ends or Stop cancels it.
  void Follow();

  const std::shared_ptr<v1::Broker::Stub> broker_;
  const std::string plugin_;
  const std::shared_ptr<RetryWindow> window_;
  const absl::Duration span_;
  const std::function<void()> on_ready_;
  const std::function<void()> on_change_;
  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  grpc::ClientContext* context_ ABSL_GUARDED_BY(mu_) = nullptr;  // Follow's
  // A failed subscription was logged; cleared once one follows again.
  bool warned_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace plugd::host::internal

#endif  // PLUGD_HOSTS_SRC_EVENT_WATCH_H_
