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
namespace {

constexpr char kVariable[] = "GRPC_POLL_STRATEGY";

}  // namespace

bool IsKnownPollStrategy(const std::string& strategy) {
  return strategy == "poll" || strategy == "epoll1";
}

PollStrategyChoice ChooseGrpcPollStrategy(const std::string& strategy) {
  PollStrategyChoice out;
  if (strategy.empty()) {
    out.description = "gRPC's poll strategy left to gRPC";
    return out;
  }
  if (!IsKnownPollStrategy(strategy)) {
    // gRPC aborts the process on a name it does not know.
    out.ignored = true;
    out.description = absl::StrCat("gRPC's poll strategy not set: \"", strategy,
                                   "\" is not poll or epoll1");
    return out;
  }
  static std::mutex mu;
  std::lock_guard<std::mutex> lock(mu);
  const char* set = std::getenv(kVariable);
  const std::string from_environment = set == nullptr ? "" : set;
  if (set == nullptr) setenv(kVariable, strategy.c_str(), 1);
  // gRPC chooses its strategy here if it has never run in this process,
  // and keeps the one it chose otherwise (even across a shutdown). Never
  // shut down (see the header); after it the name can be read.
  grpc_init();
  if (set == nullptr) unsetenv(kVariable);
  const char* name = grpc_get_poll_strategy_name();
  const std::string chosen = name == nullptr ? "" : name;
  out.applied = chosen == strategy;
  out.ignored = !out.applied;
  if (out.applied) {
    out.description = absl::StrCat("gRPC's poll strategy: ", strategy);
  } else if (!from_environment.empty()) {
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
