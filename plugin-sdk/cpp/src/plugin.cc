#include "plugd/sdk/plugin.h"

#include <errno.h>
#include <fcntl.h>
#include <grpc/grpc.h>
#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/impl/server_builder_option.h>
#include <grpcpp/impl/server_builder_plugin.h>
#include <grpcpp/impl/server_initializer.h>
#include <grpcpp/support/server_interceptor.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <limits>
#include <string>
#include <thread>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "go_plugin_broker.h"
#include "goplugin/grpc_controller.grpc.pb.h"
#include "health_service.h"
#include "plugd/common/allocator.h"
#include "plugd/common/deadlock_detection.h"
#include "plugd/common/log.h"
#include "plugd/common/peer_auth.h"
#include "plugd/common/protocol.h"
#include "plugd/common/status.h"
#include "plugd/v1/plugin.grpc.pb.h"

namespace plugd::sdk {
namespace internal {
namespace {

// The write end of the serving plugin's self-pipe, for the signal handler.
std::atomic<int> g_signal_pipe{-1};

void OnSignal(int signo) {
  const int saved_errno = errno;
  const int fd = g_signal_pipe.load();
  if (fd >= 0) {
    const char byte = static_cast<char>(signo);
    (void)!write(fd, &byte, 1);
  }
  errno = saved_errno;
}

const char* SignalName(int signo) {
  switch (signo) {
    case SIGTERM:
      return "SIGTERM";
    case SIGINT:
      return "SIGINT";
    default:
      return "a signal";
  }
}

// Writes all of `text` to `fd`, unbuffered.
bool WriteAll(int fd, absl::string_view text) {
  while (!text.empty()) {
    const ssize_t n = write(fd, text.data(), text.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    text.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

std::string ExecutablePath() {
  char buffer[4096];
  const ssize_t n = readlink("/proc/self/exe", buffer, sizeof(buffer) - 1);
  if (n <= 0) return "PATH";
  return std::string(buffer, static_cast<size_t>(n));
}

// Reads a positive decimal from the environment; `fallback` when unset.
absl::StatusOr<int64_t> EnvInt(const char* name, int64_t fallback, int64_t min,
                               int64_t max) {
  const char* text = std::getenv(name);
  if (text == nullptr || *text == '\0') return fallback;
  int64_t value = 0;
  if (!absl::SimpleAtoi(text, &value) || value < min || value > max) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, "=\"", text, "\" is not a whole number in [", min,
                     ", ", max, "]"));
  }
  return value;
}

// What a plugin run without a launcher's cookie prints. Started by a
// go-plugin host, it opens with go-plugin's own words ("This binary is a
// plugin"), which plugd's launcher in go-plugin mode also recognises.
std::string CookieRefusal(const PluginInfo& info) {
  const std::string who =
      absl::StrCat("plugd plugin ", info.name, " ", info.version);
  if (std::getenv(plugd::kEnvGoPluginProtocolVersions) != nullptr) {
    // Short lines: launchers quote the last stderr lines, each cut to a
    // couple of hundred bytes.
    std::string text = absl::StrCat(
        "This binary is a plugin (", who,
        "), not meant to be executed directly.\nA go-plugin host started it (",
        plugd::kEnvGoPluginProtocolVersions, " is set) ");
    if (info.go_plugin) {
      absl::StrAppend(
          &text,
          "without the magic cookie it accepts:\nthe host's "
          "plugin.HandshakeConfig must have MagicCookieKey ",
          plugd::QuoteForMessage(info.go_plugin->magic_cookie_key),
          " and MagicCookieValue ",
          plugd::QuoteForMessage(info.go_plugin->magic_cookie_value), ".\n");
    } else {
      absl::StrAppend(&text,
                      "but this plugin accepts no go-plugin magic cookie\n"
                      "(PluginInfo::go_plugin is unset; see "
                      "docs/go-plugin.md).\n");
    }
    return text;
  }
  std::string text = absl::StrCat(
      "This is a plugd plugin (", info.name, " ", info.version,
      "); it is not meant to be run by hand. Run it through a plugd host, "
      "e.g. `calc --plugin ",
      ExecutablePath(), " --list`, or under the plugd broker");
  if (info.go_plugin) {
    absl::StrAppend(&text,
                    ", or from a go-plugin host whose HandshakeConfig has "
                    "MagicCookieKey ",
                    plugd::QuoteForMessage(info.go_plugin->magic_cookie_key),
                    " and MagicCookieValue ",
                    plugd::QuoteForMessage(info.go_plugin->magic_cookie_value));
  }
  absl::StrAppend(&text, ".\n");
  return text;
}

// go-plugin mode: a socket of our own in $TMPDIR (default /tmp), named
// $TMPDIR/plugdXXXXXX, as go-plugin names its $TMPDIR/pluginNNN. The name is
// reserved with mkstemp and the file removed, so that bind can create it.
absl::StatusOr<std::string> PickSocketPath() {
  std::string dir = "/tmp";
  if (const char* tmp = std::getenv("TMPDIR"); tmp != nullptr && *tmp != '\0') {
    dir = tmp;
  }
  while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
  std::string path = absl::StrCat(dir == "/" ? "" : dir, "/plugdXXXXXX");
  if (path.size() > plugd::kMaxSocketPathBytes || path.front() != '/') {
    return absl::InvalidArgumentError(absl::StrCat(
        "cannot pick a socket in TMPDIR=", plugd::QuoteForMessage(dir),
        ": a Unix socket path must be absolute and at most ",
        plugd::kMaxSocketPathBytes,
        " bytes; set TMPDIR to a shorter "
        "directory"));
  }
  const int fd = mkstemp(path.data());
  if (fd < 0) {
    return absl::Status(absl::ErrnoToStatusCode(errno),
                        absl::StrCat("cannot pick a socket in ", dir, ": ",
                                     std::strerror(errno),
                                     " (set TMPDIR to a writable directory)"));
  }
  close(fd);
  unlink(path.c_str());
  return path;
}

// go-plugin mode: the highest version in PLUGIN_PROTOCOL_VERSIONS that the
// plugin speaks. With no list, or none in common, the plugin's lowest
// version, as go-plugin's plugin.Serve does: the host then sees the version
// in the handshake and reports the mismatch itself.
absl::StatusOr<uint32_t> NegotiateGoPluginVersion(
    const std::vector<uint32_t>& plugin_versions) {
  const uint32_t lowest =
      *std::min_element(plugin_versions.begin(), plugin_versions.end());
  const char* env = std::getenv(plugd::kEnvGoPluginProtocolVersions);
  if (env == nullptr || *env == '\0') return lowest;
  absl::StatusOr<std::vector<uint32_t>> host = plugd::ParseVersionList(env);
  if (!host.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(
        plugd::kEnvGoPluginProtocolVersions, ": ", host.status().message()));
  }
  absl::StatusOr<uint32_t> negotiated =
      plugd::NegotiateVersion(*host, plugin_versions);
  if (negotiated.ok()) return *negotiated;
  PLUGD_LOG(WARNING) << negotiated.status().message() << "; announcing version "
                     << lowest << " as go-plugin plugins do, so that the "
                     << "go-plugin host reports the mismatch";
  return lowest;
}

// Who may connect to the plugin: its own effective uid, root, and the
// launcher's uid from PLUGD_LAUNCHER_UID when set (docs/security.md).
absl::StatusOr<plugd::PeerPolicy> ConnectPolicy(const PluginInfo& info) {
  plugd::PeerPolicy policy;
  policy.what = absl::StrCat("plugin ", info.name);
  policy.uids.push_back({geteuid(), "the plugin's own"});
  const char* launcher = std::getenv(plugd::kEnvLauncherUid);
  if (launcher != nullptr && *launcher != '\0') {
    uint32_t uid = 0;
    if (!absl::SimpleAtoi(launcher, &uid) || uid == static_cast<uint32_t>(-1)) {
      return absl::InvalidArgumentError(absl::StrCat(
          plugd::kEnvLauncherUid, "=", plugd::QuoteForMessage(launcher),
          " is not a uid; the launcher must set it to its effective uid "
          "(a decimal number) or leave it unset"));
    }
    if (uid != geteuid()) policy.uids.push_back({uid, "its launcher's"});
  }
  policy.how_to_allow =
      "call it through the plugd broker or host that launched it "
      "(docs/security.md)";
  return policy;
}

// Records the full names of the services a server registered: a
// ServerBuilderPlugin's InitServer runs after the builder registered them
// (our services, the user's and reflection) and before the server starts.
class ServiceListPlugin final : public grpc::ServerBuilderPlugin {
 public:
  using Callback = std::function<void(const std::vector<std::string>&)>;
  explicit ServiceListPlugin(Callback callback)
      : callback_(std::move(callback)) {}
  std::string name() override { return "plugd_service_list"; }
  void InitServer(grpc::ServerInitializer* initializer) override {
    callback_(*initializer->GetServiceList());
  }
  void Finish(grpc::ServerInitializer*) override {}
  void ChangeArguments(const std::string&, void*) override {}

