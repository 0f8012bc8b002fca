// plugd-test-raw: a plugin written with nothing but grpc++ and the protocol
// (no SDK), whose --mode makes it misbehave in the ways the launcher must
// handle. Modes:
//   ok                    handshake, serve Health + Control (default)
//   garbage               prints "hello world" instead of a handshake; waits
//   silent                prints nothing; waits forever
//   exit-early            3 lines to stderr, exits 3 before the handshake
//   segv                  raise(SIGSEGV) before the handshake
//   bad-core              core version 2 in the handshake
//   bad-app               app version 99 in the handshake
//   bad-address           handshake names a socket nobody listens on
//   ignore-term           ignores SIGTERM and the Shutdown call
//   grandchild            forks a child that stays in the group, ignores
//                         SIGTERM and sleeps ("grandchild pid N" on stderr)
//   flood                 after the handshake, stderr lines as fast as it can
//   longline              one 1 MiB stderr line, then a normal one
//   exit-after-handshake  answers one health check, writes "bye", exits 4
//   slow-handshake        waits --delay-ms=N (default 1000) before listening
//                         and hand-shaking, then serves like ok
//   exit-after            serves like ok, then exits with --code=C (default
//                         1) --delay-ms=N (default 100) after the handshake
//   garbage-after-handshake
//                         after the handshake, writes lines of binary garbage
//                         (invalid UTF-8, NULs, control bytes, a 100 KiB
//                         line) to stdout, then serves like ok
#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "plugd/common/protocol.h"
#include "plugd/v1/plugin.grpc.pb.h"

namespace {

std::string g_mode = "ok";
int64_t g_delay_ms = -1;  // --delay-ms; -1: the mode's default
int g_code = 1;           // --code
absl::Notification g_shutdown;
absl::Notification g_health_checked;
std::atomic<bool> g_stop_flood{false};

void WriteAll(int fd, const std::string& text) {
  size_t done = 0;
  while (done < text.size()) {
    ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n <= 0) return;
    done += static_cast<size_t>(n);
  }
}

void WaitForever() {
  for (;;) ::pause();
}

class HealthService final : public grpc::health::v1::Health::Service {
  grpc::Status Check(grpc::ServerContext*,
                     const grpc::health::v1::HealthCheckRequest*,
                     grpc::health::v1::HealthCheckResponse* response) override {
    response->set_status(grpc::health::v1::HealthCheckResponse::SERVING);
    if (!g_health_checked.HasBeenNotified()) g_health_checked.Notify();
    return grpc::Status::OK;
  }
};

class ControlService final : public plugd::v1::Control::Service {
 public:
  explicit ControlService(uint32_t app_version) : app_version_(app_version) {}

  grpc::Status Describe(grpc::ServerContext*, const plugd::v1::DescribeRequest*,
                        plugd::v1::DescribeResponse* response) override {
    const char* name = std::getenv(plugd::kEnvPluginName);
    response->set_name(name != nullptr ? name : "raw");
    response->set_version("0.0.1-test");
    response->set_protocol_version(app_version_);
    response->set_core_protocol_version(plugd::kCoreProtocolVersion);
    response->add_services("grpc.health.v1.Health");
    response->add_services("plugd.v1.Control");
    response->set_pid(::getpid());
    return grpc::Status::OK;
  }

  grpc::Status Shutdown(grpc::ServerContext*, const plugd::v1::ShutdownRequest*,
                        plugd::v1::ShutdownResponse*) override {
    if (g_mode == "ignore-term") return grpc::Status::OK;  // and stays up
    g_stop_flood = true;
    if (!g_shutdown.HasBeenNotified()) g_shutdown.Notify();
    return grpc::Status::OK;
  }

 private:
  uint32_t app_version_;
};

}  // namespace

