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
//   abort-in-health-check announces its address, then aborts (SIGABRT) in
//                         the first health check (the launcher's connect
//                         check)
// Modes for the conformance checker (tests/conform), best with --strict:
//   no-cookie-check       serves even without the magic cookie
//   ignore-versions       announces version 1 whatever the host offers
//   setsid-grandchild     forks a child that leaves the process group
//                         (setsid) and sleeps ("grandchild pid N" on stderr)
//   stdout-chatter        after the handshake, log lines on stdout, one of
//                         them shaped like a second handshake line
//   stdout-binary         after the handshake, binary bytes on stdout
//   not-serving           health answers NOT_SERVING
//   describe-empty        Describe answers an empty name and version
//   shutdown-exit-3       exits with code 3 after the Shutdown call
//   functions-wrong-code  serves plugd.v1.Functions ("echo"), but an unknown
//                         function is UNKNOWN instead of NOT_FOUND
// Modes for the host library's retry tests (tests/host), serving
// plugd.v1.Functions like functions-wrong-code:
//   die-in-list-functions   SIGKILLs itself inside ListFunctions while the
//                           --deaths-file=PATH holds a count above 0 (and
//                           counts it down)
//   hold-in-list-functions  inside ListFunctions, opens the FIFO --fifo=PATH
//                           for writing (so a reader learns that the call
//                           arrived), writes one byte, then holds the call
//                           until the plugin is told to shut down
// --strict makes every mode follow each MUST of docs/protocol.md it does not
// break on purpose: no version in common (or a malformed list) is refused
// with exit 1, and SIGTERM/SIGINT stop it gracefully with exit 0. Without
// it, the launcher tests' historical behaviour: SIGTERM kills it.
#include <errno.h>
#include <fcntl.h>
#include <grpc/grpc.h>
//   slow-handshake        waits --delay-ms=N (default 1000) before listening
//                         and hand-shaking, then serves like ok
//   exit-after            serves like ok, then exits with --code=C (default
//                         1) --delay-ms=N (default 100) after the handshake
//   die-in-list-functions serves plugd.v1.Functions like functions-wrong-code,
//                         but while the file --deaths-file=PATH holds a
//                         number N > 0, ListFunctions writes N-1 to it and
//                         SIGKILLs the plugin mid-call (a plugin killed
//                         under an idempotent call, again and again)
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
#include <thread>

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
bool g_strict = false;
std::atomic<bool> g_shutdown_called{false};
int64_t g_delay_ms = -1;    // --delay-ms; -1: the mode's default
int g_code = 1;             // --code
std::string g_deaths_file;  // --deaths-file
std::string g_fifo;         // --fifo
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
    if (g_mode == "abort-in-health-check") std::abort();
    response->set_status(
        g_mode == "not-serving"
            ? grpc::health::v1::HealthCheckResponse::NOT_SERVING
            : grpc::health::v1::HealthCheckResponse::SERVING);
    if (!g_health_checked.HasBeenNotified()) g_health_checked.Notify();
    return grpc::Status::OK;
  }
};

plugd::v1::FunctionInfo EchoInfo() {
  plugd::v1::FunctionInfo info;
  info.set_name("echo");
  info.set_help("echo(text): returns text");
  plugd::v1::Parameter* param = info.add_params();
  param->set_name("text");
  param->set_kind(plugd::v1::VALUE_KIND_STRING);
  info.set_min_args(1);
  info.set_max_args(1);
  return info;
}

// Whether the mode serves plugd.v1.Functions (and Describe says so).
bool ServesFunctions() {
  return g_mode == "functions-wrong-code" ||
         g_mode == "die-in-list-functions" ||
         g_mode == "hold-in-list-functions";
}

// For die-in-list-functions: takes one death from --deaths-file, if any left.
void MaybeDie() {
  FILE* f = std::fopen(g_deaths_file.c_str(), "r+");
  if (f == nullptr) return;
  long left = 0;  // NOLINT(runtime/int): fscanf's %ld
  if (std::fscanf(f, "%ld", &left) == 1 && left > 0) {
    std::rewind(f);
    std::fprintf(f, "%ld\n", left - 1);
    std::fflush(f);
    ::fsync(fileno(f));
    ::raise(SIGKILL);
  }
  std::fclose(f);
}

