// Reading /proc of processes that may exit under the read.
#include "plugd/broker/proc_stat.h"

#include <fcntl.h>
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

  // Opened while it lives, read once it is gone: the race of a process
  // exiting between the open and the read. read(2) fails with ESRCH, which
  // std::filebuf throws from underflow past an istreambuf_iterator.
  const std::string path = absl::StrCat("/proc/", child, "/stat");
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(kill(child, SIGKILL), 0);
  ASSERT_EQ(waitpid(child, nullptr, 0), child);
  EXPECT_FALSE(ReadFd(fd).has_value());
  ::close(fd);
  // Gone before the open: no value either.
  EXPECT_FALSE(ReadProcFile(child, "stat").has_value());
  EXPECT_FALSE(ReadProcFile(child, "cmdline").has_value());
}

}  // namespace
}  // namespace plugd::broker::internal
