// An idempotent call through a supervised plugin's channel lives through
// more plugin deaths than gRPC's retry policy allows attempts (5) once the
// plugin has died lately: the host library's
// IdempotentRetryInterceptorFactory (hosts/src/idempotent_retry.h) issues it
// again until it gets through. The plugin (plugd-test-raw
// --mode=die-in-list-functions) SIGKILLs itself inside ListFunctions as many
// times as its deaths file says, so every attempt dies on a live instance:
// deterministic, no timing involved.
#include "idempotent_retry.h"

#include <fcntl.h>
#include <grpcpp/completion_queue.h>
#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/support/client_interceptor.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "plugd/common/channel.h"
#include "plugd/host/host.h"
#include "plugd/v1/plugin.grpc.pb.h"
#include "test_util.h"

namespace plugd::host {
namespace {

using ::plugd::testing::Bin;

class IdempotentRetryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char dir[] = "/tmp/plugd-retry-XXXXXX";
    ASSERT_NE(mkdtemp(dir), nullptr);
    dir_ = dir;
    deaths_file_ = dir_ + "/deaths";
    HostOptions host_options;
    host_options.mutex_deadlock_detection = true;  // checks our locks
    auto host = Host::Create(host_options);
    ASSERT_TRUE(host.ok()) << host.status();
    host_ = std::move(*host);
    PluginOptions options;
    options.name = "dier";
    options.command = {Bin("plugd-test-raw"), "--mode=die-in-list-functions",
                       "--deaths-file=" + deaths_file_};
    SupervisionOptions supervision;
    supervision.backoff.initial = absl::Milliseconds(1);
    supervision.backoff.max = absl::Milliseconds(5);
    supervision.max_restarts = 0;  // unlimited
    options.supervision = supervision;
    options.retry_mode = Mode();
    auto plugin = host_->Launch(options);
    ASSERT_TRUE(plugin.ok()) << plugin.status();
    plugin_ = *plugin;
  }

  void TearDown() override {
    host_.reset();  // stops the plugin
    unlink(deaths_file_.c_str());
    rmdir(dir_.c_str());
  }

  virtual RetryMode Mode() const { return RetryMode::kAlways; }

  void SetDeaths(int n) { std::ofstream(deaths_file_) << n << "\n"; }

  int DeathsLeft() {
    int n = -1;
    std::ifstream(deaths_file_) >> n;
    return n;
  }

  // ListFunctions through `stub` (null: one on the plugin's channel) made
  // as a blocking, a callback or a completion-queue call. The deadline is a
  // hang guard: a call may need 8 restarts of a few milliseconds each.
  grpc::Status ListFunctions(v1::ListFunctionsResponse* response,
                             v1::Functions::Stub* stub = nullptr) {
    std::unique_ptr<v1::Functions::Stub> own;
    if (stub == nullptr) stub = (own = OwnStub()).get();
    grpc::ClientContext context;
    context.set_deadline(Deadline());
    return stub->ListFunctions(&context, v1::ListFunctionsRequest(), response);
  }

  grpc::Status CallbackListFunctions(v1::ListFunctionsResponse* response,
                                     v1::Functions::Stub* stub = nullptr) {
    std::unique_ptr<v1::Functions::Stub> own;
    if (stub == nullptr) stub = (own = OwnStub()).get();
    grpc::ClientContext context;
    context.set_deadline(Deadline());
    const v1::ListFunctionsRequest request;
    grpc::Status status;
    absl::Notification done;
    stub->async()->ListFunctions(&context, &request, response,
                                 [&](const grpc::Status& s) {
                                   status = s;
                                   done.Notify();
                                 });
    // A hang guard beyond the call's own deadline.
    if (!done.WaitForNotificationWithTimeout(absl::Seconds(90))) {
      ADD_FAILURE() << "the callback call never completed";
      context.TryCancel();
      done.WaitForNotification();  // before what it writes to goes away
    }
    return status;
  }

  grpc::Status CompletionQueueListFunctions(
      v1::ListFunctionsResponse* response,
      v1::Functions::Stub* stub = nullptr) {
    std::unique_ptr<v1::Functions::Stub> own;
    if (stub == nullptr) stub = (own = OwnStub()).get();
    grpc::CompletionQueue cq;
    grpc::ClientContext context;
    context.set_deadline(Deadline());
    grpc::Status status;
    auto call = stub->PrepareAsyncListFunctions(
        &context, v1::ListFunctionsRequest(), &cq);
    call->StartCall();
    int tag = 1;
    call->Finish(response, &status, &tag);
    void* got = nullptr;
    bool ok = false;
    // Next returns when the call ends; its deadline is the hang guard.
    EXPECT_TRUE(cq.Next(&got, &ok));
    EXPECT_EQ(got, &tag);
    EXPECT_TRUE(ok);
    cq.Shutdown();
    while (cq.Next(&got, &ok)) {
    }
    return status;
  }

