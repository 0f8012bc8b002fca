// calc: a host that launches function plugins as child processes, finds which
// one offers a function, calls it and prints the result.
//
//   calc --plugin build/bin/plugd-random --plugin build/bin/plugd-arith --list
//   calc --plugin build/bin/plugd-arith add 1 2 3        # prints 6
//
// Exit codes: 0 success, 1 the call or a plugin failed (unknown function,
// bad arguments, a plugin that would not start), 2 usage error.
#include <unistd.h>

#include <iostream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "plugd/common/log.h"
#include "plugd/common/value.h"
#include "plugd/host/host.h"

namespace {

constexpr char kUsage[] =
    "usage: calc --plugin PATH [--plugin PATH]... [options] FUNCTION [ARG...]\n"
    "       calc --plugin PATH [--plugin PATH]... --list\n"
    "\n"
    "Launches each plugin as a child process, finds the one offering "
    "FUNCTION,\n"
    "calls it with the arguments and prints the result.\n"
    "\n"
    "options:\n"
    "  --plugin PATH     a plugin executable (repeatable; required)\n"
    "  --list            print every function with its help text\n"
    "  --timeout DUR     call deadline, e.g. 5s or 500ms (default 30s)\n"
    "  --verbose, -v     show plugd's own log lines\n"
    "  --help, -h        this text\n"
    "\n"
    "Arguments are JSON-ish: 42 and -1.5 are numbers, true/false booleans,\n"
    "[1,2] lists; anything else is a string (\"\\\"42\\\"\" forces a string).\n"
    "\n"
    "exit codes: 0 ok, 1 call or plugin failed, 2 usage error\n";

int Usage(const std::string& error) {
  std::cerr << "calc: " << error << "\n\n" << kUsage;
  return 2;
}

struct Args {
  std::vector<std::string> plugins;
  std::string broker;
  bool list = false;
  bool verbose = false;
  absl::Duration timeout = absl::Seconds(30);
  std::string function;
  std::vector<std::string> function_args;
};

// Returns 0 to go on, else the exit code.
int ParseArgs(int argc, char** argv, Args* args) {
  int i = 1;
  for (; i < argc; ++i) {
    std::string arg = argv[i];
    auto value = [&](const std::string& flag, std::string* out) -> bool {
      if (arg == flag) {
        if (i + 1 >= argc) return false;
        *out = argv[++i];
        return true;
      }
      *out = arg.substr(flag.size() + 1);
      return true;
    };
    if (arg == "--help" || arg == "-h") {
      std::cout << kUsage;
      return -1;
    } else if (arg == "--plugin" || absl::StartsWith(arg, "--plugin=")) {
      std::string path;
      if (!value("--plugin", &path) || path.empty()) {
        return Usage("--plugin needs a path");
      }
      args->plugins.push_back(path);
    } else if (arg == "--broker" || absl::StartsWith(arg, "--broker=")) {
      if (!value("--broker", &args->broker) || args->broker.empty()) {
        return Usage(
            "--broker needs an address, e.g. unix:/tmp/plugd/admin.sock");
      }
    } else if (arg == "--timeout" || absl::StartsWith(arg, "--timeout=")) {
      std::string text;
      if (!value("--timeout", &text)) return Usage("--timeout needs a value");
      if (!absl::ParseDuration(text, &args->timeout) ||
          args->timeout <= absl::ZeroDuration()) {
        return Usage(absl::StrCat("--timeout: \"", text,
                                  "\" is not a positive duration like 5s"));
      }
    } else if (arg == "--list") {
      args->list = true;
    } else if (arg == "--verbose" || arg == "-v") {
      args->verbose = true;
    } else if (arg == "--") {
      ++i;
      break;
    } else if (absl::StartsWith(arg, "-") && arg.size() > 1 &&
               !(arg[1] >= '0' && arg[1] <= '9') && arg[1] != '.') {
      return Usage(absl::StrCat("unknown option ", arg));
    } else {
      break;
    }
  }
  if (i < argc) {
    args->function = argv[i++];
    for (; i < argc; ++i) args->function_args.push_back(argv[i]);
  }
  if (args->plugins.empty() && args->broker.empty()) {
    return Usage("give at least one --plugin PATH, or --broker ADDR");
  }
  if (!args->list && args->function.empty()) {
    return Usage("give a FUNCTION to call, or --list");
  }
  if (args->list && !args->function.empty()) {
    return Usage("--list takes no FUNCTION");
  }
  return 0;
}

void PrintFunction(const plugd::v1::FunctionInfo& info,
                   const std::string& plugin) {
  std::cout << info.name() << "  (plugin " << plugin << ")\n";
  for (absl::string_view line : absl::StrSplit(info.help(), '\n')) {
    std::cout << "    " << line << "\n";
  }
}

int Run(const Args& args) {
  absl::StatusOr<std::unique_ptr<plugd::host::Host>> host =
      plugd::host::Host::Create();
  if (!host.ok()) {
    std::cerr << "calc: " << host.status().message() << "\n";
    return 1;
  }
  if (!args.broker.empty()) {
    if (auto attached = (*host)->AttachAll(args.broker); !attached.ok()) {
      std::cerr << "calc: " << attached.status().message() << "\n";
      return 1;
    }
  }
  for (const std::string& path : args.plugins) {
    plugd::host::PluginOptions options;
    options.command = {path};
    if (auto plugin = (*host)->Launch(options); !plugin.ok()) {
      std::cerr << "calc: " << plugin.status().message() << "\n";
      return 1;
    }
  }
  if (args.list) {
    for (const auto& plugin : (*host)->plugins()) {
      auto functions = plugin->ListFunctions();
      if (absl::IsUnimplemented(functions.status())) continue;
      if (!functions.ok()) {
        std::cerr << "calc: " << functions.status().message() << "\n";
        return 1;
      }
      for (const auto& info : *functions) PrintFunction(info, plugin->name());
    }
    return 0;
  }
  auto found = (*host)->FindFunction(args.function);
  if (!found.ok()) {
    std::cerr << "calc: " << found.status().message() << "\n";
    return 1;
  }
  std::vector<google::protobuf::Value> values;
  for (const std::string& text : args.function_args) {
    values.push_back(plugd::ParseArgument(text));
  }
  auto result =
      found->first->Call(args.function, std::move(values), args.timeout);
  if (!result.ok()) {
    // Errors about the call itself already start with "FUNCTION: ".
    absl::string_view message = result.status().message();
    std::cerr << "calc: "
              << (absl::StartsWith(message, args.function + ":")
                      ? ""
                      : args.function + ": ")
              << message << "\n";
    return 1;
  }
  std::cout << plugd::FormatValue(*result) << "\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Args args;
  if (int code = ParseArgs(argc, argv, &args); code != 0) {
    return code < 0 ? 0 : code;
  }
  if (!args.verbose && plugd::log::MinLevel() < plugd::log::Level::kWarning &&
      getenv("PLUGD_LOG_LEVEL") == nullptr) {
    plugd::log::SetMinLevel(plugd::log::Level::kWarning);
  }
  return Run(args);
}
