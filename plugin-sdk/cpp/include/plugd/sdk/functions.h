// Functions a plugin offers by name: the registry behind plugd.v1.Functions.
//
// A function is a name, a line of help, a parameter list and a callable that
// takes the positional arguments (google.protobuf.Value) and returns a Value
// or an error. The registry checks the number of arguments against the
// parameter list before calling, so a function only reads its arguments,
// through the typed helpers of Args, which turn a wrong argument into an
// INVALID_ARGUMENT error naming the function, the position and the parameter.
//
//   plugd::sdk::Function random{
//       .name = "random",
//       .help = "random [MIN [MAX]]: a random integer in [MIN, MAX]",
//       .params = {plugd::sdk::Param::Optional("min",
//       plugd::sdk::Kind::kNumber),
//                  plugd::sdk::Param::Optional("max",
//                  plugd::sdk::Kind::kNumber)},
//       .impl = [](const plugd::sdk::Args& args)
//           -> absl::StatusOr<google::protobuf::Value> {
//         PLUGD_ASSIGN_OR_RETURN(int64_t min, args.IntOr(0, 0));
//         PLUGD_ASSIGN_OR_RETURN(int64_t max, args.IntOr(1, 100));
//         ...
//         return plugd::NumberValue(result);
//       }};
//   plugin.AddFunction(std::move(random));
//
// Most plugin authors use only Param, Args and Function, through
// Plugin::AddFunction (plugin.h). FunctionRegistry is public so it can be
// tested and reused on its own.
#ifndef PLUGD_SDK_FUNCTIONS_H_
#define PLUGD_SDK_FUNCTIONS_H_

#include <google/protobuf/repeated_ptr_field.h>
#include <google/protobuf/struct.pb.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "plugd/v1/plugin.pb.h"

namespace plugd::sdk {

// The kind of argument a parameter expects; mirrors plugd.v1.ValueKind. It is
// a description for hosts and help text: the registry does not reject a
// mismatched kind by itself (Args::Number accepts "42" as well as 42), the
// typed Args helpers do.
enum class Kind {
  kAny = 0,
  kNumber = 1,
  kString = 2,
  kBool = 3,
  kList = 4,
  kStruct = 5,
};

// One parameter of a function. Build it with the factories:
//   Param::Required("x", Kind::kNumber)     exactly one argument
//   Param::Optional("max", Kind::kNumber)   may be left out (then all the
//                                           parameters after it must be too)
//   Param::Variadic("x", Kind::kNumber)     any number (0..n), last only
//   Param::Variadic("x", Kind::kNumber, "", /*at_least_one=*/true)
struct Param {
  std::string name;        // Short, for help and errors, e.g. "min".
  Kind kind = Kind::kAny;  // What kind of Value is expected.
  bool optional = false;   // May be left out.
  bool variadic = false;   // Takes the remaining arguments; last only.
  std::string help;        // One line of help (optional).

  static Param Required(std::string name, Kind kind = Kind::kAny,
                        std::string help = "");
  static Param Optional(std::string name, Kind kind = Kind::kAny,
                        std::string help = "");
  static Param Variadic(std::string name, Kind kind = Kind::kAny,
                        std::string help = "", bool at_least_one = false);
};

// The positional arguments of one call, with typed accessors. Indexes are
// 0-based; error messages count from 1, the way people do:
//   "random: argument 2 (max) must be a whole number, got string \"x\""
// Every accessor returns INVALID_ARGUMENT for a missing or mistyped argument.
// An Args is valid only during the call it was passed to.
class Args {
 public:
  // `function` and `params` name the arguments in error messages; `values`
  // must outlive the Args.
  Args(absl::string_view function, absl::Span<const Param> params,
       absl::Span<const google::protobuf::Value* const> values);

  // The number of arguments given.
  size_t size() const { return values_.size(); }
  bool empty() const { return values_.empty(); }
  // True when argument `i` was given.
  bool has(size_t i) const { return i < values_.size(); }
  // Argument `i` as given; a null Value when `i` is out of range.
  const google::protobuf::Value& operator[](size_t i) const;
  // The function being called.
  absl::string_view function() const { return function_; }