  std::unique_ptr<v1::Functions::Stub> OwnStub() const {
    return v1::Functions::NewStub(plugin_->channel());
  }
  static std::chrono::system_clock::time_point Deadline() {
    return absl::ToChronoTime(absl::Now() + absl::Seconds(60));
  }

  std::string dir_;
  std::string deaths_file_;
  std::unique_ptr<Host> host_;
  std::shared_ptr<Plugin> plugin_;
};

// RetryMode::kAlways (the default): even the first call to a plugin that
// never died lives through more deaths than gRPC's attempts.
TEST_F(IdempotentRetryTest, BlockingCallLivesThroughMoreDeathsThanAttempts) {
  SetDeaths(8);  // gRPC alone gives up after 5 attempts
  v1::ListFunctionsResponse response;
  grpc::Status status = ListFunctions(&response);
  ASSERT_TRUE(status.ok()) << status.error_code() << " "
                           << status.error_message();
  ASSERT_EQ(response.functions_size(), 1);
  EXPECT_EQ(response.functions(0).name(), "echo");
  EXPECT_EQ(DeathsLeft(), 0) << "the call did not go through all the deaths";
}

class IdempotentRetryWhileUnstableTest : public IdempotentRetryTest {
 protected:
  RetryMode Mode() const override { return RetryMode::kWhileUnstable; }
};

// RetryMode::kWhileUnstable: a plugin that has not died since its launch:
// its calls are not taken over (no cost), so a call it kills more than 5 times
// in a row fails after gRPC's 5 attempts; those deaths open the window, and the
// next call lives through 8.
TEST_F(IdempotentRetryWhileUnstableTest,
       CallsToAStablePluginGetGrpcsAttemptsOnly) {
  SetDeaths(8);
  v1::ListFunctionsResponse response;
  grpc::Status status = ListFunctions(&response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE)
      << status.error_message();
  EXPECT_EQ(DeathsLeft(), 3) << "not exactly gRPC's 5 attempts";
  SetDeaths(8);  // now the window is open: more deaths than attempts
  status = ListFunctions(&response);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(DeathsLeft(), 0);
}

TEST_F(IdempotentRetryTest, NonIdempotentCallIsNotRetried) {
  SetDeaths(0);
  // Functions/Call is not marked idempotent: it goes through once, as is.
  auto stub = v1::Functions::NewStub(plugin_->channel());
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(30)));
  v1::CallRequest request;
  request.set_function("echo");
  request.add_args()->set_string_value("hi");
  v1::CallResponse response;
  grpc::Status status = stub->Call(&context, request, &response);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(response.result().string_value(), "hi");
}

TEST_F(IdempotentRetryTest, StoppedPluginFailsFastNamingIt) {
  SetDeaths(0);
  ASSERT_TRUE(plugin_->Stop().ok());
  v1::ListFunctionsResponse response;
  grpc::Status status = ListFunctions(&response);
  // UNAVAILABLE, not DEADLINE_EXCEEDED: the tombstone's answer is final, not
  // retried until the deadline.
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_NE(status.error_message().find("plugin dier is stopped"),
            std::string::npos)
      << status.error_message();
}

