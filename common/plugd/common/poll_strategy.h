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
// 64 B blocking calls to a plugin had about 5 context switches per call
// instead of 11 (host and plugin together), 40 % less CPU time, ~7 % fewer
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
// GRPC_POLL_STRATEGY, when it is first initialized in the process (and
// keeps it if it is shut down and initialized again). So
// ChooseGrpcPollStrategy sets the variable unless it is already set (the
// user's choice wins), initializes gRPC (which then stays initialized until
// the process exits; if gRPC had run before, it keeps what it chose then),
// removes the variable again, so that processes started later (plugins)
// do not inherit it, and reports which strategy gRPC runs with. Once gRPC
// is running it only reads that. Like any
// setenv, it must not race with other threads reading the environment: call it
// (or Host::Create) early.
#ifndef PLUGD_COMMON_POLL_STRATEGY_H_
#define PLUGD_COMMON_POLL_STRATEGY_H_

#include <string>

#include "absl/status/statusor.h"

namespace plugd {

// What ChooseGrpcPollStrategy found.
struct PollStrategyChoice {
  // True when gRPC runs with the strategy asked for, whether this call or
  // an earlier one chose it. False for "" (nothing asked) and when gRPC runs
  // with another: it had chosen when first initialized, or the environment
  // said otherwise.
  bool applied = false;
  // One line for the log: what was chosen, or why it was not.
  std::string description;
};

// Initializes gRPC asking for `strategy` ("poll" or "epoll1"), which it
// gets unless gRPC has chosen one before in this process or
// GRPC_POLL_STRATEGY says otherwise; see above. "" does nothing; any other
// name is InvalidArgument (gRPC 1.51 would abort the process on it). Once
// gRPC runs it only reads gRPC's choice and leaves the environment alone.
// Calls are serialized against each other only: the setenv must not race
// with other threads reading the environment, so call it before starting
// any.
absl::StatusOr<PollStrategyChoice> ChooseGrpcPollStrategy(
    const std::string& strategy);

// The poll strategy gRPC runs with in this process ("epoll1", "poll").
// Only once gRPC has been initialized.
std::string GrpcPollStrategyInUse();

}  // namespace plugd

#endif  // PLUGD_COMMON_POLL_STRATEGY_H_
