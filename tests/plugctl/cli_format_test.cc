// Unit tests of plugctl's argument parsing and output formatting.
#include <google/protobuf/util/json_util.h>

#include <string>
#include <vector>

#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "cli.h"
#include "format.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace plugd::plugctl {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::StartsWith;

Environment TestEnv() {
  Environment env;
  env.uid = 1000;
  return env;
}

ParseResult Parse(std::vector<std::string> args, Environment env = TestEnv()) {
  return ParseCommandLine(args, env);
}

google::protobuf::Timestamp Ts(absl::Time t) {
  google::protobuf::Timestamp ts;
  ts.set_seconds(absl::ToUnixSeconds(t));
  ts.set_nanos(absl::ToInt64Nanoseconds(
      t - absl::FromUnixSeconds(absl::ToUnixSeconds(t))));
  return ts;
}

// 2026-11-25T10:48:35.123Z
const absl::Time kT = absl::FromUnixMillis(1795603715123);

TEST(DefaultBrokerAddressTest, PrefersPlugdAdminThenXdgThenTmp) {
  Environment env = TestEnv();
  EXPECT_EQ(DefaultBrokerAddress(env), "unix:/tmp/plugd-1000/admin.sock");
  env.xdg_runtime_dir = "/run/user/1000";
  EXPECT_EQ(DefaultBrokerAddress(env), "unix:/run/user/1000/plugd/admin.sock");
  env.plugd_admin = "/srv/plugd.sock";
  EXPECT_EQ(DefaultBrokerAddress(env), "unix:/srv/plugd.sock");
  env.plugd_admin = "unix:/x.sock";
  EXPECT_EQ(DefaultBrokerAddress(env), "unix:/x.sock");
}

TEST(NormalizeAddressTest, BarePathsBecomeUnixTargets) {
  EXPECT_EQ(NormalizeAddress("/a/b.sock"), "unix:/a/b.sock");
  EXPECT_EQ(NormalizeAddress("./b.sock"), "unix:./b.sock");
  EXPECT_EQ(NormalizeAddress("b.sock"), "unix:b.sock");
  EXPECT_EQ(NormalizeAddress("unix:/a.sock"), "unix:/a.sock");
  EXPECT_EQ(NormalizeAddress("dns:localhost:50051"), "dns:localhost:50051");
  EXPECT_EQ(UnixSocketPath("unix:/a.sock"), "/a.sock");
  EXPECT_EQ(UnixSocketPath("unix:///a.sock"), "/a.sock");
  EXPECT_EQ(UnixSocketPath("dns:x:1"), std::nullopt);
}

TEST(ParseTimeoutTest, DurationsAndSeconds) {
  EXPECT_EQ(ParseTimeout("5s"), absl::Seconds(5));
  EXPECT_EQ(ParseTimeout("500ms"), absl::Milliseconds(500));
  EXPECT_EQ(ParseTimeout("2"), absl::Seconds(2));
  EXPECT_EQ(ParseTimeout("0"), std::nullopt);
  EXPECT_EQ(ParseTimeout("-1s"), std::nullopt);
  EXPECT_EQ(ParseTimeout("soon"), std::nullopt);
}

TEST(ParseCommandLineTest, GlobalFlagsBeforeOrAfterTheSubcommand) {
  for (const auto& args : std::vector<std::vector<std::string>>{
           {"--broker", "/b.sock", "--json", "--timeout", "5s", "list"},
           {"list", "--broker", "/b.sock", "--json", "--timeout=5s"},
           {"--json", "list", "--broker=/b.sock", "--timeout", "5"}}) {
    ParseResult r = Parse(args);
    ASSERT_EQ(r.kind, ParseResult::Kind::kRun) << r.text;
    EXPECT_EQ(r.options.command, Command::kList);
    EXPECT_EQ(r.options.broker, "unix:/b.sock");
    EXPECT_TRUE(r.options.json);
    EXPECT_EQ(r.options.timeout, absl::Seconds(5));
  }
}

