#include "plugd/host/host.h"

#include <google/protobuf/descriptor.h>
#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/support/channel_arguments.h>
#include <grpcpp/support/client_interceptor.h>

#include <algorithm>
#include <atomic>
#include <functional>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/blocking_counter.h"
#include "event_watch.h"
#include "idempotent_retry.h"
#include "plugd/broker/socket.h"
#include "plugd/common/allocator.h"
#include "plugd/common/channel.h"
#include "plugd/common/deadlock_detection.h"
#include "plugd/common/log.h"
#include "plugd/common/poll_strategy.h"
#include "plugd/common/status.h"
#include "plugd/common/value.h"
#include "plugd/v1/plugin.grpc.pb.h"

namespace plugd::host {
namespace {

using grpc::experimental::ClientInterceptorFactoryInterface;
using grpc::experimental::ClientRpcInfo;
using grpc::experimental::InterceptionHookPoints;
using grpc::experimental::Interceptor;
using grpc::experimental::InterceptorBatchMethods;

// How long a failed call waits for the plugin's exit to be noticed before it
// words its error: the socket closes a moment before the process is reaped.
constexpr absl::Duration kExitNoticeWait = absl::Milliseconds(200);

std::string ProcessStateText(const std::string& name,
                             broker::PluginProcess& process) {
  std::string text =
      absl::StrCat("plugin ", name, " (pid ", process.pid(), ")");
  if (std::optional<ExitStatus> exit = process.exit_status()) {
    absl::StrAppend(&text, " ", exit->ToString());
  }
  return text;
}

std::string SupervisedStateText(const std::string& name,
                                const absl::StatusOr<v1::PluginStatus>& s) {
  if (!s.ok()) return absl::StrCat("plugin ", name, ": ", s.status().message());
  std::string text = absl::StrCat("plugin ", name);
  if (s->pid() > 0) absl::StrAppend(&text, " (pid ", s->pid(), ")");
  absl::StrAppend(&text, " is ", broker::StateName(s->state()));
  if (s->has_last_exit()) {
    absl::StrAppend(&text, "; its last process ", s->last_exit().text());
  }
  return text;
}

// What PluginStatusInterceptor needs to word an error: one per channel, owned
// by the interceptor factory (which the channel keeps as long as any call).
struct PluginStatusContext {
  std::string name;
  std::function<std::string()> state_text;
};

// Rewrites failed calls' statuses so they say which plugin and why:
//   UNAVAILABLE        -> names the plugin, its pid and how it exited;
//   RESOURCE_EXHAUSTED -> for the message-size limit, names the option.
// Created for every call, so it holds only a pointer: no copy, no
// allocation beyond gRPC's own.
class PluginStatusInterceptor : public Interceptor {
 public:
  explicit PluginStatusInterceptor(const PluginStatusContext* context)
      : context_(context) {}

  void Intercept(InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(
            InterceptionHookPoints::POST_RECV_STATUS)) {
      Rewrite(methods->GetRecvStatus());
    }
    methods->Proceed();
  }

 private:
  void Rewrite(grpc::Status* status) {
    if (status == nullptr || status->ok()) return;
    const std::string prefix = absl::StrCat("plugin ", context_->name);
    if (status->error_code() == grpc::StatusCode::UNAVAILABLE) {
      // A supervisor's tombstone already says which plugin and why.
      if (absl::StartsWith(status->error_message(), prefix)) return;
      *status = grpc::Status(
          grpc::StatusCode::UNAVAILABLE,
          absl::StrCat(context_->state_text(),
                       "; the call failed: ", status->error_message()));
    } else if (status->error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED &&
               absl::StrContains(status->error_message(), "larger than max")) {
      *status = grpc::Status(
          grpc::StatusCode::RESOURCE_EXHAUSTED,
          absl::StrCat(prefix, ": ", status->error_message(),
                       "; the limit is set by PluginOptions::max_message_bytes "
                       "(PLUGD_MAX_MESSAGE_BYTES in the plugin)"));
    }
  }

