// plugd-bench-peercred: what the peer-credential check costs per call.
//
// Serves the same unary service twice in one process: once on a socket gRPC
// listens on itself (the baseline), once through plugd::PeerCheckedListener
// (what the admin server and the C++ SDK use). Then, in rounds that
// alternate between the two, makes N sequential unary calls on one channel
// each, and a batch of N fresh connections with one call each (the accept
// path), and prints the medians and their ratios to the baseline:
//
//   build/bin/plugd-bench-peercred [CALLS_PER_ROUND] [ROUNDS]
//
// A ratio near 1.00 means the check costs nothing measurable.
#include <grpcpp/grpcpp.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "grpc/health/v1/health.grpc.pb.h"
#include "plugd/common/peer_auth.h"

namespace {

using Clock = std::chrono::steady_clock;

class Health final : public grpc::health::v1::Health::CallbackService {
  grpc::ServerUnaryReactor* Check(
      grpc::CallbackServerContext* context,
      const grpc::health::v1::HealthCheckRequest*,
      grpc::health::v1::HealthCheckResponse* response) override {
    response->set_status(grpc::health::v1::HealthCheckResponse::SERVING);
    auto* reactor = context->DefaultReactor();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }
};

std::unique_ptr<grpc::health::v1::Health::Stub> Connect(
    const std::string& path) {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);  // a fresh connection
  return grpc::health::v1::Health::NewStub(grpc::CreateCustomChannel(
      "unix:" + path, grpc::InsecureChannelCredentials(), args));
}

bool Call(grpc::health::v1::Health::Stub& stub) {
  grpc::ClientContext context;
  context.set_wait_for_ready(true);
  context.set_deadline(std::chrono::system_clock::now() +
                       std::chrono::seconds(10));
  grpc::health::v1::HealthCheckResponse response;
  return stub.Check(&context, {}, &response).ok();
}

// Microseconds per call over `calls` sequential calls on one channel.
double UnaryMicros(const std::string& path, int calls) {
  auto stub = Connect(path);
  Call(*stub);  // connect first
  const auto start = Clock::now();
  for (int i = 0; i < calls; ++i) {
    if (!Call(*stub)) {
      std::fprintf(stderr, "call failed on %s\n", path.c_str());
      exit(1);
    }
  }
  return std::chrono::duration<double, std::micro>(Clock::now() - start)
             .count() /
         calls;
}

// Microseconds per new connection plus its first call.
double ConnectMicros(const std::string& path, int connections) {
  const auto start = Clock::now();
  for (int i = 0; i < connections; ++i) {
    auto stub = Connect(path);
    if (!Call(*stub)) {
      std::fprintf(stderr, "call failed on %s\n", path.c_str());
      exit(1);
    }
  }
  return std::chrono::duration<double, std::micro>(Clock::now() - start)
             .count() /
         connections;
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  const int calls = argc > 1 ? atoi(argv[1]) : 5000;
  const int rounds = argc > 2 ? atoi(argv[2]) : 7;
  char dir_template[] = "/tmp/pbXXXXXX";
  const std::string dir = mkdtemp(dir_template);
  const std::string plain_path = dir + "/plain.sock";
  const std::string checked_path = dir + "/checked.sock";

  Health service;
  grpc::ServerBuilder plain_builder;
  plain_builder.AddListeningPort("unix:" + plain_path,
                                 grpc::InsecureServerCredentials());
  plain_builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> plain = plain_builder.BuildAndStart();

  plugd::PeerPolicy policy;
  policy.what = "bench";
  policy.uids.push_back({geteuid(), "own"});
  auto listener =
      plugd::PeerCheckedListener::Listen(checked_path, policy, 0600);
  if (!listener.ok() || plain == nullptr) {
    std::fprintf(stderr, "cannot serve: %s\n",
                 std::string(listener.status().message()).c_str());
    return 1;
  }
  grpc::ServerBuilder checked_builder;
  checked_builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> checked = checked_builder.BuildAndStart();
  if (!(*listener)->Start(checked.get()).ok()) return 1;

  std::vector<double> plain_unary, checked_unary, plain_conn, checked_conn;
  const int connections = std::max(1, calls / 20);
  for (int r = 0; r < rounds; ++r) {
    plain_unary.push_back(UnaryMicros(plain_path, calls));
    checked_unary.push_back(UnaryMicros(checked_path, calls));
    plain_conn.push_back(ConnectMicros(plain_path, connections));
    checked_conn.push_back(ConnectMicros(checked_path, connections));
  }
  const double pu = Median(plain_unary), cu = Median(checked_unary);
  const double pc = Median(plain_conn), cc = Median(checked_conn);
  std::printf(
      "unary call, one connection (%d calls x %d rounds, median):\n"
      "  gRPC's own listener   %8.1f us/call\n"
      "  PeerCheckedListener   %8.1f us/call   ratio %.2f\n"
      "new connection + first call (%d x %d rounds, median):\n"
      "  gRPC's own listener   %8.1f us\n"
      "  PeerCheckedListener   %8.1f us        ratio %.2f\n",
      calls, rounds, pu, cu, cu / pu, connections, rounds, pc, cc, cc / pc);

  (*listener)->Stop();
  checked->Shutdown();
  plain->Shutdown();
  unlink(plain_path.c_str());
  unlink(checked_path.c_str());
  rmdir(dir.c_str());
  return 0;
}
