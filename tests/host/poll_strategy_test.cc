// Host::Create chooses gRPC's poll strategy for the host's process
// (HostOptions::grpc_poll_strategy, plugd/common/poll_strategy.h). gRPC
// reads it once per process, so each case runs plugd-test-poll-strategy in
// a fresh process.
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "test_util.h"

namespace plugd::host {
namespace {

using ::plugd::testing::Bin;
using ::plugd::testing::CommandResult;
using ::plugd::testing::RunCommand;
using ::testing::HasSubstr;
using ::testing::Not;

// The probe with GRPC_POLL_STRATEGY as given ("" = unset) and `args`.
CommandResult Probe(const std::string& env, std::vector<std::string> args) {
  // PLUGD_LOG_LEVEL unset: the host's warnings must reach stderr.
  std::vector<std::string> argv = {"/usr/bin/env", "-u", "GRPC_POLL_STRATEGY",
                                   "-u", "PLUGD_LOG_LEVEL"};
  if (!env.empty()) argv.push_back("GRPC_POLL_STRATEGY=" + env);
  argv.push_back(Bin("plugd-test-poll-strategy"));
  argv.insert(argv.end(), args.begin(), args.end());
  return RunCommand(argv, absl::Seconds(60));
}

TEST(HostPollStrategyTest, ByDefaultGrpcChooses) {
  CommandResult r = Probe("", {});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("strategy=epoll1\n"));  // gRPC's on Linux
  EXPECT_THAT(r.out, HasSubstr("env=unset\n"));
}

TEST(HostPollStrategyTest, PollWhenAskedAndNothingLeftForPluginsToInherit) {
  CommandResult r =
      Probe("", {"--strategy=poll", "--plugin=" + Bin("plugd-arith")});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("strategy=poll\n"));
  // Removed again once gRPC has read it: plugins must not inherit it.
  EXPECT_THAT(r.out, HasSubstr("env=unset\n"));
  // Calls work (the plugin itself runs with gRPC's default).
  EXPECT_THAT(r.out, HasSubstr("mul=42\n"));
  EXPECT_THAT(r.err, Not(HasSubstr("WARN")));
}

TEST(HostPollStrategyTest, ASecondHostFindsItChosenWithoutAWarning) {
  CommandResult r = Probe("", {"--strategy=poll", "--twice"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("strategy=poll\n"));
  EXPECT_THAT(r.err, Not(HasSubstr("WARN")));
}

TEST(HostPollStrategyTest, TheEnvironmentWinsAndTheHostSaysSo) {
  CommandResult r = Probe("epoll1", {"--strategy=poll"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("strategy=epoll1\n"));
  EXPECT_THAT(r.out, HasSubstr("env=epoll1\n"));
  EXPECT_THAT(r.err, HasSubstr("GRPC_POLL_STRATEGY=epoll1 in the environment"));
}

TEST(HostPollStrategyTest, Epoll1CanBeAskedToo) {
  CommandResult r = Probe("", {"--strategy=epoll1"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("strategy=epoll1\n"));
  EXPECT_THAT(r.out, HasSubstr("env=unset\n"));
}

// gRPC chooses once per process, and keeps its choice even after it was
// shut down: a host created after either must not claim "poll".
TEST(HostPollStrategyTest, TooLateOnceGrpcHasRunAndSaysSo) {
  for (const char* before : {"--grpc-first", "--grpc-released-first"}) {
    SCOPED_TRACE(before);
    CommandResult r = Probe("", {before, "--strategy=poll"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_THAT(r.out, HasSubstr("strategy=epoll1\n"));
    EXPECT_THAT(r.out, HasSubstr("env=unset\n"));
    EXPECT_THAT(r.err, HasSubstr("is epoll1, not poll: gRPC chose it"));
  }
}

TEST(HostPollStrategyTest, AnUnknownNameIsAnErrorNotAnAbort) {
  // gRPC itself would abort the process on an unknown strategy.
  CommandResult r = Probe("", {"--strategy=epollex"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("INVALID_ARGUMENT"));
  EXPECT_THAT(r.err, HasSubstr("\"epollex\" is not one of"));
}

}  // namespace
}  // namespace plugd::host
