// The echo clients and servers the call scenarios compare: plugd's channel
// (from the host library), bare gRPC channels with plugd's settings or with
// gRPC's defaults, the raw Unix-socket floor and plugd's dynamic call.
#ifndef PLUGD_BENCH_CLIENTS_H_
#define PLUGD_BENCH_CLIENTS_H_

#include <grpcpp/channel.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "echo/v1/echo.grpc.pb.h"
#include "plugd/host/host.h"
#include "util.h"

namespace plugd::bench {

// Starts `bench-echo-server --mode MODE --socket SOCKET` and waits for READY.
absl::StatusOr<std::unique_ptr<Child>> StartEchoServer(
    const std::string& mode, const std::string& socket);

// A channel configured as hosts/src/host.cc configures a supervised
// plugin's channel (message limits, reconnect backoff, own subchannel pool,
// the service config with waitForReady, timeout and the retry policy for
// echo.v1.Echo/Echo, retries on), without plugd's status interceptor.
std::shared_ptr<grpc::Channel> PlugdSettingsChannel(const std::string& target);
// A channel with gRPC's defaults.
std::shared_ptr<grpc::Channel> DefaultChannel(const std::string& target);

// One round trip at a time, the same client code for every target.
class EchoTarget {
 public:
  virtual ~EchoTarget() = default;
  // One call with `payload`; false (with the reason in *error) on failure.
  virtual bool Call(const std::string& payload, std::string* error) = 0;
};

// Typed stub over a channel. The request is built once per payload and
// reused, as is the response, for every gRPC target alike.
class GrpcTarget : public EchoTarget {
 public:
  explicit GrpcTarget(std::shared_ptr<grpc::Channel> channel)
      : channel_(std::move(channel)),
        stub_(echo::v1::Echo::NewStub(channel_)) {}
  bool Call(const std::string& payload, std::string* error) override;
  std::shared_ptr<grpc::Channel> channel() const { return channel_; }

 private:
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<echo::v1::Echo::Stub> stub_;
  echo::v1::EchoRequest request_;
  echo::v1::EchoResponse response_;
};

// plugd.v1.Functions/Call "echo" through host::Plugin::Call.
class DynamicTarget : public EchoTarget {
 public:
  explicit DynamicTarget(std::shared_ptr<host::Plugin> plugin)
      : plugin_(std::move(plugin)) {}
  bool Call(const std::string& payload, std::string* error) override;

 private:
  std::shared_ptr<host::Plugin> plugin_;
};

// The floor: a 4-byte length and the bytes over a Unix stream socket.
class RawTarget : public EchoTarget {
 public:
  static absl::StatusOr<std::unique_ptr<RawTarget>> Connect(
      const std::string& socket);
  ~RawTarget() override;
  bool Call(const std::string& payload, std::string* error) override;

 private:
  int fd_ = -1;
  std::string buffer_;
};

// Launch options for an echo plugin under a Host (supervised or not).
host::PluginOptions EchoPluginOptions(const std::string& name,
                                      std::vector<std::string> command,
                                      bool supervised);

}  // namespace plugd::bench

#endif  // PLUGD_BENCH_CLIENTS_H_
