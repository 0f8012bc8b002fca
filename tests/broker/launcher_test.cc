// The launcher against real processes: plugd-test-raw in its --mode=s.
#include "plugd/broker/launcher.h"

#include <dirent.h>
#include <fcntl.h>
#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "gtest/gtest.h"
#include "plugd/broker/event_loop.h"
#include "plugd/broker/socket.h"
#include "plugd/v1/plugin.grpc.pb.h"
#include "test_util.h"

namespace plugd::broker {
namespace {

using ::plugd::broker::testing::ChildrenOfThisProcess;
using ::plugd::broker::testing::ProcessGone;
using ::plugd::broker::testing::WaitForLine;
using ::plugd::broker::testing::WaitForOutputCondition;
using ::testing::HasSubstr;

// Hang guards only: every wait returns as soon as its event happens.
constexpr absl::Duration kHangGuard = absl::Seconds(20);

bool Exists(const std::string& path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0;
}

class LauncherTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::string> dir = MakeSocketDir();
    ASSERT_TRUE(dir.ok()) << dir.status();
    dir_ = *dir;
  }

  void TearDown() override {
    plugins_.clear();  // destructors stop what is still running
    for (pid_t pid : pids_) {
      EXPECT_TRUE(ProcessGone(pid)) << "pid " << pid << " is still running";
    }
    // No child left: not running, not a zombie.
    EXPECT_TRUE(ChildrenOfThisProcess().empty())
        << "children left: " << ChildrenOfThisProcess().size();
    RemoveSocketDir(dir_);
  }

  LaunchOptions Options(const std::string& mode) {
    LaunchOptions options;
    options.name = mode;
    options.command = {PLUGD_TEST_RAW, "--mode=" + mode};
    options.socket_path = absl::StrCat(dir_, "/", mode, ".sock");
    options.start_timeout = absl::Seconds(10);
    options.stop_grace = absl::Seconds(2);
    // Keep test output readable: lines go to the ring only.
    options.output.sink = [](const std::string&, const OutputLine&) {};
    return options;
  }

  absl::StatusOr<std::shared_ptr<PluginProcess>> Launch(LaunchOptions options) {
    absl::StatusOr<std::shared_ptr<PluginProcess>> plugin =
        PluginProcess::Launch(loop_, std::move(options));
    if (plugin.ok()) {
      pids_.insert((*plugin)->pid());
      plugins_.push_back(*plugin);
    }
    return plugin;
  }

  absl::Status LaunchError(LaunchOptions options) {
    absl::StatusOr<std::shared_ptr<PluginProcess>> plugin =
        Launch(std::move(options));
    if (plugin.ok()) return absl::OkStatus();
    if (std::getenv("PLUGD_TEST_VERBOSE") != nullptr) {
      std::fprintf(stderr, "launch error: %s\n",
                   plugin.status().ToString().c_str());
    }
    return plugin.status();
  }

  EventLoop loop_;
  std::string dir_;
  std::set<pid_t> pids_;
  std::vector<std::shared_ptr<PluginProcess>> plugins_;
};

TEST_F(LauncherTest, GoodPluginHandshakesAndServes) {
  LaunchOptions options = Options("ok");
  options.name = "good";
  options.env["PLUGD_TEST_EXTRA"] = "extra-value";
  auto plugin = Launch(options);
  ASSERT_TRUE(plugin.ok()) << plugin.status();
  PluginProcess& p = **plugin;

  EXPECT_GT(p.pid(), 0);
  EXPECT_TRUE(p.running());
  EXPECT_EQ(p.name(), "good");
  EXPECT_EQ(p.handshake().core_version, 1u);
  EXPECT_EQ(p.handshake().app_version, 1u);
  EXPECT_EQ(p.handshake().network, "unix");
  EXPECT_EQ(p.handshake().address, options.socket_path);
  EXPECT_EQ(p.handshake().protocol, "grpc");
  EXPECT_EQ(::getpgid(p.pid()), p.pid());  // its own process group

  auto stub = v1::Control::NewStub(grpc::CreateChannel(
      p.handshake().GrpcTarget(), grpc::InsecureChannelCredentials()));
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + kHangGuard));
  v1::DescribeResponse describe;
  grpc::Status status = stub->Describe(&context, {}, &describe);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(describe.name(), "good");  // PLUGD_PLUGIN_NAME
  EXPECT_EQ(describe.pid(), p.pid());

  // The environment it got.
  std::ifstream environ_file(absl::StrCat("/proc/", p.pid(), "/environ"));
  std::string environ_text((std::istreambuf_iterator<char>(environ_file)),
                           std::istreambuf_iterator<char>());
  std::vector<std::string> env = absl::StrSplit(environ_text, '\0');
  auto has = [&](const std::string& entry) {
    return std::find(env.begin(), env.end(), entry) != env.end();
  };
  EXPECT_TRUE(has("PLUGD_TEST_EXTRA=extra-value"));
  EXPECT_TRUE(has(absl::StrCat("PLUGD_SOCKET=", options.socket_path)));
  EXPECT_TRUE(has("PLUGD_PROTOCOL_VERSIONS=1"));
  EXPECT_TRUE(has("PLUGD_SHUTDOWN_GRACE_MS=2000"));
  EXPECT_TRUE(has(absl::StrCat("PLUGD_MAGIC_COOKIE=", kMagicCookieValue)));
}

