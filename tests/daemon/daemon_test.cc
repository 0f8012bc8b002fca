// End-to-end tests of the real plugd daemon, real plugins (plugd-test-sdk,
// plugd-test-raw, plugd-random) and the real plugctl.
//
// Each test runs its own plugd with a config in a short temp dir and stops it
// in TearDown. Tests wait on events only: lines of `plugctl events --follow
// --json` and of plugd's stderr read through pipes, and process exits through
// pidfds. Every timeout is a hang guard, never a way to synchronise.
#include <fcntl.h>
#include <google/protobuf/util/json_util.h>
#include <grpcpp/grpcpp.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "plugd/broker/proc_stat.h"
#include "plugd/common/value.h"
#include "plugd/host/host.h"
#include "plugd/v1/broker.grpc.pb.h"
#include "plugd/v1/broker.pb.h"
#include "plugd/v1/plugin.grpc.pb.h"
#include "test_util.h"

extern char** environ;

namespace plugd::testing {
namespace {

constexpr absl::Duration kGuard = absl::Seconds(20);  // hang guard

// ---------------------------------------------------------------------------
// Small helpers.

std::string Quote(const std::string& s) { return absl::StrCat("\"", s, "\""); }

// One plugin entry of a config: `extra` lines are "key: value".
std::string PluginYaml(const std::string& name,
                       const std::vector<std::string>& command,
                       const std::vector<std::string>& extra = {}) {
  std::vector<std::string> quoted;
  for (const auto& a : command) quoted.push_back(Quote(a));
  std::string out = absl::StrCat("  - name: ", name, "\n    command: [",
                                 absl::StrJoin(quoted, ", "), "]\n");
  for (const auto& line : extra) absl::StrAppend(&out, "    ", line, "\n");
  return out;
}

void WriteFileAtomically(const std::string& path, const std::string& text) {
  std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << text;
  }
  ASSERT_EQ(rename(tmp.c_str(), path.c_str()), 0) << strerror(errno);
}

// VmRSS of a process in KiB; -1 if unreadable.
int64_t RssKb(pid_t pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(in, line)) {
    if (absl::StartsWith(line, "VmRSS:")) {
      std::string v(absl::StripAsciiWhitespace(line.substr(6)));
      int64_t kb = -1;
      absl::SimpleAtoi(absl::StripSuffix(v, " kB"), &kb);
      return kb;
    }
  }
  return -1;
}

// Children of `parent` (from /proc/*/stat).
std::vector<pid_t> ChildrenOf(pid_t parent) {
  std::vector<pid_t> out;
  for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
    int pid = 0;
    if (!absl::SimpleAtoi(entry.path().filename().string(), &pid)) continue;
    std::optional<broker::internal::ProcStat> stat =
        broker::internal::ReadProcStat(pid);
    if (stat && stat->ppid == parent) out.push_back(pid);
  }
  return out;
}

// Reaps `pid` if it is (or became, through the subreaper) our zombie child.
void ReapIfChild(pid_t pid) { waitpid(pid, nullptr, WNOHANG); }

template <typename Message>
Message FromJson(const std::string& json) {
  Message m;
  auto status = google::protobuf::util::JsonStringToMessage(json, &m);
  EXPECT_TRUE(status.ok()) << status << " in " << json;
  return m;
}

std::string TypeName(v1::EventType type) {
  std::string name = v1::EventType_Name(type);
  return std::string(absl::StripPrefix(name, "EVENT_TYPE_"));
}

// ---------------------------------------------------------------------------
// A running plugd whose stderr is read by a thread; lines can be waited for.

class DaemonProcess {
 public:
  ~DaemonProcess() { Stop(); }

  // Spawns plugd --config `config` `extra`... Does not wait.
  bool Spawn(const std::string& config, std::vector<std::string> extra = {}) {
    int err[2];
    if (pipe2(err, O_CLOEXEC) != 0) return false;
    std::string bin = Bin("plugd");
    std::vector<char*> argv = {bin.data(), const_cast<char*>("--config"),
                               const_cast<char*>(config.c_str())};
    for (std::string& arg : extra) argv.push_back(arg.data());
    argv.push_back(nullptr);
    // fork + exec rather than posix_spawn, for PR_SET_PDEATHSIG: a test
    // process killed outright (a ctest timeout, a hang guard's SIGKILL)
    // takes its plugd, and with it plugd's plugins, down too.
    pid_ = fork();
    if (pid_ == 0) {  // only async-signal-safe calls until exec
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      int null = open("/dev/null", O_RDONLY);
      if (null < 0 || dup2(null, 0) < 0 || dup2(err[1], 1) < 0 ||
          dup2(err[1], 2) < 0) {
        _exit(127);
      }
      execve(bin.c_str(), argv.data(), environ);
      _exit(127);
    }
    close(err[1]);
    if (pid_ < 0) {
      close(err[0]);
      pid_ = -1;
      return false;
    }
    reader_ = std::thread([this, fd = err[0]] { Read(fd); });
    return true;
  }

  // Waits until plugd serves its admin API; then finds its reaper.
  bool WaitUntilServing() {
    if (!WaitForLog("serving the admin API", kGuard)) return false;
    std::vector<pid_t> children = ChildrenOf(pid_);
    for (pid_t c : children) {
      std::ifstream comm(absl::StrCat("/proc/", c, "/comm"));
      std::string name;
      std::getline(comm, name);
      if (name == "plugd-reaper") reaper_ = c;
    }
    return reaper_ > 0;
  }

  pid_t pid() const { return pid_; }
  pid_t reaper() const { return reaper_; }

  // Waits for a line of plugd's output containing `text`, starting at byte
  // `*from` of the output (0: the beginning); on success *from moves past it.
  bool WaitForLog(const std::string& text, absl::Duration timeout,
                  size_t* from = nullptr, std::string* line = nullptr) {
    size_t start = from != nullptr ? *from : 0;
    std::unique_lock<std::mutex> lock(mu_);
    auto found = [&]() -> bool {
      size_t at = output_.find(text, start);
      if (at == std::string::npos) return false;
      size_t begin = output_.rfind('\n', at);
      begin = begin == std::string::npos ? 0 : begin + 1;
      size_t end = output_.find('\n', at);
      if (end == std::string::npos) end = output_.size();
      if (line != nullptr) *line = output_.substr(begin, end - begin);
      if (from != nullptr) *from = end;
      return true;
    };
    return cv_.wait_for(lock, absl::ToChronoNanoseconds(timeout), [&] {
      return found() || eof_;
    }) || found();
  }

  // Calls `on_line` for every new complete line, until it returns true or
  // `timeout` passes (false).
  bool ScanLines(const std::function<bool(const std::string&)>& on_line,
                 absl::Duration timeout) {
    absl::Time deadline = absl::Now() + timeout;
    size_t pos;
    {
      std::lock_guard<std::mutex> lock(mu_);
      pos = output_.size();
    }
    std::unique_lock<std::mutex> lock(mu_);
    for (;;) {
      size_t nl;
      while ((nl = output_.find('\n', pos)) != std::string::npos) {
        std::string l = output_.substr(pos, nl - pos);
        pos = nl + 1;
        lock.unlock();
        bool done = on_line(l);
        lock.lock();
        if (done) return true;
      }
      if (eof_) return false;
      if (cv_.wait_until(lock, absl::ToChronoTime(deadline)) ==
              std::cv_status::timeout &&
          output_.find('\n', pos) == std::string::npos) {
        return false;
      }
    }
  }

  std::string Output() {
    std::lock_guard<std::mutex> lock(mu_);
    return output_;
  }
  size_t OutputSize() {
    std::lock_guard<std::mutex> lock(mu_);
    return output_.size();
  }

  // SIGTERM (or `sig`), then reap; SIGKILL if it hangs. Returns the exit
  // status from waitpid, or -1 if it was not running.
  int Stop(int sig = SIGTERM) {
    if (pid_ <= 0) return -1;
    kill(pid_, sig);
    if (!WaitForPidGone(pid_, kGuard)) {
      ADD_FAILURE() << "plugd (pid " << pid_ << ") ignored signal " << sig;
      kill(pid_, SIGKILL);
    }
    int status = 0;
    waitpid(pid_, &status, 0);
    pid_ = -1;
    if (reader_.joinable()) reader_.join();
    if (reaper_ > 0) {
      EXPECT_TRUE(WaitForPidGone(reaper_, kGuard)) << "plugd-reaper stayed";
      ReapIfChild(reaper_);
    }
    return status;
  }

