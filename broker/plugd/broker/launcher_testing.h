// Test seams of the launcher. Not for production code.
//
// The executable-pin test needs a deterministic point between "the
// executable was opened and its hash checked" and "the child executes it",
// to replace the file at its path there and show that what runs is still
// the file that was checked:
//
//   plugd::broker::internal::SetAfterExecutableVerifiedForTesting(
//       [&](const plugd::broker::LaunchOptions&) {
//         std::rename(impostor.c_str(), path.c_str());
//       });
#ifndef PLUGD_BROKER_LAUNCHER_TESTING_H_
#define PLUGD_BROKER_LAUNCHER_TESTING_H_

#include <functional>

#include "plugd/broker/launcher.h"

namespace plugd::broker::internal {

// Runs `hook` in Launch(), on the caller's thread, after the executable has
// been opened (and its pin checked) and before the child is forked. Pass an
// empty function to remove it. Not thread-safe: set it while no launch runs.
void SetAfterExecutableVerifiedForTesting(
    std::function<void(const LaunchOptions&)> hook);

}  // namespace plugd::broker::internal

#endif  // PLUGD_BROKER_LAUNCHER_TESTING_H_
