// Helpers for tests that run real processes.
#ifndef PLUGD_TESTS_HOST_TEST_UTIL_H_
#define PLUGD_TESTS_HOST_TEST_UTIL_H_

#include <sys/types.h>

#include <string>
#include <vector>

#include "absl/time/time.h"

namespace plugd::testing {

// The directory holding the built executables.
std::string BinDir();
std::string Bin(const std::string& name);

// Waits (on a pidfd, no polling loop) until process `pid` has exited; the
// timeout is a hang guard. True when it is gone.
bool WaitForPidGone(pid_t pid, absl::Duration timeout);

// True while `pid` exists and is not a zombie.
bool PidAlive(pid_t pid);

// Connections accepted on the Unix socket bound at `path` and still open,
// from /proc/net/unix (an accepted socket carries its listener's path).
int AcceptedUnixConnections(const std::string& path);

struct CommandResult {
  int exit_code = -1;  // -1: killed by a signal or timed out
  std::string out;
  std::string err;
};

// Runs a command to completion, capturing stdout and stderr. `timeout` is a
// hang guard: on expiry the command is SIGKILLed and exit_code is -1.
CommandResult RunCommand(const std::vector<std::string>& argv,
                         absl::Duration timeout = absl::Seconds(60));

// A spawned child whose stdout can be read line by line.
class Child {
 public:
  explicit Child(const std::vector<std::string>& argv);
  ~Child();  // SIGKILLs and reaps the child if still running
  pid_t pid() const { return pid_; }
  // Reads one line from the child's stdout (without "\n"); false on EOF or
  // when `timeout` (a hang guard) passes.
  bool ReadLine(std::string* line, absl::Duration timeout);
  // SIGKILL and reap.
  void Kill();
  // Reaps the child once it has exited (blocks); its waitpid status, or -1
  // when it was already reaped.
  int Wait();

 private:
  pid_t pid_ = -1;
  int out_fd_ = -1;
  std::string buffer_;
};

// A fresh directory "/tmp/pt-XXXXXX" (short: Unix socket paths inside it
// must stay under 108 bytes) with permissions `mode`, removed with its
// contents when destroyed. path() is empty when it could not be made (errno
// says why).
class TempDir {
 public:
  explicit TempDir(mode_t mode = 0700);
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// Makes this process a child subreaper, so every process a test starts, and
// their orphans, stay visible; at the end, fails if any is still alive.
void InstallNoLeftoverProcessesCheck();

}  // namespace plugd::testing

#endif  // PLUGD_TESTS_HOST_TEST_UTIL_H_
