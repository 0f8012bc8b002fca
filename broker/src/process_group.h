// Internal: finding and killing what is left of a plugin's process group.
#ifndef PLUGD_BROKER_SRC_PROCESS_GROUP_H_
#define PLUGD_BROKER_SRC_PROCESS_GROUP_H_

#include <sys/types.h>

#include <boost/asio/io_context.hpp>
#include <functional>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"

namespace plugd::broker::internal {

// The live (not zombie) processes whose process group is `pgid`, from /proc;
// empty at once, without reading /proc, when kill(-pgid, 0) says the group
// has no process at all.
std::vector<pid_t> ListProcessGroup(pid_t pgid);

// pidfd_open(2); -1 with errno on failure.
int PidfdOpen(pid_t pid);

// The event-loop form of KillProcessGroup: SIGKILLs every member of `pgid`,
// waits for their pidfds on `context` (never blocking it), rescans, and calls
// `done` on the loop with OK, or DEADLINE_EXCEEDED naming the survivors.
void AsyncKillProcessGroup(boost::asio::io_context& context, pid_t pgid,
                           absl::Duration timeout,
                           std::function<void(absl::Status)> done);

}  // namespace plugd::broker::internal

#endif  // PLUGD_BROKER_SRC_PROCESS_GROUP_H_