 private:
  Callback callback_;
};

class ServiceListOption final : public grpc::ServerBuilderOption {
 public:
  explicit ServiceListOption(ServiceListPlugin::Callback callback)
      : callback_(std::move(callback)) {}
  void UpdateArguments(grpc::ChannelArguments*) override {}
  void UpdatePlugins(std::vector<std::unique_ptr<grpc::ServerBuilderPlugin>>*
                         plugins) override {
    plugins->push_back(std::make_unique<ServiceListPlugin>(callback_));
  }

 private:
  ServiceListPlugin::Callback callback_;
};

}  // namespace

// The state of a Plugin that its services and the signal handler share.
class PluginRuntime {
 public:
  PluginRuntime() {
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0) {
      std::perror("plugd sdk: pipe2");
      std::abort();
    }
    // A full pipe must not block a signal handler: a wake-up is pending then.
    fcntl(fds[1], F_SETFL, fcntl(fds[1], F_GETFL) | O_NONBLOCK);
    read_fd_ = fds[0];
    write_fd_ = fds[1];
  }
  ~PluginRuntime() {
    close(read_fd_);
    close(write_fd_);
  }

  // Wakes the serving thread to shut down (byte 0: asked through the API).
  void RequestShutdown(std::string reason) {
    {
      absl::MutexLock lock(&mu_);
      if (reason_.empty()) reason_ = std::move(reason);
    }
    const char byte = 0;
    (void)!write(write_fd_, &byte, 1);
  }

