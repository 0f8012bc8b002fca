// plugd-arith: a dynamic plugin with a few arithmetic functions, showing
// required, variadic and validated arguments:
//   add X...   sum (0 for none)        sub A B   A - B
//   mul X...   product (1 for none)    div A B   A / B (B != 0)
//   pow A B    A to the power B        sqrt X    square root (X >= 0)
#include <cmath>

#include "plugd/common/status.h"
#include "plugd/common/value.h"
#include "plugd/sdk/plugin.h"

namespace {

using google::protobuf::Value;
using plugd::sdk::Args;
using plugd::sdk::Kind;
using plugd::sdk::Param;

absl::StatusOr<Value> Add(const Args& args) {
  PLUGD_ASSIGN_OR_RETURN(std::vector<double> xs, args.Numbers());
  double sum = 0;
  for (double x : xs) sum += x;
  return plugd::NumberValue(sum);
}

absl::StatusOr<Value> Mul(const Args& args) {
  PLUGD_ASSIGN_OR_RETURN(std::vector<double> xs, args.Numbers());
  double product = 1;
  for (double x : xs) product *= x;
  return plugd::NumberValue(product);
}

absl::StatusOr<Value> Sub(const Args& args) {
  PLUGD_ASSIGN_OR_RETURN(double a, args.Number(0));
  PLUGD_ASSIGN_OR_RETURN(double b, args.Number(1));
  return plugd::NumberValue(a - b);
}

absl::StatusOr<Value> Div(const Args& args) {
  PLUGD_ASSIGN_OR_RETURN(double a, args.Number(0));
  PLUGD_ASSIGN_OR_RETURN(double b, args.Number(1));
  if (b == 0) return absl::InvalidArgumentError("div: division by zero");
  return plugd::NumberValue(a / b);
}

absl::StatusOr<Value> Pow(const Args& args) {
  PLUGD_ASSIGN_OR_RETURN(double a, args.Number(0));
  PLUGD_ASSIGN_OR_RETURN(double b, args.Number(1));
  const double result = std::pow(a, b);
  if (!std::isfinite(result)) {
    return absl::InvalidArgumentError("pow: the result is not a finite number");
  }
  return plugd::NumberValue(result);
}

absl::StatusOr<Value> Sqrt(const Args& args) {
  PLUGD_ASSIGN_OR_RETURN(double x, args.Number(0));
  if (x < 0) {
    return absl::InvalidArgumentError(
        "sqrt: argument 1 (x) must not be negative");
  }
  return plugd::NumberValue(std::sqrt(x));
}

}  // namespace

int main() {
  plugd::sdk::Plugin plugin({.name = "arith", .version = "1.0.0"});
  const Param a = Param::Required("a", Kind::kNumber);
  const Param b = Param::Required("b", Kind::kNumber);
  plugin
      .AddFunction({.name = "add",
                    .help = "add [X...]: the sum of the numbers",
                    .params = {Param::Variadic("x", Kind::kNumber)},
                    .impl = &Add})
      .AddFunction({.name = "sub",
                    .help = "sub A B: A minus B",
                    .params = {a, b},
                    .impl = &Sub})
      .AddFunction({.name = "mul",
                    .help = "mul [X...]: the product of the numbers",
                    .params = {Param::Variadic("x", Kind::kNumber)},
                    .impl = &Mul})
      .AddFunction({.name = "div",
                    .help = "div A B: A divided by B (B must not be 0)",
                    .params = {a, b},
                    .impl = &Div})
      .AddFunction({.name = "pow",
                    .help = "pow A B: A to the power B",
                    .params = {a, b},
                    .impl = &Pow})
      .AddFunction({.name = "sqrt",
                    .help = "sqrt X: the square root of X (X >= 0)",
                    .params = {Param::Required("x", Kind::kNumber)},
                    .impl = &Sqrt});
  return plugin.Serve();
}
