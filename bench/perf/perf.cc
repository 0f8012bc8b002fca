// plugd-perf: a small, private measuring program for plugd's performance
// work (bench/perf/README.md); the benchmark suite proper is plugd-bench.
//
//   plugd-perf --target plugd|bare|raw --mode latency|throughput|coldstart
//              [--payload BYTES] [--calls N] [--inflight K]
//              [--plugin-arg ARG]... [--no-tune-allocator]
//              [--supervised always|while-unstable]
//              [--client blocking|callback]
//
// Targets: plugd = plugd-perf-echo launched through the host library, called
// through echo.v1 stubs on Plugin::channel(); bare = perf-bare-echo, a bare
// gRPC server, called on a channel with the host library's channel
// arguments but no interceptor; raw = a forked child echoing length-framed
// payloads on a Unix socketpair (the floor; latency only).
// Throughput: --client blocking (the default) keeps K threads making
// blocking calls, as bench-goplugin-host keeps K goroutines; --client
// callback keeps K callback-API calls in flight from one thread, as
// plugd-bench's scenario 2 does.
// Prints one JSON object, like bench-goplugin-host.
#include <fcntl.h>
#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "callback_throughput.h"
#include "echo/v1/echo.grpc.pb.h"
#include "perf_args.h"
#include "plugd/common/channel.h"
#include "plugd/host/host.h"

namespace {

using Clock = std::chrono::steady_clock;

struct Options {
  std::string target = "plugd";
  std::string mode = "latency";
  int payload = 64;
  int calls = 2000;
  int inflight = 8;
  std::vector<std::string> plugin_args;
  bool tune_allocator = true;
  // "": an unsupervised launch; "always" / "while-unstable": supervised,
  // with that RetryMode (the typed call of plugd-bench's scenarios).
  std::string retry_mode;
  std::string client = "blocking";  // throughput: blocking | callback
};

[[noreturn]] void Die(const std::string& message) {
  std::fprintf(stderr, "plugd-perf: %s\n", message.c_str());
  std::exit(1);
}

std::string BinDir() {
  char buffer[4096];
  ssize_t n = readlink("/proc/self/exe", buffer, sizeof(buffer) - 1);
  if (n <= 0) Die("cannot read /proc/self/exe");
  std::string path(buffer, n);
  return path.substr(0, path.rfind('/'));
}

double Percentile(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  size_t rank =
      static_cast<size_t>(p / 100 * static_cast<double>(v.size()) + 0.999999);
  return v[std::min(v.size() - 1, rank == 0 ? 0 : rank - 1)];
}

double Micros(Clock::duration d) {
  return std::chrono::duration<double, std::micro>(d).count();
}

// A started echo server of one target and a stub on it.
class Server {
 public:
  virtual ~Server() = default;
  virtual echo::v1::Echo::Stub* stub() = 0;
};

class PlugdServer final : public Server {
 public:
  PlugdServer(plugd::host::Host* host, const Options& o, int n) {
    plugd::host::PluginOptions options;
    options.name = "echo" + std::to_string(n);
    options.command = {BinDir() + "/plugd-perf-echo"};
    for (const auto& arg : o.plugin_args) options.command.push_back(arg);
    if (!o.retry_mode.empty()) {
      options.supervision = plugd::host::SupervisionOptions();
      options.retry_mode = o.retry_mode == "always"
                               ? plugd::host::RetryMode::kAlways
                               : plugd::host::RetryMode::kWhileUnstable;
    }
    auto plugin = host->Launch(options);
    if (!plugin.ok()) Die(plugin.status().ToString());
    plugin_ = *plugin;
    stub_ = echo::v1::Echo::NewStub(plugin_->channel());
  }
  ~PlugdServer() override {
    stub_.reset();
    plugin_->Stop().IgnoreError();
  }
  echo::v1::Echo::Stub* stub() override { return stub_.get(); }

