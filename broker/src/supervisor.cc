#include "plugd/broker/supervisor.h"

#include <grpcpp/create_channel.h>
#include <grpcpp/generic/async_generic_service.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/server.h>
#include <grpcpp/server_builder.h>
#include <grpcpp/support/channel_arguments.h>

#include <algorithm>
#include <boost/asio/steady_timer.hpp>
#include <cmath>
#include <deque>
#include <future>
#include <map>
#include <random>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "plugd/broker/socket.h"
#include "plugd/common/channel.h"
#include "plugd/common/log.h"
#include "plugd/common/status.h"
#include "plugd/v1/plugin.grpc.pb.h"
#include "proto_time.h"

namespace plugd::broker {
namespace {

using grpc::health::v1::Health;
using grpc::health::v1::HealthCheckRequest;
using grpc::health::v1::HealthCheckResponse;
using v1::PluginState;

// The ring kept per process; the long-lived per-plugin ring is the
// supervisor's (it survives restarts).
constexpr size_t kInstanceRingBytes = 64 * 1024;

using internal::ToTimestamp;

v1::ExitInfo ToExitInfo(const ExitStatus& status) {
  v1::ExitInfo info;
  info.set_signaled(status.signaled);
  info.set_code(status.code);
  info.set_signal(status.signal);
  info.set_text(status.ToString());
  return info;
}

std::chrono::steady_clock::duration ToChrono(absl::Duration d) {
  return std::chrono::duration_cast<std::chrono::steady_clock::duration>(
      absl::ToChronoNanoseconds(std::max(d, absl::ZeroDuration())));
}

// Posts work from gRPC's threads to the loop, as long as the loop exists.
class LoopGate {
 public:
  explicit LoopGate(EventLoop* loop) : loop_(loop) {}
  void Post(std::function<void()> fn) {
    absl::MutexLock lock(&mu_);
    if (loop_ != nullptr) loop_->Post(std::move(fn));
  }
  void Close() {
    absl::MutexLock lock(&mu_);
    loop_ = nullptr;
  }

 private:
  absl::Mutex mu_;
  EventLoop* loop_ ABSL_GUARDED_BY(mu_);
};

class HealthWatch;

// Lets the loop cancel a Watch stream that may already have ended.
struct WatchHandle {
  absl::Mutex mu;
  HealthWatch* watch ABSL_GUARDED_BY(mu) = nullptr;
  void Cancel();
};

// A grpc.health.v1 Watch stream; deletes itself when the stream ends.
class HealthWatch : public grpc::ClientReadReactor<HealthCheckResponse> {
 public:
  using OnStatus = std::function<void(HealthCheckResponse::ServingStatus)>;
  using OnDoneFn = std::function<void(grpc::Status)>;

  static std::shared_ptr<WatchHandle> Start(
      std::shared_ptr<grpc::Channel> channel, const std::string& service,
      std::shared_ptr<LoopGate> gate, OnStatus on_status, OnDoneFn on_done) {
    auto handle = std::make_shared<WatchHandle>();
    auto* watch =
        new HealthWatch(std::move(channel), std::move(gate),
                        std::move(on_status), std::move(on_done), handle);
    watch->request_.set_service(service);
    {
      absl::MutexLock lock(&handle->mu);
      handle->watch = watch;
    }
    watch->Begin();
    return handle;
  }

  void Cancel() { context_.TryCancel(); }

  void OnReadDone(bool ok) override {
    if (!ok) return;
    HealthCheckResponse::ServingStatus status = response_.status();
    gate_->Post([cb = on_status_, status] { cb(status); });
    StartRead(&response_);
  }

  void OnDone(const grpc::Status& status) override {
    {
      absl::MutexLock lock(&handle_->mu);
      handle_->watch = nullptr;
    }
    gate_->Post([cb = on_done_, status] { cb(status); });
    delete this;
  }

 private:
  HealthWatch(std::shared_ptr<grpc::Channel> channel,
              std::shared_ptr<LoopGate> gate, OnStatus on_status,
              OnDoneFn on_done, std::shared_ptr<WatchHandle> handle)
      : channel_(std::move(channel)),
        stub_(Health::NewStub(channel_)),
        gate_(std::move(gate)),
        on_status_(std::move(on_status)),
        on_done_(std::move(on_done)),
        handle_(std::move(handle)) {}

  void Begin() {
    stub_->async()->Watch(&context_, &request_, this);
    StartRead(&response_);
    StartCall();
  }

  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<Health::Stub> stub_;
  std::shared_ptr<LoopGate> gate_;
  OnStatus on_status_;
  OnDoneFn on_done_;
  std::shared_ptr<WatchHandle> handle_;
  grpc::ClientContext context_;
  HealthCheckRequest request_;
  HealthCheckResponse response_;
};

void WatchHandle::Cancel() {
  absl::MutexLock lock(&mu);
  if (watch != nullptr) watch->Cancel();
}

// Holds a stopped or failed plugin's socket so that callers, waiting for the
// plugin with wait-for-ready, fail fast with a message that says why instead
// of waiting out their deadline. Any call gets UNAVAILABLE.
class Tombstone : public grpc::CallbackGenericService {
 public:
  static std::unique_ptr<Tombstone> Raise(const std::string& path,
                                          std::string message) {
    auto tombstone =
        std::unique_ptr<Tombstone>(new Tombstone(std::move(message)));
    if (!PrepareSocketPath(path).ok()) return nullptr;
    grpc::ServerBuilder builder;
    builder.AddListeningPort(absl::StrCat("unix:", path),
                             grpc::InsecureServerCredentials());
    builder.RegisterCallbackGenericService(tombstone.get());
    tombstone->server_ = builder.BuildAndStart();
    if (tombstone->server_ == nullptr) return nullptr;
    tombstone->path_ = path;
    return tombstone;
  }

  ~Tombstone() override {
    server_->Shutdown(std::chrono::system_clock::now());
    server_->Wait();
    RemoveStaleSocket(path_).IgnoreError();
  }

  grpc::ServerGenericBidiReactor* CreateReactor(
      grpc::GenericCallbackServerContext* context) override {
    class Refusal : public grpc::ServerGenericBidiReactor {
     public:
      explicit Refusal(const std::string& message) {
        Finish(grpc::Status(grpc::StatusCode::UNAVAILABLE, message));
      }
      void OnDone() override { delete this; }
    };
    return new Refusal(message_);
  }

