#include "daemon.h"

#include <grp.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <iostream>
#include <map>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "plugd/broker/admin.h"
#include "plugd/broker/config.h"
#include "plugd/broker/reaper.h"
#include "plugd/common/deadlock_detection.h"
#include "plugd/common/exec_policy.h"
#include "plugd/common/log.h"
#include "plugd/common/protocol.h"
#include "plugd/common/status.h"

namespace plugd::broker {
namespace {

constexpr char kUsage[] =
    "usage: plugd --config FILE [--admin ADDR] [--check]\n"
    "             [--mutex-deadlock-detection]\n"
    "\n"
    "The plugd broker: starts the plugins listed in FILE, keeps them running\n"
    "according to their restart policy, and serves the admin API that\n"
    "plugctl talks to.\n"
    "\n"
    "options:\n"
    "  --config FILE   the YAML config (see docs/config.md); required\n"
    "  --admin ADDR    admin socket, overriding the config's `admin`, e.g.\n"
    "                  unix:/tmp/plugd/admin.sock\n"
    "  --check         validate the config, print a summary and exit\n"
    "  --mutex-deadlock-detection\n"
    "                  turn Abseil's mutex deadlock detector on, aborting on\n"
    "                  a lock-order cycle (a debugging aid: it checks every\n"
    "                  lock, gRPC's own included; off by default)\n"
    "  --help, -h      this text\n"
    "\n"
    "signals: SIGHUP reloads the config; SIGTERM or SIGINT stops every plugin\n"
    "gracefully and exits 0.\n"
    "exit codes: 0 clean stop, 1 runtime failure, 2 usage or config error\n";

absl::Duration FromProto(const google::protobuf::Duration& d) {
  return absl::Seconds(d.seconds()) + absl::Nanoseconds(d.nanos());
}

// systemd's readiness protocol (sd_notify), without libsystemd: one datagram
// to $NOTIFY_SOCKET. A no-op when not run by systemd with Type=notify.
void Notify(const std::string& state) {
  const char* path = getenv("NOTIFY_SOCKET");
  if (path == nullptr || path[0] == '\0') return;
  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  size_t len = strnlen(path, sizeof(addr.sun_path) - 1);
  memcpy(addr.sun_path, path, len);
  if (addr.sun_path[0] == '@') addr.sun_path[0] = '\0';  // abstract socket
  sendto(fd, state.data(), state.size(), MSG_NOSIGNAL,
         reinterpret_cast<sockaddr*>(&addr),
         static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + len));
  close(fd);
}

// The admin API's access from the config's admin_group: a group name or a
// numeric gid. INVALID_ARGUMENT naming the key for an unknown group.
absl::StatusOr<AdminAccess> AdminAccessFromConfig(
    const v1::BrokerConfig& config) {
  AdminAccess access;
  const std::string& text = config.admin_group();
  if (text.empty()) return access;
  struct group entry;
  struct group* found = nullptr;
  std::vector<char> buffer(16384);
  gid_t gid = 0;
  if (absl::SimpleAtoi(text, &gid)) {
    getgrgid_r(gid, &entry, buffer.data(), buffer.size(), &found);
    access.group = gid;
    access.group_name = found != nullptr ? found->gr_name : text;
    return access;
  }
  const int err =
      getgrnam_r(text.c_str(), &entry, buffer.data(), buffer.size(), &found);
  if (found == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(
        "admin_group: no group named \"", text, "\"",
        err != 0 ? absl::StrCat(" (", strerror(err), ")") : "",
        "; name an existing group (getent group NAME) or give a numeric gid"));
  }
  access.group = found->gr_gid;
  access.group_name = found->gr_name;
  return access;
}

struct Args {
  std::string config;
  std::string admin;
  bool check = false;
  bool mutex_deadlock_detection = false;
};

