// The echo.v1.Echo service used by every C++ echo server of the benchmarks:
// the plugd plugin (plugd-echo) and the bare gRPC baseline
// (bench-echo-server) serve this one class, so that their difference is
// what plugd adds, not the handler.
//
//   bench::EchoService echo;
//   builder.RegisterService(&echo);
//
// Callback (reactor) API: the handler copies the payload and finishes on the
// gRPC thread that read the request; no thread hop.
#ifndef PLUGD_BENCH_ECHO_SERVICE_H_
#define PLUGD_BENCH_ECHO_SERVICE_H_

#include "echo/v1/echo.grpc.pb.h"

namespace plugd::bench {

class EchoService final : public echo::v1::Echo::CallbackService {
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

}  // namespace plugd::bench

#endif  // PLUGD_BENCH_ECHO_SERVICE_H_
