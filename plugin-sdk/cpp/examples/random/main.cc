// plugd-random: a dynamic plugin offering one function,
//   random [MIN [MAX]]  a uniformly random integer in [MIN, MAX]
// (defaults 0 and 100): the out-of-process form of a registrar's
// register_function("random", ...).
#include <cstdint>
#include <random>

#include "absl/strings/str_cat.h"
#include "plugd/common/status.h"
#include "plugd/common/value.h"
#include "plugd/sdk/plugin.h"

namespace {

absl::StatusOr<google::protobuf::Value> Random(const plugd::sdk::Args& args) {
  PLUGD_ASSIGN_OR_RETURN(int64_t min, args.IntOr(0, 0));
  PLUGD_ASSIGN_OR_RETURN(int64_t max, args.IntOr(1, 100));
  if (min > max) {
    return absl::InvalidArgumentError(absl::StrCat(
        "random: MIN (", min, ") must not be greater than MAX (", max, ")"));
  }
  thread_local std::mt19937_64 engine{std::random_device{}()};
  std::uniform_int_distribution<int64_t> distribution(min, max);
  return plugd::NumberValue(static_cast<double>(distribution(engine)));
}

}  // namespace

int main() {
  using plugd::sdk::Kind;
  using plugd::sdk::Param;
  plugd::sdk::Plugin plugin({.name = "random", .version = "1.0.0"});
  plugin.AddFunction(
      {.name = "random",
       .help = "random [MIN [MAX]]: a uniformly random integer in [MIN, MAX] "
               "(defaults 0 and 100)",
       .params = {Param::Optional("min", Kind::kNumber, "lowest value, 0"),
                  Param::Optional("max", Kind::kNumber, "highest value, 100")},
       .impl = &Random});
  return plugin.Serve();
}
