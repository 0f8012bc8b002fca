#include "plugd/common/poll_strategy.h"

#include <grpc/grpc.h>

#include <cstdlib>
#include <mutex>

#include "absl/strings/str_cat.h"

// gRPC 1.51's core (src/core/lib/iomgr/ev_posix.h, not installed): the poll
// strategy gRPC chose for this process, once, at its first initialization.
// Only once gRPC has been initialized (it dereferences the engine chosen).
// Exported by both the static and the shared library.
const char* grpc_get_poll_strategy_name();

namespace plugd {

std::string GrpcPollStrategyInUse() { return grpc_get_poll_strategy_name(); }

absl::StatusOr<PollStrategyChoice> ChooseGrpcPollStrategy(
    const std::string& strategy) {
  static constexpr char kVariable[] = "GRPC_POLL_STRATEGY";
  PollStrategyChoice out;
  if (strategy.empty()) {
    out.description = "gRPC's poll strategy left to gRPC";
    return out;
  }
  if (strategy != "poll" && strategy != "epoll1") {
    // gRPC aborts the process on a name it does not know.
    return absl::InvalidArgumentError(
        absl::StrCat("gRPC poll strategy \"", strategy,
                     "\" is not one of \"poll\", \"epoll1\" or \"\" (gRPC's "
                     "choice)"));
  }
  static std::mutex mu;
  std::lock_guard<std::mutex> lock(mu);
  const char* from_environment = std::getenv(kVariable);
  // Once gRPC runs, its choice is made: read it, leave the environment be.
  if (grpc_is_initialized() == 0) {
    if (from_environment == nullptr) setenv(kVariable, strategy.c_str(), 1);
    // gRPC chooses here if it has never run in this process, and keeps the
    // one it chose otherwise (even across a shutdown). Never shut down (see
    // the header).
    grpc_init();
    if (from_environment == nullptr) unsetenv(kVariable);
  }
  const std::string chosen = GrpcPollStrategyInUse();
  out.applied = chosen == strategy;
  if (out.applied) {
    out.description = absl::StrCat("gRPC's poll strategy: ", strategy);
  } else if (from_environment != nullptr) {
    out.description = absl::StrCat(
        "gRPC's poll strategy is ", chosen, ", not ", strategy, ": ", kVariable,
        "=", from_environment, " in the environment chooses");
  } else {
    out.description = absl::StrCat(
        "gRPC's poll strategy is ", chosen, ", not ", strategy,
        ": gRPC chose it when it was first initialized in this process (set ",
        kVariable, "=", strategy,
        " in the environment, or create the Host before anything else uses "
        "gRPC)");
  }
  return out;
}

}  // namespace plugd