  // Blocks until a shutdown request or a signal; returns why.
  std::string WaitForShutdownRequest() {
    char byte = 0;
    while (true) {
      const ssize_t n = read(read_fd_, &byte, 1);
      if (n == 1) break;
      if (n < 0 && errno == EINTR) continue;
      return "the shutdown pipe failed";
    }
    if (byte != 0) return SignalName(byte);
    absl::MutexLock lock(&mu_);
    return reason_.empty() ? "shutdown requested" : reason_;
  }

  int write_fd() const { return write_fd_; }

  // Calls in progress (counted by CallCounter). Every call passes here, so
  // the count is an atomic and the mutex is taken only once someone waits.
  void CallStarted() { active_calls_.fetch_add(1); }
  void CallEnded() {
    if (active_calls_.fetch_sub(1) == 1 && waiting_for_no_calls_.load()) {
      absl::MutexLock lock(&calls_mu_);
      no_calls_.SignalAll();
    }
  }
  // Waits until no call is in progress; false at `deadline`.
  bool WaitForNoCalls(absl::Time deadline) {
    absl::MutexLock lock(&calls_mu_);
    // Sequentially consistent with CallEnded's decrement: either it sees
    // this flag and signals (under calls_mu_, so not before we wait), or
    // we see its count of 0.
    waiting_for_no_calls_.store(true);
    while (active_calls_.load() != 0) {
      if (no_calls_.WaitWithDeadline(&calls_mu_, deadline)) {
        return active_calls_.load() == 0;
      }
    }
    return true;
  }

