#include "cli.h"

#include <unistd.h>

#include <cstdlib>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "plugd/common/value.h"

namespace plugd::plugctl {
namespace {

struct CommandInfo {
  Command command;
  absl::string_view name;
  absl::string_view synopsis;     // After "plugctl [FLAGS] ".
  absl::string_view summary;      // One line.
  absl::string_view flags;        // Subcommand flags, preformatted.
  absl::string_view description;  // Extra paragraph; may be empty.
};

constexpr CommandInfo kCommands[] = {
    {Command::kList, "list", "list", "List every plugin with its state.", "",
     "Columns: NAME, STATE, PID, UPTIME, RESTARTS, ADDRESS, VERSION."},
    {Command::kStatus, "status", "status NAME",
     "Show one plugin's status in detail.", "",
     "Prints one `key: value` line per field, including the last exit, the\n"
     "last error and, while backing off, when the next start is due."},
    {Command::kStart, "start", "start NAME",
     "Start a stopped or failed plugin and wait until it is ready.", "",
     "Exits 1 when the plugin did not become ready (its last error is "
     "printed)."},
    {Command::kStop, "stop", "stop NAME",
     "Stop a plugin and keep it stopped until start or restart.", "", ""},
    {Command::kRestart, "restart", "restart NAME",
     "Restart a plugin (revives a failed one) and wait until it is ready.", "",
     "Exits 1 when the plugin did not become ready (its last error is "
     "printed)."},
    {Command::kLogs, "logs", "logs NAME [--follow] [--tail N]",
     "Print a plugin's captured output lines.",
     "  -f, --follow      keep streaming new lines until interrupted (Ctrl-C)\n"
     "  -n, --tail N      print only the last N kept lines first (default: "
     "all)\n",
     "Lines print as `TIME LEVEL [stream] text`."},
    {Command::kEvents, "events",
     "events [--follow] [--plugin NAME] [--history N]",
     "Print lifecycle events (starts, exits, backoffs, failures).",
     "  -f, --follow      keep streaming new events until interrupted "
     "(Ctrl-C)\n"
     "      --plugin NAME only this plugin's events\n"
     "      --history N   past events to print first (default: 20)\n",
     "Events print as `TIME PLUGIN TYPE details`."},
    {Command::kDescribe, "describe", "describe NAME",
     "Show a plugin's version, protocol, services and functions.", "", ""},
    {Command::kCall, "call", "call NAME FUNCTION [ARG...]",
     "Call a plugin's function by name and print its result.", "",
     "Each ARG is a JSON number, true/false/null, a JSON array or object, a\n"
     "JSON string in double quotes, or else taken literally as a string.\n"
     "Use -- before arguments that start with '-' and are not numbers."},
};

constexpr absl::string_view kGlobalFlags =
    "Global flags (before or after the subcommand):\n"
    "      --broker ADDR   broker address: unix:PATH or a socket path\n"
    "                      (default: $PLUGD_ADMIN, else\n"
    "                      unix:$XDG_RUNTIME_DIR/plugd/admin.sock, else\n"
    "                      unix:/tmp/plugd-$UID/admin.sock)\n"
    "      --json          print JSON (one object per line for streams)\n"
    "      --timeout DUR   deadline of each call, e.g. 5s, 500ms "
    "(default: 30s)\n"
    "  -h, --help          show help\n";

constexpr absl::string_view kExitCodes =
    "Exit codes: 0 ok, 1 the broker answered an error, 2 usage error,\n"
    "3 the broker is unreachable.\n";

const CommandInfo& Info(Command command) {
  for (const CommandInfo& info : kCommands) {
    if (info.command == command) return info;
  }
  std::abort();  // Every Command has an entry.
}

// "-1", "-2.5", "-1e3": positional, not flags.
bool LooksLikeNumber(absl::string_view text) {
  double unused;
  return absl::SimpleAtod(text, &unused);
}

bool ParseCount(absl::string_view text, uint32_t* out) {
  return absl::SimpleAtoi(text, out);
}

}  // namespace

absl::string_view CommandName(Command command) { return Info(command).name; }

std::optional<Command> ParseCommandName(absl::string_view name) {
  for (const CommandInfo& info : kCommands) {
    if (info.name == name) return info.command;
  }
  return std::nullopt;
}

Environment Environment::FromProcess() {
  Environment env;
  if (const char* v = std::getenv("PLUGD_ADMIN")) env.plugd_admin = v;
  if (const char* v = std::getenv("XDG_RUNTIME_DIR")) env.xdg_runtime_dir = v;
  env.uid = getuid();
  return env;
}

std::string NormalizeAddress(absl::string_view address) {
  if (absl::StartsWith(address, "/") || absl::StartsWith(address, "./") ||
      absl::StartsWith(address, "../")) {
    return absl::StrCat("unix:", address);
  }
  // A relative path with no scheme, e.g. "admin.sock".
  if (!absl::StrContains(address, ':')) return absl::StrCat("unix:", address);
  return std::string(address);
}

std::optional<std::string> UnixSocketPath(absl::string_view target) {
  if (absl::ConsumePrefix(&target, "unix://")) return std::string(target);
  if (absl::ConsumePrefix(&target, "unix:")) return std::string(target);
  return std::nullopt;
}

std::string DefaultBrokerAddress(const Environment& env) {
  if (!env.plugd_admin.empty()) return NormalizeAddress(env.plugd_admin);
  if (!env.xdg_runtime_dir.empty()) {
    return absl::StrCat("unix:", env.xdg_runtime_dir, "/plugd/admin.sock");
  }
  return absl::StrCat("unix:/tmp/plugd-", env.uid, "/admin.sock");
}

std::optional<absl::Duration> ParseTimeout(absl::string_view text) {
  absl::Duration d;
  double seconds;
  if (absl::SimpleAtod(text, &seconds)) {
    d = absl::Seconds(seconds);
  } else if (!absl::ParseDuration(text, &d)) {
    return std::nullopt;
  }
  if (d <= absl::ZeroDuration() || d == absl::InfiniteDuration()) {
    return std::nullopt;
  }
  return d;
}

std::string Usage(std::optional<Command> command) {
  if (!command.has_value()) {
    std::string out =
        "plugctl: the admin CLI of the plugd broker.\n\n"
        "Usage: plugctl [--broker ADDR] [--json] [--timeout DUR] COMMAND "
        "[ARGS]\n\nCommands:\n";
    for (const CommandInfo& info : kCommands) {
      absl::StrAppend(&out, "  ", info.synopsis, "\n      ", info.summary,
                      "\n");
    }
    absl::StrAppend(&out, "\n", kGlobalFlags, "\n",
                    "Run `plugctl COMMAND --help` for a command's details.\n",
                    kExitCodes);
    return out;
  }
  const CommandInfo& info = Info(*command);
  std::string out = absl::StrCat("Usage: plugctl [GLOBAL FLAGS] ",
                                 info.synopsis, "\n\n", info.summary, "\n");
  if (!info.description.empty()) absl::StrAppend(&out, info.description, "\n");
  if (!info.flags.empty()) absl::StrAppend(&out, "\nFlags:\n", info.flags);
  absl::StrAppend(&out, "\n", kGlobalFlags, "\n", kExitCodes);
  return out;
}

ParseResult ParseCommandLine(const std::vector<std::string>& args,
                             const Environment& env) {
  ParseResult result;
  Options& options = result.options;
  std::optional<Command> command;
  std::string unknown_command;
  std::vector<std::string> positional;
  std::string error;
  bool help = false;
  std::optional<std::string> broker;
  // Subcommand flags seen, checked once the subcommand is known.
  std::vector<std::string> command_flags;

  auto fail = [&](std::string message) {
    if (error.empty()) error = std::move(message);
  };

  bool flags_done = false;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    const bool is_flag =
        !flags_done && arg.size() > 1 && arg[0] == '-' && !LooksLikeNumber(arg);
    if (!is_flag) {
      if (!command.has_value() && unknown_command.empty()) {
        if (std::optional<Command> c = ParseCommandName(arg)) {
          command = c;
        } else if (arg == "help") {
          help = true;  // `plugctl help [COMMAND]`.
        } else {
          unknown_command = arg;
          fail(absl::StrCat("unknown command '", arg, "'"));
        }
      } else {
        positional.push_back(arg);
      }
      continue;
    }
    if (arg == "--") {
      flags_done = true;
      continue;
    }
    // "--name=value" or "--name value".
    std::string name = arg;
    std::optional<std::string> inline_value;
    if (size_t eq = arg.find('='); eq != std::string::npos) {
      name = arg.substr(0, eq);
      inline_value = arg.substr(eq + 1);
    }
    auto value = [&]() -> std::optional<std::string> {
      if (inline_value.has_value()) return inline_value;
      if (i + 1 < args.size()) return args[++i];
      fail(absl::StrCat("flag ", name, " needs a value"));
      return std::nullopt;
    };
    auto no_value = [&]() {
      if (inline_value.has_value()) {
        fail(absl::StrCat("flag ", name, " takes no value"));
      }
    };
    if (name == "-h" || name == "--help") {
      no_value();
      help = true;
    } else if (name == "--json") {
      no_value();
      options.json = true;
    } else if (name == "--broker") {
      if (auto v = value()) {
        if (v->empty()) {
          fail("flag --broker needs a non-empty address");
        } else {
          broker = *v;
        }
      }
    } else if (name == "--timeout") {
      if (auto v = value()) {
        if (std::optional<absl::Duration> d = ParseTimeout(*v)) {
          options.timeout = *d;
        } else {
          fail(absl::StrCat("bad --timeout '", *v,
                            "': want a positive duration such as 5s or "
                            "500ms"));
        }
      }
    } else if (name == "-f" || name == "--follow") {
      no_value();
      options.follow = true;
      command_flags.push_back("--follow");
    } else if (name == "-n" || name == "--tail") {
      if (auto v = value()) {
        if (!ParseCount(*v, &options.tail)) {
          fail(absl::StrCat("bad --tail '", *v, "': want a count"));
        }
      }
      command_flags.push_back("--tail");
    } else if (name == "--history") {
      if (auto v = value()) {
        if (!ParseCount(*v, &options.history)) {
          fail(absl::StrCat("bad --history '", *v, "': want a count"));
        }
      }
      command_flags.push_back("--history");
    } else if (name == "--plugin") {
      if (auto v = value()) {
        absl::Status utf8 = CheckUtf8(*v, "--plugin");
        if (!utf8.ok()) fail(std::string(utf8.message()));
        options.plugin_filter = *v;
      }
      command_flags.push_back("--plugin");
    } else {
      fail(absl::StrCat("unknown flag ", name));
    }
  }

