// Wire compatibility with HashiCorp go-plugin 1.0.1, plugd's side:
//   * goplugin-kv, a kv.v1.KV plugin written with go-plugin's own
//     plugin.Serve (tests/goplugin/go), launched by the host library (bare
//     and supervised) and by the plugd daemon, called through the C++ KV
//     stubs, SIGKILLed and restarted, listed and stopped with plugctl;
//   * plugd-kv (the C++ SDK example) in go-plugin mode under plugd's
//     launcher;
//   * a wrong cookie and no common version, with the errors they give.
// The other direction (go-plugin's plugin.NewClient loading plugd-kv) is the
// Go test in tests/goplugin/go/src/goplugintest/kvhost.
//
// Tests wait on events (process exits on pidfds, lines of plugd's output and
// of `plugctl events --follow`); timeouts are hang guards only.
#include <fcntl.h>
#include <google/protobuf/util/json_util.h>
#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "goplugin/grpc_broker.grpc.pb.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "gtest/gtest.h"
#include "kv/v1/kv.grpc.pb.h"
#include "plugd/common/exec_policy.h"
#include "plugd/host/host.h"
#include "plugd/v1/broker.pb.h"
#include "test_util.h"

extern char** environ;

namespace plugd::testing {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::StartsWith;

constexpr absl::Duration kGuard = absl::Seconds(20);  // hang guard

// The KV example application's go-plugin handshake (tests/goplugin/go
// shared.Handshake; plugd-kv accepts it too).
constexpr char kCookieKey[] = "KV_PLUGIN";
constexpr char kCookieValue[] = "plugd-kv-example-1";

broker::GoPluginOptions KvGoPlugin(std::string value = kCookieValue) {
  broker::GoPluginOptions go;
  go.magic_cookie_key = kCookieKey;
  go.magic_cookie_value = std::move(value);
  return go;
}

std::unique_ptr<kv::v1::KV::Stub> Kv(const std::shared_ptr<grpc::Channel>& c) {
  return kv::v1::KV::NewStub(c);
}

grpc::Status Put(kv::v1::KV::Stub& kv, const std::string& key,
                 const std::string& value) {
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + kGuard));
  kv::v1::PutRequest request;
  request.set_key(key);
  request.set_value(value);
  kv::v1::PutResponse response;
  return kv.Put(&context, request, &response);
}

// The value of `key`, or the error text.
std::string Get(kv::v1::KV::Stub& kv, const std::string& key) {
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + kGuard));
  kv::v1::GetRequest request;
  request.set_key(key);
  kv::v1::GetResponse response;
  grpc::Status status = kv.Get(&context, request, &response);
  if (!status.ok()) {
    return absl::StrCat("error ", status.error_code(), ": ",
                        status.error_message());
  }
  return response.value();
}

std::vector<std::string> List(kv::v1::KV::Stub& kv) {
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + kGuard));
  kv::v1::ListResponse response;
  grpc::Status status = kv.List(&context, kv::v1::ListRequest(), &response);
  EXPECT_TRUE(status.ok()) << status.error_message();
  return {response.keys().begin(), response.keys().end()};
}

// grpc.health.v1 Check of `service` on `channel`.
std::string Health(const std::shared_ptr<grpc::Channel>& channel,
                   const std::string& service) {
  auto stub = grpc::health::v1::Health::NewStub(channel);
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + kGuard));
  grpc::health::v1::HealthCheckRequest request;
  request.set_service(service);
  grpc::health::v1::HealthCheckResponse response;
  grpc::Status status = stub->Check(&context, request, &response);
  if (!status.ok()) return absl::StrCat("error: ", status.error_message());
  return grpc::health::v1::HealthCheckResponse::ServingStatus_Name(
      response.status());
}

