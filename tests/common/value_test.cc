#include "plugd/common/value.h"

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace plugd {
namespace {

using google::protobuf::Value;
using ::testing::HasSubstr;

TEST(ParseArgument, Numbers) {
  for (const char* text : {"42", "-1.5", "0", "1e3", "2.5E-2", " 7 "}) {
    Value v = ParseArgument(text);
    EXPECT_EQ(v.kind_case(), Value::kNumberValue) << text;
  }
  EXPECT_EQ(ParseArgument("42").number_value(), 42);
  EXPECT_EQ(ParseArgument("-1.5").number_value(), -1.5);
  EXPECT_EQ(ParseArgument("1e3").number_value(), 1000);
}

TEST(ParseArgument, NotQuiteNumbersAreStrings) {
  for (const char* text : {"0x10", "1.", ".5", "01", "1e", "--1", "NaN", "inf",
                           "1e999", "12abc", "+1"}) {
    Value v = ParseArgument(text);
    EXPECT_EQ(v.kind_case(), Value::kStringValue) << text;
    EXPECT_EQ(v.string_value(), text);
  }
}

TEST(ParseArgument, KeywordsAndJson) {
  EXPECT_TRUE(ParseArgument("true").bool_value());
  EXPECT_EQ(ParseArgument("false").kind_case(), Value::kBoolValue);
  EXPECT_EQ(ParseArgument("null").kind_case(), Value::kNullValue);
  Value list = ParseArgument("[1, \"a\", true]");
  ASSERT_EQ(list.kind_case(), Value::kListValue);
  EXPECT_EQ(list.list_value().values_size(), 3);
  Value object = ParseArgument("{\"a\": 1}");
  ASSERT_EQ(object.kind_case(), Value::kStructValue);
  EXPECT_EQ(object.struct_value().fields().at("a").number_value(), 1);
  Value quoted = ParseArgument("\"42\"");
  ASSERT_EQ(quoted.kind_case(), Value::kStringValue);
  EXPECT_EQ(quoted.string_value(), "42");
}

TEST(ParseArgument, BrokenJsonIsAString) {
  for (const char* text : {"[1,", "{", "\"unterminated", "[}"}) {
    Value v = ParseArgument(text);
    EXPECT_EQ(v.kind_case(), Value::kStringValue) << text;
    EXPECT_EQ(v.string_value(), text);
  }
}

TEST(FormatValue, ReadableForPeople) {
  EXPECT_EQ(FormatValue(NumberValue(3)), "3");
  EXPECT_EQ(FormatValue(NumberValue(-0.0)), "0");
  EXPECT_EQ(FormatValue(NumberValue(2.5)), "2.5");
  EXPECT_EQ(FormatValue(NumberValue(0.1)), "0.1");
  EXPECT_EQ(FormatValue(NumberValue(1.0 / 3)), "0.3333333333333333");
  EXPECT_EQ(FormatValue(NumberValue(1e20)), "1e+20");
  EXPECT_EQ(FormatValue(StringValue("hi")), "hi");
  EXPECT_EQ(FormatValue(BoolValue(true)), "true");
  EXPECT_EQ(FormatValue(NullValue()), "null");
  EXPECT_EQ(FormatValue(ParseArgument("[1,\"a\"]")), "[1,\"a\"]");
  EXPECT_EQ(FormatValue(Value()), "null");
}

TEST(ValueToJson, WhatJsonCannotCarryGetsItsNearestFormAtAnyDepth) {
  // Found by the fuzzer: a nested -0 printed as "-0", which protobuf's
  // parser reads back as 0, so the JSON was not a fixed point.
  Value nested = ParseArgument("{\"k\":{\"n\":-0.0}}");
  ASSERT_TRUE(std::signbit(nested.struct_value()
                               .fields()
                               .at("k")
                               .struct_value()
                               .fields()
                               .at("n")
                               .number_value()));
  EXPECT_EQ(ValueToJson(nested), "{\"k\":{\"n\":0}}");
  EXPECT_EQ(ValueToJson(ParseArgument(ValueToJson(nested))),
            ValueToJson(nested));
  EXPECT_EQ(ValueToJson(NumberValue(-0.0)), "0");

  // A plugin may answer NaN or a Value with no kind inside a list; the rest
  // of the answer still prints.
  Value list;
  *list.mutable_list_value()->add_values() = NumberValue(1);
  *list.mutable_list_value()->add_values() =
      NumberValue(std::numeric_limits<double>::quiet_NaN());
  list.mutable_list_value()->add_values();  // kind not set
  *list.mutable_list_value()->add_values() =
      NumberValue(-std::numeric_limits<double>::infinity());
  EXPECT_EQ(ValueToJson(list), "[1,null,null,null]");
  EXPECT_EQ(ValueToJson(NumberValue(std::numeric_limits<double>::infinity())),
            "null");
  EXPECT_EQ(ValueToJson(Value()), "null");
}

TEST(ValueToJson, ObjectKeysComeOutSortedWhateverTheMapOrder) {
  // Found by the fuzzer: protobuf's printer walks a Struct's fields in hash
  // order, seeded per map, so a Value and its re-parsed copy printed their
  // keys in different orders. 20 keys make a lucky hash order negligible.
  std::vector<std::string> keys;
  for (int i = 0; i < 20; ++i) keys.push_back(absl::StrCat("k", 100 + i));
  Value forward;
  Value backward;
  for (size_t i = 0; i < keys.size(); ++i) {
    (*forward.mutable_struct_value()->mutable_fields())[keys[i]] =
        NumberValue(static_cast<double>(i));
    size_t j = keys.size() - 1 - i;
    (*backward.mutable_struct_value()->mutable_fields())[keys[j]] =
        NumberValue(static_cast<double>(j));
  }
  std::string expected = "{";
  for (size_t i = 0; i < keys.size(); ++i) {
    absl::StrAppend(&expected, i ? "," : "", "\"", keys[i], "\":", i);
  }
  expected += "}";
  EXPECT_EQ(ValueToJson(forward), expected);
  EXPECT_EQ(ValueToJson(backward), expected);
  EXPECT_EQ(ValueToJson(ParseArgument(expected)), expected);

  // Nested objects too, and keys that are not plain letters.
  Value nested = ParseArgument(
      "[1,{\"\\u0002\":[],\"}{=\":[{\"b\":[]},{\"a\":1,\"\":2}]}]");
  EXPECT_EQ(ValueToJson(nested),
            "[1,{\"\\u0002\":[],\"}{=\":[{\"b\":[]},{\"\":2,\"a\":1}]}]");
}

TEST(CheckUtf8, AcceptsTextInAnyScript) {
  for (const char* text :
       {"", "plain", "caf\xc3\xa9", "\xe2\x9c\x93", "\xf0\x9d\x84\x9e"}) {
    EXPECT_TRUE(CheckUtf8(StringValue(text), "x").ok()) << text;
  }
  EXPECT_TRUE(
      CheckUtf8(ParseArgument("[1,{\"k\\u00e9\":[\"\\u2713\"]}]"), "x").ok());
  EXPECT_TRUE(CheckUtf8(NumberValue(1), "x").ok());
}

TEST(CheckUtf8, NamesWhereTheFirstBadByteIs) {
  // What protobuf's parser refuses: a stray continuation byte, a truncated
  // sequence, an overlong form, an encoded surrogate.
  for (const char* text :
       {"\x80", "caf\xc3", "\xc0\x80", "\xed\xa0\x80", "\xff"}) {
    absl::Status status = CheckUtf8(StringValue(text), "argument 1");
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << text;
    EXPECT_THAT(status.message(),
                HasSubstr("argument 1 is not valid UTF-8 text (byte 0x"))
        << text;
  }
  EXPECT_EQ(CheckUtf8(StringValue("caf\xe9"), "argument 1").message(),
            "argument 1 is not valid UTF-8 text (byte 0xe9 at offset 3); "
            "Values carry text: encode binary data, e.g. as base64");

  Value nested = ParseArgument("[1,{\"k\":[true,\"x\"]}]");
  (*nested.mutable_list_value()
        ->mutable_values(1)
        ->mutable_struct_value()
        ->mutable_fields())["k"]
      .mutable_list_value()
      ->mutable_values(1)
      ->set_string_value("ab\xfe");
  EXPECT_THAT(CheckUtf8(nested, "the result").message(),
              HasSubstr("the result is not valid UTF-8 text (byte 0xfe at "
                        "offset 2 of [1][\"k\"][1])"));

  Value bad_key;
  (*bad_key.mutable_struct_value()->mutable_fields())["k\xff"] = NumberValue(1);
  EXPECT_THAT(CheckUtf8(bad_key, "argument 3").message(),
              HasSubstr("(byte 0xff at offset 1 of key [\"k\\xff\"])"));

  // Several bad strings: the first in key order is named, every time.
  Value two_bad;
  for (const char* key : {"zz", "aa", "mm"}) {
    (*two_bad.mutable_struct_value()->mutable_fields())[key] =
        StringValue(std::string(key) + "\xff");
  }
  for (int i = 0; i < 20; ++i) {
    Value copy = two_bad;  // a fresh map, with its own hash order
    EXPECT_THAT(CheckUtf8(copy, "x").message(),
                HasSubstr("(byte 0xff at offset 2 of [\"aa\"])"));
  }

  EXPECT_EQ(CheckUtf8(absl::string_view("a\xc3"), "NAME").message(),
            "NAME is not valid UTF-8 text (byte 0xc3 at offset 1)");
  EXPECT_TRUE(CheckUtf8(absl::string_view("caf\xc3\xa9"), "NAME").ok());
}

TEST(ValueToNumber, AcceptsNumbersAndNumericStrings) {
  EXPECT_EQ(*ValueToNumber(NumberValue(2.5), "x"), 2.5);
  EXPECT_EQ(*ValueToNumber(StringValue("7"), "x"), 7);
  absl::StatusOr<double> bad =
      ValueToNumber(StringValue("abc"), "argument 1 (min)");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(
      std::string(bad.status().message()),
      HasSubstr("argument 1 (min) must be a number, got string \"abc\""));
}

TEST(ValueToInt, RequiresWholeNumbersInRange) {
  EXPECT_EQ(*ValueToInt(NumberValue(-3), "x"), -3);
  EXPECT_FALSE(ValueToInt(NumberValue(1.5), "x").ok());
  EXPECT_FALSE(ValueToInt(NumberValue(1e19), "x").ok());
  EXPECT_FALSE(ValueToInt(NumberValue(-1e19), "x").ok());
  EXPECT_FALSE(ValueToInt(BoolValue(true), "x").ok());
  EXPECT_THAT(std::string(ValueToInt(NumberValue(1.5), "n").status().message()),
              HasSubstr("n must be a whole number"));
}

TEST(ValueToString, OnlyStrings) {
  EXPECT_EQ(*ValueToString(StringValue("a"), "s"), "a");
  absl::StatusOr<std::string> bad = ValueToString(NumberValue(1), "s");
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(std::string(bad.status().message()),
              HasSubstr("s must be a string, got number 1"));
}

TEST(ValueToBool, BoolsAndTheirSpelling) {
  EXPECT_TRUE(*ValueToBool(BoolValue(true), "b"));
  EXPECT_FALSE(*ValueToBool(StringValue("false"), "b"));
  EXPECT_FALSE(ValueToBool(NumberValue(1), "b").ok());
}

TEST(DescribeValue, ShortensLongStrings) {
  std::string text = DescribeValue(StringValue(std::string(1000, 'x')));
  EXPECT_LT(text.size(), 100u);
  EXPECT_THAT(text, HasSubstr("..."));
  EXPECT_EQ(DescribeValue(ParseArgument("[1,2]")), "list of 2");
}

}  // namespace
}  // namespace plugd
