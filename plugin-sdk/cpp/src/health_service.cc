#include "health_service.h"

#include <utility>

#include "plugd/common/protocol.h"

namespace plugd::sdk::internal {

using grpc::health::v1::HealthCheckRequest;
using grpc::health::v1::HealthCheckResponse;

// One Watch stream. At most one write is in flight; a newer status waits in
// `pending_` (only the latest matters). Lock order: HealthService::mu_, then
// WatchReactor::mu_. gRPC calls OnDone from its own threads, never inline
// from Finish(), so OnDone may take HealthService::mu_.
class HealthService::WatchReactor final
    : public grpc::ServerWriteReactor<HealthCheckResponse> {
 public:
  WatchReactor(HealthService* service, std::string name)
      : service_(service), name_(std::move(name)) {}

  const std::string& name() const { return name_; }

  void Send(ServingStatus status) ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    if (finished_ || end_requested_ || status == last_) return;
    last_ = status;
    if (write_in_flight_) {
      pending_ = status;
      has_pending_ = true;
      return;
    }
    WriteLocked(status);
  }

  // Ends the stream with `status` once the writes queued so far are sent.
  void End(grpc::Status status) ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    if (finished_ || end_requested_) return;
    end_requested_ = true;
    end_status_ = std::move(status);
    if (!write_in_flight_ && !has_pending_) FinishLocked(end_status_);
  }

  void OnWriteDone(bool ok) override {
    absl::MutexLock lock(&mu_);
    write_in_flight_ = false;
    if (finished_) return;
    if (!ok) {
      FinishLocked(grpc::Status(grpc::StatusCode::CANCELLED, "write failed"));
    } else if (has_pending_) {
      has_pending_ = false;
      WriteLocked(pending_);
    } else if (end_requested_) {
      FinishLocked(end_status_);
    }
  }

  void OnCancel() override {
    absl::MutexLock lock(&mu_);
    // A write in flight completes with ok == false and finishes then.
    if (!finished_ && !write_in_flight_) {
      FinishLocked(grpc::Status::CANCELLED);
    }
  }

  void OnDone() override {
    service_->RemoveWatcher(this);
    delete this;
  }

 private:
  void WriteLocked(ServingStatus status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    response_.set_status(status);
    write_in_flight_ = true;
    StartWrite(&response_);
  }

  void FinishLocked(const grpc::Status& status)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    finished_ = true;
    Finish(status);
  }

  HealthService* const service_;
  const std::string name_;
  absl::Mutex mu_;
  HealthCheckResponse response_ ABSL_GUARDED_BY(mu_);
  bool write_in_flight_ ABSL_GUARDED_BY(mu_) = false;
  bool has_pending_ ABSL_GUARDED_BY(mu_) = false;
  ServingStatus pending_ ABSL_GUARDED_BY(mu_) = HealthCheckResponse::UNKNOWN;
  bool end_requested_ ABSL_GUARDED_BY(mu_) = false;
  grpc::Status end_status_ ABSL_GUARDED_BY(mu_);
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  // The last status queued, so that a watcher hears each change once.
  ServingStatus last_ ABSL_GUARDED_BY(mu_) = HealthCheckResponse::UNKNOWN;
};

HealthService::HealthService() {
  names_.insert("");
  names_.insert(plugd::kHealthServicePlugin);
}

HealthService::~HealthService() = default;

void HealthService::AddNames(const std::vector<std::string>& names) {
  absl::MutexLock lock(&mu_);
  names_.insert(names.begin(), names.end());
}

HealthService::ServingStatus HealthService::StatusLocked(
    const std::string& name) const {
  if (names_.count(name) == 0) return HealthCheckResponse::SERVICE_UNKNOWN;
  return serving_ && !shutdown_ ? HealthCheckResponse::SERVING
                                : HealthCheckResponse::NOT_SERVING;
}

void HealthService::SetServing(bool serving) {
  absl::MutexLock lock(&mu_);
  if (shutdown_ || serving_ == serving) return;
  serving_ = serving;
  for (WatchReactor* watcher : watchers_) {
    watcher->Send(StatusLocked(watcher->name()));
  }
}

void HealthService::Shutdown() {
  absl::MutexLock lock(&mu_);
  if (shutdown_) return;
  shutdown_ = true;
  for (WatchReactor* watcher : watchers_) {
    watcher->Send(StatusLocked(watcher->name()));
    watcher->End(grpc::Status(grpc::StatusCode::UNAVAILABLE,
                              "the plugin is shutting down"));
  }
}

void HealthService::RemoveWatcher(WatchReactor* watcher) {
  absl::MutexLock lock(&mu_);
  watchers_.erase(watcher);
}

grpc::ServerUnaryReactor* HealthService::Check(
    grpc::CallbackServerContext* context, const HealthCheckRequest* request,
    HealthCheckResponse* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  ServingStatus status;
  {
    absl::MutexLock lock(&mu_);
    status = StatusLocked(request->service());
  }
  if (status == HealthCheckResponse::SERVICE_UNKNOWN) {
    reactor->Finish(
        grpc::Status(grpc::StatusCode::NOT_FOUND,
                     "unknown service \"" + request->service() + "\""));
  } else {
    response->set_status(status);
    reactor->Finish(grpc::Status::OK);
  }
  return reactor;
}

grpc::ServerWriteReactor<HealthCheckResponse>* HealthService::Watch(
    grpc::CallbackServerContext* context, const HealthCheckRequest* request) {
  auto* watcher = new WatchReactor(this, request->service());
  absl::MutexLock lock(&mu_);
  watcher->Send(StatusLocked(watcher->name()));
  if (shutdown_) {
    watcher->End(grpc::Status(grpc::StatusCode::UNAVAILABLE,
                              "the plugin is shutting down"));
  }
  // Registered even when ending, so that OnDone's removal finds it.
  watchers_.insert(watcher);
  return watcher;
}

}  // namespace plugd::sdk::internal