std::string OutputText(broker::OutputCapture& output) {
  std::string text;
  for (const broker::OutputLine& line : output.Tail()) {
    absl::StrAppend(&text, "[", log::LevelName(line.level), "] ", line.text,
                    "\n");
  }
  return text;
}

// Where the symlink at `path` points; empty if it is not a symlink.
std::string LinkTarget(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::is_symlink(path, ec)) return "";
  return std::filesystem::read_symlink(path, ec).string();
}

bool Exists(const std::string& path) {
  struct stat st;
  return lstat(path.c_str(), &st) == 0;
}

// ---------------------------------------------------------------------------
// The host library launching go-plugin plugins.

class GoPluginHostTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(dir_.path().empty());
    host::HostOptions host_options;
    host_options.mutex_deadlock_detection = true;  // checks our locks
    auto host = host::Host::Create(host_options);
    ASSERT_TRUE(host.ok()) << host.status();
    host_ = std::move(*host);
  }

  host::PluginOptions GoKv() {
    host::PluginOptions options;
    options.name = "go-kv";
    options.command = {Bin("goplugin-kv")};
    options.env["KV_DATA_FILE"] = dir_.path() + "/kv.json";
    options.go_plugin = KvGoPlugin();
    return options;
  }

  TempDir dir_;
  std::unique_ptr<host::Host> host_;
};

TEST_F(GoPluginHostTest, LaunchesCallsAndStopsAGoPluginPlugin) {
  auto launched = host_->Launch(GoKv());
  ASSERT_TRUE(launched.ok()) << launched.status();
  std::shared_ptr<host::Plugin> plugin = *launched;
  const std::string socket_dir = host_->socket_dir();

  // It chose its own socket, in the host's private directory (TMPDIR), and
  // the stable path points at it.
  EXPECT_THAT(plugin->target(), StartsWith("unix:" + socket_dir + "/plugin"));
  const std::string announced = plugin->target().substr(5);
  EXPECT_EQ(LinkTarget(socket_dir + "/go-kv.sock"), announced);
  EXPECT_EQ(plugin->protocol_version(), 1u);
  EXPECT_EQ(Health(plugin->channel(), "plugin"), "SERVING");

  auto kv = Kv(plugin->channel());
  ASSERT_TRUE(Put(*kv, "greeting", "hello").ok());
  ASSERT_TRUE(Put(*kv, "answer", "42").ok());
  EXPECT_EQ(Get(*kv, "greeting"), "hello");
  EXPECT_THAT(Get(*kv, "missing"), HasSubstr("no key \"missing\""));
  EXPECT_EQ(List(*kv), (std::vector<std::string>{"answer", "greeting"}));
  // Not a plugd plugin: no plugd.v1.Control.
  EXPECT_TRUE(absl::IsUnimplemented(plugin->Describe().status()));

  // hclog's JSON lines land in the plugin's output with their level.
  std::string output = OutputText(plugin->output());
  EXPECT_THAT(output, HasSubstr("[INFO] {\"@level\":\"info\""));
  EXPECT_THAT(output, HasSubstr("\"@message\":\"put\""));

  // Stopped through plugin.GRPCController/Shutdown: a clean exit, no signal.
  absl::StatusOr<host::ExitStatus> exit = plugin->Stop();
  ASSERT_TRUE(exit.ok()) << exit.status();
  EXPECT_TRUE(exit->success()) << exit->ToString();
  EXPECT_THAT(OutputText(plugin->output()),
              HasSubstr("\"@message\":\"stopped\""));
  // Both the socket it chose and the stable link are gone.
  EXPECT_FALSE(Exists(announced));
  EXPECT_FALSE(Exists(socket_dir + "/go-kv.sock"));
}

