// bench-echo-server: the baselines of the call benchmarks
// (docs/benchmarks.md), without plugd.
//
//   bench-echo-server --mode grpc-plugd   --socket /tmp/x/s.sock
//   bench-echo-server --mode grpc-default --socket /tmp/x/s.sock
//   bench-echo-server --mode raw          --socket /tmp/x/s.sock
//
// grpc-plugd serves echo.v1.Echo (the same handler class as plugd-echo)
// configured as the plugd C++ SDK configures a plugin: 64 MiB message
// limits, malloc tuned for large messages (plugd::TuneAllocator) and Abseil's
// mutex deadlock detector off; no plugd services, no interceptor. So plugd
// against it is plugd's own overhead. grpc-default serves it with gRPC's,
// glibc's and Debian's Abseil's defaults. raw is the floor: a Unix stream
// socket that echoes messages framed as a 4-byte little-endian length and the
// bytes, one connection at a time, no gRPC at all.
//
// It prints "READY" on stdout once it accepts connections and exits 0 on
// SIGTERM or SIGINT (after a graceful gRPC shutdown, so that a profiler
// around it can write its output).
#include <errno.h>
#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "echo_service.h"
#include "plugd/common/allocator.h"
#include "plugd/common/deadlock_detection.h"
#include "raw_io.h"

namespace {

using plugd::bench::ReadFull;
using plugd::bench::WriteFull;

constexpr int kPlugdMaxMessageBytes = 64 << 20;  // kDefaultMaxMessageBytes

// The raw floor: accept, echo framed messages until EOF, repeat.
void ServeRaw(int listener) {
  std::vector<char> buffer;
  for (;;) {
    int fd = accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR) continue;
      return;
    }
    for (;;) {
      uint32_t size = 0;
      if (!ReadFull(fd, &size, sizeof(size))) break;
      buffer.resize(size);
      if (!ReadFull(fd, buffer.data(), size)) break;
      if (!WriteFull(fd, &size, sizeof(size)) ||
          !WriteFull(fd, buffer.data(), size)) {
        break;
      }
    }
    close(fd);
  }
}

int Usage(const char* message) {
  std::fprintf(stderr,
               "bench-echo-server: %s\nusage: bench-echo-server --mode "
               "grpc-plugd|grpc-default|raw --socket PATH\n",
               message);
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  std::string mode;
  std::string socket_path;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--mode" && i + 1 < argc) {
      mode = argv[++i];
    } else if (arg == "--socket" && i + 1 < argc) {
      socket_path = argv[++i];
    } else {
      return Usage(("unknown or incomplete argument \"" + arg + "\"").c_str());
    }
  }
  if (mode != "grpc-plugd" && mode != "grpc-default" && mode != "raw") {
    return Usage("--mode must be grpc-plugd, grpc-default or raw");
  }
  if (socket_path.empty() ||
      socket_path.size() >= sizeof(sockaddr_un{}.sun_path)) {
    return Usage("--socket PATH is required (at most 107 bytes)");
  }
  unlink(socket_path.c_str());

  // Signals are taken by sigwait below; block them before any thread starts.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  if (mode == "grpc-plugd") {
    // What plugd::sdk::Serve does before starting its server.
    plugd::TuneAllocator(kPlugdMaxMessageBytes);
    plugd::SetMutexDeadlockDetection(false);
  }

  std::unique_ptr<grpc::Server> server;
  plugd::bench::EchoService echo;
  if (mode == "raw") {
    int listener = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::memcpy(addr.sun_path, socket_path.data(), socket_path.size());
    if (listener < 0 ||
        bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
        listen(listener, 16) != 0) {
      std::fprintf(stderr, "bench-echo-server: cannot listen on %s: %s\n",
                   socket_path.c_str(), std::strerror(errno));
      return 1;
    }
    std::thread(ServeRaw, listener).detach();
  } else {
    grpc::ServerBuilder builder;
    builder.AddListeningPort("unix:" + socket_path,
                             grpc::InsecureServerCredentials());
    if (mode == "grpc-plugd") {
      builder.SetMaxReceiveMessageSize(kPlugdMaxMessageBytes);
      builder.SetMaxSendMessageSize(kPlugdMaxMessageBytes);
    } else {
      // gRPC's default receive limit is 4 MiB: enough for the 1 MiB payload.
    }
    builder.RegisterService(&echo);
    server = builder.BuildAndStart();
    if (server == nullptr) {
      std::fprintf(stderr, "bench-echo-server: cannot serve on unix:%s\n",
                   socket_path.c_str());
      return 1;
    }
  }
  std::printf("READY\n");
  std::fflush(stdout);
  int sig = 0;
  sigwait(&signals, &sig);
  if (server) {
    server->Shutdown(std::chrono::system_clock::now() +
                     std::chrono::seconds(2));
    server->Wait();
  }
  unlink(socket_path.c_str());
  return 0;
}
