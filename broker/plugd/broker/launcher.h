// Launching one plugin process: spawn, handshake, output capture, stop.
//
// This is the process layer of the broker core. It knows processes, pipes and
// the handshake line, not what a plugin serves. The host library (hosts/) and
// the supervisor build on it.
//
//   plugd::broker::EventLoop loop;  // one long-lived thread owns children
//   plugd::broker::LaunchOptions options;
//   options.name = "random";
//   options.command = {"build/bin/plugd-random"};
//   options.socket_path = "/tmp/plugd-0/abc/random.sock";
//   absl::StatusOr<std::shared_ptr<plugd::broker::PluginProcess>> plugin =
//       plugd::broker::PluginProcess::Launch(loop, options);
//   if (!plugin.ok()) { ... plugin.status() says what the plugin did ... }
//   auto channel = grpc::CreateChannel((*plugin)->handshake().GrpcTarget(),
//   ...);
//   ...
//   (*plugin)->Stop();  // shutdown call -> SIGTERM -> SIGKILL, whole group
#ifndef PLUGD_BROKER_LAUNCHER_H_
#define PLUGD_BROKER_LAUNCHER_H_

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "plugd/broker/event_loop.h"
#include "plugd/broker/output.h"
#include "plugd/common/exec_policy.h"
#include "plugd/common/protocol.h"

namespace grpc {
class Channel;
class ClientContext;
}  // namespace grpc

namespace plugd::broker {

// How a process ended: an exit code or a signal, never confused (Boost's
// exit-code helpers report "exit 9" and SIGKILL alike; this does not).
struct ExitStatus {
  bool signaled = false;  // true: killed by `signal`; false: exited with `code`
  int code = 0;           // exit code when !signaled
  int signal = 0;         // signal number when signaled
  bool core_dumped = false;

  // From a raw waitpid() status.
  static ExitStatus FromWaitStatus(int wait_status);
  // "exited with code 3", "killed by signal 9 (SIGKILL)".
  std::string ToString() const;
  // True for exit code 0.
  bool success() const { return !signaled && code == 0; }
};

// How to launch a plugin built with HashiCorp go-plugin (plugin.Serve with a
// GRPCServer), instead of a plugd plugin. docs/go-plugin.md is the guide.
struct GoPluginOptions {
  // The application's magic cookie, exactly as in the plugin's
  // plugin.HandshakeConfig: the plugin refuses to start unless the
  // environment variable `magic_cookie_key` holds `magic_cookie_value`.
  // Both required; the key must be a valid variable name (no '=').
  std::string magic_cookie_key;
  std::string magic_cookie_value;
  // PLUGIN_MIN_PORT / PLUGIN_MAX_PORT: the TCP port range a plugin that
  // listens on TCP picks from (go-plugin does so only on Windows; on Linux
  // it uses a Unix socket). Defaults 10000 and 25000, go-plugin's own;
  // min_port <= max_port <= 65535.
  uint32_t min_port = kGoPluginDefaultMinPort;
  uint32_t max_port = kGoPluginDefaultMaxPort;
};

// Resource limits (setrlimit, soft = hard, so the plugin cannot raise them;
// except RLIMIT_CPU, whose hard limit is one second above the soft one)
// applied in the plugin's process before exec; inherited by what it forks.
// Unset fields keep the launcher's own limits. docs/security.md, "What may
// run", says what each one does to a plugin that reaches it.
struct ResourceLimits {
  // RLIMIT_AS, bytes of virtual address space. Allocations beyond it fail
  // (malloc returns NULL, C++ throws std::bad_alloc, Go and Node abort). It
  // counts reservations, not resident memory: gRPC's threads each reserve
  // stack and malloc arenas, so leave a wide margin (256MiB is tight for a
  // C++ gRPC plugin, Go and Node plugins need more). Must be > 0.
  std::optional<uint64_t> address_space_bytes;
  // RLIMIT_NOFILE, open descriptors (the highest descriptor number + 1).
  // Must be > 0; gRPC needs a few dozen.
  std::optional<uint64_t> open_files;
  // RLIMIT_CPU, seconds of CPU time (user + system). On reaching it the
  // plugin gets SIGXCPU, which kills it (unless handled: then SIGKILL one
  // second later, the hard limit). Must be > 0.
  std::optional<uint64_t> cpu_seconds;
  // RLIMIT_NPROC: processes *and threads* of the plugin's real user id, all
  // of that user's processes counted, not only this plugin's. Ignored for
  // root. Must be > 0.
  std::optional<uint64_t> processes;

