// The plugd host library: launch plugins as child processes and talk to them
// through gRPC channels, typed stubs, or functions by name.
//
//   absl::StatusOr<std::unique_ptr<plugd::host::Host>> host =
//       plugd::host::Host::Create();
//   plugd::host::PluginOptions options;
//   options.command = {"build/bin/plugd-random"};
//   absl::StatusOr<std::shared_ptr<plugd::host::Plugin>> random =
//       (*host)->Launch(options);
//   if (!random.ok()) { std::cerr << random.status() << "\n"; return 1; }
//
//   // By function name (dynamic plugins):
//   absl::StatusOr<google::protobuf::Value> n =
//       (*random)->Call("random", {plugd::NumberValue(1),
//       plugd::NumberValue(6)});
//
//   // Through any generated stub (typed plugins):
//   auto kv = kv::v1::KV::NewStub((*plugin)->channel());
//
//   // Plugins stop when the Host is destroyed, or earlier:
//   (*random)->Stop();
//
// Threads: a Host owns one event-loop thread that spawns and watches its
// plugins. Each attached plugin (Attach) follows the daemon's events for it
// over a stream on the host's one connection per daemon, on gRPC's callback
// threads. All methods are thread-safe.
#ifndef PLUGD_HOST_HOST_H_
#define PLUGD_HOST_HOST_H_

#include <google/protobuf/struct.pb.h>
#include <grpcpp/channel.h>
#include <sys/types.h>

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "plugd/broker/admin.h"
#include "plugd/broker/event_loop.h"
#include "plugd/broker/launcher.h"
#include "plugd/broker/output.h"
#include "plugd/broker/supervisor.h"
#include "plugd/v1/broker.grpc.pb.h"
#include "plugd/v1/plugin.pb.h"

