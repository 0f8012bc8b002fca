// Fuzz target: command-line arguments turned into google.protobuf.Value
// (common/plugd/common/value.h), as calc and plugctl do with what users type,
// and Values decoded from the wire, as hosts do with what plugins answer.
//
// Invariants checked beyond "no crash, no sanitizer report":
// - ParseArgument never fails and always sets a kind;
// - every renderer and typed accessor works on any Value;
// - ValueToJson of a parsed argument parses back to a Value with the same
//   JSON (JSON is a fixed point after one round);
// - a Value CheckUtf8 passes survives the wire: it serializes and parses
//   back (what hosts, plugctl and the SDK rely on when they check first).
#include <google/protobuf/struct.pb.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "absl/strings/string_view.h"
#include "plugd/common/value.h"

namespace {

void Check(bool ok) {
  if (!ok) abort();
}

void Exercise(const google::protobuf::Value& value) {
  if (plugd::CheckUtf8(value, "argument 1").ok()) {
    google::protobuf::Value back;
    Check(back.ParseFromString(value.SerializeAsString()));
  }
  plugd::FormatValue(value);
  plugd::DescribeValue(value);
  Check(!plugd::ValueKindName(value).empty());
  (void)plugd::ValueToNumber(value, "argument 1").ok();
  (void)plugd::ValueToInt(value, "argument 1").ok();
  (void)plugd::ValueToString(value, "argument 1").ok();
  (void)plugd::ValueToBool(value, "argument 1").ok();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  absl::string_view text(reinterpret_cast<const char*>(data), size);

  google::protobuf::Value parsed = plugd::ParseArgument(text);
  Check(parsed.kind_case() != google::protobuf::Value::KIND_NOT_SET);
  Exercise(parsed);
  std::string json = plugd::ValueToJson(parsed);
  google::protobuf::Value again = plugd::ParseArgument(json);
  Exercise(again);
  if (parsed.kind_case() != google::protobuf::Value::kStringValue) {
    Check(plugd::ValueToJson(again) == json);
  }

  // The same bytes as a Value on the wire.
  google::protobuf::Value wire;
  if (wire.ParseFromArray(data, static_cast<int>(size))) {
    Exercise(wire);
    plugd::ValueToJson(wire);
  }
  return 0;
}
