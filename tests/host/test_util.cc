#include "test_util.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "plugd/broker/proc_stat.h"

extern char** environ;

namespace plugd::testing {
namespace {

int PollMs(absl::Time deadline) {
  absl::Duration left = deadline - absl::Now();
  if (left <= absl::ZeroDuration()) return 0;
  return static_cast<int>(absl::ToInt64Milliseconds(left)) + 1;
}

std::vector<char*> Argv(const std::vector<std::string>& argv) {
  std::vector<char*> out;
  for (const auto& a : argv) out.push_back(const_cast<char*>(a.c_str()));
  out.push_back(nullptr);
  return out;
}

using ::plugd::broker::internal::ProcStat;
using ::plugd::broker::internal::ReadProcStat;

class NoLeftoversEnvironment : public ::testing::Environment {
 public:
  void SetUp() override {
    ASSERT_EQ(prctl(PR_SET_CHILD_SUBREAPER, 1), 0) << strerror(errno);
  }
  void TearDown() override {
    // Reap zombies (dead orphans handed to us), then look for live children.
    while (waitpid(-1, nullptr, WNOHANG) > 0) {
    }
    std::vector<std::string> alive;
    DIR* proc = opendir("/proc");
    ASSERT_NE(proc, nullptr);
    while (dirent* entry = readdir(proc)) {
      int pid = 0;
      if (!absl::SimpleAtoi(entry->d_name, &pid)) continue;
      std::optional<ProcStat> stat = ReadProcStat(pid);
      if (!stat) continue;
      if (stat->ppid == getpid() && stat->state != 'Z') {
        std::string line =
            broker::internal::ReadProcFile(pid, "cmdline").value_or("");
        std::replace(line.begin(), line.end(), '\0', ' ');
        alive.push_back(absl::StrCat(pid, " ", line));
        kill(pid, SIGKILL);
      }
    }
    closedir(proc);
    EXPECT_TRUE(alive.empty()) << "processes left behind by the suite:\n"
                               << absl::StrJoin(alive, "\n");
  }
};

}  // namespace

std::string BinDir() { return PLUGD_BIN_DIR; }
std::string Bin(const std::string& name) { return BinDir() + "/" + name; }

bool PidAlive(pid_t pid) {
  std::optional<ProcStat> stat = ReadProcStat(pid);
  return stat && stat->state != 'Z' && stat->state != 'X';
}

namespace {

int CountAcceptedUnixConnections(const std::string& path) {
  std::ifstream table("/proc/net/unix");
  std::string line;
  std::getline(table, line);  // the header
  int count = 0;
  while (std::getline(table, line)) {
    // Num RefCount Protocol Flags Type St Inode Path; St 03 is connected,
    // and only the accepting end of a connection has the path.
    std::vector<std::string> fields =
        absl::StrSplit(line, ' ', absl::SkipEmpty());
    if (fields.size() >= 8 && fields[5] == "03" && fields[7] == path) ++count;
  }
  return count;
}

}  // namespace

int AcceptedUnixConnections(const std::string& path) {
  // The table is read in several read()s; sockets opened or closed by other
  // processes meanwhile can make an entry be skipped or seen twice. Two
  // readings in a row that agree are taken as the answer.
  int count = CountAcceptedUnixConnections(path);
  for (int i = 0; i < 10; ++i) {
    const int again = CountAcceptedUnixConnections(path);
    if (again == count) break;
    count = again;
  }
  return count;
}

bool WaitForPidGone(pid_t pid, absl::Duration timeout) {
  int fd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
  if (fd < 0) return errno == ESRCH;
  pollfd p{fd, POLLIN, 0};
  int n = poll(&p, 1, static_cast<int>(absl::ToInt64Milliseconds(timeout)));
  close(fd);
  if (n == 1) return true;
  return !PidAlive(pid);
}

CommandResult RunCommand(const std::vector<std::string>& argv,
                         absl::Duration timeout) {
  CommandResult result;
  int out[2], err[2];
  if (pipe2(out, O_CLOEXEC) != 0 || pipe2(err, O_CLOEXEC) != 0) return result;
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, out[1], 1);
  posix_spawn_file_actions_adddup2(&actions, err[1], 2);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  pid_t pid = -1;
  std::vector<char*> args = Argv(argv);
  int rc = posix_spawn(&pid, args[0], &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  close(out[1]);
  close(err[1]);
  if (rc != 0) {
    close(out[0]);
    close(err[0]);
    result.err = strerror(rc);
    return result;
  }
  absl::Time deadline = absl::Now() + timeout;
  pollfd fds[2] = {{out[0], POLLIN, 0}, {err[0], POLLIN, 0}};
  std::string* sinks[2] = {&result.out, &result.err};
  int open_fds = 2;
  bool timed_out = false;
  while (open_fds > 0) {
    int n = poll(fds, 2, PollMs(deadline));
    if (n == 0) {
      timed_out = true;
      break;
    }
    if (n < 0 && errno == EINTR) continue;
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || fds[i].revents == 0) continue;
      char buf[65536];
      ssize_t got = read(fds[i].fd, buf, sizeof(buf));
      if (got > 0) {
        sinks[i]->append(buf, got);
      } else {
        close(fds[i].fd);
        fds[i].fd = -1;
        --open_fds;
      }
    }
  }
  for (auto& f : fds) {
    if (f.fd >= 0) close(f.fd);
  }
  if (timed_out) kill(pid, SIGKILL);
  int status = 0;
  waitpid(pid, &status, 0);
  if (!timed_out && WIFEXITED(status)) result.exit_code = WEXITSTATUS(status);
  return result;
}

