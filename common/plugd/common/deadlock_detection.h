// Abseil's mutex deadlock detector, turned off by plugd's processes and by
// Host::Create in a host's.
#ifndef PLUGD_COMMON_DEADLOCK_DETECTION_H_
#define PLUGD_COMMON_DEADLOCK_DETECTION_H_

#include "absl/synchronization/mutex.h"

namespace plugd {

// Debian builds Abseil without NDEBUG, so its deadlock detector runs on every
// absl::Mutex lock, gRPC's own included (~12,000 instructions of a 64-byte
// call's ~69,000 on the plugin side, and a graph node for every mutex ever
// locked; docs/performance-notes.md §5); release builds of Abseil leave it
// off. A C++ SDK plugin's Serve, the daemon, plugctl and Host::Create
// (HostOptions::mutex_deadlock_detection) call this before they start any
// thread of their own or of gRPC's, as the mode is process-wide: false
// turns it off, true turns it on, aborting on a lock-order cycle (a
// debugging aid; effective only where Abseil was built without NDEBUG).
// Turn it on only before any thread takes absl::Mutex locks: turned on
// while a lock taken without it is held, it aborts on that lock's release.
inline void SetMutexDeadlockDetection(bool enabled) {
  absl::SetMutexDeadlockDetectionMode(enabled ? absl::OnDeadlockCycle::kAbort
                                              : absl::OnDeadlockCycle::kIgnore);
}

}  // namespace plugd

#endif  // PLUGD_COMMON_DEADLOCK_DETECTION_H_