namespace plugd::host {
namespace internal {
class AttachedEventWatch;  // hosts/src/event_watch.h
}  // namespace internal

using broker::ExitStatus;

// Supervision for a plugin launched by a host (embedded mode): the host's own
// supervisor restarts it per policy, at the same address, and calls made
// while it restarts wait for it. Fields as in the daemon's config
// (docs/config.md).
// Whether the host library takes idempotent calls over to retry them past
// gRPC's 5 attempts per call (docs/broker.md, "Calls across restarts").
enum class RetryMode {
  // Every idempotent unary call: none fails while its plugin is killed again
  // and again under it, within its deadline. Costs each such call about a
  // fifth more host CPU (a second call object; for a callback or
  // asynchronous call also a hop through gRPC's callback threads, while a
  // blocking call's rounds run on the caller's thread).
  kAlways,
  // Only calls started within 60 s (or call_timeout, if longer) after the
  // plugin exited, failed a start or turned unhealthy: calls to a stable
  // plugin cost nothing extra, but a call already in flight when a stable
  // plugin starts dying gets only gRPC's 5 attempts. For an attached
  // plugin the daemon's events (followed by the plugin's event thread)
  // say when it was unstable.
  kWhileUnstable,
};

struct SupervisionOptions {
  // always (default) | on-failure | never.
  v1::RestartPolicy restart = v1::RESTART_POLICY_ALWAYS;
  broker::BackoffPolicy backoff;
  // More than this many restarts within restart_window: failed. 0: no limit.
  uint32_t max_restarts = 5;
  absl::Duration restart_window = absl::Seconds(60);
  // Check rate for plugins without Health/Watch; plugins with it are checked
  // every liveness_timeout / 2 (docs/broker.md, "Health and liveness").
  absl::Duration health_interval = absl::Seconds(1);
  absl::Duration unhealthy_timeout = absl::Seconds(5);
  absl::Duration liveness_timeout = absl::Seconds(5);
};

// How to launch one plugin. Only `command` is required.
struct PluginOptions {
  // The plugin's name in logs, errors and lookups. Default: the executable's
  // file name without a leading "plugd-" (build/bin/plugd-random -> "random").
  // Names are unique within a Host.
  std::string name;
  // argv: the executable (a path, or a name looked up in PATH) and its
  // arguments. Required.
  std::vector<std::string> command;
  // Extra environment variables; they override inherited ones.
  std::map<std::string, std::string> env;
  // Inherit the host's environment (default true: the host application
  // chose its environment, unlike the plugd daemon, whose plugins inherit
  // nothing by default). When false, the plugin gets only `env`, the protocol
  // variables and PATH (env["PATH"], else broker::kMinimalPath), so no
  // secret of the host's environment reaches it.
  bool inherit_environment = true;
  // Working directory; empty means the host's. With run_as, entered as that
  // user.
  std::string working_dir;
  // Pins the executable to a SHA-256: "sha256:<64 hex digits>" (sha256sum's
  // output). Launch opens and hashes the file, then executes that open file
  // (execveat), so a file swapped in at the path afterwards never runs. A
  // mismatch fails the launch (and, when supervised, marks the plugin
  // failed without retrying) with FAILED_PRECONDITION giving both hashes.
  // A `#!` script works too; its interpreter reads it from /dev/fd/N (its
  // $0) and is not itself pinned. Default: empty, no pin.
  std::string executable_sha256;
  // Resource limits set in the plugin before exec (address space, open
  // files, CPU seconds, processes); see broker::ResourceLimits. Default:
  // none. A supervised plugin over a limit is restarted like any crash.
  broker::ResourceLimits limits;
  // Run the plugin as another user and group; only when the host runs as
  // root (FAILED_PRECONDITION otherwise). Build it with
  // plugd::LookUpRunAs("nobody", ""). The plugin then listens in a socket
  // directory of its own (see broker::LaunchOptions::run_as). Default:
  // unset, the host's own ids.
  std::optional<broker::RunAs> run_as;
  // Application protocol versions this host speaks with the plugin. Default
  // {1}. Launch fails with FAILED_PRECONDITION when none is in common.
  std::vector<uint32_t> protocol_versions = {1};
  // From exec to a handshake and a connectable socket. Default 10 s.
  absl::Duration start_timeout = absl::Seconds(10);
  // Stop escalation: shutdown call, SIGTERM after this, SIGKILL after this
  // again. Default 5 s.
  absl::Duration stop_grace = absl::Seconds(5);
  // Largest gRPC message, in bytes, sent or received by either side (the
  // host's channel and the plugin's server). Default 64 MiB. A larger message
  // fails with RESOURCE_EXHAUSTED naming this option.
  int64_t max_message_bytes = kDefaultMaxMessageBytes;
  // Output capture limits; lines go to plugd's log as "[name] line".
  broker::OutputOptions output;
  // When set, the plugin runs under the host's embedded supervisor instead
  // of as a bare child: it is restarted per policy at the same address, and
  // the channel waits for it (up to each call's deadline) while it restarts.
  std::optional<SupervisionOptions> supervision;
  // Methods that may be retried when the plugin dies under a call, as
  // "package.Service/Method", besides those its proto marks with
  // `option idempotency_level`. Used for supervised and attached plugins.
  // A call taken over stops once the plugin has crashed or hung twice since
  // the call started: the second exit event cancels the attempt in flight
  // (a request that brings it down each time; docs/broker.md).
  std::vector<std::string> idempotent_methods;
  // How idempotent calls outlive more plugin deaths than gRPC's 5 attempts
  // (supervised plugins; see RetryMode).
  RetryMode retry_mode = RetryMode::kAlways;
  // When set, the plugin is a HashiCorp go-plugin plugin (built with
  // go-plugin's plugin.Serve and a GRPCServer): it is launched with
  // go-plugin's environment and the application's magic cookie, checked for
  // health as "plugin" and stopped through plugin.GRPCController/Shutdown.
  // It picks its own socket; target() is the socket it announced for a bare
  // launch, and a stable symlink to each new socket for a supervised one.
  // See broker::LaunchOptions::go_plugin and docs/go-plugin.md. Describe()
  // and the functions calls are UNIMPLEMENTED for such plugins; list their
  // retryable methods in idempotent_methods.
  std::optional<broker::GoPluginOptions> go_plugin;
  // For supervised and attached plugins: the longest any call may wait,
  // including waiting for a restart (the service config's timeout; a call's
  // own shorter deadline wins). Default 30 s.
  absl::Duration call_timeout = absl::Seconds(30);
};

// How to attach to a plugin supervised by a running plugd daemon.
struct AttachOptions {
  // See PluginOptions::idempotent_methods, call_timeout and retry_mode.
  std::vector<std::string> idempotent_methods;
  absl::Duration call_timeout = absl::Seconds(30);
  RetryMode retry_mode = RetryMode::kAlways;
  // Deadline of the calls to the broker itself. Default 10 s.
  absl::Duration broker_timeout = absl::Seconds(10);
};

// Host-wide settings.
struct HostOptions {
  // Directory for the plugins' sockets. Empty (default): a fresh private
  // directory (mode 0700) under $XDG_RUNTIME_DIR/plugd or /tmp/plugd-$UID,
  // removed when the Host is destroyed, or, should the process be killed
  // first, by the next Host::Create of this user that makes its own in the
  // same place (the directory's lock is free once its process, and any
  // child it forked without exec, is gone; docs/launcher.md). A directory
  // given here must exist and is not removed.
  std::string socket_dir;
  // When set ("unix:/path"), the host serves the broker admin API for its
  // supervised plugins there, so `plugctl --broker ADDR` works against it.
  std::string admin_address;
  // Tune glibc malloc of THIS (the host's) process for large messages:
  // Host::Create raises M_MMAP_THRESHOLD to 32 MiB (glibc's maximum; it
  // covers a message of the default 64 MiB limit up to that size) and
  // M_TRIM_THRESHOLD to 64 MiB, process-wide, so that calls carrying
  // 64 KiB-1 MiB messages reuse heap memory instead of mapping and faulting
  // in fresh pages on every call (several times faster at those sizes; see
  // docs/performance-notes.md and plugd/common/allocator.h). This changes
  // the allocator for the whole host application, not just plugd's calls:
  // up to 64 MiB of freed memory may stay mapped per malloc arena. Skipped
  // when the environment already tunes malloc (MALLOC_MMAP_THRESHOLD_,
  // MALLOC_TRIM_THRESHOLD_, MALLOC_TOP_PAD_, MALLOC_MMAP_MAX_,
  // MALLOC_ARENA_MAX, GLIBC_TUNABLES=glibc.malloc.*). Default true; false
  // leaves the host's malloc as it is (plugins tune their own; see
  // PluginInfo::tune_allocator in the C++ SDK).
  bool tune_allocator = true;
  // gRPC's poll strategy for THIS (the host's) process, chosen by
  // Host::Create: "" (default: leave it to gRPC, "epoll1" on Linux, "poll"
  // where epoll is missing), "poll" or "epoll1" (gRPC aborts the process
  // where epoll is missing). Set "poll" in a host whose plugin calls are
  // blocking calls: the calling thread then reads its own answer instead
  // of being woken by whichever gRPC thread polled it, half the context
  // switches per call, about 40 % less CPU and ~7 % fewer instructions on
  // the host side. Leave it for callback-API calls: with "poll" those
  // made 15-20 % fewer calls per second through plugd's retry takeover
  // (plugd/common/poll_strategy.h, docs/performance-notes.md §8). gRPC
  // chooses the strategy once per process, so it is chosen only when
  // Host::Create runs before anything else in the process has used gRPC,
  // and GRPC_POLL_STRATEGY in the environment wins; otherwise Host::Create
  // logs a warning that says why. Anything but the three values is an
  // InvalidArgument error.
  std::string grpc_poll_strategy;
  // Abseil's mutex deadlock detector in THIS (the host's) process. Built
  // against Debian's Abseil (compiled without NDEBUG), every absl::Mutex
  // lock in the process, gRPC's own included, runs the detector: about a
  // sixth of the host side of a 64 B call (docs/performance-notes.md §5).
  // Host::Create sets the process-wide mode, first thing (before it starts
  // gRPC), on every call:
  // - false (default): off, as in release builds of Abseil;
  // - true: on, aborting the process on a lock-order cycle (a debugging
  //   aid, as the daemon's --mutex-deadlock-detection; only where Abseil
  //   was built without NDEBUG, as Debian's is). Choose it before any other
  //   thread takes absl::Mutex locks. Once a Host::Create of the process
  //   has turned the detector off, true leaves it off with a warning: turned
  //   on while locks taken without it are held, it would abort on their
  //   release;
  // - std::nullopt: unchanged (Abseil's default, on in Debian's build,
  //   unless the application or an earlier Host::Create changed it).
  std::optional<bool> mutex_deadlock_detection = false;
};

// A launched plugin. Obtained from Host::Launch; thread-safe.
class Plugin {
 public:
  ~Plugin();
  Plugin(const Plugin&) = delete;
  Plugin& operator=(const Plugin&) = delete;

