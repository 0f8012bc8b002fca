// Helpers for the broker core tests: process checks and waiting on output.
#ifndef PLUGD_TESTS_BROKER_TEST_UTIL_H_
#define PLUGD_TESTS_BROKER_TEST_UTIL_H_

#include <sys/types.h>

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "plugd/broker/output.h"

namespace plugd::broker::testing {

// True when `pid` no longer runs: no /proc entry, or a zombie (an orphan
// that nobody has reaped yet is dead too).
bool ProcessGone(pid_t pid);

// Processes (zombies included) whose parent is this process.
std::vector<pid_t> ChildrenOfThisProcess();

// Waits until a line matching `match` is in `output` (already there, or
// arriving), at most `timeout`. Returns the line.
std::optional<OutputLine> WaitForLine(
    OutputCapture& output, const std::function<bool(const OutputLine&)>& match,
    absl::Duration timeout);

// Waits until `condition` holds, re-checking it on every new output line.
bool WaitForOutputCondition(OutputCapture& output,
                            const std::function<bool()>& condition,
                            absl::Duration timeout);

}  // namespace plugd::broker::testing

#endif  // PLUGD_TESTS_BROKER_TEST_UTIL_H_