  bool empty() const {
    return !address_space_bytes && !open_files && !cpu_seconds && !processes;
  }
  bool operator==(const ResourceLimits& o) const {
    return address_space_bytes == o.address_space_bytes &&
           open_files == o.open_files && cpu_seconds == o.cpu_seconds &&
           processes == o.processes;
  }
};

// Whom the plugin runs as (uid, gid, supplementary groups), when the
// launcher runs as root; LookUpRunAs() makes one from user and group names.
using RunAs = ::plugd::RunAs;

// Everything needed to launch one plugin. Validated by Launch(), up front.
struct LaunchOptions {
  // The plugin's name for logs, errors and PLUGD_PLUGIN_NAME. Required.
  std::string name;
  // argv: command[0] is an executable path (or a name looked up in PATH),
  // the rest its arguments. Required, non-empty.
  std::vector<std::string> command;
  // Extra environment variables for the plugin; they override inherited ones.
  std::map<std::string, std::string> env;
  // When true (default), the plugin inherits the launcher's environment; when
  // false it gets only `env` plus the protocol variables and PATH, which is
  // env["PATH"] if given, else kMinimalPath (not the launcher's PATH). A bare
  // command[0] is looked up in that same PATH.
  bool inherit_environment = true;
  // Working directory; empty means the launcher's. With run_as, entered as
  // that user (it must be able to).
  std::string working_dir;
  // When set, "sha256:<64 hex digits>" (sha256sum's output; case-insensitive):
  // the executable is opened once, hashed from that descriptor before every
  // start, and that very descriptor is executed (execveat AT_EMPTY_PATH), so
  // replacing the file at its path after the check cannot change what runs.
  // A mismatch fails the launch with FAILED_PRECONDITION giving both hashes
  // (status payload kExecutableMismatchPayload). A `#!` script is hashed and
  // executed the same way: its interpreter reads it from /dev/fd/N (its $0),
  // and the interpreter itself is not pinned. Default: empty, no pin (the
  // executable is exec'd by path).
  std::string executable_sha256;
  // Resource limits set in the plugin before exec. Default: none.
  ResourceLimits limits;
  // When set, the plugin runs as this user and group. Only when the launcher
  // runs as root (FAILED_PRECONDITION otherwise). The plugin then gets its
  // own socket directory, /tmp/plugd-u<uid>.XXXXXX (mode 0700, owned by it),
  // because the launcher's socket directory is private to the launcher;
  // socket_path becomes a symlink to the socket there, as for go_plugin
  // plugins. Default: unset, the launcher's own ids.
  std::optional<RunAs> run_as;
  // Absolute Unix socket path the plugin must listen on (PLUGD_SOCKET), at
  // most 107 bytes. A stale socket file there is removed before the start;
  // one a live process still accepts on is an error (ALREADY_EXISTS).
  std::string socket_path;
  // Application protocol versions the host supports (PLUGD_PROTOCOL_VERSIONS).
  // Default {1}. The plugin's handshake must name one of them.
  std::vector<uint32_t> protocol_versions = {1};
  // How long the plugin has, from exec, to print its handshake and accept a
  // connection. Default 10 s. On expiry it is killed: DEADLINE_EXCEEDED.
  absl::Duration start_timeout = absl::Seconds(10);
  // Grace between the shutdown call and SIGTERM, and again between SIGTERM and
  // SIGKILL, when stopping. Also passed as PLUGD_SHUTDOWN_GRACE_MS. Default 5
  // s.
  absl::Duration stop_grace = absl::Seconds(5);
  // Largest gRPC message either side accepts (PLUGD_MAX_MESSAGE_BYTES).
  // Default 64 MiB.
  int64_t max_message_bytes = kDefaultMaxMessageBytes;
  // Output capture limits and where lines go.
  OutputOptions output;
  // When set, the connect check is made through the channel this returns
  // for handshake().GrpcTarget(), and that channel is kept as channel(). A
  // host passes the channel it will call the plugin on, so Launch returns
  // it connected and the first call does not open a second connection
  // (~1.5 ms of a cold start). Unset: the broker's channel (see channel()).
  // The launcher's own calls on that channel can be told apart in its
  // interceptors: IsLauncherCall.
  std::function<std::shared_ptr<grpc::Channel>(const std::string& target)>
      make_channel;
  // When set, the plugin speaks HashiCorp go-plugin rather than plugd's own
  // launch protocol (docs/go-plugin.md). Then:
  //   * its environment carries the application's cookie, go-plugin's
  //     PLUGIN_PROTOCOL_VERSIONS (from protocol_versions), PLUGIN_MIN_PORT,
  //     PLUGIN_MAX_PORT, and TMPDIR set to socket_path's (private) directory,
  //     where go-plugin creates its socket; PLUGD_MAGIC_COOKIE, PLUGD_SOCKET
  //     and PLUGD_PROTOCOL_VERSIONS are not set;
  //   * the plugin picks its own socket on every start; once it answers,
  //     socket_path is made a symlink to that socket (replaced atomically),
  //     so socket_path stays the plugin's stable address across restarts;
  //     both are removed when the plugin is gone;
  //   * health is checked for the service name "plugin";
  //   * Stop() calls plugin.GRPCController/Shutdown before SIGTERM.
  // The directory of socket_path must leave room for go-plugin's socket
  // name: at most 90 bytes.
  std::optional<GoPluginOptions> go_plugin;