 private:
  std::shared_ptr<plugd::host::Plugin> plugin_;
  std::unique_ptr<echo::v1::Echo::Stub> stub_;
};

class BareServer final : public Server {
 public:
  explicit BareServer(int n) {
    socket_ = "/tmp/plugd-perf-" + std::to_string(getpid()) + "-" +
              std::to_string(n) + ".sock";
    int in[2], out[2];
    if (pipe2(in, O_CLOEXEC) != 0 || pipe2(out, O_CLOEXEC) != 0) Die("pipe");
    const std::string exe = BinDir() + "/perf-bare-echo";
    pid_ = fork();
    if (pid_ == 0) {
      dup2(in[0], 0);
      dup2(out[1], 1);
      execl(exe.c_str(), exe.c_str(), socket_.c_str(), nullptr);
      _exit(127);
    }
    close(in[0]);
    close(out[1]);
    stdin_ = in[1];
    char line[16] = {};
    ssize_t got = 0;
    while (got < 6) {
      ssize_t r = read(out[0], line + got, 6 - got);
      if (r <= 0) Die("perf-bare-echo did not start");
      got += r;
    }
    close(out[0]);
    grpc::ChannelArguments args;
    args.SetMaxReceiveMessageSize(64 << 20);
    args.SetMaxSendMessageSize(64 << 20);
    plugd::SetLocalReconnectArguments(&args);
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    plugd::perf::ForEachPerfArg(
        [&](const std::string& name, int value) { args.SetInt(name, value); });
    stub_ = echo::v1::Echo::NewStub(grpc::CreateCustomChannel(
        "unix:" + socket_, grpc::InsecureChannelCredentials(), args));
  }
  ~BareServer() override {
    stub_.reset();
    close(stdin_);
    int status;
    waitpid(pid_, &status, 0);
  }
  echo::v1::Echo::Stub* stub() override { return stub_.get(); }