 private:
  explicit Tombstone(std::string message) : message_(std::move(message)) {}
  const std::string message_;
  std::string path_;
  std::unique_ptr<grpc::Server> server_;
};

}  // namespace

bool SupervisedPluginSpec::SameAs(const SupervisedPluginSpec& o) const {
  const LaunchOptions& a = launch;
  const LaunchOptions& b = o.launch;
  return a.name == b.name && a.command == b.command && a.env == b.env &&
         a.inherit_environment == b.inherit_environment &&
         a.executable_sha256 == b.executable_sha256 && a.limits == b.limits &&
         a.run_as == b.run_as && a.working_dir == b.working_dir &&
         a.socket_path == b.socket_path &&
         a.protocol_versions == b.protocol_versions &&
         a.start_timeout == b.start_timeout && a.stop_grace == b.stop_grace &&
         a.max_message_bytes == b.max_message_bytes &&
         a.output.max_line_bytes == b.output.max_line_bytes &&
         a.go_plugin.has_value() == b.go_plugin.has_value() &&
         (!a.go_plugin ||
          (a.go_plugin->magic_cookie_key == b.go_plugin->magic_cookie_key &&
           a.go_plugin->magic_cookie_value == b.go_plugin->magic_cookie_value &&
           a.go_plugin->min_port == b.go_plugin->min_port &&
           a.go_plugin->max_port == b.go_plugin->max_port)) &&
         restart == o.restart && backoff.initial == o.backoff.initial &&
         backoff.max == o.backoff.max &&
         backoff.multiplier == o.backoff.multiplier &&
         max_restarts == o.max_restarts && restart_window == o.restart_window &&
         health_interval == o.health_interval &&
         unhealthy_timeout == o.unhealthy_timeout &&
         liveness_timeout == o.liveness_timeout &&
         log_buffer_bytes == o.log_buffer_bytes &&
         log_rate_bytes == o.log_rate_bytes;
}

std::string StateName(v1::PluginState state) {
  switch (state) {
    case v1::PLUGIN_STATE_STOPPED:
      return "stopped";
    case v1::PLUGIN_STATE_STARTING:
      return "starting";
    case v1::PLUGIN_STATE_READY:
      return "ready";
    case v1::PLUGIN_STATE_UNHEALTHY:
      return "unhealthy";
    case v1::PLUGIN_STATE_BACKING_OFF:
      return "backing-off";
    case v1::PLUGIN_STATE_FAILED:
      return "failed";
    case v1::PLUGIN_STATE_STOPPING:
      return "stopping";
    default:
      return "unknown";
  }
}

std::string EventTypeName(v1::EventType type) {
  std::string name = v1::EventType_Name(type);
  absl::string_view prefix = "EVENT_TYPE_";
  if (absl::StartsWith(name, prefix)) name = name.substr(prefix.size());
  name = absl::AsciiStrToLower(name);
  absl::StrReplaceAll({{"_", "-"}}, &name);
  return name;
}

// ---------------------------------------------------------------------------

class Supervisor::Impl : public std::enable_shared_from_this<Impl> {
 public:
  Impl(EventLoop& loop, Options options)
      : loop_(loop),
        options_(std::move(options)),
        gate_(std::make_shared<LoopGate>(&loop)),
        sweep_timer_(loop.context()) {
    if (!options_.random) {
      auto engine = std::make_shared<std::mt19937_64>(std::random_device{}());
      options_.random = [engine] {
        return std::uniform_real_distribution<double>(0, 1)(*engine);
      };
    }
  }

  // Everything below runs on the loop thread unless it says otherwise.

  struct Waiter {
    // Resolves the waiter when it returns true.
    std::function<bool()> check;
  };

  struct Entry {
    SupervisedPluginSpec spec;
    PluginState state = v1::PLUGIN_STATE_STOPPED;
    bool want_running = false;
    uint64_t generation = 0;  // one per start attempt
    // Its channel() is the broker's one connection to the instance: health
    // watch and checks, the version fetch.
    std::shared_ptr<PluginProcess> process;
    std::shared_ptr<WatchHandle> watch;
    std::shared_ptr<OutputCapture> logs;
    std::unique_ptr<boost::asio::steady_timer> backoff_timer;
    std::unique_ptr<boost::asio::steady_timer> unhealthy_timer;
    std::deque<absl::Time> restart_times;  // within restart_window
    uint32_t backoff_step = 0;             // consecutive quick failures
    uint32_t restarts = 0;
    absl::Time started_at = absl::InfinitePast();
    absl::Time next_start_at = absl::InfinitePast();
    // Since when Checks have gone unanswered: when the first Check after
    // the last answer was sent; InfiniteFuture while everything is answered.
    // Liveness restarts the plugin once this is liveness_timeout old.
    absl::Time unanswered_since = absl::InfiniteFuture();
    absl::Time next_health_check = absl::InfinitePast();
    bool health_check_in_flight = false;
    // The plugin has answered our Watch stream: it reports health changes
    // itself, so checks are needed for liveness only (ProbeInterval).
    bool health_watched = false;
    std::optional<ExitStatus> last_exit;
    // Why the last exit probably happened ("memory limit 64MiB ... reached?"),
    // from DescribeLimitExit; empty when nothing points at a limit.
    std::string last_exit_reason;
    std::string last_exit_killed_for;  // ExitInfo.killed_for of last_exit
    std::string last_error;
    std::string version;
    uint32_t protocol_version = 0;
    bool stopping = false;           // an operator stop is in progress
    bool stop_when_started = false;  // stop requested during STARTING
    bool restart_after_stop = false;
    // Set when the supervisor killed it to restart it, to why: "liveness"
    // or "unhealthy" (ExitInfo.killed_for of its exit).
    std::string forced_for;
    std::vector<Waiter> waiters;
    std::unique_ptr<Tombstone> tombstone;
  };