  // The grpc.health.v1 service name checked: "plugin" for go-plugin plugins,
  // "" (the whole server) for plugd plugins.
  std::string health_service() const {
    return go_plugin ? kHealthServicePlugin : "";
  }
};

// PATH for plugins that do not inherit the launcher's environment.
inline constexpr char kMinimalPath[] =
    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

// The payload type URL set on the FAILED_PRECONDITION of an executable pin
// mismatch (the payload is the actual "sha256:..." of the file). A supervisor
// does not retry such a start: the file will not change by itself.
inline constexpr char kExecutableMismatchPayload[] =
    "type.googleapis.com/plugd.ExecutableMismatch";

// The payload type URL set on a failed launch's status once a process had
// been started: its pid ("pid 4301"), and, when it had announced its address
// before the start failed (so clients have usually reached it: an SDK
// plugin listens before it announces, though a go-plugin or run_as plugin's
// socket is linked only after the connect check), how it ended ("pid 4301
// signal 6", "... signal 6 core", "... code 1"). It may have died during the
// connect check (a crash) or been killed for failing it (SIGKILL; the status
// is then DEADLINE_EXCEEDED if the check timed out). A supervisor puts both
// in the start-failed event (Event.pid, Event.exit), where hosts count a
// crash or a hang. StartPid and StartExit read them back.
inline constexpr char kStartProcessPayload[] =
    "type.googleapis.com/plugd.StartProcess";
void SetStartProcess(pid_t pid, const std::optional<ExitStatus>& exit,
                     absl::Status* status);
pid_t StartPid(const absl::Status& status);  // 0: no process was started
std::optional<ExitStatus> StartExit(const absl::Status& status);

// Why a plugin with resource limits probably died, for an exit event: e.g.
// "memory limit 64MiB (address_space) reached?" when it had an address-space
// limit and was killed by SIGABRT, SIGSEGV, SIGBUS or SIGKILL or printed an
// out-of-memory message in `last_lines`; "CPU limit 2s (cpu_seconds)
// reached" for SIGXCPU. Empty when nothing points at a limit.
std::string DescribeLimitExit(const ResourceLimits& limits,
                              const ExitStatus& status,
                              const std::vector<std::string>& last_lines);

// One running plugin process. Thread-safe. Created by Launch(); the process
// is stopped (Stop()) when the last reference goes away, if still running.
class PluginProcess : public std::enable_shared_from_this<PluginProcess> {
 public:
  // Spawns the plugin from the loop's thread (so its parent-death signal is
  // tied to a long-lived thread), in its own process group, with
  // PR_SET_PDEATHSIG = SIGKILL; reads and validates the handshake; checks
  // that the announced address accepts a connection. Blocks the caller until
  // then (at most about start_timeout). Must not be called on the loop thread.
  //
  // Errors name the plugin and quote what it did:
  //   INVALID_ARGUMENT    bad options (empty command, socket path too long...)
  //   NOT_FOUND           the executable does not exist / is not executable
  //   UNKNOWN             it printed something that is not a handshake line
  //                       (the line is quoted), or exited before its handshake
  //                       (exit code or signal plus its last stderr lines)
  //   DEADLINE_EXCEEDED   no handshake within start_timeout (killed)
  //   FAILED_PRECONDITION unsupported core or app protocol version; the
  //                       executable does not match executable_sha256 (both
  //                       hashes given); run_as without running as root
  //   UNAVAILABLE         the announced address cannot be connected
  // On any error the process (group) has been killed and reaped.
  static absl::StatusOr<std::shared_ptr<PluginProcess>> Launch(
      EventLoop& loop, LaunchOptions options);

