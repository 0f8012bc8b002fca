// Who may connect to a plugd Unix socket: the peer's kernel-reported
// credentials (SO_PEERCRED, SO_PEERGROUPS), a policy over them, and a
// listener that applies the policy to every connection before gRPC sees it.
//
// gRPC 1.51 tells a server nothing about the uid behind a Unix socket, so
// plugd owns the listening socket: PeerCheckedListener accepts each
// connection on a thread of its own, reads the peer's credentials once, and
// hands an allowed connection to the real gRPC server
// (grpc::AddInsecureChannelFromFd); calls on it then cost exactly what they
// cost on a socket gRPC listened on itself. A refused connection goes to a
// small second server whose every method answers PERMISSION_DENIED with the
// policy's explanation (which uid was refused and how to allow it), so the
// client sees a real gRPC status, not a dropped connection. Used by the
// broker's admin socket and by the C++ plugin SDK (docs/security.md).
//
//   plugd::PeerPolicy policy;
//   policy.what = "plugin random";
//   policy.uids = {geteuid()};              // root is always allowed
//   policy.how_to_allow = "call it through the broker that launched it";
//   auto listener = plugd::PeerCheckedListener::Listen(path, policy, 0600);
//   if (!listener.ok()) return listener.status();
//   grpc::ServerBuilder builder;            // no AddListeningPort
//   ... register services ...
//   std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
//   (*listener)->Start(server.get());
//   ...
//   (*listener)->Stop();                    // before server->Shutdown()
//   server->Shutdown(deadline);
#ifndef PLUGD_COMMON_PEER_AUTH_H_
#define PLUGD_COMMON_PEER_AUTH_H_

#include <sys/types.h>

#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

namespace grpc {
class Server;
}

namespace plugd {

// What the kernel says about the process at the other end of a connected
// Unix socket, as of its connect() call.
struct PeerCredentials {
  uid_t uid = static_cast<uid_t>(-1);  // effective uid
  gid_t gid = static_cast<gid_t>(-1);  // effective gid
  pid_t pid = 0;
  // Supplementary groups (SO_PEERGROUPS, Linux >= 4.13). Filled only when
  // asked for; empty when the kernel does not report them.
  std::vector<gid_t> groups;
};

// Reads SO_PEERCRED of connected Unix socket `fd`, and SO_PEERGROUPS too
// when `with_groups`. An errno-derived status when the socket has none.
absl::StatusOr<PeerCredentials> GetPeerCredentials(int fd, bool with_groups);

// Who may connect. Root (uid 0) always may.
struct PeerPolicy {
  // What the socket serves, for messages: "the plugd admin API at
  // /run/plugd/admin.sock", "plugin random".
  std::string what;
  // Allowed effective uids, besides 0, each with a note saying whose it is
  // ("the broker's"). Duplicates are harmless.
  struct AllowedUid {
    uid_t uid;
    std::string whose;
  };
  std::vector<AllowedUid> uids;
  // When set, a peer whose effective gid or one of whose supplementary
  // groups is this gid may connect too. Unset: no group rule.
  std::optional<gid_t> group;
  // The group's name (or number), for messages.
  std::string group_name;
  // The second half of the refusal: how an operator allows such a peer,
  // e.g. "add the user to a group named by admin_group in the plugd
  // config".
  std::string how_to_allow;

  // True when `peer` may connect. Reads the peer's supplementary groups
  // from `peer.groups`, which the caller fills when `group` is set.
  bool Allows(const PeerCredentials& peer) const;

  // The PERMISSION_DENIED message for a refused `peer`: what refused it,
  // which uid (and pid), who is allowed, and how_to_allow.
  std::string Refusal(const PeerCredentials& peer) const;
};

// A listening Unix socket whose connections are checked against a
// PeerPolicy before a gRPC server gets them. Thread-safe; see the file
// comment for the life cycle.
class PeerCheckedListener {
 public:
  // Binds and listens on `path` (the caller has removed any stale file
  // there; the parent directory must exist), with the socket file's mode
  // `mode` from the start (the umask is not involved). Does not accept yet.
  // Errors: the path is too long (INVALID_ARGUMENT), taken
  // (ALREADY_EXISTS), or the directory is missing or not writable.
  static absl::StatusOr<std::unique_ptr<PeerCheckedListener>> Listen(
      const std::string& path, PeerPolicy policy, mode_t mode);

  // Stop().
  ~PeerCheckedListener();
  PeerCheckedListener(const PeerCheckedListener&) = delete;
  PeerCheckedListener& operator=(const PeerCheckedListener&) = delete;

  // Starts accepting on a thread of its own; allowed connections go to
  // `server`, which must be started (built without listening ports), must
  // outlive Stop(), and must not be shut down before Stop() returned.
  // Starts the refusal server. Call once. Errors: INTERNAL when a thread or
  // the refusal server cannot start.
  absl::Status Start(grpc::Server* server);

  // Replaces the policy for connections accepted from now on (a config
  // reload); open connections stay.
  void SetPolicy(PeerPolicy policy);

  // Stops accepting (wakes the thread through an eventfd and joins it),
  // closes the listening socket (connect() then fails with ECONNREFUSED;
  // the file stays for the caller to remove), and ends refused peers'
  // connections. Connections already handed to the server stay its own.
  // Idempotent; returns when the thread has ended.
  void Stop();

  // The socket path.
  const std::string& path() const { return path_; }

  // How many connections were refused so far.
  int64_t refused() const;

  class Refuser;

 private:
  PeerCheckedListener(std::string path, int listen_fd, int wake_fd,
                      PeerPolicy policy);
  void AcceptLoop();
  void Handle(int fd);

  const std::string path_;
  int listen_fd_;
  int wake_fd_;
  grpc::Server* server_ = nullptr;
  std::unique_ptr<Refuser> refuser_;
  std::thread thread_;
  mutable absl::Mutex mu_;
  PeerPolicy policy_ ABSL_GUARDED_BY(mu_);
  int64_t refused_ ABSL_GUARDED_BY(mu_) = 0;
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace plugd

#endif  // PLUGD_COMMON_PEER_AUTH_H_