  const std::string& name() const { return name_; }
  // The current process id; 0 when none runs.
  pid_t pid() const;
  // The plugin's gRPC target, e.g. "unix:/tmp/plugd-0/Ab12/random.sock".
  std::string target() const;
  // The application protocol version negotiated at launch.
  uint32_t protocol_version() const;

  // A channel to the plugin, usable with any generated stub. Its message
  // size limits follow PluginOptions::max_message_bytes. When the plugin has
  // died, a failing call's UNAVAILABLE status names the plugin, its pid and
  // how it exited.
  std::shared_ptr<grpc::Channel> channel() const { return channel_; }
  // For supervised and attached plugins the channel's service config makes
  // calls wait for the plugin while it restarts (up to their deadline and
  // call_timeout) and retries methods marked idempotent if the plugin dies
  // under them (blocking unary calls as often as it dies within their
  // deadline; other kinds of calls up to gRPC's 5 attempts; docs/broker.md);
  // calls to a stopped or failed plugin fail fast with UNAVAILABLE saying
  // why.

  // plugd.v1.Control/Describe.
  absl::StatusOr<v1::DescribeResponse> Describe(
      absl::Duration timeout = absl::Seconds(10));
  // plugd.v1.Functions/ListFunctions; UNIMPLEMENTED when the plugin offers no
  // functions service.
  absl::StatusOr<std::vector<v1::FunctionInfo>> ListFunctions(
      absl::Duration timeout = absl::Seconds(10));
  // plugd.v1.Functions/Call. NOT_FOUND for an unknown function (the message
  // lists the plugin's functions), INVALID_ARGUMENT for bad arguments,
  // including, before anything is sent, a string that is not UTF-8
  // ("add: argument 2 is not valid UTF-8 text (byte 0xff at offset 0)...").
  absl::StatusOr<google::protobuf::Value> Call(
      const std::string& function, std::vector<google::protobuf::Value> args,
      absl::Duration timeout = absl::Seconds(30));