  absl::Status Add(SupervisedPluginSpec spec) {
    if (spec.launch.name.empty()) {
      return absl::InvalidArgumentError("add plugin: the name is empty");
    }
    if (spec.launch.command.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "add plugin ", spec.launch.name, ": the command is empty"));
    }
    if (entries_.count(spec.launch.name) != 0) {
      return absl::AlreadyExistsError(absl::StrCat(
          "add plugin: a plugin named ", spec.launch.name, " already exists"));
    }
    auto entry = std::make_unique<Entry>();
    entry->spec = std::move(spec);
    OutputOptions log_options;
    log_options.max_line_bytes = entry->spec.launch.output.max_line_bytes;
    log_options.ring_bytes = entry->spec.log_buffer_bytes;
    log_options.forward_bytes_per_second = entry->spec.log_rate_bytes;
    log_options.sink = entry->spec.launch.output.sink;
    entry->logs =
        std::make_shared<OutputCapture>(entry->spec.launch.name, log_options);
    entry->backoff_timer =
        std::make_unique<boost::asio::steady_timer>(loop_.context());
    entry->unhealthy_timer =
        std::make_unique<boost::asio::steady_timer>(loop_.context());
    Entry& e = *entry;
    entries_[e.spec.launch.name] = std::move(entry);
    if (e.spec.autostart) {
      e.want_running = true;
      StartInstance(e);
    }
    RescheduleSweep();
    return absl::OkStatus();
  }

  void Remove(const std::string& name, std::function<void(absl::Status)> done) {
    Entry* e = Find(name);
    if (e == nullptr) {
      done(NotFound(name));
      return;
    }
    auto self = shared_from_this();
    OperatorStop(*e, [self, name, done](absl::StatusOr<v1::PluginStatus> s) {
      // This runs inside SetState(STOPPED), which still uses the entry (and
      // OnExit after it): erase it once that call stack has unwound.
      self->loop_.Post([self, name, done, status = s.status()] {
        self->entries_.erase(name);
        self->RescheduleSweep();
        done(status);
      });
    });
  }

  absl::Status NotFound(const std::string& name) const {
    std::vector<std::string> names;
    for (const auto& [n, e] : entries_) names.push_back(n);
    return absl::NotFoundError(
        absl::StrCat("no plugin named ", name, "; known plugins: ",
                     names.empty() ? "(none)" : absl::StrJoin(names, ", ")));
  }

  Entry* Find(const std::string& name) {
    auto it = entries_.find(name);
    return it == entries_.end() ? nullptr : it->second.get();
  }

  // The entry of `name` while `generation` is its current start attempt;
  // nullptr once it was removed or started again (a late callback's check).
  Entry* FindInstance(const std::string& name, uint64_t generation) {
    Entry* e = Find(name);
    return e != nullptr && e->generation == generation ? e : nullptr;
  }

  std::vector<std::string> Names() const {
    std::vector<std::string> names;
    for (const auto& [n, e] : entries_) names.push_back(n);
    return names;
  }

  v1::PluginStatus StatusOf(const Entry& e) const {
    v1::PluginStatus s;
    s.set_name(e.spec.launch.name);
    s.set_state(e.state);
    if (e.process && e.process->running()) {
      s.set_pid(e.process->pid());
      *s.mutable_started_at() = ToTimestamp(e.started_at);
    }
    s.set_restarts(e.restarts);
    s.set_address(absl::StrCat("unix:", e.spec.launch.socket_path));
    s.set_go_plugin(e.spec.launch.go_plugin.has_value());
    if (e.process && e.process->running()) {
      const Handshake& h = e.process->handshake();
      if (h.network != "unix" || h.address != e.spec.launch.socket_path) {
        s.set_announced_address(h.GrpcTarget());
      }
    }
    s.set_protocol_version(e.protocol_version);
    s.set_version(e.version);
    if (e.last_exit) {
      *s.mutable_last_exit() = ToExitInfo(*e.last_exit);
      s.mutable_last_exit()->set_killed_for(e.last_exit_killed_for);
    }
    s.set_last_error(e.last_error);
    for (const auto& arg : e.spec.launch.command) s.add_command(arg);
    s.set_restart_policy(e.spec.restart);
    if (e.state == v1::PLUGIN_STATE_BACKING_OFF) {
      *s.mutable_next_start_at() = ToTimestamp(e.next_start_at);
    }
    s.set_log_lines_dropped(e.logs->lines_rate_dropped() +
                            e.logs->lines_evicted());
    return s;
  }

  absl::StatusOr<v1::PluginStatus> Get(const std::string& name) {
    Entry* e = Find(name);
    if (e == nullptr) return NotFound(name);
    return StatusOf(*e);
  }

  absl::StatusOr<std::shared_ptr<grpc::Channel>> Channel(
      const std::string& name) {
    Entry* e = Find(name);
    if (e == nullptr) return NotFound(name);
    if (e->process == nullptr || !e->process->running()) {
      return absl::FailedPreconditionError(
          absl::StrCat("plugin ", name, " has no running instance (",
                       StateName(e->state), ")"));
    }
    return e->process->channel();
  }

  std::vector<v1::PluginStatus> List() {
    std::vector<v1::PluginStatus> out;
    for (const auto& [n, e] : entries_) out.push_back(StatusOf(*e));
    return out;
  }

  absl::StatusOr<v1::ResolveResponse> Resolve(const std::string& name) {
    Entry* e = Find(name);
    if (e == nullptr) return NotFound(name);
    v1::ResolveResponse r;
    r.set_name(name);
    r.set_address(absl::StrCat("unix:", e->spec.launch.socket_path));
    r.set_protocol_version(e->protocol_version);
    r.set_state(e->state);
    r.set_max_message_bytes(e->spec.launch.max_message_bytes);
    return r;
  }

  // ----------------------------------------------------------- events ---

  // `killed_for`: ExitInfo.killed_for of `exit`.
  void Emit(Entry& e, v1::EventType type, const std::string& message,
            const std::optional<ExitStatus>& exit = std::nullopt,
            std::optional<absl::Duration> delay = std::nullopt, pid_t pid = 0,
            const std::string& killed_for = "") {
    v1::Event event;
    event.set_sequence(++sequence_);
    *event.mutable_time() = ToTimestamp(absl::Now());
    event.set_plugin(e.spec.launch.name);
    event.set_type(type);
    if (pid == 0 && e.process) pid = e.process->pid();
    event.set_pid(pid);
    if (exit) {
      *event.mutable_exit() = ToExitInfo(*exit);
      event.mutable_exit()->set_killed_for(killed_for);
    }
    if (delay) {
      const int64_t nanos = absl::ToInt64Nanoseconds(*delay);
      event.mutable_delay()->set_seconds(nanos / 1000000000);
      event.mutable_delay()->set_nanos(
          static_cast<int32_t>(nanos % 1000000000));
    }
    event.set_message(message);
    {
      absl::MutexLock lock(&events_mu_);
      history_.push_back(event);
      while (history_.size() > std::max<size_t>(options_.event_history, 1)) {
        history_.pop_front();
      }
    }
    std::string text =
        absl::StrCat("plugin ", e.spec.launch.name, ": ", EventTypeName(type));
    if (pid > 0) absl::StrAppend(&text, " (pid ", pid, ")");
    if (exit) absl::StrAppend(&text, ": ", exit->ToString());
    if (delay) {
      absl::StrAppend(&text, ": next start in ", absl::FormatDuration(*delay));
    }
    if (!message.empty()) absl::StrAppend(&text, ": ", message);
    log::Level level = log::Level::kInfo;
    if (type == v1::EVENT_TYPE_FAILED || type == v1::EVENT_TYPE_START_FAILED ||
        type == v1::EVENT_TYPE_UNHEALTHY ||
        (type == v1::EVENT_TYPE_EXITED && exit && !e.stopping)) {
      level = log::Level::kWarning;
    }
    log::Write(level, "plugd", text);
    std::vector<std::function<void(const v1::Event&)>> callbacks;
    for (const auto& [id, callback] : subscribers_)
      callbacks.push_back(callback);
    for (const auto& callback : callbacks) callback(event);
  }

  std::vector<v1::Event> Events(const std::string& plugin, size_t max) const {
    absl::MutexLock lock(&events_mu_);
    std::vector<v1::Event> out;
    for (auto it = history_.rbegin(); it != history_.rend(); ++it) {
      if (!plugin.empty() && it->plugin() != plugin) continue;
      if (max != 0 && out.size() >= max) break;
      out.push_back(*it);
    }
    std::reverse(out.begin(), out.end());
    return out;
  }

  int Subscribe(std::function<void(const v1::Event&)> callback) {
    int id = ++next_subscriber_;
    subscribers_[id] = std::move(callback);
    return id;
  }

  void Unsubscribe(int id) { subscribers_.erase(id); }

  // ------------------------------------------------------------ state ---

  void SetState(Entry& e, PluginState state) {
    e.state = state;
    if ((state == v1::PLUGIN_STATE_STOPPED ||
         state == v1::PLUGIN_STATE_FAILED) &&
        !e.restart_after_stop && !shutting_down_ && e.tombstone == nullptr) {
      std::string message =
          absl::StrCat("plugin ", e.spec.launch.name, " is ", StateName(state));
      if (e.last_exit) {
        absl::StrAppend(&message, "; its last process ",
                        e.last_exit->ToString());
        if (!e.last_exit_reason.empty()) {
          absl::StrAppend(&message, " (", e.last_exit_reason, ")");
        }
      }
      if (!e.last_error.empty()) {
        absl::StrAppend(&message, "; last error: ", e.last_error);
      }
      absl::StrAppend(&message, "; start it with `plugctl start ",
                      e.spec.launch.name, "`");
      e.tombstone = Tombstone::Raise(e.spec.launch.socket_path, message);
    }
    // Resolve waiters; a waiter's callback may add new waiters.
    std::vector<Waiter> waiters = std::move(e.waiters);
    e.waiters.clear();
    std::vector<Waiter> keep;
    for (auto& w : waiters) {
      if (!w.check()) keep.push_back(std::move(w));
    }
    for (auto& w : e.waiters) keep.push_back(std::move(w));
    e.waiters = std::move(keep);
  }

  void AddWaiter(Entry& e, std::function<bool()> check) {
    if (check()) return;
    e.waiters.push_back(Waiter{std::move(check)});
  }

  // Starts a new instance (STARTING). The plugin's previous process group is
  // gone by now: the launcher reports an exit only after that.
  void StartInstance(Entry& e) {
    e.tombstone.reset();  // frees the socket for the new process
    e.backoff_timer->cancel();
    e.stopping = false;
    e.stop_when_started = false;
    e.forced_for.clear();
    const uint64_t generation = ++e.generation;
    const std::string name = e.spec.launch.name;
    SetState(e, v1::PLUGIN_STATE_STARTING);
    Emit(e, v1::EVENT_TYPE_STARTING, "", std::nullopt, std::nullopt, 0);

    LaunchOptions launch = e.spec.launch;
    std::shared_ptr<OutputCapture> logs = e.logs;
    launch.output.ring_bytes = kInstanceRingBytes;
    launch.output.forward_bytes_per_second = 0;
    launch.output.sink = [logs](const std::string&, const OutputLine& line) {
      logs->Add(line);
    };
    std::weak_ptr<Impl> weak = shared_from_this();
    PluginProcess::AsyncLaunch(
        loop_, std::move(launch),
        [weak, name,
         generation](absl::StatusOr<std::shared_ptr<PluginProcess>> result) {
          if (auto self = weak.lock()) {
            self->OnLaunched(name, generation, std::move(result));
          } else if (result.ok()) {
            (*result)->AsyncStop(std::nullopt, [](const ExitStatus&) {});
          }
        });
  }

  void OnLaunched(const std::string& name, uint64_t generation,
                  absl::StatusOr<std::shared_ptr<PluginProcess>> result) {
    Entry* found = FindInstance(name, generation);
    if (found == nullptr) {
      // Removed or superseded while starting: nobody wants this process.
      if (result.ok()) {
        (*result)->AsyncStop(std::nullopt, [](const ExitStatus&) {});
      }
      return;
    }
    Entry& e = *found;
    if (!result.ok()) {
      e.last_error = std::string(result.status().message());
      // With how the process ended, if it had announced its address: a
      // crash or a hang (no answer to the connect check within the start
      // timeout) then counts for hosts as one after the start (CrashCount).
      const bool timed_out =
          result.status().code() == absl::StatusCode::kDeadlineExceeded;
      Emit(e, v1::EVENT_TYPE_START_FAILED, e.last_error,
           StartExit(result.status()), std::nullopt, StartPid(result.status()),
           timed_out ? "start_timeout" : "");
      if (e.stop_when_started || !e.want_running) {
        e.stop_when_started = false;
        SetState(e, v1::PLUGIN_STATE_STOPPED);
        Emit(e, v1::EVENT_TYPE_STOPPED, "");
        return;
      }
      if (result.status().GetPayload(kExecutableMismatchPayload)) {
        // The file will not change back by itself: retrying would only
        // repeat the refusal (forever with max_restarts 0). Failed until an
        // operator fixes the file or the pin and starts it.
        e.want_running = false;
        SetState(e, v1::PLUGIN_STATE_FAILED);
        Emit(e, v1::EVENT_TYPE_FAILED,
             absl::StrCat("the executable does not match its sha256 pin; not "
                          "restarted: fix the file or the pin, then `plugctl "
                          "start ",
                          name, "`"));
        return;
      }
      DecideRestart(e, /*failure=*/true, absl::ZeroDuration());
      return;
    }
    e.process = *result;
    const pid_t pid = e.process->pid();
    if (options_.on_group_started) options_.on_group_started(pid);
    e.started_at = absl::Now();
    e.protocol_version = e.process->handshake().app_version;
    e.last_error.clear();
    std::weak_ptr<Impl> weak = shared_from_this();
    e.process->OnExit([weak, name, generation, pid](const ExitStatus& status) {
      if (auto self = weak.lock()) {
        self->OnExit(name, generation, pid, status);
      }
    });
    if (e.stop_when_started) {
      e.stop_when_started = false;
      BeginStop(e);
      return;
    }
    e.unanswered_since = absl::InfiniteFuture();
    e.next_health_check = absl::Now() + e.spec.health_interval;
    e.health_check_in_flight = false;
    e.health_watched = false;
    SetState(e, v1::PLUGIN_STATE_READY);
    Emit(e, v1::EVENT_TYPE_READY, "");
    StartWatch(e);
    // go-plugin plugins have no plugd.v1.Control to say their version.
    if (!e.spec.launch.go_plugin) FetchVersion(e);
  }

  void OnExit(const std::string& name, uint64_t generation, pid_t pid,
              const ExitStatus& status) {
    if (options_.on_group_gone) options_.on_group_gone(pid);
    Entry* found = FindInstance(name, generation);
    if (found == nullptr) return;
    Entry& e = *found;
    const absl::Duration uptime = absl::Now() - e.started_at;
    e.last_exit = status;
    e.last_exit_killed_for = e.forced_for;
    if (e.watch) e.watch->Cancel();
    e.watch.reset();
    e.unhealthy_timer->cancel();
    std::string why;
    // Not when the broker killed it (a stop, a liveness or health restart):
    // a SIGKILL then says nothing about limits.
    if (!e.spec.launch.limits.empty() && !e.stopping && e.forced_for.empty()) {
      std::vector<std::string> last;
      for (const OutputLine& line : e.logs->Tail(20)) {
        last.push_back(line.text);
      }
      why = DescribeLimitExit(e.spec.launch.limits, status, last);
    }
    e.last_exit_reason = why;
    Emit(e, v1::EVENT_TYPE_EXITED, why, status, std::nullopt, pid,
         e.forced_for);
    e.process.reset();
    if (e.stopping || !e.want_running) {
      e.stopping = false;
      SetState(e, v1::PLUGIN_STATE_STOPPED);
      Emit(e, v1::EVENT_TYPE_STOPPED, "", std::nullopt, std::nullopt, pid);
      if (e.restart_after_stop) {
        e.restart_after_stop = false;
        e.want_running = true;
        StartInstance(e);
      }
      return;
    }
    const bool failure = !e.forced_for.empty() || !status.success();
    DecideRestart(e, failure, uptime);
  }

  // After an unrequested exit or a failed start: restart, or give up.
  void DecideRestart(Entry& e, bool failure, absl::Duration uptime) {
    const std::string& name = e.spec.launch.name;
    if (e.spec.restart == v1::RESTART_POLICY_NEVER ||
        (e.spec.restart == v1::RESTART_POLICY_ON_FAILURE && !failure)) {
      e.want_running = false;
      if (failure) {
        SetState(e, v1::PLUGIN_STATE_FAILED);
        Emit(e, v1::EVENT_TYPE_FAILED,
             absl::StrCat("restart policy is ",
                          e.spec.restart == v1::RESTART_POLICY_NEVER
                              ? "never"
                              : "on-failure",
                          "; `plugctl start ", name, "` starts it again"));
      } else {
        SetState(e, v1::PLUGIN_STATE_STOPPED);
        Emit(e, v1::EVENT_TYPE_STOPPED,
             "exited cleanly; not restarted by its restart policy");
      }
      return;
    }
    const absl::Time now = absl::Now();
    while (!e.restart_times.empty() &&
           now - e.restart_times.front() > e.spec.restart_window) {
      e.restart_times.pop_front();
    }
    if (e.spec.max_restarts > 0 &&
        e.restart_times.size() >= e.spec.max_restarts) {
      e.want_running = false;
      SetState(e, v1::PLUGIN_STATE_FAILED);
      Emit(e, v1::EVENT_TYPE_FAILED,
           absl::StrCat("restarted ", e.restart_times.size(), " times within ",
                        absl::FormatDuration(e.spec.restart_window),
                        "; giving up until an operator runs `plugctl restart ",
                        name, "`", e.last_error.empty() ? "" : "; last error: ",
                        e.last_error));
      return;
    }
    // A plugin that stayed up past the window starts over without delay.
    if (uptime >= e.spec.restart_window) e.backoff_step = 0;
    absl::Duration delay = absl::ZeroDuration();
    if (e.backoff_step > 0) {
      const BackoffPolicy& b = e.spec.backoff;
      double factor = std::pow(std::max(b.multiplier, 1.0),
                               static_cast<double>(e.backoff_step - 1));
      delay = std::min(b.max, b.initial * factor);
      const double jitter = (options_.random() * 2 - 1) * b.jitter;
      delay = std::max(absl::ZeroDuration(), delay * (1 + jitter));
    }
    ++e.backoff_step;
    e.restart_times.push_back(now);
    ++e.restarts;
    e.next_start_at = now + delay;
    SetState(e, v1::PLUGIN_STATE_BACKING_OFF);
    Emit(e, v1::EVENT_TYPE_BACKING_OFF, "", std::nullopt, delay);
    const std::string key = name;
    const uint64_t generation = e.generation;
    std::weak_ptr<Impl> weak = shared_from_this();
    e.backoff_timer->expires_after(ToChrono(delay));
    e.backoff_timer->async_wait([weak, key, generation](
                                    const boost::system::error_code& ec) {
      if (ec) return;
      auto self = weak.lock();
      if (!self) return;
      Entry* entry = self->FindInstance(key, generation);
      if (entry == nullptr || entry->state != v1::PLUGIN_STATE_BACKING_OFF ||
          !entry->want_running) {
        return;
      }
      self->StartInstance(*entry);
    });
  }

  // ----------------------------------------------------------- health ---

  void StartWatch(Entry& e) {
    const std::string name = e.spec.launch.name;
    const uint64_t generation = e.generation;
    std::weak_ptr<Impl> weak = shared_from_this();
    e.watch = HealthWatch::Start(
        e.process->channel(), e.spec.launch.health_service(), gate_,
        [weak, name, generation](HealthCheckResponse::ServingStatus status) {
          if (auto self = weak.lock()) {
            self->OnHealth(name, generation, status, /*from_watch=*/true);
          }
        },
        [weak, name, generation](grpc::Status) {
          // UNIMPLEMENTED (no Watch): the liveness sweep's Check covers it.
          // Anything else: the plugin is going away (its exit is handled),
          // or it ended the stream and lives on. Either way health changes
          // are no longer pushed: back to a Check every health_interval.
          auto self = weak.lock();
          if (!self) return;
          if (Entry* e = self->FindInstance(name, generation)) {
            e->health_watched = false;
            e->next_health_check = std::min(
                e->next_health_check, absl::Now() + e->spec.health_interval);
          }
        });
  }

  // An answer to a Check, or a status on the Watch stream (`from_watch`).
  void OnHealth(const std::string& name, uint64_t generation,
                HealthCheckResponse::ServingStatus status, bool from_watch) {
    Entry* e = FindInstance(name, generation);
    if (e == nullptr || !e->process) return;
    if (from_watch) e->health_watched = true;
    e->unanswered_since = absl::InfiniteFuture();
    if (status == HealthCheckResponse::SERVING) {
      if (e->state == v1::PLUGIN_STATE_UNHEALTHY) {
        e->unhealthy_timer->cancel();
        SetState(*e, v1::PLUGIN_STATE_READY);
        Emit(*e, v1::EVENT_TYPE_HEALTHY, "");
      }
      return;
    }
    if (e->state != v1::PLUGIN_STATE_READY) return;
    const std::string what = HealthCheckResponse::ServingStatus_Name(status);
    SetState(*e, v1::PLUGIN_STATE_UNHEALTHY);
    Emit(*e, v1::EVENT_TYPE_UNHEALTHY,
         absl::StrCat("health is ", what, "; restarting it if it stays so for ",
                      absl::FormatDuration(e->spec.unhealthy_timeout)));
    std::weak_ptr<Impl> weak = shared_from_this();
    e->unhealthy_timer->expires_after(ToChrono(e->spec.unhealthy_timeout));
    e->unhealthy_timer->async_wait([weak, name, generation](
                                       const boost::system::error_code& ec) {
      if (ec) return;
      auto self = weak.lock();
      if (!self) return;
      Entry* entry = self->FindInstance(name, generation);
      if (entry == nullptr || entry->state != v1::PLUGIN_STATE_UNHEALTHY) {
        return;
      }
      self->ForceRestart(
          *entry, "unhealthy",
          absl::StrCat("unhealthy for ",
                       absl::FormatDuration(entry->spec.unhealthy_timeout)));
    });
  }

  // Kills a running instance so that its exit leads to a restart.
  // `kind`: "liveness" or "unhealthy" (ExitInfo.killed_for of the exit).
  void ForceRestart(Entry& e, const char* kind, const std::string& reason) {
    if (!e.process) return;
    e.forced_for = kind;
    e.last_error = reason;
    PLUGD_LOG(WARNING) << "plugin " << e.spec.launch.name << " (pid "
                       << e.process->pid() << "): " << reason
                       << "; killing it to restart it";
    e.process->Signal(SIGKILL).IgnoreError();
  }

  // One timer for every plugin's liveness checks, so the number of idle
  // wake-ups does not grow with the number of plugins.
  void RescheduleSweep() {
    absl::Duration interval = absl::InfiniteDuration();
    for (const auto& [n, e] : entries_) {
      interval = std::min(interval, e->spec.health_interval);
    }
    if (interval == absl::InfiniteDuration()) {
      sweep_timer_.cancel();
      sweep_interval_ = interval;
      return;
    }
    interval = std::max(interval, absl::Milliseconds(50));
    if (interval == sweep_interval_) return;
    sweep_interval_ = interval;
    ArmSweep();
  }

  void ArmSweep() {
    std::weak_ptr<Impl> weak = shared_from_this();
    sweep_timer_.expires_after(ToChrono(sweep_interval_));
    sweep_timer_.async_wait([weak](const boost::system::error_code& ec) {
      if (ec) return;
      if (auto self = weak.lock()) {
        self->Sweep();
        self->ArmSweep();
      }
    });
  }

  void Sweep() {
    const absl::Time now = absl::Now();
    for (auto& [name, entry] : entries_) {
      Entry& e = *entry;
      if (!e.process || (e.state != v1::PLUGIN_STATE_READY &&
                         e.state != v1::PLUGIN_STATE_UNHEALTHY)) {
        continue;
      }
      if (now - e.unanswered_since > e.spec.liveness_timeout) {
        ForceRestart(
            e, "liveness",
            absl::StrCat("no answer to health checks for ",
                         absl::FormatDuration(now - e.unanswered_since),
                         " (liveness_timeout ",
                         absl::FormatDuration(e.spec.liveness_timeout), ")"));
        continue;
      }
      if (!e.health_check_in_flight && now >= e.next_health_check) {
        SendCheck(e);
      }
    }
  }

  // How often a plugin is sent a Check. A plugin whose Watch stream answers
  // pushes every health change itself; its Checks only prove it is not hung,
  // and for that one every liveness_timeout / 2 is enough: it is restarted
  // once a Check has gone unanswered for liveness_timeout, whatever the
  // rate. This keeps idle wake-ups per plugin low (docs/benchmarks.md,
  // scale).
  static absl::Duration ProbeInterval(const Entry& e) {
    if (!e.health_watched) return e.spec.health_interval;
    return std::max(e.spec.health_interval, e.spec.liveness_timeout / 2);
  }

  // No deadline: a Check that is not answered is what liveness_timeout is
  // for, and a per-call deadline timer doubled the idle wake-ups of the
  // callback threads (measured with 200 plugins: 324 -> 677 /s).
  void SendCheck(Entry& e) {
    struct Call {
      grpc::ClientContext context;
      HealthCheckRequest request;
      HealthCheckResponse response;
      std::unique_ptr<Health::Stub> stub;
    };
    auto call = std::make_shared<Call>();
    call->request.set_service(e.spec.launch.health_service());
    call->stub = Health::NewStub(e.process->channel());
    e.health_check_in_flight = true;
    const absl::Time now = absl::Now();
    if (e.unanswered_since == absl::InfiniteFuture()) e.unanswered_since = now;
    e.next_health_check = now + ProbeInterval(e);
    const std::string name = e.spec.launch.name;
    const uint64_t generation = e.generation;
    std::weak_ptr<Impl> weak = shared_from_this();
    std::shared_ptr<LoopGate> gate = gate_;
    call->stub->async()->Check(
        &call->context, &call->request, &call->response,
        [call, gate, weak, name, generation](const grpc::Status& status) {
          gate->Post([call, weak, name, generation, status] {
            auto self = weak.lock();
            if (!self) return;
            Entry* e = self->FindInstance(name, generation);
            if (e == nullptr) return;
            e->health_check_in_flight = false;
            if (status.ok()) {
              self->OnHealth(name, generation, call->response.status(),
                             /*from_watch=*/false);
            } else if (status.error_code() == grpc::StatusCode::UNIMPLEMENTED) {
              // No health service at all: being connected is all we learn.
              e->unanswered_since = absl::InfiniteFuture();
            }
          });
        });
  }

  void FetchVersion(Entry& e) {
    struct Call {
      grpc::ClientContext context;
      v1::DescribeRequest request;
      v1::DescribeResponse response;
      std::unique_ptr<v1::Control::Stub> stub;
    };
    auto call = std::make_shared<Call>();
    call->stub = v1::Control::NewStub(e.process->channel());
    call->context.set_deadline(
        absl::ToChronoTime(absl::Now() + absl::Seconds(5)));
    const std::string name = e.spec.launch.name;
    const uint64_t generation = e.generation;
    std::weak_ptr<Impl> weak = shared_from_this();
    std::shared_ptr<LoopGate> gate = gate_;
    call->stub->async()->Describe(
        &call->context, &call->request, &call->response,
        [call, gate, weak, name, generation](const grpc::Status& status) {
          if (!status.ok()) return;
          gate->Post([call, weak, name, generation] {
            auto self = weak.lock();
            if (!self) return;
            Entry* e = self->FindInstance(name, generation);
            if (e == nullptr) return;
            e->version = call->response.version();
          });
        });
  }

  // -------------------------------------------------------- operators ---

  void BeginStop(Entry& e) {
    e.stopping = true;
    if (e.watch) e.watch->Cancel();  // our Watch must not hold its shutdown
    e.watch.reset();
    e.unhealthy_timer->cancel();
    SetState(e, v1::PLUGIN_STATE_STOPPING);
    Emit(e, v1::EVENT_TYPE_STOPPING, "");
    // The exit callback (OnExit) finishes the stop.
    e.process->AsyncStop(std::nullopt, [](const ExitStatus&) {});
  }

  // Stops and keeps stopped. `done` gets the status once STOPPED.
  void OperatorStop(Entry& e, StatusCallback done) {
    e.want_running = false;
    e.restart_after_stop = false;
    e.backoff_timer->cancel();
    switch (e.state) {
      case v1::PLUGIN_STATE_READY:
      case v1::PLUGIN_STATE_UNHEALTHY:
        BeginStop(e);
        break;
      case v1::PLUGIN_STATE_STARTING:
        e.stop_when_started = true;
        break;
      case v1::PLUGIN_STATE_STOPPING:
        break;
      case v1::PLUGIN_STATE_BACKING_OFF:
      case v1::PLUGIN_STATE_FAILED:
        SetState(e, v1::PLUGIN_STATE_STOPPED);
        Emit(e, v1::EVENT_TYPE_STOPPED, "");
        break;
      default:
        break;
    }
    Entry* entry = &e;
    AddWaiter(e, [this, entry, done] {
      if (entry->state != v1::PLUGIN_STATE_STOPPED) return false;
      done(StatusOf(*entry));
      return true;
    });
  }

  // Starts (or restarts, when `restart`) and reports READY or why not.
  void OperatorStart(Entry& e, bool restart, StatusCallback done) {
    e.want_running = true;
    e.restart_times.clear();
    e.backoff_step = 0;
    e.restarts = 0;
    uint64_t first_generation = e.generation + 1;
    switch (e.state) {
      case v1::PLUGIN_STATE_READY:
      case v1::PLUGIN_STATE_UNHEALTHY:
        if (!restart) {
          done(StatusOf(e));
          return;
        }
        e.restart_after_stop = true;
        BeginStop(e);
        break;
      case v1::PLUGIN_STATE_STARTING:
        if (restart) {
          e.stop_when_started = true;
          e.restart_after_stop = true;
        } else {
          first_generation = e.generation;
        }
        break;
      case v1::PLUGIN_STATE_STOPPING:
        e.restart_after_stop = true;
        break;
      default:  // stopped, failed, backing off
        StartInstance(e);
        break;
    }
    Entry* entry = &e;
    AddWaiter(e, [this, entry, first_generation, done] {
      if (entry->generation < first_generation) return false;
      switch (entry->state) {
        case v1::PLUGIN_STATE_READY:
        case v1::PLUGIN_STATE_UNHEALTHY:
          done(StatusOf(*entry));
          return true;
        case v1::PLUGIN_STATE_FAILED:
        case v1::PLUGIN_STATE_STOPPED:
        case v1::PLUGIN_STATE_BACKING_OFF:
          done(absl::UnavailableError(absl::StrCat(
              "plugin ", entry->spec.launch.name, " did not start: ",
              entry->last_error.empty() ? StateName(entry->state)
                                        : entry->last_error)));
          return true;
        default:
          return false;
      }
    });
  }

  void StopAll(std::function<void()> done) {
    shutting_down_ = true;
    for (auto& [name, e] : entries_) e->tombstone.reset();
    auto remaining = std::make_shared<size_t>(entries_.size());
    if (*remaining == 0) {
      done();
      return;
    }
    for (auto& [name, e] : entries_) {
      OperatorStop(*e, [remaining, done](absl::StatusOr<v1::PluginStatus>) {
        if (--*remaining == 0) done();
      });
    }
  }

  void Shutdown() {
    shutting_down_ = true;
    sweep_timer_.cancel();
    for (auto& [name, e] : entries_) {
      e->tombstone.reset();
      if (e->watch) e->watch->Cancel();
      e->backoff_timer->cancel();
      e->unhealthy_timer->cancel();
    }
    gate_->Close();
    entries_.clear();
  }

  absl::StatusOr<std::shared_ptr<OutputCapture>> Logs(const std::string& name) {
    Entry* e = Find(name);
    if (e == nullptr) return NotFound(name);
    return e->logs;
  }

 private:
  EventLoop& loop_;
  Options options_;
  std::shared_ptr<LoopGate> gate_;
  boost::asio::steady_timer sweep_timer_;
  absl::Duration sweep_interval_ = absl::InfiniteDuration();
  bool shutting_down_ = false;
  std::map<std::string, std::unique_ptr<Entry>> entries_;
  std::map<int, std::function<void(const v1::Event&)>> subscribers_;
  int next_subscriber_ = 0;
  uint64_t sequence_ = 0;
  mutable absl::Mutex events_mu_;
  std::deque<v1::Event> history_ ABSL_GUARDED_BY(events_mu_);
};

