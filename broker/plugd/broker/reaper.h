// The reaper: a tiny helper process that kills the broker's plugin process
// groups if the broker dies without stopping them (SIGKILL, a crash).
//
// The parent-death signal reaches a plugin itself but not its children, and
// cgroups are not always available; so the broker forks the reaper at
// startup, before it starts any thread, and tells it over a pipe which
// process groups are live. When the pipe reaches EOF — the broker is gone,
// however it died — the reaper SIGKILLs every group it was told about and
// exits. It shows in `ps` as "plugd-reaper".
//
//   int main() {
//     auto reaper = plugd::broker::Reaper::Start();   // first thing in main
//     ...
//     supervisor_options.on_group_started = [&](pid_t g) { (*reaper)->Track(g);
//     }; supervisor_options.on_group_gone = [&](pid_t g) {
//     (*reaper)->Untrack(g); };
//   }
#ifndef PLUGD_BROKER_REAPER_H_
#define PLUGD_BROKER_REAPER_H_

#include <sys/types.h>

#include <memory>

#include "absl/status/statusor.h"

namespace plugd::broker {

class Reaper {
 public:
  // Forks the reaper. Call before any other thread exists (fork in a
  // threaded process would copy locks held by other threads).
  static absl::StatusOr<std::unique_ptr<Reaper>> Start();

  // Closes the pipe: the reaper kills what is still tracked and exits. A
  // broker that stopped every plugin has nothing tracked left.
  ~Reaper();

  // Tells the reaper about a live process group / one that is gone.
  // Thread-safe; never blocks for long (one small write to a pipe).
  void Track(pid_t pgid);
  void Untrack(pid_t pgid);

  pid_t pid() const { return pid_; }

 private:
  Reaper(pid_t pid, int fd) : pid_(pid), fd_(fd) {}
  void Send(char op, pid_t pgid);

  pid_t pid_;
  int fd_;
};

}  // namespace plugd::broker

#endif  // PLUGD_BROKER_REAPER_H_