  // Stops the plugin (shutdown call -> SIGTERM -> SIGKILL, whole process
  // group) and returns how it exited. Blocking, idempotent, bounded by about
  // twice stop_grace. An OK status means it was stopped or had already exited.
  absl::StatusOr<ExitStatus> Stop();

  // True until the process has exited.
  bool running() const;
  // How the process ended; empty while it runs.
  std::optional<ExitStatus> exit_status() const;
  // Blocks until the process exits or `timeout` passes. For supervised
  // plugins: until it leaves the running states (crashed, stopped, failed).
  std::optional<ExitStatus> WaitForExit(absl::Duration timeout);
  // The plugin's captured output (stderr, and stdout after the handshake).
  broker::OutputCapture& output();

  // "plugin random (pid 4242)" or, once exited,
  // "plugin random (pid 4242) killed by signal 9 (SIGKILL)"; for supervised
  // and attached plugins their state ("plugin random is failed; ...").
  std::string StateText() const;

  // True for plugins run by a supervisor (the host's own, or plugd's).
  bool supervised() const { return process_ == nullptr; }

 private:
  friend class Host;
  Plugin(std::string name, std::shared_ptr<broker::PluginProcess> process,
         broker::Supervisor* supervisor,
         std::shared_ptr<v1::Broker::Stub> broker, std::string target,
         uint32_t protocol_version);

  absl::StatusOr<v1::PluginStatus> SupervisedStatus() const;

