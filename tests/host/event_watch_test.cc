// AttachedEventWatch (hosts/src/event_watch.h) against a fake daemon: a real
// gRPC server on a Unix socket whose WatchEvents stream the test feeds. The
// watch keeps an attached plugin's RetryWindow open while the daemon's events
// say the plugin is unstable, and holds it open while it cannot follow them.
#include "event_watch.h"

#include <grpcpp/grpcpp.h>

#include <deque>
#include <memory>
#include <string>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "idempotent_retry.h"
#include "plugd/v1/broker.grpc.pb.h"
#include "test_util.h"

namespace plugd::host::internal {
namespace {

constexpr absl::Duration kGuard = absl::Seconds(30);  // hang guard

// Waits, holding `mu`, until `*count` reaches `n`; false after the guard.
bool AwaitCount(absl::Mutex& mu, const int* count, int n) {
  absl::MutexLock lock(&mu);
  auto enough = [count, n] { return *count >= n; };
  return mu.AwaitWithTimeout(absl::Condition(&enough), kGuard);
}

class FakeBroker final : public v1::Broker::Service {
 public:
  grpc::Status WatchEvents(grpc::ServerContext* /*context*/,
                           const v1::WatchEventsRequest* request,
                           grpc::ServerWriter<v1::Event>* writer) override {
    absl::MutexLock lock(&mu_);
    ++subscriptions_;
    last_request_ = *request;
    for (;;) {
      mu_.Await(absl::Condition(this, &FakeBroker::HasWork));
      if (end_stream_) {
        end_stream_ = false;
        return grpc::Status(grpc::StatusCode::UNAVAILABLE, "going away");
      }
      v1::Event event = queue_.front();
      queue_.pop_front();
      mu_.Unlock();
      writer->Write(event);
      mu_.Lock();
    }
  }

  void Send(v1::EventType type) {
    absl::MutexLock lock(&mu_);
    v1::Event event;
    event.set_plugin("echo");
    event.set_type(type);
    queue_.push_back(event);
  }
  void EndStream() {
    absl::MutexLock lock(&mu_);
    end_stream_ = true;
  }
  bool WaitForSubscriptions(int n) {
    return AwaitCount(mu_, &subscriptions_, n);
  }
  v1::WatchEventsRequest last_request() {
    absl::MutexLock lock(&mu_);
    return last_request_;
  }

 private:
  bool HasWork() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return end_stream_ || !queue_.empty();
  }

  absl::Mutex mu_;
  std::deque<v1::Event> queue_ ABSL_GUARDED_BY(mu_);
  bool end_stream_ ABSL_GUARDED_BY(mu_) = false;
  int subscriptions_ ABSL_GUARDED_BY(mu_) = 0;
  v1::WatchEventsRequest last_request_ ABSL_GUARDED_BY(mu_);
};

class EventWatchTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string address = "unix:" + dir_.path() + "/admin.sock";
    grpc::ServerBuilder builder;
    builder.AddListeningPort(address, grpc::InsecureServerCredentials());
    builder.RegisterService(&broker_);
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    stub_ = std::shared_ptr<v1::Broker::Stub>(v1::Broker::NewStub(
        grpc::CreateChannel(address, grpc::InsecureChannelCredentials())));
  }

  void TearDown() override {
    broker_.EndStream();  // lets the handler return
    watch_.reset();
    server_->Shutdown(absl::ToChronoTime(absl::Now() + kGuard));
  }

  void StartWatch() {
    watch_ = std::make_unique<AttachedEventWatch>(
        stub_, "echo", window_, absl::Hours(1),
        [this] {
          absl::MutexLock lock(&mu_);
          ++readies_;
        },
        [this] {
          absl::MutexLock lock(&mu_);
          ++changes_;
        });
  }

  // Waits until the watch acted on `n` events or stream ends in all.
  bool WaitForChanges(int n) { return AwaitCount(mu_, &changes_, n); }

  plugd::testing::TempDir dir_;
  FakeBroker broker_;
  std::unique_ptr<grpc::Server> server_;
  std::shared_ptr<v1::Broker::Stub> stub_;
  std::shared_ptr<RetryWindow> window_ = std::make_shared<RetryWindow>();
  std::unique_ptr<AttachedEventWatch> watch_;
  absl::Mutex mu_;
  int changes_ ABSL_GUARDED_BY(mu_) = 0;
  int readies_ ABSL_GUARDED_BY(mu_) = 0;  // on_ready calls
};

// The events whose exit CrashCount observes: exits, and failed starts that
// carry one (the plugin had announced its address).
TEST(EndsAnInstanceTest, ExitsAndFailedStartsWithAnExit) {
  v1::Event event;
  event.set_type(v1::EVENT_TYPE_EXITED);
  EXPECT_TRUE(EndsAnInstance(event));
  event.set_type(v1::EVENT_TYPE_START_FAILED);
  EXPECT_FALSE(EndsAnInstance(event));
  event.mutable_exit()->set_signaled(true);
  event.mutable_exit()->set_signal(6);
  EXPECT_TRUE(EndsAnInstance(event));
  event.set_type(v1::EVENT_TYPE_STOPPED);
  EXPECT_FALSE(EndsAnInstance(event));
}

