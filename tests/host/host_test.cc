// Integration tests of the host library with real plugin processes.
#include "plugd/host/host.h"

#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <memory>
#include <optional>
#include <string>

#include "../plugins/lock_order.h"
#include "absl/cleanup/cleanup.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "gtest/gtest.h"
#include "kv/v1/kv.grpc.pb.h"
#include "plugd/common/value.h"
#include "plugd/v1/plugin.grpc.pb.h"
#include "test_util.h"

namespace plugd::host {
namespace {

using ::plugd::testing::Bin;
using ::plugd::testing::InvertLockOrder;
using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;

class HostTest : public ::testing::Test {
 protected:
  void SetUp() override {
    HostOptions host_options;
    host_options.mutex_deadlock_detection = true;  // checks our locks
    auto host = Host::Create(host_options);
    ASSERT_TRUE(host.ok()) << host.status();
    host_ = std::move(*host);
  }

  std::shared_ptr<Plugin> MustLaunch(PluginOptions options) {
    auto plugin = host_->Launch(std::move(options));
    EXPECT_TRUE(plugin.ok()) << plugin.status();
    return plugin.ok() ? *plugin : nullptr;
  }

  std::shared_ptr<Plugin> MustLaunch(const std::string& binary) {
    PluginOptions options;
    options.command = {Bin(binary)};
    return MustLaunch(options);
  }

  absl::Status LaunchRaw(const std::string& mode,
                         absl::Duration start_timeout = absl::Seconds(10)) {
    PluginOptions options;
    options.command = {Bin("plugd-test-raw"), "--mode=" + mode};
    options.name = "raw-" + mode;
    options.start_timeout = start_timeout;
    return host_->Launch(options).status();
  }

  std::unique_ptr<Host> host_;
};

// Connections open on `plugin`'s Unix socket now (the accepting ends).
int OpenConnections(const Plugin& plugin) {
  const std::string target = plugin.target();
  EXPECT_TRUE(absl::StartsWith(target, "unix:")) << target;
  return ::plugd::testing::AcceptedUnixConnections(target.substr(5));
}

TEST_F(HostTest, CallsFunctionsByName) {
  auto random = MustLaunch("plugd-random");
  auto arith = MustLaunch("plugd-arith");
  ASSERT_NE(random, nullptr);
  ASSERT_NE(arith, nullptr);
  EXPECT_EQ(random->name(), "random");
  EXPECT_EQ(arith->name(), "arith");

  for (int i = 0; i < 20; ++i) {
    auto n = random->Call("random", {NumberValue(3), NumberValue(5)});
    ASSERT_TRUE(n.ok()) << n.status();
    EXPECT_GE(n->number_value(), 3);
    EXPECT_LE(n->number_value(), 5);
  }
  auto sum = arith->Call("add", {NumberValue(1), NumberValue(2.5)});
  ASSERT_TRUE(sum.ok()) << sum.status();
  EXPECT_EQ(sum->number_value(), 3.5);

  auto found = host_->FindFunction("div");
  ASSERT_TRUE(found.ok()) << found.status();
  EXPECT_EQ(found->first, arith);
  EXPECT_EQ(found->second.name(), "div");
}

TEST_F(HostTest, LaunchReturnsTheCallChannelConnectedOnItsOnlyConnection) {
  // The launcher's connect check is made on the channel the application
  // calls on: no second connection is opened by the first call.
  auto arith = MustLaunch("plugd-arith");
  ASSERT_NE(arith, nullptr);
  EXPECT_EQ(arith->channel()->GetState(/*try_to_connect=*/false),
            GRPC_CHANNEL_READY);
  auto sum = arith->Call("add", {NumberValue(2), NumberValue(3)});
  ASSERT_TRUE(sum.ok()) << sum.status();
  EXPECT_EQ(sum->number_value(), 5);
  EXPECT_EQ(OpenConnections(*arith), 1);

  // Stop goes through it too, and errors still name the plugin.
  ASSERT_TRUE(arith->Stop().ok());
  auto after =
      arith->Call("add", {NumberValue(1), NumberValue(1)}, absl::Seconds(5));
  EXPECT_EQ(after.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(after.status().message()), HasSubstr("plugin arith"));
}

TEST_F(HostTest, SupervisedLaunchAsksOnTheSupervisorsConnectionAndConnects) {
  PluginOptions options;
  options.command = {Bin("plugd-arith")};
  options.supervision = SupervisionOptions();
  auto arith = MustLaunch(options);
  ASSERT_NE(arith, nullptr);
  // Launch started the application channel's connection; it did not wait
  // for the first call to do so.
  EXPECT_NE(arith->channel()->GetState(/*try_to_connect=*/false),
            GRPC_CHANNEL_IDLE);

  // The supervisor's own connection to the running instance answers
  // Control/Describe, the question Launch asks it for the plugin's
  // services.
  broker::Supervisor* supervisor = host_->supervisor();
  ASSERT_NE(supervisor, nullptr);
  absl::StatusOr<std::shared_ptr<grpc::Channel>> channel =
      supervisor->Channel("arith");
  ASSERT_TRUE(channel.ok()) << channel.status();
  auto stub = v1::Control::NewStub(*channel);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() +
                       std::chrono::seconds(10));
  v1::DescribeResponse described;
  grpc::Status status =
      stub->Describe(&context, v1::DescribeRequest(), &described);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_THAT(described.services(), ::testing::Contains("plugd.v1.Functions"));
  auto sum = arith->Call("add", {NumberValue(2), NumberValue(3)});
  ASSERT_TRUE(sum.ok()) << sum.status();
  EXPECT_EQ(sum->number_value(), 5);
  // Two connections open, the supervisor's and the application's, and no
  // other left over. (Whether Launch's Describe went over the supervisor's
  // connection is not visible here: a connection of its own would have
  // been closed by now; plugd-perf --mode coldstart --supervised measures
  // the difference, docs/broker.md "Embedded mode".)
  EXPECT_EQ(OpenConnections(*arith), 2);

