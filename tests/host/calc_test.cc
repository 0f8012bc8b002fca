// The example hosts, run as a user would run them.
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "test_util.h"

namespace plugd {
namespace {

using ::plugd::testing::Bin;
using ::plugd::testing::CommandResult;
using ::plugd::testing::RunCommand;
using ::testing::AllOf;
using ::testing::HasSubstr;

CommandResult Calc(std::vector<std::string> args) {
  std::vector<std::string> argv = {Bin("calc"), "--plugin", Bin("plugd-random"),
                                   "--plugin", Bin("plugd-arith")};
  argv.insert(argv.end(), args.begin(), args.end());
  return RunCommand(argv);
}

TEST(Calc, CallsAFunctionAndPrintsTheResult) {
  CommandResult r = Calc({"add", "1", "2", "3.5"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "6.5\n");
  r = Calc({"random", "7", "7"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "7\n");
}

TEST(Calc, ListsEveryFunctionWithHelp) {
  CommandResult r = Calc({"--list"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, AllOf(HasSubstr("random  (plugin random)"),
                           HasSubstr("add  (plugin arith)"),
                           HasSubstr("div  (plugin arith)")));
}

TEST(Calc, UnknownFunctionExits1ListingTheAvailableOnes) {
  CommandResult r = Calc({"frobnicate"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, AllOf(HasSubstr("frobnicate"), HasSubstr("random"),
                           HasSubstr("add")));
  EXPECT_EQ(r.out, "");
}

TEST(Calc, BadArgumentsExit1WithTheReason) {
  CommandResult r = Calc({"div", "1", "0"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("division by zero"));
}

TEST(Calc, ErrorsNameTheFunctionOnce) {
  // The plugin's message already starts with "sub: ".
  CommandResult r = Calc({"sub", "1", "two"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err,
            "calc: sub: argument 2 (b) must be a number, got string \"two\"\n");
}

TEST(Calc, AnArgumentThatIsNotUtf8IsRefusedBeforeSending) {
  CommandResult r = Calc({"add", "1", "caf\xe9"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err,
            "calc: add: argument 2 is not valid UTF-8 text (byte 0xe9 at "
            "offset 3); Values carry text: encode binary data, e.g. as "
            "base64\n");
  EXPECT_EQ(r.out, "");
}

TEST(Calc, UsageErrorsExit2) {
  EXPECT_EQ(RunCommand({Bin("calc"), "add", "1"}).exit_code, 2);
  EXPECT_EQ(RunCommand({Bin("calc"), "--plugin"}).exit_code, 2);
  EXPECT_EQ(Calc({"--bogus"}).exit_code, 2);
  CommandResult help = RunCommand({Bin("calc"), "--help"});
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_THAT(help.out, HasSubstr("usage: calc"));
}

TEST(Calc, APluginThatWillNotStartIsReported) {
  CommandResult r =
      RunCommand({Bin("calc"), "--plugin", "/nonexistent/plugd-x", "add", "1"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("/nonexistent/plugd-x"));
}

TEST(Kvctl, PutGetScanDeleteThroughTypedStubs) {
  char dir_template[] = "/tmp/plugd-kvctl.XXXXXX";
  ASSERT_NE(mkdtemp(dir_template), nullptr);
  std::string db = std::string(dir_template) + "/kv.pb";
  auto kvctl = [&](std::vector<std::string> args) {
    std::vector<std::string> argv = {Bin("kvctl"), "--data", db};
    argv.insert(argv.end(), args.begin(), args.end());
    return RunCommand(argv);
  };
  EXPECT_EQ(kvctl({"put", "a", "1"}).exit_code, 0);
  EXPECT_EQ(kvctl({"put", "b", "2"}).exit_code, 0);
  CommandResult got = kvctl({"get", "a"});
  EXPECT_EQ(got.exit_code, 0) << got.err;
  EXPECT_EQ(got.out, "1\n");
  EXPECT_EQ(kvctl({"scan"}).out, "a\t1\nb\t2\n");
  EXPECT_EQ(kvctl({"delete", "a"}).exit_code, 0);
  CommandResult missing = kvctl({"get", "a"});
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_THAT(missing.err, HasSubstr("a"));
  EXPECT_EQ(kvctl({"list"}).out, "b\n");
  RunCommand({"/bin/rm", "-rf", dir_template});
}

}  // namespace
}  // namespace plugd