// The connect check's connection is kept as channel(), which the supervisor
// uses for everything it asks the plugin (DaemonTest.
// BrokerHoldsOneConnectionPerPlugin counts the connections).
TEST_F(LauncherTest, TheConnectCheckConnectionIsKeptAsTheBrokersChannel) {
  auto plugin = Launch(Options("ok"));
  ASSERT_TRUE(plugin.ok()) << plugin.status();
  PluginProcess& p = **plugin;
  std::shared_ptr<grpc::Channel> channel = p.channel();
  ASSERT_NE(channel, nullptr);
  EXPECT_EQ(channel, p.channel());  // the same channel every time
  EXPECT_EQ(channel->GetState(/*try_to_connect=*/false), GRPC_CHANNEL_READY);

  auto stub = v1::Control::NewStub(channel);
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + kHangGuard));
  v1::DescribeResponse describe;
  grpc::Status status = stub->Describe(&context, {}, &describe);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(describe.pid(), p.pid());

  // Stop's Control.Shutdown goes over it too.
  EXPECT_TRUE(p.Stop().success());
}

TEST_F(LauncherTest, MakeChannelMakesTheConnectCheckChannelAndItIsKept) {
  LaunchOptions options = Options("ok");
  std::vector<std::string> targets;
  std::shared_ptr<grpc::Channel> made;
  options.make_channel = [&](const std::string& target) {
    targets.push_back(target);
    made = grpc::CreateChannel(target, grpc::InsecureChannelCredentials());
    return made;
  };
  auto plugin = Launch(std::move(options));
  ASSERT_TRUE(plugin.ok()) << plugin.status();
  PluginProcess& p = **plugin;
  ASSERT_EQ(targets.size(), 1u);
  EXPECT_EQ(targets[0], p.handshake().GrpcTarget());
  EXPECT_EQ(p.channel(), made);
  EXPECT_EQ(made->GetState(/*try_to_connect=*/false), GRPC_CHANNEL_READY);
  EXPECT_TRUE(p.Stop().success());  // Control.Shutdown over it
}

// Records every call started on a channel, as a host's interceptor factory
// sees it: its method and whether it is one of the launcher's own calls.
class CallRecorder
    : public grpc::experimental::ClientInterceptorFactoryInterface {
 public:
  using Call = std::pair<std::string, bool>;
  grpc::experimental::Interceptor* CreateClientInterceptor(
      grpc::experimental::ClientRpcInfo* info) override {
    std::lock_guard<std::mutex> lock(mu_);
    calls_.emplace_back(info->method(), IsLauncherCall(info->client_context()));
    return nullptr;
  }
  std::vector<Call> calls() {
    std::lock_guard<std::mutex> lock(mu_);
    return calls_;
  }

 private:
  std::mutex mu_;
  std::vector<Call> calls_;
};

TEST_F(LauncherTest, ItsOwnCallsOnAMadeChannelAreToldFromTheApplications) {
  LaunchOptions options = Options("ok");
  CallRecorder* recorder = nullptr;  // owned by the channel
  options.make_channel = [&](const std::string& target) {
    auto factory = std::make_unique<CallRecorder>();
    recorder = factory.get();
    std::vector<
        std::unique_ptr<grpc::experimental::ClientInterceptorFactoryInterface>>
        factories;
    factories.push_back(std::move(factory));
    return grpc::experimental::CreateCustomChannelWithInterceptors(
        target, grpc::InsecureChannelCredentials(), grpc::ChannelArguments(),
        std::move(factories));
  };
  auto plugin = Launch(std::move(options));
  ASSERT_TRUE(plugin.ok()) << plugin.status();
  ASSERT_NE(recorder, nullptr);
  // The application's own health Check, on the same channel.
  auto health = grpc::health::v1::Health::NewStub((*plugin)->channel());
  grpc::ClientContext context;
  grpc::health::v1::HealthCheckRequest request;
  grpc::health::v1::HealthCheckResponse response;
  health->Check(&context, request, &response);
  EXPECT_TRUE((*plugin)->Stop().success());  // Control.Shutdown
  using Call = CallRecorder::Call;
  EXPECT_THAT(recorder->calls(),
              ::testing::ElementsAre(
                  Call{"/grpc.health.v1.Health/Check", true},  // connect check
                  Call{"/grpc.health.v1.Health/Check", false},
                  Call{"/plugd.v1.Control/Shutdown", true}));
}