  HealthService health;
  GoPluginBrokerService go_plugin_broker;
  std::atomic<bool> go_plugin_mode{false};
  std::atomic<bool> shutting_down{false};
  std::atomic<uint32_t> protocol_version{0};
  absl::Mutex mu_;
  std::vector<std::string> services ABSL_GUARDED_BY(mu_);
  bool serving_started ABSL_GUARDED_BY(mu_) = false;

 private:
  int read_fd_ = -1;
  int write_fd_ = -1;
  std::string reason_ ABSL_GUARDED_BY(mu_);
  absl::Mutex calls_mu_;
  absl::CondVar no_calls_;
  std::atomic<int64_t> active_calls_{0};
  std::atomic<bool> waiting_for_no_calls_{false};
};

namespace {

// plugd.v1.Control. Callback API, so that Shutdown can act after its answer
// is sent.
class ControlService final : public plugd::v1::Control::CallbackService {
 public:
  ControlService(const PluginInfo* info, const FunctionRegistry* functions,
                 PluginRuntime* runtime)
      : info_(info), functions_(functions), runtime_(runtime) {}

  grpc::ServerUnaryReactor* Describe(
      grpc::CallbackServerContext* context,
      const plugd::v1::DescribeRequest* request,
      plugd::v1::DescribeResponse* response) override {
    response->set_name(info_->name);
    response->set_version(info_->version);
    response->set_protocol_version(runtime_->protocol_version.load());
    response->set_core_protocol_version(plugd::kCoreProtocolVersion);
    {
      absl::MutexLock lock(&runtime_->mu_);
      for (const std::string& name : runtime_->services) {
        response->add_services(name);
      }
    }
    for (plugd::v1::FunctionInfo& info : functions_->List()) {
      *response->add_functions() = std::move(info);
    }
    response->set_pid(static_cast<int64_t>(getpid()));
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }

  grpc::ServerUnaryReactor* Shutdown(
      grpc::CallbackServerContext* context,
      const plugd::v1::ShutdownRequest* request,
      plugd::v1::ShutdownResponse* response) override {
    std::string reason =
        request->reason().empty()
            ? "Control.Shutdown"
            : absl::StrCat("Control.Shutdown: ", request->reason());
    auto* reactor = new ShutdownReactor(runtime_, std::move(reason));
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }

 private:
  // Answers, then (once the answer is sent or the call is gone) starts the
  // shutdown.
  class ShutdownReactor final : public grpc::ServerUnaryReactor {
   public:
    ShutdownReactor(PluginRuntime* runtime, std::string reason)
        : runtime_(runtime), reason_(std::move(reason)) {}
    void OnDone() override {
      runtime_->RequestShutdown(std::move(reason_));
      delete this;
    }

   private:
    PluginRuntime* runtime_;
    std::string reason_;
  };