int ParseArgs(int argc, char** argv, Args* args) {
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    auto value = [&](const char* flag, std::string* out) -> bool {
      std::string prefix = absl::StrCat(flag, "=");
      if (absl::StartsWith(arg, prefix)) {
        *out = arg.substr(prefix.size());
        return true;
      }
      if (arg == flag && i + 1 < argc) {
        *out = argv[++i];
        return true;
      }
      return false;
    };
    if (arg == "--help" || arg == "-h") {
      std::cout << kUsage;
      return -1;
    } else if (value("--config", &args->config)) {
    } else if (value("--admin", &args->admin)) {
    } else if (arg == "--mutex-deadlock-detection") {
      args->mutex_deadlock_detection = true;
    } else if (arg == "--check") {
      args->check = true;
    } else {
      std::cerr << "plugd: unknown or incomplete argument \"" << arg << "\"\n\n"
                << kUsage;
      return 2;
    }
  }
  if (args->config.empty()) {
    std::cerr << "plugd: --config FILE is required\n\n" << kUsage;
    return 2;
  }
  return 0;
}

class Daemon {
 public:
  Daemon(Args args, std::unique_ptr<Reaper> reaper)
      : args_(std::move(args)), reaper_(std::move(reaper)) {}

  int Run() {
    absl::StatusOr<v1::BrokerConfig> config = LoadConfigFile(args_.config);
    if (!config.ok()) {
      std::cerr << "plugd: " << config.status().message() << "\n";
      return 2;
    }
    if (!args_.admin.empty()) config->set_admin(args_.admin);
    ApplyLogLevel(*config);
    std::map<std::string, SupervisedPluginSpec> specs;
    if (absl::Status s = BuildSpecs(*config, &specs); !s.ok()) {
      std::cerr << "plugd: " << args_.config << ": " << s.message() << "\n";
      return 2;
    }
    absl::StatusOr<AdminAccess> access = AdminAccessFromConfig(*config);
    if (!access.ok()) {
      std::cerr << "plugd: " << args_.config << ": "
                << access.status().message() << "\n";
      return 2;
    }
    if (args_.check) {
      std::cout << args_.config << ": OK, " << specs.size()
                << " plugin(s); admin " << config->admin();
      if (access->group) {
        std::cout << " (also for group " << access->group_name << ")";
      }
      std::cout << "\n";
      return 0;
    }
    if (absl::Status s = MakePrivateDir(config->socket_dir()); !s.ok()) {
      std::cerr << "plugd: " << s.message() << "\n";
      return 1;
    }

    Supervisor::Options options;
    options.event_history = config->event_history();
    Reaper* reaper = reaper_.get();
    if (reaper != nullptr) {
      options.on_group_started = [reaper](pid_t g) { reaper->Track(g); };
      options.on_group_gone = [reaper](pid_t g) { reaper->Untrack(g); };
    }
    supervisor_ = std::make_unique<Supervisor>(std::move(options));

    absl::StatusOr<std::unique_ptr<AdminServer>> admin =
        AdminServer::Start(*supervisor_, config->admin(), *access);
    if (!admin.ok()) {
      std::cerr << "plugd: " << admin.status().message() << "\n";
      supervisor_.reset();
      return 1;
    }
    admin_ = std::move(*admin);
    PLUGD_LOG(INFO) << "plugd " << PLUGD_VERSION << " (pid " << getpid()
                    << ") serving the admin API on " << admin_->address()
                    << "; config " << args_.config << ", " << specs.size()
                    << " plugin(s)"
                    << (args_.mutex_deadlock_detection
                            ? "; Abseil's mutex deadlock detector on (abort "
                              "on a lock-order cycle)"
                            : "");
    for (auto& [name, spec] : specs) {
      absl::Status added = supervisor_->Add(spec);
      if (!added.ok()) PLUGD_LOG(ERROR) << added.message();
    }
    socket_dir_ = config->socket_dir();
    admin_group_ = config->admin_group();
    Notify("READY=1\nSTATUS=supervising plugins");
    int code = WaitForSignals();
    Notify("STOPPING=1");
    PLUGD_LOG(INFO) << "stopping every plugin";
    admin_->Shutdown();
    supervisor_->StopAll();
    supervisor_.reset();
    admin_.reset();
    PLUGD_LOG(INFO) << "plugd stopped";
    return code;
  }

 private:
  static void ApplyLogLevel(const v1::BrokerConfig& config) {
    if (getenv("PLUGD_LOG_LEVEL") != nullptr) return;
    log::Level level;
    if (log::ParseLevel(config.log_level(), &level)) log::SetMinLevel(level);
  }