TEST_F(LauncherTest, NoHostDescriptorLeaksIntoThePlugin) {
  std::string marker = dir_ + "/leak-marker";
  int fd = ::open(marker.c_str(), O_CREAT | O_RDWR, 0600);  // no O_CLOEXEC
  ASSERT_GE(fd, 0);
  auto plugin = Launch(Options("ok"));
  ::close(fd);
  ASSERT_TRUE(plugin.ok()) << plugin.status();
  std::string fd_dir = absl::StrCat("/proc/", (*plugin)->pid(), "/fd");
  std::unique_ptr<DIR, int (*)(DIR*)> dir(::opendir(fd_dir.c_str()),
                                          ::closedir);
  ASSERT_NE(dir, nullptr);
  while (struct dirent* entry = ::readdir(dir.get())) {
    char target[512] = {};
    std::string link = absl::StrCat(fd_dir, "/", entry->d_name);
    ssize_t n = ::readlink(link.c_str(), target, sizeof(target) - 1);
    if (n > 0) {
      EXPECT_NE(std::string(target, n), marker) << "leaked as " << link;
    }
  }
}

TEST_F(LauncherTest, StopCallsShutdownAndTheExitCodeIsZero) {
  auto plugin = Launch(Options("ok"));
  ASSERT_TRUE(plugin.ok()) << plugin.status();
  std::string socket = (*plugin)->options().socket_path;
  ExitStatus status = (*plugin)->Stop();
  EXPECT_TRUE(status.success()) << status.ToString();
  EXPECT_FALSE((*plugin)->running());
  ExitStatus again = (*plugin)->Stop();  // idempotent
  EXPECT_EQ(again.ToString(), status.ToString());
  EXPECT_FALSE(Exists(socket));
}

TEST_F(LauncherTest, ConcurrentStopsAllGetTheSameStatus) {
  auto plugin = Launch(Options("ok"));
  ASSERT_TRUE(plugin.ok()) << plugin.status();
  std::vector<std::future<ExitStatus>> stops;
  for (int i = 0; i < 4; ++i) {
    stops.push_back(
        std::async(std::launch::async, [p = *plugin] { return p->Stop(); }));
  }
  std::promise<ExitStatus> async_done;
  (*plugin)->AsyncStop(std::nullopt,
                       [&](const ExitStatus& s) { async_done.set_value(s); });
  for (auto& stop : stops) EXPECT_TRUE(stop.get().success());
  auto future = async_done.get_future();
  ASSERT_EQ(future.wait_for(absl::ToChronoNanoseconds(kHangGuard)),
            std::future_status::ready);
  EXPECT_TRUE(future.get().success());
}

TEST_F(LauncherTest, GarbageInsteadOfAHandshake) {
  absl::Status status = LaunchError(Options("garbage"));
  EXPECT_EQ(status.code(), absl::StatusCode::kUnknown) << status;
  EXPECT_THAT(std::string(status.message()),
              HasSubstr("plugin garbage printed \"hello world\" instead of a "
                        "handshake line"));
  EXPECT_THAT(std::string(status.message()),
              HasSubstr("CORE|APP|NETWORK|ADDRESS|PROTOCOL"));
  EXPECT_THAT(std::string(status.message()), HasSubstr("plugd plugin?"));
}

TEST_F(LauncherTest, SilentPluginTimesOut) {
  LaunchOptions options = Options("silent");
  options.start_timeout = absl::Seconds(1);
  absl::Status status = LaunchError(options);
  EXPECT_EQ(status.code(), absl::StatusCode::kDeadlineExceeded) << status;
  EXPECT_THAT(std::string(status.message()),
              HasSubstr("plugin silent printed no handshake within 1s; "
                        "killed it"));
}

