// End-to-end tests: the real plugctl binary, run as a child process, against
// FakeBroker (a real gRPC server implementing plugd.v1.Broker) on a Unix
// socket in a short temp dir. Every wait is bounded by a hang guard; nothing
// sleeps to synchronise.
#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "child.h"
#include "fake_broker.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace plugd::plugctl::testing {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::MatchesRegex;
using ::testing::StartsWith;

// The hang guard of every plugctl run.
constexpr absl::Duration kGuard = absl::Seconds(20);

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> lines = absl::StrSplit(text, '\n');
  if (!lines.empty() && lines.back().empty()) lines.pop_back();
  return lines;
}

// Parses one JSON object into `message`, failing on unknown field names.
template <typename T>
::testing::AssertionResult ParseJson(const std::string& json, T* message) {
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = false;
  auto status =
      google::protobuf::util::JsonStringToMessage(json, message, options);
  if (!status.ok()) {
    return ::testing::AssertionFailure()
           << status.ToString() << " in: " << json;
  }
  return ::testing::AssertionSuccess();
}

// The top-level keys of a JSON object.
std::vector<std::string> Keys(const std::string& json) {
  google::protobuf::Struct s;
  EXPECT_TRUE(google::protobuf::util::JsonStringToMessage(json, &s).ok())
      << json;
  std::vector<std::string> keys;
  for (const auto& [key, value] : s.fields()) keys.push_back(key);
  std::sort(keys.begin(), keys.end());
  return keys;
}

class PlugctlTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/pctl-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr) << std::strerror(errno);
    dir_ = tmpl;
    socket_ = dir_ + "/b.sock";
    broker_ = std::make_unique<FakeBroker>(socket_);
  }

  void TearDown() override {
    broker_.reset();
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }

  std::vector<std::string> BaseEnv() const {
    return {"PATH=/usr/bin:/bin", "HOME=" + dir_};
  }

  // Runs plugctl with `args` and only `env` as environment; fails the test
  // (and kills it) if it runs longer than the hang guard.
  Child::Result RunWithEnv(const std::vector<std::string>& args,
                           const std::vector<std::string>& env) {
    std::unique_ptr<Child> child = Child::Spawn(PLUGCTL_PATH, args, env);
    std::optional<Child::Result> result = child->Wait(kGuard);
    EXPECT_TRUE(result.has_value()) << "plugctl hung; killed it";
    return result.value_or(Child::Result{});
  }

  // Runs plugctl against the fake broker (--broker appended).
  Child::Result Run(std::vector<std::string> args) {
    args.push_back("--broker");
    args.push_back("unix:" + socket_);
    return RunWithEnv(args, BaseEnv());
  }

  std::string dir_;
  std::string socket_;
  std::unique_ptr<FakeBroker> broker_;
};

