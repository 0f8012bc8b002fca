// plugd-conform: checks that a plugin command follows docs/protocol.md, each
// rule as a named pass/fail check with a reason quoting what the plugin did.
// docs/conformance.md explains every check; this header is the library the
// executable (main.cc) and the tests use.
//
//   plugd::conform::Options options;
//   options.command = {"build/bin/plugd-random"};
//   plugd::conform::Report report = plugd::conform::RunChecks(options);
//   std::cout << plugd::conform::FormatHuman(report);  // or FormatJson
//   return report.all_passed() ? 0 : 1;
#ifndef PLUGD_TOOLS_CONFORM_CONFORM_H_
#define PLUGD_TOOLS_CONFORM_CONFORM_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/time/time.h"

namespace plugd::conform {

// Check names, in the order they run.
inline constexpr const char* kCheckNames[] = {
    "cookie",           "handshake",   "versions",    "health",
    "describe",         "functions",   "stdout-logs", "shutdown-call",
    "shutdown-sigterm", "no-leftovers"};

// What to check and how patiently. Validated by ParseCommandLine.
struct Options {
  // The plugin command: argv, command[0] a path or a name in PATH. Required.
  std::vector<std::string> command;
  // Hang guard for each thing the checker waits for (a handshake, an exit
  // without the cookie, one RPC). Default 10 s; must be positive.
  absl::Duration timeout = absl::Seconds(10);
  // The shutdown grace (PLUGD_SHUTDOWN_GRACE_MS): how long the plugin has
  // to exit after the Shutdown call or SIGTERM, and how long descendants
  // have to go after it exited. Default 5 s; must be positive.
  absl::Duration grace = absl::Seconds(5);
  // How long the stdout-logs check watches a serving plugin. Default 500 ms.
  absl::Duration observe = absl::Milliseconds(500);
  // The application protocol versions offered (PLUGD_PROTOCOL_VERSIONS) in
  // every launch except the versions check's own. Default {1}.
  std::vector<uint32_t> versions = {1};
  // PLUGD_PLUGIN_NAME. Default: the base name of command[0].
  std::string name;
  // Run only these checks (names from kCheckNames); empty means all.
  std::vector<std::string> only;
  // Environment variables removed from the plugin's environment (the
  // checker's own settings, e.g. its gRPC client tuning). Default none.
  std::vector<std::string> unset_for_plugin;
};

// The checker's gRPC client notices a server's GOAWAY on an idle connection
// only on its backup poll (5 s by default); a plugin whose graceful stop
// waits for its clients to close their connections would be timed by that.
// main() sets this variable to kBackupPollMs before gRPC starts, unless the
// user set it.
inline constexpr char kEnvBackupPollMs[] =
    "GRPC_CLIENT_CHANNEL_BACKUP_POLL_INTERVAL_MS";
inline constexpr char kBackupPollMs[] = "100";

// The outcome of one check.
struct CheckResult {
  std::string name;  // one of kCheckNames
  bool passed = false;
  std::string reason;  // what the plugin did, quoted; why it failed
  absl::Duration duration;
};

struct Report {
  std::vector<std::string> command;
  std::vector<CheckResult> checks;
  bool all_passed() const;
};

// Runs the checks, in order; every check launches the plugin afresh. Makes
// this process a child subreaper first. Every process it started is gone
// when it returns.
Report RunChecks(const Options& options);

// "PASS name — reason" per check, then a summary line.
std::string FormatHuman(const Report& report);
// {"command": [...], "passed": bool, "passed_count": n, "failed_count": n,
//  "checks": [{"name", "passed", "reason", "duration_ms"}, ...]}
std::string FormatJson(const Report& report);

// Exit codes of plugd-conform.
inline constexpr int kExitAllPassed = 0;
inline constexpr int kExitSomeFailed = 1;
inline constexpr int kExitUsage = 2;

struct ParsedCommandLine {
  enum class Kind { kRun, kHelp, kUsageError };
  Kind kind = Kind::kRun;
  Options options;
  bool json = false;
  std::string text;  // the help text, or the usage error
};

// Parses argv[1..]: [FLAGS] [--] COMMAND [ARG...].
ParsedCommandLine ParseCommandLine(const std::vector<std::string>& args);

}  // namespace plugd::conform

#endif  // PLUGD_TOOLS_CONFORM_CONFORM_H_
