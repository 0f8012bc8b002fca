#include "fake_broker.h"

#include <grpcpp/security/server_credentials.h>
#include <grpcpp/server_builder.h>

#include <cstdio>
#include <cstdlib>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "plugd/common/value.h"

namespace plugd::plugctl::testing {
namespace {

using plugd::v1::PluginStatus;

google::protobuf::Timestamp Ts(absl::Time t) {
  google::protobuf::Timestamp ts;
  const int64_t ns = absl::ToUnixNanos(t);
  ts.set_seconds(ns / 1000000000);
  ts.set_nanos(static_cast<int32_t>(ns % 1000000000));
  return ts;
}

// A fixed instant for logs and events, so their text is predictable:
// 2026-11-25T10:48:35.123Z.
absl::Time Fixed(absl::Duration plus = absl::ZeroDuration()) {
  return absl::FromUnixMillis(1795603715123) + plus;
}

plugd::v1::ListPluginsResponse CannedPlugins() {
  plugd::v1::ListPluginsResponse list;
  const absl::Time now = absl::Now();

  PluginStatus* alpha = list.add_plugins();
  alpha->set_name("alpha");
  alpha->set_state(plugd::v1::PLUGIN_STATE_READY);
  alpha->set_pid(4242);
  *alpha->mutable_started_at() = Ts(now - absl::Seconds(312));
  alpha->set_address("unix:/run/plugd/alpha.sock");
  alpha->set_protocol_version(1);
  alpha->set_version("1.2.0");
  alpha->add_command("/usr/lib/plugd/plugd-alpha");
  alpha->add_command("--verbose");
  alpha->set_restart_policy(plugd::v1::RESTART_POLICY_ALWAYS);

  PluginStatus* beta = list.add_plugins();
  beta->set_name("beta");
  beta->set_state(plugd::v1::PLUGIN_STATE_BACKING_OFF);
  beta->set_restarts(3);
  beta->set_address("unix:/run/plugd/beta-long-name.sock");
  beta->set_protocol_version(1);
  beta->set_version("0.9.1-rc1");
  beta->mutable_last_exit()->set_signaled(true);
  beta->mutable_last_exit()->set_signal(9);
  beta->mutable_last_exit()->set_text("killed by signal 9 (SIGKILL)");
  beta->set_last_error(
      "no answer to health checks for 5.2s (liveness_timeout 5s)");
  beta->add_command("/usr/lib/plugd/plugd-beta");
  beta->set_restart_policy(plugd::v1::RESTART_POLICY_ON_FAILURE);
  *beta->mutable_next_start_at() = Ts(now + absl::Seconds(30));
  beta->set_log_lines_dropped(7);

  PluginStatus* gamma = list.add_plugins();
  gamma->set_name("gamma");
  gamma->set_state(plugd::v1::PLUGIN_STATE_STOPPED);
  gamma->set_address("unix:/run/plugd/gamma.sock");
  gamma->add_command("/usr/lib/plugd/plugd-gamma");
  gamma->set_restart_policy(plugd::v1::RESTART_POLICY_NEVER);
  return list;
}

std::vector<plugd::v1::Event> CannedEvents() {
  std::vector<plugd::v1::Event> events;
  auto add = [&](const std::string& plugin, plugd::v1::EventType type,
                 int64_t pid) -> plugd::v1::Event& {
    plugd::v1::Event& e = events.emplace_back();
    e.set_sequence(events.size());
    *e.mutable_time() = Ts(Fixed(absl::Seconds(events.size())));
    e.set_plugin(plugin);
    e.set_type(type);
    e.set_pid(pid);
    return e;
  };
  add("alpha", plugd::v1::EVENT_TYPE_STARTING, 4242);
  add("alpha", plugd::v1::EVENT_TYPE_READY, 4242);
  plugd::v1::Event& exited = add("beta", plugd::v1::EVENT_TYPE_EXITED, 4300);
  exited.mutable_exit()->set_signaled(true);
  exited.mutable_exit()->set_signal(9);
  exited.mutable_exit()->set_text("killed by signal 9 (SIGKILL)");
  add("beta", plugd::v1::EVENT_TYPE_BACKING_OFF, 0)
      .mutable_delay()
      ->set_nanos(500000000);
  add("beta", plugd::v1::EVENT_TYPE_START_FAILED, 4301)
      .set_message("no handshake within 5s; it printed: \"bad config\"");
  return events;
}

// Waits until the client cancels the call (or the server shuts down). The
// sync API offers no notification, so this checks often, with a bound.
void AwaitCancelled(grpc::ServerContext* context) {
  const absl::Time give_up = absl::Now() + absl::Seconds(30);
  while (!context->IsCancelled() && absl::Now() < give_up) {
    absl::SleepFor(absl::Milliseconds(2));
  }
}

}  // namespace

FakeBroker::FakeBroker(const std::string& path) : plugins_(CannedPlugins()) {
  grpc::ServerBuilder builder;
  builder.AddListeningPort(absl::StrCat("unix:", path),
                           grpc::InsecureServerCredentials());
  builder.RegisterService(this);
  server_ = builder.BuildAndStart();
  if (server_ == nullptr) {
    std::fprintf(stderr, "FakeBroker: cannot serve on %s\n", path.c_str());
    std::abort();
  }
}

FakeBroker::~FakeBroker() {
  server_->Shutdown(absl::ToChronoTime(absl::Now() + absl::Seconds(1)));
  server_->Wait();
}

plugd::v1::TailLogsRequest FakeBroker::last_tail_logs() const {
  absl::MutexLock lock(&mu_);
  return last_tail_logs_;
}
plugd::v1::WatchEventsRequest FakeBroker::last_watch_events() const {
  absl::MutexLock lock(&mu_);
  return last_watch_events_;
}
plugd::v1::CallPluginRequest FakeBroker::last_call() const {
  absl::MutexLock lock(&mu_);
  return last_call_;
}

grpc::Status FakeBroker::Find(const std::string& name, PluginStatus* out) {
  absl::MutexLock lock(&mu_);
  std::vector<std::string> names;
  for (const PluginStatus& s : plugins_.plugins()) {
    if (s.name() == name) {
      *out = s;
      return grpc::Status::OK;
    }
    names.push_back(s.name());
  }
  return grpc::Status(
      grpc::StatusCode::NOT_FOUND,
      absl::StrCat("unknown plugin \"", name,
                   "\"; known plugins: ", absl::StrJoin(names, ", ")));
}

grpc::Status FakeBroker::List(grpc::ServerContext*,
                              const plugd::v1::ListPluginsRequest*,
                              plugd::v1::ListPluginsResponse* response) {
  absl::MutexLock lock(&mu_);
  *response = plugins_;
  return grpc::Status::OK;
}

grpc::Status FakeBroker::Get(grpc::ServerContext*,
                             const plugd::v1::GetPluginRequest* request,
                             PluginStatus* response) {
  return Find(request->name(), response);
}

grpc::Status FakeBroker::Start(grpc::ServerContext*,
                               const plugd::v1::StartPluginRequest* request,
                               PluginStatus* response) {
  grpc::Status status = Find(request->name(), response);
  if (!status.ok()) return status;
  if (request->name() == "beta") {
    // beta's start fails: the broker answers with its failed status.
    response->set_state(plugd::v1::PLUGIN_STATE_FAILED);
    response->set_last_error("no handshake within 5s");
    return grpc::Status::OK;
  }
  response->set_state(plugd::v1::PLUGIN_STATE_READY);
  if (response->pid() == 0) response->set_pid(5000);
  *response->mutable_started_at() = Ts(absl::Now());
  return grpc::Status::OK;
}

grpc::Status FakeBroker::Stop(grpc::ServerContext*,
                              const plugd::v1::StopPluginRequest* request,
                              PluginStatus* response) {
  grpc::Status status = Find(request->name(), response);
  if (!status.ok()) return status;
  response->set_state(plugd::v1::PLUGIN_STATE_STOPPED);
  response->set_pid(0);
  response->clear_started_at();
  return grpc::Status::OK;
}

grpc::Status FakeBroker::Restart(grpc::ServerContext* context,
                                 const plugd::v1::RestartPluginRequest* request,
                                 PluginStatus* response) {
  plugd::v1::StartPluginRequest start;
  start.set_name(request->name());
  return Start(context, &start, response);
}

grpc::Status FakeBroker::Resolve(grpc::ServerContext*,
                                 const plugd::v1::ResolveRequest* request,
                                 plugd::v1::ResolveResponse* response) {
  PluginStatus s;
  grpc::Status status = Find(request->name(), &s);
  if (!status.ok()) return status;
  response->set_name(s.name());
  response->set_address(s.address());
  response->set_protocol_version(s.protocol_version());
  response->set_state(s.state());
  return grpc::Status::OK;
}

grpc::Status FakeBroker::Describe(
    grpc::ServerContext*, const plugd::v1::DescribePluginRequest* request,
    plugd::v1::DescribeResponse* response) {
  PluginStatus s;
  grpc::Status status = Find(request->name(), &s);
  if (!status.ok()) return status;
  if (s.state() != plugd::v1::PLUGIN_STATE_READY) {
    return grpc::Status(
        grpc::StatusCode::UNAVAILABLE,
        absl::StrCat("plugin \"", s.name(), "\" is ", "not running"));
  }
  response->set_name(s.name());
  response->set_version(s.version());
  response->set_protocol_version(1);
  response->set_core_protocol_version(1);
  response->set_pid(s.pid());
  for (const char* service :
       {"grpc.health.v1.Health", "plugd.v1.Control", "plugd.v1.Functions"}) {
    response->add_services(service);
  }
  plugd::v1::FunctionInfo* random = response->add_functions();
  random->set_name("random");
  random->set_help("random [MIN [MAX]]: a random integer in [MIN, MAX]");
  random->set_min_args(0);
  random->set_max_args(2);
  for (const char* name : {"min", "max"}) {
    plugd::v1::Parameter* p = random->add_params();
    p->set_name(name);
    p->set_kind(plugd::v1::VALUE_KIND_NUMBER);
    p->set_optional(true);
  }
  random->mutable_params(0)->set_help("lower bound (default 0)");
  plugd::v1::FunctionInfo* sum = response->add_functions();
  sum->set_name("sum");
  sum->set_help("sum NUMBER...: adds its arguments");
  sum->set_max_args(-1);
  plugd::v1::Parameter* values = sum->add_params();
  values->set_name("values");
  values->set_kind(plugd::v1::VALUE_KIND_NUMBER);
  values->set_variadic(true);
  return grpc::Status::OK;
}

grpc::Status FakeBroker::Call(grpc::ServerContext*,
                              const plugd::v1::CallPluginRequest* request,
                              plugd::v1::CallResponse* response) {
  {
    absl::MutexLock lock(&mu_);
    last_call_ = *request;
  }
  PluginStatus s;
  grpc::Status status = Find(request->name(), &s);
  if (!status.ok()) return status;
  const plugd::v1::CallRequest& call = request->call();
  if (call.function() == "sum") {
    double total = 0;
    for (size_t i = 0; i < static_cast<size_t>(call.args_size()); ++i) {
      absl::StatusOr<double> n =
          plugd::ValueToNumber(call.args(i), absl::StrCat("argument ", i + 1));
      if (!n.ok()) {
        return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                            std::string(n.status().message()));
      }
      total += *n;
    }
    *response->mutable_result() = plugd::NumberValue(total);
    return grpc::Status::OK;
  }
  if (call.function() == "echo") {
    google::protobuf::ListValue list;
    for (const auto& arg : call.args()) *list.add_values() = arg;
    *response->mutable_result()->mutable_list_value() = list;
    return grpc::Status::OK;
  }
  return grpc::Status(
      grpc::StatusCode::NOT_FOUND,
      absl::StrCat("plugin \"", s.name(), "\" has no function \"",
                   call.function(), "\"; it has: echo, random, sum"));
}