TEST_F(PlugctlTest, ListPrintsATable) {
  Child::Result r = Run({"list"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.err, IsEmpty());
  std::vector<std::string> lines = Lines(r.out);
  ASSERT_EQ(lines.size(), 4u) << r.out;
  EXPECT_THAT(lines[0], MatchesRegex("NAME +STATE +PID +UPTIME +RESTARTS +"
                                     "ADDRESS +VERSION"));
  EXPECT_THAT(lines[1], MatchesRegex("alpha +ready +4242 +5m1[2-9]s +0 +"
                                     "unix:/run/plugd/alpha.sock +1.2.0"));
  EXPECT_THAT(lines[2], MatchesRegex("beta +backing-off +- +- +3 +"
                                     "unix:/run/plugd/beta-long-name.sock +"
                                     "0.9.1-rc1"));
  EXPECT_THAT(lines[3], MatchesRegex("gamma +stopped +- +- +0 +"
                                     "unix:/run/plugd/gamma.sock +-"));
  // Columns line up: each header starts where its values start.
  for (const char* column : {"STATE", "PID", "ADDRESS", "VERSION"}) {
    const size_t at = lines[0].find(column);
    for (size_t i = 1; i < lines.size(); ++i) {
      EXPECT_NE(lines[i][at], ' ') << column << " in: " << lines[i];
      EXPECT_EQ(lines[i][at - 1], ' ') << column << " in: " << lines[i];
    }
  }
}

TEST_F(PlugctlTest, ListJsonIsOneObjectWithProtoFieldNames) {
  Child::Result r = Run({"--json", "list"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::vector<std::string> lines = Lines(r.out);
  ASSERT_EQ(lines.size(), 1u) << r.out;
  EXPECT_THAT(Keys(lines[0]), ElementsAre("plugins"));
  plugd::v1::ListPluginsResponse list;
  ASSERT_TRUE(ParseJson(lines[0], &list));
  ASSERT_EQ(list.plugins_size(), 3);
  EXPECT_EQ(list.plugins(1).last_exit().signal(), 9);
  for (const char* key :
       {"\"name\":\"alpha\"", "\"state\":\"PLUGIN_STATE_READY\"",
        "\"pid\":\"4242\"", "\"started_at\":\"", "\"restarts\":3",
        "\"protocol_version\":1", "\"last_exit\":{", "\"last_error\":\"",
        "\"restart_policy\":\"RESTART_POLICY_ON_FAILURE\"",
        "\"next_start_at\":\"", "\"log_lines_dropped\":\"7\"",
        "\"command\":[\"/usr/lib/plugd/plugd-alpha\",\"--verbose\"]"}) {
    EXPECT_THAT(lines[0], HasSubstr(key));
  }
}

TEST_F(PlugctlTest, StatusPrintsKeyValueLines) {
  Child::Result r = Run({"status", "beta"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("name:              beta\n"));
  EXPECT_THAT(r.out, HasSubstr("state:             backing-off\n"));
  EXPECT_THAT(r.out, HasSubstr("pid:               -\n"));
  EXPECT_THAT(r.out, HasSubstr("restarts:          3\n"));
  EXPECT_THAT(r.out, HasSubstr("restart policy:    on-failure\n"));
  EXPECT_THAT(r.out,
              HasSubstr("last exit:         killed by signal 9 (SIGKILL)\n"));
  EXPECT_THAT(r.out, HasSubstr("last error:        no answer to health "
                               "checks for 5.2s (liveness_timeout 5s)\n"));
  EXPECT_THAT(r.out, MatchesRegex("(.|\n)*next start: +[0-9T:.-]+Z \\(in "
                                  "[0-9]+s\\)\n(.|\n)*"));
  EXPECT_THAT(r.out, HasSubstr("log lines dropped: 7\n"));

  r = Run({"status", "alpha", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  plugd::v1::PluginStatus status;
  ASSERT_TRUE(ParseJson(Lines(r.out).at(0), &status));
  EXPECT_EQ(status.pid(), 4242);
  EXPECT_THAT(Keys(r.out),
              ::testing::IsSupersetOf({"name", "state", "pid", "started_at",
                                       "restarts", "address", "version",
                                       "last_error", "restart_policy"}));
}

TEST_F(PlugctlTest, UnknownPluginExits1WithTheBrokersMessage) {
  for (const auto& args :
       std::vector<std::vector<std::string>>{{"status", "nope"},
                                             {"start", "nope"},
                                             {"describe", "nope"},
                                             {"logs", "nope"},
                                             {"call", "nope", "sum", "1"}}) {
    Child::Result r = Run(args);
    EXPECT_EQ(r.exit_code, 1) << args[0];
    EXPECT_THAT(r.err, HasSubstr("unknown plugin \"nope\"; known plugins: "
                                 "alpha, beta, gamma"))
        << args[0];
    EXPECT_THAT(r.out, IsEmpty());
  }
}

TEST_F(PlugctlTest, StartStopRestart) {
  Child::Result r = Run({"start", "gamma"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "gamma: ready (pid 5000)\n");
  r = Run({"stop", "alpha"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "alpha: stopped\n");
  r = Run({"restart", "alpha", "--json"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  plugd::v1::PluginStatus status;
  ASSERT_TRUE(ParseJson(Lines(r.out).at(0), &status));
  EXPECT_EQ(status.state(), plugd::v1::PLUGIN_STATE_READY);
  // A start that ends in FAILED is a failure, with the plugin's last error.
  r = Run({"start", "beta"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.out, "beta: failed\n");
  EXPECT_THAT(r.err, HasSubstr("did not become ready: no handshake within 5s"));
}

TEST_F(PlugctlTest, Describe) {
  Child::Result r = Run({"describe", "alpha"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, StartsWith("name:     alpha\nversion:  1.2.0\n"
                                "protocol: 1 (core 1)\npid:      4242\n"));
  EXPECT_THAT(r.out, HasSubstr("services:\n  grpc.health.v1.Health\n"
                               "  plugd.v1.Control\n  plugd.v1.Functions\n"));
  EXPECT_THAT(r.out,
              HasSubstr("functions:\n  random(min?: number, max?: number)\n"
                        "      random [MIN [MAX]]: a random integer in "
                        "[MIN, MAX]\n      min: lower bound (default 0)\n"));
  EXPECT_THAT(r.out, HasSubstr("  sum(values...: number)\n"));

  r = Run({"describe", "alpha", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  plugd::v1::DescribeResponse d;
  ASSERT_TRUE(ParseJson(Lines(r.out).at(0), &d));
  EXPECT_EQ(d.functions_size(), 2);
  EXPECT_THAT(r.out, HasSubstr("\"core_protocol_version\":1"));
  EXPECT_THAT(r.out, HasSubstr("\"min_args\":0"));

  // UNAVAILABLE answered by the broker (the plugin is down) is a broker
  // error, exit 1, not "broker unreachable".
  r = Run({"describe", "beta"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("plugctl: describe beta: plugin \"beta\" is "
                               "not running"));
}

TEST_F(PlugctlTest, CallParsesArgumentsAndFormatsTheResult) {
  Child::Result r = Run({"call", "alpha", "sum", "1", "2", "3.5"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "6.5\n");

  r = Run({"call", "alpha", "echo", "-1", "hello", "[1,\"a\"]", "\"42\"",
           "true", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "{\"result\":[-1,\"hello\",[1,\"a\"],\"42\",true]}\n");
  plugd::v1::CallPluginRequest call = broker_->last_call();
  EXPECT_EQ(call.name(), "alpha");
  EXPECT_EQ(call.call().function(), "echo");
  ASSERT_EQ(call.call().args_size(), 5);
  EXPECT_EQ(call.call().args(0).number_value(), -1);
  EXPECT_EQ(call.call().args(3).string_value(), "42");

  r = Run({"call", "alpha", "sum", "x"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("plugctl: call alpha: argument 1"));

  r = Run({"call", "alpha", "nosuch"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("has no function \"nosuch\""));
}

TEST_F(PlugctlTest, Logs) {
  Child::Result r = Run({"logs", "alpha"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(Lines(r.out),
              ElementsAre("2026-11-25T10:48:35.123Z INFO  [stderr] listening "
                          "on the socket",
                          "2026-11-25T10:48:35.124Z WARN  [stdout] cache is "
                          "cold",
                          "2026-11-25T10:48:35.125Z ERROR [stderr] request "
                          "failed: timeout"));
  EXPECT_FALSE(broker_->last_tail_logs().follow());

  r = Run({"logs", "alpha", "--tail", "2", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(broker_->last_tail_logs().tail(), 2u);
  std::vector<std::string> lines = Lines(r.out);
  ASSERT_EQ(lines.size(), 2u) << r.out;
  for (const std::string& line : lines) {
    plugd::v1::LogLine log;
    ASSERT_TRUE(ParseJson(line, &log));
    EXPECT_EQ(log.plugin(), "alpha");
    EXPECT_THAT(Keys(line), ElementsAre("level", "pid", "plugin", "stream",
                                        "text", "time", "truncated"));
  }
  EXPECT_THAT(lines[1], HasSubstr("\"stream\":\"LOG_STREAM_STDERR\""));
}

TEST_F(PlugctlTest, LogsFollowExits0WhenTheBrokerEndsTheStream) {
  Child::Result r = Run({"logs", "--follow", "alpha"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(Lines(r.out).size(), 3u) << r.out;
  EXPECT_TRUE(broker_->last_tail_logs().follow());
}

TEST_F(PlugctlTest, LogsFollowStreamsUntilSigintThenExits0) {
  std::unique_ptr<Child> child = Child::Spawn(
      PLUGCTL_PATH, {"logs", "beta", "-f", "--broker", "unix:" + socket_},
      BaseEnv());
  // The lines arrive while the stream is still open.
  for (const char* want : {"listening on the socket", "cache is cold",
                           "request failed: timeout"}) {
    std::optional<std::string> line = child->ReadLine(kGuard);
    ASSERT_TRUE(line.has_value()) << "no line: " << want;
    EXPECT_THAT(*line, HasSubstr(want));
  }
  child->Signal(SIGINT);
  std::optional<Child::Result> r = child->Wait(kGuard);
  ASSERT_TRUE(r.has_value()) << "plugctl did not end on SIGINT";
  EXPECT_EQ(r->exit_code, 0) << r->err;
  EXPECT_THAT(r->out, IsEmpty());
  EXPECT_THAT(r->err, IsEmpty());
}

TEST_F(PlugctlTest, Events) {
  Child::Result r = Run({"events"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(
      Lines(r.out),
      ElementsAre(
          "2026-11-25T10:48:36.123Z alpha starting pid 4242",
          "2026-11-25T10:48:37.123Z alpha ready pid 4242",
          "2026-11-25T10:48:38.123Z beta exited pid 4300, killed by signal "
          "9 (SIGKILL)",
          "2026-11-25T10:48:39.123Z beta backing-off next start in 500ms",
          "2026-11-25T10:48:40.123Z beta start-failed pid 4301, no "
          "handshake within 5s; it printed: \"bad config\""));
  EXPECT_EQ(broker_->last_watch_events().history(), 20u);
  EXPECT_FALSE(broker_->last_watch_events().follow());
}

TEST_F(PlugctlTest, EventsJsonPrintsOneObjectPerLine) {
  Child::Result r =
      Run({"events", "--json", "--plugin", "beta", "--history", "2", "-f"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  plugd::v1::WatchEventsRequest request = broker_->last_watch_events();
  EXPECT_EQ(request.plugin(), "beta");
  EXPECT_EQ(request.history(), 2u);
  EXPECT_TRUE(request.follow());
  std::vector<std::string> lines = Lines(r.out);
  ASSERT_EQ(lines.size(), 2u) << r.out;
  plugd::v1::Event backing_off, failed;
  ASSERT_TRUE(ParseJson(lines[0], &backing_off));
  ASSERT_TRUE(ParseJson(lines[1], &failed));
  EXPECT_EQ(backing_off.type(), plugd::v1::EVENT_TYPE_BACKING_OFF);
  EXPECT_EQ(failed.type(), plugd::v1::EVENT_TYPE_START_FAILED);
  EXPECT_THAT(Keys(lines[0]), ElementsAre("delay", "message", "pid", "plugin",
                                          "sequence", "time", "type"));
  EXPECT_THAT(lines[0], HasSubstr("\"delay\":\"0.500s\""));
  EXPECT_THAT(lines[0], HasSubstr("\"sequence\":\"4\""));
}

TEST_F(PlugctlTest, MissingSocketExits3NamingTheAddress) {
  const std::string address = "unix:" + dir_ + "/nobody.sock";
  Child::Result r = RunWithEnv({"list", "--broker", address}, BaseEnv());
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_THAT(r.out, IsEmpty());
  EXPECT_THAT(r.err, HasSubstr("cannot reach the plugd broker at " + address +
                               " (no such socket)"));
  EXPECT_THAT(r.err, HasSubstr("plugd --config FILE"));
  EXPECT_THAT(r.err, HasSubstr("PLUGD_ADMIN"));
}

TEST_F(PlugctlTest, StaleSocketExits3) {
  // A socket file nobody listens on: what a crashed broker leaves behind.
  const std::string path = dir_ + "/stale.sock";
  int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strcpy(addr.sun_path, path.c_str());
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  close(fd);
  ASSERT_TRUE(std::filesystem::exists(path));

  Child::Result r =
      RunWithEnv({"status", "alpha", "--broker", path}, BaseEnv());
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_THAT(r.err, HasSubstr("cannot reach the plugd broker at unix:" + path +
                               " (connection refused"));
}

TEST_F(PlugctlTest, DefaultAddressFromTheEnvironment) {
  // PLUGD_ADMIN, as a bare path.
  std::vector<std::string> env = BaseEnv();
  env.push_back("PLUGD_ADMIN=" + socket_);
  Child::Result r = RunWithEnv({"list"}, env);
  EXPECT_EQ(r.exit_code, 0) << r.err;

  // $XDG_RUNTIME_DIR/plugd/admin.sock, where the daemon listens by default.
  env = BaseEnv();
  env.push_back("XDG_RUNTIME_DIR=" + dir_);
  r = RunWithEnv({"list"}, env);
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_THAT(r.err, HasSubstr("unix:" + dir_ + "/plugd/admin.sock"));
  std::filesystem::create_directory(dir_ + "/plugd");
  {
    FakeBroker daemon(dir_ + "/plugd/admin.sock");
    r = RunWithEnv({"status", "gamma"}, env);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_THAT(r.out, HasSubstr("state:             stopped\n"));
  }
}

TEST_F(PlugctlTest, UsageErrorsExit2) {
  for (const auto& args :
       std::vector<std::vector<std::string>>{{},
                                             {"frobnicate"},
                                             {"status"},
                                             {"list", "--bogus"},
                                             {"logs", "alpha", "--tail"},
                                             {"call", "alpha"},
                                             {"list", "--follow"}}) {
    Child::Result r = Run(args);
    EXPECT_EQ(r.exit_code, 2) << absl::StrJoin(args, " ");
    EXPECT_THAT(r.err, StartsWith("plugctl: ")) << absl::StrJoin(args, " ");
    EXPECT_THAT(r.err, HasSubstr("Usage: plugctl"));
    EXPECT_THAT(r.out, IsEmpty());
  }
}

TEST_F(PlugctlTest, HelpOnEverySubcommandExits0) {
  for (const auto& args :
       std::vector<std::vector<std::string>>{{"--help"}, {"-h"}, {"help"}}) {
    Child::Result r = RunWithEnv(args, BaseEnv());
    EXPECT_EQ(r.exit_code, 0);
    EXPECT_THAT(r.out, HasSubstr("Usage: plugctl [--broker ADDR]"));
  }
  for (const char* command : {"list", "status", "start", "stop", "restart",
                              "logs", "events", "describe", "call"}) {
    Child::Result r = RunWithEnv({command, "--help"}, BaseEnv());
    EXPECT_EQ(r.exit_code, 0) << command;
    EXPECT_THAT(r.out, StartsWith(absl::StrCat("Usage: plugctl [GLOBAL FLAGS] ",
                                               command)));
    EXPECT_THAT(r.err, IsEmpty());
  }
}

}  // namespace
}  // namespace plugd::plugctl::testing
