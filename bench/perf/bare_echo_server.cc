// perf-bare-echo SOCKET: echo.v1.Echo on a bare gRPC C++ server, configured
// as plugd's SDK configures its server (Unix socket, 64 MiB message limits,
// callback service), for plugd-perf's baseline. Prints "ready" on stdout
// once serving; exits on SIGTERM or when stdin closes.
#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <cstdio>
#include <memory>
#include <string>

#include "echo_service.h"
#include "perf_args.h"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: perf-bare-echo SOCKET_PATH\n");
    return 1;
  }
  plugd::bench::EchoService echo;
  grpc::ServerBuilder builder;
  builder.AddListeningPort(std::string("unix:") + argv[1],
                           grpc::InsecureServerCredentials());
  builder.SetMaxReceiveMessageSize(64 << 20);
  builder.SetMaxSendMessageSize(64 << 20);
  builder.RegisterService(&echo);
  plugd::perf::ForEachPerfArg([&](const std::string& name, int value) {
    builder.AddChannelArgument(name, value);
  });
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr) {
    std::fprintf(stderr, "perf-bare-echo: cannot serve on unix:%s\n", argv[1]);
    return 1;
  }
  std::printf("ready\n");
  std::fflush(stdout);
  char byte;
  while (read(0, &byte, 1) > 0) {
  }
  unlink(argv[1]);
  _exit(0);
}