// For functions-wrong-code (and die-in-list-functions): a Functions service
// whose unknown-function error has the wrong code.
class FunctionsService final : public plugd::v1::Functions::Service {
  grpc::Status ListFunctions(
      grpc::ServerContext*, const plugd::v1::ListFunctionsRequest*,
      plugd::v1::ListFunctionsResponse* response) override {
    if (g_mode == "die-in-list-functions") MaybeDie();
    if (g_mode == "hold-in-list-functions") {
      const int fd = ::open(g_fifo.c_str(), O_WRONLY | O_CLOEXEC);
      if (fd >= 0) {
        const char byte = 'x';
        if (::write(fd, &byte, 1) != 1) std::perror("plugd-test-raw: fifo");
        ::close(fd);
      }
      g_shutdown.WaitForNotification();
    }
    *response->add_functions() = EchoInfo();
    return grpc::Status::OK;
  }
  grpc::Status Call(grpc::ServerContext*, const plugd::v1::CallRequest* request,
                    plugd::v1::CallResponse* response) override {
    if (request->function() != "echo") {
      return grpc::Status(grpc::StatusCode::UNKNOWN,
                          "no such function; it offers: echo");
    }
    if (request->args_size() != 1) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                          "echo takes 1 argument (text)");
    }
    *response->mutable_result() = request->args(0);
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
    if (g_mode == "describe-empty") {
      response->clear_name();
      response->clear_version();
    }
    response->set_protocol_version(app_version_);
    response->set_core_protocol_version(plugd::kCoreProtocolVersion);
    response->add_services("grpc.health.v1.Health");
    response->add_services("plugd.v1.Control");
    if (ServesFunctions()) {
      response->add_services("plugd.v1.Functions");
      *response->add_functions() = EchoInfo();
    }
    response->set_pid(::getpid());
    return grpc::Status::OK;
  }

  grpc::Status Shutdown(grpc::ServerContext*, const plugd::v1::ShutdownRequest*,
                        plugd::v1::ShutdownResponse*) override {
    if (g_mode == "ignore-term") return grpc::Status::OK;  // and stays up
    g_shutdown_called = true;
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
    if (arg == "--strict") g_strict = true;
    if (arg.rfind("--delay-ms=", 0) == 0) {
      absl::SimpleAtoi(arg.substr(11), &g_delay_ms);
    }
    if (arg.rfind("--code=", 0) == 0) absl::SimpleAtoi(arg.substr(7), &g_code);
    if (arg.rfind("--deaths-file=", 0) == 0) g_deaths_file = arg.substr(14);
    if (arg.rfind("--fifo=", 0) == 0) g_fifo = arg.substr(7);
  }
  const char* cookie = std::getenv(plugd::kEnvMagicCookieKey);
  if ((cookie == nullptr ||
       std::strcmp(cookie, plugd::kMagicCookieValue) != 0) &&
      g_mode != "no-cookie-check") {
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

  uint32_t app_version = 1;
  const char* versions = std::getenv(plugd::kEnvProtocolVersions);
  if (versions != nullptr && g_mode != "ignore-versions") {
    absl::StatusOr<std::vector<uint32_t>> host =
        plugd::ParseVersionList(versions);
    absl::StatusOr<uint32_t> v = host.ok()
                                     ? plugd::NegotiateVersion(*host, {1})
                                     : absl::StatusOr<uint32_t>(host.status());
    if (v.ok()) {
      app_version = *v;
    } else if (g_strict) {
      std::fprintf(stderr, "plugd plugin raw: %s\n",
                   std::string(v.status().message()).c_str());
      return 1;
    }
  }
  if (g_strict && g_mode != "ignore-term") {
    // Blocked in every thread (before gRPC starts its own) and taken by
    // sigwait, so the signal never interrupts a gRPC thread.
    static sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGTERM);
    sigaddset(&stop_signals, SIGINT);
    ::pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
    std::thread([] {
      int signo = 0;
      while (::sigwait(&stop_signals, &signo) != 0) {
      }
      g_stop_flood = true;
      if (!g_shutdown.HasBeenNotified()) g_shutdown.Notify();
    }).detach();
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

  HealthService health;
  ControlService control(app_version);
  FunctionsService functions;
  grpc::ServerBuilder builder;
  builder.AddListeningPort(absl::StrCat("unix:", socket),
                           grpc::InsecureServerCredentials());
  builder.RegisterService(&health);
  builder.RegisterService(&control);
  if (ServesFunctions()) {
    builder.RegisterService(&functions);
  }
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
  } else if (g_mode == "setsid-grandchild") {
    pid_t child = ::fork();
    if (child == 0) {
      ::setsid();
      WaitForever();
    }
    WriteAll(STDERR_FILENO, absl::StrCat("grandchild pid ", child, "\n"));
  } else if (g_mode == "stdout-chatter") {
    WriteAll(STDOUT_FILENO,
             absl::StrCat("[INFO] serving on ", socket, "\n",
                          plugd::FormatHandshake(handshake), "\n",
                          "{\"level\":\"warn\",\"msg\":\"json log\"}\n"));
  } else if (g_mode == "stdout-binary") {
    WriteAll(STDOUT_FILENO, std::string("log\x00\x01\xff\xfe binary\n", 15));
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
    using std::string_literals::operator""s;  // keeps the embedded NULs
    std::string garbage;
    for (int i = 0; i < 256; ++i) garbage.push_back(static_cast<char>(i));
    garbage += "\n\xff\xfe\xc3\x28 not utf-8 \x00\x01\x1b[31m\r\n"s;
    garbage += std::string(size_t{100} * 1024, '\x80') + "\n";
    garbage += "{\"level\":\"error\",\"msg\":\x00\xff}\n[ERROR\n\n\n"s;
    WriteAll(STDOUT_FILENO, garbage);
  } else if (g_mode == "burst-then-exit") {
    // Once checked: 3000 numbered lines on each of stdout and stderr (more
    // than the launcher reads at once), then exit at once.
    g_health_checked.WaitForNotification();
    std::string out;
    std::string err;
    for (int i = 0; i < 3000; ++i) {
      absl::StrAppend(&out, "out ", ::getpid(), " ", i, "\n");
      absl::StrAppend(&err, "err ", ::getpid(), " ", i, "\n");
    }
    WriteAll(STDOUT_FILENO, out);
    WriteAll(STDERR_FILENO, err);
    std::_Exit(0);
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
  const auto deadline =
      std::chrono::system_clock::now() + std::chrono::milliseconds(grace_ms);
  if (g_shutdown_called) {
    server->Shutdown(deadline);
  } else {
    // Stopped by a signal, with no call of ours in flight. Shutdown() also
    // waits for every client connection to close after its GOAWAY, which an
    // idle client may take seconds to do: close them (the SDKs do the same
    // once no call is left).
    std::thread stopper([&server, deadline] { server->Shutdown(deadline); });
    grpc_server_cancel_all_calls(server->c_server());
    stopper.join();
  }
  server->Wait();
  return g_mode == "shutdown-exit-3" && g_shutdown_called ? 3 : 0;
}
