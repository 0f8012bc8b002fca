#include "event_watch.h"

#include <grpcpp/support/client_callback.h>

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

// One WatchEvents stream for the watch's plugin, on gRPC's callback threads.
class AttachedEventWatch::Subscription final
    : public grpc::ClientReadReactor<v1::Event> {
 public:
  explicit Subscription(AttachedEventWatch* watch) : watch_(watch) {
    request_.set_plugin(watch->plugin_);
    request_.set_follow(true);
    request_.set_history(1);
  }

  void Start() {
    watch_->broker_->async()->WatchEvents(&context_, &request_, this);
    StartRead(&event_);
    StartCall();
  }

  // Thread-safe, also before Start and after the stream ended.
  void Cancel() { context_.TryCancel(); }

  void OnReadDone(bool ok) override {
    if (!ok) return;  // the stream ended: OnDone follows
    followed_ = true;
    watch_->OnEvent(event_);
    StartRead(&event_);
  }

  // The last callback; the watch may delete this object once it returns.
  void OnDone(const grpc::Status& status) override {
    watch_->OnStreamDone(status, followed_);
  }

 private:
  AttachedEventWatch* const watch_;
  grpc::ClientContext context_;
  v1::WatchEventsRequest request_;
  v1::Event event_;
  bool followed_ = false;
};

AttachedEventWatch::AttachedEventWatch(std::shared_ptr<v1::Broker::Stub> broker,
                                       std::string plugin,
                                       std::shared_ptr<RetryWindow> window,
                                       absl::Duration span,
                                       std::function<void()> on_ready,
                                       std::function<void()> on_change,
                                       std::shared_ptr<CrashCount> crashes)
    : broker_(std::move(broker)),
      plugin_(std::move(plugin)),
      window_(std::move(window)),
      span_(span),
      on_ready_(std::move(on_ready)),
      on_change_(std::move(on_change)),
      crashes_(std::move(crashes)) {
  if (window_ != nullptr) window_->SetHeld(true);
  Subscribe();
}

AttachedEventWatch::~AttachedEventWatch() {
  Subscription* subscription = nullptr;
  grpc::Alarm* alarm = nullptr;
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;  // from here on, neither pointer is replaced
    subscription = subscription_.get();
    alarm = alarm_.get();
  }
  // Outside mu_: gRPC may run the callbacks these cause on this thread.
  if (subscription != nullptr) subscription->Cancel();
  if (alarm != nullptr) alarm->Cancel();
  absl::MutexLock lock(&mu_);
  auto idle = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return in_flight_ == 0;
  };
  mu_.Await(absl::Condition(&idle));
}

void AttachedEventWatch::Subscribe() {
  Subscription* subscription = nullptr;
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return;
    // The previous subscription (if any) has ended: this runs from the
    // alarm its end set.
    subscription_ = std::make_unique<Subscription>(this);
    subscription = subscription_.get();
    ++in_flight_;
  }
  subscription->Start();
}

void AttachedEventWatch::OnEvent(const v1::Event& event) {
  if (crashes_ != nullptr && EndsAnInstance(event)) {
    crashes_->Observe(event.exit());
  }
  if (window_ != nullptr) {
    if (SignalsInstability(event.type())) window_->OpenFor(span_);
    window_->SetHeld(false);  // following: the events say when to open
  }
  if (event.type() == v1::EVENT_TYPE_READY && on_ready_) on_ready_();
  if (on_change_) on_change_();
}

void AttachedEventWatch::OnStreamDone(const grpc::Status& status,
                                      bool followed) {
  if (window_ != nullptr) window_->SetHeld(true);
  if (on_change_) on_change_();
  absl::MutexLock lock(&mu_);
  // Logged once per outage: when a followed stream ends, or when the first
  // subscription fails (an unknown plugin, the daemon not there).
  if (followed) warned_ = false;
  if (!stopping_) {
    if (!warned_) {
      warned_ = true;
      const std::string why = absl::StrCat(
          " (", status.error_message(), "); subscribing again every ",
          absl::FormatDuration(kResubscribeDelay));
      if (followed) {
        PLUGD_LOG(INFO) << "plugin " << plugin_
                        << ": the daemon's event stream ended" << why;
      } else {
        PLUGD_LOG(WARNING) << "plugin " << plugin_
                           << ": cannot follow the daemon's events" << why;
      }
    }
    // The alarm's callback runs on gRPC's executor, never inside Set.
    alarm_ = std::make_unique<grpc::Alarm>();
    ++in_flight_;
    alarm_->Set(absl::ToChronoTime(absl::Now() + kResubscribeDelay),
                [this](bool fired) { OnAlarm(fired); });
  }
  --in_flight_;  // the subscription's; nothing of it is used after this
}

void AttachedEventWatch::OnAlarm(bool fired) {
  if (fired) Subscribe();  // not when the destructor cancelled the alarm
  absl::MutexLock lock(&mu_);
  --in_flight_;
}

}  // namespace plugd::host::internal
