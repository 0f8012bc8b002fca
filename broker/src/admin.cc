#include "plugd/broker/admin.h"

#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/server.h>
#include <grpcpp/server_builder.h>
#include <grpcpp/support/channel_arguments.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <deque>
#include <iterator>
#include <map>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "plugd/broker/socket.h"
#include "plugd/common/channel.h"
#include "plugd/common/log.h"
#include "plugd/common/peer_auth.h"
#include "plugd/common/protocol.h"
#include "plugd/common/status.h"
#include "plugd/v1/broker.grpc.pb.h"
#include "plugd/v1/plugin.grpc.pb.h"
#include "proto_time.h"

namespace plugd::broker {
namespace {

// A slow stream reader may fall this far behind before its stream is ended.
constexpr size_t kMaxQueuedMessages = 10000;

using internal::ToTimestamp;

std::string LevelText(log::Level level) {
  switch (level) {
    case log::Level::kDebug:
      return "debug";
    case log::Level::kInfo:
      return "info";
    case log::Level::kWarning:
      return "warn";
    case log::Level::kError:
      return "error";
  }
  return "info";
}

v1::LogLine ToLogLine(const std::string& plugin, const OutputLine& line) {
  v1::LogLine out;
  *out.mutable_time() = ToTimestamp(line.time);
  out.set_plugin(plugin);
  out.set_stream(line.stream == OutputStream::kStdout ? v1::LOG_STREAM_STDOUT
                                                      : v1::LOG_STREAM_STDERR);
  out.set_level(LevelText(line.level));
  out.set_text(line.text);
  out.set_truncated(line.truncated);
  return out;
}

// A server stream of messages that arrive from elsewhere (the supervisor's
// loop), written one at a time. Ends on Close(), on cancellation, or when
// the reader falls too far behind.
template <typename Message>
class QueuedWriter : public grpc::ServerWriteReactor<Message> {
 public:
  // Called once when the stream is done, from a gRPC thread.
  std::function<void()> on_done;

  void Push(Message message) {
    absl::MutexLock lock(&mu_);
    if (closing_) return;
    if (queue_.size() >= kMaxQueuedMessages) {
      closing_ = true;
      close_status_ = grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                                   "the stream's reader fell more than 10000 "
                                   "messages behind; reconnect to resume");
      MaybeFinishLocked();
      return;
    }
    queue_.push_back(std::move(message));
    MaybeWriteLocked();
  }

  // Finishes the stream after what is queued.
  void Close(grpc::Status status = grpc::Status::OK) {
    absl::MutexLock lock(&mu_);
    if (closing_) return;
    closing_ = true;
    close_status_ = std::move(status);
    MaybeFinishLocked();
  }

  void OnWriteDone(bool ok) override {
    absl::MutexLock lock(&mu_);
    writing_ = false;
    queue_.pop_front();  // the message just written, kept until now
    if (!ok) {
      closing_ = true;
      queue_.clear();
    }
    MaybeWriteLocked();
    MaybeFinishLocked();
  }

  void OnCancel() override {
    absl::MutexLock lock(&mu_);
    closing_ = true;
    DropUnsentLocked();
    close_status_ = grpc::Status::CANCELLED;
    MaybeFinishLocked();
  }

  void OnDone() override {
    if (on_done) on_done();
    delete this;
  }

 private:
  // Drops the queued messages, but not the one being written: gRPC holds
  // it until OnWriteDone, which removes it.
  void DropUnsentLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (writing_) {
      queue_.erase(std::next(queue_.begin()), queue_.end());
    } else {
      queue_.clear();
    }
  }
  void MaybeWriteLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (writing_ || queue_.empty() || finished_) return;
    if (closing_ && !close_status_.ok()) return;  // ending with an error
    writing_ = true;
    this->StartWrite(&queue_.front());
  }
  void MaybeFinishLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (!closing_ || finished_ || writing_) return;
    if (!queue_.empty() && close_status_.ok()) return;  // drain first
    finished_ = true;
    this->Finish(close_status_);
  }

  absl::Mutex mu_;
  std::deque<Message> queue_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool closing_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  grpc::Status close_status_ ABSL_GUARDED_BY(mu_);
};

}  // namespace

