// gRPC's poll strategy for a process that calls local plugins: the host
// library (Host::Create) can ask for "poll" where gRPC's default on Linux
// is "epoll1" (HostOptions::grpc_poll_strategy; off by default).
//
//   plugd::PollStrategyChoice choice = plugd::ChooseGrpcPollStrategy("poll");
//   PLUGD_LOG(DEBUG) << choice.description;
//
// Why: with epoll1 all the threads that wait on gRPC share one epoll set,
// and the thread polling when a blocking call's answer arrives is often not
// the caller (one of gRPC's callback threads, another caller's): it reads
// the answer and wakes the caller, a hand-off per call. With "poll" a
// blocking call's completion queue polls the call's connection itself.
// Measured on the 2-vCPU VM (docs/performance-notes.md §8): a host making
// 64 B blocking calls to a plugin had 5 context switches per call instead
// of 10 (host and plugin together), 30-40 % less CPU time, ~7 % fewer
// instructions on the host side and p50 about 0.88× (five alternating
// pairs). But callback-API calls that plugd's retry interceptor takes over
// made 15-20 % fewer calls per second relative to a bare gRPC client (1 and
// 8 in flight), so it is not the default. Not for every gRPC process either:
// the plugd daemon, with a connection to every plugin, used more CPU when idle
// with "poll" (1.3-1.4 % of a core against 0.7-0.8 % with 200 plugins), and
// plugins (the C++ SDK's servers) answered more slowly with it, so both
// keep gRPC's default.
//
// gRPC reads the strategy once, from the environment variable
// GRPC_POLL_STRATEGY, when it is first initialized in the process. So
// ChooseGrpcPollStrategy does nothing when gRPC is already initialized, or
// when GRPC_POLL_STRATEGY is set (the user's choice wins). Otherwise it sets
// the variable, initializes gRPC (which then stays initialized until the
// process exits) and removes the variable again, so that processes started
// later (plugins) do not inherit it. Like any setenv, it must not race with
// other threads reading the environment: call it (or Host::Create) early.
#ifndef PLUGD_COMMON_POLL_STRATEGY_H_
#define PLUGD_COMMON_POLL_STRATEGY_H_

#include <string>

namespace plugd {

// What ChooseGrpcPollStrategy did.
struct PollStrategyChoice {
  // True when gRPC was initialized with the strategy asked for.
  bool applied = false;
  // True when gRPC had been initialized before, so nothing could be chosen.
  bool too_late = false;
  // One line for the log: what was chosen, or why nothing was.
  std::string description;
};

// Whether `strategy` is one ChooseGrpcPollStrategy accepts: "poll" or
// "epoll1" (gRPC 1.51 aborts the process on a name it does not know).
bool IsKnownPollStrategy(const std::string& strategy);

// Initializes gRPC with `strategy` ("poll" or "epoll1") if gRPC is not
// initialized yet and GRPC_POLL_STRATEGY is unset; see above. An empty or
// unknown `strategy` does nothing. Thread-safe.
PollStrategyChoice ChooseGrpcPollStrategy(const std::string& strategy);

}  // namespace plugd

#endif  // PLUGD_COMMON_POLL_STRATEGY_H_
