#include "plugd/common/json.h"

#include <google/protobuf/timestamp.pb.h>

#include <cstdint>
#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "plugd/v1/config.pb.h"

namespace plugd {
namespace {

using ::testing::HasSubstr;

TEST(MessageToJson, MapEntriesAreSortedByKey) {
  // Inserted in reverse; protobuf's own printer would use hash order.
  v1::PluginConfig config;
  config.set_name("echo");
  std::string expected_env;
  for (int i = 29; i >= 0; --i) {
    (*config.mutable_env())[absl::StrCat("VAR_", 10 + i)] = "x";
  }
  for (int i = 0; i < 30; ++i) {
    absl::StrAppend(&expected_env, i ? "," : "", "\"VAR_", 10 + i, "\":\"x\"");
  }
  google::protobuf::util::JsonPrintOptions options;
  absl::StatusOr<std::string> json = MessageToJson(config, options);
  ASSERT_TRUE(json.ok()) << json.status();
  EXPECT_EQ(*json,
            absl::StrCat("{\"name\":\"echo\",\"env\":{", expected_env, "}}"));

  // The options reach protobuf's printer.
  options.preserve_proto_field_names = true;
  config.mutable_start_timeout()->set_seconds(3);
  json = MessageToJson(config, options);
  ASSERT_TRUE(json.ok()) << json.status();
  EXPECT_THAT(*json, HasSubstr("\"start_timeout\":\"3s\""));
}

TEST(MessageToJson, WhatTheJsonPrinterRefusesIsAnErrorNamingTheType) {
  // A time out of the RFC 3339 range; a broker answer could carry one.
  google::protobuf::Timestamp time;
  time.set_seconds(int64_t{1} << 50);
  absl::StatusOr<std::string> json =
      MessageToJson(time, google::protobuf::util::JsonPrintOptions());
  ASSERT_FALSE(json.ok()) << *json;
  EXPECT_EQ(json.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(json.status().message(),
              HasSubstr("cannot render google.protobuf.Timestamp as JSON"));
}

}  // namespace
}  // namespace plugd
