// Parsing and formatting for "what may run" settings shared by the config
// loader and the launcher: executable pins ("sha256:<64 hex>") and byte sizes
// ("512MiB"). No Boost, no broker code: the config loader (and its fuzzer)
// uses these without the launcher.
//
//   absl::StatusOr<std::string> digest = plugd::ParseSha256Pin(
//       "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08");
//   // *digest is the 64 lower-case hex digits.
//   absl::StatusOr<uint64_t> bytes = plugd::ParseByteSize("512MiB");
//   // *bytes == 536870912; plugd::FormatBytes(*bytes) == "512MiB".
//   absl::StatusOr<plugd::RunAs> ids = plugd::LookUpRunAs("nobody", "");
#ifndef PLUGD_COMMON_EXEC_POLICY_H_
#define PLUGD_COMMON_EXEC_POLICY_H_

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace plugd {

// The prefix of an executable pin.
inline constexpr char kSha256PinPrefix[] = "sha256:";

// Parses an executable pin, "sha256:" followed by exactly 64 hex digits (any
// case). Returns the digest as 64 lower-case hex digits. INVALID_ARGUMENT
// with a message saying what is wrong and how to compute a pin
// (`sha256sum FILE`) otherwise.
absl::StatusOr<std::string> ParseSha256Pin(absl::string_view pin);

// Parses a byte size: a non-negative integer, optionally followed by a unit
// (case-insensitive, spaces allowed before it): B; KiB, MiB, GiB, TiB (or K,
// M, G, T), powers of 1024; kB, MB, GB, TB, powers of 1000. "512MiB",
// "64M", "1 GB", "1048576". INVALID_ARGUMENT saying what was expected,
// also for a size of 2^63 bytes or more.
absl::StatusOr<uint64_t> ParseByteSize(absl::string_view text);

// The shortest exact form: "512MiB", "1GiB", "1500B".
std::string FormatBytes(uint64_t bytes);

// Whom a plugin runs as, when the launcher runs as root: real, effective and
// saved ids all set to these, and exactly these supplementary groups.
struct RunAs {
  uid_t uid = 0;
  gid_t gid = 0;
  // Supplementary groups; empty: none.
  std::vector<gid_t> groups;
  // For messages: "user nobody (uid 65534, gid 65534)". Optional.
  std::string description;

  bool operator==(const RunAs& o) const {
    return uid == o.uid && gid == o.gid && groups == o.groups;
  }
  bool operator!=(const RunAs& o) const { return !(*this == o); }
};

// Looks up `user` (a name, or a numeric uid) and `group` (a name, a numeric
// gid, or empty) in the user database (getpwnam_r, getgrnam_r). An empty
// group means the user's primary group; a user with a passwd entry also gets
// its supplementary groups (getgrouplist), like login and systemd's User=.
// A numeric uid without a passwd entry needs a group. NOT_FOUND naming what
// is unknown; INVALID_ARGUMENT for an empty user.
absl::StatusOr<RunAs> LookUpRunAs(const std::string& user,
                                  const std::string& group);

}  // namespace plugd

#endif  // PLUGD_COMMON_EXEC_POLICY_H_
