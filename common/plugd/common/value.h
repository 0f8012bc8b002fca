// Conversions between text and google.protobuf.Value, the argument and result
// type of plugd's functions service.
//
//   Value v = plugd::ParseArgument("42");        // number 42
//   Value s = plugd::ParseArgument("hello");     // string "hello"
//   Value l = plugd::ParseArgument("[1, \"a\"]");  // list (JSON)
//   std::string out = plugd::FormatValue(v);      // "42"
//   absl::StatusOr<int64_t> n = plugd::ValueToInt(v, "min");
#ifndef PLUGD_COMMON_VALUE_H_
#define PLUGD_COMMON_VALUE_H_

#include <google/protobuf/struct.pb.h>

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace plugd {

// Turns one command-line argument into a Value:
//   a JSON number ("42", "-1.5", "1e3")           -> number_value
//   "true" / "false"                             -> bool_value
//   "null"                                       -> null_value
//   a JSON array or object ("[1,2]", "{...}")     -> list_value / struct_value
//   a JSON string in double quotes ("\"42\"")    -> that string
//   anything else, taken literally               -> string_value
// Never fails: text that is not valid JSON is a string.
google::protobuf::Value ParseArgument(absl::string_view text);

// Renders a Value for people: a number without a needless ".0" ("3", "2.5"),
// a string as-is, anything else as compact JSON.
std::string FormatValue(const google::protobuf::Value& value);

// Renders a Value as compact JSON (strings quoted), object keys sorted, so
// equal Values print the same text. What JSON cannot carry is put in its
// nearest JSON form at any depth: NaN, infinities and unset Values print as
// null, -0 as 0. ParseArgument of the result gives a Value that prints the
// same.
std::string ValueToJson(const google::protobuf::Value& value);

// OK if every string in `value`, struct keys included, is valid UTF-8.
// Protobuf requires that of string fields: a Value holding other bytes is
// sent with an error logged and then fails to parse on the receiving side,
// so hosts, the SDK and plugctl check first. Otherwise INVALID_ARGUMENT
// naming `what`, where, and the first bad byte:
//   argument 2 is not valid UTF-8 text (byte 0xff at offset 3 of
//   ["k"][1]); Values carry text: encode binary data, e.g. as base64
absl::Status CheckUtf8(const google::protobuf::Value& value,
                       absl::string_view what);
// The same for one string (a function or plugin name), without the hint:
//   the function name is not valid UTF-8 text (byte 0xff at offset 0)
absl::Status CheckUtf8(absl::string_view text, absl::string_view what);

// "number", "string", "bool", "null", "list", "struct" or "unset".
absl::string_view ValueKindName(const google::protobuf::Value& value);

// For error messages: `string "abc"`, `number 3`, `bool true`, `list of 2`.
std::string DescribeValue(const google::protobuf::Value& value);

// Typed accessors for function authors. `what` names the argument in the
// INVALID_ARGUMENT error, e.g. "argument 1 (min)".
// ValueToNumber accepts a number, or a string that parses as one.
absl::StatusOr<double> ValueToNumber(const google::protobuf::Value& value,
                                     absl::string_view what);
// ValueToInt accepts a whole number within int64 range (or such a string).
absl::StatusOr<int64_t> ValueToInt(const google::protobuf::Value& value,
                                   absl::string_view what);
// ValueToString accepts a string only.
absl::StatusOr<std::string> ValueToString(const google::protobuf::Value& value,
                                          absl::string_view what);
// ValueToBool accepts a bool, or the strings "true"/"false".
absl::StatusOr<bool> ValueToBool(const google::protobuf::Value& value,
                                 absl::string_view what);

// Value constructors.
google::protobuf::Value NumberValue(double number);
google::protobuf::Value StringValue(absl::string_view text);
google::protobuf::Value BoolValue(bool b);
google::protobuf::Value NullValue();

}  // namespace plugd

#endif  // PLUGD_COMMON_VALUE_H_