TEST_F(GoPluginHostTest, SupervisedGoPluginKeepsItsAddressAcrossACrash) {
  host::PluginOptions options = GoKv();
  options.supervision = host::SupervisionOptions();
  options.supervision->backoff.initial = absl::Milliseconds(10);
  options.idempotent_methods = {"kv.v1.KV/Get", "kv.v1.KV/List"};
  auto launched = host_->Launch(options);
  ASSERT_TRUE(launched.ok()) << launched.status();
  std::shared_ptr<host::Plugin> plugin = *launched;
  EXPECT_EQ(plugin->target(), "unix:" + host_->socket_dir() + "/go-kv.sock");

  auto kv = Kv(plugin->channel());
  ASSERT_TRUE(Put(*kv, "k", "before the crash").ok());
  auto before = host_->supervisor()->Get("go-kv");
  ASSERT_TRUE(before.ok()) << before.status();
  EXPECT_TRUE(before->go_plugin());
  EXPECT_THAT(before->announced_address(),
              StartsWith("unix:" + host_->socket_dir() + "/plugin"));

  const pid_t old_pid = plugin->pid();
  ASSERT_GT(old_pid, 0);
  ASSERT_EQ(kill(old_pid, SIGKILL), 0);
  ASSERT_TRUE(WaitForPidGone(old_pid, kGuard));
  // The same channel: the call waits for the restarted plugin and its new
  // socket, reached through the stable path.
  EXPECT_EQ(Get(*kv, "k"), "before the crash");
  auto after = host_->supervisor()->Get("go-kv");
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_NE(after->pid(), old_pid);
  EXPECT_EQ(after->restarts(), 1u);
  EXPECT_NE(after->announced_address(), before->announced_address());
  EXPECT_EQ(after->address(), before->address());

  absl::StatusOr<host::ExitStatus> exit = plugin->Stop();
  ASSERT_TRUE(exit.ok()) << exit.status();
  EXPECT_TRUE(exit->success()) << exit->ToString();
}

// As root, a supervised go-plugin plugin runs as a throwaway user: it
// creates its socket in its own directory (TMPDIR), the stable path links to
// it, and a crash and restart keep the host's channel working.
TEST_F(GoPluginHostTest, GoPluginPluginRunsAsAnotherUser) {
  if (geteuid() != 0) {
    GTEST_SKIP() << "not root (uid " << geteuid()
                 << "): running a plugin as another user needs root";
  }
  const std::string user = absl::StrCat("plugdg", getpid() % 100000);
  CommandResult added =
      RunCommand({"/usr/sbin/useradd", "--system", "--no-create-home",
                  "--shell", "/usr/sbin/nologin", user},
                 kGuard);
  ASSERT_EQ(added.exit_code, 0) << added.err;
  struct Cleanup {
    std::string user;
    ~Cleanup() { RunCommand({"/usr/sbin/userdel", user}, kGuard); }
  } cleanup{user};
  absl::StatusOr<RunAs> ids = LookUpRunAs(user, "");
  ASSERT_TRUE(ids.ok()) << ids.status();
  // Its data file lives in a directory the user may write.
  const std::string data_dir = dir_.path() + "/data";
  ASSERT_EQ(mkdir(data_dir.c_str(), 0700), 0);
  ASSERT_EQ(chown(data_dir.c_str(), ids->uid, ids->gid), 0);
  ASSERT_EQ(chmod(dir_.path().c_str(), 0755), 0);

  host::PluginOptions options = GoKv();
  options.env["KV_DATA_FILE"] = data_dir + "/kv.json";
  options.run_as = *ids;
  options.working_dir = data_dir;
  options.supervision = host::SupervisionOptions();
  options.supervision->backoff.initial = absl::Milliseconds(10);
  options.idempotent_methods = {"kv.v1.KV/Get"};
  auto launched = host_->Launch(options);
  ASSERT_TRUE(launched.ok()) << launched.status();
  std::shared_ptr<host::Plugin> plugin = *launched;
  const pid_t pid = plugin->pid();
  std::ifstream status_file(absl::StrCat("/proc/", pid, "/status"));
  std::string line, uid_line;
  while (std::getline(status_file, line)) {
    if (absl::StartsWith(line, "Uid:")) uid_line = line;
  }
  const std::string uid = absl::StrCat(ids->uid);
  EXPECT_EQ(uid_line,
            absl::StrCat("Uid:\t", uid, "\t", uid, "\t", uid, "\t", uid));
  auto before = host_->supervisor()->Get("go-kv");
  ASSERT_TRUE(before.ok()) << before.status();
  EXPECT_THAT(before->announced_address(),
              StartsWith(absl::StrCat("unix:/tmp/plugd-u", uid, ".")));
  const std::string stable = host_->socket_dir() + "/go-kv.sock";
  EXPECT_EQ("unix:" + LinkTarget(stable), before->announced_address());

  auto kv = Kv(plugin->channel());
  ASSERT_TRUE(Put(*kv, "k", "as another user").ok());
  ASSERT_EQ(kill(pid, SIGKILL), 0);
  ASSERT_TRUE(WaitForPidGone(pid, kGuard));
  EXPECT_EQ(Get(*kv, "k"), "as another user");
  auto after = host_->supervisor()->Get("go-kv");
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_NE(after->announced_address(), before->announced_address());
  // The first instance's socket directory is gone.
  const std::string old_dir =
      std::filesystem::path(before->announced_address().substr(5))
          .parent_path()
          .string();
  EXPECT_FALSE(Exists(old_dir)) << old_dir;

  absl::StatusOr<host::ExitStatus> exit = plugin->Stop();
  ASSERT_TRUE(exit.ok()) << exit.status();
  EXPECT_TRUE(exit->success()) << exit->ToString();
}