  const PluginStatusContext* const context_;
};

class PluginStatusInterceptorFactory
    : public ClientInterceptorFactoryInterface {
 public:
  PluginStatusInterceptorFactory(std::string name,
                                 std::function<std::string()> state_text)
      : context_{std::move(name), std::move(state_text)} {}

  Interceptor* CreateClientInterceptor(ClientRpcInfo* info) override {
    // The launcher's own calls on this channel (its connect check, the
    // shutdown calls of Stop) report their failures themselves; rewriting
    // them would name the plugin twice, or wait on a gRPC thread for the
    // exit the launcher is bringing about. The application's calls of the
    // same methods are rewritten like any other.
    if (broker::IsLauncherCall(info->client_context())) return nullptr;
    return new PluginStatusInterceptor(&context_);
  }

 private:
  const PluginStatusContext context_;
};

// "1.5s" for a service config.
std::string JsonDuration(absl::Duration d) {
  return absl::StrCat(absl::ToDoubleSeconds(d), "s");
}

// The methods of `services` (full names) that their protos mark idempotent or
// free of side effects, plus `extra` ("pkg.Service/Method" or with a leading
// "/"), grouped by service.
std::map<std::string, std::set<std::string>> IdempotentMethods(
    const std::vector<std::string>& services,
    const std::vector<std::string>& extra) {
  std::map<std::string, std::set<std::string>> out;
  const google::protobuf::DescriptorPool* pool =
      google::protobuf::DescriptorPool::generated_pool();
  for (const std::string& name : services) {
    const google::protobuf::ServiceDescriptor* service =
        pool->FindServiceByName(name);
    if (service == nullptr) continue;  // no stubs for it in this host
    for (int i = 0; i < service->method_count(); ++i) {
      const google::protobuf::MethodDescriptor* m = service->method(i);
      if (m->options().idempotency_level() !=
          google::protobuf::MethodOptions::IDEMPOTENCY_UNKNOWN) {
        out[name].insert(m->name());
      }
    }
  }
  for (absl::string_view method : extra) {
    absl::ConsumePrefix(&method, "/");
    std::pair<std::string, std::string> parts =
        absl::StrSplit(method, absl::MaxSplits('/', 1));
    if (!parts.first.empty() && !parts.second.empty()) {
      out[parts.first].insert(parts.second);
    }
  }
  return out;
}

// The service config of a supervised plugin's channel: every call waits for
// the plugin (it may be restarting) up to `timeout`; idempotent methods are
// retried when the plugin dies under them.
std::string ServiceConfig(
    const std::map<std::string, std::set<std::string>>& idempotent,
    absl::Duration timeout) {
  std::string config = absl::StrCat(
      R"({"methodConfig":[{"name":[{}],"waitForReady":true,"timeout":")",
      JsonDuration(timeout), R"("})");
  std::vector<std::string> names;
  for (const auto& [service, methods] : idempotent) {
    for (const auto& method : methods) {
      names.push_back(absl::StrCat(R"({"service":")", service,
                                   R"(","method":")", method, R"("})"));
    }
  }
  if (!names.empty()) {
    absl::StrAppend(
        &config, R"(,{"name":[)", absl::StrJoin(names, ","),
        R"(],"waitForReady":true,"timeout":")", JsonDuration(timeout),
        R"(","retryPolicy":{"maxAttempts":5,"initialBackoff":"0.01s",)",
        R"("maxBackoff":"0.1s","backoffMultiplier":2,)",
        R"("retryableStatusCodes":["UNAVAILABLE"]}})");
  }
  absl::StrAppend(&config, "]}");
  return config;
}

// "/service/method" paths of `idempotent` (as gRPC names them).
std::set<std::string> MethodPaths(
    const std::map<std::string, std::set<std::string>>& idempotent) {
  std::set<std::string> paths;
  for (const auto& [service, methods] : idempotent) {
    for (const auto& method : methods) {
      paths.insert(absl::StrCat("/", service, "/", method));
    }
  }
  return paths;
}

// A channel to plugin `name` at `target`. With a service config, the
// `idempotent` methods are also retried past gRPC's 5 attempts, within
// `call_timeout`, by an IdempotentRetryInterceptorFactory
// (idempotent_retry.h): while `retry_window` is open, or always without one.
std::shared_ptr<grpc::Channel> MakeChannel(
    const std::string& name, const std::string& target,
    int64_t max_message_bytes, std::function<std::string()> state_text,
    const std::string& service_config,
    const std::map<std::string, std::set<std::string>>& idempotent = {},
    absl::Duration call_timeout = absl::ZeroDuration(),
    std::shared_ptr<const RetryWindow> retry_window = nullptr,
    std::shared_ptr<const CrashCount> crashes = nullptr) {
  grpc::ChannelArguments args;
  const int limit = static_cast<int>(
      std::min<int64_t>(max_message_bytes, std::numeric_limits<int>::max()));
  args.SetMaxReceiveMessageSize(limit);
  args.SetMaxSendMessageSize(limit);
  // A local socket: reconnect fast after a plugin restart.
  SetLocalReconnectArguments(&args);
  // Each plugin gets its own connection, never shared with another channel.
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  if (!service_config.empty()) {
    args.SetServiceConfigJSON(service_config);
    args.SetInt(GRPC_ARG_ENABLE_RETRIES, 1);
  }
  std::vector<std::unique_ptr<ClientInterceptorFactoryInterface>> factories;
  factories.push_back(std::make_unique<PluginStatusInterceptorFactory>(
      name, std::move(state_text)));
  if (!service_config.empty() && !idempotent.empty()) {
    // Last: its rounds go straight to gRPC (and its retry policy). gRPC 1.51
    // starts a hijacking interceptor's rounds at the *factory* after its
    // *created* index, so the status factory above must create an
    // interceptor for every call this one may take: it skips only the
    // launcher's own calls, which go over channels without this factory
    // (unsupervised launches; the supervisor has channels of its own).
    factories.push_back(std::make_unique<IdempotentRetryInterceptorFactory>(
        name, MethodPaths(idempotent), call_timeout, std::move(retry_window),
        std::move(crashes)));
  }
  return grpc::experimental::CreateCustomChannelWithInterceptors(
      target, grpc::InsecureChannelCredentials(), args, std::move(factories));
}

