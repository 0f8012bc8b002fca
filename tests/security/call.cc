// plugd-test-call: one call to a plugd socket, for the "who may connect"
// tests, which run it as another user.
//
//   plugd-test-call unix:/run/x/random.sock describe   # plugd.v1.Control
//   plugd-test-call unix:/run/plugd/admin.sock list    # plugd.v1.Broker
//
// Prints "OK" or "CODE_NAME: message" and exits 0 (OK), 1 (an error status)
// or 2 (usage).
#include <grpcpp/grpcpp.h>

#include <chrono>
#include <cstring>
#include <iostream>
#include <string>

#include "plugd/v1/broker.grpc.pb.h"
#include "plugd/v1/plugin.grpc.pb.h"

namespace {

const char* CodeName(grpc::StatusCode code) {
  static const char* const kNames[] = {"OK",
                                       "CANCELLED",
                                       "UNKNOWN",
                                       "INVALID_ARGUMENT",
                                       "DEADLINE_EXCEEDED",
                                       "NOT_FOUND",
                                       "ALREADY_EXISTS",
                                       "PERMISSION_DENIED",
                                       "RESOURCE_EXHAUSTED",
                                       "FAILED_PRECONDITION",
                                       "ABORTED",
                                       "OUT_OF_RANGE",
                                       "UNIMPLEMENTED",
                                       "INTERNAL",
                                       "UNAVAILABLE",
                                       "DATA_LOSS",
                                       "UNAUTHENTICATED"};
  const int i = static_cast<int>(code);
  return i >= 0 && i <= 16 ? kNames[i] : "?";
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3 || (std::strcmp(argv[2], "describe") != 0 &&
                    std::strcmp(argv[2], "list") != 0)) {
    std::cerr << "usage: plugd-test-call unix:/path.sock describe|list\n";
    return 2;
  }
  auto channel =
      grpc::CreateChannel(argv[1], grpc::InsecureChannelCredentials());
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() +
                       std::chrono::seconds(20));
  grpc::Status status;
  if (std::strcmp(argv[2], "describe") == 0) {
    plugd::v1::DescribeResponse response;
    status = plugd::v1::Control::NewStub(channel)->Describe(
        &context, plugd::v1::DescribeRequest(), &response);
    if (status.ok()) std::cout << "OK " << response.name() << "\n";
  } else {
    plugd::v1::ListPluginsResponse response;
    status = plugd::v1::Broker::NewStub(channel)->List(
        &context, plugd::v1::ListPluginsRequest(), &response);
    if (status.ok()) std::cout << "OK " << response.plugins_size() << "\n";
  }
  if (status.ok()) return 0;
  std::cout << CodeName(status.error_code()) << ": " << status.error_message()
            << "\n";
  return 1;
}