 private:
  void Read(int fd) {
    char buf[65536];
    for (;;) {
      ssize_t n = read(fd, buf, sizeof(buf));
      if (n < 0 && errno == EINTR) continue;
      std::lock_guard<std::mutex> lock(mu_);
      if (n <= 0) {
        eof_ = true;
        cv_.notify_all();
        break;
      }
      output_.append(buf, static_cast<size_t>(n));
      cv_.notify_all();
    }
    close(fd);
  }

  pid_t pid_ = -1;
  pid_t reaper_ = -1;
  std::thread reader_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::string output_;
  bool eof_ = false;
};

// `plugctl events --follow --json --history 1000`, read event by event.
class EventStream {
 public:
  explicit EventStream(const std::string& admin)
      : child_({Bin("plugctl"), "--broker", admin, "events", "--follow",
                "--json", "--history", "1000"}) {}

  // The next event of `plugin`, or nullopt after the hang guard. Events of
  // other plugins read meanwhile are kept for them.
  std::optional<v1::Event> Next(const std::string& plugin,
                                absl::Duration timeout = kGuard) {
    absl::Time deadline = absl::Now() + timeout;
    std::deque<v1::Event>& queue = pending_[plugin];
    std::string line;
    while (queue.empty() && child_.ReadLine(&line, deadline - absl::Now())) {
      v1::Event event = FromJson<v1::Event>(line);
      pending_[event.plugin()].push_back(std::move(event));
    }
    if (queue.empty()) return std::nullopt;
    v1::Event event = std::move(queue.front());
    queue.pop_front();
    return event;
  }

  // Skips events of `plugin` until one of `type` (and `pid`, when non-zero).
  std::optional<v1::Event> WaitFor(const std::string& plugin,
                                   v1::EventType type, int64_t pid = 0,
                                   absl::Duration timeout = kGuard) {
    absl::Time deadline = absl::Now() + timeout;
    for (;;) {
      std::optional<v1::Event> e = Next(plugin, deadline - absl::Now());
      if (!e.has_value()) return e;
      if (e->type() == type && (pid == 0 || e->pid() == pid)) return e;
    }
  }

  // Waits for a READY event of `plugin` whose pid is not `old_pid`.
  int64_t WaitForReadyPid(const std::string& plugin, int64_t old_pid = 0,
                          absl::Duration timeout = kGuard) {
    absl::Time deadline = absl::Now() + timeout;
    for (;;) {
      std::optional<v1::Event> e =
          WaitFor(plugin, v1::EVENT_TYPE_READY, 0, deadline - absl::Now());
      if (!e.has_value()) return 0;
      if (e->pid() != old_pid) return e->pid();
    }
  }

 private:
  Child child_;
  std::map<std::string, std::deque<v1::Event>> pending_;
};

// ---------------------------------------------------------------------------
// The fixture: a temp dir, a config, a daemon, an event stream.

class DaemonTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/pdt-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr) << strerror(errno);
    dir_ = tmpl;
    config_ = dir_ + "/plugd.yaml";
    admin_ = "unix:" + dir_ + "/admin.sock";
  }

  void TearDown() override {
    events_.reset();
    if (daemon_ != nullptr) {
      int status = daemon_->Stop();
      EXPECT_FALSE(absl::StrContains(daemon_->Output(), "a handler threw"))
          << daemon_->Output();
      if (expect_clean_exit_) {
        EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
            << "plugd exit status " << status << "; its output:\n"
            << daemon_->Output().substr(0, 20000);
      }
      daemon_.reset();
    }
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }

  std::string Header() const {
    return absl::StrCat("admin: ", admin_, "\nplugins:\n");
  }

  // Writes the config and starts plugd plus an event stream.
  void StartDaemon(const std::string& plugins_yaml,
                   std::vector<std::string> extra_args = {}) {
    WriteFileAtomically(config_, Header() + plugins_yaml);
    daemon_ = std::make_unique<DaemonProcess>();
    ASSERT_TRUE(daemon_->Spawn(config_, std::move(extra_args)));
    ASSERT_TRUE(daemon_->WaitUntilServing()) << daemon_->Output();
    events_ = std::make_unique<EventStream>(admin_);
  }

  // Kills the daemon with SIGKILL and reaps it (and its reaper).
  void KillDaemon() {
    events_.reset();
    daemon_->Stop(SIGKILL);
    expect_clean_exit_ = false;
  }

  CommandResult Ctl(std::vector<std::string> args,
                    absl::Duration timeout = kGuard) {
    std::vector<std::string> argv = {Bin("plugctl"), "--broker", admin_};
    argv.insert(argv.end(), args.begin(), args.end());
    return RunCommand(argv, timeout);
  }

  v1::PluginStatus Status(const std::string& name) {
    CommandResult r = Ctl({"--json", "status", name});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return FromJson<v1::PluginStatus>(r.out);
  }

  // Waits until `name` is ready; returns its pid.
  int64_t ReadyPid(const std::string& name, int64_t old_pid = 0) {
    int64_t pid = events_->WaitForReadyPid(name, old_pid);
    EXPECT_GT(pid, 0) << name << " did not become ready; plugd said:\n"
                      << daemon_->Output();
    return pid;
  }

  std::string Sdk() const { return Bin("plugd-test-sdk"); }

  std::string dir_, config_, admin_;
  std::unique_ptr<DaemonProcess> daemon_;
  std::unique_ptr<EventStream> events_;
  bool expect_clean_exit_ = true;
};

// 1. kill -9 of a plugin: back with a new pid; exited -> backing-off ->
// starting -> ready.
TEST_F(DaemonTest, KilledPluginIsRestartedWithNewPid) {
  StartDaemon(PluginYaml("sdk", {Sdk()}, {"backoff: {initial: 20ms}"}));
  int64_t pid = ReadyPid("sdk");
  ASSERT_GT(pid, 0);
  ASSERT_EQ(kill(static_cast<pid_t>(pid), SIGKILL), 0);
  std::vector<std::string> types;
  int64_t new_pid = 0;
  std::optional<v1::Event> exited;
  while (auto e = events_->Next("sdk")) {
    types.push_back(TypeName(e->type()));
    if (e->type() == v1::EVENT_TYPE_EXITED) exited = e;
    if (e->type() == v1::EVENT_TYPE_READY) {
      new_pid = e->pid();
      break;
    }
  }
  EXPECT_EQ(absl::StrJoin(types, " "), "EXITED BACKING_OFF STARTING READY");
  ASSERT_TRUE(exited.has_value());
  EXPECT_EQ(exited->pid(), pid);
  EXPECT_EQ(exited->exit().signal(), SIGKILL);
  ASSERT_GT(new_pid, 0);
  EXPECT_NE(new_pid, pid);
  EXPECT_TRUE(PidAlive(static_cast<pid_t>(new_pid)));
  v1::PluginStatus status = Status("sdk");
  EXPECT_EQ(status.state(), v1::PLUGIN_STATE_READY);
  EXPECT_EQ(status.pid(), new_pid);
  EXPECT_EQ(status.restarts(), 1u);
}

// plugd turns Abseil's mutex deadlock detector off (Debian's Abseil runs it
// on every lock); --mutex-deadlock-detection turns it on, aborting on a
// lock-order cycle (plugd says so at start). A start, a kill, a restart, a
// plugctl call and a clean stop with it on: no cycle in the broker's locks,
// gRPC's included, along that path.
TEST_F(DaemonTest, RunsWholeCycleUnderTheMutexDeadlockDetector) {
  StartDaemon(PluginYaml("sdk", {Sdk()}, {"backoff: {initial: 20ms}"}),
              {"--mutex-deadlock-detection"});
  const int64_t first = ReadyPid("sdk");
  ASSERT_GT(first, 0);
  ASSERT_EQ(kill(static_cast<pid_t>(first), SIGKILL), 0);
  const int64_t second = ReadyPid("sdk", first);
  EXPECT_GT(second, 0);
  EXPECT_NE(second, first);
  CommandResult list = Ctl({"list"});
  EXPECT_EQ(list.exit_code, 0) << list.err;
  EXPECT_TRUE(absl::StrContains(list.out, absl::StrCat(second))) << list.out;
  EXPECT_TRUE(absl::StrContains(daemon_->Output(),
                                "Abseil's mutex deadlock detector on"))
      << daemon_->Output();
  // TearDown stops plugd and expects exit 0: an abort would be SIGABRT.
}