TEST_F(GoPluginHostTest, WrongCookieSaysSo) {
  host::PluginOptions options = GoKv();
  options.go_plugin = KvGoPlugin("not-the-cookie");
  absl::Status status = host_->Launch(options).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kUnknown) << status;
  EXPECT_THAT(
      status.message(),
      AllOf(HasSubstr("plugin go-kv exited with code 1 before its handshake"),
            // go-plugin's own words, from the plugin's stderr:
            HasSubstr("This binary is a plugin. These are not meant to be "
                      "executed directly."),
            HasSubstr("go-plugin refused the magic cookie "
                      "KV_PLUGIN=\"not-the-cookie\": set go_plugin "
                      "magic_cookie_key and magic_cookie_value to the "
                      "plugin's HandshakeConfig")));
}

TEST_F(GoPluginHostTest, NoCommonVersionSaysSo) {
  host::PluginOptions options = GoKv();
  options.protocol_versions = {2, 3};
  absl::Status status = host_->Launch(options).status();
  // go-plugin's plugin.Serve announces its own version when none is in
  // common; the launcher refuses it.
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition) << status;
  EXPECT_THAT(status.message(),
              AllOf(HasSubstr("plugin go-kv chose app protocol version 1 but "
                              "the host supports [2,3]"),
                    HasSubstr("upgrade whichever side is older")));
}

TEST_F(GoPluginHostTest, BadGoPluginOptionsAreRefusedUpFront) {
  host::PluginOptions options = GoKv();
  options.go_plugin->magic_cookie_value.clear();
  absl::Status status = host_->Launch(options).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  EXPECT_THAT(status.message(),
              HasSubstr("go_plugin needs the application's magic cookie"));
  options = GoKv();
  options.go_plugin->min_port = 30000;
  status = host_->Launch(options).status();
  EXPECT_THAT(status.message(),
              HasSubstr("go_plugin port range 30000..25000 is not valid"));
}

// The KV examples of the C++, Python, Node and Go SDKs in go-plugin mode,
// launched by plugd's launcher in go-plugin mode: the SDK side of the
// compatibility, without Go.
class SdkGoPluginModeTest : public GoPluginHostTest,
                            public ::testing::WithParamInterface<const char*> {
};