void SetDeadline(grpc::ClientContext* context, absl::Duration timeout) {
  context->set_deadline(absl::ToChronoTime(absl::Now() + timeout));
}

// The services a plugin serves (Control/Describe), waiting for it if needed.
// First on `open` if given (a supervisor's connection to the running
// instance: no connection set up for one question), without waiting for
// it: should that instance be dying, its address may not come back (a
// run_as plugin's is the instance's own). Otherwise, or if that fails, on
// a channel of its own to `target`, waiting up to `timeout` for the plugin.
std::vector<std::string> ServicesOf(
    const std::string& target, absl::Duration timeout,
    const std::shared_ptr<grpc::Channel>& open = nullptr) {
  v1::DescribeResponse response;
  if (open != nullptr) {
    grpc::ClientContext context;
    SetDeadline(&context, std::min(timeout, absl::Seconds(2)));
    if (v1::Control::NewStub(open)
            ->Describe(&context, v1::DescribeRequest(), &response)
            .ok()) {
      return {response.services().begin(), response.services().end()};
    }
  }
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  auto channel = grpc::CreateCustomChannel(
      target, grpc::InsecureChannelCredentials(), args);
  grpc::ClientContext context;
  context.set_wait_for_ready(true);
  SetDeadline(&context, timeout);
  grpc::Status status = v1::Control::NewStub(channel)->Describe(
      &context, v1::DescribeRequest(), &response);
  if (!status.ok()) {
    // UNIMPLEMENTED: no plugd.v1.Control (a go-plugin plugin), nothing to say.
    if (status.error_code() != grpc::StatusCode::UNIMPLEMENTED) {
      PLUGD_LOG(WARNING) << "cannot ask " << target
                         << " which services it serves ("
                         << status.error_message()
                         << "); of its methods only those of plugd.v1.Control "
                            "and plugd.v1.Functions and "
                            "PluginOptions::idempotent_methods are retried";
    }
    return {v1::Control::service_full_name(),
            v1::Functions::service_full_name()};
  }
  return {response.services().begin(), response.services().end()};
}

absl::Status BrokerError(const grpc::Status& status,
                         const std::string& address) {
  if (status.error_code() == grpc::StatusCode::UNAVAILABLE) {
    return absl::UnavailableError(absl::StrCat(
        "cannot reach the plugd broker at ", address, ": ",
        status.error_message(),
        "; is plugd running? (plugd --config FILE --admin ", address, ")"));
  }
  return FromGrpcStatus(status);
}

}  // namespace

std::string DefaultPluginName(const std::string& executable) {
  absl::string_view base = executable;
  size_t slash = base.find_last_of('/');
  if (slash != absl::string_view::npos) base.remove_prefix(slash + 1);
  absl::ConsumePrefix(&base, "plugd-");
  return std::string(base);
}

// ---------------------------------------------------------------- Plugin ---

Plugin::Plugin(std::string name, std::shared_ptr<broker::PluginProcess> process,
               broker::Supervisor* supervisor,
               std::shared_ptr<v1::Broker::Stub> broker, std::string target,
               uint32_t protocol_version)
    : name_(std::move(name)),
      process_(std::move(process)),
      supervisor_(supervisor),
      broker_(std::move(broker)),
      target_(std::move(target)),
      protocol_version_(protocol_version) {}

Plugin::~Plugin() = default;

