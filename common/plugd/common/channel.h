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

}  // namespace plugd

#endif  // PLUGD_COMMON_CHANNEL_H_
