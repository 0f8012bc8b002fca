// Channel settings shared by every plugd client of a local plugin socket
// (hosts, the supervisor's health checks, the admin API's forwarding).
#ifndef PLUGD_COMMON_CHANNEL_H_
#define PLUGD_COMMON_CHANNEL_H_

#include <grpcpp/support/channel_arguments.h>

namespace plugd {

// Reconnect quickly after a plugin restart: the first retry after 10 ms,
// never more than 100 ms apart (gRPC's defaults are 1 s and 120 s).
//
// gRPC C++ also uses GRPC_ARG_MIN_RECONNECT_BACKOFF_MS as the minimum time a
// connection attempt may take (connect plus the HTTP/2 SETTINGS exchange).
// It stays at 20 s: a loaded machine or a slow-starting Python/Node plugin
// can take well over 100 ms to send its SETTINGS, and a shorter limit fails
// such attempts with "timed out before receiving SETTINGS frame" over and
// over. A refused connection (no plugin yet) still fails at once and is
// retried after the short backoff.
inline void SetLocalReconnectArguments(grpc::ChannelArguments* args) {
  args->SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 10);
  args->SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 20000);
  args->SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 100);
}

// Keeps gRPC's process-wide completion queue for client callbacks alive
// until the process exits. Call it before any client callback call (the
// Supervisor and Host constructors do); idempotent and thread-safe.
//
// Why: gRPC 1.51 on this platform runs client callbacks (reactors, callback
// unary calls) on a shared completion queue with its own threads
// ("nexting_thread"), refcounted by the channels that used it and torn down
// when the last of them is destroyed. A host whose only callback users were
// the supervisor's health watches, which drop their channel in OnDone on
// those very threads, aborted now and then with "assertion failed: prior >
// 0" in grpc_cq_internal_unref on a callback thread while its plugin was
// killed again and again (IdempotentRetryWhileUnstableTest under load: 2 of
// 2 loaded runs of ~12 repetitions failed, and again once the pin was
// removed for an A/B check; with the pin, 0 failures in 40 repetitions of
// each of two such tests). One channel that is never destroyed, with one
// callback call made on it, holds the queue for the life of the process.
void PinCallbackCompletionQueue();

}  // namespace plugd

#endif  // PLUGD_COMMON_CHANNEL_H_