  EXPECT_EQ(supervisor->Channel("nope").status().code(),
            absl::StatusCode::kNotFound);
  ASSERT_TRUE(arith->Stop().ok());
  absl::StatusOr<std::shared_ptr<grpc::Channel>> stopped =
      supervisor->Channel("arith");
  EXPECT_EQ(stopped.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(stopped.status().message()),
              AllOf(HasSubstr("plugin arith"), HasSubstr("no running")));
}

TEST_F(HostTest, FunctionErrorsAreClear) {
  auto arith = MustLaunch("plugd-arith");
  ASSERT_NE(arith, nullptr);
  auto zero = arith->Call("div", {NumberValue(1), NumberValue(0)});
  EXPECT_EQ(zero.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(zero.status().message()),
              HasSubstr("division by zero"));

  auto bad = arith->Call("sub", {NumberValue(1), StringValue("two")});
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(bad.status().message()),
              AllOf(HasSubstr("sub"), HasSubstr("two")));

  auto unknown = arith->Call("frobnicate", {});
  EXPECT_EQ(unknown.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(
      std::string(unknown.status().message()),
      AllOf(HasSubstr("frobnicate"), HasSubstr("add"), HasSubstr("div")));

  auto missing = host_->FindFunction("frobnicate");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(missing.status().message()), HasSubstr("add"));
}