absl::StatusOr<std::string> AdminSocketPath(const std::string& address) {
  absl::string_view path = address;
  absl::ConsumePrefix(&path, "unix://");
  absl::ConsumePrefix(&path, "unix:");
  if (path.empty() || path.front() != '/') {
    return absl::InvalidArgumentError(absl::StrCat(
        "admin address \"", address,
        "\" is not a Unix socket address; use unix:/absolute/path.sock"));
  }
  PLUGD_RETURN_IF_ERROR(ValidateSocketPath(path));
  return std::string(path);
}

class AdminServer::Service : public v1::Broker::CallbackService {
 public:
  explicit Service(Supervisor& supervisor) : supervisor_(supervisor) {}

  grpc::ServerUnaryReactor* List(grpc::CallbackServerContext* context,
                                 const v1::ListPluginsRequest*,
                                 v1::ListPluginsResponse* response) override {
    for (auto& status : supervisor_.List()) {
      *response->add_plugins() = std::move(status);
    }
    auto* reactor = context->DefaultReactor();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }

  grpc::ServerUnaryReactor* Get(grpc::CallbackServerContext* context,
                                const v1::GetPluginRequest* request,
                                v1::PluginStatus* response) override {
    return Answer(context, response, supervisor_.Get(request->name()));
  }

  grpc::ServerUnaryReactor* Resolve(grpc::CallbackServerContext* context,
                                    const v1::ResolveRequest* request,
                                    v1::ResolveResponse* response) override {
    return Answer(context, response, supervisor_.Resolve(request->name()));
  }

  grpc::ServerUnaryReactor* Start(grpc::CallbackServerContext* context,
                                  const v1::StartPluginRequest* request,
                                  v1::PluginStatus* response) override {
    auto* reactor = context->DefaultReactor();
    supervisor_.AsyncStart(request->name(), Finisher(reactor, response));
    return reactor;
  }

  grpc::ServerUnaryReactor* Stop(grpc::CallbackServerContext* context,
                                 const v1::StopPluginRequest* request,
                                 v1::PluginStatus* response) override {
    auto* reactor = context->DefaultReactor();
    supervisor_.AsyncStop(request->name(), Finisher(reactor, response));
    return reactor;
  }

  grpc::ServerUnaryReactor* Restart(grpc::CallbackServerContext* context,
                                    const v1::RestartPluginRequest* request,
                                    v1::PluginStatus* response) override {
    auto* reactor = context->DefaultReactor();
    supervisor_.AsyncRestart(request->name(), Finisher(reactor, response));
    return reactor;
  }

  grpc::ServerUnaryReactor* Describe(grpc::CallbackServerContext* context,
                                     const v1::DescribePluginRequest* request,
                                     v1::DescribeResponse* response) override {
    static const v1::DescribeRequest kDescribe;
    return Forward<v1::Control>(
        context, request->name(), response,
        [](v1::Control::Stub::async_interface* plugin,
           grpc::ClientContext* call, v1::DescribeResponse* out,
           std::function<void(grpc::Status)> done) {
          plugin->Describe(call, &kDescribe, out, std::move(done));
        });
  }

  grpc::ServerUnaryReactor* Call(grpc::CallbackServerContext* context,
                                 const v1::CallPluginRequest* request,
                                 v1::CallResponse* response) override {
    return Forward<v1::Functions>(
        context, request->name(), response,
        [request](v1::Functions::Stub::async_interface* plugin,
                  grpc::ClientContext* call, v1::CallResponse* out,
                  std::function<void(grpc::Status)> done) {
          plugin->Call(call, &request->call(), out, std::move(done));
        });
  }