grpc::Status FakeBroker::WatchEvents(
    grpc::ServerContext* context, const plugd::v1::WatchEventsRequest* request,
    grpc::ServerWriter<plugd::v1::Event>* writer) {
  {
    absl::MutexLock lock(&mu_);
    last_watch_events_ = *request;
  }
  std::vector<plugd::v1::Event> events;
  for (const plugd::v1::Event& e : CannedEvents()) {
    if (request->plugin().empty() || e.plugin() == request->plugin()) {
      events.push_back(e);
    }
  }
  size_t first = events.size() > request->history()
                     ? events.size() - request->history()
                     : 0;
  for (size_t i = first; i < events.size(); ++i) writer->Write(events[i]);
  return grpc::Status::OK;
}

grpc::Status FakeBroker::TailLogs(
    grpc::ServerContext* context, const plugd::v1::TailLogsRequest* request,
    grpc::ServerWriter<plugd::v1::LogLine>* writer) {
  {
    absl::MutexLock lock(&mu_);
    last_tail_logs_ = *request;
  }
  PluginStatus s;
  grpc::Status status = Find(request->name(), &s);
  if (!status.ok()) return status;
  struct Canned {
    plugd::v1::LogStream stream;
    const char* level;
    const char* text;
  };
  const Canned lines[] = {
      {plugd::v1::LOG_STREAM_STDERR, "info", "listening on the socket"},
      {plugd::v1::LOG_STREAM_STDOUT, "warn", "cache is cold"},
      {plugd::v1::LOG_STREAM_STDERR, "error", "request failed: timeout"},
  };
  size_t n = std::size(lines);
  size_t first =
      request->tail() != 0 && request->tail() < n ? n - request->tail() : 0;
  for (size_t i = first; i < n; ++i) {
    plugd::v1::LogLine line;
    *line.mutable_time() = Ts(Fixed(absl::Milliseconds(i)));
    line.set_plugin(s.name());
    line.set_stream(lines[i].stream);
    line.set_level(lines[i].level);
    line.set_text(lines[i].text);
    line.set_pid(4242);
    writer->Write(line);
  }
  // beta's followed stream stays open until the client goes away, like a
  // real follow; alpha's ends after the kept lines.
  if (request->follow() && s.name() == "beta") AwaitCancelled(context);
  return grpc::Status::OK;
}

}  // namespace plugd::plugctl::testing