TEST_F(HostTest, TextThatIsNotUtf8IsRefusedNamingWhereItIs) {
  // protobuf would send it with an error logged and the other side would
  // fail to parse it, saying nothing of why.
  auto arith = MustLaunch("plugd-arith");
  ASSERT_NE(arith, nullptr);
  auto bad = arith->Call("add", {NumberValue(1), StringValue("\xff")});
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(bad.status().message()),
              AllOf(HasSubstr("add: argument 2 is not valid UTF-8 text"),
                    HasSubstr("byte 0xff at offset 0"), HasSubstr("base64")));
  auto bad_name = arith->Call("a\xc3", {});
  EXPECT_EQ(bad_name.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(bad_name.status().message()),
              HasSubstr("the function name is not valid UTF-8 text"));
  auto sum = arith->Call("add", {NumberValue(1), NumberValue(2)});
  ASSERT_TRUE(sum.ok()) << sum.status();
  EXPECT_EQ(sum->number_value(), 3);

  // A function answering such a string: the SDK says so instead of sending
  // a response the host cannot parse.
  auto sdk = MustLaunch("plugd-test-sdk");
  ASSERT_NE(sdk, nullptr);
  auto answer = sdk->Call("not_utf8", {});
  EXPECT_EQ(answer.status().code(), absl::StatusCode::kInternal);
  EXPECT_THAT(std::string(answer.status().message()),
              HasSubstr("not_utf8: the result is not valid UTF-8 text (byte "
                        "0xe9 at offset 3 of [1])"));
  auto echo = sdk->Call("echo", {StringValue("caf\xc3\xa9")});
  ASSERT_TRUE(echo.ok()) << echo.status();
  EXPECT_EQ(echo->string_value(), "caf\xc3\xa9");
}

TEST_F(HostTest, SdkPluginsRunWithoutAbseilsDeadlockDetectorUnlessAsked) {
  // Debian's Abseil checks every lock for potential deadlocks (and aborts
  // on a lock-order inversion); the SDK turns that off, as it costs ~12,000
  // instructions per call on gRPC's own locks.
  auto sdk = MustLaunch("plugd-test-sdk");
  ASSERT_NE(sdk, nullptr);
  auto ok = sdk->Call("lock_order_inversion", {});
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(ok->string_value(), "ok");

  // PluginInfo::mutex_deadlock_detection keeps it: the same call ends the
  // plugin, and the host says so.
  PluginOptions options;
  options.name = "sdk-detecting";
  options.command = {Bin("plugd-test-sdk"), "--mutex-deadlock-detection"};
  auto detecting = MustLaunch(options);
  ASSERT_NE(detecting, nullptr);
  auto aborted = detecting->Call("lock_order_inversion", {});
  ASSERT_FALSE(aborted.ok());
  EXPECT_EQ(aborted.status().code(), absl::StatusCode::kUnavailable)
      << aborted.status();
  EXPECT_THAT(std::string(aborted.status().message()), HasSubstr("SIGABRT"));
}

// In a child process (a death test re-running this binary): sets the
// detector's mode to `start_on` (aborting on a cycle) or off, creates a Host
// with `detection`, destroys it (the mode stays), inverts a lock order and
// exits 0 if nothing stopped it.
void CreateHostAndInvertLockOrder(bool start_on,
                                  std::optional<bool> detection) {
  absl::SetMutexDeadlockDetectionMode(start_on
                                          ? absl::OnDeadlockCycle::kAbort
                                          : absl::OnDeadlockCycle::kIgnore);
  HostOptions options;
  options.mutex_deadlock_detection = detection;
  auto host = Host::Create(options);
  if (!host.ok()) {
    std::fprintf(stderr, "Host::Create: %s\n",
                 host.status().ToString().c_str());
    _exit(2);
  }
  host->reset();  // removes its socket directory before a possible abort
  InvertLockOrder();
  _exit(0);
}

