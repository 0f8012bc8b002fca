#include "plugd/sdk/functions.h"

#include <exception>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "plugd/common/status.h"
#include "plugd/common/value.h"

namespace plugd::sdk {
namespace {

using google::protobuf::Value;

const Value& NullValueRef() {
  static const Value* const kNull = new Value(plugd::NullValue());
  return *kNull;
}

// Fewest and most arguments (-1: no upper bound) a parameter list accepts.
std::pair<size_t, int64_t> Arity(const std::vector<Param>& params) {
  size_t min = 0;
  int64_t max = 0;
  for (const Param& p : params) {
    if (p.variadic) {
      if (!p.optional) ++min;
      return {min, -1};
    }
    if (!p.optional) ++min;
    ++max;
  }
  return {min, max};
}

std::string Plural(int64_t n) {
  return absl::StrCat(n, n == 1 ? " argument" : " arguments");
}

}  // namespace

Param Param::Required(std::string name, Kind kind, std::string help) {
  return Param{std::move(name), kind, false, false, std::move(help)};
}

Param Param::Optional(std::string name, Kind kind, std::string help) {
  return Param{std::move(name), kind, true, false, std::move(help)};
}

Param Param::Variadic(std::string name, Kind kind, std::string help,
                      bool at_least_one) {
  return Param{std::move(name), kind, !at_least_one, true, std::move(help)};
}

// ---------------------------------------------------------------------------
// Args

Args::Args(absl::string_view function, absl::Span<const Param> params,
           absl::Span<const Value* const> values)
    : function_(function), params_(params), values_(values) {}

const Value& Args::operator[](size_t i) const {
  return i < values_.size() ? *values_[i] : NullValueRef();
}

std::string Args::Describe(size_t i) const {
  const Param* param = nullptr;
  if (i < params_.size()) {
    param = &params_[i];
  } else if (!params_.empty() && params_.back().variadic) {
    param = &params_.back();
  }
  std::string what = absl::StrCat(function_, ": argument ", i + 1);
  if (param != nullptr && !param->name.empty()) {
    absl::StrAppend(&what, " (", param->name, ")");
  }
  return what;
}

absl::Status Args::Missing(size_t i) const {
  return absl::InvalidArgumentError(
      absl::StrCat(Describe(i), " is missing (got ", Plural(size()), ")"));
}

absl::StatusOr<double> Args::Number(size_t i) const {
  if (!has(i)) return Missing(i);
  return plugd::ValueToNumber(*values_[i], Describe(i));
}

absl::StatusOr<int64_t> Args::Int(size_t i) const {
  if (!has(i)) return Missing(i);
  return plugd::ValueToInt(*values_[i], Describe(i));
}

absl::StatusOr<std::string> Args::String(size_t i) const {
  if (!has(i)) return Missing(i);
  return plugd::ValueToString(*values_[i], Describe(i));
}

absl::StatusOr<bool> Args::Bool(size_t i) const {
  if (!has(i)) return Missing(i);
  return plugd::ValueToBool(*values_[i], Describe(i));
}

absl::StatusOr<double> Args::NumberOr(size_t i, double default_value) const {
  if (!has(i)) return default_value;
  return Number(i);
}

absl::StatusOr<int64_t> Args::IntOr(size_t i, int64_t default_value) const {
  if (!has(i)) return default_value;
  return Int(i);
}

absl::StatusOr<std::string> Args::StringOr(size_t i,
                                           std::string default_value) const {
  if (!has(i)) return default_value;
  return String(i);
}

absl::StatusOr<std::vector<double>> Args::Numbers(size_t first) const {
  std::vector<double> numbers;
  for (size_t i = first; i < size(); ++i) {
    PLUGD_ASSIGN_OR_RETURN(double n, Number(i));
    numbers.push_back(n);
  }
  return numbers;
}

// ---------------------------------------------------------------------------
// FunctionRegistry

FunctionRegistry::FunctionRegistry(std::string plugin_name)
    : plugin_name_(std::move(plugin_name)) {}

absl::Status FunctionRegistry::Add(Function function) {
  const std::string& name = function.name;
  if (name.empty()) {
    return absl::InvalidArgumentError("a function needs a name");
  }
  for (char c : name) {
    if (absl::ascii_isspace(static_cast<unsigned char>(c))) {
      return absl::InvalidArgumentError(
          absl::StrCat("function name \"", name, "\" contains whitespace"));
    }
  }
  if (!function.impl) {
    return absl::InvalidArgumentError(
        absl::StrCat("function ", name, " has no implementation"));
  }
  bool seen_optional = false;
  for (size_t i = 0; i < function.params.size(); ++i) {
    const Param& p = function.params[i];
    if (p.variadic && i + 1 != function.params.size()) {
      return absl::InvalidArgumentError(
          absl::StrCat("function ", name, ": variadic parameter ", p.name,
                       " must be the last one"));
    }
    if (!p.optional && seen_optional) {
      return absl::InvalidArgumentError(
          absl::StrCat("function ", name, ": required parameter ", p.name,
                       " comes after an optional one"));
    }
    seen_optional = seen_optional || p.optional;
  }
  if (functions_.count(name) != 0) {
    return absl::AlreadyExistsError(
        absl::StrCat("function ", name, " is already registered"));
  }
  std::string key = name;
  functions_.emplace(std::move(key), std::move(function));
  return absl::OkStatus();
}

absl::StatusOr<Value> FunctionRegistry::Call(
    absl::string_view name,
    const google::protobuf::RepeatedPtrField<Value>& args) const {
  auto it = functions_.find(name);
  if (it == functions_.end()) {
    return absl::NotFoundError(absl::StrCat(
        "no function \"", name, "\" in plugin ", plugin_name_,
        functions_.empty()
            ? "; it offers none"
            : absl::StrCat("; it offers: ", absl::StrJoin(Names(), ", "))));
  }
  const Function& function = it->second;
  auto [min, max] = Arity(function.params);
  const size_t n = static_cast<size_t>(args.size());
  if (n < min || (max >= 0 && n > static_cast<size_t>(max))) {
    std::string expected;
    if (max < 0) {
      expected = absl::StrCat("at least ", Plural(min));
    } else if (static_cast<int64_t>(min) == max) {
      expected = Plural(min);
    } else {
      expected = absl::StrCat(min, " to ", Plural(max));
    }
    return absl::InvalidArgumentError(
        absl::StrCat(function.name, ": expected ", expected, " (",
                     Usage(function), "), got ", n));
  }
  Args call_args(function.name, function.params,
                 absl::MakeConstSpan(args.data(), args.size()));
  try {
    absl::StatusOr<Value> result = function.impl(call_args);
    if (result.ok()) {
      // Sent as is, a non-UTF-8 string would fail to parse in the host with
      // nothing said of which function made it.
      absl::Status utf8 = CheckUtf8(*result, "the result");
      if (!utf8.ok()) {
        return absl::InternalError(
            absl::StrCat(function.name, ": ", utf8.message()));
      }
    }
    return result;
  } catch (const std::exception& e) {
    return absl::InternalError(
        absl::StrCat(function.name, ": threw an exception: ", e.what()));
  } catch (...) {
    return absl::InternalError(
        absl::StrCat(function.name, ": threw an unknown exception"));
  }
}

std::vector<plugd::v1::FunctionInfo> FunctionRegistry::List() const {
  std::vector<plugd::v1::FunctionInfo> infos;
  infos.reserve(functions_.size());
  for (const auto& [name, function] : functions_) {
    infos.push_back(Describe(function));
  }
  return infos;
}

std::vector<std::string> FunctionRegistry::Names() const {
  std::vector<std::string> names;
  names.reserve(functions_.size());
  for (const auto& [name, function] : functions_) names.push_back(name);
  return names;
}

plugd::v1::FunctionInfo FunctionRegistry::Describe(const Function& function) {
  plugd::v1::FunctionInfo info;
  info.set_name(function.name);
  info.set_help(function.help);
  for (const Param& p : function.params) {
    plugd::v1::Parameter* param = info.add_params();
    param->set_name(p.name);
    param->set_kind(static_cast<plugd::v1::ValueKind>(p.kind));
    param->set_optional(p.optional);
    param->set_variadic(p.variadic);
    param->set_help(p.help);
  }
  auto [min, max] = Arity(function.params);
  info.set_min_args(static_cast<uint32_t>(min));
  info.set_max_args(static_cast<int32_t>(max));
  return info;
}

std::string FunctionRegistry::Usage(const Function& function) {
  std::string usage = function.name;
  int open = 0;
  for (const Param& p : function.params) {
    std::string name = absl::AsciiStrToUpper(p.name);
    if (p.variadic) absl::StrAppend(&name, "...");
    if (p.optional) {
      absl::StrAppend(&usage, " [", name);
      ++open;
    } else {
      absl::StrAppend(&usage, " ", name);
    }
  }
  usage.append(open, ']');
  return usage;
}

}  // namespace plugd::sdk
