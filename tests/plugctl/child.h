// Runs a program as a child process with pipes on stdout and stderr, for the
// plugctl end-to-end tests. Every wait has a deadline (a hang guard) and
// waits on the pipes and a pidfd with poll(): nothing sleeps. The destructor
// SIGKILLs and reaps a child still running.
#ifndef PLUGD_TESTS_PLUGCTL_CHILD_H_
#define PLUGD_TESTS_PLUGCTL_CHILD_H_

#include <sys/types.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/time/time.h"

namespace plugd::plugctl::testing {

class Child {
 public:
  struct Result {
    int exit_code = -1;  // 128 + signal when killed by a signal.
    std::string out;
    std::string err;
  };

  // Starts `path` with argv[1..] = `args` and exactly `env` ("K=V" strings)
  // as its environment. Aborts the test binary if spawning fails.
  static std::unique_ptr<Child> Spawn(const std::string& path,
                                      const std::vector<std::string>& args,
                                      const std::vector<std::string>& env);
  ~Child();
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;

  // The next complete stdout line (without "\n"); nullopt at EOF or when
  // `timeout` passes first.
  std::optional<std::string> ReadLine(absl::Duration timeout);

  // Sends `signo` to the child.
  void Signal(int signo);

  // Reads both pipes to their end and reaps the child. Returns nullopt (after
  // killing it) when that takes longer than `timeout`. `out` holds stdout
  // not yet returned by ReadLine.
  std::optional<Result> Wait(absl::Duration timeout);

 private:
  Child() = default;
  // Polls once, up to `deadline`; false when the deadline passed.
  bool PollOnce(absl::Time deadline);
  void Kill();

  pid_t pid_ = -1;
  int pidfd_ = -1;
  int out_fd_ = -1;
  int err_fd_ = -1;
  bool exited_ = false;
  int exit_code_ = -1;
  std::string out_;
  std::string err_;
};

}  // namespace plugd::plugctl::testing

#endif  // PLUGD_TESTS_PLUGCTL_CHILD_H_
