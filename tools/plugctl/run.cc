#include "run.h"

#include <errno.h>
#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <memory>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "format.h"
#include "plugd/common/value.h"
#include "plugd/v1/broker.grpc.pb.h"

namespace plugd::plugctl {
namespace {

using plugd::v1::Broker;

// How long to wait for the connection before a call: a broker on a local
// socket accepts at once, so this only bounds odd cases.
constexpr absl::Duration kConnectTimeout = absl::Seconds(5);

// Keeps `context` registered with the interrupter for its lifetime.
class CallScope {
 public:
  CallScope(Interrupter* interrupter, grpc::ClientContext* context)
      : interrupter_(interrupter) {
    if (interrupter_ != nullptr) interrupter_->SetCall(context);
  }
  ~CallScope() {
    if (interrupter_ != nullptr) interrupter_->SetCall(nullptr);
  }

 private:
  Interrupter* interrupter_;
};

class Runner {
 public:
  Runner(const Options& options, std::shared_ptr<grpc::Channel> channel,
         std::ostream& out, std::ostream& err, Interrupter* interrupter)
      : options_(options),
        channel_(std::move(channel)),
        stub_(Broker::NewStub(channel_)),
        out_(out),
        err_(err),
        interrupter_(interrupter) {}

  int Run() {
    switch (options_.command) {
      case Command::kList:
        return List();
      case Command::kStatus:
        return Status();
      case Command::kStart:
      case Command::kStop:
      case Command::kRestart:
        return Control();
      case Command::kDescribe:
        return Describe();
      case Command::kCall:
        return Call();
      case Command::kLogs:
        return Logs();
      case Command::kEvents:
        return Events();
    }
    return kExitUsage;
  }

 private:
  void PrepareUnary(grpc::ClientContext* context) {
    context->set_deadline(absl::ToChronoTime(absl::Now() + options_.timeout));
  }

  bool interrupted() const {
    return interrupter_ != nullptr && interrupter_->interrupted();
  }

  // Maps a failed call to an exit code, printing why.
  int Fail(const grpc::Status& status) {
    if (status.error_code() == grpc::StatusCode::CANCELLED && interrupted()) {
      err_ << "plugctl: interrupted\n";
      return 130;
    }
    if (status.error_code() == grpc::StatusCode::UNAVAILABLE &&
        channel_->GetState(false) != GRPC_CHANNEL_READY) {
      // The connection itself went away: not an answer of the broker.
      err_ << UnreachableMessage(options_.broker, status.error_message());
      return kExitUnreachable;
    }
    std::string what(CommandName(options_.command));
    if (!options_.name.empty()) absl::StrAppend(&what, " ", options_.name);
    err_ << "plugctl: " << what << ": " << status.error_message();
    if (status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) {
      err_ << " (no answer within --timeout "
           << absl::FormatDuration(options_.timeout) << ")";
    }
    err_ << "\n";
    return kExitBrokerError;
  }

  int List() {
    grpc::ClientContext context;
    PrepareUnary(&context);
    CallScope scope(interrupter_, &context);
    plugd::v1::ListPluginsResponse response;
    grpc::Status status =
        stub_->List(&context, plugd::v1::ListPluginsRequest(), &response);
    if (!status.ok()) return Fail(status);
    if (options_.json) {
      out_ << ToJson(response) << "\n";
    } else {
      out_ << FormatPluginList(response, absl::Now());
    }
    return kExitOk;
  }

  int Status() {
    grpc::ClientContext context;
    PrepareUnary(&context);
    CallScope scope(interrupter_, &context);
    plugd::v1::GetPluginRequest request;
    request.set_name(options_.name);
    plugd::v1::PluginStatus response;
    grpc::Status status = stub_->Get(&context, request, &response);
    if (!status.ok()) return Fail(status);
    if (options_.json) {
      out_ << ToJson(response) << "\n";
    } else {
      out_ << FormatPluginStatus(response, absl::Now());
    }
    return kExitOk;
  }

  int Control() {
    grpc::ClientContext context;
    PrepareUnary(&context);
    CallScope scope(interrupter_, &context);
    plugd::v1::PluginStatus response;
    grpc::Status status;
    switch (options_.command) {
      case Command::kStart: {
        plugd::v1::StartPluginRequest request;
        request.set_name(options_.name);
        status = stub_->Start(&context, request, &response);
        break;
      }
      case Command::kStop: {
        plugd::v1::StopPluginRequest request;
        request.set_name(options_.name);
        status = stub_->Stop(&context, request, &response);
        break;
      }
      default: {
        plugd::v1::RestartPluginRequest request;
        request.set_name(options_.name);
        status = stub_->Restart(&context, request, &response);
        break;
      }
    }
    if (!status.ok()) return Fail(status);
    if (options_.json) {
      out_ << ToJson(response) << "\n";
    } else {
      out_ << FormatStateLine(response) << "\n";
    }
    // Start and Restart wait until ready or failed: a plugin that is not
    // running afterwards did not start.
    if (options_.command != Command::kStop &&
        (response.state() == plugd::v1::PLUGIN_STATE_FAILED ||
         response.state() == plugd::v1::PLUGIN_STATE_BACKING_OFF ||
         response.state() == plugd::v1::PLUGIN_STATE_STOPPED)) {
      err_ << "plugctl: " << CommandName(options_.command) << " "
           << options_.name << ": the plugin did not become ready";
      if (!response.last_error().empty()) {
        err_ << ": " << response.last_error();
      }
      err_ << "\n";
      return kExitBrokerError;
    }
    return kExitOk;
  }