  const std::string name_;
  // Exactly one of these three says who runs the process.
  const std::shared_ptr<broker::PluginProcess> process_;  // this host, bare
  broker::Supervisor* const supervisor_;            // this host's supervisor
  const std::shared_ptr<v1::Broker::Stub> broker_;  // a plugd daemon
  const std::string target_;
  const uint32_t protocol_version_;
  std::shared_ptr<grpc::Channel> channel_;
  std::shared_ptr<broker::OutputCapture> logs_;
  // Attached plugins: follows the daemon's events (reconnect on `ready`;
  // the retry window with RetryMode::kWhileUnstable).
  std::unique_ptr<internal::AttachedEventWatch> event_watch_;
};

// Launches and owns plugins. Destroying a Host stops all its plugins.
class Host {
 public:
  static absl::StatusOr<std::unique_ptr<Host>> Create(HostOptions options = {});
  ~Host();
  Host(const Host&) = delete;
  Host& operator=(const Host&) = delete;

  // Launches a plugin and waits for it to be ready (handshake + connectable).
  // Blocking, bounded by start_timeout. Errors say what the plugin did (see
  // broker::PluginProcess::Launch); ALREADY_EXISTS for a name in use. With
  // options.supervision the plugin runs under this host's supervisor.
  absl::StatusOr<std::shared_ptr<Plugin>> Launch(PluginOptions options);

  // Attaches to plugin `name` supervised by the plugd daemon at
  // `broker_address` (Resolve over the admin API). UNAVAILABLE, naming the
  // address, when the broker cannot be reached; NOT_FOUND (with the known
  // names) for an unknown plugin.
  absl::StatusOr<std::shared_ptr<Plugin>> Attach(
      const std::string& broker_address, const std::string& name,
      AttachOptions options = {});
  // Attaches to every plugin the daemon supervises.
  absl::StatusOr<std::vector<std::shared_ptr<Plugin>>> AttachAll(
      const std::string& broker_address, AttachOptions options = {});

  // The embedded supervisor (created by the first supervised launch, or by
  // HostOptions::admin_address); null if none.
  broker::Supervisor* supervisor() const;
  // The address the embedded admin API listens on; empty if none.
  std::string admin_address() const;

  // The plugin called `name`; NOT_FOUND lists the known names.
  absl::StatusOr<std::shared_ptr<Plugin>> Find(const std::string& name) const;
  // Every launched plugin, in launch order.
  std::vector<std::shared_ptr<Plugin>> plugins() const;

  // Which plugin offers `function`: asks each plugin's ListFunctions (plugins
  // without a functions service are skipped). NOT_FOUND lists every function
  // on offer. When several plugins offer it, the first launched wins.
  absl::StatusOr<std::pair<std::shared_ptr<Plugin>, v1::FunctionInfo>>
  FindFunction(const std::string& function);

  // Stops every plugin (in parallel). Idempotent.
  void StopAll();

  const std::string& socket_dir() const { return socket_dir_; }

 private:
  Host(std::string socket_dir, bool owns_socket_dir);

  absl::Status CheckNameFree(const std::string& name) const;
  absl::StatusOr<std::shared_ptr<Plugin>> LaunchSupervised(
      const std::string& name, broker::LaunchOptions launch,
      const PluginOptions& options);
  absl::Status EnsureSupervisor() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status StartAdmin(const std::string& address);
  // This host's client of the daemon at `address` ("unix:" optional): one
  // connection per daemon, shared by Attach, AttachAll and the attached
  // plugins' event watches.
  std::shared_ptr<v1::Broker::Stub> BrokerClient(const std::string& address);

  const std::string socket_dir_;
  const bool owns_socket_dir_;
  broker::EventLoop loop_;
  mutable absl::Mutex mu_;
  std::unique_ptr<broker::Supervisor> supervisor_ ABSL_GUARDED_BY(mu_);
  std::unique_ptr<broker::AdminServer> admin_ ABSL_GUARDED_BY(mu_);
  std::vector<std::shared_ptr<Plugin>> plugins_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::shared_ptr<v1::Broker::Stub>> brokers_
      ABSL_GUARDED_BY(mu_);
};

// The default name for a command: file name without a leading "plugd-".
std::string DefaultPluginName(const std::string& executable);

}  // namespace plugd::host

#endif  // PLUGD_HOST_HOST_H_