TEST_P(SdkGoPluginModeTest, KvRunsInGoPluginMode) {
  host::PluginOptions options = GoKv();
  options.name = "kv";
  options.command = {Bin(GetParam()), "--data", dir_.path() + "/kv.pb"};
  auto launched = host_->Launch(options);
  ASSERT_TRUE(launched.ok()) << launched.status();
  std::shared_ptr<host::Plugin> plugin = *launched;
  // It picked its own socket in TMPDIR (the host's directory).
  EXPECT_THAT(plugin->target(),
              StartsWith("unix:" + host_->socket_dir() + "/plugd"));
  EXPECT_EQ(Health(plugin->channel(), "plugin"), "SERVING");

  // The broker stream a go-plugin host opens: accepted, kept open, and it
  // breaks neither the connection nor the plugin's shutdown.
  auto broker = ::plugin::GRPCBroker::NewStub(plugin->channel());
  grpc::ClientContext stream_context;
  auto stream = broker->StartStream(&stream_context);
  ::plugin::ConnInfo offer;
  offer.set_service_id(1);
  offer.set_network("unix");
  offer.set_address("/nonexistent/host-service.sock");
  ASSERT_TRUE(stream->Write(offer));

  auto kv = Kv(plugin->channel());
  ASSERT_TRUE(Put(*kv, "a", "1").ok());
  EXPECT_EQ(Get(*kv, "a"), "1");
  const absl::Time stop_started = absl::Now();
  absl::StatusOr<host::ExitStatus> exit = plugin->Stop();
  ASSERT_TRUE(exit.ok()) << exit.status();
  EXPECT_TRUE(exit->success()) << exit->ToString();
  // Well within the grace (5 s): the open stream did not hold the shutdown.
  EXPECT_LT(absl::Now() - stop_started, absl::Seconds(2));
  ::plugin::ConnInfo ignored;
  EXPECT_FALSE(stream->Read(&ignored));
  grpc::Status stream_status = stream->Finish();
  EXPECT_TRUE(stream_status.ok()) << stream_status.error_message();
  std::string output = OutputText(plugin->output());
  EXPECT_THAT(output, HasSubstr("go-plugin mode)"));
  EXPECT_THAT(output, HasSubstr("(plugin.GRPCController/Shutdown)"));
}

INSTANTIATE_TEST_SUITE_P(Sdks, SdkGoPluginModeTest,
                         ::testing::Values("plugd-kv", "plugd-py-kv",
                                           "plugd-node-kv", "plugd-go-kv"),
                         [](const ::testing::TestParamInfo<const char*>& info) {
                           const std::string name = info.param;
                           return name == "plugd-kv"      ? "Cpp"
                                  : name == "plugd-py-kv" ? "Python"
                                  : name == "plugd-go-kv" ? "Go"
                                                          : "Node";
                         });

TEST_F(GoPluginHostTest, PlugdKvRefusesAnotherApplicationsCookie) {
  host::PluginOptions options = GoKv();
  options.name = "kv";
  options.command = {Bin("plugd-kv"), "--data", dir_.path() + "/kv.pb"};
  options.go_plugin = KvGoPlugin("another-app");
  absl::Status status = host_->Launch(options).status();
  EXPECT_THAT(
      status.message(),
      AllOf(HasSubstr("exited with code 1 before its handshake"),
            HasSubstr("This binary is a plugin (plugd plugin kv 1.0.0)"),
            HasSubstr("the host's plugin.HandshakeConfig must have "
                      "MagicCookieKey \\\"KV_PLUGIN\\\" and "
                      "MagicCookieValue \\\"plugd-kv-example-1\\\""),
            HasSubstr("go-plugin refused the magic cookie")));
}

// ---------------------------------------------------------------------------
// The plugd daemon supervising a go-plugin plugin.