// ---------------------------------------------------------------------------

Supervisor::Supervisor() : Supervisor(Options()) {}

Supervisor::Supervisor(Options options)
    : loop_(std::make_unique<EventLoop>()),
      impl_(std::make_shared<Impl>(*loop_, std::move(options))) {
  // Health watches delete their channel in OnDone, on gRPC's callback
  // threads (see PinCallbackCompletionQueue).
  PinCallbackCompletionQueue();
}

Supervisor::~Supervisor() {
  StopAll();
  loop_->Run([this] { impl_->Shutdown(); });
  // Handlers still queued hold only weak references to impl_.
  loop_->Run([this] { impl_.reset(); });
  loop_.reset();
}

absl::Status Supervisor::Add(SupervisedPluginSpec spec) {
  return loop_->Run([&] { return impl_->Add(std::move(spec)); });
}

absl::Status Supervisor::Remove(const std::string& name) {
  std::promise<absl::Status> result;
  loop_->Post([&] {
    impl_->Remove(name, [&](absl::Status s) { result.set_value(s); });
  });
  return result.get_future().get();
}

std::vector<std::string> Supervisor::Names() const {
  return loop_->Run([this] { return impl_->Names(); });
}

absl::StatusOr<SupervisedPluginSpec> Supervisor::Spec(
    const std::string& name) const {
  return loop_->Run([&]() -> absl::StatusOr<SupervisedPluginSpec> {
    Impl::Entry* e = impl_->Find(name);
    if (e == nullptr) return impl_->NotFound(name);
    return e->spec;
  });
}