TEST_F(LauncherTest, ExitBeforeHandshakeQuotesCodeAndStderr) {
  absl::Status status = LaunchError(Options("exit-early"));
  EXPECT_EQ(status.code(), absl::StatusCode::kUnknown) << status;
  std::string message(status.message());
  EXPECT_THAT(message, HasSubstr("plugin exit-early exited with code 3 before "
                                 "its handshake"));
  EXPECT_THAT(message, HasSubstr("starting up"));
  EXPECT_THAT(message, HasSubstr("fatal: config file missing"));
}

TEST_F(LauncherTest, CrashBeforeHandshakeNamesTheSignal) {
  absl::Status status = LaunchError(Options("segv"));
  EXPECT_EQ(status.code(), absl::StatusCode::kUnknown) << status;
  EXPECT_THAT(std::string(status.message()),
              HasSubstr("killed by signal 11 (SIGSEGV)"));
  EXPECT_THAT(std::string(status.message()), HasSubstr("about to crash"));
}

TEST_F(LauncherTest, CrashAfterTheAddressIsAnnouncedIsInTheStatus) {
  // Announced, then gone during the connect check: clients may have reached
  // it, so the status says how it ended (a supervisor's start-failed event
  // carries it, and hosts count it as a crash).
  absl::Status status = LaunchError(Options("abort-in-health-check"));
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable) << status;
  EXPECT_THAT(std::string(status.message()),
              HasSubstr("but it cannot be connected"));
  std::optional<ExitStatus> exit = StartExit(status);
  ASSERT_TRUE(exit.has_value()) << status;
  EXPECT_TRUE(exit->signaled);
  EXPECT_EQ(exit->signal, SIGABRT);
  EXPECT_GT(StartPid(status), 0);
  // Before its handshake: the pid, but no exit in the status.
  absl::Status early = LaunchError(Options("segv"));
  EXPECT_GT(StartPid(early), 0) << early;
  EXPECT_FALSE(StartExit(early).has_value());
}

TEST_F(LauncherTest, WrongCoreVersion) {
  absl::Status status = LaunchError(Options("bad-core"));
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition) << status;
  EXPECT_THAT(std::string(status.message()),
              HasSubstr("core protocol version 2, this launcher speaks "
                        "version 1"));
}

TEST_F(LauncherTest, UnsupportedAppVersion) {
  absl::Status status = LaunchError(Options("bad-app"));
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition) << status;
  EXPECT_THAT(std::string(status.message()),
              HasSubstr("app protocol version 99 but the host supports [1]"));
}

TEST_F(LauncherTest, UnconnectableAddress) {
  absl::Status status = LaunchError(Options("bad-address"));
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable) << status;
  EXPECT_THAT(std::string(status.message()),
              HasSubstr("plugin bad-address announced "
                        "unix:/nonexistent-plugd/x.sock but it cannot be "
                        "connected"));
}

TEST_F(LauncherTest, IgnoringTermIsKilledAfterTheGrace) {
  LaunchOptions options = Options("ignore-term");
  options.stop_grace = absl::Milliseconds(300);
  auto plugin = Launch(options);
  ASSERT_TRUE(plugin.ok()) << plugin.status();
  absl::Time start = absl::Now();
  ExitStatus status = (*plugin)->Stop();
  EXPECT_TRUE(status.signaled) << status.ToString();
  EXPECT_EQ(status.signal, SIGKILL);
  EXPECT_EQ(status.ToString(), "killed by signal 9 (SIGKILL)");
  // Shutdown answered OK, so SIGTERM after one grace, SIGKILL after two.
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(600));
}

TEST_F(LauncherTest, StopKillsWhatIsLeftOfTheGroup) {
  LaunchOptions options = Options("grandchild");
  options.stop_grace = absl::Milliseconds(500);
  auto plugin = Launch(options);
  ASSERT_TRUE(plugin.ok()) << plugin.status();
  std::optional<OutputLine> line =
      WaitForLine((*plugin)->output(),
                  [](const OutputLine& l) {
                    return absl::StartsWith(l.text, "grandchild pid ");
                  },
                  kHangGuard);
  ASSERT_TRUE(line.has_value());
  pid_t grandchild = 0;
  ASSERT_TRUE(absl::SimpleAtoi(line->text.substr(15), &grandchild));
  pids_.insert(grandchild);
  EXPECT_EQ(::getpgid(grandchild), (*plugin)->pid());

  ExitStatus status = (*plugin)->Stop();
  EXPECT_TRUE(status.success()) << status.ToString();
  EXPECT_TRUE(ProcessGone(grandchild));
}

