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
// plugins. All methods are thread-safe.
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
#include "plugd/broker/event_loop.h"
#include "plugd/broker/launcher.h"
#include "plugd/broker/output.h"
#include "plugd/v1/plugin.pb.h"

namespace plugd::host {

using broker::ExitStatus;

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
  // Inherit the host's environment (default true). When false, the plugin
  // gets only `env`, PATH and the protocol variables.
  bool inherit_environment = true;
  // Working directory; empty means the host's.
  std::string working_dir;
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
};

// Host-wide settings.
struct HostOptions {
  // Directory for the plugins' sockets. Empty (default): a fresh private
  // directory (mode 0700) under $XDG_RUNTIME_DIR/plugd or /tmp/plugd-$UID,
  // removed when the Host is destroyed. A directory given here must exist and
  // is not removed.
  std::string socket_dir;
};

// A launched plugin. Obtained from Host::Launch; thread-safe.
class Plugin {
 public:
  ~Plugin();
  Plugin(const Plugin&) = delete;
  Plugin& operator=(const Plugin&) = delete;

  const std::string& name() const { return name_; }
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

  // plugd.v1.Control/Describe.
  absl::StatusOr<v1::DescribeResponse> Describe(
      absl::Duration timeout = absl::Seconds(10));
  // plugd.v1.Functions/ListFunctions; UNIMPLEMENTED when the plugin offers no
  // functions service.
  absl::StatusOr<std::vector<v1::FunctionInfo>> ListFunctions(
      absl::Duration timeout = absl::Seconds(10));
  // plugd.v1.Functions/Call. NOT_FOUND for an unknown function (the message
  // lists the plugin's functions), INVALID_ARGUMENT for bad arguments.
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
  // Blocks until the process exits or `timeout` passes.
  std::optional<ExitStatus> WaitForExit(absl::Duration timeout);
  // The plugin's captured output (stderr, and stdout after the handshake).
  broker::OutputCapture& output();

  // "plugin random (pid 4242)" or, once exited,
  // "plugin random (pid 4242) killed by signal 9 (SIGKILL)".
  std::string StateText() const;

 private:
  friend class Host;
  Plugin(std::string name, std::shared_ptr<broker::PluginProcess> process,
         std::shared_ptr<grpc::Channel> channel);

  const std::string name_;
  const std::shared_ptr<broker::PluginProcess> process_;
  const std::shared_ptr<grpc::Channel> channel_;
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
  // broker::PluginProcess::Launch); ALREADY_EXISTS for a name in use.
  absl::StatusOr<std::shared_ptr<Plugin>> Launch(PluginOptions options);

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

  const std::string socket_dir_;
  const bool owns_socket_dir_;
  broker::EventLoop loop_;
  mutable absl::Mutex mu_;
  std::vector<std::shared_ptr<Plugin>> plugins_ ABSL_GUARDED_BY(mu_);
};

// The default name for a command: file name without a leading "plugd-".
std::string DefaultPluginName(const std::string& executable);

}  // namespace plugd::host

#endif  // PLUGD_HOST_HOST_H_
