// plugd-conform, the real executable, against real plugins: every example
// plugin in every language must pass every check; deliberately broken
// plugins (the SDKs' broken_handshake / crash_at_start examples and the
// misbehaving modes of plugd-test-raw) must fail exactly the checks they
// break, with exit code 1. Plus the --json form, the human form and usage
// errors. Each case is its own ctest entry (gtest_discover_tests), so they
// run in parallel.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <set>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"
#include "test_util.h"

extern char** environ;

namespace plugd::conform {
namespace {

using ::plugd::testing::Bin;
using ::plugd::testing::CommandResult;
using ::plugd::testing::RunCommand;
using ::testing::HasSubstr;
using ::testing::StartsWith;

const std::vector<std::string> kAllChecks = {
    "cookie",           "handshake",   "versions",    "health",
    "describe",         "functions",   "stdout-logs", "shutdown-call",
    "shutdown-sigterm", "no-leftovers"};

// One parsed --json run.
struct ConformRun {
  CommandResult raw;
  google::protobuf::Struct json;
  std::vector<std::string> names;  // checks in output order
  std::set<std::string> failed;
  std::map<std::string, std::string> reasons;
};

ConformRun Conform(const std::vector<std::string>& flags,
                   const std::vector<std::string>& command) {
  std::vector<std::string> argv = {Bin("plugd-conform"), "--json"};
  argv.insert(argv.end(), flags.begin(), flags.end());
  argv.push_back("--");
  argv.insert(argv.end(), command.begin(), command.end());
  ConformRun run;
  // A hang guard only: a run takes seconds.
  run.raw = RunCommand(argv, absl::Minutes(4));
  auto status =
      google::protobuf::util::JsonStringToMessage(run.raw.out, &run.json);
  EXPECT_TRUE(status.ok()) << status.ToString() << "\nstdout: " << run.raw.out
                           << "\nstderr: " << run.raw.err;
  const auto& fields = run.json.fields();
  if (!fields.count("checks")) return run;
  for (const auto& check : fields.at("checks").list_value().values()) {
    const auto& c = check.struct_value().fields();
    const std::string name = c.at("name").string_value();
    run.names.push_back(name);
    run.reasons[name] = c.at("reason").string_value();
    if (!c.at("passed").bool_value()) run.failed.insert(name);
  }
  return run;
}

// "name: reason" for every check, for failure messages.
std::string Explain(const ConformRun& run) {
  std::string out;
  for (const std::string& name : run.names) {
    absl::StrAppend(&out, run.failed.count(name) ? "FAIL " : "PASS ", name,
                    ": ", run.reasons.at(name), "\n");
  }
  return absl::StrCat(out, "stderr: ", run.raw.err);
}

std::set<std::string> AllBut(const std::set<std::string>& passing) {
  std::set<std::string> out;
  for (const std::string& c : kAllChecks) {
    if (!passing.count(c)) out.insert(c);
  }
  return out;
}

// ---- every example plugin passes ---------------------------------------

struct Example {
  std::string test_name;
  std::vector<std::string> command;
};

// Short names in ctest's list instead of the parameter's bytes.
void PrintTo(const Example& example, std::ostream* os) {
  *os << example.test_name;
}

class ExamplePluginTest : public ::testing::TestWithParam<Example> {};

TEST_P(ExamplePluginTest, PassesEveryCheck) {
  ConformRun run = Conform({}, GetParam().command);
  EXPECT_EQ(run.raw.exit_code, 0) << Explain(run);
  EXPECT_EQ(run.names, kAllChecks);
  EXPECT_TRUE(run.failed.empty()) << Explain(run);
  for (const auto& [name, reason] : run.reasons) {
    EXPECT_FALSE(reason.empty()) << name;
  }
  EXPECT_TRUE(run.json.fields().at("passed").bool_value());
}

INSTANTIATE_TEST_SUITE_P(
    Conform, ExamplePluginTest,
    ::testing::Values(
        Example{"cpp_random", {Bin("plugd-random")}},
        Example{"cpp_arith", {Bin("plugd-arith")}},
        Example{"cpp_kv", {Bin("plugd-kv")}},
        Example{"cpp_raw_nosdk", {Bin("plugd-test-raw"), "--strict"}},
        Example{"python_stats", {Bin("plugd-py-stats")}},
        Example{"python_kv", {Bin("plugd-py-kv")}},
        Example{"python_nosdk_echo", {Bin("plugd-py-nosdk-echo")}},
        Example{"node_strings", {Bin("plugd-node-strings")}},
        Example{"node_kv", {Bin("plugd-node-kv")}},
        Example{"go_kv", {Bin("plugd-go-kv")}},
        Example{"go_hash", {Bin("plugd-go-hash")}}),
    [](const ::testing::TestParamInfo<Example>& info) {
      return info.param.test_name;
    });

// ---- broken plugins fail exactly what they break ------------------------

struct Broken {
  std::string test_name;
  std::vector<std::string> command;
  std::set<std::string> failing;
  // A substring of the first failing check's reason (in check order).
  std::string reason_has;
};

void PrintTo(const Broken& broken, std::ostream* os) {
  *os << broken.test_name;
}

class BrokenPluginTest : public ::testing::TestWithParam<Broken> {};

TEST_P(BrokenPluginTest, FailsExactlyTheBrokenChecks) {
  // Short hang guards: broken plugins make the checker wait for them.
  ConformRun run = Conform({"--timeout=3s", "--grace=1s"}, GetParam().command);
  EXPECT_EQ(run.raw.exit_code, 1) << Explain(run);
  EXPECT_EQ(run.names, kAllChecks);
  EXPECT_EQ(run.failed, GetParam().failing) << Explain(run);
  EXPECT_FALSE(run.json.fields().at("passed").bool_value());
  EXPECT_EQ(run.json.fields().at("failed_count").number_value(),
            GetParam().failing.size());
  for (const std::string& name : kAllChecks) {
    if (run.failed.count(name)) {
      EXPECT_THAT(run.reasons[name], HasSubstr(GetParam().reason_has))
          << Explain(run);
      break;
    }
  }
}

std::vector<std::string> Raw(const std::string& mode, bool strict = true) {
  std::vector<std::string> command = {Bin("plugd-test-raw"), "--mode=" + mode};
  if (strict) command.push_back("--strict");
  return command;
}

INSTANTIATE_TEST_SUITE_P(
    Conform, BrokenPluginTest,
    ::testing::Values(
        // The SDKs' broken examples: a banner instead of a handshake (and no
        // cookie check), or an exit with code 3 before the handshake.
        Broken{"python_broken_handshake",
               {Bin("plugd-py-broken-handshake")},
               AllBut({}),
               "hello from a python plugin"},
        Broken{"python_crash_at_start",
               {Bin("plugd-py-crash-at-start")},
               AllBut({"cookie"}),
               "exited with code 3"},
        Broken{"node_broken_handshake",
               {Bin("plugd-node-broken-handshake")},
               AllBut({}),
               "hello from a node plugin"},
        Broken{"node_crash_at_start",
               {Bin("plugd-node-crash-at-start")},
               AllBut({"cookie"}),
               "exited with code 3"},
        Broken{"go_broken_handshake",
               {Bin("plugd-go-broken-handshake")},
               AllBut({}),
               "hello from a go plugin"},
        Broken{"go_crash_at_start",
               {Bin("plugd-go-crash-at-start")},
               AllBut({"cookie"}),
               "exited with code 3"},
        // plugd-test-raw's modes.
        Broken{"raw_lax_ok",
               Raw("ok", /*strict=*/false),
               {"versions", "shutdown-sigterm"},
               "PLUGD_PROTOCOL_VERSIONS=99 it printed the handshake"},
        Broken{"raw_garbage", Raw("garbage"), AllBut({"cookie"}),
               "hello world"},
        Broken{"raw_exit_early", Raw("exit-early"), AllBut({"cookie"}),
               "fatal: config file missing"},
        Broken{"raw_bad_address",
               Raw("bad-address"),
               {"handshake", "health", "describe", "functions", "stdout-logs",
                "shutdown-call"},
               "not PLUGD_SOCKET"},
        Broken{"raw_no_cookie_check",
               Raw("no-cookie-check"),
               {"cookie"},
               "it printed the handshake line"},
        Broken{"raw_ignore_versions",
               Raw("ignore-versions"),
               {"versions"},
               "it printed the handshake"},
        Broken{
            "raw_not_serving", Raw("not-serving"), {"health"}, "NOT_SERVING"},
        Broken{"raw_describe_empty",
               Raw("describe-empty"),
               {"describe"},
               "its name is empty"},
        Broken{"raw_functions_wrong_code",
               Raw("functions-wrong-code"),
               {"functions"},
               "an unknown function MUST be NOT_FOUND"},
        Broken{"raw_stdout_binary",
               Raw("stdout-binary"),
               {"stdout-logs"},
               "is not text"},
        Broken{"raw_shutdown_exit_3",
               Raw("shutdown-exit-3"),
               {"shutdown-call"},
               "exited with code 3"},
        Broken{"raw_ignore_term",
               Raw("ignore-term"),
               {"shutdown-call", "shutdown-sigterm"},
               "still running 1s"},
        Broken{"raw_grandchild",
               Raw("grandchild"),
               {"no-leftovers"},
               "was still alive 1s after the plugin exited"},
        Broken{"raw_setsid_grandchild",
               Raw("setsid-grandchild"),
               {"no-leftovers"},
               "in a session of its own (setsid)"}),
    [](const ::testing::TestParamInfo<Broken>& info) {
      return info.param.test_name;
    });

// A second handshake-shaped line after the handshake is only a log line.
TEST(ConformTest, StdoutAfterTheHandshakeIsLogs) {
  ConformRun run = Conform({"--only=stdout-logs"}, Raw("stdout-chatter"));
  EXPECT_EQ(run.raw.exit_code, 0) << Explain(run);
  ASSERT_EQ(run.names, std::vector<std::string>{"stdout-logs"});
  EXPECT_THAT(run.reasons["stdout-logs"],
              HasSubstr("3 stdout line(s) after the handshake, read as logs"));
  EXPECT_THAT(run.reasons["stdout-logs"],
              HasSubstr("1 look like another handshake line"));
}

TEST(ConformTest, JsonFields) {
  ConformRun run = Conform({"--only=cookie,handshake"}, Raw("ok"));
  ASSERT_EQ(run.raw.exit_code, 0) << Explain(run);
  const auto& f = run.json.fields();
  ASSERT_EQ(f.at("command").list_value().values_size(), 3);
  EXPECT_EQ(f.at("command").list_value().values(0).string_value(),
            Bin("plugd-test-raw"));
  EXPECT_TRUE(f.at("passed").bool_value());
  EXPECT_EQ(f.at("passed_count").number_value(), 2);
  EXPECT_EQ(f.at("failed_count").number_value(), 0);
  const auto& checks = f.at("checks").list_value().values();
  ASSERT_EQ(checks.size(), 2);
  const auto& handshake = checks[1].struct_value().fields();
  EXPECT_EQ(handshake.at("name").string_value(), "handshake");
  EXPECT_TRUE(handshake.at("passed").bool_value());
  EXPECT_THAT(handshake.at("reason").string_value(),
              HasSubstr("printed \"1|1|unix|"));
  EXPECT_GE(handshake.at("duration_ms").number_value(), 0);
}

TEST(ConformTest, HumanOutput) {
  CommandResult r =
      RunCommand({Bin("plugd-conform"), "--only=cookie,describe", "--",
                  Bin("plugd-test-raw"), "--mode=describe-empty", "--strict"});
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  std::vector<std::string> lines = absl::StrSplit(r.out, '\n');
  ASSERT_GE(lines.size(), 3u) << r.out;
  EXPECT_THAT(
      lines[0],
      StartsWith(
          "PASS cookie \u2014 without PLUGD_MAGIC_COOKIE: exited with code 1"));
  EXPECT_THAT(lines[1],
              StartsWith("FAIL describe \u2014 Describe answered name \"\""));
  EXPECT_THAT(lines[2], StartsWith("plugd-conform: 1 of 2 checks failed for "));
  EXPECT_THAT(lines[2], HasSubstr(": describe"));
}

TEST(ConformTest, UsageErrors) {
  struct Case {
    std::vector<std::string> args;
    std::string message;
  };
  for (const Case& c : std::vector<Case>{
           {{}, "no plugin command given"},
           {{"--json"}, "no plugin command given"},
           {{"--frob", "--", "x"}, "unknown flag \"--frob\""},
           {{"--timeout=soon", "x"}, "--timeout=soon: not a positive duration"},
           {{"--grace=-1s", "x"}, "--grace=-1s: not a positive duration"},
           {{"--versions=a", "x"}, "--versions=a"},
           {{"--only=cookies", "x"}, "--only: unknown check \"cookies\""},
           {{"--timeout"}, "--timeout needs a value"}}) {
    std::vector<std::string> argv = {Bin("plugd-conform")};
    argv.insert(argv.end(), c.args.begin(), c.args.end());
    CommandResult r = RunCommand(argv);
    EXPECT_EQ(r.exit_code, 2) << absl::StrJoin(c.args, " ");
    EXPECT_THAT(r.err, HasSubstr(c.message)) << absl::StrJoin(c.args, " ");
    EXPECT_EQ(r.out, "");
  }
  CommandResult help = RunCommand({Bin("plugd-conform"), "--help"});
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_THAT(help.out, HasSubstr("usage: plugd-conform"));
}

TEST(ConformTest, MissingCommandFailsEveryCheck) {
  ConformRun run = Conform({}, {"/nonexistent/plugd-nothing"});
  EXPECT_EQ(run.raw.exit_code, 1);
  EXPECT_EQ(run.failed.size(), kAllChecks.size());
  EXPECT_THAT(run.reasons["cookie"],
              HasSubstr("cannot run /nonexistent/plugd-nothing"));
}

// SIGTERM to the checker mid-check: it kills the plugin and everything the
// plugin started (even in a session of its own) before it exits.
TEST(ConformTest, InterruptedCheckerLeavesNothingBehind) {
  char dir_template[] = "/tmp/conform-test-XXXXXX";
  ASSERT_NE(::mkdtemp(dir_template), nullptr);
  const std::string dir = dir_template;
  const std::string fifo = dir + "/up";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  // Non-blocking, so open() does not wait for a writer; poll() reports
  // nothing until one has written.
  const int fd = ::open(fifo.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  // The "plugin" starts a helper that leaves its session, reports both
  // pids, and hangs (it never checks the cookie).
  const std::string script =
      "setsid sleep 600 & echo $$ $! > " + fifo + "; exec sleep 600";
  std::vector<std::string> argv = {Bin("plugd-conform"),
                                   "--only=cookie",
                                   "--timeout=60s",
                                   "--",
                                   "/bin/sh",
                                   "-c",
                                   script};
  std::vector<char*> args;
  for (std::string& a : argv) args.push_back(a.data());
  args.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
  pid_t checker = -1;
  ASSERT_EQ(
      posix_spawn(&checker, args[0], &actions, nullptr, args.data(), environ),
      0);
  posix_spawn_file_actions_destroy(&actions);

  // Wait (hang guard 60 s) for the line with the two pids.
  std::string line;
  const absl::Time deadline = absl::Now() + absl::Seconds(60);
  while (line.find('\n') == std::string::npos && absl::Now() < deadline) {
    pollfd p{fd, POLLIN, 0};
    const int n = ::poll(
        &p, 1,
        static_cast<int>(absl::ToInt64Milliseconds(deadline - absl::Now())));
    if (n <= 0) break;
    char buf[128];
    const ssize_t got = ::read(fd, buf, sizeof(buf));
    if (got > 0) line.append(buf, static_cast<size_t>(got));
  }
  ::close(fd);
  pid_t plugin = 0, helper = 0;
  std::vector<std::string> pids =
      absl::StrSplit(absl::StripAsciiWhitespace(line), ' ');
  ASSERT_EQ(pids.size(), 2u) << line;
  ASSERT_TRUE(absl::SimpleAtoi(pids[0], &plugin));
  ASSERT_TRUE(absl::SimpleAtoi(pids[1], &helper));
  EXPECT_TRUE(plugd::testing::PidAlive(helper));

  ASSERT_EQ(::kill(checker, SIGTERM), 0);
  ASSERT_TRUE(plugd::testing::WaitForPidGone(checker, absl::Seconds(30)));
  int status = 0;
  ASSERT_EQ(::waitpid(checker, &status, 0), checker);
  EXPECT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 128 + SIGTERM);
  // Both were SIGKILLed before the checker exited (zombies count as gone).
  EXPECT_TRUE(plugd::testing::WaitForPidGone(plugin, absl::Seconds(5)));
  EXPECT_TRUE(plugd::testing::WaitForPidGone(helper, absl::Seconds(5)));
  ::unlink(fifo.c_str());
  ::rmdir(dir.c_str());
}

}  // namespace
}  // namespace plugd::conform

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  // plugd-conform must leave nothing behind, whatever the plugin did.
  plugd::testing::InstallNoLeftoverProcessesCheck();
  return RUN_ALL_TESTS();
}
