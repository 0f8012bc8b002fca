#include "plugd/common/protocol.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace plugd {
namespace {

using ::testing::HasSubstr;

TEST(ParseHandshake, AcceptsTheGoPluginFormat) {
  absl::StatusOr<Handshake> h =
      ParseHandshake("1|1|unix|/run/plugd/random.sock|grpc");
  ASSERT_TRUE(h.ok()) << h.status();
  EXPECT_EQ(h->core_version, 1u);
  EXPECT_EQ(h->app_version, 1u);
  EXPECT_EQ(h->network, "unix");
  EXPECT_EQ(h->address, "/run/plugd/random.sock");
  EXPECT_EQ(h->protocol, "grpc");
  EXPECT_EQ(h->server_cert, "");
  EXPECT_EQ(h->GrpcTarget(), "unix:/run/plugd/random.sock");
}

TEST(ParseHandshake, StripsNewlines) {
  EXPECT_TRUE(ParseHandshake("1|2|unix|/x.sock|grpc\n").ok());
  EXPECT_TRUE(ParseHandshake("1|2|unix|/x.sock|grpc\r\n").ok());
}

TEST(ParseHandshake, AcceptsGoPluginOptionalFields) {
  // go-plugin 1.0.1 prints an empty 6th field.
  absl::StatusOr<Handshake> h = ParseHandshake("1|3|unix|/x.sock|grpc|");
  ASSERT_TRUE(h.ok()) << h.status();
  EXPECT_EQ(h->app_version, 3u);
  EXPECT_EQ(h->server_cert, "");
  // Newer go-plugin: a certificate and a multiplexing flag.
  h = ParseHandshake("1|3|unix|/x.sock|grpc|MIIBcert|true");
  ASSERT_TRUE(h.ok()) << h.status();
  EXPECT_EQ(h->server_cert, "MIIBcert");
}

TEST(ParseHandshake, AcceptsTcp) {
  absl::StatusOr<Handshake> h = ParseHandshake("1|1|tcp|127.0.0.1:1234|grpc");
  ASSERT_TRUE(h.ok()) << h.status();
  EXPECT_EQ(h->GrpcTarget(), "127.0.0.1:1234");
}

TEST(FormatHandshake, RoundTrips) {
  Handshake h{1, 2, "unix", "/tmp/p.sock", "grpc", ""};
  EXPECT_EQ(FormatHandshake(h), "1|2|unix|/tmp/p.sock|grpc");
  absl::StatusOr<Handshake> back = ParseHandshake(FormatHandshake(h));
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->address, h.address);
}

struct Malformed {
  const char* line;
  const char* expected_fragment;
};

class MalformedHandshake : public ::testing::TestWithParam<Malformed> {};

TEST_P(MalformedHandshake, IsRejectedWithAReason) {
  absl::StatusOr<Handshake> h = ParseHandshake(GetParam().line);
  ASSERT_FALSE(h.ok()) << GetParam().line;
  EXPECT_EQ(h.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(h.status().message()),
              HasSubstr(GetParam().expected_fragment));
  // Every error shows the expected format.
  EXPECT_THAT(std::string(h.status().message()),
              HasSubstr("CORE|APP|NETWORK|ADDRESS|PROTOCOL"));
}