TEST_F(LauncherTest, ExitAfterHandshakeFiresOnExit) {
  auto plugin = Launch(Options("exit-after-handshake"));
  ASSERT_TRUE(plugin.ok()) << plugin.status();
  std::promise<ExitStatus> exited;
  (*plugin)->OnExit([&](const ExitStatus& s) { exited.set_value(s); });
  auto future = exited.get_future();
  ASSERT_EQ(future.wait_for(absl::ToChronoNanoseconds(kHangGuard)),
            std::future_status::ready);
  ExitStatus status = future.get();
  EXPECT_FALSE(status.signaled);
  EXPECT_EQ(status.code, 4);
  EXPECT_FALSE((*plugin)->running());
  ASSERT_TRUE((*plugin)->exit_status().has_value());
  EXPECT_EQ((*plugin)->exit_status()->code, 4);
  EXPECT_TRUE(WaitForLine((*plugin)->output(),
                          [](const OutputLine& l) { return l.text == "bye"; },
                          kHangGuard)
                  .has_value());
  // A callback registered after the exit runs too.
  std::promise<int> late;
  (*plugin)->OnExit([&](const ExitStatus& s) { late.set_value(s.code); });
  EXPECT_EQ(late.get_future().get(), 4);
}

TEST_F(LauncherTest, FloodIsBoundedAndStopStillCompletes) {
  LaunchOptions options = Options("flood");
  options.output.ring_bytes = 64 * 1024;
  options.output.forward_bytes_per_second = 16 * 1024;
  auto plugin = Launch(options);
  ASSERT_TRUE(plugin.ok()) << plugin.status();
  OutputCapture& output = (*plugin)->output();
  ASSERT_TRUE(WaitForOutputCondition(
      output,
      [&] {
        return output.lines_rate_dropped() > 0 && output.lines_evicted() > 0;
      },
      kHangGuard));
  EXPECT_LE(output.ring_bytes(), options.output.ring_bytes);
  ExitStatus status = (*plugin)->Stop();
  EXPECT_TRUE(status.success()) << status.ToString();
  EXPECT_LE(output.ring_bytes(), options.output.ring_bytes);
  EXPECT_GT(output.lines_rate_dropped(), 0u);
  EXPECT_EQ(output.Tail(1)[0].level, log::Level::kInfo);
}

TEST_F(LauncherTest, BurstsOfTwoPluginsOnOneLoopAreReadWholeAndApart) {
  // Both plugins' pipes are read into the loop's one buffer: every line
  // arrives, in order, in its own plugin's capture, however the reads of
  // the four pipes interleave.
  std::vector<std::shared_ptr<PluginProcess>> plugins;
  for (const char* name : {"burst-a", "burst-b"}) {
    LaunchOptions options = Options("burst-then-exit");
    options.name = name;
    options.socket_path = absl::StrCat(dir_, "/", name, ".sock");
    options.output.forward_bytes_per_second = 1 << 30;
    auto plugin = Launch(options);
    ASSERT_TRUE(plugin.ok()) << plugin.status();
    plugins.push_back(*plugin);
  }
  for (const auto& plugin : plugins) {
    const pid_t pid = plugin->pid();
    const std::string last_out = absl::StrCat("out ", pid, " 2999");
    const std::string last_err = absl::StrCat("err ", pid, " 2999");
    ASSERT_TRUE(WaitForOutputCondition(
        plugin->output(),
        [&] {
          bool out = false;
          bool err = false;
          for (const OutputLine& line : plugin->output().Tail()) {
            out = out || line.text == last_out;
            err = err || line.text == last_err;
          }
          return out && err;
        },
        kHangGuard))
        << plugin->options().name;
    int next_out = 0;
    int next_err = 0;
    for (const OutputLine& line : plugin->output().Tail()) {
      if (!absl::StartsWith(line.text, "out ") &&
          !absl::StartsWith(line.text, "err ")) {
        continue;  // anything else the plugin logs
      }
      if (line.stream == OutputStream::kStdout) {
        ASSERT_EQ(line.text, absl::StrCat("out ", pid, " ", next_out));
        ++next_out;
      } else {
        ASSERT_EQ(line.text, absl::StrCat("err ", pid, " ", next_err));
        ++next_err;
      }
    }
    EXPECT_EQ(next_out, 3000);
    EXPECT_EQ(next_err, 3000);
  }
}