  grpc::ServerWriteReactor<v1::Event>* WatchEvents(
      grpc::CallbackServerContext* context,
      const v1::WatchEventsRequest* request) override {
    auto* writer = new QueuedWriter<v1::Event>();
    const std::string plugin = request->plugin();
    if (!plugin.empty()) {
      absl::StatusOr<v1::PluginStatus> known = supervisor_.Get(plugin);
      if (!known.ok()) {
        writer->Close(ToGrpcStatus(known.status()));
        return writer;
      }
    }
    int id = -1;
    if (request->follow()) {
      // Subscribe first, on the loop, with the history read in the same
      // step, so no event falls between the two.
      id = supervisor_.loop().Run([&] {
        for (auto& event : supervisor_.Events(plugin, request->history())) {
          if (request->history() > 0) writer->Push(std::move(event));
        }
        return supervisor_.SubscribeEvents(
            [writer, plugin](const v1::Event& event) {
              if (plugin.empty() || event.plugin() == plugin) {
                writer->Push(event);
              }
            });
      });
    } else {
      if (request->history() > 0) {
        for (auto& event : supervisor_.Events(plugin, request->history())) {
          writer->Push(std::move(event));
        }
      }
      writer->Close();
    }
    Track(writer, [this, id] {
      if (id >= 0) supervisor_.UnsubscribeEvents(id);
    });
    return writer;
  }

  grpc::ServerWriteReactor<v1::LogLine>* TailLogs(
      grpc::CallbackServerContext* context,
      const v1::TailLogsRequest* request) override {
    auto* writer = new QueuedWriter<v1::LogLine>();
    const std::string name = request->name();
    absl::StatusOr<std::shared_ptr<OutputCapture>> logs =
        supervisor_.Logs(name);
    if (!logs.ok()) {
      writer->Close(ToGrpcStatus(logs.status()));
      return writer;
    }
    std::shared_ptr<OutputCapture> capture = *logs;
    int id = -1;
    // Lines are added on the loop thread: reading the tail and subscribing
    // there leaves no gap and no duplicate.
    id = supervisor_.loop().Run([&] {
      for (const OutputLine& line : capture->Tail(request->tail())) {
        writer->Push(ToLogLine(name, line));
      }
      if (!request->follow()) return -1;
      return capture->Subscribe([writer, name](const OutputLine& line) {
        writer->Push(ToLogLine(name, line));
      });
    });
    if (!request->follow()) writer->Close();
    Track(writer, [this, capture, id] {
      if (id >= 0) {
        supervisor_.loop().Run([&] { capture->Unsubscribe(id); });
      }
    });
    return writer;
  }

  // Ends every open stream (on shutdown).
  void CloseStreams() {
    absl::MutexLock lock(&mu_);
    shutting_down_ = true;
    for (const auto& [writer, close] : streams_) close();
  }

 private:
  template <typename Message>
  void Track(QueuedWriter<Message>* writer, std::function<void()> unsubscribe) {
    {
      absl::MutexLock lock(&mu_);
      streams_[writer] = [writer] {
        writer->Close(grpc::Status(grpc::StatusCode::UNAVAILABLE,
                                   "the broker is shutting down"));
      };
      if (shutting_down_) streams_[writer]();
    }
    writer->on_done = [this, writer, unsubscribe] {
      unsubscribe();
      absl::MutexLock lock(&mu_);
      streams_.erase(writer);
    };
  }

  // Forwards one unary call to plugin `name` (its Service's generated stub),
  // finishing `context`'s reactor with the plugin's answer.
  template <typename Service, typename Response, typename Start>
  grpc::ServerUnaryReactor* Forward(grpc::CallbackServerContext* context,
                                    const std::string& name, Response* response,
                                    Start start) {
    auto* reactor = context->DefaultReactor();
    absl::StatusOr<std::shared_ptr<grpc::Channel>> channel = ChannelTo(name);
    if (!channel.ok()) {
      reactor->Finish(ToGrpcStatus(channel.status()));
      return reactor;
    }
    struct CallState {
      grpc::ClientContext context;
      std::unique_ptr<typename Service::Stub> stub;
    };
    auto call = std::make_shared<CallState>();
    call->stub = Service::NewStub(*channel);
    call->context.set_deadline(ForwardDeadline(context));
    start(call->stub->async(), &call->context, response,
          [call, reactor, name](grpc::Status status) {
            reactor->Finish(Forwarded(status, name));
          });
    return reactor;
  }

