// grpc.health.v1.Health for a plugin: one serving state shared by "",
// "plugin" and every served service name, with Watch streams that the
// plugin ends itself when it shuts down (gRPC's Server::Shutdown waits for
// open streams, so a Watch left open would hold shutdown for the whole grace
// period).
#ifndef PLUGD_SDK_SRC_HEALTH_SERVICE_H_
#define PLUGD_SDK_SRC_HEALTH_SERVICE_H_

#include <set>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "grpc/health/v1/health.grpc.pb.h"

namespace plugd::sdk::internal {

class HealthService final : public grpc::health::v1::Health::CallbackService {
 public:
  HealthService();
  ~HealthService() override;

  // Makes `names` known, in addition to "" and "plugin".
  void AddNames(const std::vector<std::string>& names);
  // SERVING or NOT_SERVING for every known name; Watch streams get it.
  // Ignored after Shutdown().
  void SetServing(bool serving);
  // Everything NOT_SERVING, every open Watch stream sent that and then ended
  // with UNAVAILABLE; later Watch calls are answered the same way. Does not
  // wait for the streams to end. Idempotent.
  void Shutdown();

  grpc::ServerUnaryReactor* Check(
      grpc::CallbackServerContext* context,
      const grpc::health::v1::HealthCheckRequest* request,
      grpc::health::v1::HealthCheckResponse* response) override;
  grpc::ServerWriteReactor<grpc::health::v1::HealthCheckResponse>* Watch(
      grpc::CallbackServerContext* context,
      const grpc::health::v1::HealthCheckRequest* request) override;

 private:
  class WatchReactor;
  using ServingStatus = grpc::health::v1::HealthCheckResponse::ServingStatus;

  ServingStatus StatusLocked(const std::string& name) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void RemoveWatcher(WatchReactor* watcher);

  mutable absl::Mutex mu_;
  bool serving_ ABSL_GUARDED_BY(mu_) = true;
  bool shutdown_ ABSL_GUARDED_BY(mu_) = false;
  std::set<std::string> names_ ABSL_GUARDED_BY(mu_);
  std::set<WatchReactor*> watchers_ ABSL_GUARDED_BY(mu_);
};

}  // namespace plugd::sdk::internal

#endif  // PLUGD_SDK_SRC_HEALTH_SERVICE_H_