absl::StatusOr<v1::PluginStatus> Plugin::SupervisedStatus() const {
  if (supervisor_ != nullptr) return supervisor_->Get(name_);
  if (broker_ != nullptr) {
    grpc::ClientContext context;
    SetDeadline(&context, absl::Seconds(5));
    v1::GetPluginRequest request;
    request.set_name(name_);
    v1::PluginStatus status;
    grpc::Status s = broker_->Get(&context, request, &status);
    if (!s.ok()) return FromGrpcStatus(s);
    return status;
  }
  return absl::FailedPreconditionError("not a supervised plugin");
}

pid_t Plugin::pid() const {
  if (process_) return process_->running() ? process_->pid() : 0;
  absl::StatusOr<v1::PluginStatus> status = SupervisedStatus();
  return status.ok() ? static_cast<pid_t>(status->pid()) : 0;
}

std::string Plugin::target() const { return target_; }

uint32_t Plugin::protocol_version() const { return protocol_version_; }

bool Plugin::running() const {
  if (process_) return process_->running();
  absl::StatusOr<v1::PluginStatus> status = SupervisedStatus();
  return status.ok() && status->pid() > 0;
}

std::optional<ExitStatus> Plugin::exit_status() const {
  if (process_) return process_->exit_status();
  absl::StatusOr<v1::PluginStatus> status = SupervisedStatus();
  if (!status.ok() || status->pid() > 0 || !status->has_last_exit()) {
    return std::nullopt;
  }
  ExitStatus exit;
  exit.signaled = status->last_exit().signaled();
  exit.code = status->last_exit().code();
  exit.signal = status->last_exit().signal();
  return exit;
}

std::optional<ExitStatus> Plugin::WaitForExit(absl::Duration timeout) {
  if (process_) return process_->WaitForExit(timeout);
  if (supervisor_ != nullptr) {
    supervisor_
        ->WaitForState(name_,
                       {v1::PLUGIN_STATE_BACKING_OFF, v1::PLUGIN_STATE_FAILED,
                        v1::PLUGIN_STATE_STOPPED},
                       timeout)
        .IgnoreError();
  }
  return exit_status();
}

broker::OutputCapture& Plugin::output() {
  if (process_) return process_->output();
  return *logs_;
}

std::string Plugin::StateText() const {
  if (process_) return ProcessStateText(name_, *process_);
  return SupervisedStateText(name_, SupervisedStatus());
}

absl::StatusOr<v1::DescribeResponse> Plugin::Describe(absl::Duration timeout) {
  auto stub = v1::Control::NewStub(channel_);
  grpc::ClientContext context;
  SetDeadline(&context, timeout);
  v1::DescribeResponse response;
  grpc::Status status =
      stub->Describe(&context, v1::DescribeRequest(), &response);
  if (!status.ok()) {
    return Annotate(FromGrpcStatus(status), absl::StrCat("describe ", name_));
  }
  return response;
}

absl::StatusOr<std::vector<v1::FunctionInfo>> Plugin::ListFunctions(
    absl::Duration timeout) {
  auto stub = v1::Functions::NewStub(channel_);
  grpc::ClientContext context;
  SetDeadline(&context, timeout);
  v1::ListFunctionsResponse response;
  grpc::Status status =
      stub->ListFunctions(&context, v1::ListFunctionsRequest(), &response);
  if (status.error_code() == grpc::StatusCode::UNIMPLEMENTED) {
    return absl::UnimplementedError(
        absl::StrCat("plugin ", name_, " offers no functions service"));
  }
  if (!status.ok()) {
    return Annotate(FromGrpcStatus(status),
                    absl::StrCat("list functions of ", name_));
  }
  return std::vector<v1::FunctionInfo>(response.functions().begin(),
                                       response.functions().end());
}

absl::StatusOr<google::protobuf::Value> Plugin::Call(
    const std::string& function, std::vector<google::protobuf::Value> args,
    absl::Duration timeout) {
  // protobuf sends a string that is not UTF-8 with an error logged, and the
  // plugin fails to parse the request with nothing said of why.
  PLUGD_RETURN_IF_ERROR(CheckUtf8(function, "the function name"));
  for (size_t i = 0; i < args.size(); ++i) {
    PLUGD_RETURN_IF_ERROR(
        CheckUtf8(args[i], absl::StrCat(function, ": argument ", i + 1)));
  }
  auto stub = v1::Functions::NewStub(channel_);
  grpc::ClientContext context;
  SetDeadline(&context, timeout);
  v1::CallRequest request;
  request.set_function(function);
  for (auto& arg : args) *request.add_args() = std::move(arg);
  v1::CallResponse response;
  grpc::Status status = stub->Call(&context, request, &response);
  if (!status.ok()) return FromGrpcStatus(status);
  return std::move(*response.mutable_result());
}

