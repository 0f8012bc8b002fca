#include "go_plugin_broker.h"

#include "plugd/common/log.h"

namespace plugd::sdk::internal {

using ::plugin::ConnInfo;

// One StartStream. A read is always pending until the host half-closes or the
// stream ends. Lock order: GoPluginBrokerService::mu_, then Stream::mu_.
// gRPC calls OnDone from its own threads, never inline from Finish(), so
// OnDone may take the service's mutex.
class GoPluginBrokerService::Stream final
    : public grpc::ServerBidiReactor<ConnInfo, ConnInfo> {
 public:
  explicit Stream(GoPluginBrokerService* service) : service_(service) {}

  void Begin() { StartRead(&in_); }

  // Ends the stream with OK (once).
  void End() ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    if (finished_) return;
    finished_ = true;
    Finish(grpc::Status::OK);
  }

  void OnReadDone(bool ok) override {
    if (!ok) {
      // The host closed its side (or the call is gone): end ours.
      End();
      return;
    }
    if (!logged_) {
      logged_ = true;
      PLUGD_LOG(DEBUG) << "go-plugin broker: ignoring the host's brokered "
                          "connection "
                       << in_.service_id() << " (" << in_.network() << " "
                       << in_.address()
                       << "); plugd plugins dial no brokered connections";
    }
    StartRead(&in_);
  }

  void OnDone() override {
    service_->Remove(this);
    delete this;
  }

 private:
  GoPluginBrokerService* const service_;
  ConnInfo in_;          // only touched by the read chain
  bool logged_ = false;  // likewise
  absl::Mutex mu_;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
};

GoPluginBrokerService::GoPluginBrokerService() = default;
GoPluginBrokerService::~GoPluginBrokerService() = default;

void GoPluginBrokerService::Shutdown() {
  absl::MutexLock lock(&mu_);
  if (shutdown_) return;
  shutdown_ = true;
  for (Stream* stream : streams_) stream->End();
}

void GoPluginBrokerService::Remove(Stream* stream) {
  absl::MutexLock lock(&mu_);
  streams_.erase(stream);
}

grpc::ServerBidiReactor<ConnInfo, ConnInfo>* GoPluginBrokerService::StartStream(
    grpc::CallbackServerContext* context) {
  auto* stream = new Stream(this);
  absl::MutexLock lock(&mu_);
  // Registered even when ending, so that OnDone's removal finds it.
  streams_.insert(stream);
  stream->Begin();
  if (shutdown_) stream->End();
  return stream;
}

}  // namespace plugd::sdk::internal