absl::StatusOr<v1::PluginStatus> Supervisor::Get(
    const std::string& name) const {
  return loop_->Run([&] { return impl_->Get(name); });
}

absl::StatusOr<std::shared_ptr<grpc::Channel>> Supervisor::Channel(
    const std::string& name) const {
  return loop_->Run([&] { return impl_->Channel(name); });
}

std::vector<v1::PluginStatus> Supervisor::List() const {
  return loop_->Run([&] { return impl_->List(); });
}

absl::StatusOr<v1::ResolveResponse> Supervisor::Resolve(
    const std::string& name) const {
  return loop_->Run([&] { return impl_->Resolve(name); });
}

void Supervisor::AsyncStart(const std::string& name, StatusCallback done) {
  std::shared_ptr<Impl> impl = impl_;
  loop_->Post([impl, name, done] {
    Impl::Entry* e = impl->Find(name);
    if (e == nullptr) return done(impl->NotFound(name));
    impl->OperatorStart(*e, /*restart=*/false, done);
  });
}

void Supervisor::AsyncStop(const std::string& name, StatusCallback done) {
  std::shared_ptr<Impl> impl = impl_;
  loop_->Post([impl, name, done] {
    Impl::Entry* e = impl->Find(name);
    if (e == nullptr) return done(impl->NotFound(name));
    impl->OperatorStop(*e, done);
  });
}

