#include "plugd/common/value.h"

#include <google/protobuf/stubs/common.h>
#include <google/protobuf/util/json_util.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <optional>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "plugd/common/json.h"

namespace plugd {
namespace {

using google::protobuf::Value;

// A strict JSON number: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
bool IsJsonNumber(absl::string_view s) {
  size_t i = 0;
  auto digit = [&](size_t k) {
    return k < s.size() &&
           absl::ascii_isdigit(static_cast<unsigned char>(s[k]));
  };
  if (i < s.size() && s[i] == '-') ++i;
  if (!digit(i)) return false;
  if (s[i] == '0') {
    ++i;
  } else {
    while (digit(i)) ++i;
  }
  if (i < s.size() && s[i] == '.') {
    ++i;
    if (!digit(i)) return false;
    while (digit(i)) ++i;
  }
  if (i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
    ++i;
    if (i < s.size() && (s[i] == '+' || s[i] == '-')) ++i;
    if (!digit(i)) return false;
    while (digit(i)) ++i;
  }
  return i == s.size();
}

std::string Shorten(absl::string_view s) {
  constexpr size_t kMax = 60;
  if (s.size() <= kMax) return std::string(s);
  return absl::StrCat(s.substr(0, kMax), "...");
}

// `value` in the form its JSON survives a round trip in, at any depth: JSON
// has no NaN or infinity (protobuf's printer writes them as the strings
// "NaN" and "Infinity", which read back as strings) and protobuf's printer
// drops a Value with no kind set (possible on the wire) from a list, so those
// become null; protobuf's parser reads a nested "-0" as the integer 0, so -0
// becomes 0.
void ToJsonCanonicalForm(Value* value) {
  switch (value->kind_case()) {
    case Value::KIND_NOT_SET:
      value->set_null_value(google::protobuf::NULL_VALUE);
      return;
    case Value::kNumberValue: {
      double d = value->number_value();
      if (!std::isfinite(d)) {
        value->set_null_value(google::protobuf::NULL_VALUE);
      } else if (d == 0) {
        value->set_number_value(0);
      }
      return;
    }
    case Value::kListValue:
      for (Value& v : *value->mutable_list_value()->mutable_values()) {
        ToJsonCanonicalForm(&v);
      }
      return;
    case Value::kStructValue:
      for (auto& [key, v] : *value->mutable_struct_value()->mutable_fields()) {
        ToJsonCanonicalForm(&v);
      }
      return;
    default:
      return;
  }
}

// Where in a Value the first string that is not valid UTF-8 is, as a path
// like `["k"][1]` (empty for the Value itself; `key ["k\xff"]` for a bad key),
// and the offset of its first bad byte. Uses protobuf's own check, so what
// passes here parses on the other side.
struct Utf8Error {
  std::string path;
  size_t offset = 0;
  unsigned char byte = 0;
};

std::optional<Utf8Error> FindBadUtf8String(absl::string_view s) {
  int valid = google::protobuf::internal::UTF8SpnStructurallyValid(
      google::protobuf::StringPiece(s.data(), s.size()));
  if (static_cast<size_t>(valid) == s.size()) return std::nullopt;
  Utf8Error error;
  error.offset = static_cast<size_t>(valid);
  error.byte = static_cast<unsigned char>(s[error.offset]);
  return error;
}

std::string QuoteKey(absl::string_view key) {
  return absl::StrCat("[\"", absl::CHexEscape(Shorten(key)), "\"]");
}

std::optional<Utf8Error> FindBadUtf8(const Value& value) {
  switch (value.kind_case()) {
    case Value::kStringValue:
      return FindBadUtf8String(value.string_value());
    case Value::kListValue: {
      const auto& values = value.list_value().values();
      for (int i = 0; i < values.size(); ++i) {
        if (auto error = FindBadUtf8(values[i])) {
          error->path = absl::StrCat("[", i, "]", error->path);
          return error;
        }
      }
      return std::nullopt;
    }
    case Value::kStructValue: {
      // Valid (the common case, every dynamic call): no order needed.
      const auto& map = value.struct_value().fields();
      if (std::none_of(map.begin(), map.end(), [](const auto& field) {
            return FindBadUtf8String(field.first) || FindBadUtf8(field.second);
          })) {
        return std::nullopt;
      }
      // Invalid: the first bad place in key order, so the same Value always
      // reports the same place (the map's own order changes from copy to
      // copy).
      std::vector<std::pair<absl::string_view, const Value*>> fields;
      for (const auto& [key, v] : map) {
        fields.emplace_back(key, &v);
      }
      std::sort(fields.begin(), fields.end());
      for (const auto& [key, v] : fields) {
        if (auto error = FindBadUtf8String(key)) {
          error->path = absl::StrCat("key ", QuoteKey(key));
          return error;
        }
        if (auto error = FindBadUtf8(*v)) {
          error->path = absl::StrCat(QuoteKey(key), error->path);
          return error;
        }
      }
      return std::nullopt;
    }
    default:
      return std::nullopt;
  }
}

std::string Utf8Message(const Utf8Error& error, absl::string_view what) {
  return absl::StrFormat(
      "%s is not valid UTF-8 text (byte 0x%02x at offset %d%s%s)", what,
      error.byte, error.offset, error.path.empty() ? "" : " of ", error.path);
}

}  // namespace

absl::Status CheckUtf8(const Value& value, absl::string_view what) {
  std::optional<Utf8Error> error = FindBadUtf8(value);
  if (!error) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat(Utf8Message(*error, what),
                   "; Values carry text: encode binary data, e.g. as base64"));
}

