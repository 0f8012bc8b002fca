// A plugd plugin process: one object, one call to serve.
//
// Plugin does everything the plugd protocol (docs/protocol.md) asks of a
// plugin process: it checks the magic cookie, negotiates the protocol
// version, listens on the Unix socket the launcher named, serves
// grpc.health.v1.Health, plugd.v1.Control, plugd.v1.Functions (when functions
// are registered), the plugin's own services and gRPC server reflection,
// prints the handshake line, and shuts down gracefully on Control.Shutdown,
// SIGTERM or SIGINT. docs/sdk-cpp.md is the guide.
//
//   int main(int argc, char** argv) {
//     plugd::sdk::Plugin plugin({.name = "random", .version = "1.0.0"});
//     plugin.AddFunction({.name = "random",
//                         .help = "random [MIN [MAX]]: a random integer",
//                         .params = {...},
//                         .impl = &Random});
//     plugin.AddService(&my_kv_service);   // any grpc::Service
//     return plugin.Serve();               // the process exit code
//   }
#ifndef PLUGD_SDK_PLUGIN_H_
#define PLUGD_SDK_PLUGIN_H_

#include <grpcpp/impl/service_type.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "plugd/sdk/functions.h"

namespace plugd::sdk {

// The handshake of a HashiCorp go-plugin application whose host should be
// able to load this plugin: the application's plugin.HandshakeConfig
// MagicCookieKey and MagicCookieValue (docs/go-plugin.md).
struct GoPluginHandshake {
  std::string magic_cookie_key;    // required, no '='
  std::string magic_cookie_value;  // required
};

// What a plugin is. Validated by Serve().
struct PluginInfo {
  // Short, stable, no spaces, e.g. "random". Required.
  std::string name;
  // The plugin's own version, free form, e.g. "1.0.0". Required.
  std::string version;
  // The application protocol versions this plugin speaks. Serve() picks the
  // highest one the host also offers (PLUGD_PROTOCOL_VERSIONS) and prints it
  // in the handshake. Default: {1}.
  std::vector<uint32_t> protocol_versions = {1};
  // When set, Serve() also runs under a go-plugin host of that application
  // (go-plugin mode), besides under plugd hosts: when PLUGD_MAGIC_COOKIE is
  // absent and the variable magic_cookie_key holds magic_cookie_value, it
  // negotiates against PLUGIN_PROTOCOL_VERSIONS (with no version in common
  // it announces its lowest, as go-plugin's own plugins do, so that the host
  // reports the mismatch), listens on PLUGD_SOCKET if set or else on a
  // socket of its own in $TMPDIR (default /tmp), serves health "plugin",
  // plugin.GRPCController (Shutdown: a graceful shutdown) and
  // plugin.GRPCBroker (accepted, no brokered connections), and prints
  // go-plugin's handshake line.
  std::optional<GoPluginHandshake> go_plugin;
  // Tune glibc malloc for large messages (plugd/common/allocator.h): Serve()
  // raises M_MMAP_THRESHOLD to cover PLUGD_MAX_MESSAGE_BYTES (at most glibc's
  // 32 MiB) and M_TRIM_THRESHOLD to twice that, so that calls carrying
  // 64 KiB-1 MiB messages reuse heap memory instead of mapping and faulting
  // in fresh pages on every call (several times faster at those sizes; see
  // docs/performance-notes.md). The cost: up to 64 MiB of freed memory may
  // stay mapped per malloc arena. Skipped when the environment already tunes
  // malloc (MALLOC_MMAP_THRESHOLD_, MALLOC_TRIM_THRESHOLD_, MALLOC_TOP_PAD_,
  // MALLOC_MMAP_MAX_, MALLOC_ARENA_MAX, GLIBC_TUNABLES=glibc.malloc.*).
  // Default true; false leaves malloc as it is.
  bool tune_allocator = true;
  // Abseil's mutex deadlock detector. Debian's Abseil is built without
  // NDEBUG, so it runs on every absl::Mutex lock, gRPC's own locks
  // included: ~12,000 instructions of a 64-byte call's ~69,000 on the
  // plugin side (docs/performance-notes.md §5). Serve() turns it off, or on
  // (aborting on a lock-order cycle) when this is true
  // (plugd::SetMutexDeadlockDetection).
  bool mutex_deadlock_detection = false;
};

// Process exit codes Serve() returns.
inline constexpr int kExitOk = 0;     // Served, then shut down gracefully.
inline constexpr int kExitError = 1;  // Not launched by a host, bad
                                      // environment, no common protocol
                                      // version, OnStart failed, or the
                                      // server could not start.

namespace internal {
class PluginRuntime;
}  // namespace internal

// One plugin process. Configure it (AddFunction, AddService, OnStart,
// OnShutdown), then call Serve() once from main. The other methods may be
// called from any thread, also from RPC handlers while serving.
class Plugin {
 public:
  explicit Plugin(PluginInfo info);
  ~Plugin();
  Plugin(const Plugin&) = delete;
  Plugin& operator=(const Plugin&) = delete;

