// Runs one parsed plugctl command against the broker's admin API.
//
//   plugd::plugctl::Interrupter interrupter;  // Interrupt() from a signal
//                                             // thread cancels the call.
//   int code = plugd::plugctl::Run(options, std::cout, std::cerr,
//                                  &interrupter);
#ifndef PLUGD_TOOLS_PLUGCTL_RUN_H_
#define PLUGD_TOOLS_PLUGCTL_RUN_H_

#include <grpcpp/client_context.h>

#include <optional>
#include <ostream>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "cli.h"

namespace plugd::plugctl {

// Lets another thread cancel the call in flight, cleanly (the call ends with
// CANCELLED and Run returns). Thread-safe.
class Interrupter {
 public:
  // Registers the call in flight (nullptr: none). A call registered after
  // Interrupt() is cancelled at once.
  void SetCall(grpc::ClientContext* context);
  // Cancels the call in flight, if any, and every later one.
  void Interrupt();
  bool interrupted() const;

 private:
  mutable absl::Mutex mu_;
  grpc::ClientContext* context_ ABSL_GUARDED_BY(mu_) = nullptr;
  bool interrupted_ ABSL_GUARDED_BY(mu_) = false;
};

// Connects to a Unix socket at `path` and hangs up. Returns nullopt when
// something accepts, else why not for people ("no such socket",
// "connection refused", "permission denied", ...).
std::optional<std::string> ProbeUnixSocket(const std::string& path);

// The exit-3 message: names the address tried, why it failed and how to
// start the broker or point plugctl at it.
std::string UnreachableMessage(const std::string& address,
                               const std::string& reason);

// Runs `options`: prints results to `out` and diagnostics to `err`; returns
// the process exit code (kExitOk, kExitBrokerError, kExitUnreachable; 130
// when a non-streaming call was interrupted).
int Run(const Options& options, std::ostream& out, std::ostream& err,
        Interrupter* interrupter);

}  // namespace plugd::plugctl

#endif  // PLUGD_TOOLS_PLUGCTL_RUN_H_