TEST_F(EventWatchTest, HeldOpenUntilFollowingThenOpenedByAnExit) {
  StartWatch();
  EXPECT_TRUE(window_->IsOpen()) << "not held open before the first event";
  ASSERT_TRUE(broker_.WaitForSubscriptions(1));
  v1::WatchEventsRequest request = broker_.last_request();
  EXPECT_EQ(request.plugin(), "echo");
  EXPECT_TRUE(request.follow());
  EXPECT_EQ(request.history(), 1u);

  broker_.Send(v1::EVENT_TYPE_READY);
  ASSERT_TRUE(WaitForChanges(1));
  EXPECT_FALSE(window_->IsOpen()) << "a ready plugin's calls are taken over";

  broker_.Send(v1::EVENT_TYPE_HEALTHY);
  ASSERT_TRUE(WaitForChanges(2));
  EXPECT_FALSE(window_->IsOpen());

  broker_.Send(v1::EVENT_TYPE_EXITED);
  ASSERT_TRUE(WaitForChanges(3));
  EXPECT_TRUE(window_->IsOpen()) << "an exit did not open the window";
  broker_.Send(v1::EVENT_TYPE_READY);
  ASSERT_TRUE(WaitForChanges(4));
  EXPECT_TRUE(window_->IsOpen()) << "the window closed before its span";
}

TEST_F(EventWatchTest, UnhealthyAndFailedStartsOpenTheWindow) {
  for (v1::EventType type :
       {v1::EVENT_TYPE_UNHEALTHY, v1::EVENT_TYPE_START_FAILED}) {
    window_ = std::make_shared<RetryWindow>();
    {
      absl::MutexLock lock(&mu_);
      changes_ = 0;
    }
    StartWatch();
    broker_.Send(v1::EVENT_TYPE_READY);
    ASSERT_TRUE(WaitForChanges(1));
    ASSERT_FALSE(window_->IsOpen());
    broker_.Send(type);
    ASSERT_TRUE(WaitForChanges(2));
    EXPECT_TRUE(window_->IsOpen()) << v1::EventType_Name(type);
    broker_.EndStream();
    ASSERT_TRUE(WaitForChanges(3));
    watch_.reset();
  }
}

TEST_F(EventWatchTest, HeldOpenWhileTheStreamIsDownThenFollowsAgain) {
  StartWatch();
  broker_.Send(v1::EVENT_TYPE_READY);
  ASSERT_TRUE(WaitForChanges(1));
  ASSERT_FALSE(window_->IsOpen());

  broker_.EndStream();  // the daemon going away
  ASSERT_TRUE(WaitForChanges(2));
  EXPECT_TRUE(window_->IsOpen()) << "not held open without the events";

  // The watch subscribes again (after kResubscribeDelay) and follows.
  ASSERT_TRUE(broker_.WaitForSubscriptions(2));
  broker_.Send(v1::EVENT_TYPE_READY);
  ASSERT_TRUE(WaitForChanges(3));
  EXPECT_FALSE(window_->IsOpen());
}

// Every attached plugin has a watch, whatever its RetryMode: its `ready`
// events make the host's channel reconnect at once (on_ready).
TEST_F(EventWatchTest, ReadyEventsCallOnReadyWithOrWithoutAWindow) {
  for (bool with_window : {true, false}) {
    window_ = with_window ? std::make_shared<RetryWindow>() : nullptr;
    {
      absl::MutexLock lock(&mu_);
      changes_ = 0;
      readies_ = 0;
    }
    StartWatch();
    broker_.Send(v1::EVENT_TYPE_READY);
    broker_.Send(v1::EVENT_TYPE_EXITED);
    broker_.Send(v1::EVENT_TYPE_STARTING);
    broker_.Send(v1::EVENT_TYPE_READY);
    ASSERT_TRUE(WaitForChanges(4));
    {
      absl::MutexLock lock(&mu_);
      EXPECT_EQ(readies_, 2) << "with_window " << with_window;
    }
    if (with_window) {
      EXPECT_TRUE(window_->IsOpen());
    }
    broker_.EndStream();
    ASSERT_TRUE(WaitForChanges(5));
    watch_.reset();
  }
}

// What Host::Attach wires to on_ready: a channel waiting out its reconnect
// backoff after a failed attempt connects as soon as `ready` arrives.
TEST_F(EventWatchTest, ReadyEventMakesAChannelInBackoffConnectAtOnce) {
  const std::string address = "unix:" + dir_.path() + "/plugin.sock";
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  // A backoff far past the hang guard: only the reset can end it in time.
  for (const char* arg :
       {GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS,
        GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, GRPC_ARG_MAX_RECONNECT_BACKOFF_MS}) {
    args.SetInt(arg, 600000);
  }
  std::shared_ptr<grpc::Channel> channel = grpc::CreateCustomChannel(
      address, grpc::InsecureChannelCredentials(), args);
  // Nothing listens yet: the first attempt fails and the backoff starts.
  grpc_connectivity_state state = channel->GetState(/*try_to_connect=*/true);
  const auto guard = absl::ToChronoTime(absl::Now() + kGuard);
  while (state != GRPC_CHANNEL_TRANSIENT_FAILURE) {
    ASSERT_TRUE(channel->WaitForStateChange(state, guard))
        << "the channel never failed to connect";
    state = channel->GetState(false);
  }
  // The plugin is back (any service will do); the daemon says so.
  v1::Broker::Service any_service;
  grpc::ServerBuilder builder;
  builder.AddListeningPort(address, grpc::InsecureServerCredentials());
  builder.RegisterService(&any_service);
  std::unique_ptr<grpc::Server> plugin = builder.BuildAndStart();
  ASSERT_NE(plugin, nullptr);
  watch_ = std::make_unique<AttachedEventWatch>(
      stub_, "echo", nullptr, absl::Hours(1), ResetBackoffOnReady(channel));
  broker_.Send(v1::EVENT_TYPE_READY);
  EXPECT_TRUE(channel->WaitForConnected(guard))
      << "still waiting out the reconnect backoff";
  watch_.reset();
  plugin->Shutdown(guard);
}

}  // namespace
}  // namespace plugd::host::internal