void Supervisor::AsyncRestart(const std::string& name, StatusCallback done) {
  std::shared_ptr<Impl> impl = impl_;
  loop_->Post([impl, name, done] {
    Impl::Entry* e = impl->Find(name);
    if (e == nullptr) return done(impl->NotFound(name));
    impl->OperatorStart(*e, /*restart=*/true, done);
  });
}

namespace {
absl::StatusOr<v1::PluginStatus> Block(
    const std::function<void(Supervisor::StatusCallback)>& start) {
  auto result =
      std::make_shared<std::promise<absl::StatusOr<v1::PluginStatus>>>();
  start([result](absl::StatusOr<v1::PluginStatus> s) {
    result->set_value(std::move(s));
  });
  return result->get_future().get();
}
}  // namespace

absl::StatusOr<v1::PluginStatus> Supervisor::Start(const std::string& name) {
  return Block([&](StatusCallback done) { AsyncStart(name, done); });
}

absl::StatusOr<v1::PluginStatus> Supervisor::Stop(const std::string& name) {
  return Block([&](StatusCallback done) { AsyncStop(name, done); });
}

absl::StatusOr<v1::PluginStatus> Supervisor::Restart(const std::string& name) {
  return Block([&](StatusCallback done) { AsyncRestart(name, done); });
}

