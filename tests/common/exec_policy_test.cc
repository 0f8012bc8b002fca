// Pins, byte sizes and user lookups (common/plugd/common/exec_policy.h).
#include "plugd/common/exec_policy.h"

#include <unistd.h>

#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace plugd {
namespace {

TEST(ParseSha256PinTest, AcceptsSha256sumOutputInAnyCase) {
  const std::string hex =
      "9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08";
  absl::StatusOr<std::string> digest = ParseSha256Pin("sha256:" + hex);
  ASSERT_TRUE(digest.ok()) << digest.status();
  EXPECT_EQ(*digest,
            "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08");
}

TEST(ParseSha256PinTest, RefusesWhatIsNotAPinAndSaysHowToWriteOne) {
  struct Case {
    std::string pin;
    std::string says;
  };
  for (const Case& c : {
           Case{"", "does not start with \"sha256:\""},
           Case{std::string(64, 'a'), "does not start with \"sha256:\""},
           Case{"md5:0123", "does not start with \"sha256:\""},
           Case{"sha256:abc", "it has 3 hex digits, not 64"},
           Case{"sha256:" + std::string(65, 'a'), "it has 65 hex digits"},
           Case{"sha256:" + std::string(63, 'a') + "z", "'z' is not a hex"},
           Case{"sha256: " + std::string(63, 'a'), "' ' is not a hex"},
       }) {
    absl::StatusOr<std::string> digest = ParseSha256Pin(c.pin);
    ASSERT_FALSE(digest.ok()) << c.pin;
    EXPECT_EQ(digest.status().code(), absl::StatusCode::kInvalidArgument);
    const std::string message(digest.status().message());
    EXPECT_TRUE(absl::StrContains(message, c.says)) << message;
    EXPECT_TRUE(absl::StrContains(message, "sha256sum FILE")) << message;
  }
}

TEST(ParseByteSizeTest, UnitsAndPlainBytes) {
  struct Case {
    std::string text;
    uint64_t bytes;
  };
  for (const Case& c : {
           Case{"1048576", 1048576},
           Case{"0", 0},
           Case{"512MiB", uint64_t{512} << 20},
           Case{"512mib", uint64_t{512} << 20},
           Case{"64M", uint64_t{64} << 20},
           Case{"2 GiB", uint64_t{2} << 30},
           Case{"1G", uint64_t{1} << 30},
           Case{"3KiB", 3072},
           Case{"1TiB", uint64_t{1} << 40},
           Case{"1GB", 1000000000},
           Case{"5kB", 5000},
           Case{"100B", 100},
       }) {
    absl::StatusOr<uint64_t> bytes = ParseByteSize(c.text);
    ASSERT_TRUE(bytes.ok()) << c.text << ": " << bytes.status();
    EXPECT_EQ(*bytes, c.bytes) << c.text;
  }
}

TEST(ParseByteSizeTest, ErrorsSayWhatWasExpected) {
  for (const std::string& text :
       {std::string(""), std::string("MiB"), std::string("-1"),
        std::string("12XB"), std::string("1.5GiB"),
        std::string("99999999999999999999"), std::string("9999999TiB")}) {
    absl::StatusOr<uint64_t> bytes = ParseByteSize(text);
    ASSERT_FALSE(bytes.ok()) << text;
    EXPECT_EQ(bytes.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_TRUE(absl::StrContains(bytes.status().message(), "e.g. 512MiB"))
        << bytes.status();
  }
  EXPECT_TRUE(absl::StrContains(ParseByteSize("12XB").status().message(),
                                "unknown unit \"xb\""));
}

TEST(FormatBytesTest, ShortestExactForm) {
  EXPECT_EQ(FormatBytes(uint64_t{512} << 20), "512MiB");
  EXPECT_EQ(FormatBytes(uint64_t{1} << 30), "1GiB");
  EXPECT_EQ(FormatBytes(1500), "1500B");
  EXPECT_EQ(FormatBytes(0), "0B");
  EXPECT_EQ(FormatBytes(uint64_t{3} << 40), "3TiB");
}

TEST(LookUpRunAsTest, NamesAndNumbers) {
  absl::StatusOr<RunAs> root = LookUpRunAs("root", "");
  ASSERT_TRUE(root.ok()) << root.status();
  EXPECT_EQ(root->uid, 0u);
  EXPECT_EQ(root->gid, 0u);
  EXPECT_EQ(root->description, "user root (uid 0, gid 0)");

  absl::StatusOr<RunAs> numeric = LookUpRunAs("0", "12345");
  ASSERT_TRUE(numeric.ok()) << numeric.status();
  EXPECT_EQ(numeric->uid, 0u);
  EXPECT_EQ(numeric->gid, 12345u);

  // A uid nobody has: fine with a group, an error without.
  absl::StatusOr<RunAs> bare = LookUpRunAs("54321", "54321");
  ASSERT_TRUE(bare.ok()) << bare.status();
  EXPECT_TRUE(bare->groups.empty());
  absl::StatusOr<RunAs> no_group = LookUpRunAs("54321", "");
  ASSERT_FALSE(no_group.ok());
  EXPECT_TRUE(
      absl::StrContains(no_group.status().message(), "has no passwd entry"));

  absl::StatusOr<RunAs> unknown = LookUpRunAs("no-such-user-plugd", "");
  ASSERT_FALSE(unknown.ok());
  EXPECT_EQ(unknown.status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(absl::StrContains(unknown.status().message(),
                                "unknown user \"no-such-user-plugd\""));
  absl::StatusOr<RunAs> unknown_group =
      LookUpRunAs("root", "no-such-group-plugd");
  ASSERT_FALSE(unknown_group.ok());
  EXPECT_TRUE(
      absl::StrContains(unknown_group.status().message(), "unknown group"));
}

}  // namespace
}  // namespace plugd
