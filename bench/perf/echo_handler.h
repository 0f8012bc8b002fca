// The echo.v1.Echo handler of plugd-perf's two servers (plugd-perf-echo, an
// SDK plugin, and perf-bare-echo, a bare gRPC server), so that their
// difference is what plugd adds. Callback API: it answers on the gRPC
// thread that read the request.
#ifndef PLUGD_BENCH_PERF_ECHO_HANDLER_H_
#define PLUGD_BENCH_PERF_ECHO_HANDLER_H_

#include <cstdlib>
#include <string>

#include "echo/v1/echo.grpc.pb.h"

namespace plugd::perf {

class EchoHandler final : public echo::v1::Echo::CallbackService {
 public:
  grpc::ServerUnaryReactor* Echo(grpc::CallbackServerContext* context,
                                 const echo::v1::EchoRequest* request,
                                 echo::v1::EchoResponse* response) override {
    response->set_payload(request->payload());
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }
};

// Extra integer channel arguments for experiments, from the environment:
// PLUGD_PERF_GRPC_ARGS="grpc.http2.lookahead_bytes=1048576,name=value".
template <typename F>
void ForEachPerfArg(F f) {
  const char* env = std::getenv("PLUGD_PERF_GRPC_ARGS");
  if (env == nullptr) return;
  std::string all = env;
  size_t start = 0;
  while (start < all.size()) {
    size_t end = all.find(',', start);
    if (end == std::string::npos) end = all.size();
    std::string item = all.substr(start, end - start);
    size_t eq = item.find('=');
    if (eq != std::string::npos) {
      f(item.substr(0, eq), std::stoi(item.substr(eq + 1)));
    }
    start = end + 1;
  }
}

}  // namespace plugd::perf

#endif  // PLUGD_BENCH_PERF_ECHO_HANDLER_H_
