// The broker's admin API server (plugd.v1.Broker) over a Supervisor, on a
// Unix socket only its owner can reach. Used by the plugd daemon and by hosts
// that embed the supervisor, so plugctl works against either. Every
// connection's peer credentials are checked before any handler runs: the
// broker's own uid and root may call, plus members of an optional group
// (AdminAccess); anyone else gets PERMISSION_DENIED saying which uid was
// refused and how to allow it (docs/security.md).
//
//   plugd::broker::Supervisor supervisor;
//   absl::StatusOr<std::unique_ptr<plugd::broker::AdminServer>> admin =
//       plugd::broker::AdminServer::Start(supervisor,
//                                         "unix:/tmp/plugd-1000/admin.sock");
//   ...
//   (*admin)->Shutdown();  // ends open streams, stops accepting
#ifndef PLUGD_BROKER_ADMIN_H_
#define PLUGD_BROKER_ADMIN_H_

#include <sys/types.h>

#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "plugd/broker/supervisor.h"

namespace grpc {
class Server;
}

namespace plugd {
class PeerCheckedListener;
}

namespace plugd::broker {

// Who may use the admin API besides the broker's own (effective) uid and
// root, who always may.
struct AdminAccess {
  // Members of this group may call too: a peer whose effective gid, or one
  // of whose supplementary groups as of its connect(), is `group`. The
  // socket is then mode 0660 and its directory (when the broker owns it)
  // 0710, both given to this group, so that members can reach it; the
  // broker's user must be able to chown to it (be root or a member).
  // Default: unset, nobody else (socket 0600, directory 0700).
  std::optional<gid_t> group;
  // The group's name, for messages. Default: looked up from `group`.
  std::string group_name;
  // What a refused caller is told to do, after "only ... may connect; ".
  // Default: the plugd config's admin_group key.
  std::string how_to_allow;
};

class AdminServer {
 public:
  // Serves the admin API for `supervisor` (which must outlive the server) at
  // `address` ("unix:/path" or a bare absolute path). Creates the socket's
  // directory with mode 0700 if missing (refusing one that others can
  // write), removes a stale socket file, refuses one a live broker still
  // serves (ALREADY_EXISTS, "is another plugd running?"), and makes the
  // socket itself owner-only (0600). `access` says who else may connect
  // (and widens the two modes to the group when it names one); connections
  // of anyone else are answered PERMISSION_DENIED.
  static absl::StatusOr<std::unique_ptr<AdminServer>> Start(
      Supervisor& supervisor, const std::string& address,
      AdminAccess access = {});

  // Shutdown() if not done yet.
  ~AdminServer();

  // Ends open WatchEvents / TailLogs streams, stops accepting calls, waits
  // briefly for in-flight ones, removes the socket file. Idempotent.
  void Shutdown();

  // "unix:/path".
  const std::string& address() const { return address_; }

  class Service;

 private:
  AdminServer(std::string address, std::string path,
              std::unique_ptr<Service> service,
              std::unique_ptr<PeerCheckedListener> listener,
              std::unique_ptr<grpc::Server> server);

  const std::string address_;
  const std::string path_;
  std::unique_ptr<Service> service_;
  std::unique_ptr<PeerCheckedListener> listener_;
  std::unique_ptr<grpc::Server> server_;
  bool shut_down_ = false;
};

// Strips "unix:" from an admin address; INVALID_ARGUMENT for anything that is
// not an absolute Unix socket path within the length limit.
absl::StatusOr<std::string> AdminSocketPath(const std::string& address);

}  // namespace plugd::broker

#endif  // PLUGD_BROKER_ADMIN_H_
