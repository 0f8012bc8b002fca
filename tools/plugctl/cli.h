// Command-line parsing for plugctl, the admin CLI of the plugd broker.
//
// Kept free of any network code so it can be unit tested:
//
//   plugd::plugctl::ParseResult r = plugd::plugctl::ParseCommandLine(
//       {"--json", "logs", "random", "--follow"},
//       plugd::plugctl::Environment::FromProcess());
//   if (r.kind == plugd::plugctl::ParseResult::Kind::kRun) {
//     // r.options.command == Command::kLogs, r.options.name == "random" ...
//   }
#ifndef PLUGD_TOOLS_PLUGCTL_CLI_H_
#define PLUGD_TOOLS_PLUGCTL_CLI_H_

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace plugd::plugctl {

// Process exit codes. Stable: scripts depend on them.
inline constexpr int kExitOk = 0;
inline constexpr int kExitBrokerError = 1;  // The broker answered an error.
inline constexpr int kExitUsage = 2;        // Bad command line.
inline constexpr int kExitUnreachable = 3;  // No broker at the address.

enum class Command {
  kList,
  kStatus,
  kStart,
  kStop,
  kRestart,
  kLogs,
  kEvents,
  kDescribe,
  kCall,
};

// The subcommand's name as typed ("list", "status", ...).
absl::string_view CommandName(Command command);
// The inverse of CommandName; nullopt for an unknown name.
std::optional<Command> ParseCommandName(absl::string_view name);

// What plugctl reads from its environment, injected for tests.
struct Environment {
  // $PLUGD_ADMIN; empty when unset.
  std::string plugd_admin;
  // $XDG_RUNTIME_DIR; empty when unset.
  std::string xdg_runtime_dir;
  // The real user id.
  uid_t uid = 0;

  static Environment FromProcess();
};

// The broker address plugctl uses without --broker: $PLUGD_ADMIN, else the
// daemon's default, unix:$XDG_RUNTIME_DIR/plugd/admin.sock, else
// unix:/tmp/plugd-$UID/admin.sock. Normalized with NormalizeAddress.
std::string DefaultBrokerAddress(const Environment& env);

// Turns a bare socket path ("/run/plugd/admin.sock", "./a.sock") into a gRPC
// target ("unix:/run/plugd/admin.sock"); other targets are returned as-is.
std::string NormalizeAddress(absl::string_view address);

// The socket path of a "unix:PATH" or "unix://PATH" target; nullopt for any
// other kind of target.
std::optional<std::string> UnixSocketPath(absl::string_view target);

// A parsed command line.
struct Options {
  // gRPC target of the broker, normalized ("unix:/...").
  std::string broker;
  // --json: print JSON instead of tables and text.
  bool json = false;
  // --timeout: deadline of each unary call, and of streams without --follow.
  absl::Duration timeout = absl::Seconds(30);
  Command command = Command::kList;
  // The plugin, for every command that takes NAME.
  std::string name;
  // call: the function and its arguments, as typed.
  std::string function;
  std::vector<std::string> args;
  // logs / events: --follow.
  bool follow = false;
  // logs: --tail N (0: every kept line).
  uint32_t tail = 0;
  // events: --plugin NAME (empty: all plugins).
  std::string plugin_filter;
  // events: --history N, the number of past events sent first.
  uint32_t history = 20;
};

struct ParseResult {
  enum class Kind {
    kRun,         // `options` is complete: run it.
    kHelp,        // Print `text` to stdout and exit 0.
    kUsageError,  // Print `text` (the error, then usage) to stderr; exit 2.
  };
  Kind kind = Kind::kUsageError;
  Options options;
  std::string text;
};

// Parses argv[1..]. Global flags (--broker, --json, --timeout, --help) are
// accepted before or after the subcommand; "--" ends the flags; arguments
// that look like negative numbers ("-1", "-2.5") are positional.
ParseResult ParseCommandLine(const std::vector<std::string>& args,
                             const Environment& env);

// Usage text: of plugctl as a whole when `command` is empty, else of one
// subcommand.
std::string Usage(std::optional<Command> command = std::nullopt);

// Parses a --timeout value: an absl duration ("500ms", "5s", "1m30s") or a
// plain number of seconds ("10", "0.5"). Must be positive.
std::optional<absl::Duration> ParseTimeout(absl::string_view text);

}  // namespace plugd::plugctl

#endif  // PLUGD_TOOLS_PLUGCTL_CLI_H_