TEST(ParseCommandLineTest, DefaultsFromTheEnvironment) {
  Environment env = TestEnv();
  env.plugd_admin = "/env.sock";
  ParseResult r = Parse({"status", "random"}, env);
  ASSERT_EQ(r.kind, ParseResult::Kind::kRun) << r.text;
  EXPECT_EQ(r.options.command, Command::kStatus);
  EXPECT_EQ(r.options.name, "random");
  EXPECT_EQ(r.options.broker, "unix:/env.sock");
  EXPECT_FALSE(r.options.json);
  EXPECT_EQ(r.options.timeout, absl::Seconds(30));
}

TEST(ParseCommandLineTest, LogsAndEventsFlags) {
  ParseResult r = Parse({"logs", "random", "-f", "--tail", "5"});
  ASSERT_EQ(r.kind, ParseResult::Kind::kRun) << r.text;
  EXPECT_EQ(r.options.command, Command::kLogs);
  EXPECT_TRUE(r.options.follow);
  EXPECT_EQ(r.options.tail, 5u);

  r = Parse({"events", "--plugin", "random", "--history=3", "--follow"});
  ASSERT_EQ(r.kind, ParseResult::Kind::kRun) << r.text;
  EXPECT_EQ(r.options.command, Command::kEvents);
  EXPECT_EQ(r.options.plugin_filter, "random");
  EXPECT_EQ(r.options.history, 3u);
  EXPECT_TRUE(r.options.follow);

  r = Parse({"events"});
  ASSERT_EQ(r.kind, ParseResult::Kind::kRun) << r.text;
  EXPECT_EQ(r.options.history, 20u);
  EXPECT_FALSE(r.options.follow);
}

TEST(ParseCommandLineTest, CallTakesNegativeNumbersAndDashDash) {
  ParseResult r = Parse({"call", "random", "random", "-5", "10", "--json"});
  ASSERT_EQ(r.kind, ParseResult::Kind::kRun) << r.text;
  EXPECT_EQ(r.options.function, "random");
  EXPECT_THAT(r.options.args, ElementsAre("-5", "10"));
  EXPECT_TRUE(r.options.json);

  r = Parse({"call", "kv", "put", "--", "--key", "-x"});
  ASSERT_EQ(r.kind, ParseResult::Kind::kRun) << r.text;
  EXPECT_THAT(r.options.args, ElementsAre("--key", "-x"));
}

TEST(ParseCommandLineTest, UsageErrors) {
  struct Case {
    std::vector<std::string> args;
    std::string message;
  };
  for (const Case& c : std::vector<Case>{
           {{}, "no command given"},
           {{"frobnicate"}, "unknown command 'frobnicate'"},
           {{"list", "--verbose"}, "unknown flag --verbose"},
           {{"status"}, "'status' needs NAME"},
           {{"call", "random"}, "'call' needs NAME and FUNCTION"},
           {{"list", "extra"}, "unexpected argument 'extra'"},
           {{"status", "a", "b"}, "unexpected argument 'b'"},
           {{"list", "--follow"}, "unknown flag --follow for 'list'"},
           {{"logs", "x", "--plugin", "y"}, "unknown flag --plugin for 'logs'"},
           {{"logs", "x", "--tail", "lots"}, "bad --tail 'lots'"},
           {{"list", "--timeout", "never"}, "bad --timeout 'never'"},
           {{"list", "--broker"}, "flag --broker needs a value"},
           {{"list", "--json=yes"}, "flag --json takes no value"},
           // The admin API's strings are UTF-8; say which one is not.
           {{"restart", "a\xff"},
            "NAME is not valid UTF-8 text (byte 0xff at offset 1)"},
           {{"call", "p", "f\xc3"},
            "FUNCTION is not valid UTF-8 text (byte 0xc3 at offset 1)"},
           {{"call", "p", "f", "1", "\xfe"},
            "argument 2 is not valid UTF-8 text (byte 0xfe at offset 0); "
            "Values carry text"},
           {{"events", "--plugin", "\x80"},
            "--plugin is not valid UTF-8 text (byte 0x80 at offset 0)"},
       }) {
    ParseResult r = Parse(c.args);
    EXPECT_EQ(r.kind, ParseResult::Kind::kUsageError)
        << absl::StrJoin(c.args, " ");
    EXPECT_THAT(r.text, StartsWith("plugctl: " + c.message))
        << absl::StrJoin(c.args, " ");
    EXPECT_THAT(r.text, HasSubstr("Usage: plugctl"));
  }
}