TEST(HostCreateTest, TurnsAbseilsDeadlockDetectorOffUnlessAsked) {
  // Debian's Abseil checks every lock for potential deadlocks, gRPC's own
  // locks included; Host::Create turns that off for the host's process by
  // default, on (aborting on a cycle) when asked, and leaves the
  // application's own choice alone with std::nullopt.
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(CreateHostAndInvertLockOrder(/*start_on=*/true, false),
              ::testing::ExitedWithCode(0), "");
  EXPECT_DEATH(CreateHostAndInvertLockOrder(/*start_on=*/false, true),
               "Potential Mutex deadlock");
  EXPECT_DEATH(CreateHostAndInvertLockOrder(/*start_on=*/true, std::nullopt),
               "Potential Mutex deadlock");
  EXPECT_EXIT(CreateHostAndInvertLockOrder(/*start_on=*/false, std::nullopt),
              ::testing::ExitedWithCode(0), "");
}

// Once a Host::Create has turned the detector off, a later one asking for it
// leaves it off (turned on while gRPC's threads hold locks taken without
// it, it would abort on their release) and says so.
void CreateHostsOffThenOn() {
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kAbort);
  HostOptions off;
  off.mutex_deadlock_detection = false;
  auto first = Host::Create(off);
  HostOptions on;
  on.mutex_deadlock_detection = true;
  auto second = Host::Create(on);
  if (!first.ok() || !second.ok()) _exit(2);
  first->reset();
  second->reset();
  InvertLockOrder();
  _exit(0);
}

TEST(HostCreateTest, KeepsTheDeadlockDetectorOffOnceTurnedOff) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(CreateHostsOffThenOn(), ::testing::ExitedWithCode(0),
              "an earlier Host::Create of this process turned Abseil's mutex "
              "deadlock detector off");
}

TEST_F(HostTest, PoisonIdempotentRequestDoesNotTakeThePluginDown) {
  // A request that crashes the plugin every time, on a method marked
  // idempotent. Retried like any other, it would crash instance after
  // instance until the supervisor gave up on the plugin (default: more than
  // 5 restarts in 60 s: failed). The host library stops a call once the
  // plugin has crashed (not been killed) twice under it: the second crash's
  // exit event cancels the attempt in flight, gRPC's own retries of it
  // included. The call fails and says why, and the plugin lives on.
  PluginOptions options;
  options.name = "poison";
  options.command = {Bin("plugd-test-sdk"), "--mutex-deadlock-detection"};
  options.supervision = SupervisionOptions();
  options.idempotent_methods = {"plugd.v1.Functions/Call"};
  auto plugin = MustLaunch(options);
  ASSERT_NE(plugin, nullptr);
  auto result = plugin->Call("lock_order_inversion", {});
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(result.status().message()),
              AllOf(HasSubstr("plugin poison crashed or hung 2 times"),
                    HasSubstr("killed by signal 6 (SIGABRT)"),
                    HasSubstr("not retried again, as the request may be "
                              "what crashes it"),
                    HasSubstr("the attempt in flight was cancelled")));
  // The same as a callback call, whose rounds are callback calls chained on
  // gRPC's threads (the crash events cancel them from the supervisor's).
  {
    auto stub = v1::Functions::NewStub(plugin->channel());
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(60)));
    v1::CallRequest request;
    request.set_function("lock_order_inversion");
    v1::CallResponse response;
    absl::Notification done;
    grpc::Status status;
    stub->async()->Call(&context, &request, &response,
                        [&](const grpc::Status& s) {
                          status = s;
                          done.Notify();
                        });
    // Whatever fails below, the call ends before what it writes to goes.
    absl::Cleanup finish = [&] {
      context.TryCancel();
      done.WaitForNotification();
    };
    // A hang guard: without the limit the call would end at its deadline.
    ASSERT_TRUE(done.WaitForNotificationWithTimeout(absl::Seconds(50)));
    EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE);
    EXPECT_THAT(status.error_message(),
                AllOf(HasSubstr("plugin poison crashed or hung 2 times"),
                      HasSubstr("the attempt in flight was cancelled")));
  }
  // Still running: the next call (a harmless one) is answered.
  auto echo = plugin->Call("echo", {plugd::StringValue("still here")});
  ASSERT_TRUE(echo.ok()) << echo.status();
  EXPECT_EQ(echo->string_value(), "still here");
  auto status = host_->supervisor()->Get("poison");
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_NE(status->state(), v1::PLUGIN_STATE_FAILED);
  // Two crashes per call, then the restart that answered the echo: the
  // supervisor tells the host of an exit before it schedules the restart,
  // so no third instance got a request (before the cancellation: 5 crashes
  // per call, all of gRPC's attempts of the first round; the second call
  // would have failed the plugin).
  EXPECT_EQ(status->restarts(), 4u);
}