// 2. A crash loop ends failed; once fixed, `plugctl restart` revives it.
TEST_F(DaemonTest, CrashLoopEndsFailedAndRestartRevives) {
  std::string marker = dir_ + "/crash";
  { std::ofstream(marker) << "x"; }
  StartDaemon(
      PluginYaml("loop", {Sdk(), "--crash-if-exists", marker},
                 {"max_restarts: 3", "backoff: {initial: 10ms, max: 40ms}"}));
  std::optional<v1::Event> failed =
      events_->WaitFor("loop", v1::EVENT_TYPE_FAILED);
  ASSERT_TRUE(failed.has_value()) << daemon_->Output();
  EXPECT_TRUE(absl::StrContains(failed->message(), "restarted 3 times"))
      << failed->message();
  EXPECT_TRUE(absl::StrContains(failed->message(), "plugctl restart loop"))
      << failed->message();
  v1::PluginStatus status = Status("loop");
  EXPECT_EQ(status.state(), v1::PLUGIN_STATE_FAILED);
  EXPECT_NE(status.last_error(), "");
  CommandResult list = Ctl({"list"});
  EXPECT_TRUE(absl::StrContains(list.out, "failed")) << list.out;
  CommandResult text = Ctl({"status", "loop"});
  EXPECT_TRUE(absl::StrContains(text.out, "state:             failed"))
      << text.out;

  ASSERT_EQ(unlink(marker.c_str()), 0);
  CommandResult restart = Ctl({"restart", "loop"});
  EXPECT_EQ(restart.exit_code, 0) << restart.out << restart.err;
  EXPECT_TRUE(absl::StrContains(restart.out, "loop: ready")) << restart.out;
  EXPECT_EQ(Status("loop").state(), v1::PLUGIN_STATE_READY);
}

// Event followers that go away in the middle of a stream (a `plugctl events
// -f` interrupted while the broker is busy writing to it) leave the broker
// running. The broker once dropped the message being written when a stream
// was cancelled and then popped an empty queue when that write completed:
// plugd died with SIGSEGV (plugd-bench's scale step, 100 plugins).
TEST_F(DaemonTest, EventFollowersCancelledMidStreamLeaveTheBrokerRunning) {
  std::string marker = dir_ + "/crash";
  { std::ofstream(marker) << "x"; }
  // A plugin that crashes at every start, restarted without limit: events
  // flow all the time.
  StartDaemon(
      PluginYaml("loop", {Sdk(), "--crash-if-exists", marker},
                 {"max_restarts: 0", "backoff: {initial: 1ms, max: 2ms}"}) +
      PluginYaml("steady", {Sdk()}));
  ASSERT_GT(ReadyPid("steady"), 0);
  auto stub = v1::Broker::NewStub(
      grpc::CreateChannel(admin_, grpc::InsecureChannelCredentials()));
  int read_some = 0;
  for (int i = 0; i < 200; ++i) {
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + kGuard));
    v1::WatchEventsRequest request;
    request.set_follow(true);
    request.set_history(1000);  // a backlog, so a write is under way
    std::unique_ptr<grpc::ClientReader<v1::Event>> reader =
        stub->WatchEvents(&context, request);
    v1::Event event;
    if (reader->Read(&event)) ++read_some;
    context.TryCancel();
    grpc::Status status = reader->Finish();
    EXPECT_EQ(status.error_code(), grpc::StatusCode::CANCELLED)
        << status.error_message();
  }
  EXPECT_EQ(read_some, 200);
  // The broker still answers, and TearDown checks that it exits 0.
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + kGuard));
  v1::ListPluginsResponse list;
  grpc::Status status = stub->List(&context, v1::ListPluginsRequest(), &list);
  ASSERT_TRUE(status.ok()) << status.error_message() << "\nplugd said:\n"
                           << daemon_->Output();
  EXPECT_EQ(list.plugins_size(), 2);
}

// 3. NOT_SERVING for longer than unhealthy_timeout: restarted.
TEST_F(DaemonTest, NotServingPluginIsRestarted) {
  StartDaemon(PluginYaml("sick", {Sdk()},
                         {"unhealthy_timeout: 500ms", "health_interval: 100ms",
                          "backoff: {initial: 10ms}"}));
  int64_t pid = ReadyPid("sick");
  absl::Time t0 = absl::Now();
  CommandResult call = Ctl({"call", "sick", "set_serving", "false"});
  ASSERT_EQ(call.exit_code, 0) << call.err;
  ASSERT_TRUE(events_->WaitFor("sick", v1::EVENT_TYPE_UNHEALTHY).has_value());
  int64_t new_pid = ReadyPid("sick", pid);
  absl::Duration took = absl::Now() - t0;
  EXPECT_NE(new_pid, pid);
  EXPECT_GE(took, absl::Milliseconds(450));
  EXPECT_TRUE(WaitForPidGone(static_cast<pid_t>(pid), kGuard));
  std::cout << "NOT_SERVING -> new instance ready in "
            << absl::FormatDuration(took) << "\n";
}

// The broker holds one connection to each plugin: the launcher's connect
// check is kept for the health watch, Describe and Control.Shutdown (it
// used to hold a second one for its health checks; ~37 KiB of broker memory
// and a server-side connection in the plugin, per plugin).
TEST_F(DaemonTest, BrokerHoldsOneConnectionPerPlugin) {
  StartDaemon(PluginYaml("one", {Sdk()}, {"unhealthy_timeout: 60s"}));
  ReadyPid("one");
  // The plugin reports NOT_SERVING on the broker's health watch: once the
  // broker says unhealthy, its health connection is certainly up.
  CommandResult call = Ctl({"call", "one", "set_serving", "false"});
  ASSERT_EQ(call.exit_code, 0) << call.err;
  ASSERT_TRUE(events_->WaitFor("one", v1::EVENT_TYPE_UNHEALTHY).has_value());
  const std::string address = Status("one").address();
  ASSERT_TRUE(absl::StartsWith(address, "unix:")) << address;
  // The broker's own connection, and the admin API's, which forwarded the
  // call (cached per plugin address, made on the first call only).
  EXPECT_EQ(AcceptedUnixConnections(address.substr(5)), 2);
}

// 4. A plugin ignoring SIGTERM is SIGKILLed after stop_timeout.
TEST_F(DaemonTest, StopEscalatesToSigkill) {
  StartDaemon(PluginYaml("stubborn",
                         {Bin("plugd-test-raw"), "--mode=ignore-term"},
                         {"stop_timeout: 300ms"}));
  int64_t pid = ReadyPid("stubborn");
  absl::Time t0 = absl::Now();
  CommandResult stop = Ctl({"stop", "stubborn"});
  absl::Duration took = absl::Now() - t0;
  EXPECT_EQ(stop.exit_code, 0) << stop.err;
  EXPECT_TRUE(absl::StrContains(stop.out, "stopped")) << stop.out;
  EXPECT_LT(took, absl::Seconds(5));
  std::optional<v1::Event> exited =
      events_->WaitFor("stubborn", v1::EVENT_TYPE_EXITED, pid);
  ASSERT_TRUE(exited.has_value());
  EXPECT_TRUE(exited->exit().signaled());
  EXPECT_EQ(exited->exit().signal(), SIGKILL) << exited->exit().text();
  EXPECT_TRUE(WaitForPidGone(static_cast<pid_t>(pid), kGuard));
  std::cout << "stop of a SIGTERM-ignoring plugin took "
            << absl::FormatDuration(took) << "\n";
}

