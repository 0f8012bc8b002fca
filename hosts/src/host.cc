#include "plugd/host/host.h"

#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/support/channel_arguments.h>
#include <grpcpp/support/client_interceptor.h>

#include <algorithm>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/blocking_counter.h"
#include "plugd/broker/socket.h"
#include "plugd/common/status.h"
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

// Rewrites failed calls' statuses so they say which plugin and why:
//   UNAVAILABLE        -> names the plugin, its pid and how it exited;
//   RESOURCE_EXHAUSTED -> for the message-size limit, names the option.
class PluginStatusInterceptor : public Interceptor {
 public:
  PluginStatusInterceptor(std::string name,
                          std::weak_ptr<broker::PluginProcess> process)
      : name_(std::move(name)), process_(std::move(process)) {}

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
    if (status->error_code() == grpc::StatusCode::UNAVAILABLE) {
      std::shared_ptr<broker::PluginProcess> process = process_.lock();
      if (process == nullptr) return;
      if (process->running()) process->WaitForExit(kExitNoticeWait);
      std::string state = ProcessStateText(name_, *process);
      if (!process->running()) {
        *status = grpc::Status(grpc::StatusCode::UNAVAILABLE,
                               absl::StrCat(state, "; the call failed: ",
                                            status->error_message()));
      } else {
        *status =
            grpc::Status(grpc::StatusCode::UNAVAILABLE,
                         absl::StrCat(state, " is running but did not answer: ",
                                      status->error_message()));
      }
    } else if (status->error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED &&
               absl::StrContains(status->error_message(), "larger than max")) {
      *status = grpc::Status(
          grpc::StatusCode::RESOURCE_EXHAUSTED,
          absl::StrCat("plugin ", name_, ": ", status->error_message(),
                       "; the limit is set by PluginOptions::max_message_bytes "
                       "(PLUGD_MAX_MESSAGE_BYTES in the plugin)"));
    }
  }

  const std::string name_;
  const std::weak_ptr<broker::PluginProcess> process_;
};

class PluginStatusInterceptorFactory
    : public ClientInterceptorFactoryInterface {
 public:
  PluginStatusInterceptorFactory(std::string name,
                                 std::weak_ptr<broker::PluginProcess> process)
      : name_(std::move(name)), process_(std::move(process)) {}

  Interceptor* CreateClientInterceptor(ClientRpcInfo* info) override {
    return new PluginStatusInterceptor(name_, process_);
  }

 private:
  const std::string name_;
  const std::weak_ptr<broker::PluginProcess> process_;
};

std::shared_ptr<grpc::Channel> MakeChannel(
    const std::string& name,
    const std::shared_ptr<broker::PluginProcess>& process,
    int64_t max_message_bytes) {
  grpc::ChannelArguments args;
  const int limit = static_cast<int>(
      std::min<int64_t>(max_message_bytes, std::numeric_limits<int>::max()));
  args.SetMaxReceiveMessageSize(limit);
  args.SetMaxSendMessageSize(limit);
  // A local socket: reconnect fast after a plugin restart instead of gRPC's
  // default 1 s initial backoff.
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 10);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 10);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 100);
  // Each plugin gets its own connection, never shared with another channel.
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  std::vector<std::unique_ptr<ClientInterceptorFactoryInterface>> factories;
  factories.push_back(
      std::make_unique<PluginStatusInterceptorFactory>(name, process));
  return grpc::experimental::CreateCustomChannelWithInterceptors(
      process->handshake().GrpcTarget(), grpc::InsecureChannelCredentials(),
      args, std::move(factories));
}

void SetDeadline(grpc::ClientContext* context, absl::Duration timeout) {
  context->set_deadline(absl::ToChronoTime(absl::Now() + timeout));
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
               std::shared_ptr<grpc::Channel> channel)
    : name_(std::move(name)),
      process_(std::move(process)),
      channel_(std::move(channel)) {}

Plugin::~Plugin() = default;

pid_t Plugin::pid() const { return process_->pid(); }

std::string Plugin::target() const {
  return process_->handshake().GrpcTarget();
}

uint32_t Plugin::protocol_version() const {
  return process_->handshake().app_version;
}

bool Plugin::running() const { return process_->running(); }

std::optional<ExitStatus> Plugin::exit_status() const {
  return process_->exit_status();
}

std::optional<ExitStatus> Plugin::WaitForExit(absl::Duration timeout) {
  return process_->WaitForExit(timeout);
}

broker::OutputCapture& Plugin::output() { return process_->output(); }

std::string Plugin::StateText() const {
  return ProcessStateText(name_, *process_);
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

absl::StatusOr<ExitStatus> Plugin::Stop() { return process_->Stop(); }

// ------------------------------------------------------------------ Host ---

absl::StatusOr<std::unique_ptr<Host>> Host::Create(HostOptions options) {
  log::RouteGrpcLogs();
  if (!options.socket_dir.empty()) {
    return std::unique_ptr<Host>(new Host(options.socket_dir, false));
  }
  PLUGD_ASSIGN_OR_RETURN(std::string dir, broker::MakeSocketDir());
  return std::unique_ptr<Host>(new Host(std::move(dir), true));
}

Host::Host(std::string socket_dir, bool owns_socket_dir)
    : socket_dir_(std::move(socket_dir)), owns_socket_dir_(owns_socket_dir) {}

Host::~Host() {
  StopAll();
  {
    absl::MutexLock lock(&mu_);
    plugins_.clear();
  }
  if (owns_socket_dir_) broker::RemoveSocketDir(socket_dir_);
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
  {
    absl::MutexLock lock(&mu_);
    for (const auto& plugin : plugins_) {
      if (plugin->name() == name) {
        return absl::AlreadyExistsError(absl::StrCat(
            "launch: a plugin named ", name,
            " is already launched by this host; give PluginOptions::name a "
            "unique value"));
      }
    }
  }
  broker::LaunchOptions launch;
  launch.name = name;
  launch.command = std::move(options.command);
  launch.env = std::move(options.env);
  launch.inherit_environment = options.inherit_environment;
  launch.working_dir = std::move(options.working_dir);
  launch.socket_path = absl::StrCat(socket_dir_, "/", name, ".sock");
  launch.protocol_versions = std::move(options.protocol_versions);
  launch.start_timeout = options.start_timeout;
  launch.stop_grace = options.stop_grace;
  launch.max_message_bytes = options.max_message_bytes;
  launch.output = std::move(options.output);
  PLUGD_ASSIGN_OR_RETURN(
      std::shared_ptr<broker::PluginProcess> process,
      broker::PluginProcess::Launch(loop_, std::move(launch)));
  std::shared_ptr<grpc::Channel> channel =
      MakeChannel(name, process, options.max_message_bytes);
  std::shared_ptr<Plugin> plugin(
      new Plugin(name, std::move(process), std::move(channel)));
  absl::MutexLock lock(&mu_);
  plugins_.push_back(plugin);
  return plugin;
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
  // Stop them all at once: each stop is bounded by its grace, so the whole
  // takes as long as the slowest plugin, not the sum.
  absl::BlockingCounter pending(static_cast<int>(plugins.size()));
  for (const auto& plugin : plugins) {
    plugin->process_->AsyncStop(std::nullopt, [&pending](const ExitStatus&) {
      pending.DecrementCount();
    });
  }
  pending.Wait();
}

}  // namespace plugd::host