  template <typename Response, typename T>
  static grpc::ServerUnaryReactor* Answer(grpc::CallbackServerContext* context,
                                          Response* response,
                                          absl::StatusOr<T> result) {
    auto* reactor = context->DefaultReactor();
    if (result.ok()) *response = std::move(*result);
    reactor->Finish(ToGrpcStatus(result.status()));
    return reactor;
  }

  static Supervisor::StatusCallback Finisher(grpc::ServerUnaryReactor* reactor,
                                             v1::PluginStatus* response) {
    return [reactor, response](absl::StatusOr<v1::PluginStatus> result) {
      if (result.ok()) *response = std::move(*result);
      reactor->Finish(ToGrpcStatus(result.status()));
    };
  }

  static std::chrono::system_clock::time_point ForwardDeadline(
      grpc::CallbackServerContext* context) {
    auto deadline = context->deadline();
    auto cap = std::chrono::system_clock::now() + std::chrono::seconds(60);
    return std::min(deadline, cap);
  }

  static grpc::Status Forwarded(const grpc::Status& status,
                                const std::string& name) {
    if (status.ok() || status.error_code() != grpc::StatusCode::UNAVAILABLE) {
      return status;
    }
    return grpc::Status(
        status.error_code(),
        absl::StrCat("plugin ", name, ": ", status.error_message()));
  }

  // A channel to a running plugin, cached by address.
  absl::StatusOr<std::shared_ptr<grpc::Channel>> ChannelTo(
      const std::string& name) {
    PLUGD_ASSIGN_OR_RETURN(v1::PluginStatus status, supervisor_.Get(name));
    if (status.state() != v1::PLUGIN_STATE_READY &&
        status.state() != v1::PLUGIN_STATE_UNHEALTHY) {
      std::string why = StateName(status.state());
      if (status.has_last_exit()) {
        absl::StrAppend(&why, "; last exit: ", status.last_exit().text());
      }
      if (!status.last_error().empty()) {
        absl::StrAppend(&why, "; last error: ", status.last_error());
      }
      return absl::UnavailableError(absl::StrCat("plugin ", name, " is ", why));
    }
    absl::MutexLock lock(&mu_);
    auto& channel = channels_[status.address()];
    if (!channel) {
      grpc::ChannelArguments args;
      args.SetMaxReceiveMessageSize(-1);
      args.SetMaxSendMessageSize(-1);
      SetLocalReconnectArguments(&args);
      channel = grpc::CreateCustomChannel(
          status.address(), grpc::InsecureChannelCredentials(), args);
    }
    return channel;
  }

  Supervisor& supervisor_;
  absl::Mutex mu_;
  std::map<std::string, std::shared_ptr<grpc::Channel>> channels_
      ABSL_GUARDED_BY(mu_);
  std::map<void*, std::function<void()>> streams_ ABSL_GUARDED_BY(mu_);
  bool shutting_down_ ABSL_GUARDED_BY(mu_) = false;
};