TEST(ParseCommandLineTest, HelpOnEveryCommand) {
  ParseResult r = Parse({"--help"});
  ASSERT_EQ(r.kind, ParseResult::Kind::kHelp);
  for (const char* name : {"list", "status", "start", "stop", "restart", "logs",
                           "events", "describe", "call"}) {
    EXPECT_THAT(r.text, HasSubstr(std::string("  ") + name)) << name;
    for (const auto& args : std::vector<std::vector<std::string>>{
             {name, "--help"}, {name, "-h"}, {"-h", name}, {"help", name}}) {
      ParseResult h = Parse(args);
      ASSERT_EQ(h.kind, ParseResult::Kind::kHelp) << name;
      EXPECT_THAT(h.text, StartsWith(std::string("Usage: plugctl [GLOBAL "
                                                 "FLAGS] ") +
                                     name))
          << name;
    }
  }
  // Help wins over a missing NAME.
  EXPECT_EQ(Parse({"status", "--help"}).kind, ParseResult::Kind::kHelp);
  EXPECT_THAT(Parse({"logs", "--help"}).text, HasSubstr("--follow"));
  EXPECT_THAT(Parse({"events", "--help"}).text, HasSubstr("--history N"));
}

TEST(FormatUptimeTest, TwoUnitsAtMost) {
  EXPECT_EQ(FormatUptime(absl::ZeroDuration()), "0s");
  EXPECT_EQ(FormatUptime(absl::Seconds(-5)), "0s");
  EXPECT_EQ(FormatUptime(absl::Milliseconds(3900)), "3s");
  EXPECT_EQ(FormatUptime(absl::Seconds(59)), "59s");
  EXPECT_EQ(FormatUptime(absl::Seconds(60)), "1m00s");
  EXPECT_EQ(FormatUptime(absl::Minutes(5) + absl::Seconds(12)), "5m12s");
  EXPECT_EQ(FormatUptime(absl::Hours(2) + absl::Minutes(3) + absl::Seconds(59)),
            "2h03m");
  EXPECT_EQ(FormatUptime(absl::Hours(24 * 4 + 1) + absl::Minutes(30)), "4d01h");
  EXPECT_EQ(FormatUptime(absl::Hours(24 * 400)), "400d00h");
}

TEST(FormatTest, NamesAreLowerCaseWords) {
  EXPECT_EQ(StateName(plugd::v1::PLUGIN_STATE_BACKING_OFF), "backing-off");
  EXPECT_EQ(StateName(plugd::v1::PLUGIN_STATE_READY), "ready");
  EXPECT_EQ(StateName(plugd::v1::PLUGIN_STATE_UNSPECIFIED), "unknown");
  EXPECT_EQ(EventTypeName(plugd::v1::EVENT_TYPE_START_FAILED), "start-failed");
  EXPECT_EQ(RestartPolicyName(plugd::v1::RESTART_POLICY_ON_FAILURE),
            "on-failure");
  EXPECT_EQ(StreamName(plugd::v1::LOG_STREAM_STDERR), "stderr");
}

TEST(FormatTest, TimeIsUtcWithMilliseconds) {
  EXPECT_EQ(FormatTime(Ts(kT)), "2026-11-25T10:48:35.123Z");
  EXPECT_EQ(FormatTime(google::protobuf::Timestamp()), "-");
}

TEST(FormatTableTest, WidthsFromContentNoTrailingSpaces) {
  EXPECT_EQ(FormatTable({{"A", "BB", "C"}, {"long", "x", ""}, {"y", "", "z"}}),
            "A     BB  C\n"
            "long  x\n"
            "y         z\n");
}