absl::StatusOr<ExitStatus> Plugin::Stop() {
  if (process_) return process_->Stop();
  if (supervisor_ != nullptr) {
    PLUGD_ASSIGN_OR_RETURN(v1::PluginStatus status, supervisor_->Stop(name_));
    ExitStatus exit;
    exit.signaled = status.last_exit().signaled();
    exit.code = status.last_exit().code();
    exit.signal = status.last_exit().signal();
    return exit;
  }
  return absl::FailedPreconditionError(absl::StrCat(
      "plugin ", name_,
      " is supervised by the plugd daemon; stop it with `plugctl stop ", name_,
      "`"));
}

// ------------------------------------------------------------------ Host ---

namespace {

// Whether a Host::Create of this process has turned the detector off.
std::atomic<bool> g_deadlock_detection_turned_off{false};

// HostOptions::mutex_deadlock_detection. Off stays off: turned on again
// while threads hold locks taken without it, the detector aborts on the
// release of a lock it never saw taken.
void ApplyMutexDeadlockDetection(std::optional<bool> detection) {
  if (!detection.has_value()) return;
  if (!*detection) {
    SetMutexDeadlockDetection(false);
    g_deadlock_detection_turned_off.store(true);
  } else if (g_deadlock_detection_turned_off.load()) {
    PLUGD_LOG(WARNING)
        << "HostOptions::mutex_deadlock_detection is true, but an earlier "
           "Host::Create of this process turned Abseil's mutex deadlock "
           "detector off; it stays off (turned on while locks taken without "
           "it are held, it would abort on their release)";
  } else {
    SetMutexDeadlockDetection(true);
  }
}

}  // namespace

absl::StatusOr<std::unique_ptr<Host>> Host::Create(HostOptions options) {
  // First: before gRPC starts threads that take absl::Mutex locks.
  ApplyMutexDeadlockDetection(options.mutex_deadlock_detection);
  log::RouteGrpcLogs();
  // Before anything here initializes gRPC (PinCallbackCompletionQueue does).
  const absl::StatusOr<PollStrategyChoice> poll =
      ChooseGrpcPollStrategy(options.grpc_poll_strategy);
  if (!poll.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "HostOptions::grpc_poll_strategy: ", poll.status().message()));
  }
  if (!options.grpc_poll_strategy.empty() && !poll->applied) {
    PLUGD_LOG(WARNING) << poll->description;
  } else {
    PLUGD_LOG(DEBUG) << poll->description;
  }
  PinCallbackCompletionQueue();
  if (options.tune_allocator) {
    const AllocatorTuning tuning = TuneAllocator(kDefaultMaxMessageBytes);
    PLUGD_LOG(DEBUG) << tuning.description;
  }
  std::unique_ptr<Host> host;
  if (!options.socket_dir.empty()) {
    host.reset(new Host(options.socket_dir, false));
  } else {
    PLUGD_ASSIGN_OR_RETURN(std::string dir, broker::MakeSocketDir());
    host.reset(new Host(std::move(dir), true));
  }
  if (!options.admin_address.empty()) {
    PLUGD_RETURN_IF_ERROR(host->StartAdmin(options.admin_address));
  }
  return host;
}

Host::Host(std::string socket_dir, bool owns_socket_dir)
    : socket_dir_(std::move(socket_dir)), owns_socket_dir_(owns_socket_dir) {}

Host::~Host() {
  std::unique_ptr<broker::AdminServer> admin;
  std::unique_ptr<broker::Supervisor> supervisor;
  {
    absl::MutexLock lock(&mu_);
    admin = std::move(admin_);
    supervisor = std::move(supervisor_);
  }
  if (admin) admin->Shutdown();
  StopAll();
  {
    absl::MutexLock lock(&mu_);
    plugins_.clear();
  }
  supervisor.reset();
  if (owns_socket_dir_) broker::RemoveSocketDir(socket_dir_);
}

absl::Status Host::EnsureSupervisor() {
  if (supervisor_ == nullptr) {
    supervisor_ = std::make_unique<broker::Supervisor>();
  }
  return absl::OkStatus();
}

absl::Status Host::StartAdmin(const std::string& address) {
  absl::MutexLock lock(&mu_);
  PLUGD_RETURN_IF_ERROR(EnsureSupervisor());
  broker::AdminAccess access;
  access.how_to_allow =
      "run the client as the host's user or as root (docs/security.md)";
  PLUGD_ASSIGN_OR_RETURN(
      admin_, broker::AdminServer::Start(*supervisor_, address, access));
  return absl::OkStatus();
}