TEST_F(LauncherTest, LongLineIsTruncatedOnce) {
  LaunchOptions options = Options("longline");
  options.output.max_line_bytes = 1000;
  auto plugin = Launch(options);
  ASSERT_TRUE(plugin.ok()) << plugin.status();
  OutputCapture& output = (*plugin)->output();
  ASSERT_TRUE(
      WaitForLine(
          output,
          [](const OutputLine& l) { return l.text == "after the long line"; },
          kHangGuard)
          .has_value());
  std::vector<OutputLine> lines = output.Tail();
  ASSERT_GE(lines.size(), 2u);
  const OutputLine& cut = lines[lines.size() - 2];
  EXPECT_TRUE(cut.truncated);
  EXPECT_EQ(cut.text, std::string(1000, 'x'));
  EXPECT_EQ(cut.stream, OutputStream::kStderr);
  EXPECT_EQ(output.lines_truncated(), 1u);
}

TEST_F(LauncherTest, StaleSocketFileIsReplaced) {
  LaunchOptions options = Options("ok");
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_un addr = {};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, options.socket_path.c_str(),
              options.socket_path.size() + 1);
  ASSERT_EQ(::bind(fd, reinterpret_cast<struct sockaddr*>(&addr), sizeof(addr)),
            0);
  ::close(fd);  // bound, never listened: stale
  auto plugin = Launch(options);
  ASSERT_TRUE(plugin.ok()) << plugin.status();
  EXPECT_TRUE((*plugin)->Stop().success());
}

TEST_F(LauncherTest, LiveSocketIsAlreadyExists) {
  auto first = Launch(Options("ok"));
  ASSERT_TRUE(first.ok()) << first.status();
  absl::Status status = LaunchError(Options("ok"));
  EXPECT_EQ(status.code(), absl::StatusCode::kAlreadyExists) << status;
  EXPECT_THAT(std::string(status.message()), HasSubstr("plugin ok:"));
  // The first plugin still serves: its socket was left alone.
  EXPECT_TRUE(Exists((*first)->options().socket_path));
  EXPECT_TRUE((*first)->Stop().success());
}

TEST_F(LauncherTest, TooLongSocketPathIsInvalid) {
  LaunchOptions options = Options("ok");
  options.socket_path = "/tmp/" + std::string(115, 'a');  // 120 bytes
  absl::Status status = LaunchError(options);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  EXPECT_THAT(std::string(status.message()), HasSubstr("120 bytes"));
}

TEST_F(LauncherTest, InvalidOptions) {
  LaunchOptions options = Options("ok");
  options.command.clear();
  EXPECT_EQ(LaunchError(options).code(), absl::StatusCode::kInvalidArgument);
  options = Options("ok");
  options.name.clear();
  EXPECT_EQ(LaunchError(options).code(), absl::StatusCode::kInvalidArgument);
  options = Options("ok");
  options.start_timeout = absl::ZeroDuration();
  EXPECT_THAT(std::string(LaunchError(options).message()),
              HasSubstr("start_timeout"));
  options = Options("ok");
  options.protocol_versions.clear();
  EXPECT_THAT(std::string(LaunchError(options).message()),
              HasSubstr("protocol_versions"));
}

TEST_F(LauncherTest, MissingExecutableIsNotFound) {
  LaunchOptions options = Options("ok");
  options.command = {dir_ + "/no-such-plugin"};
  absl::Status status = LaunchError(options);
  EXPECT_EQ(status.code(), absl::StatusCode::kNotFound) << status;
  EXPECT_THAT(std::string(status.message()),
              HasSubstr("plugin ok: executable " + dir_ +
                        "/no-such-plugin not found (or not executable)"));
  options.command = {"plugd-no-such-plugin-anywhere"};
  EXPECT_EQ(LaunchError(options).code(), absl::StatusCode::kNotFound);
}

TEST_F(LauncherTest, ExecFailureIsReportedAndReaped) {
  std::string script = dir_ + "/not-a-binary";
  {
    std::ofstream out(script);
    out << "this is not a program\n";
  }
  ASSERT_EQ(::chmod(script.c_str(), 0700), 0);
  LaunchOptions options = Options("ok");
  options.command = {script};
  absl::Status status = LaunchError(options);
  EXPECT_EQ(status.code(), absl::StatusCode::kNotFound) << status;
  EXPECT_THAT(std::string(status.message()),
              HasSubstr("plugin ok: cannot start " + script));
}