TEST_F(HostTest, HangingIdempotentRequestIsNotRetriedForever) {
  // A request that hangs the plugin every time: each instance is killed for
  // not answering health checks (liveness_timeout) and the call retried on
  // the next, until its deadline, each kill a restart from the budget. A
  // liveness kill counts as a crash: the second one stops the call.
  PluginOptions options;
  options.name = "hang";
  options.command = {Bin("plugd-test-sdk")};
  SupervisionOptions supervision;
  supervision.health_interval = absl::Milliseconds(100);
  supervision.liveness_timeout = absl::Milliseconds(500);
  options.supervision = supervision;
  // A new instance may get the retried request before its start is over:
  // it then hangs in the connect check, which also counts.
  options.start_timeout = absl::Seconds(2);
  options.idempotent_methods = {"plugd.v1.Functions/Call"};
  auto plugin = MustLaunch(options);
  ASSERT_NE(plugin, nullptr);
  auto result = plugin->Call("hang", {});
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(result.status().message()),
              AllOf(HasSubstr("plugin hang crashed or hung 2 times"),
                    HasSubstr("as it answered no health check: hung"),
                    HasSubstr("the attempt in flight was cancelled")));
  auto echo = plugin->Call("echo", {plugd::StringValue("still here")});
  ASSERT_TRUE(echo.ok()) << echo.status();
  auto status = host_->supervisor()->Get("hang");
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_NE(status->state(), v1::PLUGIN_STATE_FAILED);
  // Two hangs (a liveness kill, or a start whose connect check timed out);
  // more restarts only if a healthy start or check was too slow for these
  // short timeouts on a loaded machine (the poison test above checks that
  // no third instance gets the request).
  EXPECT_GE(status->restarts(), 2u);
}

TEST_F(HostTest, DescribeReportsServicesAndFunctions) {
  auto random = MustLaunch("plugd-random");
  ASSERT_NE(random, nullptr);
  auto info = random->Describe();
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->name(), "random");
  EXPECT_EQ(info->protocol_version(), 1u);
  EXPECT_EQ(info->pid(), random->pid());
  EXPECT_THAT(info->services(),
              ::testing::IsSupersetOf({"plugd.v1.Control", "plugd.v1.Functions",
                                       "grpc.health.v1.Health"}));
  ASSERT_GE(info->functions_size(), 1);
  EXPECT_EQ(info->functions(0).name(), "random");
}

TEST_F(HostTest, TypedCallsIncludingAServerStream) {
  std::string dir = host_->socket_dir();
  PluginOptions options;
  options.command = {Bin("plugd-kv"), "--data", dir + "/kv.pb"};
  auto plugin = MustLaunch(options);
  ASSERT_NE(plugin, nullptr);
  auto kv = kv::v1::KV::NewStub(plugin->channel());
  for (const auto& [key, value] :
       std::vector<std::pair<std::string, std::string>>{
           {"fruit/apple", "red"},
           {"fruit/kiwi", "green"},
           {"veg/leek", "white"}}) {
    grpc::ClientContext context;
    kv::v1::PutRequest request;
    request.set_key(key);
    request.set_value(value);
    kv::v1::PutResponse response;
    ASSERT_TRUE(kv->Put(&context, request, &response).ok());
  }
  grpc::ClientContext context;
  kv::v1::ScanRequest scan;
  scan.set_prefix("fruit/");
  auto reader = kv->Scan(&context, scan);
  std::vector<std::string> seen;
  kv::v1::Entry entry;
  while (reader->Read(&entry))
    seen.push_back(entry.key() + "=" + entry.value());
  ASSERT_TRUE(reader->Finish().ok());
  EXPECT_THAT(seen,
              ::testing::ElementsAre("fruit/apple=red", "fruit/kiwi=green"));

  grpc::ClientContext get_context;
  kv::v1::GetRequest get;
  get.set_key("nope");
  kv::v1::GetResponse got;
  EXPECT_EQ(kv->Get(&get_context, get, &got).error_code(),
            grpc::StatusCode::NOT_FOUND);
}