  int Describe() {
    grpc::ClientContext context;
    PrepareUnary(&context);
    CallScope scope(interrupter_, &context);
    plugd::v1::DescribePluginRequest request;
    request.set_name(options_.name);
    plugd::v1::DescribeResponse response;
    grpc::Status status = stub_->Describe(&context, request, &response);
    if (!status.ok()) return Fail(status);
    if (options_.json) {
      out_ << ToJson(response) << "\n";
    } else {
      out_ << FormatDescribe(response);
    }
    return kExitOk;
  }

  int Call() {
    grpc::ClientContext context;
    PrepareUnary(&context);
    CallScope scope(interrupter_, &context);
    plugd::v1::CallPluginRequest request;
    request.set_name(options_.name);
    request.mutable_call()->set_function(options_.function);
    for (const std::string& arg : options_.args) {
      *request.mutable_call()->add_args() = plugd::ParseArgument(arg);
    }
    plugd::v1::CallResponse response;
    grpc::Status status = stub_->Call(&context, request, &response);
    if (!status.ok()) return Fail(status);
    if (options_.json) {
      // {"result":<value>}; a missing result is JSON null.
      out_ << "{\"result\":" << plugd::ValueToJson(response.result()) << "}\n";
    } else {
      out_ << plugd::FormatValue(response.result()) << "\n";
    }
    return kExitOk;
  }

  // Prints a stream's messages one per line, flushing each, until it ends.
  template <typename T, typename Format>
  int Stream(grpc::ClientContext* context, grpc::ClientReader<T>* reader,
             Format format) {
    T message;
    while (reader->Read(&message)) {
      out_ << (options_.json ? ToJson(message) : format(message)) << std::endl;
    }
    grpc::Status status = reader->Finish();
    if (status.ok()) return kExitOk;
    // Ctrl-C on a stream is the normal way to end it.
    if (status.error_code() == grpc::StatusCode::CANCELLED && interrupted()) {
      return kExitOk;
    }
    return Fail(status);
  }

  void PrepareStream(grpc::ClientContext* context) {
    // A followed stream runs until interrupted; else it is bounded.
    if (!options_.follow) PrepareUnary(context);
  }

  int Logs() {
    grpc::ClientContext context;
    PrepareStream(&context);
    CallScope scope(interrupter_, &context);
    plugd::v1::TailLogsRequest request;
    request.set_name(options_.name);
    request.set_tail(options_.tail);
    request.set_follow(options_.follow);
    auto reader = stub_->TailLogs(&context, request);
    return Stream(&context, reader.get(),
                  [](const plugd::v1::LogLine& l) { return FormatLogLine(l); });
  }

  int Events() {
    grpc::ClientContext context;
    PrepareStream(&context);
    CallScope scope(interrupter_, &context);
    plugd::v1::WatchEventsRequest request;
    request.set_plugin(options_.plugin_filter);
    request.set_follow(options_.follow);
    request.set_history(options_.history);
    auto reader = stub_->WatchEvents(&context, request);
    return Stream(&context, reader.get(),
                  [](const plugd::v1::Event& e) { return FormatEvent(e); });
  }

  const Options& options_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<Broker::Stub> stub_;
  std::ostream& out_;
  std::ostream& err_;
  Interrupter* interrupter_;
};

}  // namespace

void Interrupter::SetCall(grpc::ClientContext* context) {
  absl::MutexLock lock(&mu_);
  context_ = context;
  if (context_ != nullptr && interrupted_) context_->TryCancel();
}

void Interrupter::Interrupt() {
  absl::MutexLock lock(&mu_);
  interrupted_ = true;
  if (context_ != nullptr) context_->TryCancel();
}

bool Interrupter::interrupted() const {
  absl::MutexLock lock(&mu_);
  return interrupted_;
}

std::optional<std::string> ProbeUnixSocket(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof(addr.sun_path)) {
    return absl::StrCat("socket path longer than ", sizeof(addr.sun_path) - 1,
                        " bytes");
  }
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return absl::StrCat("socket: ", std::strerror(errno));
  int rc;
  do {
    rc = connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  } while (rc != 0 && errno == EINTR);
  const int error = errno;
  close(fd);
  if (rc == 0) return std::nullopt;
  switch (error) {
    case ENOENT:
      return std::string("no such socket");
    case ECONNREFUSED:
      return std::string(
          "connection refused: a stale socket nobody listens on");
    case EACCES:
    case EPERM:
      return std::string("permission denied");
    case ENOTDIR:
      return std::string("a parent of the socket path is not a directory");
    default:
      return std::string(std::strerror(error));
  }
}

std::string UnreachableMessage(const std::string& address,
                               const std::string& reason) {
  return absl::StrCat(
      "plugctl: cannot reach the plugd broker at ", address, " (", reason,
      "). Start it with `plugd --config FILE`, or point plugctl at it with "
      "--broker ADDR or PLUGD_ADMIN.\n");
}

int Run(const Options& options, std::ostream& out, std::ostream& err,
        Interrupter* interrupter) {
  if (std::optional<std::string> path = UnixSocketPath(options.broker)) {
    if (std::optional<std::string> reason = ProbeUnixSocket(*path)) {
      err << UnreachableMessage(options.broker, *reason);
      return kExitUnreachable;
    }
  }
  std::shared_ptr<grpc::Channel> channel =
      grpc::CreateChannel(options.broker, grpc::InsecureChannelCredentials());
  const absl::Duration wait = std::min(options.timeout, kConnectTimeout);
  if (!channel->WaitForConnected(absl::ToChronoTime(absl::Now() + wait))) {
    err << UnreachableMessage(
        options.broker,
        absl::StrCat("no connection within ", absl::FormatDuration(wait)));
    return kExitUnreachable;
  }
  Runner runner(options, std::move(channel), out, err, interrupter);
  return runner.Run();
}

}  // namespace plugd::plugctl