  const PluginInfo* info_;
  const FunctionRegistry* functions_;
  PluginRuntime* runtime_;
};

// go-plugin's plugin.GRPCController, served in go-plugin mode: a go-plugin
// host's client.Kill() calls Shutdown, then waits up to 2 s for the plugin
// to exit before it kills it. Answers, then shuts down gracefully.
class GoPluginControllerService final
    : public ::plugin::GRPCController::CallbackService {
 public:
  explicit GoPluginControllerService(PluginRuntime* runtime)
      : runtime_(runtime) {}

  grpc::ServerUnaryReactor* Shutdown(grpc::CallbackServerContext* context,
                                     const ::plugin::Empty* request,
                                     ::plugin::Empty* response) override {
    auto* reactor = new Reactor(runtime_);
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }

 private:
  class Reactor final : public grpc::ServerUnaryReactor {
   public:
    explicit Reactor(PluginRuntime* runtime) : runtime_(runtime) {}
    void OnDone() override {
      runtime_->RequestShutdown("plugin.GRPCController/Shutdown");
      delete this;
    }

   private:
    PluginRuntime* runtime_;
  };

  PluginRuntime* runtime_;
};

// plugd.v1.Functions. Sync API: functions may block, so they run on the
// sync server's thread pool, not on gRPC's callback threads.
class FunctionsService final : public plugd::v1::Functions::Service {
 public:
  explicit FunctionsService(const FunctionRegistry* functions)
      : functions_(functions) {}

  grpc::Status ListFunctions(
      grpc::ServerContext* context,
      const plugd::v1::ListFunctionsRequest* request,
      plugd::v1::ListFunctionsResponse* response) override {
    for (plugd::v1::FunctionInfo& info : functions_->List()) {
      *response->add_functions() = std::move(info);
    }
    return grpc::Status::OK;
  }

  grpc::Status Call(grpc::ServerContext* context,
                    const plugd::v1::CallRequest* request,
                    plugd::v1::CallResponse* response) override {
    absl::StatusOr<google::protobuf::Value> result =
        functions_->Call(request->function(), request->args());
    if (!result.ok()) return plugd::ToGrpcStatus(result.status());
    *response->mutable_result() = *std::move(result);
    return grpc::Status::OK;
  }

 private:
  const FunctionRegistry* functions_;
};

// Counts the calls in progress: one interceptor lives as long as its call.
class CallCounter final : public grpc::experimental::Interceptor {
 public:
  explicit CallCounter(PluginRuntime* runtime) : runtime_(runtime) {
    runtime_->CallStarted();
  }
  ~CallCounter() override { runtime_->CallEnded(); }
  void Intercept(
      grpc::experimental::InterceptorBatchMethods* methods) override {
    methods->Proceed();
  }

 private:
  PluginRuntime* runtime_;
};

class CallCounterFactory final
    : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  explicit CallCounterFactory(PluginRuntime* runtime) : runtime_(runtime) {}
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override {
    return new CallCounter(runtime_);
  }

 private:
  PluginRuntime* runtime_;
};

// Installs SIGTERM and SIGINT handlers writing to `fd`; restores the old
// ones when destroyed.
class SignalHandlers {
 public:
  explicit SignalHandlers(int fd) {
    g_signal_pipe.store(fd);
    struct sigaction action = {};
    action.sa_handler = &OnSignal;
    sigemptyset(&action.sa_mask);
    action.sa_flags = SA_RESTART;
    sigaction(SIGTERM, &action, &old_term_);
    sigaction(SIGINT, &action, &old_int_);
  }
  ~SignalHandlers() {
    sigaction(SIGTERM, &old_term_, nullptr);
    sigaction(SIGINT, &old_int_, nullptr);
    g_signal_pipe.store(-1);
  }

 private:
  struct sigaction old_term_ = {};
  struct sigaction old_int_ = {};
};

}  // namespace
}  // namespace internal

Plugin::Plugin(PluginInfo info)
    : info_(std::move(info)),
      functions_(info_.name),
      runtime_(std::make_unique<internal::PluginRuntime>()) {}

Plugin::~Plugin() = default;

Plugin& Plugin::AddFunction(Function function) {
  absl::Status status = functions_.Add(std::move(function));
  if (!status.ok() && config_error_.ok()) config_error_ = status;
  return *this;
}

Plugin& Plugin::AddService(grpc::Service* service) {
  services_.push_back(service);
  return *this;
}

