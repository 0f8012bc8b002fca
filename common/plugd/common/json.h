// Protobuf messages as JSON whose text depends only on the message.
//
// protobuf's MessageToJsonString prints map entries (a Struct's fields, a
// map<string, string>) in hash-table order, which changes from process to
// process and from one copy of a message to another: the same Value printed
// twice can give two texts. What plugd prints for people and scripts
// (ValueToJson, plugctl --json) goes through here instead, so map keys come
// out sorted:
//
//   google::protobuf::util::JsonPrintOptions options;
//   absl::StatusOr<std::string> json = plugd::MessageToJson(message, options);
#ifndef PLUGD_COMMON_JSON_H_
#define PLUGD_COMMON_JSON_H_

#include <google/protobuf/message.h>
#include <google/protobuf/util/json_util.h>

#include <string>

#include "absl/status/statusor.h"

namespace plugd {

// `message` as JSON with every map's entries sorted by key. Fails
// (INVALID_ARGUMENT) where protobuf's printer does, e.g. on a Timestamp out of
// range.
absl::StatusOr<std::string> MessageToJson(
    const google::protobuf::Message& message,
    const google::protobuf::util::JsonPrintOptions& options);

}  // namespace plugd

#endif  // PLUGD_COMMON_JSON_H_