absl::Status CheckUtf8(absl::string_view text, absl::string_view what) {
  std::optional<Utf8Error> error = FindBadUtf8String(text);
  if (!error) return absl::OkStatus();
  return absl::InvalidArgumentError(Utf8Message(*error, what));
}

Value ParseArgument(absl::string_view text) {
  absl::string_view t = absl::StripAsciiWhitespace(text);
  if (IsJsonNumber(t)) {
    double d = 0;
    if (absl::SimpleAtod(t, &d) && std::isfinite(d)) return NumberValue(d);
  }
  if (t == "true") return BoolValue(true);
  if (t == "false") return BoolValue(false);
  if (t == "null") return NullValue();
  if (!t.empty() &&
      (t.front() == '[' || t.front() == '{' || t.front() == '"')) {
    Value v;
    google::protobuf::util::JsonParseOptions options;
    auto status = google::protobuf::util::JsonStringToMessage(
        google::protobuf::StringPiece(t.data(), t.size()), &v, options);
    if (status.ok()) return v;
  }
  return StringValue(text);
}

std::string ValueToJson(const Value& value) {
  // A copy: cheap next to the JSON printer, and only people read the result
  // (plugctl, calc, error messages).
  Value canonical = value;
  ToJsonCanonicalForm(&canonical);
  absl::StatusOr<std::string> out =
      MessageToJson(canonical, google::protobuf::util::JsonPrintOptions());
  if (!out.ok()) return "null";
  return *std::move(out);
}

std::string FormatValue(const Value& value) {
  switch (value.kind_case()) {
    case Value::kNumberValue: {
      double d = value.number_value();
      if (std::isfinite(d) && d == std::trunc(d) && std::fabs(d) < 1e15) {
        return absl::StrCat(static_cast<int64_t>(d));
      }
      // The shortest form that reads back as the same double.
      for (int precision = 6; precision < 17; ++precision) {
        std::string text = absl::StrFormat("%.*g", precision, d);
        double back = 0;
        if (absl::SimpleAtod(text, &back) && back == d) return text;
      }
      return absl::StrFormat("%.17g", d);
    }
    case Value::kStringValue:
      return value.string_value();
    case Value::kBoolValue:
      return value.bool_value() ? "true" : "false";
    default:
      return ValueToJson(value);
  }
}

absl::string_view ValueKindName(const Value& value) {
  switch (value.kind_case()) {
    case Value::kNumberValue:
      return "number";
    case Value::kStringValue:
      return "string";
    case Value::kBoolValue:
      return "bool";
    case Value::kNullValue:
      return "null";
    case Value::kListValue:
      return "list";
    case Value::kStructValue:
      return "struct";
    case Value::KIND_NOT_SET:
      return "unset";
  }
  return "unset";
}

std::string DescribeValue(const Value& value) {
  switch (value.kind_case()) {
    case Value::kStringValue:
      return absl::StrCat("string \"", Shorten(value.string_value()), "\"");
    case Value::kListValue:
      return absl::StrCat("list of ", value.list_value().values_size());
    case Value::kStructValue:
      return absl::StrCat("struct of ", value.struct_value().fields_size(),
                          " field(s)");
    case Value::kNullValue:
    case Value::KIND_NOT_SET:
      return "null";
    default:
      return absl::StrCat(ValueKindName(value), " ",
                          Shorten(FormatValue(value)));
  }
}

absl::StatusOr<double> ValueToNumber(const Value& value,
                                     absl::string_view what) {
  if (value.kind_case() == Value::kNumberValue) return value.number_value();
  if (value.kind_case() == Value::kStringValue) {
    double d = 0;
    absl::string_view s = absl::StripAsciiWhitespace(value.string_value());
    if (IsJsonNumber(s) && absl::SimpleAtod(s, &d) && std::isfinite(d))
      return d;
  }
  return absl::InvalidArgumentError(
      absl::StrCat(what, " must be a number, got ", DescribeValue(value)));
}

absl::StatusOr<int64_t> ValueToInt(const Value& value, absl::string_view what) {
  absl::StatusOr<double> d = ValueToNumber(value, what);
  if (!d.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(
        what, " must be a whole number, got ", DescribeValue(value)));
  }
  // 2^63 is exactly representable; the range is [-2^63, 2^63).
  constexpr double kLimit = 9223372036854775808.0;
  if (*d != std::trunc(*d) || *d < -kLimit || *d >= kLimit) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " must be a whole number within 64-bit range, got ",
                     DescribeValue(value)));
  }
  return static_cast<int64_t>(*d);
}

absl::StatusOr<std::string> ValueToString(const Value& value,
                                          absl::string_view what) {
  if (value.kind_case() == Value::kStringValue) return value.string_value();
  return absl::InvalidArgumentError(
      absl::StrCat(what, " must be a string, got ", DescribeValue(value)));
}

absl::StatusOr<bool> ValueToBool(const Value& value, absl::string_view what) {
  if (value.kind_case() == Value::kBoolValue) return value.bool_value();
  if (value.kind_case() == Value::kStringValue) {
    if (value.string_value() == "true") return true;
    if (value.string_value() == "false") return false;
  }
  return absl::InvalidArgumentError(
      absl::StrCat(what, " must be true or false, got ", DescribeValue(value)));
}

Value NumberValue(double number) {
  Value v;
  v.set_number_value(number);
  return v;
}

Value StringValue(absl::string_view text) {
  Value v;
  v.set_string_value(std::string(text));
  return v;
}

Value BoolValue(bool b) {
  Value v;
  v.set_bool_value(b);
  return v;
}

Value NullValue() {
  Value v;
  v.set_null_value(google::protobuf::NULL_VALUE);
  return v;
}

}  // namespace plugd