TEST_F(LauncherTest, WithoutInheritedEnvironment) {
  ::setenv("PLUGD_TEST_HOST_ONLY", "1", 1);
  LaunchOptions options = Options("ok");
  options.inherit_environment = false;
  options.env["ONLY_THIS"] = "yes";
  auto plugin = Launch(options);
  ::unsetenv("PLUGD_TEST_HOST_ONLY");
  ASSERT_TRUE(plugin.ok()) << plugin.status();
  std::ifstream environ_file(
      absl::StrCat("/proc/", (*plugin)->pid(), "/environ"));
  std::string text((std::istreambuf_iterator<char>(environ_file)),
                   std::istreambuf_iterator<char>());
  EXPECT_THAT(text, HasSubstr("ONLY_THIS=yes"));
  EXPECT_THAT(text, HasSubstr("PATH="));
  EXPECT_THAT(text, ::testing::Not(HasSubstr("PLUGD_TEST_HOST_ONLY")));
}

// A host that blocks and ignores SIGTERM must not pass that on.
TEST_F(LauncherTest, SignalsAreResetInThePlugin) {
  sigset_t term, old_mask;
  sigemptyset(&term);
  sigaddset(&term, SIGTERM);
  ASSERT_EQ(::pthread_sigmask(SIG_BLOCK, &term, &old_mask), 0);
  struct sigaction ignore = {}, old_action = {};
  ignore.sa_handler = SIG_IGN;
  ASSERT_EQ(::sigaction(SIGTERM, &ignore, &old_action), 0);
  {
    EventLoop loop;  // its thread inherits the blocked mask
    auto plugin = PluginProcess::Launch(loop, Options("ok"));
    ASSERT_TRUE(plugin.ok()) << plugin.status();
    pids_.insert((*plugin)->pid());
    ASSERT_TRUE((*plugin)->Signal(SIGTERM).ok());
    std::optional<ExitStatus> status = (*plugin)->WaitForExit(kHangGuard);
    ASSERT_TRUE(status.has_value());
    EXPECT_EQ(status->ToString(), "killed by signal 15 (SIGTERM)");
  }
  ::sigaction(SIGTERM, &old_action, nullptr);
  ::pthread_sigmask(SIG_SETMASK, &old_mask, nullptr);
}

TEST_F(LauncherTest, KilledPluginReportsSignalNotCode) {
  auto plugin = Launch(Options("ok"));
  ASSERT_TRUE(plugin.ok()) << plugin.status();
  ASSERT_TRUE((*plugin)->Signal(SIGKILL).ok());
  std::optional<ExitStatus> status = (*plugin)->WaitForExit(kHangGuard);
  ASSERT_TRUE(status.has_value());
  EXPECT_TRUE(status->signaled);
  EXPECT_EQ(status->signal, 9);
  EXPECT_EQ(status->code, 0);
  EXPECT_EQ((*plugin)->Stop().ToString(), "killed by signal 9 (SIGKILL)");
  EXPECT_TRUE((*plugin)->Signal(SIGTERM).ok());  // no-op once exited
}

TEST_F(LauncherTest, DestructorStopsARunningPlugin) {
  pid_t pid = 0;
  {
    auto plugin = PluginProcess::Launch(loop_, Options("ok"));
    ASSERT_TRUE(plugin.ok()) << plugin.status();
    pid = (*plugin)->pid();
    pids_.insert(pid);
  }
  EXPECT_TRUE(ProcessGone(pid));
}

TEST_F(LauncherTest, PluginRunByHandExplainsItself) {
  std::string command =
      absl::StrCat("env -u PLUGD_MAGIC_COOKIE ", PLUGD_TEST_RAW, " 2>&1");
  FILE* pipe = ::popen(command.c_str(), "r");
  ASSERT_NE(pipe, nullptr);
  char buf[512] = {};
  size_t n = fread(buf, 1, sizeof(buf) - 1, pipe);
  int status = ::pclose(pipe);
  EXPECT_THAT(std::string(buf, n), HasSubstr("is a plugd plugin"));
  EXPECT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 1);
}