// A process whose combined stdout and stderr is read by a thread, so that
// lines can be waited for and the pipe never fills.
class Reader {
 public:
  explicit Reader(const std::vector<std::string>& argv) {
    int out[2];
    if (pipe2(out, O_CLOEXEC) != 0) return;
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, out[1], 1);
    posix_spawn_file_actions_adddup2(&actions, out[1], 2);
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
    std::vector<char*> args;
    for (const std::string& a : argv)
      args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    if (posix_spawn(&pid_, args[0], &actions, nullptr, args.data(), environ) !=
        0) {
      pid_ = -1;
    }
    posix_spawn_file_actions_destroy(&actions);
    close(out[1]);
    thread_ = std::thread([this, fd = out[0]] { Read(fd); });
  }
  pid_t pid() const { return pid_; }

  ~Reader() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    if (thread_.joinable()) thread_.join();
  }

  // The first line from index `*next` on for which `match` is true; *next
  // moves past it. Empty after the hang guard or at EOF.
  std::optional<std::string> WaitFor(
      const std::function<bool(const std::string&)>& match, size_t* next) {
    std::unique_lock<std::mutex> lock(mu_);
    std::optional<std::string> found;
    cv_.wait_for(lock, absl::ToChronoNanoseconds(kGuard), [&] {
      for (; *next < lines_.size(); ++*next) {
        if (match(lines_[*next])) {
          found = lines_[(*next)++];
          return true;
        }
      }
      return eof_;
    });
    return found;
  }

  std::string Text() {
    std::lock_guard<std::mutex> lock(mu_);
    return absl::StrJoin(lines_, "\n");
  }

  // SIGTERM, then reaps it: the exit status (waitpid).
  int Terminate() {
    if (pid_ <= 0) return -1;
    kill(pid_, SIGTERM);
    EXPECT_TRUE(WaitForPidGone(pid_, kGuard));
    int status = -1;
    waitpid(pid_, &status, 0);
    pid_ = -1;
    return status;
  }

 private:
  void Read(int fd) {
    std::string partial;
    char buf[65536];
    for (;;) {
      ssize_t n = read(fd, buf, sizeof(buf));
      if (n < 0 && errno == EINTR) continue;
      std::lock_guard<std::mutex> lock(mu_);
      if (n <= 0) {
        if (!partial.empty()) lines_.push_back(partial);
        eof_ = true;
        cv_.notify_all();
        break;
      }
      partial.append(buf, static_cast<size_t>(n));
      size_t nl;
      while ((nl = partial.find('\n')) != std::string::npos) {
        lines_.push_back(partial.substr(0, nl));
        partial.erase(0, nl + 1);
      }
      cv_.notify_all();
    }
    close(fd);
  }

  pid_t pid_ = -1;
  std::thread thread_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::string> lines_;
  bool eof_ = false;
};

class GoPluginDaemonTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(dir_.path().empty());
    admin_ = "unix:" + dir_.path() + "/admin.sock";
  }

  void StartDaemon(const std::string& plugins) {
    const std::string config = dir_.path() + "/plugd.yaml";
    {
      std::ofstream out(config);
      out << "admin: " << admin_ << "\nplugins:\n" << plugins;
    }
    daemon_ = std::make_unique<Reader>(
        std::vector<std::string>{Bin("plugd"), "--config", config});
    ASSERT_NE(daemon_->pid(), -1);
    size_t next = 0;
    ASSERT_TRUE(daemon_->WaitFor(
        [](const std::string& l) {
          return absl::StrContains(l, "serving the admin API");
        },
        &next))
        << daemon_->Text();
    events_ = std::make_unique<Child>(
        std::vector<std::string>{Bin("plugctl"), "--broker", admin_, "events",
                                 "--follow", "--json", "--history", "1000"});
  }

  void StopDaemon() {
    events_.reset();
    if (daemon_ == nullptr) return;
    const int status = daemon_->Terminate();
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
        << "plugd exit status " << status << "\n"
        << daemon_->Text();
    daemon_.reset();
  }

  void TearDown() override { StopDaemon(); }

  // Waits for an event of `type` for `plugin` (and a pid other than
  // `not_pid`); returns it.
  std::optional<v1::Event> WaitForEvent(v1::EventType type,
                                        int64_t not_pid = 0) {
    const absl::Time deadline = absl::Now() + kGuard;
    std::string line;
    while (events_->ReadLine(&line, deadline - absl::Now())) {
      v1::Event event;
      if (!google::protobuf::util::JsonStringToMessage(line, &event).ok()) {
        continue;
      }
      if (event.type() == type && (not_pid == 0 || event.pid() != not_pid)) {
        return event;
      }
    }
    return std::nullopt;
  }

  CommandResult Ctl(std::vector<std::string> args) {
    std::vector<std::string> argv = {Bin("plugctl"), "--broker", admin_};
    argv.insert(argv.end(), args.begin(), args.end());
    return RunCommand(argv, kGuard);
  }

  v1::PluginStatus Status(const std::string& name) {
    CommandResult r = Ctl({"--json", "status", name});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    v1::PluginStatus status;
    EXPECT_TRUE(
        google::protobuf::util::JsonStringToMessage(r.out, &status).ok())
        << r.out;
    return status;
  }

  std::string GoKvYaml() const {
    return absl::StrCat(
        "  - name: go-kv\n"
        "    command: [\"",
        Bin("goplugin-kv"),
        "\"]\n"
        "    env: {KV_DATA_FILE: \"",
        dir_.path(),
        "/kv.json\"}\n"
        "    backoff: {initial: 10ms}\n"
        "    go_plugin:\n"
        "      magic_cookie_key: KV_PLUGIN\n"
        "      magic_cookie_value: plugd-kv-example-1\n");
  }

  TempDir dir_;
  std::string admin_;
  std::unique_ptr<Reader> daemon_;
  std::unique_ptr<Child> events_;
};