TEST_F(HostTest, OversizedMessageNamesTheOption) {
  std::string dir = host_->socket_dir();
  PluginOptions options;
  options.command = {Bin("plugd-kv"), "--data", dir + "/kv.pb"};
  options.max_message_bytes = 1 << 20;
  auto plugin = MustLaunch(options);
  ASSERT_NE(plugin, nullptr);
  auto kv = kv::v1::KV::NewStub(plugin->channel());
  grpc::ClientContext context;
  kv::v1::PutRequest request;
  request.set_key("big");
  request.set_value(std::string(2 << 20, 'x'));
  kv::v1::PutResponse response;
  grpc::Status status = kv->Put(&context, request, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(status.error_message(), HasSubstr("max_message_bytes"));
  // The plugin is still fine afterwards.
  EXPECT_TRUE(plugin->Describe().ok());
}

TEST_F(HostTest, PluginKilledMidSessionFailsFastNamingIt) {
  auto arith = MustLaunch("plugd-arith");
  ASSERT_NE(arith, nullptr);
  ASSERT_TRUE(arith->Call("add", {NumberValue(1)}).ok());
  pid_t pid = arith->pid();
  ASSERT_EQ(kill(pid, SIGKILL), 0);
  ASSERT_TRUE(arith->WaitForExit(absl::Seconds(10)).has_value());
  absl::Time start = absl::Now();
  auto result = arith->Call("add", {NumberValue(1)}, absl::Seconds(20));
  EXPECT_EQ(result.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(result.status().message()),
              AllOf(HasSubstr("plugin arith"), HasSubstr(absl::StrCat(pid)),
                    HasSubstr("killed by signal 9")));
  // Fails fast: far below the call's deadline (a hang guard, not a timing
  // claim: a wait-for-ready call would take the whole 20 s).
  EXPECT_LT(absl::Now() - start, absl::Seconds(10));

  // A raw generated stub on the same channel says the same.
  auto kv = kv::v1::KV::NewStub(arith->channel());
  grpc::ClientContext context;
  kv::v1::GetRequest request;
  kv::v1::GetResponse response;
  grpc::Status status = kv->Get(&context, request, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_THAT(status.error_message(), HasSubstr("killed by signal 9"));

  // So does the application's own health Check: only the launcher's calls
  // of that method (its connect check) are left as gRPC says them.
  auto health = grpc::health::v1::Health::NewStub(arith->channel());
  grpc::ClientContext check_context;
  grpc::health::v1::HealthCheckRequest check;
  grpc::health::v1::HealthCheckResponse health_response;
  grpc::Status checked = health->Check(&check_context, check, &health_response);
  EXPECT_EQ(checked.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_THAT(checked.error_message(), AllOf(HasSubstr("plugin arith"),
                                             HasSubstr("killed by signal 9")));
}

TEST_F(HostTest, StopIsGracefulAndIdempotent) {
  auto random = MustLaunch("plugd-random");
  ASSERT_NE(random, nullptr);
  pid_t pid = random->pid();
  auto first = random->Stop();
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_TRUE(first->success()) << first->ToString();
  EXPECT_FALSE(random->running());
  EXPECT_FALSE(plugd::testing::PidAlive(pid));
  auto second = random->Stop();
  ASSERT_TRUE(second.ok());
  EXPECT_EQ(second->ToString(), first->ToString());
}

TEST_F(HostTest, DuplicateNamesAreRefused) {
  ASSERT_NE(MustLaunch("plugd-random"), nullptr);
  PluginOptions options;
  options.command = {Bin("plugd-random")};
  auto again = host_->Launch(options);
  EXPECT_EQ(again.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_THAT(std::string(again.status().message()), HasSubstr("random"));
}

TEST_F(HostTest, BadPluginsGiveClearErrors) {
  absl::Status garbage = LaunchRaw("garbage");
  EXPECT_THAT(std::string(garbage.message()), HasSubstr("\"hello world\""));

  absl::Status early = LaunchRaw("exit-early");
  EXPECT_THAT(std::string(early.message()), HasSubstr("exited with code 3"));

  absl::Status segv = LaunchRaw("segv");
  EXPECT_THAT(std::string(segv.message()), HasSubstr("SIGSEGV"));

  absl::Status silent = LaunchRaw("silent", absl::Seconds(1));
  EXPECT_EQ(silent.code(), absl::StatusCode::kDeadlineExceeded);

  absl::Status core = LaunchRaw("bad-core");
  EXPECT_EQ(core.code(), absl::StatusCode::kFailedPrecondition);

  absl::Status app = LaunchRaw("bad-app");
  EXPECT_EQ(app.code(), absl::StatusCode::kFailedPrecondition);

  absl::Status address = LaunchRaw("bad-address");
  EXPECT_EQ(address.code(), absl::StatusCode::kUnavailable);
  // The connect check runs on the application's channel; its failure is
  // the launcher's message, not rewritten by the channel's interceptor.
  EXPECT_THAT(std::string(address.message()),
              HasSubstr("plugin raw-bad-address announced unix:"));
  EXPECT_THAT(std::string(address.message()),
              Not(HasSubstr("the call failed")));

  for (const absl::Status& s :
       {garbage, early, segv, silent, core, app, address}) {
    EXPECT_FALSE(s.ok());
    EXPECT_THAT(std::string(s.message()), HasSubstr("plugin raw-")) << s;
  }
}

TEST_F(HostTest, NoCommonVersionIsAClearError) {
  PluginOptions options;
  options.command = {Bin("plugd-random")};
  options.protocol_versions = {7, 8};
  absl::Status status = host_->Launch(options).status();
  EXPECT_FALSE(status.ok());
  EXPECT_THAT(
      std::string(status.message()),
      AllOf(HasSubstr("no protocol version in common"), HasSubstr("7,8")));
}

TEST(HostKilled, ItsPluginsAreGoneShortlyAfter) {
  plugd::testing::Child host(
      {Bin("plugd-test-host"), Bin("plugd-random"), Bin("plugd-arith")});
  std::vector<pid_t> pids;
  std::string line;
  while (host.ReadLine(&line, absl::Seconds(30)) && line != "ready") {
    std::vector<std::string> parts = absl::StrSplit(line, ' ');
    int pid = 0;
    ASSERT_EQ(parts.size(), 2u) << line;
    ASSERT_TRUE(absl::SimpleAtoi(parts[1], &pid)) << line;
    pids.push_back(pid);
  }
  ASSERT_EQ(line, "ready");
  ASSERT_EQ(pids.size(), 2u);
  for (pid_t pid : pids) EXPECT_TRUE(plugd::testing::PidAlive(pid));
  host.Kill();  // SIGKILL: no chance to clean up
  for (pid_t pid : pids) {
    EXPECT_TRUE(plugd::testing::WaitForPidGone(pid, absl::Seconds(10)))
        << "plugin " << pid << " outlived its host";
  }
}

}  // namespace
}  // namespace plugd::host

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  plugd::testing::InstallNoLeftoverProcessesCheck();
  return RUN_ALL_TESTS();
}