int64_t CallNumber(const CommandResult& r) {
  int64_t n = 0;
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(absl::SimpleAtoi(absl::StripAsciiWhitespace(r.out), &n)) << r.out;
  return n;
}

// 5. A grandchild in the plugin's group goes with it: on stop, and when the
// broker is SIGKILLed (the reaper kills the group).
TEST_F(DaemonTest, GrandchildrenDieWithPlugin) {
  StartDaemon(PluginYaml("gc", {Sdk()}, {"stop_timeout: 300ms"}));
  int64_t pid = ReadyPid("gc");
  int64_t grandchild = CallNumber(Ctl({"call", "gc", "spawn_grandchild"}));
  ASSERT_GT(grandchild, 0);
  EXPECT_TRUE(PidAlive(static_cast<pid_t>(grandchild)));
  CommandResult stop = Ctl({"stop", "gc"});
  EXPECT_EQ(stop.exit_code, 0) << stop.err;
  EXPECT_TRUE(WaitForPidGone(static_cast<pid_t>(pid), kGuard));
  EXPECT_TRUE(WaitForPidGone(static_cast<pid_t>(grandchild), kGuard))
      << "grandchild " << grandchild << " survived plugctl stop";

  CommandResult start = Ctl({"start", "gc"});
  ASSERT_EQ(start.exit_code, 0) << start.err;
  int64_t pid2 = Status("gc").pid();
  int64_t grandchild2 = CallNumber(Ctl({"call", "gc", "spawn_grandchild"}));
  ASSERT_GT(grandchild2, 0);
  KillDaemon();
  EXPECT_TRUE(WaitForPidGone(static_cast<pid_t>(pid2), kGuard));
  EXPECT_TRUE(WaitForPidGone(static_cast<pid_t>(grandchild2), kGuard))
      << "grandchild " << grandchild2 << " survived the broker's SIGKILL";
  ReapIfChild(static_cast<pid_t>(pid2));
  ReapIfChild(static_cast<pid_t>(grandchild2));
}

// 6. The broker killed with SIGKILL leaves no plugin running.
TEST_F(DaemonTest, BrokerSigkillLeavesNoPlugin) {
  std::string yaml;
  for (const char* name : {"p1", "p2", "p3"}) yaml += PluginYaml(name, {Sdk()});
  yaml += PluginYaml("rnd", {Bin("plugd-random")});
  yaml += PluginYaml("raw", {Bin("plugd-test-raw"), "--mode=ignore-term"});
  StartDaemon(yaml);
  std::vector<int64_t> pids;
  for (const char* name : {"p1", "p2", "p3", "rnd", "raw"}) {
    pids.push_back(Status(name).pid());
  }
  // Status may have raced the start: wait for readiness where needed.
  for (size_t i = 0; i < pids.size(); ++i) {
    if (pids[i] == 0) {
      const char* names[] = {"p1", "p2", "p3", "rnd", "raw"};
      CommandResult start = Ctl({"start", names[i]});
      ASSERT_EQ(start.exit_code, 0) << start.err;
      pids[i] = Status(names[i]).pid();
    }
    ASSERT_GT(pids[i], 0);
  }
  KillDaemon();
  for (int64_t pid : pids) {
    EXPECT_TRUE(WaitForPidGone(static_cast<pid_t>(pid), kGuard))
        << "plugin pid " << pid << " outlived the broker";
    ReapIfChild(static_cast<pid_t>(pid));
  }
}

// A poison request through an attached host's channel: the host library
// learns of the crashes from the daemon's events and cancels the call at the
// second one, long before the daemon would give up on the plugin (default:
// more than 5 restarts in 60 s).
TEST_F(DaemonTest, AttachedHostStopsRetryingAPoisonRequest) {
  // The default backoff: the second crash's event has the 0.1 s (±20 %)
  // before the next restart to reach the host.
  StartDaemon(PluginYaml("sdk", {Sdk(), "--mutex-deadlock-detection"}));
  ASSERT_GT(ReadyPid("sdk"), 0);
  host::HostOptions host_options;
  host_options.mutex_deadlock_detection = true;  // checks our locks
  auto host = host::Host::Create(host_options);
  ASSERT_TRUE(host.ok()) << host.status();
  host::AttachOptions options;
  options.idempotent_methods = {"plugd.v1.Functions/Call"};
  auto plugin = (*host)->Attach(admin_, "sdk", options);
  ASSERT_TRUE(plugin.ok()) << plugin.status();
  auto result = (*plugin)->Call("lock_order_inversion", {});
  ASSERT_FALSE(result.ok());
  const std::string message(result.status().message());
  EXPECT_TRUE(absl::StrContains(message, "plugin sdk crashed or hung "))
      << message;
  EXPECT_TRUE(absl::StrContains(message, "killed by signal 6 (SIGABRT)"))
      << message;
  EXPECT_TRUE(absl::StrContains(message, "not retried again")) << message;
  EXPECT_TRUE(absl::StrContains(message, "the attempt in flight was cancelled"))
      << message;
  auto echo = (*plugin)->Call("echo", {StringValue("still here")});
  ASSERT_TRUE(echo.ok()) << echo.status();
  EXPECT_EQ(echo->string_value(), "still here");
  const v1::PluginStatus status = Status("sdk");
  EXPECT_NE(status.state(), v1::PLUGIN_STATE_FAILED);
  // Two crashes (a third only if the event took longer than the backoff to
  // arrive); before the cancellation, 5: all of gRPC's first round.
  EXPECT_LE(status.restarts(), 3u);
}

// 7. Calls across 100 restarts through an attached host's channel, with
// unmodified generated stubs.
TEST_F(DaemonTest, CallsAcrossRestarts) {
  StartDaemon(PluginYaml(
      "echo", {Sdk()},
      {"max_restarts: 0", "backoff: {initial: 1ms, max: 5ms, multiplier: 1}",
       "stop_timeout: 1s"}));
  int64_t pid = ReadyPid("echo");
  ASSERT_GT(pid, 0);
  host::HostOptions host_options;
  host_options.mutex_deadlock_detection = true;  // checks our locks
  auto host = host::Host::Create(host_options);
  ASSERT_TRUE(host.ok()) << host.status();
  auto plugin = (*host)->Attach(admin_, "echo");
  ASSERT_TRUE(plugin.ok()) << plugin.status();
  std::shared_ptr<grpc::Channel> channel = (*plugin)->channel();

  std::atomic<bool> stop{false};
  std::atomic<int64_t> describe_ok{0}, describe_failed{0}, echo_ok{0},
      echo_unavailable{0}, echo_other{0};
  std::mutex failures_mu;
  std::vector<std::string> failures;
  auto record = [&](const std::string& what, const grpc::Status& s) {
    std::lock_guard<std::mutex> lock(failures_mu);
    if (failures.size() < 10) {
      failures.push_back(
          absl::StrCat(what, ": ", s.error_code(), " ", s.error_message()));
    }
  };
  std::vector<std::thread> threads;
  for (int i = 0; i < 4; ++i) {
    threads.emplace_back([&] {
      auto stub = v1::Control::NewStub(channel);
      while (!stop.load()) {
        grpc::ClientContext ctx;
        ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
        v1::DescribeResponse response;
        grpc::Status s = stub->Describe(&ctx, v1::DescribeRequest(), &response);
        if (s.ok() && response.name() == "sdk-test") {
          ++describe_ok;
        } else {
          ++describe_failed;
          record("Describe", s);
        }
      }
    });
    threads.emplace_back([&, i] {
      auto stub = v1::Functions::NewStub(channel);
      for (int n = 0; !stop.load(); ++n) {
        grpc::ClientContext ctx;
        ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
        v1::CallRequest request;
        request.set_function("echo");
        std::string text = absl::StrCat("t", i, "-", n);
        request.add_args()->set_string_value(text);
        v1::CallResponse response;
        grpc::Status s = stub->Call(&ctx, request, &response);
        if (s.ok() && response.result().string_value() == text) {
          ++echo_ok;
        } else if (s.error_code() == grpc::StatusCode::UNAVAILABLE) {
          ++echo_unavailable;
        } else {
          ++echo_other;
          record("Call echo", s);
        }
      }
    });
  }
  constexpr int kKills = 100;
  absl::Time t0 = absl::Now();
  int kills = 0;
  for (; kills < kKills; ++kills) {
    if (kill(static_cast<pid_t>(pid), SIGKILL) != 0) break;
    int64_t next = events_->WaitForReadyPid("echo", pid);
    if (next == 0) break;
    pid = next;
  }
  absl::Duration took = absl::Now() - t0;
  // A few calls against the last instance, then stop.
  int64_t before = describe_ok.load() + echo_ok.load();
  while (describe_ok.load() + echo_ok.load() < before + 100 &&
         absl::Now() - t0 < absl::Seconds(60)) {
    std::this_thread::yield();
  }
  stop = true;
  for (auto& t : threads) t.join();
  std::cout << "calls across " << kills << " restarts in "
            << absl::FormatDuration(took) << ": Describe " << describe_ok
            << " ok, " << describe_failed << " failed; Call echo " << echo_ok
            << " ok, " << echo_unavailable << " UNAVAILABLE, " << echo_other
            << " other failures\n";
  for (const auto& f : failures) std::cout << "  " << f << "\n";
  EXPECT_EQ(kills, kKills);
  EXPECT_EQ(describe_failed.load(), 0);
  EXPECT_EQ(echo_other.load(), 0);
  EXPECT_GT(describe_ok.load(), 0);
  EXPECT_GT(echo_ok.load(), 0);
}