  // `plugctl help logs`: the first positional after "help" names a command.
  if (help && !command.has_value() && !unknown_command.empty()) {
    if (std::optional<Command> c = ParseCommandName(unknown_command)) {
      command = c;
      unknown_command.clear();
      error.clear();
    }
  }

  if (command.has_value()) {
    const Command c = *command;
    for (const std::string& flag : command_flags) {
      const bool ok =
          (c == Command::kLogs && (flag == "--follow" || flag == "--tail")) ||
          (c == Command::kEvents &&
           (flag == "--follow" || flag == "--plugin" || flag == "--history"));
      if (!ok) {
        fail(
            absl::StrCat("unknown flag ", flag, " for '", CommandName(c), "'"));
      }
    }
    size_t min_args = 1;
    size_t max_args = 1;
    switch (c) {
      case Command::kList:
      case Command::kEvents:
        min_args = max_args = 0;
        break;
      case Command::kCall:
        min_args = 2;
        max_args = SIZE_MAX;
        break;
      default:
        break;
    }
    if (positional.size() < min_args) {
      fail(min_args == 1 ? absl::StrCat("'", CommandName(c), "' needs NAME")
                         : absl::StrCat("'", CommandName(c),
                                        "' needs NAME and FUNCTION"));
    } else if (positional.size() > max_args) {
      fail(absl::StrCat("unexpected argument '", positional[max_args],
                        "' for '", CommandName(c), "'"));
    }
    // The admin API's strings must be UTF-8 (protobuf), so say which one
    // is not here rather than have the broker fail to parse the request.
    for (size_t i = 0; i < positional.size() && error.empty(); ++i) {
      std::string what = i == 0   ? "NAME"
                         : i == 1 ? "FUNCTION"
                                  : absl::StrCat("argument ", i - 1);
      absl::Status utf8 = i < 2 ? CheckUtf8(positional[i], what)
                                : CheckUtf8(ParseArgument(positional[i]), what);
      if (!utf8.ok()) fail(std::string(utf8.message()));
    }
    options.command = c;
    if (!positional.empty()) options.name = positional[0];
    if (c == Command::kCall && positional.size() >= 2) {
      options.function = positional[1];
      options.args.assign(positional.begin() + 2, positional.end());
    }
  } else if (error.empty() && !help) {
    fail("no command given");
  }

  if (help && unknown_command.empty()) {
    result.kind = ParseResult::Kind::kHelp;
    result.text = Usage(command);
    return result;
  }
  if (!error.empty()) {
    result.kind = ParseResult::Kind::kUsageError;
    result.text = absl::StrCat("plugctl: ", error, "\n\n", Usage(command));
    return result;
  }
  options.broker = broker.has_value() ? NormalizeAddress(*broker)
                                      : DefaultBrokerAddress(env);
  result.kind = ParseResult::Kind::kRun;
  return result;
}

}  // namespace plugd::plugctl