Child::Child(const std::vector<std::string>& argv) {
  int out[2];
  if (pipe2(out, O_CLOEXEC) != 0) return;
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, out[1], 1);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  std::vector<char*> args = Argv(argv);
  if (posix_spawn(&pid_, args[0], &actions, nullptr, args.data(), environ) !=
      0) {
    pid_ = -1;
  }
  posix_spawn_file_actions_destroy(&actions);
  close(out[1]);
  out_fd_ = out[0];
}

Child::~Child() {
  Kill();
  if (out_fd_ >= 0) close(out_fd_);
}

void Child::Kill() {
  if (pid_ <= 0) return;
  kill(pid_, SIGKILL);
  waitpid(pid_, nullptr, 0);
  pid_ = -1;
}

int Child::Wait() {
  if (pid_ <= 0) return -1;
  int status = -1;
  waitpid(pid_, &status, 0);
  pid_ = -1;
  return status;
}

bool Child::ReadLine(std::string* line, absl::Duration timeout) {
  absl::Time deadline = absl::Now() + timeout;
  for (;;) {
    size_t nl = buffer_.find('\n');
    if (nl != std::string::npos) {
      *line = buffer_.substr(0, nl);
      buffer_.erase(0, nl + 1);
      return true;
    }
    pollfd p{out_fd_, POLLIN, 0};
    int n = poll(&p, 1, PollMs(deadline));
    if (n == 0) return false;
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    char buf[4096];
    ssize_t got = read(out_fd_, buf, sizeof(buf));
    if (got <= 0) return false;
    buffer_.append(buf, got);
  }
}

void InstallNoLeftoverProcessesCheck() {
  ::testing::AddGlobalTestEnvironment(new NoLeftoversEnvironment);
}

TempDir::TempDir(mode_t mode) {
  char name[] = "/tmp/pt-XXXXXX";
  if (::mkdtemp(name) == nullptr) return;
  path_ = name;
  ::chmod(path_.c_str(), mode);
}

TempDir::~TempDir() {
  if (path_.empty()) return;
  std::error_code ignored;
  std::filesystem::remove_all(path_, ignored);
}

}  // namespace plugd::testing