// 8. A SIGSTOPped plugin is restarted once liveness_timeout passes.
TEST_F(DaemonTest, StoppedPluginIsRestartedByLiveness) {
  StartDaemon(PluginYaml("frozen", {Sdk()},
                         {"liveness_timeout: 1s", "health_interval: 200ms",
                          "stop_timeout: 200ms", "backoff: {initial: 10ms}"}));
  int64_t pid = ReadyPid("frozen");
  absl::Time t0 = absl::Now();
  ASSERT_EQ(kill(static_cast<pid_t>(pid), SIGSTOP), 0);
  int64_t new_pid = ReadyPid("frozen", pid);
  absl::Duration took = absl::Now() - t0;
  EXPECT_NE(new_pid, pid);
  EXPECT_TRUE(WaitForPidGone(static_cast<pid_t>(pid), kGuard))
      << "the SIGSTOPped instance was not killed";
  // The exit says the broker killed it, and why (plugctl status/events).
  const v1::PluginStatus status = Status("frozen");
  EXPECT_EQ(status.last_exit().signal(), SIGKILL);
  EXPECT_EQ(status.last_exit().killed_for(), "liveness");
  EXPECT_GE(took, absl::Milliseconds(900));
  EXPECT_LT(took, absl::Seconds(4));
  std::cout << "SIGSTOP -> new instance ready in " << absl::FormatDuration(took)
            << "\n";
}

// 9. A log-flooding plugin keeps the broker's memory bounded.
TEST_F(DaemonTest, LogFloodKeepsBrokerMemoryBounded) {
  StartDaemon(PluginYaml("flood", {Sdk(), "--flood"},
                         {"log_rate_bytes: 4096", "autostart: false"}));
  int64_t before_kb = RssKb(daemon_->pid());
  ASSERT_GT(before_kb, 0);
  CommandResult start = Ctl({"start", "flood"});
  ASSERT_EQ(start.exit_code, 0) << start.err;
  // plugd reports "plugin flood: N log lines dropped" on its stderr; each
  // line is ~1000 bytes, so 50000 dropped lines are ~50 MB through the broker.
  constexpr int64_t kLines = 50000;
  int64_t dropped = 0;
  bool enough = daemon_->ScanLines(
      [&](const std::string& line) {
        size_t at = line.find("plugin flood: ");
        if (at == std::string::npos) return false;
        std::vector<std::string> words =
            absl::StrSplit(line.substr(at + 14), ' ');
        int64_t n = 0;
        if (words.size() > 2 && words[1] == "log" &&
            absl::SimpleAtoi(words[0], &n)) {
          dropped += n;
        }
        return dropped >= kLines;
      },
      absl::Seconds(60));
  int64_t after_kb = RssKb(daemon_->pid());
  v1::PluginStatus status = Status("flood");
  // The plugin numbers its lines: the last one kept says how many it wrote.
  std::string last = Ctl({"logs", "flood", "--tail", "1"}).out;
  int64_t written = 0;
  size_t at = last.find("flood ");
  if (at != std::string::npos) {
    std::vector<std::string> words = absl::StrSplit(last.substr(at), ' ');
    if (words.size() > 1) absl::SimpleAtoi(words[1], &written);
  }
  EXPECT_GE(written, kLines) << last;
  std::cout << "flood: plugin wrote " << written << " lines (~"
            << written / 1000 << " MB), " << dropped
            << " reported dropped from plugd's log, status log_lines_dropped "
            << status.log_lines_dropped() << " (rate-dropped + evicted)"
            << "; broker VmRSS " << before_kb << " kB before, " << after_kb
            << " kB after\n";
  ASSERT_TRUE(enough) << "only " << dropped << " lines dropped";
  EXPECT_GE(status.log_lines_dropped(), static_cast<uint64_t>(kLines));
  EXPECT_LT(after_kb, 150 * 1024);
  EXPECT_LT(after_kb, 3 * before_kb);
}