  // The same without blocking: `done` runs on the loop thread with the
  // result. Callable from any thread, the loop's included. The caller must
  // keep `loop` alive until `done` has run.
  static void AsyncLaunch(
      EventLoop& loop, LaunchOptions options,
      std::function<void(absl::StatusOr<std::shared_ptr<PluginProcess>>)> done);

  ~PluginProcess();

  PluginProcess(const PluginProcess&) = delete;
  PluginProcess& operator=(const PluginProcess&) = delete;

  const std::string& name() const;
  const LaunchOptions& options() const;
  pid_t pid() const;
  // The validated handshake; handshake().GrpcTarget() is the channel target:
  // the address the plugin announced (for go-plugin plugins, the socket it
  // chose; options().socket_path is a symlink to it).
  const Handshake& handshake() const;
  // The broker's connection to this instance, opened by Launch's connect
  // check and kept: one connection per plugin for everything the broker
  // asks it (health checks and watch, Describe, Control.Shutdown), so a
  // broker of many plugins does not hold two per plugin. Private subchannel,
  // plugd's fast reconnect settings, no BDP pings, gRPC's retries off (not
  // even transparent ones), options().max_message_bytes as the message
  // limits: a channel for the broker's own calls, not for applications.
  // With options().make_channel, the channel that made.
  std::shared_ptr<grpc::Channel> channel() const;
  // The plugin's output: every line captured after the handshake.
  OutputCapture& output();

  // True until the process has exited.
  bool running() const;
  // How it ended; empty while running.
  std::optional<ExitStatus> exit_status() const;
  // Registers `callback`, run once on the loop thread when the process exits
  // (immediately, on the loop, if it already has). Crash detection is event
  // driven (pidfd), not polled.
  void OnExit(std::function<void(const ExitStatus&)> callback);
  // Blocks until the process has exited, at most `timeout`. Returns the exit
  // status, or empty on timeout.
  std::optional<ExitStatus> WaitForExit(absl::Duration timeout);

  // Stops the plugin: the Control.Shutdown call (plugin.GRPCController/
  // Shutdown for go-plugin plugins), then SIGTERM to the process
  // group after `grace` (default: options().stop_grace), then SIGKILL after
  // another `grace`. Completes when the leader has exited and no process of
  // its group is left (leftovers are SIGKILLed and awaited). Blocking,
  // idempotent, bounded by about 2 * grace + shutdown-call deadline. Must not
  // be called on the loop thread. Returns how the leader exited.
  ExitStatus Stop(std::optional<absl::Duration> grace = std::nullopt);
  // The same, without blocking: `done` runs on the loop thread.
  void AsyncStop(std::optional<absl::Duration> grace,
                 std::function<void(const ExitStatus&)> done);

  // Sends `signal` to the plugin's whole process group (no-op once exited).
  absl::Status Signal(int signal);

  class Impl;

 private:
  explicit PluginProcess(std::shared_ptr<Impl> impl);
  // Shared with the loop's pending handlers (pipes, timers, the exit wait),
  // which may outlive this object by a little while a stop completes.
  std::shared_ptr<Impl> impl_;
};

// True for the context of a call the launcher itself makes on a plugin's
// channel (the connect check's health Check, Control.Shutdown, go-plugin's
// GRPCController.Shutdown), while that call is being started (the connect
// check is a blocking call: for the whole of it, at most start_timeout). For
// a client interceptor factory on a channel from LaunchOptions::make_channel,
// given ClientRpcInfo::client_context(): gRPC creates a call's interceptors
// when the call starts. The same methods called by anyone else are not the
// launcher's. One relaxed atomic load while no launcher call is marked, a
// leaf mutex and a scan of a few pointers while one is.
bool IsLauncherCall(const grpc::ClientContext* context);

// Waits, without polling, until no process is left in process group `pgid`:
// finds its members (/proc), SIGKILLs them, and waits on their pidfds.
// Bounded by `timeout`; DEADLINE_EXCEEDED if some survive it.
absl::Status KillProcessGroup(pid_t pgid, absl::Duration timeout);

}  // namespace plugd::broker

#endif  // PLUGD_BROKER_LAUNCHER_H_
