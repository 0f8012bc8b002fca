// plugd-echo: the benchmark plugin (docs/benchmarks.md). It serves
// echo.v1.Echo (proto/examples/echo/v1/echo.proto) through the C++ SDK, and
// offers the same operation by name for the dynamic-call comparison:
//   echo PAYLOAD   returns PAYLOAD (a string) unchanged
//
// --no-functions leaves the function out, so that the plugin serves no
// plugd.v1.Functions (a sync service): the benchmark uses it to tell what the
// sync service's thread pool costs a typed call.
#include <cstring>
#include <string>

#include "absl/strings/str_cat.h"
#include "echo_service.h"
#include "plugd/common/status.h"
#include "plugd/common/value.h"
#include "plugd/sdk/plugin.h"

int main(int argc, char** argv) {
  bool functions = true;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--no-functions") == 0) {
      functions = false;
    } else {
      std::fprintf(stderr,
                   "plugd-echo: unknown argument \"%s\"; the only option is "
                   "--no-functions\n",
                   argv[i]);
      return 2;
    }
  }
  using plugd::sdk::Kind;
  using plugd::sdk::Param;
  plugd::sdk::Plugin plugin({.name = "echo", .version = "1.0.0"});
  plugd::bench::EchoService echo;
  plugin.AddService(&echo);
  if (functions) {
    plugin.AddFunction(
        {.name = "echo",
         .help = "echo PAYLOAD: PAYLOAD unchanged",
         .params = {Param::Required("payload", Kind::kString, "any string")},
         .impl = [](const plugd::sdk::Args& args)
             -> absl::StatusOr<google::protobuf::Value> {
           if (args[0].kind_case() != google::protobuf::Value::kStringValue) {
             return absl::InvalidArgumentError(
                 absl::StrCat(args.Describe(0), " must be a string"));
           }
           return args[0];
         }});
  }
  return plugin.Serve();
}