TEST_F(GoPluginDaemonTest, SupervisesAGoPluginPluginLikeANativeOne) {
  ASSERT_NO_FATAL_FAILURE(StartDaemon(GoKvYaml()));
  std::optional<v1::Event> ready = WaitForEvent(v1::EVENT_TYPE_READY);
  ASSERT_TRUE(ready.has_value()) << daemon_->Text();
  const int64_t first_pid = ready->pid();

  // plugctl lists and describes it.
  CommandResult list = Ctl({"list"});
  EXPECT_EQ(list.exit_code, 0) << list.err;
  EXPECT_THAT(list.out, AllOf(HasSubstr("go-kv"), HasSubstr("ready"),
                              HasSubstr(absl::StrCat(first_pid))));
  CommandResult status = Ctl({"status", "go-kv"});
  EXPECT_THAT(status.out,
              AllOf(HasSubstr("1 (go-plugin)"),
                    HasSubstr(absl::StrCat("unix:", dir_.path(),
                                           "/go-kv.sock -> unix:", dir_.path(),
                                           "/plugin"))));
  const v1::PluginStatus before = Status("go-kv");

  // A host attached through the broker.
  host::HostOptions host_options;
  host_options.mutex_deadlock_detection = true;  // checks our locks
  auto host = host::Host::Create(host_options);
  ASSERT_TRUE(host.ok()) << host.status();
  host::AttachOptions attach;
  attach.idempotent_methods = {"kv.v1.KV/Get", "kv.v1.KV/List"};
  auto plugin = (*host)->Attach(admin_, "go-kv", attach);
  ASSERT_TRUE(plugin.ok()) << plugin.status();
  EXPECT_EQ((*plugin)->target(), before.address());
  auto kv = Kv((*plugin)->channel());
  ASSERT_TRUE(Put(*kv, "k", "v1").ok());
  EXPECT_EQ(Get(*kv, "k"), "v1");

  // SIGKILL: the broker restarts it; it picks a new socket; the attached
  // host's channel keeps working through the stable address.
  ASSERT_EQ(kill(static_cast<pid_t>(first_pid), SIGKILL), 0);
  ASSERT_TRUE(WaitForPidGone(static_cast<pid_t>(first_pid), kGuard));
  EXPECT_EQ(Get(*kv, "k"), "v1");
  ASSERT_TRUE(Put(*kv, "k2", "after the restart").ok());
  std::optional<v1::Event> again =
      WaitForEvent(v1::EVENT_TYPE_READY, first_pid);
  ASSERT_TRUE(again.has_value()) << daemon_->Text();
  const v1::PluginStatus after = Status("go-kv");
  EXPECT_EQ(after.pid(), again->pid());
  EXPECT_EQ(after.restarts(), 1u);
  EXPECT_TRUE(after.go_plugin());
  EXPECT_EQ(after.address(), before.address());
  EXPECT_NE(after.announced_address(), before.announced_address());
  EXPECT_EQ(after.last_exit().signal(), SIGKILL);
  EXPECT_EQ(List(*kv), (std::vector<std::string>{"k", "k2"}));

  // Logs: hclog's JSON lines, kept across restarts.
  CommandResult logs = Ctl({"logs", "go-kv"});
  EXPECT_EQ(logs.exit_code, 0) << logs.err;
  EXPECT_THAT(logs.out, AllOf(HasSubstr("\"@message\":\"put\""),
                              HasSubstr("\"key\":\"k2\"")));

  // plugctl stop: through plugin.GRPCController/Shutdown, a clean exit.
  CommandResult stop = Ctl({"stop", "go-kv"});
  EXPECT_EQ(stop.exit_code, 0) << stop.err << stop.out;
  const v1::PluginStatus stopped = Status("go-kv");
  EXPECT_EQ(stopped.state(), v1::PLUGIN_STATE_STOPPED);
  EXPECT_FALSE(stopped.last_exit().signaled()) << stopped.last_exit().text();
  EXPECT_EQ(stopped.last_exit().code(), 0);
  // Calls to a stopped plugin fail fast, saying why.
  EXPECT_THAT(Get(*kv, "k"), HasSubstr("plugin go-kv is stopped"));

  // And plugctl start brings it back, at the same address.
  CommandResult start = Ctl({"start", "go-kv"});
  EXPECT_EQ(start.exit_code, 0) << start.err << start.out;
  EXPECT_EQ(Get(*kv, "k2"), "after the restart");
  (*host).reset();
  StopDaemon();
  // Nothing left in the socket directory but the config and data.
  std::vector<std::string> left;
  for (const auto& entry : std::filesystem::directory_iterator(dir_.path())) {
    left.push_back(entry.path().filename().string());
  }
  std::sort(left.begin(), left.end());
  EXPECT_EQ(left, (std::vector<std::string>{"kv.json", "plugd.yaml"}));
}

TEST_F(GoPluginDaemonTest, WrongCookieFailsTheStartWithTheReason) {
  std::string yaml = GoKvYaml();
  yaml.replace(yaml.find("plugd-kv-example-1"), 18, "wrong");
  absl::StrAppend(&yaml, "    restart: never\n");
  ASSERT_NO_FATAL_FAILURE(StartDaemon(yaml));
  std::optional<v1::Event> failed = WaitForEvent(v1::EVENT_TYPE_START_FAILED);
  ASSERT_TRUE(failed.has_value()) << daemon_->Text();
  EXPECT_THAT(failed->message(),
              AllOf(HasSubstr("This binary is a plugin"),
                    HasSubstr("go-plugin refused the magic cookie "
                              "KV_PLUGIN=\"wrong\"")));
}

}  // namespace
}  // namespace plugd::testing

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  plugd::testing::InstallNoLeftoverProcessesCheck();
  return RUN_ALL_TESTS();
}
