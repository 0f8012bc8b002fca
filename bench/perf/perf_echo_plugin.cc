// plugd-perf-echo: echo.v1.Echo served through the C++ SDK, for plugd-perf
// (bench/perf/README.md). --functions also registers a function (so the
// plugin serves plugd.v1.Functions, a sync service, as most plugins do);
// --no-tune-allocator leaves malloc alone (PluginInfo::tune_allocator).
#include <cstdio>
#include <cstring>

#include "echo_service.h"
#include "perf_args.h"
#include "plugd/sdk/plugin.h"

int main(int argc, char** argv) {
  bool functions = false;
  bool tune = true;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--functions") == 0) {
      functions = true;
    } else if (std::strcmp(argv[i], "--no-tune-allocator") == 0) {
      tune = false;
    } else {
      std::fprintf(stderr,
                   "plugd-perf-echo: unknown argument \"%s\"; options: "
                   "--functions, --no-tune-allocator\n",
                   argv[i]);
      return 1;
    }
  }
  plugd::sdk::PluginInfo info;
  info.name = "perf-echo";
  info.version = "1.0.0";
  info.tune_allocator = tune;
  plugd::sdk::Plugin plugin(std::move(info));
  plugd::bench::EchoService echo;
  plugin.AddService(&echo);
  if (functions) {
    plugin.AddFunction({.name = "noop",
                        .help = "noop: returns null",
                        .params = {},
                        .impl = [](const plugd::sdk::Args&)
                            -> absl::StatusOr<google::protobuf::Value> {
                          return google::protobuf::Value();
                        }});
  }
  return plugin.Serve();
}
