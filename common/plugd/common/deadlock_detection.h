// Abseil's mutex deadlock detector in plugd's own processes.
#ifndef PLUGD_COMMON_DEADLOCK_DETECTION_H_
#define PLUGD_COMMON_DEADLOCK_DETECTION_H_

#include "absl/synchronization/mutex.h"

namespace plugd {

// Debian builds Abseil without NDEBUG, so its deadlock detector runs on every
// absl::Mutex lock, gRPC's own included (~12,000 instructions of a 64-byte
// call's ~69,000 on the plugin side, and a graph node for every mutex ever
// locked; docs/performance-notes.md §5); release builds of Abseil leave it
// off. The processes plugd owns (a C++ SDK plugin's Serve, the daemon,
// plugctl) call this before any thread starts, as the mode is process-wide:
// false turns it off, true turns it on, aborting on a lock-order cycle (a
// debugging aid; effective only where Abseil was built without NDEBUG).
inline void SetMutexDeadlockDetection(bool enabled) {
  absl::SetMutexDeadlockDetectionMode(enabled ? absl::OnDeadlockCycle::kAbort
                                              : absl::OnDeadlockCycle::kIgnore);
}

}  // namespace plugd

#endif  // PLUGD_COMMON_DEADLOCK_DETECTION_H_