// 10. Bad configs: plugd exits 2 with FILE:LINE and what is wrong.
TEST_F(DaemonTest, BadConfigsExit2WithFileAndLine) {
  struct Case {
    std::string name, yaml, line, want;
  };
  std::string admin = absl::StrCat("admin: ", admin_, "\n");
  std::vector<Case> cases = {
      {"unknown key", admin + "plugins:\n  - name: a\n    comand: [x]\n",
       ":4:", "unknown key \"comand\""},
      {"duplicate key", admin + admin + "plugins: []\n",
       ":2:", "duplicate key \"admin\""},
      {"wrong type",
       admin +
           "plugins:\n  - name: a\n    command: [x]\n    max_restarts: five\n",
       ":5:", "expected a non-negative integer"},
      {"duplicate plugin name",
       admin + "plugins:\n  - name: a\n    command: [x]\n  - name: a\n"
               "    command: [y]\n",
       ":5:", "duplicate plugin name \"a\""},
      {"missing command", admin + "plugins:\n  - name: a\n",
       ":3:", "has no command"},
      {"duration without unit",
       admin +
           "plugins:\n  - name: a\n    command: [x]\n    start_timeout: 5\n",
       ":5:", "has no unit"},
      {"unparsable duration",
       admin +
           "plugins:\n  - name: a\n    command: [x]\n    stop_timeout: soon\n",
       ":5:", "stop_timeout"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    std::string path = dir_ + "/bad.yaml";
    WriteFileAtomically(path, c.yaml);
    CommandResult r = RunCommand({Bin("plugd"), "--config", path}, kGuard);
    EXPECT_EQ(r.exit_code, 2) << r.err;
    EXPECT_TRUE(absl::StrContains(r.err, path + c.line)) << r.err;
    EXPECT_TRUE(absl::StrContains(r.err, c.want)) << r.err;
    std::cout << c.name << ": " << r.err;
  }
}

// 11. SIGHUP reload: removed, changed, added, untouched; a bad config changes
// nothing.
TEST_F(DaemonTest, SighupReload) {
  StartDaemon(PluginYaml("a", {Sdk()}) +
              PluginYaml("b", {Sdk()}, {"env: {X: \"1\"}"}) +
              PluginYaml("d", {Sdk()}));
  int64_t a = Status("a").pid(), b = Status("b").pid(), d = Status("d").pid();
  for (auto [name, pid] :
       {std::pair<const char*, int64_t*>{"a", &a}, {"b", &b}, {"d", &d}}) {
    if (*pid == 0) {
      ASSERT_EQ(Ctl({"start", name}).exit_code, 0);
      *pid = Status(name).pid();
    }
  }
  WriteFileAtomically(config_,
                      Header() + PluginYaml("b", {Sdk()}, {"env: {X: \"2\"}"}) +
                          PluginYaml("c", {Sdk()}) + PluginYaml("d", {Sdk()}));
  size_t from = daemon_->OutputSize();
  ASSERT_EQ(kill(daemon_->pid(), SIGHUP), 0);
  std::string line;
  ASSERT_TRUE(daemon_->WaitForLog("reloaded:", kGuard, &from, &line))
      << daemon_->Output();
  EXPECT_TRUE(absl::StrContains(line,
                                "1 added, 1 removed, 1 restarted with a new "
                                "config, 1 unchanged"))
      << line;
  EXPECT_TRUE(events_->WaitFor("a", v1::EVENT_TYPE_STOPPED, a).has_value());
  EXPECT_TRUE(WaitForPidGone(static_cast<pid_t>(a), kGuard));
  int64_t new_b = ReadyPid("b", b);
  EXPECT_NE(new_b, b);
  EXPECT_GT(ReadyPid("c"), 0);
  v1::ListPluginsResponse list =
      FromJson<v1::ListPluginsResponse>(Ctl({"--json", "list"}).out);
  std::set<std::string> names;
  for (const auto& p : list.plugins()) names.insert(p.name());
  EXPECT_EQ(names, (std::set<std::string>{"b", "c", "d"}));
  EXPECT_EQ(Status("d").pid(), d);
  EXPECT_EQ(Status("b").state(), v1::PLUGIN_STATE_READY);
  EXPECT_EQ(Status("c").state(), v1::PLUGIN_STATE_READY);
  int64_t c = Status("c").pid();

  // A bad config: nothing changes, the error has file:line.
  WriteFileAtomically(config_,
                      Header() + PluginYaml("b", {Sdk()}) + "    bogus: 1\n");
  ASSERT_EQ(kill(daemon_->pid(), SIGHUP), 0);
  ASSERT_TRUE(daemon_->WaitForLog("reload refused", kGuard, &from, &line))
      << daemon_->Output();
  EXPECT_TRUE(absl::StrContains(line, config_ + ":5:")) << line;
  EXPECT_TRUE(absl::StrContains(line, "unknown key \"bogus\"")) << line;
  EXPECT_EQ(Status("b").pid(), new_b);
  EXPECT_EQ(Status("c").pid(), c);
  EXPECT_EQ(Status("d").pid(), d);
}

// 12. plugctl against the real daemon.
TEST_F(DaemonTest, PlugctlAgainstDaemon) {
  StartDaemon(PluginYaml("alpha", {Sdk()}) +
              PluginYaml("beta", {Bin("plugd-random")}));
  int64_t alpha = ReadyPid("alpha");
  ReadyPid("beta");

  CommandResult list = Ctl({"list"});
  ASSERT_EQ(list.exit_code, 0) << list.err;
  std::vector<std::string> lines = absl::StrSplit(list.out, '\n');
  ASSERT_GE(lines.size(), 3u) << list.out;
  std::vector<std::string> header =
      absl::StrSplit(lines[0], ' ', absl::SkipEmpty());
  EXPECT_EQ(absl::StrJoin(header, " "),
            "NAME STATE PID UPTIME RESTARTS ADDRESS VERSION");
  std::vector<std::string> row =
      absl::StrSplit(lines[1], ' ', absl::SkipEmpty());
  ASSERT_EQ(row.size(), 7u) << lines[1];
  EXPECT_EQ(row[0], "alpha");
  EXPECT_EQ(row[1], "ready");
  EXPECT_EQ(row[2], absl::StrCat(alpha));
  EXPECT_EQ(row[5], "unix:" + dir_ + "/alpha.sock");
  EXPECT_EQ(row[6], "0.0.1-test");

  v1::ListPluginsResponse json =
      FromJson<v1::ListPluginsResponse>(Ctl({"--json", "list"}).out);
  ASSERT_EQ(json.plugins_size(), 2);
  EXPECT_EQ(json.plugins(0).name(), "alpha");
  EXPECT_EQ(json.plugins(1).name(), "beta");
  EXPECT_EQ(json.plugins(1).version(), "1.0.0");

  CommandResult status = Ctl({"status", "alpha"});
  EXPECT_EQ(status.exit_code, 0);
  EXPECT_TRUE(absl::StrContains(status.out, "state:             ready"))
      << status.out;
  EXPECT_TRUE(absl::StrContains(status.out,
                                absl::StrCat("pid:", "               ", alpha)))
      << status.out;

  CommandResult describe = Ctl({"describe", "alpha"});
  EXPECT_EQ(describe.exit_code, 0) << describe.err;
  for (const char* want :
       {"version:  0.0.1-test", "plugd.v1.Functions", "echo(x: any)",
        "set_serving(serving: bool)", "spawn_grandchild()"}) {
    EXPECT_TRUE(absl::StrContains(describe.out, want)) << want << " not in\n"
                                                       << describe.out;
  }

  CommandResult call = Ctl({"call", "alpha", "echo", "hello"});
  EXPECT_EQ(call.exit_code, 0) << call.err;
  EXPECT_EQ(call.out, "hello\n");
  CommandResult call_json =
      Ctl({"--json", "call", "alpha", "echo", "[1,\"a\"]"});
  EXPECT_EQ(call_json.out, "{\"result\":[1,\"a\"]}\n");
  CommandResult pid = Ctl({"call", "alpha", "pid"});
  EXPECT_EQ(pid.out, absl::StrCat(alpha, "\n"));

  CommandResult logs = Ctl({"logs", "beta", "--tail", "1"});
  EXPECT_EQ(logs.exit_code, 0) << logs.err;
  std::vector<std::string> log_lines =
      absl::StrSplit(logs.out, '\n', absl::SkipEmpty());
  ASSERT_EQ(log_lines.size(), 1u) << logs.out;
  EXPECT_TRUE(absl::StrContains(log_lines[0], "[stderr]")) << logs.out;
  EXPECT_TRUE(absl::StrContains(log_lines[0], "random 1.0.0 serving"))
      << logs.out;

  CommandResult unknown = Ctl({"status", "nope"});
  EXPECT_EQ(unknown.exit_code, 1);
  EXPECT_TRUE(absl::StrContains(unknown.err, "alpha, beta")) << unknown.err;
  CommandResult unknown_call = Ctl({"call", "nope", "echo", "1"});
  EXPECT_EQ(unknown_call.exit_code, 1);
  EXPECT_TRUE(absl::StrContains(unknown_call.err, "alpha, beta"))
      << unknown_call.err;

  CommandResult dead = RunCommand(
      {Bin("plugctl"), "--broker", "unix:" + dir_ + "/nobody.sock", "list"},
      kGuard);
  EXPECT_EQ(dead.exit_code, 3) << dead.err;
  EXPECT_TRUE(absl::StrContains(dead.err, "nobody.sock")) << dead.err;
}

// 13. plugctl against a host embedding the supervisor.
TEST_F(DaemonTest, PlugctlAgainstEmbeddedHost) {
  std::string admin = "unix:" + dir_ + "/embedded.sock";
  Child host({Bin("plugd-test-embedded-host"), admin, Bin("plugd-random")});
  std::string line;
  ASSERT_TRUE(host.ReadLine(&line, kGuard));
  ASSERT_TRUE(absl::StartsWith(line, "ready")) << line;
  auto ctl = [&](std::vector<std::string> args) {
    std::vector<std::string> argv = {Bin("plugctl"), "--broker", admin};
    argv.insert(argv.end(), args.begin(), args.end());
    return RunCommand(argv, kGuard);
  };
  CommandResult list = ctl({"list"});
  EXPECT_EQ(list.exit_code, 0) << list.err;
  EXPECT_TRUE(absl::StrContains(list.out, "random")) << list.out;
  EXPECT_TRUE(absl::StrContains(list.out, "ready")) << list.out;
  auto status = [&] {
    return FromJson<v1::PluginStatus>(ctl({"--json", "status", "random"}).out);
  };
  int64_t pid = status().pid();
  ASSERT_GT(pid, 0);

  CommandResult restart = ctl({"restart", "random"});
  EXPECT_EQ(restart.exit_code, 0) << restart.err;
  EXPECT_TRUE(absl::StrContains(restart.out, "random: ready")) << restart.out;
  int64_t pid2 = status().pid();
  EXPECT_NE(pid2, pid);
  EXPECT_TRUE(WaitForPidGone(static_cast<pid_t>(pid), kGuard));

  EventStream events(admin);
  ASSERT_EQ(kill(static_cast<pid_t>(pid2), SIGKILL), 0);
  ASSERT_TRUE(events.WaitFor("random", v1::EVENT_TYPE_EXITED, pid2));
  int64_t pid3 = events.WaitForReadyPid("random", pid2);
  EXPECT_GT(pid3, 0);
  EXPECT_NE(pid3, pid2);
  EXPECT_EQ(status().state(), v1::PLUGIN_STATE_READY);

  // A clean stop of the host stops its plugin.
  kill(host.pid(), SIGTERM);
  EXPECT_TRUE(WaitForPidGone(host.pid(), kGuard));
  EXPECT_TRUE(WaitForPidGone(static_cast<pid_t>(pid3), kGuard));
  ReapIfChild(static_cast<pid_t>(pid3));
}

// 14. restart: never, killed: calls through an attached channel fail fast
// with UNAVAILABLE naming the plugin and how it exited.
TEST_F(DaemonTest, NeverRestartedPluginFailsFast) {
  StartDaemon(PluginYaml("once", {Sdk()}, {"restart: never"}));
  int64_t pid = ReadyPid("once");
  host::HostOptions host_options;
  host_options.mutex_deadlock_detection = true;  // checks our locks
  auto host = host::Host::Create(host_options);
  ASSERT_TRUE(host.ok()) << host.status();
  auto plugin = (*host)->Attach(admin_, "once");
  ASSERT_TRUE(plugin.ok()) << plugin.status();
  auto stub = v1::Functions::NewStub((*plugin)->channel());
  {
    grpc::ClientContext ctx;
    v1::CallRequest request;
    request.set_function("echo");
    request.add_args()->set_string_value("hi");
    v1::CallResponse response;
    ASSERT_TRUE(stub->Call(&ctx, request, &response).ok());
  }
  ASSERT_EQ(kill(static_cast<pid_t>(pid), SIGKILL), 0);
  ASSERT_TRUE(events_->WaitFor("once", v1::EVENT_TYPE_FAILED).has_value());
  for (int i = 0; i < 3; ++i) {
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(20)));
    v1::CallRequest request;
    request.set_function("echo");
    request.add_args()->set_string_value("hi");
    v1::CallResponse response;
    absl::Time t0 = absl::Now();
    grpc::Status s = stub->Call(&ctx, request, &response);
    absl::Duration took = absl::Now() - t0;
    EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE)
        << s.error_message();
    EXPECT_LT(took, absl::Seconds(2));
    EXPECT_TRUE(absl::StrContains(s.error_message(), "once"))
        << s.error_message();
    EXPECT_TRUE(absl::StrContains(s.error_message(), "signal 9"))
        << s.error_message();
    if (i == 0) {
      std::cout << "call to a dead never-restarted plugin failed in "
                << absl::FormatDuration(took) << ": " << s.error_message()
                << "\n";
    }
  }
}