INSTANTIATE_TEST_SUITE_P(
    AllForms, MalformedHandshake,
    ::testing::Values(Malformed{"", "empty"}, Malformed{"\n", "empty"},
                      Malformed{"hello world", "1 field(s)"},
                      Malformed{"1|1|unix|/x.sock", "4 field(s)"},
                      Malformed{"1|1|unix|/x.sock|grpc|a|b|c", "at most 7"},
                      Malformed{"x|1|unix|/x.sock|grpc", "core version"},
                      Malformed{"0|1|unix|/x.sock|grpc", "core version"},
                      Malformed{"-1|1|unix|/x.sock|grpc", "core version"},
                      Malformed{"1||unix|/x.sock|grpc", "app version"},
                      Malformed{"1|1.5|unix|/x.sock|grpc", "app version"},
                      Malformed{"1|99999999999|unix|/x.sock|grpc",
                                "app version"},
                      Malformed{"1|1|udp|/x.sock|grpc", "network"},
                      Malformed{"1|1|unix||grpc", "address is empty"},
                      Malformed{"1|1|unix|relative.sock|grpc", "absolute"},
                      Malformed{"1|1|tcp|localhost|grpc", "no port"},
                      Malformed{"1|1|unix|/x.sock|http", "protocol"},
                      Malformed{"1|1|unix|/x.sock|GRPC", "protocol"},
                      Malformed{"\x01\x02|1|unix|/x|grpc", "\\x01"}));

TEST(ParseHandshake, RejectsOverlongSocketPath) {
  std::string path = "/" + std::string(120, 'a');
  absl::StatusOr<Handshake> h = ParseHandshake("1|1|unix|" + path + "|grpc");
  ASSERT_FALSE(h.ok());
  EXPECT_THAT(std::string(h.status().message()), HasSubstr("121 bytes"));
}

TEST(ParseHandshake, NetRpcIsAFailedPrecondition) {
  absl::StatusOr<Handshake> h = ParseHandshake("1|1|unix|/x.sock|netrpc");
  ASSERT_FALSE(h.ok());
  EXPECT_EQ(h.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(h.status().message()), HasSubstr("net/rpc"));
}

TEST(ParseHandshake, QuotesLongGarbageShortened) {
  std::string garbage(5000, 'z');
  absl::StatusOr<Handshake> h = ParseHandshake(garbage);
  ASSERT_FALSE(h.ok());
  EXPECT_THAT(std::string(h.status().message()), HasSubstr("5000 bytes"));
  EXPECT_LT(h.status().message().size(), 600u);
}

TEST(VersionList, ParsesAndFormats) {
  absl::StatusOr<std::vector<uint32_t>> v = ParseVersionList("1, 2,3");
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(*v, (std::vector<uint32_t>{1, 2, 3}));
  EXPECT_EQ(FormatVersionList(*v), "1,2,3");
}

TEST(VersionList, RejectsBadLists) {
  for (const char* text : {"", "0", "1,,2", "a", "1;2", "-1", "1.0"}) {
    absl::StatusOr<std::vector<uint32_t>> v = ParseVersionList(text);
    EXPECT_FALSE(v.ok()) << text;
    EXPECT_EQ(v.status().code(), absl::StatusCode::kInvalidArgument) << text;
  }
}

TEST(NegotiateVersion, PicksTheHighestCommonVersion) {
  EXPECT_EQ(*NegotiateVersion({1, 2, 3}, {2, 3, 4}), 3u);
  EXPECT_EQ(*NegotiateVersion({1}, {1}), 1u);
  EXPECT_EQ(*NegotiateVersion({3, 1}, {1, 3}), 3u);
}

TEST(NegotiateVersion, NoCommonVersionSaysBothSides) {
  absl::StatusOr<uint32_t> v = NegotiateVersion({1, 2}, {3, 4});
  ASSERT_FALSE(v.ok());
  EXPECT_EQ(v.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(v.status().message()), HasSubstr("[1,2]"));
  EXPECT_THAT(std::string(v.status().message()), HasSubstr("[3,4]"));
}

TEST(ValidateSocketPath, EnforcesTheSunPathLimit) {
  EXPECT_TRUE(ValidateSocketPath("/tmp/x.sock").ok());
  EXPECT_TRUE(ValidateSocketPath("/" + std::string(106, 'a')).ok());
  absl::Status s = ValidateSocketPath("/" + std::string(107, 'a'));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("108 bytes"));
  EXPECT_FALSE(ValidateSocketPath("relative.sock").ok());
}

}  // namespace
}  // namespace plugd
