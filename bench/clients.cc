#include "clients.h"

#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/support/channel_arguments.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "plugd/common/channel.h"
#include "plugd/common/protocol.h"
#include "plugd/common/value.h"
#include "raw_io.h"

namespace plugd::bench {
namespace {

constexpr absl::Duration kCallDeadline = absl::Seconds(30);

}  // namespace

absl::StatusOr<std::unique_ptr<Child>> StartEchoServer(
    const std::string& mode, const std::string& socket) {
  absl::StatusOr<std::unique_ptr<Child>> child = Child::Start(
      {Bin("bench-echo-server"), "--mode", mode, "--socket", socket});
  if (!child.ok()) return child.status();
  absl::StatusOr<std::string> line = (*child)->ReadLine(absl::Seconds(30));
  if (!line.ok() || *line != "READY") {
    return absl::UnavailableError(
        absl::StrCat("bench-echo-server --mode ", mode, " did not start: ",
                     line.ok() ? *line : std::string(line.status().message())));
  }
  return child;
}

std::shared_ptr<grpc::Channel> PlugdSettingsChannel(const std::string& target) {
  grpc::ChannelArguments args;
  const int limit = static_cast<int>(kDefaultMaxMessageBytes);
  args.SetMaxReceiveMessageSize(limit);
  args.SetMaxSendMessageSize(limit);
  SetLocalReconnectArguments(&args);
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  // The service config hosts/src/host.cc (ServiceConfig) builds for a
  // supervised plugin serving echo.v1.Echo with a 30 s call timeout.
  args.SetServiceConfigJSON(
      R"({"methodConfig":[{"name":[{}],"waitForReady":true,"timeout":"30s"},)"
      R"({"name":[{"service":"echo.v1.Echo","method":"Echo"}],)"
      R"("waitForReady":true,"timeout":"30s",)"
      R"("retryPolicy":{"maxAttempts":5,"initialBackoff":"0.01s",)"
      R"("maxBackoff":"0.1s","backoffMultiplier":2,)"
      R"("retryableStatusCodes":["UNAVAILABLE"]}}]})");
  args.SetInt(GRPC_ARG_ENABLE_RETRIES, 1);
  return grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(),
                                   args);
}

std::shared_ptr<grpc::Channel> DefaultChannel(const std::string& target) {
  return grpc::CreateChannel(target, grpc::InsecureChannelCredentials());
}

bool GrpcTarget::Call(const std::string& payload, std::string* error) {
  if (request_.payload().size() != payload.size()) {
    request_.set_payload(payload);
  }
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + kCallDeadline));
  grpc::Status status = stub_->Echo(&context, request_, &response_);
  if (!status.ok()) {
    *error = absl::StrCat("echo.v1.Echo/Echo: ", status.error_message());
    return false;
  }
  if (response_.payload().size() != payload.size()) {
    *error = "echo.v1.Echo/Echo answered a payload of another size";
    return false;
  }
  return true;
}

bool DynamicTarget::Call(const std::string& payload, std::string* error) {
  absl::StatusOr<google::protobuf::Value> result =
      plugin_->Call("echo", {StringValue(payload)}, kCallDeadline);
  if (!result.ok()) {
    *error = std::string(result.status().message());
    return false;
  }
  if (result->string_value().size() != payload.size()) {
    *error = "the echo function answered a string of another size";
    return false;
  }
  return true;
}

absl::StatusOr<std::unique_ptr<RawTarget>> RawTarget::Connect(
    const std::string& socket) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, socket.data(),
              std::min(socket.size(), sizeof(addr.sun_path) - 1));
  if (fd < 0 ||
      connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    std::string why = std::strerror(errno);
    if (fd >= 0) close(fd);
    return absl::UnavailableError(
        absl::StrCat("cannot connect to ", socket, ": ", why));
  }
  auto target = std::unique_ptr<RawTarget>(new RawTarget());
  target->fd_ = fd;
  return target;
}

RawTarget::~RawTarget() {
  if (fd_ >= 0) close(fd_);
}

bool RawTarget::Call(const std::string& payload, std::string* error) {
  uint32_t size = static_cast<uint32_t>(payload.size());
  iovec iov[2] = {{&size, sizeof(size)},
                  {const_cast<char*>(payload.data()), payload.size()}};
  size_t total = sizeof(size) + payload.size();
  size_t done = 0;
  while (done < total) {
    // writev may write part of it: advance the iovecs.
    iovec rest[2];
    int count = 0;
    size_t skip = done;
    for (const iovec& v : iov) {
      if (skip >= v.iov_len) {
        skip -= v.iov_len;
        continue;
      }
      rest[count].iov_base = static_cast<char*>(v.iov_base) + skip;
      rest[count].iov_len = v.iov_len - skip;
      skip = 0;
      ++count;
    }
    ssize_t n = writev(fd_, rest, count);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      *error = absl::StrCat("raw write: ", std::strerror(errno));
      return false;
    }
    done += static_cast<size_t>(n);
  }
  uint32_t answer = 0;
  buffer_.resize(payload.size());
  if (!ReadFull(fd_, &answer, sizeof(answer)) || answer != size ||
      !ReadFull(fd_, buffer_.data(), size)) {
    *error = "raw read failed";
    return false;
  }
  return true;
}

host::PluginOptions EchoPluginOptions(const std::string& name,
                                      std::vector<std::string> command,
                                      bool supervised) {
  host::PluginOptions options;
  options.name = name;
  options.command = std::move(command);
  options.start_timeout = absl::Seconds(60);
  if (supervised) options.supervision = host::SupervisionOptions();
  return options;
}

}  // namespace plugd::bench