// A call that dies more often than the interceptor's rounds allow (20, each
// up to gRPC's 5 attempts) ends UNAVAILABLE, and its status says which
// plugin and what happened to it, as a call not taken over would: the
// status interceptor, before the retry interceptor, sees the final status
// of the call taken over.
TEST_F(IdempotentRetryTest, CallOutlivingTheRoundsFailsNamingThePlugin) {
  SetDeaths(1000);
  v1::ListFunctionsResponse response;
  grpc::Status status = ListFunctions(&response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(status.error_message().rfind("plugin dier", 0), 0u)
      << status.error_message();
  EXPECT_NE(status.error_message().find("; the call failed: "),
            std::string::npos)
      << status.error_message();
  const int deaths = 1000 - DeathsLeft();
  EXPECT_GT(deaths, 5) << "not taken over";
  EXPECT_LE(deaths, kMaxRetryRounds * 5) << "more rounds than allowed";
  SetDeaths(0);
}

TEST_F(IdempotentRetryTest, CallbackCallLivesThroughMoreDeathsThanAttempts) {
  SetDeaths(8);
  v1::ListFunctionsResponse response;
  const grpc::Status status = CallbackListFunctions(&response);
  ASSERT_TRUE(status.ok()) << status.error_code() << " "
                           << status.error_message();
  ASSERT_EQ(response.functions_size(), 1);
  EXPECT_EQ(response.functions(0).name(), "echo");
  EXPECT_EQ(DeathsLeft(), 0) << "the call did not go through all the deaths";
}

TEST_F(IdempotentRetryTest, CompletionQueueCallLivesThroughMoreDeaths) {
  SetDeaths(8);
  v1::ListFunctionsResponse response;
  const grpc::Status status = CompletionQueueListFunctions(&response);
  ASSERT_TRUE(status.ok()) << status.error_code() << " "
                           << status.error_message();
  ASSERT_EQ(response.functions_size(), 1);
  EXPECT_EQ(DeathsLeft(), 0) << "the call did not go through all the deaths";
}

// Callback calls started from the completions of earlier ones run on gRPC's
// callback threads. The retry interceptor once waited for its rounds there,
// holding those threads until none was left to complete the rounds: these
// chains of calls deadlocked (plugd-bench's throughput scenario hung).
TEST_F(IdempotentRetryTest, ChainedCallbackCallsDoNotHoldCallbackThreads) {
  SetDeaths(0);
  auto stub = v1::Functions::NewStub(plugin_->channel());
  constexpr int kChains = 8;
  constexpr int kCallsPerChain = 25;
  struct Chain {
    v1::Functions::Stub* stub;
    std::unique_ptr<grpc::ClientContext> context;
    v1::ListFunctionsRequest request;
    v1::ListFunctionsResponse response;
    int calls_left = kCallsPerChain;
    int ok_calls = 0;
    std::string first_error;
    absl::Notification done;
    void Next() {
      context = std::make_unique<grpc::ClientContext>();
      context->set_deadline(
          absl::ToChronoTime(absl::Now() + absl::Seconds(30)));
      response.Clear();
      stub->async()->ListFunctions(
          context.get(), &request, &response, [this](const grpc::Status& s) {
            if (s.ok() && response.functions_size() == 1) {
              ++ok_calls;
            } else if (first_error.empty()) {
              first_error = s.ok() ? "wrong response" : s.error_message();
            }
            if (--calls_left > 0) {
              Next();  // from the callback thread, as the bench does
            } else {
              done.Notify();
            }
          });
    }
  };
  std::vector<std::unique_ptr<Chain>> chains;
  for (int i = 0; i < kChains; ++i) {
    chains.push_back(std::make_unique<Chain>());
    chains.back()->stub = stub.get();
    chains.back()->Next();
  }
  for (auto& chain : chains) {
    // A hang guard: a deadlock never notifies.
    ASSERT_TRUE(chain->done.WaitForNotificationWithTimeout(absl::Seconds(60)))
        << "a chain of callback calls is stuck";
    EXPECT_EQ(chain->ok_calls, kCallsPerChain) << chain->first_error;
  }
}

// Records the thread on which each call through it reads its status: put
// after the retry interceptor, it sees the rounds of the calls taken over.
class StatusThreadRecorder : public grpc::experimental::Interceptor {
 public:
  explicit StatusThreadRecorder(std::vector<std::thread::id>* threads,
                                absl::Mutex* mu)
      : threads_(threads), mu_(mu) {}
  void Intercept(grpc::experimental::InterceptorBatchMethods* m) override {
    if (m->QueryInterceptionHookPoint(
            grpc::experimental::InterceptionHookPoints::POST_RECV_STATUS)) {
      absl::MutexLock lock(mu_);
      threads_->push_back(std::this_thread::get_id());
    }
    m->Proceed();
  }

 private:
  std::vector<std::thread::id>* threads_;
  absl::Mutex* mu_;
};

class StatusThreadRecorderFactory
    : public grpc::experimental::ClientInterceptorFactoryInterface {
 public:
  grpc::experimental::Interceptor* CreateClientInterceptor(
      grpc::experimental::ClientRpcInfo*) override {
    return new StatusThreadRecorder(&threads_, &mu_);
  }
  // The threads recorded since the last call.
  std::vector<std::thread::id> Take() {
    absl::MutexLock lock(&mu_);
    return std::exchange(threads_, {});
  }

 private:
  absl::Mutex mu_;
  std::vector<std::thread::id> threads_ ABSL_GUARDED_BY(mu_);
};

// A blocking call taken over runs its rounds on the caller's thread, which
// waits for it anyway: each round's answer is read there, as the call's
// own would be, not handed over from gRPC's callback threads (a wake-up
// more per call). A callback or completion-queue call's rounds complete on
// those threads: its caller must not be held.
TEST_F(IdempotentRetryTest, OnlyABlockingCallsRoundsRunOnTheCallersThread) {
  SetDeaths(2);
  auto* recorder = new StatusThreadRecorderFactory;  // owned by the channel
  std::vector<
      std::unique_ptr<grpc::experimental::ClientInterceptorFactoryInterface>>
      factories;
  factories.push_back(std::make_unique<IdempotentRetryInterceptorFactory>(
      "dier", std::set<std::string>{"/plugd.v1.Functions/ListFunctions"},
      absl::Seconds(60)));
  factories.emplace_back(recorder);
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  SetLocalReconnectArguments(&args);
  // As the host library's channels do: the rounds wait for the restarted
  // plugin rather than fail while it starts. No retry policy: one attempt
  // per round.
  args.SetServiceConfigJSON(
      R"({"methodConfig": [{"name": [{"service": "plugd.v1.Functions"}],)"
      R"( "waitForReady": true}]})");
  auto channel = grpc::experimental::CreateCustomChannelWithInterceptors(
      plugin_->target(), grpc::InsecureChannelCredentials(), args,
      std::move(factories));
  auto stub = v1::Functions::NewStub(channel);

  // Blocking: two rounds die with the plugin, a later one gets through.
  {
    v1::ListFunctionsResponse response;
    const grpc::Status status = ListFunctions(&response, stub.get());
    ASSERT_TRUE(status.ok()) << status.error_message();
    ASSERT_EQ(response.functions_size(), 1);
    EXPECT_EQ(DeathsLeft(), 0);
  }
  std::vector<std::thread::id> threads = recorder->Take();
  ASSERT_GE(threads.size(), 3u) << "one status per round";
  for (const std::thread::id& id : threads) {
    EXPECT_EQ(id, std::this_thread::get_id());
  }

  // From another thread: the rounds run on that one.
  std::thread::id other;
  grpc::Status other_status;
  std::thread caller([&] {
    other = std::this_thread::get_id();
    v1::ListFunctionsResponse response;
    other_status = ListFunctions(&response, stub.get());
  });
  caller.join();
  ASSERT_TRUE(other_status.ok()) << other_status.error_message();
  threads = recorder->Take();
  ASSERT_EQ(threads.size(), 1u);
  EXPECT_EQ(threads[0], other);

  // Callback: the round completes on a callback thread, this one waits.
  v1::ListFunctionsResponse response;
  const grpc::Status status = CallbackListFunctions(&response, stub.get());
  ASSERT_TRUE(status.ok()) << status.error_message();
  threads = recorder->Take();
  ASSERT_EQ(threads.size(), 1u);
  EXPECT_NE(threads[0], std::this_thread::get_id());

  // Completion queue: the caller polls its queue, but the round completes
  // on a callback thread; taking it for a blocking call would have run it
  // inside Finish.
  v1::ListFunctionsResponse cq_response;
  const grpc::Status cq_status =
      CompletionQueueListFunctions(&cq_response, stub.get());
  ASSERT_TRUE(cq_status.ok()) << cq_status.error_message();
  threads = recorder->Take();
  ASSERT_EQ(threads.size(), 1u);
  EXPECT_NE(threads[0], std::this_thread::get_id());
}

// ClientContext::TryCancel reaches a call that was taken over: the round in
// flight is cancelled and the call ends CANCELLED at once, blocking or
// callback, not at its deadline; a call cancelled before it starts ends
// CANCELLED without a round. The plugin holds ListFunctions until it is
// stopped; a FIFO it opens inside the method tells the test that the call
// has arrived.
TEST(IdempotentRetryCancelTest, TryCancelEndsATakenOverCall) {
  char dir[] = "/tmp/plugd-cancel-XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  const std::string fifo = std::string(dir) + "/arrived";
  absl::Cleanup remove_dir = [&] {
    unlink(fifo.c_str());
    rmdir(dir);
  };
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  HostOptions host_options;
  host_options.mutex_deadlock_detection = true;  // checks our locks
  auto host = Host::Create(host_options);
  ASSERT_TRUE(host.ok()) << host.status();
  PluginOptions options;
  options.name = "holder";
  options.command = {Bin("plugd-test-raw"), "--mode=hold-in-list-functions",
                     "--fifo=" + fifo};
  options.supervision = SupervisionOptions();  // RetryMode::kAlways
  // Without the cancel, a held call would end only here (or at its own
  // deadline, the same): DEADLINE_EXCEEDED after 90 s.
  options.call_timeout = absl::Seconds(90);
  auto plugin = (*host)->Launch(options);
  ASSERT_TRUE(plugin.ok()) << plugin.status();
  auto stub = v1::Functions::NewStub((*plugin)->channel());

  for (const bool blocking : {true, false}) {
    SCOPED_TRACE(blocking ? "blocking call" : "callback call");
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(90)));
    const v1::ListFunctionsRequest request;
    v1::ListFunctionsResponse response;
    grpc::Status status;
    absl::Notification done;
    std::thread caller;
    if (blocking) {
      caller = std::thread([&] {
        status = stub->ListFunctions(&context, request, &response);
        done.Notify();
      });
    } else {
      stub->async()->ListFunctions(&context, &request, &response,
                                   [&](const grpc::Status& s) {
                                     status = s;
                                     done.Notify();
                                   });
    }
    // Whatever fails below, the call ends (at the latest at its deadline)
    // before what it writes to goes away.
    absl::Cleanup finish = [&] {
      context.TryCancel();
      done.WaitForNotification();
      if (caller.joinable()) caller.join();
    };
    // The plugin writes a byte once the call is inside ListFunctions. The
    // poll timeout is a hang guard.
    const int fd = open(fifo.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    ASSERT_GE(fd, 0);
    pollfd p = {fd, POLLIN, 0};
    const int ready = poll(&p, 1, 60'000);
    char byte = 0;
    const ssize_t got = ready == 1 ? read(fd, &byte, 1) : 0;
    close(fd);
    ASSERT_EQ(ready, 1) << "the call did not reach the plugin";
    EXPECT_EQ(got, 1);

    context.TryCancel();
    // A hang guard well before the 90 s that end the call without the
    // cancel.
    ASSERT_TRUE(done.WaitForNotificationWithTimeout(absl::Seconds(30)))
        << "TryCancel did not end the call";
    EXPECT_EQ(status.error_code(), grpc::StatusCode::CANCELLED)
        << status.error_message();
  }

  // Cancelled before it starts: no round, CANCELLED.
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(90)));
  context.TryCancel();
  v1::ListFunctionsResponse response;
  const grpc::Status status =
      stub->ListFunctions(&context, v1::ListFunctionsRequest(), &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::CANCELLED)
      << status.error_message();

  host->reset();  // stops the plugin, which lets its held calls go
}

