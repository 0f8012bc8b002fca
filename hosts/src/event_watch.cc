#include "event_watch.h"

#include <grpcpp/support/sync_stream.h>

#include <utility>

#include "absl/strings/str_cat.h"
#include "plugd/common/log.h"

namespace plugd::host::internal {

std::function<void()> ResetBackoffOnReady(
    std::weak_ptr<grpc::Channel> channel) {
  return [channel = std::move(channel)] {
    if (auto c = channel.lock()) {
      grpc::experimental::ChannelResetConnectionBackoff(c.get());
    }
  };
}

AttachedEventWatch::AttachedEventWatch(std::shared_ptr<v1::Broker::Stub> broker,
                                       std::string plugin,
                                       std::shared_ptr<RetryWindow> window,
                                       absl::Duration span,
                                       std::function<void()> on_ready,
                                       std::function<void()> on_change)
    : broker_(std::move(broker)),
      plugin_(std::move(plugin)),
      window_(std::move(window)),
      span_(span),
      on_ready_(std::move(on_ready)),
      on_change_(std::move(on_change)) {
  if (window_ != nullptr) window_->SetHeld(true);
  thread_ = std::thread([this] { Run(); });
}

AttachedEventWatch::~AttachedEventWatch() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    if (context_ != nullptr) context_->TryCancel();
  }
  thread_.join();
}

void AttachedEventWatch::Run() {
  for (;;) {
    Follow();
    if (window_ != nullptr) window_->SetHeld(true);
    if (on_change_) on_change_();
    absl::MutexLock lock(&mu_);
    // Wakes at once on stop; otherwise subscribes again after the delay.
    mu_.AwaitWithTimeout(absl::Condition(&stopping_), kResubscribeDelay);
    if (stopping_) return;
  }
}

void AttachedEventWatch::Follow() {
  grpc::ClientContext context;
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return;
    context_ = &context;
  }
  v1::WatchEventsRequest request;
  request.set_plugin(plugin_);
  request.set_follow(true);
  request.set_history(1);
  std::unique_ptr<grpc::ClientReader<v1::Event>> reader =
      broker_->WatchEvents(&context, request);
  v1::Event event;
  bool followed = false;
  while (reader->Read(&event)) {
    followed = true;
    if (window_ != nullptr) {
      if (SignalsInstability(event.type())) window_->OpenFor(span_);
      window_->SetHeld(false);  // following: the events say when to open
    }
    if (event.type() == v1::EVENT_TYPE_READY && on_ready_) on_ready_();
    if (on_change_) on_change_();
  }
  grpc::Status status = reader->Finish();
  absl::MutexLock lock(&mu_);
  context_ = nullptr;
  // Logged once per outage: when a followed stream ends, or when the first
  // subscription fails (an unknown plugin, the daemon not there).
  if (followed) warned_ = false;
  if (stopping_ || warned_) return;
  warned_ = true;
  const std::string why =
      absl::StrCat(" (", status.error_message(), "); subscribing again every ",
                   absl::FormatDuration(kResubscribeDelay));
  if (followed) {
    PLUGD_LOG(INFO) << "plugin " << plugin_
                    << ": the daemon's event stream ended" << why;
  } else {
    PLUGD_LOG(WARNING) << "plugin " << plugin_
                       << ": cannot follow the daemon's events" << why;
  }
}

}  // namespace plugd::host::internal