  static absl::Status MakePrivateDir(const std::string& dir) {
    if (mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
      return absl::PermissionDeniedError(absl::StrCat(
          "cannot create the socket directory ", dir, ": ", strerror(errno)));
    }
    struct stat st;
    if (stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
      return absl::FailedPreconditionError(
          absl::StrCat(dir, " is not a directory"));
    }
    if ((st.st_mode & 0077) != 0 && st.st_uid == geteuid()) {
      chmod(dir.c_str(), 0700);
    }
    return absl::OkStatus();
  }

  absl::Status BuildSpecs(const v1::BrokerConfig& config,
                          std::map<std::string, SupervisedPluginSpec>* specs) {
    for (const v1::PluginConfig& plugin : config.plugins()) {
      PLUGD_ASSIGN_OR_RETURN(SupervisedPluginSpec spec,
                             SpecFromConfig(plugin, config.socket_dir()));
      (*specs)[plugin.name()] = std::move(spec);
    }
    return absl::OkStatus();
  }

  // Blocks in sigwait; SIGHUP reloads, SIGTERM/SIGINT end it.
  int WaitForSignals() {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    for (;;) {
      int sig = 0;
      if (sigwait(&set, &sig) != 0) continue;
      if (sig == SIGHUP) {
        Notify("RELOADING=1");
        Reload();
        Notify("READY=1");
        continue;
      }
      PLUGD_LOG(INFO) << "received " << (sig == SIGTERM ? "SIGTERM" : "SIGINT");
      return 0;
    }
  }

  // Applies a changed config: added plugins start, removed ones stop,
  // changed ones restart, untouched ones keep running. A bad config changes
  // nothing.
  void Reload() {
    PLUGD_LOG(INFO) << "SIGHUP: reloading " << args_.config;
    absl::StatusOr<v1::BrokerConfig> config = LoadConfigFile(args_.config);
    std::map<std::string, SupervisedPluginSpec> specs;
    absl::Status built =
        config.ok() ? BuildSpecs(*config, &specs) : config.status();
    if (!built.ok()) {
      PLUGD_LOG(ERROR) << "reload refused, nothing changed: "
                       << built.message();
      return;
    }
    if (config->socket_dir() != socket_dir_) {
      PLUGD_LOG(WARNING) << "reload: socket_dir changes take effect at the "
                            "next start of plugd; keeping "
                         << socket_dir_;
      for (auto& [name, spec] : specs) {
        absl::StatusOr<SupervisedPluginSpec> again =
            SpecFromConfig(FindPlugin(*config, name), socket_dir_);
        if (again.ok()) spec = *again;
      }
    }
    if (config->admin_group() != admin_group_) {
      PLUGD_LOG(WARNING) << "reload: admin_group changes take effect at the "
                            "next start of plugd; keeping \""
                         << admin_group_ << "\"";
    }
    ApplyLogLevel(*config);
    int added = 0, removed = 0, changed = 0;
    std::set<std::string> current;
    for (const std::string& name : supervisor_->Names()) current.insert(name);
    for (const std::string& name : current) {
      if (specs.count(name) == 0) {
        supervisor_->Remove(name).IgnoreError();
        ++removed;
      }
    }
    for (auto& [name, spec] : specs) {
      if (current.count(name) == 0) {
        LogIfError(supervisor_->Add(spec));
        ++added;
        continue;
      }
      absl::StatusOr<SupervisedPluginSpec> old = supervisor_->Spec(name);
      if (old.ok() && old->SameAs(spec)) continue;
      supervisor_->Remove(name).IgnoreError();
      LogIfError(supervisor_->Add(spec));
      ++changed;
    }
    PLUGD_LOG(INFO) << "reloaded: " << added << " added, " << removed
                    << " removed, " << changed << " restarted with a new "
                    << "config, " << (specs.size() - added - changed)
                    << " unchanged";
  }

  static const v1::PluginConfig& FindPlugin(const v1::BrokerConfig& config,
                                            const std::string& name) {
    for (const auto& p : config.plugins()) {
      if (p.name() == name) return p;
    }
    return v1::PluginConfig::default_instance();
  }

  static void LogIfError(const absl::Status& status) {
    if (!status.ok()) PLUGD_LOG(ERROR) << status.message();
  }

  Args args_;
  std::unique_ptr<Reaper> reaper_;
  std::unique_ptr<Supervisor> supervisor_;
  std::unique_ptr<AdminServer> admin_;
  std::string socket_dir_;
  std::string admin_group_;
};

}  // namespace