// Regression: reaping a plugin makes its pidfd report one more readiness
// (EPOLLHUP). When the reactor picked that up just before the pidfd was
// closed, and the next plugin's pidfd got the same (pooled) reactor state,
// the stale event completed the new plugin's exit wait while it still ran;
// Boost.Process then reaped it with a blocking waitpid() on the loop thread,
// and the loop stalled (no start timeout, no kill) until the plugin died.
// Here the next launch is started from the previous plugin's OnExit (which
// runs on the loop right after the reap) and the loop is held there for a
// moment, so that the spawn is queued before the reactor runs again: the
// order that, by chance, made host_test hang.
TEST(LauncherLoopTest, LaunchRightAfterAnExitDoesNotStallTheLoop) {
  absl::StatusOr<std::string> dir = MakeSocketDir();
  ASSERT_TRUE(dir.ok()) << dir.status();
  constexpr absl::Duration kStartTimeout = absl::Seconds(5);
  const std::vector<std::pair<std::string, absl::StatusCode>> next = {
      {"bad-core", absl::StatusCode::kFailedPrecondition},
      {"bad-app", absl::StatusCode::kFailedPrecondition},
      {"garbage", absl::StatusCode::kUnknown},
      {"bad-address", absl::StatusCode::kUnavailable},
      {"ok", absl::StatusCode::kOk},
  };
  auto options = [&](const std::string& mode) {
    LaunchOptions o;
    o.name = mode;
    o.command = {PLUGD_TEST_RAW, "--mode=" + mode};
    o.socket_path = absl::StrCat(*dir, "/", mode, ".sock");
    o.start_timeout = kStartTimeout;
    o.stop_grace = absl::Seconds(2);
    o.output.sink = [](const std::string&, const OutputLine&) {};
    return o;
  };
  for (int round = 0; round < 3 && !HasFailure(); ++round) {
    for (const auto& [mode, code] : next) {
      if (HasFailure()) break;
      SCOPED_TRACE(absl::StrCat("round ", round, ", then ", mode));
      EventLoop loop;  // a fresh loop each time, as with many Hosts
      auto first = PluginProcess::Launch(loop, options("ok"));
      ASSERT_TRUE(first.ok()) << first.status();
      std::future<absl::StatusOr<std::shared_ptr<PluginProcess>>> second;
      LaunchOptions second_options = options(mode);
      second_options.socket_path = absl::StrCat(*dir, "/second.sock");
      (*first)->OnExit([&](const ExitStatus&) {
        second = std::async(std::launch::async, [&] {
          return PluginProcess::Launch(loop, second_options);
        });
        // Test-only: hold the loop so the spawn is queued behind the close
        // of the first pidfd but before the reactor's next run.
        absl::SleepFor(absl::Milliseconds(50));
      });
      EXPECT_TRUE((*first)->Stop().success());
      first->reset();
      ASSERT_TRUE(second.valid());
      if (second.wait_for(absl::ToChronoNanoseconds(
              kStartTimeout + absl::Seconds(3))) != std::future_status::ready) {
        ADD_FAILURE() << "launching " << mode
                      << " right after an exit stalled the event loop";
        // Unblock the loop (it waits for a live child) so the test can end.
        for (pid_t child : ChildrenOfThisProcess()) ::kill(child, SIGKILL);
      }
      auto result = second.get();
      EXPECT_EQ(result.status().code(), code) << result.status();
      if (result.ok()) {
        EXPECT_TRUE((*result)->Stop().success());
      }
    }
  }
  EXPECT_TRUE(ChildrenOfThisProcess().empty())
      << "children left: " << ChildrenOfThisProcess().size();
  RemoveSocketDir(*dir);
}

TEST(KillProcessGroupTest, EmptyGroupIsOk) {
  // A process group nobody is in (our own pid is a group only if we lead).
  pid_t child = ::fork();
  if (child == 0) ::_exit(0);
  int ignored;
  ::waitpid(child, &ignored, 0);
  EXPECT_TRUE(KillProcessGroup(child, absl::Seconds(1)).ok());
  EXPECT_EQ(KillProcessGroup(0, absl::Seconds(1)).code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(KillProcessGroupTest, KillsEveryMember) {
  int ready[2];
  ASSERT_EQ(::pipe(ready), 0);
  pid_t leader = ::fork();
  if (leader == 0) {
    ::setpgid(0, 0);
    ::signal(SIGTERM, SIG_IGN);
    if (::fork() == 0) {
      for (;;) ::pause();
    }
    ::write(ready[1], "x", 1);
    for (;;) ::pause();
  }
  ::close(ready[1]);
  char c;
  ASSERT_EQ(::read(ready[0], &c, 1), 1);
  ::close(ready[0]);
  EXPECT_TRUE(KillProcessGroup(leader, absl::Seconds(5)).ok());
  int status = 0;
  ASSERT_EQ(::waitpid(leader, &status, 0), leader);
  EXPECT_TRUE(WIFSIGNALED(status));
}

}  // namespace
}  // namespace plugd::broker