  // A number (or a string that reads as one).
  absl::StatusOr<double> Number(size_t i) const;
  // A whole number in int64 range (or a string that reads as one).
  absl::StatusOr<int64_t> Int(size_t i) const;
  // A string.
  absl::StatusOr<std::string> String(size_t i) const;
  // A bool (or the string "true" / "false").
  absl::StatusOr<bool> Bool(size_t i) const;
  // Like Number / Int / String, but `default_value` when argument `i` was not
  // given (a given but mistyped argument is still an error).
  absl::StatusOr<double> NumberOr(size_t i, double default_value) const;
  absl::StatusOr<int64_t> IntOr(size_t i, int64_t default_value) const;
  absl::StatusOr<std::string> StringOr(size_t i,
                                       std::string default_value) const;
  // Every argument from `first` on as numbers (for variadic functions).
  absl::StatusOr<std::vector<double>> Numbers(size_t first = 0) const;

  // "random: argument 2 (max)": how errors name argument `i`.
  std::string Describe(size_t i) const;

 private:
  absl::Status Missing(size_t i) const;

  absl::string_view function_;
  absl::Span<const Param> params_;
  absl::Span<const google::protobuf::Value* const> values_;
};

// What a function does with its arguments. Return a Value (NullValue() for
// nothing) or an error status, which the caller receives as it is. Thrown
// exceptions are caught and returned as INTERNAL.
using FunctionImpl =
    std::function<absl::StatusOr<google::protobuf::Value>(const Args&)>;

// One function a plugin offers.
struct Function {
  // The name hosts call it by: non-empty, no whitespace.
  std::string name;
  // Help for people; by convention it starts with the usage, e.g.
  // "random [MIN [MAX]]: a random integer in [MIN, MAX]".
  std::string help;
  // The parameters in order: required ones, then optional ones, then at most
  // one variadic one.
  std::vector<Param> params;
  // The implementation; must be set.
  FunctionImpl impl;
};

// A set of functions, looked up by name. Add() is not thread-safe; after the
// last Add(), Call() and List() may be called from any number of threads.
class FunctionRegistry {
 public:
  // `plugin_name` appears in NOT_FOUND messages.
  explicit FunctionRegistry(std::string plugin_name = "");

  // Adds a function. INVALID_ARGUMENT for an empty or space-containing name,
  // no impl, or a bad parameter list (a required parameter after an optional
  // one, a variadic one that is not last); ALREADY_EXISTS for a second
  // function of the same name.
  absl::Status Add(Function function);

  // Calls a function:
  //   NOT_FOUND         no such function: `no function "x" in plugin NAME;
  //                     it offers: a, b, c`
  //   INVALID_ARGUMENT  wrong number of arguments: `random: expected 0 to 2
  //                     arguments (random [MIN [MAX]]), got 3`
  //   INTERNAL          the function threw; the message has what() text;
  //                     or its result holds a string that is not UTF-8
  //                     (`bytes: the result is not valid UTF-8 text ...`)
  //   anything else     the function's own status
  absl::StatusOr<google::protobuf::Value> Call(
      absl::string_view name,
      const google::protobuf::RepeatedPtrField<google::protobuf::Value>& args)
      const;

  // Every function's description, sorted by name.
  std::vector<plugd::v1::FunctionInfo> List() const;
  // The names, sorted.
  std::vector<std::string> Names() const;
  size_t size() const { return functions_.size(); }
  bool empty() const { return functions_.empty(); }

  // The description of one function (params, min_args, max_args).
  static plugd::v1::FunctionInfo Describe(const Function& function);
  // "random [MIN [MAX]]": the usage line derived from the parameters.
  static std::string Usage(const Function& function);

 private:
  std::string plugin_name_;
  std::map<std::string, Function, std::less<>> functions_;
};

}  // namespace plugd::sdk

#endif  // PLUGD_SDK_FUNCTIONS_H_
