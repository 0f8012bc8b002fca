#include "daemon.h"

#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <fstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace plugd::bench {

absl::Time FromTimestamp(const google::protobuf::Timestamp& t) {
  return absl::FromUnixSeconds(t.seconds()) + absl::Nanoseconds(t.nanos());
}

absl::StatusOr<std::unique_ptr<Daemon>> Daemon::Start(
    const std::string& dir, const std::string& plugins_yaml,
    int event_history) {
  std::unique_ptr<Daemon> d(new Daemon());
  d->admin_ = "unix:" + dir + "/admin.sock";
  d->log_file_ = dir + "/plugd.log";
  const std::string config = dir + "/plugd.yaml";
  {
    std::ofstream out(config);
    out << "admin: " << d->admin_ << "\n"
        << "socket_dir: " << dir << "/s\n"
        << "log_level: warn\n"
        << "event_history: " << event_history << "\n"
        << "plugins:\n"
        << plugins_yaml;
  }
  // sd_notify: a datagram socket of ours as NOTIFY_SOCKET.
  const std::string notify_path = dir + "/notify.sock";
  int notify = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, notify_path.data(), notify_path.size());
  unlink(notify_path.c_str());
  if (notify < 0 ||
      bind(notify, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    return absl::InternalError(
        absl::StrCat("cannot bind ", notify_path, ": ", std::strerror(errno)));
  }
  d->start_time_ = absl::Now();
  absl::StatusOr<std::unique_ptr<Child>> child =
      Child::Start({Bin("plugd"), "--config", config},
                   {{"NOTIFY_SOCKET", notify_path}}, d->log_file_);
  if (!child.ok()) {
    close(notify);
    return child.status();
  }
  d->child_ = std::move(*child);
  bool ready = false;
  const absl::Time deadline = absl::Now() + absl::Seconds(60);
  while (!ready && WaitReadable(notify, deadline - absl::Now())) {
    char buffer[512];
    ssize_t n = recv(notify, buffer, sizeof(buffer), 0);
    if (n > 0 && absl::StrContains(absl::string_view(buffer, n), "READY=1")) {
      ready = true;
    }
  }
  close(notify);
  if (!ready) {
    return absl::DeadlineExceededError(absl::StrCat(
        "plugd did not report READY=1 within 60 s; see ", d->log_file_));
  }
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  d->stub_ = plugd::v1::Broker::NewStub(grpc::CreateCustomChannel(
      d->admin_, grpc::InsecureChannelCredentials(), args));
  return d;
}

Daemon::~Daemon() {
  stub_.reset();
  if (child_) child_->Stop(SIGTERM, absl::Seconds(120));
}

pid_t Daemon::PluginPid(const std::string& name) {
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
  plugd::v1::GetPluginRequest request;
  request.set_name(name);
  plugd::v1::PluginStatus status;
  if (!stub_->Get(&context, request, &status).ok()) return 0;
  return static_cast<pid_t>(status.pid());
}

EventFollower::EventFollower(plugd::v1::Broker::Stub& stub,
                             const std::string& plugin, uint32_t history) {
  thread_ = std::thread([this, &stub, plugin, history] {
    plugd::v1::WatchEventsRequest request;
    request.set_plugin(plugin);
    request.set_follow(true);
    request.set_history(history);
    std::unique_ptr<grpc::ClientReader<plugd::v1::Event>> reader =
        stub.WatchEvents(&context_, request);
    plugd::v1::Event event;
    while (reader->Read(&event)) {
      absl::MutexLock lock(&mu_);
      events_.push_back(event);
    }
    reader->Finish().IgnoreError();
    absl::MutexLock lock(&mu_);
    ended_ = true;
  });
}

EventFollower::~EventFollower() {
  context_.TryCancel();
  thread_.join();
}

int EventFollower::WaitFor(
    size_t from, const std::function<bool(const plugd::v1::Event&)>& match,
    absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  size_t checked = from;
  int found = -1;
  auto ready = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    for (; checked < events_.size(); ++checked) {
      if (match(events_[checked])) {
        found = static_cast<int>(checked);
        return true;
      }
    }
    return ended_;
  };
  mu_.AwaitWithTimeout(absl::Condition(&ready), timeout);
  return found;
}

size_t EventFollower::size() {
  absl::MutexLock lock(&mu_);
  return events_.size();
}

plugd::v1::Event EventFollower::At(size_t i) {
  absl::MutexLock lock(&mu_);
  return events_.at(i);
}

}  // namespace plugd::bench
