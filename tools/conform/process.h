// The process layer of plugd-conform: launching a plugin under test exactly
// as a plugd launcher would (own process group, stdin from /dev/null, stdout
// and stderr on pipes, parent-death signal, clean signal state), watching its
// raw output and exit, and finding every descendant it leaves behind.
//
// Unlike the broker core's launcher, nothing here interprets the plugin's
// output or cleans up after it: the checker wants to see what the plugin did,
// including a banner where the handshake belongs or a process it left running.
//
//   plugd::conform::BecomeSubreaper();          // once, at start
//   plugd::conform::SpawnOptions spawn;
//   spawn.command = {"build/bin/plugd-random"};
//   spawn.env["PLUGD_MAGIC_COOKIE"] = plugd::kMagicCookieValue;
//   auto run = plugd::conform::PluginRun::Start(spawn);
//   if (!run.ok()) { ... the command cannot be started ... }
//   std::optional<std::string> line =
//       (*run)->WaitFirstStdoutLine(absl::Now() + absl::Seconds(10));
//   ...
//   (*run)->SignalGroup(SIGTERM);
//   auto exit = (*run)->WaitExit(absl::Now() + absl::Seconds(5));
//   run->reset();                                // SIGKILLs the group if alive
//   auto left = plugd::conform::WaitDescendantsGone(absl::Now() + grace);
//   plugd::conform::KillDescendants();
#ifndef PLUGD_TOOLS_CONFORM_PROCESS_H_
#define PLUGD_TOOLS_CONFORM_PROCESS_H_

#include <sys/types.h>

#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "plugd/broker/launcher.h"

namespace plugd::conform {

// How to start the plugin under test.
struct SpawnOptions {
  // argv; command[0] is a path, or a name looked up in PATH. Required.
  std::vector<std::string> command;
  // Variables set on top of the checker's environment (after `unset`).
  std::map<std::string, std::string> env;
  // Variables removed from the inherited environment; names ending in '*'
  // are prefixes ("PLUGD_*").
  std::vector<std::string> unset;
};

// One launch of the plugin under test. Thread-safe. A reader thread drains
// stdout and stderr continuously (so the plugin never blocks on a full pipe)
// and notices the exit through a pidfd; callers wait for events with
// deadlines. The destructor SIGKILLs the process group if the leader still
// runs, reaps the leader and joins the thread (bounded); it does not touch
// descendants that left the group (see KillDescendants).
class PluginRun {
 public:
  // Forks and execs. NOT_FOUND when the executable is missing or cannot be
  // executed (exec's errno is reported), INTERNAL for system call failures.
  static absl::StatusOr<std::unique_ptr<PluginRun>> Start(
      const SpawnOptions& options);
  ~PluginRun();

  PluginRun(const PluginRun&) = delete;
  PluginRun& operator=(const PluginRun&) = delete;

  pid_t pid() const { return pid_; }
  absl::Time started() const { return started_; }

  // Waits until the first complete stdout line is there, stdout ends, or the
  // leader exits (and its output is drained, at most 1 s more), or until
  // `deadline`. Returns the line (without "\n") when there is one.
  std::optional<std::string> WaitFirstStdoutLine(absl::Time deadline);
  // When the first stdout line arrived (InfinitePast() if it did not).
  absl::Time first_line_time();

  // Waits until the leader has exited (and has been reaped), at most until
  // `deadline`. Empty when it still runs.
  std::optional<broker::ExitStatus> WaitExit(absl::Time deadline);
  std::optional<broker::ExitStatus> exit_status();
  // When the leader exit was noticed.
  absl::Time exit_time();

  // Waits until both pipes reached end of file, at most until `deadline`.
  bool WaitOutputEnd(absl::Time deadline);

  // Complete stdout lines so far (the first is the handshake position), plus
  // an unterminated tail once stdout ended.
  std::vector<std::string> StdoutLines();
  // The same for stderr.
  std::vector<std::string> StderrLines();

  // kill(-pgid, signal): the whole process group, as the launcher does.
  // No-op once the leader has exited.
  void SignalGroup(int signal);

 private:
  PluginRun() = default;
  void ReadLoop();
  void OnReadable(int fd, std::string* buffer, std::vector<std::string>* lines,
                  bool* eof) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Reap() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  pid_t pid_ = -1;
  int pidfd_ = -1;
  int out_fd_ = -1;
  int err_fd_ = -1;
  int wake_fd_ = -1;  // eventfd: tells the reader thread to finish
  absl::Time started_;
  std::thread reader_;

  absl::Mutex mu_;
  std::string out_buffer_ ABSL_GUARDED_BY(mu_);
  std::string err_buffer_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> out_lines_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> err_lines_ ABSL_GUARDED_BY(mu_);
  bool out_eof_ ABSL_GUARDED_BY(mu_) = false;
  bool err_eof_ ABSL_GUARDED_BY(mu_) = false;
  absl::Time first_line_time_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  std::optional<broker::ExitStatus> exit_ ABSL_GUARDED_BY(mu_);
  absl::Time exit_time_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
};

// Makes this process a child subreaper (PR_SET_CHILD_SUBREAPER): orphans of
// every process it starts are re-parented to it instead of to init, so
// Descendants() sees them all.
absl::Status BecomeSubreaper();

// A live process below this one.
struct ProcessInfo {
  pid_t pid = 0;
  pid_t ppid = 0;
  pid_t pgid = 0;
  pid_t sid = 0;
  char state = '?';     // from /proc/PID/stat: R, S, D, T, Z, ...
  std::string command;  // /proc/PID/cmdline, arguments joined by spaces
  // "pid 1234 (sleep 1000), process group 1230"
  std::string ToString() const;
};

// Every process below this one in the process tree (children, their
// children, ...), zombies excluded. Reaps this process's own zombie children
// first, except `keep` (a leader whose status someone else collects).
std::vector<ProcessInfo> Descendants(const std::set<pid_t>& keep = {});

// Waits, on pidfds (no polling), until no descendant is alive or `deadline`
// passes, reaping the ones that are this process's children. Returns those
// still alive at the deadline.
std::vector<ProcessInfo> WaitDescendantsGone(absl::Time deadline);

// SIGKILLs every descendant and waits (bounded, 5 s) until they are gone.
// Returns those that survived even that (unkillable, e.g. stuck in D state).
std::vector<ProcessInfo> KillDescendants();

}  // namespace plugd::conform

#endif  // PLUGD_TOOLS_CONFORM_PROCESS_H_
