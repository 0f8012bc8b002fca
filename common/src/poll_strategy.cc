#include "plugd/common/poll_strategy.h"

#include <grpc/grpc.h>

#include <cstdlib>
#include <mutex>

#include "absl/strings/str_cat.h"

namespace plugd {

bool IsKnownPollStrategy(const std::string& strategy) {
  return strategy == "poll" || strategy == "epoll1";
}

PollStrategyChoice ChooseGrpcPollStrategy(const std::string& strategy) {
  static constexpr char kVariable[] = "GRPC_POLL_STRATEGY";
  PollStrategyChoice out;
  if (strategy.empty()) {
    out.description = "gRPC's poll strategy left to gRPC";
    return out;
  }
  if (!IsKnownPollStrategy(strategy)) {
    // gRPC aborts the process on a name it does not know.
    out.description = absl::StrCat("gRPC's poll strategy not set: \"", strategy,
                                   "\" is not poll or epoll1");
    return out;
  }
  static std::mutex mu;
  std::lock_guard<std::mutex> lock(mu);
  if (const char* set = std::getenv(kVariable); set != nullptr) {
    out.description = absl::StrCat("gRPC's poll strategy left as ", kVariable,
                                   "=", set, " in the environment says");
    return out;
  }
  if (grpc_is_initialized() != 0) {
    out.too_late = true;
    out.description = absl::StrCat(
        "gRPC's poll strategy not set to ", strategy,
        ": gRPC was already initialized in this process (set ", kVariable, "=",
        strategy, " in the environment, or create the Host first)");
    return out;
  }
  setenv(kVariable, strategy.c_str(), 1);
  grpc_init();  // reads the variable; never shut down (see the header)
  unsetenv(kVariable);
  out.applied = true;
  out.description = absl::StrCat("gRPC's poll strategy: ", strategy);
  return out;
}

}  // namespace plugd
