// A small child-process helper for the SDK tests: spawns a binary with an
// explicit environment and pipes on stdout and stderr, captures both, and
// waits for lines and exits with deadlines (poll on the pipes and on a
// pidfd: no sleeping). The destructor SIGKILLs and reaps a child still
// running, so a failing test leaves no process behind.
#ifndef PLUGD_TESTS_SDK_SUBPROCESS_H_
#define PLUGD_TESTS_SDK_SUBPROCESS_H_

#include <sys/types.h>

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace plugd::testing {

class Subprocess {
 public:
  // Starts `path` with `args` (argv[1..]) and exactly `env` as environment.
  static absl::StatusOr<std::unique_ptr<Subprocess>> Start(
      const std::string& path, const std::vector<std::string>& args,
      const std::map<std::string, std::string>& env);
  ~Subprocess();

  pid_t pid() const { return pid_; }

  // The next line of stdout (without "\n"); DEADLINE_EXCEEDED after
  // `timeout`, FAILED_PRECONDITION when stdout closed first.
  absl::StatusOr<std::string> ReadStdoutLine(absl::Duration timeout);

  // Waits for the process to exit and for its output to be drained. Returns
  // the exit code, or 128 + signal number when killed by a signal; nullopt
  // after `timeout`.
  std::optional<int> WaitExit(absl::Duration timeout);

  bool exited() const { return exit_code_.has_value(); }
  void Signal(int signo);

  // Everything written to stderr so far.
  std::string Stderr();

 private:
  Subprocess() = default;
  void ReadLoop(int out_fd, int err_fd);

  pid_t pid_ = -1;
  int pidfd_ = -1;
  std::optional<int> exit_code_;
  std::thread reader_;

  absl::Mutex mu_;
  std::string stdout_ ABSL_GUARDED_BY(mu_);
  std::string stderr_ ABSL_GUARDED_BY(mu_);
  bool stdout_eof_ ABSL_GUARDED_BY(mu_) = false;
  bool stderr_eof_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace plugd::testing

#endif  // PLUGD_TESTS_SDK_SUBPROCESS_H_
