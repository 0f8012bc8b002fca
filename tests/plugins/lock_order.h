// A lock-order inversion for tests of Abseil's mutex deadlock detector,
// shared by the SDK test plugin (its function lock_order_inversion) and the
// host library's tests.
#ifndef PLUGD_TESTS_PLUGINS_LOCK_ORDER_H_
#define PLUGD_TESTS_PLUGINS_LOCK_ORDER_H_

#include "absl/synchronization/mutex.h"

namespace plugd::testing {

// Takes two mutexes in one order, then in the other: no real deadlock (one
// thread), but a lock-order cycle, on which the detector (when on) aborts.
inline void InvertLockOrder() {
  absl::Mutex a;
  absl::Mutex b;
  {
    absl::MutexLock first(&a);
    absl::MutexLock second(&b);
  }
  {
    absl::MutexLock first(&b);
    absl::MutexLock second(&a);
  }
}

}  // namespace plugd::testing

#endif  // PLUGD_TESTS_PLUGINS_LOCK_ORDER_H_