int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg.rfind("--mode=", 0) == 0) g_mode = arg.substr(7);
    if (arg.rfind("--delay-ms=", 0) == 0) {
      absl::SimpleAtoi(arg.substr(11), &g_delay_ms);
    }
    if (arg.rfind("--code=", 0) == 0) absl::SimpleAtoi(arg.substr(7), &g_code);
  }
  const char* cookie = std::getenv(plugd::kEnvMagicCookieKey);
  if (cookie == nullptr || std::strcmp(cookie, plugd::kMagicCookieValue) != 0) {
    std::fprintf(stderr,
                 "plugd-test-raw is a plugd plugin (a test one), not a program "
                 "to run by hand: a plugd host launches it and talks to it "
                 "over gRPC.\n");
    return 1;
  }
  const char* socket = std::getenv(plugd::kEnvSocket);
  if (socket == nullptr || socket[0] == '\0') {
    std::fprintf(stderr, "plugd-test-raw: %s is not set\n", plugd::kEnvSocket);
    return 1;
  }

  if (g_mode == "silent") WaitForever();
  if (g_mode == "garbage") {
    WriteAll(STDOUT_FILENO, "hello world\n");
    WaitForever();
  }
  if (g_mode == "exit-early") {
    WriteAll(STDERR_FILENO,
             "starting up\nreading config\nfatal: config file missing\n");
    return 3;
  }
  if (g_mode == "segv") {
    struct rlimit no_core = {0, 0};
    ::setrlimit(RLIMIT_CORE, &no_core);  // no core file litter
    WriteAll(STDERR_FILENO, "about to crash\n");
    ::raise(SIGSEGV);
    return 0;
  }
  if (g_mode == "ignore-term") ::signal(SIGTERM, SIG_IGN);
  if (g_mode == "slow-handshake") {
    absl::SleepFor(absl::Milliseconds(g_delay_ms >= 0 ? g_delay_ms : 1000));
  }

  uint32_t app_version = 1;
  if (const char* versions = std::getenv(plugd::kEnvProtocolVersions)) {
    auto host = plugd::ParseVersionList(versions);
    if (host.ok()) {
      auto v = plugd::NegotiateVersion(*host, {1});
      if (v.ok()) app_version = *v;
    }
  }

  HealthService health;
  ControlService control(app_version);
  grpc::ServerBuilder builder;
  builder.AddListeningPort(absl::StrCat("unix:", socket),
                           grpc::InsecureServerCredentials());
  builder.RegisterService(&health);
  builder.RegisterService(&control);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr) {
    std::fprintf(stderr, "plugd-test-raw: cannot listen on %s\n", socket);
    return 1;
  }

  plugd::Handshake handshake;
  handshake.core_version = plugd::kCoreProtocolVersion;
  handshake.app_version = app_version;
  handshake.network = "unix";
  handshake.address = socket;
  handshake.protocol = "grpc";
  if (g_mode == "bad-core") handshake.core_version = 2;
  if (g_mode == "bad-app") handshake.app_version = 99;
  if (g_mode == "bad-address") handshake.address = "/nonexistent-plugd/x.sock";
  WriteAll(STDOUT_FILENO, plugd::FormatHandshake(handshake) + "\n");

  if (g_mode == "grandchild") {
    pid_t child = ::fork();
    if (child == 0) {
      ::signal(SIGTERM, SIG_IGN);
      WaitForever();
    }
    WriteAll(STDERR_FILENO, absl::StrCat("grandchild pid ", child, "\n"));
  } else if (g_mode == "flood") {
    const std::string line =
        "[INFO] flood: the quick brown fox jumps over the lazy dog\n";
    while (!g_stop_flood) WriteAll(STDERR_FILENO, line);
  } else if (g_mode == "longline") {
    WriteAll(STDERR_FILENO, std::string(1 << 20, 'x') + "\n");
    WriteAll(STDERR_FILENO, "after the long line\n");
  } else if (g_mode == "exit-after") {
    absl::SleepFor(absl::Milliseconds(g_delay_ms >= 0 ? g_delay_ms : 100));
    WriteAll(STDERR_FILENO, absl::StrCat("exiting with code ", g_code, "\n"));
    std::_Exit(g_code);
  } else if (g_mode == "garbage-after-handshake") {
    std::string garbage;
    for (int i = 0; i < 256; ++i) garbage.push_back(static_cast<char>(i));
    garbage += "\n\xff\xfe\xc3\x28 not utf-8 \x00\x01\x1b[31m\r\n";
    garbage += std::string(100 * 1024, '\x80') + "\n";
    garbage += "{\"level\":\"error\",\"msg\":\x00\xff}\n[ERROR\n\n\n";
    WriteAll(STDOUT_FILENO, garbage);
  } else if (g_mode == "exit-after-handshake") {
    g_health_checked.WaitForNotification();
    server->Shutdown(std::chrono::system_clock::now() +
                     std::chrono::seconds(1));
    server->Wait();
    WriteAll(STDERR_FILENO, "bye\n");
    return 4;
  }

  g_shutdown.WaitForNotification();
  int64_t grace_ms = 1000;
  if (const char* g = std::getenv(plugd::kEnvShutdownGraceMs)) {
    absl::SimpleAtoi(g, &grace_ms);
  }
  server->Shutdown(std::chrono::system_clock::now() +
                   std::chrono::milliseconds(grace_ms));
  server->Wait();
  return 0;
}
