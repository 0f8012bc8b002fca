// The broker's admin API server (plugd.v1.Broker) over a Supervisor, on a
// Unix socket only its owner can reach. Used by the plugd daemon and by hosts
// that embed the supervisor, so plugctl works against either.
//
//   plugd::broker::Supervisor supervisor;
//   absl::StatusOr<std::unique_ptr<plugd::broker::AdminServer>> admin =
//       plugd::broker::AdminServer::Start(supervisor,
//                                         "unix:/tmp/plugd-1000/admin.sock");
//   ...
//   (*admin)->Shutdown();  // ends open streams, stops accepting
#ifndef PLUGD_BROKER_ADMIN_H_
#define PLUGD_BROKER_ADMIN_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "plugd/broker/supervisor.h"

namespace grpc {
class Server;
}

namespace plugd::broker {

class AdminServer {
 public:
  // Serves the admin API for `supervisor` (which must outlive the server) at
  // `address` ("unix:/path" or a bare absolute path). Creates the socket's
  // directory with mode 0700 if missing (refusing one that others can
  // write), removes a stale socket file, refuses one a live broker still
  // serves (ALREADY_EXISTS, "is another plugd running?"), and makes the
  // socket itself owner-only (0600).
  static absl::StatusOr<std::unique_ptr<AdminServer>> Start(
      Supervisor& supervisor, const std::string& address);

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
              std::unique_ptr<grpc::Server> server);

  const std::string address_;
  const std::string path_;
  std::unique_ptr<Service> service_;
  std::unique_ptr<grpc::Server> server_;
  bool shut_down_ = false;
};

// Strips "unix:" from an admin address; INVALID_ARGUMENT for anything that is
// not an absolute Unix socket path within the length limit.
absl::StatusOr<std::string> AdminSocketPath(const std::string& address);

}  // namespace plugd::broker

#endif  // PLUGD_BROKER_ADMIN_H_
