// A test double of the plugd daemon's admin API: a real gRPC server on a Unix
// socket serving plugd.v1.Broker with canned, realistic data. plugctl's
// end-to-end tests run the real plugctl binary against it.
//
// Plugins: "alpha" (ready, functions random/sum/echo, logs), "beta" (backing
// off after a SIGKILL; its followed log stream stays open until the client
// cancels) and "gamma" (stopped; starts fine). Unknown names get NOT_FOUND
// listing the known ones, as the daemon does.
#ifndef PLUGD_TESTS_PLUGCTL_FAKE_BROKER_H_
#define PLUGD_TESTS_PLUGCTL_FAKE_BROKER_H_

#include <grpcpp/server.h>

#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "plugd/v1/broker.grpc.pb.h"

namespace plugd::plugctl::testing {

class FakeBroker final : public plugd::v1::Broker::Service {
 public:
  // Serves on the Unix socket `path`; aborts if it cannot.
  explicit FakeBroker(const std::string& path);
  // Shuts the server down, cancelling open streams.
  ~FakeBroker() override;

  // The last requests seen, to check what plugctl sent.
  plugd::v1::TailLogsRequest last_tail_logs() const;
  plugd::v1::WatchEventsRequest last_watch_events() const;
  plugd::v1::CallPluginRequest last_call() const;

  grpc::Status List(grpc::ServerContext* context,
                    const plugd::v1::ListPluginsRequest* request,
                    plugd::v1::ListPluginsResponse* response) override;
  grpc::Status Get(grpc::ServerContext* context,
                   const plugd::v1::GetPluginRequest* request,
                   plugd::v1::PluginStatus* response) override;
  grpc::Status Start(grpc::ServerContext* context,
                     const plugd::v1::StartPluginRequest* request,
                     plugd::v1::PluginStatus* response) override;
  grpc::Status Stop(grpc::ServerContext* context,
                    const plugd::v1::StopPluginRequest* request,
                    plugd::v1::PluginStatus* response) override;
  grpc::Status Restart(grpc::ServerContext* context,
                       const plugd::v1::RestartPluginRequest* request,
                       plugd::v1::PluginStatus* response) override;
  grpc::Status Resolve(grpc::ServerContext* context,
                       const plugd::v1::ResolveRequest* request,
                       plugd::v1::ResolveResponse* response) override;
  grpc::Status Describe(grpc::ServerContext* context,
                        const plugd::v1::DescribePluginRequest* request,
                        plugd::v1::DescribeResponse* response) override;
  grpc::Status Call(grpc::ServerContext* context,
                    const plugd::v1::CallPluginRequest* request,
                    plugd::v1::CallResponse* response) override;
  grpc::Status WatchEvents(
      grpc::ServerContext* context,
      const plugd::v1::WatchEventsRequest* request,
      grpc::ServerWriter<plugd::v1::Event>* writer) override;
  grpc::Status TailLogs(
      grpc::ServerContext* context, const plugd::v1::TailLogsRequest* request,
      grpc::ServerWriter<plugd::v1::LogLine>* writer) override;

 private:
  // Finds a plugin's status, or NOT_FOUND naming the known plugins.
  grpc::Status Find(const std::string& name, plugd::v1::PluginStatus* out);

  std::unique_ptr<grpc::Server> server_;
  mutable absl::Mutex mu_;
  plugd::v1::ListPluginsResponse plugins_ ABSL_GUARDED_BY(mu_);
  plugd::v1::TailLogsRequest last_tail_logs_ ABSL_GUARDED_BY(mu_);
  plugd::v1::WatchEventsRequest last_watch_events_ ABSL_GUARDED_BY(mu_);
  plugd::v1::CallPluginRequest last_call_ ABSL_GUARDED_BY(mu_);
};

}  // namespace plugd::plugctl::testing

#endif  // PLUGD_TESTS_PLUGCTL_FAKE_BROKER_H_
