// In-process tests of the function registry and Args helpers.
#include "plugd/sdk/functions.h"

#include <stdexcept>

#include "gtest/gtest.h"
#include "plugd/common/value.h"

namespace plugd::sdk {
namespace {

using google::protobuf::RepeatedPtrField;
using google::protobuf::Value;

RepeatedPtrField<Value> Values(std::initializer_list<Value> values) {
  RepeatedPtrField<Value> out;
  for (const Value& v : values) *out.Add() = v;
  return out;
}

Function Echo(std::vector<Param> params) {
  return {.name = "echo",
          .help = "",
          .params = std::move(params),
          .impl = [](const Args& args) -> absl::StatusOr<Value> {
            return plugd::NumberValue(static_cast<double>(args.size()));
          }};
}

TEST(FunctionRegistryTest, RejectsBadDefinitions) {
  FunctionRegistry registry("p");
  EXPECT_EQ(
      registry.Add(Echo({Param::Variadic("x"), Param::Required("y")})).code(),
      absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(
      registry.Add(Echo({Param::Optional("x"), Param::Required("y")})).code(),
      absl::StatusCode::kInvalidArgument);
  Function no_impl = Echo({});
  no_impl.impl = nullptr;
  EXPECT_EQ(registry.Add(no_impl).code(), absl::StatusCode::kInvalidArgument);
  Function spaced = Echo({});
  spaced.name = "two words";
  EXPECT_EQ(registry.Add(spaced).code(), absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE(registry.Add(Echo({})).ok());
  EXPECT_EQ(registry.Add(Echo({})).code(), absl::StatusCode::kAlreadyExists);
}

TEST(FunctionRegistryTest, UsageAndArity) {
  Function f = Echo(
      {Param::Required("a"), Param::Optional("b"), Param::Variadic("rest")});
  EXPECT_EQ(FunctionRegistry::Usage(f), "echo A [B [REST...]]");
  plugd::v1::FunctionInfo info = FunctionRegistry::Describe(f);
  EXPECT_EQ(info.min_args(), 1u);
  EXPECT_EQ(info.max_args(), -1);
  EXPECT_TRUE(info.params(2).variadic());

  FunctionRegistry registry("p");
  ASSERT_TRUE(registry.Add(f).ok());
  absl::StatusOr<Value> r = registry.Call("echo", Values({}));
  EXPECT_EQ(r.status().message(),
            "echo: expected at least 1 argument (echo A [B [REST...]]), got 0");
  r = registry.Call("echo", Values({NumberValue(1), NumberValue(2),
                                    NumberValue(3), NumberValue(4)}));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->number_value(), 4);
}

TEST(FunctionRegistryTest, ExceptionsBecomeInternal) {
  FunctionRegistry registry("p");
  ASSERT_TRUE(registry
                  .Add({.name = "boom",
                        .help = "",
                        .params = {},
                        .impl = [](const Args&) -> absl::StatusOr<Value> {
                          throw std::runtime_error("kaput");
                        }})
                  .ok());
  absl::StatusOr<Value> r = registry.Call("boom", Values({}));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInternal);
  EXPECT_NE(r.status().message().find("kaput"), absl::string_view::npos);
}

TEST(ArgsTest, TypedAccessorsNameTheArgument) {
  std::vector<Param> params = {Param::Required("n", Kind::kNumber),
                               Param::Variadic("s", Kind::kString)};
  RepeatedPtrField<Value> values =
      Values({StringValue("x"), StringValue("a"), NumberValue(2.5)});
  Args args("f", params, absl::MakeConstSpan(values.data(), values.size()));
  EXPECT_EQ(args.Number(0).status().message(),
            "f: argument 1 (n) must be a number, got string \"x\"");
  EXPECT_EQ(*args.String(1), "a");
  EXPECT_EQ(args.String(2).status().message(),
            "f: argument 3 (s) must be a string, got number 2.5");
  EXPECT_EQ(args.Int(2).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(*args.IntOr(5, 7), 7);
  EXPECT_EQ(*args.NumberOr(5, 1.5), 1.5);
  EXPECT_EQ(args.Int(5).status().message(),
            "f: argument 6 (s) is missing (got 3 arguments)");
  EXPECT_EQ(args.Bool(1).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace plugd::sdk
