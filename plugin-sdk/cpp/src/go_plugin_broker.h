// plugin.GRPCBroker for a plugin in go-plugin mode (docs/go-plugin.md).
//
// A go-plugin host opens one StartStream on every plugin connection, to
// offer and accept extra brokered connections. plugd plugins offer none and
// dial none, but the stream must not break the connection: this service
// accepts it, reads and ignores what the host sends, and ends open streams
// when the plugin shuts down (gRPC's Server::Shutdown waits for open
// streams, so a stream left open would hold shutdown for the whole grace).
#ifndef PLUGD_SDK_SRC_GO_PLUGIN_BROKER_H_
#define PLUGD_SDK_SRC_GO_PLUGIN_BROKER_H_

#include <set>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "goplugin/grpc_broker.grpc.pb.h"

namespace plugd::sdk::internal {

class GoPluginBrokerService final
    : public ::plugin::GRPCBroker::CallbackService {
 public:
  GoPluginBrokerService();
  ~GoPluginBrokerService() override;

  // Ends every open stream (OK) and every later one at once. Does not wait
  // for them to end. Idempotent.
  void Shutdown();

  grpc::ServerBidiReactor<::plugin::ConnInfo, ::plugin::ConnInfo>* StartStream(
      grpc::CallbackServerContext* context) override;

 private:
  class Stream;
  void Remove(Stream* stream);

  absl::Mutex mu_;
  bool shutdown_ ABSL_GUARDED_BY(mu_) = false;
  std::set<Stream*> streams_ ABSL_GUARDED_BY(mu_);
};

}  // namespace plugd::sdk::internal

#endif  // PLUGD_SDK_SRC_GO_PLUGIN_BROKER_H_