Plugin& Plugin::OnStart(std::function<absl::Status()> hook) {
  start_hooks_.push_back(std::move(hook));
  return *this;
}

Plugin& Plugin::OnShutdown(std::function<void()> hook) {
  shutdown_hooks_.push_back(std::move(hook));
  return *this;
}

void Plugin::Shutdown() { runtime_->RequestShutdown("Plugin::Shutdown()"); }

void Plugin::SetServing(bool serving) { runtime_->health.SetServing(serving); }

bool Plugin::shutting_down() const { return runtime_->shutting_down.load(); }

uint32_t Plugin::protocol_version() const {
  return runtime_->protocol_version.load();
}

bool Plugin::go_plugin_mode() const { return runtime_->go_plugin_mode.load(); }

int Plugin::Serve() {
  // Errors before the handshake go to stderr as plain lines: the launcher
  // shows them to whoever started the plugin.
  auto fail = [this](absl::string_view message) {
    const std::string line =
        absl::StrCat("plugd plugin ", info_.name, ": ", message, "\n");
    internal::WriteAll(2, line);
    return kExitError;
  };

  if (info_.go_plugin &&
      (info_.go_plugin->magic_cookie_key.empty() ||
       info_.go_plugin->magic_cookie_key.find('=') != std::string::npos ||
       info_.go_plugin->magic_cookie_value.empty())) {
    return fail(
        "PluginInfo.go_plugin needs the application's magic cookie: a "
        "magic_cookie_key (without '=') and a magic_cookie_value");
  }
  const char* cookie = std::getenv(plugd::kEnvMagicCookieKey);
  const bool plugd_mode = cookie != nullptr &&
                          absl::string_view(cookie) == plugd::kMagicCookieValue;
  bool go_plugin_mode = false;
  if (!plugd_mode && info_.go_plugin) {
    const char* go_cookie =
        std::getenv(info_.go_plugin->magic_cookie_key.c_str());
    go_plugin_mode =
        go_cookie != nullptr &&
        absl::string_view(go_cookie) == info_.go_plugin->magic_cookie_value;
  }
  if (!plugd_mode && !go_plugin_mode) {
    internal::WriteAll(2, internal::CookieRefusal(info_));
    return kExitError;
  }
  runtime_->go_plugin_mode.store(go_plugin_mode);

  plugd::log::RouteGrpcLogs();
  // Under a launcher, stderr lines are stamped with the time and the
  // plugin's name by the host or broker that reads them: write just
  // "[LEVEL] message", whose level the launcher recognises.
  plugd::log::SetSink([](const plugd::log::Record& record) {
    std::string line =
        absl::StrCat("[", plugd::log::LevelName(record.level), "] ");
    if (record.source != "plugd") absl::StrAppend(&line, record.source, ": ");
    absl::StrAppend(&line, record.message, "\n");
    internal::WriteAll(2, line);
  });
  // Deliberately unbalanced: when the last gRPC object goes away, gRPC 1.51's
  // grpc_shutdown() joins an executor thread that may sit in a poll for up to
  // 10 s, which would delay the plugin's exit after a clean shutdown. Keeping
  // one reference lets the process exit at once; the OS frees the rest.
  grpc_init();

  {
    absl::MutexLock lock(&runtime_->mu_);
    if (runtime_->serving_started) return fail("Serve() called twice");
    runtime_->serving_started = true;
  }
  if (info_.name.empty() || info_.version.empty()) {
    return fail("PluginInfo needs a name and a version");
  }
  if (info_.protocol_versions.empty()) {
    return fail("PluginInfo.protocol_versions is empty");
  }
  if (!config_error_.ok()) return fail(config_error_.message());

  // The launch environment.
  const char* socket_env = std::getenv(plugd::kEnvSocket);
  std::string socket_path;
  if (socket_env != nullptr && *socket_env != '\0') {
    socket_path = socket_env;
    if (absl::Status s = plugd::ValidateSocketPath(socket_path); !s.ok()) {
      return fail(absl::StrCat(plugd::kEnvSocket, ": ", s.message()));
    }
  } else if (go_plugin_mode) {
    // A go-plugin host names no address: pick one, as go-plugin does.
    absl::StatusOr<std::string> picked = internal::PickSocketPath();
    if (!picked.ok()) return fail(picked.status().message());
    socket_path = *std::move(picked);
  } else {
    return fail(absl::StrCat(plugd::kEnvSocket,
                             " is not set: the launcher must name the Unix "
                             "socket to listen on"));
  }

  uint32_t version = 0;
  if (go_plugin_mode) {
    absl::StatusOr<uint32_t> negotiated =
        internal::NegotiateGoPluginVersion(info_.protocol_versions);
    if (!negotiated.ok()) return fail(negotiated.status().message());
    version = *negotiated;
  } else {
    // No list from the host means version 1 (docs/protocol.md, 1.2).
    const char* versions_env = std::getenv(plugd::kEnvProtocolVersions);
    absl::StatusOr<std::vector<uint32_t>> host_versions =
        versions_env == nullptr || *versions_env == '\0'
            ? std::vector<uint32_t>{1}
            : plugd::ParseVersionList(versions_env);
    if (!host_versions.ok()) {
      return fail(absl::StrCat(plugd::kEnvProtocolVersions, ": ",
                               host_versions.status().message()));
    }
    absl::StatusOr<uint32_t> negotiated =
        plugd::NegotiateVersion(*host_versions, info_.protocol_versions);
    if (!negotiated.ok()) return fail(negotiated.status().message());
    version = *negotiated;
  }
  runtime_->protocol_version.store(version);

  absl::StatusOr<int64_t> max_message = internal::EnvInt(
      plugd::kEnvMaxMessageBytes, plugd::kDefaultMaxMessageBytes, 1,
      std::numeric_limits<int>::max());
  if (!max_message.ok()) return fail(max_message.status().message());
  if (info_.tune_allocator) {
    const plugd::AllocatorTuning tuning = plugd::TuneAllocator(*max_message);
    PLUGD_LOG(DEBUG) << tuning.description;
  }
  // Before gRPC's threads start: the mode is a process-wide setting.
  plugd::SetMutexDeadlockDetection(info_.mutex_deadlock_detection);
  absl::StatusOr<int64_t> grace_ms = internal::EnvInt(
      plugd::kEnvShutdownGraceMs, 5000, 0, int64_t{24} * 3600 * 1000);
  if (!grace_ms.ok()) return fail(grace_ms.status().message());

  absl::StatusOr<plugd::PeerPolicy> policy = internal::ConnectPolicy(info_);
  if (!policy.ok()) return fail(policy.status().message());

  for (auto& hook : start_hooks_) {
    absl::Status status;
    try {
      status = hook();
    } catch (const std::exception& e) {
      status = absl::InternalError(
          absl::StrCat("start hook threw an exception: ", e.what()));
    }
    if (!status.ok()) return fail(status.message());
  }

  // Signals from here on wake the serving thread; one that arrives before
  // the server is up is handled right after it starts.
  internal::SignalHandlers signal_handlers(runtime_->write_fd());

  // The launcher removed any old socket; be tolerant of one left behind.
  struct stat st;
  if (lstat(socket_path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode)) {
    unlink(socket_path.c_str());
  }

  internal::ControlService control(&info_, &functions_, runtime_.get());
  internal::FunctionsService functions_service(&functions_);
  internal::GoPluginControllerService go_plugin_controller(runtime_.get());

  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  // The plugin owns the listening socket: every connection's peer uid is
  // checked before gRPC gets it (docs/security.md).
  absl::StatusOr<std::unique_ptr<plugd::PeerCheckedListener>> listening =
      plugd::PeerCheckedListener::Listen(socket_path, *std::move(policy), 0600);
  if (!listening.ok()) {
    return fail(absl::StrCat("could not serve on unix:", socket_path, ": ",
                             listening.status().message()));
  }
  std::unique_ptr<plugd::PeerCheckedListener> listener = *std::move(listening);
  grpc::ServerBuilder builder;
  builder.SetMaxReceiveMessageSize(static_cast<int>(*max_message));
  builder.SetMaxSendMessageSize(static_cast<int>(*max_message));
  builder.RegisterService(&runtime_->health);
  builder.RegisterService(&control);
  if (!functions_.empty()) builder.RegisterService(&functions_service);
  if (go_plugin_mode) {
    builder.RegisterService(&go_plugin_controller);
    builder.RegisterService(&runtime_->go_plugin_broker);
  }
  for (grpc::Service* service : services_) builder.RegisterService(service);
  internal::PluginRuntime* runtime = runtime_.get();
  builder.SetOption(std::make_unique<internal::ServiceListOption>(
      [runtime](const std::vector<std::string>& names) {
        runtime->health.AddNames(names);
        absl::MutexLock lock(&runtime->mu_);
        runtime->services = names;
      }));
  std::vector<
      std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>>
      interceptors;
  interceptors.push_back(
      std::make_unique<internal::CallCounterFactory>(runtime_.get()));
  builder.experimental().SetInterceptorCreators(std::move(interceptors));
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr) {
    listener.reset();
    unlink(socket_path.c_str());
    return fail(absl::StrCat("could not serve on unix:", socket_path,
                             " (is every service registered only once?)"));
  }
  if (absl::Status started = listener->Start(server.get()); !started.ok()) {
    listener.reset();
    server->Shutdown();
    server->Wait();
    unlink(socket_path.c_str());
    return fail(started.message());
  }

  const std::string handshake =
      plugd::FormatHandshake({plugd::kCoreProtocolVersion, version, "unix",
                              socket_path, "grpc", ""}) +
      "\n";
  if (!internal::WriteAll(1, handshake)) {
    PLUGD_LOG(ERROR) << "could not write the handshake to stdout: "
                     << std::strerror(errno);
  }
  PLUGD_LOG(INFO) << info_.name << " " << info_.version
                  << " serving on unix:" << socket_path << " (protocol "
                  << version << (go_plugin_mode ? ", go-plugin mode" : "")
                  << ")";

  const std::string reason = runtime_->WaitForShutdownRequest();
  PLUGD_LOG(INFO) << info_.name << " shutting down (" << reason << "), grace "
                  << *grace_ms << " ms";
  runtime_->shutting_down.store(true);
  runtime_->health.Shutdown();
  runtime_->go_plugin_broker.Shutdown();
  for (auto& hook : shutdown_hooks_) {
    try {
      hook();
    } catch (const std::exception& e) {
      PLUGD_LOG(ERROR) << "shutdown hook threw an exception: " << e.what();
    }
  }
  // Server::Shutdown stops accepting calls, lets those in flight finish and
  // cancels them at the deadline. It also waits for every client connection
  // to close after its GOAWAY, which an idle gRPC client may take seconds to
  // acknowledge (it reads an idle connection only on its backup poll), so
  // once no call is left we close the connections ourselves.
  listener->Stop();  // no new connections for a server shutting down
  const absl::Time deadline = absl::Now() + absl::Milliseconds(*grace_ms);
  std::thread stopper(
      [&server, deadline] { server->Shutdown(absl::ToChronoTime(deadline)); });
  if (runtime_->WaitForNoCalls(deadline)) {
    grpc_server_cancel_all_calls(server->c_server());
  }
  stopper.join();
  server->Wait();
  if (lstat(socket_path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode)) {
    unlink(socket_path.c_str());
  }
  PLUGD_LOG(INFO) << info_.name << " stopped";
  return kExitOk;
}

}  // namespace plugd::sdk
