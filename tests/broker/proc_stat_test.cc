// Reading /proc of processes that may exit under the read.
#include "plugd/broker/proc_stat.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace plugd::broker::internal {
namespace {

using ::testing::HasSubstr;

TEST(ReadProcFileTest, ReadsALiveProcessAndIsEmptyOnceItIsGone) {
  pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    pause();
    _exit(0);
  }
  std::optional<std::string> stat = ReadProcFile(child, "stat");
  ASSERT_TRUE(stat.has_value());
  EXPECT_THAT(*stat, HasSubstr(absl::StrCat(child, " (")));
  std::optional<std::string> cmdline = ReadProcFile(child, "cmdline");
  ASSERT_TRUE(cmdline.has_value());
  EXPECT_FALSE(cmdline->empty());

  ASSERT_EQ(kill(child, SIGKILL), 0);
  ASSERT_EQ(waitpid(child, nullptr, 0), child);
  // Gone: no value, and no exception (std::ifstream read through an
  // istreambuf_iterator throws std::ios_base::failure when the process
  // exits between its open and its read: read(2) fails with ESRCH).
  EXPECT_FALSE(ReadProcFile(child, "stat").has_value());
  EXPECT_FALSE(ReadProcFile(child, "cmdline").has_value());
}

}  // namespace
}  // namespace plugd::broker::internal