 private:
  std::string socket_;
  pid_t pid_ = -1;
  int stdin_ = -1;
  std::unique_ptr<echo::v1::Echo::Stub> stub_;
};

void Call(echo::v1::Echo::Stub* stub, const echo::v1::EchoRequest& request) {
  grpc::ClientContext context;
  echo::v1::EchoResponse response;
  grpc::Status status = stub->Echo(&context, request, &response);
  if (!status.ok()) Die("Echo: " + status.error_message());
  if (response.payload().size() != request.payload().size()) {
    Die("Echo returned a different payload");
  }
}

std::unique_ptr<Server> Start(plugd::host::Host* host, const Options& o,
                              int n) {
  if (o.target == "plugd") return std::make_unique<PlugdServer>(host, o, n);
  return std::make_unique<BareServer>(n);
}

int Warmup(int calls) { return std::clamp(calls / 10, 10, 1000); }

// The raw floor: a forked child echoes [u32 length][payload] frames.
void RawLatency(const Options& o) {
  int fds[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) {
    Die("socketpair");
  }
  auto read_all = [](int fd, char* p, size_t n) {
    while (n > 0) {
      ssize_t r = read(fd, p, n);
      if (r <= 0) return false;
      p += r;
      n -= r;
    }
    return true;
  };
  auto write_all = [](int fd, const char* p, size_t n) {
    while (n > 0) {
      ssize_t w = write(fd, p, n);
      if (w <= 0) return false;
      p += w;
      n -= w;
    }
    return true;
  };
  pid_t pid = fork();
  if (pid == 0) {
    close(fds[0]);
    std::vector<char> buffer;
    uint32_t n;
    while (read_all(fds[1], reinterpret_cast<char*>(&n), 4)) {
      buffer.resize(n);
      if (!read_all(fds[1], buffer.data(), n)) break;
      if (!write_all(fds[1], reinterpret_cast<char*>(&n), 4) ||
          !write_all(fds[1], buffer.data(), n)) {
        break;
      }
    }
    _exit(0);
  }
  close(fds[1]);
  std::vector<char> out(o.payload, 'x'), in(o.payload);
  const uint32_t n = o.payload;
  std::vector<double> times;
  for (int i = -Warmup(o.calls); i < o.calls; ++i) {
    auto t0 = Clock::now();
    uint32_t back;
    if (!write_all(fds[0], reinterpret_cast<const char*>(&n), 4) ||
        !write_all(fds[0], out.data(), n) ||
        !read_all(fds[0], reinterpret_cast<char*>(&back), 4) ||
        !read_all(fds[0], in.data(), back)) {
      Die("raw echo failed");
    }
    if (i >= 0) times.push_back(Micros(Clock::now() - t0));
  }
  close(fds[0]);
  waitpid(pid, nullptr, 0);
  std::printf("{\"p50_us\":%.1f,\"p99_us\":%.1f}\n", Percentile(times, 50),
              Percentile(times, 99));
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) Die(a + " needs a value");
      return argv[++i];
    };
    if (a == "--target") {
      o.target = value();
    } else if (a == "--mode") {
      o.mode = value();
    } else if (a == "--payload") {
      o.payload = std::stoi(value());
    } else if (a == "--calls") {
      o.calls = std::stoi(value());
    } else if (a == "--inflight") {
      o.inflight = std::stoi(value());
    } else if (a == "--plugin-arg") {
      o.plugin_args.push_back(value());
    } else if (a == "--no-tune-allocator") {
      o.tune_allocator = false;
    } else if (a == "--client") {
      o.client = value();
      if (o.client != "blocking" && o.client != "callback") {
        Die("--client must be blocking or callback");
      }
    } else if (a == "--supervised") {
      o.retry_mode = value();
      if (o.retry_mode != "always" && o.retry_mode != "while-unstable") {
        Die("--supervised must be always or while-unstable");
      }
    } else {
      Die("unknown argument " + a);
    }
  }
  if (o.target != "plugd" && o.target != "bare" && o.target != "raw") {
    Die("--target must be plugd, bare or raw");
  }
  if (!o.retry_mode.empty() && o.target != "plugd") {
    Die("--supervised is for --target plugd only");
  }
  if (o.target == "raw") {
    RawLatency(o);
    return 0;
  }
  plugd::host::HostOptions host_options;
  host_options.tune_allocator = o.tune_allocator;
  auto host = plugd::host::Host::Create(host_options);
  if (!host.ok()) Die(host.status().ToString());
  echo::v1::EchoRequest request;
  request.set_payload(std::string(o.payload, 'x'));

  if (o.mode == "coldstart") {
    std::vector<double> times;
    for (int i = 0; i < o.calls; ++i) {
      auto t0 = Clock::now();
      std::unique_ptr<Server> server = Start(host->get(), o, i);
      Call(server->stub(), request);
      times.push_back(Micros(Clock::now() - t0) / 1000);
    }
    std::printf("{\"cold_start_ms\":%.2f,\"min_ms\":%.2f}\n",
                Percentile(times, 50), Percentile(times, 0));
    return 0;
  }
  std::unique_ptr<Server> server = Start(host->get(), o, 0);
  for (int i = 0; i < Warmup(o.calls); ++i) Call(server->stub(), request);
  if (o.mode == "latency") {
    std::vector<double> times;
    for (int i = 0; i < o.calls; ++i) {
      auto t0 = Clock::now();
      Call(server->stub(), request);
      times.push_back(Micros(Clock::now() - t0));
    }
    std::printf("{\"p50_us\":%.1f,\"p99_us\":%.1f}\n", Percentile(times, 50),
                Percentile(times, 99));
  } else if (o.mode == "throughput" && o.client == "callback") {
    std::string error;
    const double rate = plugd::bench::CallbackThroughput(
        server->stub(), request, o.inflight, o.calls, &error);
    if (rate == 0) Die("Echo: " + error);
    std::printf("{\"calls_per_s\":%.0f}\n", rate);
  } else if (o.mode == "throughput") {
    std::atomic<int> next{0};
    std::vector<std::thread> threads;
    threads.reserve(o.inflight);
    auto t0 = Clock::now();
    for (int k = 0; k < o.inflight; ++k) {
      threads.emplace_back([&] {
        while (next.fetch_add(1) < o.calls) Call(server->stub(), request);
      });
    }
    for (auto& t : threads) t.join();
    double seconds = Micros(Clock::now() - t0) / 1e6;
    std::printf("{\"calls_per_s\":%.0f}\n", o.calls / seconds);
  } else {
    Die("--mode must be latency, throughput or coldstart");
  }
  return 0;
}