v1::ExitInfo Exit(bool signaled, int n, const std::string& killed_for = "") {
  v1::ExitInfo exit;
  exit.set_signaled(signaled);
  if (signaled) {
    exit.set_signal(n);
  } else {
    exit.set_code(n);
  }
  exit.set_text(absl::StrCat(signaled ? "signal " : "code ", n));
  exit.set_killed_for(killed_for);
  return exit;
}

// What counts as a crash (a request may have brought the plugin down), and
// who is told.
TEST(CrashCountTest, CountsCrashesAndHangsNotKillsAndTellsItsWatchers) {
  struct Listener : CrashListener {
    void OnCrash(uint64_t count) override { seen.push_back(count); }
    std::vector<uint64_t> seen;
  };
  CrashCount crashes;
  Listener a, b;
  crashes.Watch(&a);
  crashes.Watch(&b);
  crashes.Observe(Exit(true, SIGKILL));  // killed from outside
  crashes.Observe(Exit(true, SIGTERM));
  crashes.Observe(Exit(false, 0));
  crashes.Observe(Exit(false, 128 + SIGKILL));  // a shell's way to say it
  EXPECT_EQ(crashes.Get(), 0u);
  crashes.Observe(Exit(true, SIGSEGV));
  crashes.Observe(Exit(false, 3));
  crashes.Unwatch(&a);
  // SIGKILLed by the supervisor for not answering health checks: hung.
  crashes.Observe(Exit(true, SIGKILL, "liveness"));
  crashes.Observe(Exit(true, SIGKILL, "start_timeout"));
  crashes.Observe(Exit(true, SIGKILL, "unhealthy"));  // NOT_SERVING: not hung
  EXPECT_EQ(crashes.Get(), 4u);
  EXPECT_EQ(a.seen, (std::vector<uint64_t>{1, 2}));
  EXPECT_EQ(b.seen, (std::vector<uint64_t>{1, 2, 3, 4}));
  EXPECT_EQ(crashes.LastText(),
            "signal 9 as it answered no health check: hung");
  crashes.Unwatch(&b);
  crashes.Observe(Exit(true, SIGABRT));
  EXPECT_EQ(b.seen.size(), 4u);
}

}  // namespace
}  // namespace plugd::host