broker::Supervisor* Host::supervisor() const {
  absl::MutexLock lock(&mu_);
  return supervisor_.get();
}

std::string Host::admin_address() const {
  absl::MutexLock lock(&mu_);
  return admin_ ? admin_->address() : "";
}

absl::Status Host::CheckNameFree(const std::string& name) const {
  absl::MutexLock lock(&mu_);
  for (const auto& plugin : plugins_) {
    if (plugin->name() == name) {
      return absl::AlreadyExistsError(absl::StrCat(
          "launch: a plugin named ", name,
          " is already launched by this host; give PluginOptions::name a "
          "unique value"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<Plugin>> Host::Launch(PluginOptions options) {
  if (options.command.empty() || options.command[0].empty()) {
    return absl::InvalidArgumentError(
        "launch: PluginOptions::command is empty; give the plugin's executable "
        "and arguments");
  }
  std::string name = options.name.empty()
                         ? DefaultPluginName(options.command[0])
                         : options.name;
  PLUGD_RETURN_IF_ERROR(CheckNameFree(name));
  broker::LaunchOptions launch;
  launch.name = name;
  launch.command = options.command;
  launch.env = options.env;
  launch.inherit_environment = options.inherit_environment;
  launch.working_dir = options.working_dir;
  launch.executable_sha256 = options.executable_sha256;
  launch.limits = options.limits;
  launch.run_as = options.run_as;
  launch.socket_path = absl::StrCat(socket_dir_, "/", name, ".sock");
  launch.protocol_versions = options.protocol_versions;
  launch.start_timeout = options.start_timeout;
  launch.stop_grace = options.stop_grace;
  launch.max_message_bytes = options.max_message_bytes;
  launch.output = options.output;
  launch.go_plugin = options.go_plugin;
  if (options.supervision) {
    return LaunchSupervised(name, std::move(launch), options);
  }
  // The launcher's connect check opens the connection on the channel the
  // application will call on, so the first call finds it connected. The
  // process it describes in errors exists once Launch returns.
  auto process_ref = std::make_shared<std::weak_ptr<broker::PluginProcess>>();
  launch.make_channel = [name, process_ref, max = options.max_message_bytes](
                            const std::string& target) {
    return MakeChannel(
        name, target, max,
        [name, process_ref]() -> std::string {
          std::shared_ptr<broker::PluginProcess> p = process_ref->lock();
          if (p == nullptr) return absl::StrCat("plugin ", name);
          if (p->running()) p->WaitForExit(kExitNoticeWait);
          std::string text = ProcessStateText(name, *p);
          if (p->running())
            absl::StrAppend(&text, " is running but did not answer");
          return text;
        },
        "");
  };
  PLUGD_ASSIGN_OR_RETURN(
      std::shared_ptr<broker::PluginProcess> process,
      broker::PluginProcess::Launch(loop_, std::move(launch)));
  *process_ref = process;
  PLUGD_LOG(INFO) << "launched plugin " << name << " (pid " << process->pid()
                  << ") at " << process->handshake().GrpcTarget();
  std::shared_ptr<Plugin> plugin(new Plugin(name, process, nullptr, nullptr,
                                            process->handshake().GrpcTarget(),
                                            process->handshake().app_version));
  plugin->channel_ = process->channel();
  absl::MutexLock lock(&mu_);
  plugins_.push_back(plugin);
  return plugin;
}

absl::StatusOr<std::shared_ptr<Plugin>> Host::LaunchSupervised(
    const std::string& name, broker::LaunchOptions launch,
    const PluginOptions& options) {
  broker::Supervisor* supervisor;
  {
    absl::MutexLock lock(&mu_);
    PLUGD_RETURN_IF_ERROR(EnsureSupervisor());
    supervisor = supervisor_.get();
  }
  broker::SupervisedPluginSpec spec;
  spec.launch = std::move(launch);
  const SupervisionOptions& s = *options.supervision;
  spec.restart = s.restart;
  spec.backoff = s.backoff;
  spec.max_restarts = s.max_restarts;
  spec.restart_window = s.restart_window;
  spec.health_interval = s.health_interval;
  spec.unhealthy_timeout = s.unhealthy_timeout;
  spec.liveness_timeout = s.liveness_timeout;
  spec.autostart = false;
  const std::string target = absl::StrCat("unix:", spec.launch.socket_path);
  PLUGD_RETURN_IF_ERROR(supervisor->Add(spec));
  absl::StatusOr<v1::PluginStatus> started = supervisor->Start(name);
  if (!started.ok()) {
    supervisor->Remove(name).IgnoreError();
    return started.status();
  }
  std::shared_ptr<Plugin> plugin(new Plugin(
      name, nullptr, supervisor, nullptr, target, started->protocol_version()));
  PLUGD_ASSIGN_OR_RETURN(plugin->logs_, supervisor->Logs(name));
  // A go-plugin plugin cannot say what it serves (no plugd.v1.Control).
  // The others are asked on the supervisor's connection, open since the
  // start: a channel of their own would first have to connect (~2 ms of a
  // 20 ms launch).
  std::vector<std::string> services;
  if (!options.go_plugin) {
    absl::StatusOr<std::shared_ptr<grpc::Channel>> open =
        supervisor->Channel(name);
    services =
        ServicesOf(target, options.start_timeout, open.ok() ? *open : nullptr);
  }
  const std::map<std::string, std::set<std::string>> idempotent =
      IdempotentMethods(services, options.idempotent_methods);
  std::string config = ServiceConfig(idempotent, options.call_timeout);
  // With RetryMode::kWhileUnstable, idempotent calls are taken over
  // (retried past gRPC's 5 attempts) only while the plugin has been unstable
  // lately: taking a call over costs it about a fifth more host CPU.
  std::shared_ptr<RetryWindow> retry_window;
  if (options.retry_mode == RetryMode::kWhileUnstable) {
    retry_window = std::make_shared<RetryWindow>();
  }
  const absl::Duration window_span =
      std::max(kRetryWindowAfterExit, options.call_timeout);
  // Its crashes, from its exit events: a call taken over stops being retried
  // once the plugin has crashed kMaxCrashesPerCall times under it.
  auto crashes = std::make_shared<CrashCount>();
  plugin->channel_ = MakeChannel(
      name, target, options.max_message_bytes,
      [name, supervisor] {
        return SupervisedStateText(name, supervisor->Get(name));
      },
      config, idempotent, options.call_timeout, retry_window, crashes);
  // Connects now, not at the first call: Launch returns while the connection
  // is set up, so the application's first call seldom waits for it.
  plugin->channel_->GetState(/*try_to_connect=*/true);
  supervisor->SubscribeEvents(
      [name, on_ready = internal::ResetBackoffOnReady(plugin->channel_),
       retry_window, window_span, crashes](const v1::Event& event) {
        if (event.plugin() != name) return;
        if (internal::EndsAnInstance(event)) crashes->Observe(event.exit());
        // Runs on the supervisor's loop before the restart, so calls that
        // wait for the new instance are taken over.
        if (retry_window != nullptr &&
            internal::SignalsInstability(event.type())) {
          retry_window->OpenFor(window_span);
        }
        if (event.type() == v1::EVENT_TYPE_READY) on_ready();
      });
  PLUGD_LOG(INFO) << "launched supervised plugin " << name << " (pid "
                  << started->pid() << ") at " << target;
  absl::MutexLock lock(&mu_);
  plugins_.push_back(plugin);
  return plugin;
}

absl::StatusOr<std::shared_ptr<Plugin>> Host::Attach(
    const std::string& broker_address, const std::string& name,
    AttachOptions options) {
  PLUGD_RETURN_IF_ERROR(CheckNameFree(name));
  std::shared_ptr<v1::Broker::Stub> broker = BrokerClient(broker_address);
  grpc::ClientContext context;
  SetDeadline(&context, options.broker_timeout);
  v1::ResolveRequest request;
  request.set_name(name);
  v1::ResolveResponse resolved;
  grpc::Status status = broker->Resolve(&context, request, &resolved);
  if (!status.ok()) return BrokerError(status, broker_address);
  std::shared_ptr<Plugin> plugin(new Plugin(name, nullptr, nullptr, broker,
                                            resolved.address(),
                                            resolved.protocol_version()));
  plugin->logs_ =
      std::make_shared<broker::OutputCapture>(name, broker::OutputOptions());
  const std::map<std::string, std::set<std::string>> idempotent =
      IdempotentMethods(ServicesOf(resolved.address(), options.call_timeout),
                        options.idempotent_methods);
  std::string config = ServiceConfig(idempotent, options.call_timeout);
  Plugin* raw = plugin.get();
  // RetryMode::kWhileUnstable: as for a supervised launch, calls are taken
  // over while the plugin has been unstable lately, as the daemon's events
  // tell (the event watch below; the channel is not handed out before it).
  std::shared_ptr<RetryWindow> retry_window;
  if (!idempotent.empty() && options.retry_mode == RetryMode::kWhileUnstable) {
    retry_window = std::make_shared<RetryWindow>();
  }
  auto crashes = std::make_shared<CrashCount>();  // from the daemon's events
  plugin->channel_ = MakeChannel(
      name, resolved.address(),
      resolved.max_message_bytes() > 0 ? resolved.max_message_bytes()
                                       : kDefaultMaxMessageBytes,
      [name, raw] {
        return SupervisedStateText(name, raw->SupervisedStatus());
      },
      config, idempotent, options.call_timeout, retry_window, crashes);
  plugin->channel_->GetState(/*try_to_connect=*/true);  // as in a launch
  plugin->event_watch_ = std::make_unique<internal::AttachedEventWatch>(
      broker, name, retry_window,
      std::max(kRetryWindowAfterExit, options.call_timeout),
      internal::ResetBackoffOnReady(plugin->channel_), nullptr, crashes);
  absl::MutexLock lock(&mu_);
  plugins_.push_back(plugin);
  return plugin;
}

absl::StatusOr<std::vector<std::shared_ptr<Plugin>>> Host::AttachAll(
    const std::string& broker_address, AttachOptions options) {
  std::shared_ptr<v1::Broker::Stub> broker = BrokerClient(broker_address);
  grpc::ClientContext context;
  SetDeadline(&context, options.broker_timeout);
  v1::ListPluginsResponse list;
  grpc::Status status = broker->List(&context, v1::ListPluginsRequest(), &list);
  if (!status.ok()) return BrokerError(status, broker_address);
  std::vector<std::shared_ptr<Plugin>> out;
  for (const v1::PluginStatus& p : list.plugins()) {
    PLUGD_ASSIGN_OR_RETURN(std::shared_ptr<Plugin> plugin,
                           Attach(broker_address, p.name(), options));
    out.push_back(std::move(plugin));
  }
  return out;
}

std::shared_ptr<v1::Broker::Stub> Host::BrokerClient(
    const std::string& address) {
  std::string target = address;
  if (!absl::StartsWith(target, "unix:")) target = "unix:" + target;
  absl::MutexLock lock(&mu_);
  std::shared_ptr<v1::Broker::Stub>& stub = brokers_[target];
  if (stub == nullptr) {
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    stub = v1::Broker::NewStub(grpc::CreateCustomChannel(
        target, grpc::InsecureChannelCredentials(), args));
  }
  return stub;
}

absl::StatusOr<std::shared_ptr<Plugin>> Host::Find(
    const std::string& name) const {
  absl::MutexLock lock(&mu_);
  std::vector<std::string> names;
  for (const auto& plugin : plugins_) {
    if (plugin->name() == name) return plugin;
    names.push_back(plugin->name());
  }
  return absl::NotFoundError(
      absl::StrCat("no plugin named ", name, "; this host has: ",
                   names.empty() ? "(none)" : absl::StrJoin(names, ", ")));
}

std::vector<std::shared_ptr<Plugin>> Host::plugins() const {
  absl::MutexLock lock(&mu_);
  return plugins_;
}

absl::StatusOr<std::pair<std::shared_ptr<Plugin>, v1::FunctionInfo>>
Host::FindFunction(const std::string& function) {
  std::vector<std::string> offered;
  for (const auto& plugin : plugins()) {
    absl::StatusOr<std::vector<v1::FunctionInfo>> functions =
        plugin->ListFunctions();
    if (absl::IsUnimplemented(functions.status())) continue;
    PLUGD_RETURN_IF_ERROR(functions.status());
    for (const auto& info : *functions) {
      if (info.name() == function) return std::make_pair(plugin, info);
      offered.push_back(info.name());
    }
  }
  std::sort(offered.begin(), offered.end());
  return absl::NotFoundError(absl::StrCat(
      "no plugin offers a function named ", function, "; available: ",
      offered.empty() ? "(none)" : absl::StrJoin(offered, ", ")));
}

void Host::StopAll() {
  std::vector<std::shared_ptr<Plugin>> plugins = this->plugins();
  // Bare plugins stop all at once: each stop is bounded by its grace, so the
  // whole takes as long as the slowest plugin, not the sum.
  std::vector<std::shared_ptr<Plugin>> bare;
  for (const auto& plugin : plugins) {
    if (plugin->process_) bare.push_back(plugin);
  }
  absl::BlockingCounter pending(static_cast<int>(bare.size()));
  for (const auto& plugin : bare) {
    plugin->process_->AsyncStop(std::nullopt, [&pending](const ExitStatus&) {
      pending.DecrementCount();
    });
  }
  pending.Wait();
  broker::Supervisor* supervisor = this->supervisor();
  if (supervisor != nullptr) supervisor->StopAll();
}

}  // namespace plugd::host