absl::StatusOr<std::unique_ptr<AdminServer>> AdminServer::Start(
    Supervisor& supervisor, const std::string& address, AdminAccess access) {
  PLUGD_ASSIGN_OR_RETURN(std::string path, AdminSocketPath(address));
  const std::string dir = path.substr(0, path.find_last_of('/'));
  // Owner-only, or reachable by the admin group's members too.
  const mode_t dir_mode = access.group ? 0710 : 0700;
  const mode_t socket_mode = access.group ? 0660 : 0600;
  const std::string group_text =
      access.group ? (access.group_name.empty()
                          ? absl::StrCat("gid ", *access.group)
                          : absl::StrCat(access.group_name, " (gid ",
                                         *access.group, ")"))
                   : "";
  struct stat st;
  if (!dir.empty() && ::stat(dir.c_str(), &st) != 0) {
    if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
      return absl::PermissionDeniedError(
          absl::StrCat("cannot create the admin socket directory ", dir, ": ",
                       std::strerror(errno)));
    }
    if (::stat(dir.c_str(), &st) != 0) {
      return absl::PermissionDeniedError(
          absl::StrCat("cannot stat the admin socket directory ", dir, ": ",
                       std::strerror(errno)));
    }
  } else if (!dir.empty() && !S_ISDIR(st.st_mode)) {
    return absl::FailedPreconditionError(
        absl::StrCat(dir, " (for the admin socket) is not a directory"));
  }
  if (!dir.empty() && st.st_uid == ::geteuid()) {
    if (access.group && st.st_gid != *access.group &&
        ::chown(dir.c_str(), static_cast<uid_t>(-1), *access.group) != 0) {
      return absl::PermissionDeniedError(absl::StrCat(
          "cannot give the admin socket directory ", dir, " to admin_group ",
          group_text, ": ", std::strerror(errno),
          " (the broker's user must be root or a member of the group)"));
    }
    if ((st.st_mode & 07777) != dir_mode &&
        ::chmod(dir.c_str(), dir_mode) != 0) {
      return absl::PermissionDeniedError(absl::StrCat(
          "cannot set the mode of ", dir, " to 0", access.group ? "710" : "700",
          ": ", std::strerror(errno)));
    }
  }
  absl::Status prepared = PrepareSocketPath(path);
  if (absl::IsAlreadyExists(prepared)) {
    return absl::AlreadyExistsError(absl::StrCat(
        "the admin socket ", path,
        " is in use: is another plugd running? Stop it, or give this one "
        "another address with --admin"));
  }
  PLUGD_RETURN_IF_ERROR(prepared);

  // The broker owns the listening socket, so that every connection's peer
  // credentials are checked before gRPC gets it (docs/security.md).
  PeerPolicy policy;
  policy.what = absl::StrCat("the plugd admin API at ", path);
  policy.uids.push_back({::geteuid(), "the broker's"});
  policy.group = access.group;
  policy.group_name = group_text;
  policy.how_to_allow =
      !access.how_to_allow.empty()
          ? access.how_to_allow
          : "to allow another user, set admin_group in the plugd config to a "
            "group of that user and restart plugd (docs/security.md)";
  absl::StatusOr<std::unique_ptr<PeerCheckedListener>> listening =
      PeerCheckedListener::Listen(path, std::move(policy), socket_mode);
  if (!listening.ok()) return Annotate(listening.status(), "admin socket");
  std::unique_ptr<PeerCheckedListener> listener = *std::move(listening);
  if (access.group &&
      ::chown(path.c_str(), static_cast<uid_t>(-1), *access.group) != 0) {
    const int err = errno;
    listener.reset();
    ::unlink(path.c_str());
    return absl::PermissionDeniedError(absl::StrCat(
        "cannot give the admin socket ", path, " to admin_group ", group_text,
        ": ", std::strerror(err),
        " (the broker's user must be root or a member of the group)"));
  }

  auto service = std::make_unique<Service>(supervisor);
  grpc::ServerBuilder builder;
  builder.RegisterService(service.get());
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr) {
    listener.reset();
    ::unlink(path.c_str());
    return absl::UnavailableError(
        absl::StrCat("cannot start the admin server for ", path));
  }
  if (absl::Status started = listener->Start(server.get()); !started.ok()) {
    listener.reset();
    server->Shutdown();
    server->Wait();
    ::unlink(path.c_str());
    return started;
  }
  return std::unique_ptr<AdminServer>(
      new AdminServer(absl::StrCat("unix:", path), path, std::move(service),
                      std::move(listener), std::move(server)));
}

AdminServer::AdminServer(std::string address, std::string path,
                         std::unique_ptr<Service> service,
                         std::unique_ptr<PeerCheckedListener> listener,
                         std::unique_ptr<grpc::Server> server)
    : address_(std::move(address)),
      path_(std::move(path)),
      service_(std::move(service)),
      listener_(std::move(listener)),
      server_(std::move(server)) {}

AdminServer::~AdminServer() { Shutdown(); }

void AdminServer::Shutdown() {
  if (shut_down_) return;
  shut_down_ = true;
  service_->CloseStreams();
  listener_->Stop();  // no new connections for a server shutting down
  server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  server_->Wait();
  ::unlink(path_.c_str());
}

}  // namespace plugd::broker