// 14b. A host attached to many plugins runs no thread per plugin: the event
// watches that make its channels reconnect on `ready` are streams on the
// host's one connection to the daemon, served by gRPC's callback threads.
TEST_F(DaemonTest, AttachingManyPluginsAddsNoThreadPerPlugin) {
  constexpr int kPlugins = 12;
  std::string yaml;
  for (int i = 0; i < kPlugins; ++i) {
    yaml += PluginYaml(absl::StrCat("p", i), {Sdk()});
  }
  StartDaemon(yaml);
  for (int i = 0; i < kPlugins; ++i) {
    ASSERT_GT(ReadyPid(absl::StrCat("p", i)), 0);
  }
  auto threads = [] {
    std::error_code ignored;
    return std::distance(
        std::filesystem::directory_iterator("/proc/self/task", ignored),
        std::filesystem::directory_iterator());
  };
  host::HostOptions host_options;
  host_options.mutex_deadlock_detection = true;  // checks our locks
  auto host = host::Host::Create(host_options);
  ASSERT_TRUE(host.ok()) << host.status();
  auto describe = [](const std::shared_ptr<host::Plugin>& plugin) {
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + kGuard));
    v1::DescribeResponse response;
    return v1::Control::NewStub(plugin->channel())
        ->Describe(&ctx, v1::DescribeRequest(), &response);
  };
  // The first attach and call start what gRPC starts once per process.
  auto first = (*host)->Attach(admin_, "p0");
  ASSERT_TRUE(first.ok()) << first.status();
  ASSERT_TRUE(describe(*first).ok());
  const auto before = threads();
  for (int i = 1; i < kPlugins; ++i) {
    auto plugin = (*host)->Attach(admin_, absl::StrCat("p", i));
    ASSERT_TRUE(plugin.ok()) << plugin.status();
    grpc::Status s = describe(*plugin);
    EXPECT_TRUE(s.ok()) << "p" << i << ": " << s.error_message();
  }
  const auto added = threads() - before;
  std::cout << kPlugins - 1 << " more attached plugins added " << added
            << " threads\n";
  EXPECT_LT(added, (kPlugins - 1) / 2)
      << "a thread per attached plugin is back";
  // The watches still follow: a killed plugin's channel works again.
  int64_t pid = Status("p5").pid();
  ASSERT_EQ(kill(static_cast<pid_t>(pid), SIGKILL), 0);
  ASSERT_GT(ReadyPid("p5", pid), 0);
  auto p5 = (*host)->Find("p5");
  ASSERT_TRUE(p5.ok()) << p5.status();
  grpc::Status s = describe(*p5);
  EXPECT_TRUE(s.ok()) << s.error_message();
}