absl::StatusOr<SupervisedPluginSpec> SpecFromConfig(
    const v1::PluginConfig& config, const std::string& socket_dir) {
  SupervisedPluginSpec spec;
  LaunchOptions& launch = spec.launch;
  launch.name = config.name();
  launch.command.assign(config.command().begin(), config.command().end());
  for (const auto& [key, value] : config.env()) launch.env[key] = value;
  launch.working_dir = config.working_dir();
  launch.socket_path = absl::StrCat(socket_dir, "/", config.name(), ".sock");
  PLUGD_RETURN_IF_ERROR(Annotate(ValidateSocketPath(launch.socket_path),
                                 absl::StrCat("plugin ", config.name())));
  launch.protocol_versions.assign(config.protocol_versions().begin(),
                                  config.protocol_versions().end());
  if (launch.protocol_versions.empty()) launch.protocol_versions = {1};
  launch.start_timeout = FromProto(config.start_timeout());
  launch.stop_grace = FromProto(config.stop_timeout());
  launch.max_message_bytes = config.max_message_bytes();
  launch.output.max_line_bytes = config.log_line_bytes();
  // Unset means false: the plugin gets only what the config passes.
  launch.inherit_environment = config.inherit_environment();
  launch.executable_sha256 = config.sha256();
  if (config.has_limits()) {
    const v1::LimitsConfig& limits = config.limits();
    if (!limits.address_space().empty()) {
      absl::StatusOr<uint64_t> bytes = ParseByteSize(limits.address_space());
      if (!bytes.ok()) {
        return Annotate(bytes.status(), absl::StrCat("plugin ", config.name(),
                                                     ": limits.address_space"));
      }
      launch.limits.address_space_bytes = *bytes;
    }
    if (limits.open_files() > 0) launch.limits.open_files = limits.open_files();
    if (limits.cpu_seconds() > 0) {
      launch.limits.cpu_seconds = limits.cpu_seconds();
    }
    if (limits.processes() > 0) launch.limits.processes = limits.processes();
  }
  if (!config.user().empty()) {
    absl::StatusOr<RunAs> run_as = LookUpRunAs(config.user(), config.group());
    if (!run_as.ok()) {
      return Annotate(run_as.status(), absl::StrCat("plugin ", config.name()));
    }
    launch.run_as = *std::move(run_as);
  }
  if (config.has_go_plugin()) {
    GoPluginOptions go;
    go.magic_cookie_key = config.go_plugin().magic_cookie_key();
    go.magic_cookie_value = config.go_plugin().magic_cookie_value();
    go.min_port = config.go_plugin().min_port();
    go.max_port = config.go_plugin().max_port();
    launch.go_plugin = std::move(go);
  }
  spec.restart = config.restart();
  spec.backoff.initial = FromProto(config.backoff().initial());
  spec.backoff.max = FromProto(config.backoff().max());
  spec.backoff.multiplier = config.backoff().multiplier();
  spec.max_restarts = config.max_restarts();
  spec.restart_window = FromProto(config.restart_window());
  spec.health_interval = FromProto(config.health_interval());
  spec.unhealthy_timeout = FromProto(config.unhealthy_timeout());
  spec.liveness_timeout = FromProto(config.liveness_timeout());
  spec.autostart = !config.has_autostart() || config.autostart();
  spec.log_buffer_bytes = config.log_buffer_bytes();
  spec.log_rate_bytes = config.log_rate_bytes();
  return spec;
}

int DaemonMain(int argc, char** argv) {
  // Signals are taken synchronously (sigwait) by the main thread: block them
  // before any other thread exists, so every thread inherits the mask.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);

  Args args;
  if (int code = ParseArgs(argc, argv, &args); code != 0) {
    return code < 0 ? 0 : code;
  }
  // Before the reaper's fork and any thread.
  SetMutexDeadlockDetection(args.mutex_deadlock_detection);
  std::unique_ptr<Reaper> reaper;
  if (!args.check) {
    // Forked now, while this process has a single thread.
    absl::StatusOr<std::unique_ptr<Reaper>> started = Reaper::Start();
    if (!started.ok()) {
      std::cerr << "plugd: " << started.status().message() << "\n";
      return 1;
    }
    reaper = std::move(*started);
  }
  log::RouteGrpcLogs();
  Daemon daemon(std::move(args), std::move(reaper));
  return daemon.Run();
}

}  // namespace plugd::broker