plugd::v1::ListPluginsResponse SampleList() {
  plugd::v1::ListPluginsResponse list;
  plugd::v1::PluginStatus* a = list.add_plugins();
  a->set_name("random");
  a->set_state(plugd::v1::PLUGIN_STATE_READY);
  a->set_pid(4242);
  *a->mutable_started_at() = Ts(kT - absl::Seconds(312));
  a->set_restarts(1);
  a->set_address("unix:/run/plugd/random.sock");
  a->set_version("1.2.0");
  plugd::v1::PluginStatus* b = list.add_plugins();
  b->set_name("kv");
  b->set_state(plugd::v1::PLUGIN_STATE_FAILED);
  b->set_restarts(5);
  b->set_address("unix:/run/plugd/kv.sock");
  return list;
}

TEST(FormatPluginListTest, Table) {
  EXPECT_EQ(
      FormatPluginList(SampleList(), kT),
      "NAME    STATE   PID   UPTIME  RESTARTS  ADDRESS                   "
      "   VERSION\n"
      "random  ready   4242  5m12s   1         unix:/run/plugd/random.sock"
      "  1.2.0\n"
      "kv      failed  -     -       5         unix:/run/plugd/kv.sock   "
      "   -\n");
  // Header only when there are no plugins.
  EXPECT_EQ(FormatPluginList(plugd::v1::ListPluginsResponse(), kT),
            "NAME  STATE  PID  UPTIME  RESTARTS  ADDRESS  VERSION\n");
}

TEST(FormatPluginStatusTest, KeyValueLines) {
  plugd::v1::PluginStatus s = SampleList().plugins(1);
  s.mutable_last_exit()->set_code(3);  // No text: derived.
  s.set_last_error("no handshake within 5s");
  *s.mutable_next_start_at() = Ts(kT + absl::Seconds(2));
  s.set_restart_policy(plugd::v1::RESTART_POLICY_ON_FAILURE);
  s.add_command("/usr/lib/plugd/plugd-kv");
  s.add_command("--db=/var/kv");
  std::vector<std::string> lines =
      absl::StrSplit(FormatPluginStatus(s, kT), '\n');
  EXPECT_THAT(lines,
              ::testing::IsSupersetOf({
                  "name:              kv",
                  "state:             failed",
                  "pid:               -",
                  "uptime:            -",
                  "restarts:          5",
                  "restart policy:    on-failure",
                  "command:           /usr/lib/plugd/plugd-kv --db=/var/kv",
                  "last exit:         exited with code 3",
                  "last error:        no handshake within 5s",
                  "next start:        2026-11-25T10:48:37.123Z (in 2s)",
                  "log lines dropped: 0",
              }));
  EXPECT_EQ(FormatStateLine(SampleList().plugins(0)),
            "random: ready (pid 4242)");
}

TEST(FormatPluginStatusTest, GoPluginShowsTheAnnouncedAddress) {
  plugd::v1::PluginStatus s = SampleList().plugins(1);
  s.set_address("unix:/run/plugd/go-kv.sock");
  s.set_announced_address("unix:/run/plugd/plugin3246214629");
  s.set_go_plugin(true);
  s.set_protocol_version(1);
  std::vector<std::string> lines =
      absl::StrSplit(FormatPluginStatus(s, kT), '\n');
  EXPECT_THAT(lines, ::testing::IsSupersetOf({
                         "address:           unix:/run/plugd/go-kv.sock -> "
                         "unix:/run/plugd/plugin3246214629",
                         "protocol:          1 (go-plugin)",
                     }));
}

