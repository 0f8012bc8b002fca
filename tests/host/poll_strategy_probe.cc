// For HostPollStrategyTest: creates a Host in a fresh process and prints
// the poll strategy gRPC runs with, whether GRPC_POLL_STRATEGY is left in
// the environment (which plugins would inherit), and the result of one
// call to a plugin:
//
//   plugd-test-poll-strategy [--strategy=NAME] [--grpc-first]
//                            [--grpc-released-first] [--twice]
//                            [--plugin=PATH]
//
// --strategy: HostOptions::grpc_poll_strategy (default: its default, "").
// --grpc-first: use gRPC (a channel, kept) before Host::Create.
// --grpc-released-first: the same, but the channel is gone (and gRPC shut
//   down) before Host::Create.
// --twice: a second Host, created while the first lives.
// --plugin: launch PATH (plugd-arith) and call its function mul(6, 7).
// Prints "strategy=NAME", "env=VALUE|unset" and "mul=RESULT" lines; a
// failure goes to stderr with exit status 1.
#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>

#include "absl/strings/match.h"
#include "absl/time/time.h"
#include "plugd/common/poll_strategy.h"
#include "plugd/common/value.h"
#include "plugd/host/host.h"

int main(int argc, char** argv) {
  plugd::host::HostOptions options;
  bool grpc_first = false;
  bool grpc_released_first = false;
  bool twice = false;
  std::string plugin_path;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (absl::StartsWith(arg, "--strategy=")) {
      options.grpc_poll_strategy = arg.substr(11);
    } else if (arg == "--grpc-first") {
      grpc_first = true;
    } else if (arg == "--grpc-released-first") {
      grpc_released_first = true;
    } else if (arg == "--twice") {
      twice = true;
    } else if (absl::StartsWith(arg, "--plugin=")) {
      plugin_path = arg.substr(9);
    } else {
      std::fprintf(stderr, "unknown argument %s\n", arg.c_str());
      return 2;
    }
  }
  std::shared_ptr<grpc::Channel> early;
  if (grpc_first || grpc_released_first) {
    early = grpc::CreateChannel("unix:/nonexistent/probe",
                                grpc::InsecureChannelCredentials());
  }
  if (grpc_released_first) early.reset();
  auto host = plugd::host::Host::Create(options);
  if (!host.ok()) {
    std::fprintf(stderr, "%s\n", host.status().ToString().c_str());
    return 1;
  }
  absl::StatusOr<std::unique_ptr<plugd::host::Host>> second;
  if (twice) {
    second = plugd::host::Host::Create(options);
    if (!second.ok()) {
      std::fprintf(stderr, "%s\n", second.status().ToString().c_str());
      return 1;
    }
  }
  const char* env = std::getenv("GRPC_POLL_STRATEGY");
  std::printf("strategy=%s\nenv=%s\n", plugd::GrpcPollStrategyInUse().c_str(),
              env == nullptr ? "unset" : env);
  if (!plugin_path.empty()) {
    plugd::host::PluginOptions plugin_options;
    plugin_options.name = "arith";
    plugin_options.command = {plugin_path};
    auto plugin = (*host)->Launch(plugin_options);
    if (!plugin.ok()) {
      std::fprintf(stderr, "%s\n", plugin.status().ToString().c_str());
      return 1;
    }
    auto product =
        (*plugin)->Call("mul", {plugd::NumberValue(6), plugd::NumberValue(7)},
                        absl::Seconds(30));
    if (!product.ok()) {
      std::fprintf(stderr, "%s\n", product.status().ToString().c_str());
      return 1;
    }
    std::printf("mul=%g\n", product->number_value());
    (void)(*plugin)->Stop();
  }
  return 0;
}