  // Offers a function through plugd.v1.Functions. A bad definition (see
  // FunctionRegistry::Add) is reported by Serve(), which then fails.
  // Call before Serve().
  Plugin& AddFunction(Function function);

  // Serves a gRPC service (sync, callback or generic). Not owned: it must
  // outlive Serve(). Call before Serve().
  Plugin& AddService(grpc::Service* service);

  // Runs `hook` in Serve() after the launch environment is checked and
  // before the server starts: the place for start-up work that should not
  // happen when the binary is run by hand (opening data files, ...). An
  // error is printed to stderr and Serve() returns kExitError. Call before
  // Serve(); hooks run in the order added.
  Plugin& OnStart(std::function<absl::Status()> hook);

  // Runs `hook` when shutdown begins (Control.Shutdown, SIGTERM, SIGINT or
  // Shutdown()), before the server stops taking calls, so that long-running
  // handlers (server streams) can end. Hooks run once, in the order added,
  // on the thread that runs Serve(). Call before Serve().
  Plugin& OnShutdown(std::function<void()> hook);

  // Serves until shut down, then returns the process exit code (kExitOk or
  // kExitError). Blocks. Reads PLUGD_MAGIC_COOKIE, PLUGD_SOCKET,
  // PLUGD_PROTOCOL_VERSIONS, PLUGD_MAX_MESSAGE_BYTES and
  // PLUGD_SHUTDOWN_GRACE_MS (in go-plugin mode the application's cookie,
  // PLUGIN_PROTOCOL_VERSIONS and TMPDIR instead of the first three);
  // installs SIGTERM and SIGINT handlers for its duration. Call once per
  // process.
  int Serve();

  // True when Serve() runs in go-plugin mode (see PluginInfo::go_plugin).
  bool go_plugin_mode() const;

  // Asks a serving plugin to shut down, as Control.Shutdown does. Returns at
  // once; safe from any thread and more than once; before Serve() it makes
  // Serve() shut down right after starting.
  void Shutdown();

  // Sets the health of every served name ("", "plugin", each service) to
  // SERVING or NOT_SERVING; open health Watch streams get the change. Ignored
  // once shutdown has begun (everything is NOT_SERVING then).
  void SetServing(bool serving);

  // True once shutdown has begun. Streaming handlers check it to end early.
  bool shutting_down() const;

  // The negotiated application protocol version; 0 before Serve() has
  // negotiated it.
  uint32_t protocol_version() const;

  const PluginInfo& info() const { return info_; }

 private:
  PluginInfo info_;
  FunctionRegistry functions_;
  absl::Status config_error_;
  std::vector<grpc::Service*> services_;
  std::vector<std::function<absl::Status()>> start_hooks_;
  std::vector<std::function<void()>> shutdown_hooks_;
  std::unique_ptr<internal::PluginRuntime> runtime_;
};

}  // namespace plugd::sdk

#endif  // PLUGD_SDK_PLUGIN_H_