TEST(FormatEventTest, DetailsByType) {
  plugd::v1::Event e;
  *e.mutable_time() = Ts(kT);
  e.set_plugin("random");
  e.set_type(plugd::v1::EVENT_TYPE_EXITED);
  e.set_pid(4242);
  e.mutable_exit()->set_signaled(true);
  e.mutable_exit()->set_signal(9);
  e.mutable_exit()->set_text("killed by signal 9 (SIGKILL)");
  EXPECT_EQ(FormatEvent(e),
            "2026-11-25T10:48:35.123Z random exited pid 4242, killed by signal "
            "9 (SIGKILL)");
  // Killed by the broker: why.
  e.mutable_exit()->set_killed_for("liveness");
  EXPECT_EQ(FormatEvent(e),
            "2026-11-25T10:48:35.123Z random exited pid 4242, killed by signal "
            "9 (SIGKILL) by the broker: no answer to health checks "
            "(liveness_timeout)");
  plugd::v1::Event b;
  *b.mutable_time() = Ts(kT);
  b.set_plugin("random");
  b.set_type(plugd::v1::EVENT_TYPE_BACKING_OFF);
  b.mutable_delay()->set_seconds(1);
  b.mutable_delay()->set_nanos(500000000);
  EXPECT_EQ(FormatEvent(b),
            "2026-11-25T10:48:35.123Z random backing-off next start in 1.5s");
  plugd::v1::Event f = b;
  f.clear_delay();
  f.set_type(plugd::v1::EVENT_TYPE_FAILED);
  f.set_message("5 restarts within 60s");
  EXPECT_EQ(FormatEvent(f),
            "2026-11-25T10:48:35.123Z random failed 5 restarts within 60s");
}

TEST(FormatLogLineTest, TimeLevelStreamText) {
  plugd::v1::LogLine l;
  *l.mutable_time() = Ts(kT);
  l.set_stream(plugd::v1::LOG_STREAM_STDERR);
  l.set_level("warn");
  l.set_text("disk almost full");
  EXPECT_EQ(FormatLogLine(l),
            "2026-11-25T10:48:35.123Z WARN  [stderr] disk almost full");
  l.set_level("error");
  l.set_truncated(true);
  EXPECT_EQ(FormatLogLine(l),
            "2026-11-25T10:48:35.123Z ERROR [stderr] disk almost full "
            "[truncated]");
}

TEST(FormatDescribeTest, ServicesAndFunctions) {
  plugd::v1::DescribeResponse d;
  d.set_name("random");
  d.set_version("1.2.0");
  d.set_protocol_version(2);
  d.set_core_protocol_version(1);
  d.add_services("plugd.v1.Functions");
  plugd::v1::FunctionInfo* f = d.add_functions();
  f->set_name("random");
  f->set_help("random [MIN [MAX]]: a random integer");
  plugd::v1::Parameter* p = f->add_params();
  p->set_name("min");
  p->set_kind(plugd::v1::VALUE_KIND_NUMBER);
  p->set_optional(true);
  p->set_help("lower bound");
  plugd::v1::Parameter* v = f->add_params();
  v->set_name("rest");
  v->set_variadic(true);
  EXPECT_EQ(FormatDescribe(d),
            "name:     random\n"
            "version:  1.2.0\n"
            "protocol: 2 (core 1)\n"
            "pid:      -\n"
            "services:\n"
            "  plugd.v1.Functions\n"
            "functions:\n"
            "  random(min?: number, rest...: any)\n"
            "      random [MIN [MAX]]: a random integer\n"
            "      min: lower bound\n");
}

TEST(ToJsonTest, ProtoFieldNamesAndDefaults) {
  std::string json = ToJson(SampleList());
  EXPECT_EQ(json.find('\n'), std::string::npos);
  EXPECT_THAT(json, StartsWith("{\"plugins\":[{\"name\":\"random\""));
  EXPECT_THAT(json, HasSubstr("\"state\":\"PLUGIN_STATE_READY\""));
  EXPECT_THAT(json, HasSubstr("\"pid\":\"4242\""));
  EXPECT_THAT(json, HasSubstr("\"started_at\":\"2026-11-25T10:43:23.123Z\""));
  EXPECT_THAT(json, HasSubstr("\"protocol_version\":0"));
  EXPECT_THAT(json, HasSubstr("\"log_lines_dropped\":\"0\""));
  EXPECT_THAT(json, HasSubstr("\"last_error\":\"\""));
  // It parses back.
  plugd::v1::ListPluginsResponse back;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(json, &back).ok());
  EXPECT_EQ(back.plugins(0).pid(), 4242);
}

}  // namespace
}  // namespace plugd::plugctl