absl::StatusOr<v1::PluginStatus> Supervisor::WaitForState(
    const std::string& name, const std::set<v1::PluginState>& states,
    absl::Duration timeout) {
  struct Shared {
    absl::Mutex mu;
    bool done ABSL_GUARDED_BY(mu) = false;
    absl::StatusOr<v1::PluginStatus> result ABSL_GUARDED_BY(mu);
  };
  auto shared = std::make_shared<Shared>();
  std::shared_ptr<Impl> impl = impl_;
  loop_->Post([impl, name, states, shared] {
    Impl::Entry* e = impl->Find(name);
    if (e == nullptr) {
      absl::MutexLock lock(&shared->mu);
      shared->result = impl->NotFound(name);
      shared->done = true;
      return;
    }
    impl->AddWaiter(*e, [impl, e, states, shared] {
      if (states.count(e->state) == 0) return false;
      absl::MutexLock lock(&shared->mu);
      shared->result = impl->StatusOf(*e);
      shared->done = true;
      return true;
    });
  });
  {
    absl::MutexLock lock(&shared->mu);
    if (shared->mu.AwaitWithTimeout(absl::Condition(&shared->done), timeout)) {
      return shared->result;
    }
  }
  absl::StatusOr<v1::PluginStatus> now = Get(name);
  return absl::DeadlineExceededError(
      absl::StrCat("plugin ", name, " did not reach the expected state within ",
                   absl::FormatDuration(timeout), "; it is ",
                   now.ok() ? StateName(now->state())
                            : std::string(now.status().message())));
}

void Supervisor::StopAll() {
  std::promise<void> done;
  std::shared_ptr<Impl> impl = impl_;
  loop_->Post([impl, &done] { impl->StopAll([&done] { done.set_value(); }); });
  done.get_future().wait();
}

std::vector<v1::Event> Supervisor::Events(const std::string& plugin,
                                          size_t max) const {
  return impl_->Events(plugin, max);
}

int Supervisor::SubscribeEvents(
    std::function<void(const v1::Event&)> callback) {
  return loop_->Run([&] { return impl_->Subscribe(std::move(callback)); });
}

void Supervisor::UnsubscribeEvents(int id) {
  loop_->Run([&] { impl_->Unsubscribe(id); });
}

absl::StatusOr<std::shared_ptr<OutputCapture>> Supervisor::Logs(
    const std::string& name) const {
  return loop_->Run([&] { return impl_->Logs(name); });
}

}  // namespace plugd::broker