// 15. calc with a C++, a Python and a Node plugin under the broker: one
// invocation finds each function in the plugin that offers it, and a killed
// Python plugin is restarted under calc's next call.
TEST_F(DaemonTest, CalcCallsCppPythonAndNodeUnderTheBroker) {
  StartDaemon(PluginYaml("random", {Bin("plugd-random")}) +
              PluginYaml("stats", {Bin("plugd-py-stats")}) +
              PluginYaml("strings", {Bin("plugd-node-strings")}));
  ReadyPid("random");
  int64_t stats = ReadyPid("stats");
  ReadyPid("strings");
  auto calc = [&](std::vector<std::string> args) {
    std::vector<std::string> argv = {Bin("calc"), "--broker", admin_};
    argv.insert(argv.end(), args.begin(), args.end());
    return RunCommand(argv, kGuard);
  };

  CommandResult list = calc({"--list"});
  EXPECT_EQ(list.exit_code, 0) << list.err;
  for (const char* want : {"random  (plugin random)", "mean  (plugin stats)",
                           "upper  (plugin strings)"}) {
    EXPECT_TRUE(absl::StrContains(list.out, want)) << want << " not in\n"
                                                   << list.out;
  }
  CommandResult r = calc({"random", "7", "7"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "7\n");
  r = calc({"mean", "1", "2", "6"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "3\n");
  r = calc({"upper", "plugd"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(absl::StrContains(r.out, "PLUGD")) << r.out;
  r = calc({"median", "1", "x"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(
      absl::StrContains(r.err, "median: argument 2 (x) must be a number"))
      << r.err;

  // The Python plugin dies; the broker restarts it and the next calc works.
  ASSERT_EQ(kill(static_cast<pid_t>(stats), SIGKILL), 0);
  ReadyPid("stats", stats);
  r = calc({"stdev", "2", "4", "4", "4", "5", "5", "7", "9"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "2.138089935299395\n");
}

// --- What may run -----------------------------------------------------------

// "sha256:<hex>" of `path` by coreutils' sha256sum, as the docs say.
std::string PinOf(const std::string& path) {
  CommandResult r = RunCommand({"/usr/bin/sha256sum", path}, kGuard);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  return absl::StrCat("sha256:", r.out.substr(0, 64));
}

std::string EnvironOf(int64_t pid) {
  std::string text =
      broker::internal::ReadProcFile(static_cast<pid_t>(pid), "environ")
          .value_or("");
  std::replace(text.begin(), text.end(), '\0', '\n');
  return text;
}

// A plugin that dies in the connect check, after announcing its address:
// its start-failed event says how it ended (hosts count it as a crash); one
// that dies before its handshake has no exit in the event.
TEST_F(DaemonTest, StartFailedEventCarriesTheExitOnceTheAddressWasAnnounced) {
  StartDaemon(
      PluginYaml("late",
                 {Bin("plugd-test-raw"), "--mode=abort-in-health-check"},
                 {"max_restarts: 1", "backoff: {initial: 10ms}"}) +
      PluginYaml("early", {Bin("plugd-test-raw"), "--mode=segv"},
                 {"max_restarts: 1", "backoff: {initial: 10ms}"}));
  for (const std::string name : {"late", "early"}) {
    SCOPED_TRACE(name);
    std::optional<v1::Event> start_failed;
    while (auto e = events_->Next(name)) {
      if (e->type() == v1::EVENT_TYPE_START_FAILED) {
        start_failed = e;
        break;
      }
    }
    ASSERT_TRUE(start_failed.has_value()) << daemon_->Output();
    EXPECT_GT(start_failed->pid(), 0) << start_failed->DebugString();
    if (name == "late") {
      ASSERT_TRUE(start_failed->has_exit()) << start_failed->DebugString();
      EXPECT_TRUE(start_failed->exit().signaled());
      EXPECT_EQ(start_failed->exit().signal(), SIGABRT);
      EXPECT_EQ(start_failed->exit().killed_for(), "");
    } else {
      EXPECT_FALSE(start_failed->has_exit()) << start_failed->DebugString();
    }
  }
}

// A pinned plugin runs; one whose file does not match its pin is refused
// with both hashes and marked failed at once, even with max_restarts: 0 (no
// limit): no restart loop on a file that will not change by itself.
TEST_F(DaemonTest, PinMismatchFailsAtOnceWithBothHashes) {
  const std::string good = PinOf(Sdk());
  const std::string wrong = absl::StrCat("sha256:", std::string(64, '0'));
  StartDaemon(PluginYaml("pinned", {Sdk()}, {"sha256: " + good}) +
              PluginYaml("tampered", {Sdk()},
                         {"sha256: " + wrong, "max_restarts: 0",
                          "backoff: {initial: 10ms}"}));
  ReadyPid("pinned");
  std::vector<std::string> types;
  std::optional<v1::Event> start_failed, failed;
  while (auto e = events_->Next("tampered")) {
    types.push_back(TypeName(e->type()));
    if (e->type() == v1::EVENT_TYPE_START_FAILED) start_failed = e;
    if (e->type() == v1::EVENT_TYPE_FAILED) {
      failed = e;
      break;
    }
  }
  EXPECT_EQ(absl::StrJoin(types, " "), "STARTING START_FAILED FAILED");
  ASSERT_TRUE(start_failed.has_value()) << daemon_->Output();
  EXPECT_TRUE(absl::StrContains(start_failed->message(),
                                absl::StrCat("expected ", wrong)))
      << start_failed->message();
  EXPECT_TRUE(absl::StrContains(start_failed->message(),
                                absl::StrCat("the file has ", good)))
      << start_failed->message();
  ASSERT_TRUE(failed.has_value());
  EXPECT_TRUE(absl::StrContains(failed->message(), "sha256 pin"))
      << failed->message();
  v1::PluginStatus status = Status("tampered");
  EXPECT_EQ(status.state(), v1::PLUGIN_STATE_FAILED);
  EXPECT_EQ(status.restarts(), 0u);
  CommandResult text = Ctl({"status", "tampered"});
  EXPECT_TRUE(absl::StrContains(text.out, good)) << text.out;
}

// A secret in plugd's environment does not reach a plugin, unless the
// config asks for inheritance; `env` passes what the plugin needs.
TEST_F(DaemonTest, PluginEnvironmentStartsEmpty) {
  setenv("PLUGD_TEST_SECRET", "hunter2", 1);
  StartDaemon(PluginYaml("clean", {Sdk()}, {"env: {GIVEN: yes}"}) +
              PluginYaml("inherits", {Sdk()}, {"inherit_environment: true"}));
  unsetenv("PLUGD_TEST_SECRET");
  const std::string clean = EnvironOf(ReadyPid("clean"));
  EXPECT_FALSE(absl::StrContains(clean, "PLUGD_TEST_SECRET")) << clean;
  EXPECT_FALSE(absl::StrContains(clean, "HOME=")) << clean;
  EXPECT_TRUE(absl::StrContains(clean, "GIVEN=yes\n")) << clean;
  EXPECT_TRUE(absl::StrContains(
      clean,
      "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:"
      "/bin\n"))
      << clean;
  const std::string inherits = EnvironOf(ReadyPid("inherits"));
  EXPECT_TRUE(absl::StrContains(inherits, "PLUGD_TEST_SECRET=hunter2"))
      << inherits;
}

// A plugin that allocates past its address-space limit dies, the exit
// event says why, and it is restarted like any crash.
TEST_F(DaemonTest, PluginOverItsMemoryLimitIsRestartedAndTheEventSaysWhy) {
  // One malloc arena keeps the plugin's address space (reservations, not
  // memory) small, so the limit can be low and the test touches little
  // memory before hitting it.
  StartDaemon(PluginYaml(
      "hungry", {Sdk()},
      {"limits: {address_space: 256MiB, open_files: 200}",
       "env: {MALLOC_ARENA_MAX: \"1\"}", "backoff: {initial: 10ms}"}));
  const int64_t pid = ReadyPid("hungry");
  ASSERT_GT(pid, 0);
  {
    std::ifstream limits(absl::StrCat("/proc/", pid, "/limits"));
    std::string line, row;
    while (std::getline(limits, line)) {
      if (absl::StartsWith(line, "Max address space")) row = line;
    }
    std::vector<std::string> fields =
        absl::StrSplit(row, ' ', absl::SkipEmpty());
    ASSERT_GE(fields.size(), 5u) << row;
    EXPECT_EQ(fields[3], "268435456") << row;  // soft
    EXPECT_EQ(fields[4], "268435456") << row;  // hard
  }
  CommandResult call = Ctl({"call", "hungry", "allocate", "1024"});
  EXPECT_NE(call.exit_code, 0) << call.out;
  std::optional<v1::Event> exited =
      events_->WaitFor("hungry", v1::EVENT_TYPE_EXITED, pid);
  ASSERT_TRUE(exited.has_value()) << daemon_->Output();
  EXPECT_EQ(exited->exit().signal(), SIGABRT);
  EXPECT_TRUE(absl::StrContains(exited->message(),
                                "memory limit 256MiB (limits.address_space) "
                                "reached?"))
      << exited->message();
  const int64_t new_pid = ReadyPid("hungry", pid);
  EXPECT_NE(new_pid, pid);
  EXPECT_EQ(Status("hungry").restarts(), 1u);
  EXPECT_TRUE(absl::StrContains(daemon_->Output(), "memory limit 256MiB"))
      << daemon_->Output();
}

// A plugin over its CPU-time limit gets SIGXCPU; the event says so.
TEST_F(DaemonTest, PluginOverItsCpuLimitIsRestartedAndTheEventSaysWhy) {
  StartDaemon(
      PluginYaml("spinner", {Sdk()},
                 {"limits: {cpu_seconds: 1}", "backoff: {initial: 10ms}"}));
  const int64_t pid = ReadyPid("spinner");
  ASSERT_GT(pid, 0);
  CommandResult call = Ctl({"call", "spinner", "burn_cpu"}, absl::Seconds(60));
  EXPECT_NE(call.exit_code, 0) << call.out;
  std::optional<v1::Event> exited = events_->WaitFor(
      "spinner", v1::EVENT_TYPE_EXITED, pid, absl::Seconds(60));
  ASSERT_TRUE(exited.has_value()) << daemon_->Output();
  EXPECT_EQ(exited->exit().signal(), SIGXCPU);
  EXPECT_TRUE(absl::StrContains(exited->message(),
                                "CPU limit 1s (limits.cpu_seconds) reached"))
      << exited->message();
  EXPECT_NE(ReadyPid("spinner", pid), pid);
}

}  // namespace
}  // namespace plugd::testing

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  plugd::testing::InstallNoLeftoverProcessesCheck();
  return RUN_ALL_TESTS();
}
