#include "plugd/common/exec_policy.h"

#include <grp.h>
#include <pwd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace plugd {
namespace {

constexpr size_t kSha256HexDigits = 64;
constexpr uint64_t kMaxByteSize = uint64_t{1} << 63;

std::string Quoted(absl::string_view text) {
  constexpr size_t kMax = 80;
  if (text.size() > kMax) {
    return absl::StrCat("\"", absl::CHexEscape(text.substr(0, kMax)), "...\"");
  }
  return absl::StrCat("\"", absl::CHexEscape(text), "\"");
}

}  // namespace

absl::StatusOr<std::string> ParseSha256Pin(absl::string_view pin) {
  auto invalid = [&](absl::string_view what) {
    return absl::InvalidArgumentError(absl::StrCat(
        "invalid executable pin ", Quoted(pin), ": ", what,
        "; write sha256:<64 hex digits>, the output of `sha256sum FILE`"));
  };
  if (!absl::StartsWith(pin, kSha256PinPrefix)) {
    return invalid(
        "it does not start with \"sha256:\" (the only hash "
        "supported)");
  }
  absl::string_view hex = pin.substr(sizeof(kSha256PinPrefix) - 1);
  if (hex.size() != kSha256HexDigits) {
    return invalid(absl::StrCat("it has ", hex.size(), " hex digits, not ",
                                kSha256HexDigits));
  }
  std::string digest;
  digest.reserve(hex.size());
  for (char c : hex) {
    if (!absl::ascii_isxdigit(static_cast<unsigned char>(c))) {
      return invalid(absl::StrCat("'", absl::CHexEscape(std::string(1, c)),
                                  "' is not a hex digit"));
    }
    digest.push_back(absl::ascii_tolower(static_cast<unsigned char>(c)));
  }
  return digest;
}

absl::StatusOr<uint64_t> ParseByteSize(absl::string_view text) {
  auto invalid = [&](absl::string_view what) {
    return absl::InvalidArgumentError(absl::StrCat(
        "invalid byte size ", Quoted(text), ": ", what,
        "; write a number of bytes, optionally with a unit, e.g. 512MiB, "
        "64M, 2GiB, 1GB or 1048576"));
  };
  absl::string_view rest = absl::StripAsciiWhitespace(text);
  size_t digits = 0;
  while (digits < rest.size() &&
         absl::ascii_isdigit(static_cast<unsigned char>(rest[digits]))) {
    ++digits;
  }
  if (digits == 0) return invalid("it does not start with a number");
  uint64_t number = 0;
  for (size_t i = 0; i < digits; ++i) {
    const uint64_t digit = static_cast<uint64_t>(rest[i] - '0');
    if (number > (kMaxByteSize - digit) / 10) {
      return invalid("it is too large (the limit is 2^63 - 1 bytes)");
    }
    number = number * 10 + digit;
  }
  const std::string unit =
      absl::AsciiStrToLower(absl::StripAsciiWhitespace(rest.substr(digits)));
  static const std::pair<const char*, uint64_t> kUnits[] = {
      {"", 1},
      {"b", 1},
      {"k", uint64_t{1} << 10},
      {"kib", uint64_t{1} << 10},
      {"m", uint64_t{1} << 20},
      {"mib", uint64_t{1} << 20},
      {"g", uint64_t{1} << 30},
      {"gib", uint64_t{1} << 30},
      {"t", uint64_t{1} << 40},
      {"tib", uint64_t{1} << 40},
      {"kb", 1000},
      {"mb", 1000 * 1000},
      {"gb", 1000 * 1000 * 1000},
      {"tb", uint64_t{1000} * 1000 * 1000 * 1000},
  };
  for (const auto& [name, factor] : kUnits) {
    if (unit != name) continue;
    if (number != 0 && factor > (kMaxByteSize - 1) / number) {
      return invalid("it is too large (the limit is 2^63 - 1 bytes)");
    }
    return number * factor;
  }
  return invalid(absl::StrCat("unknown unit ", Quoted(unit),
                              " (known: B, KiB, MiB, GiB, TiB, K, M, G, T, "
                              "kB, MB, GB, TB)"));
}

std::string FormatBytes(uint64_t bytes) {
  static const char* const kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  size_t unit = 0;
  while (unit + 1 < sizeof(kUnits) / sizeof(kUnits[0]) && bytes != 0 &&
         bytes % 1024 == 0) {
    bytes /= 1024;
    ++unit;
  }
  return absl::StrCat(bytes, kUnits[unit]);
}

absl::StatusOr<RunAs> LookUpRunAs(const std::string& user,
                                  const std::string& group) {
  if (user.empty()) {
    return absl::InvalidArgumentError(
        "no user given; name the user (or uid) the plugin runs as");
  }
  RunAs ids;
  std::vector<char> buffer(16384);
  bool has_entry = false;
  std::string user_name;
  {
    struct passwd entry;
    struct passwd* found = nullptr;
    uint32_t number = 0;
    const bool numeric = absl::SimpleAtoi(user, &number);
    int err = numeric ? getpwuid_r(number, &entry, buffer.data(), buffer.size(),
                                   &found)
                      : getpwnam_r(user.c_str(), &entry, buffer.data(),
                                   buffer.size(), &found);
    if (found != nullptr) {
      has_entry = true;
      ids.uid = found->pw_uid;
      ids.gid = found->pw_gid;
      user_name = found->pw_name;
    } else if (numeric) {
      ids.uid = number;
    } else {
      return absl::NotFoundError(absl::StrCat(
          "unknown user ", Quoted(user),
          err != 0 ? absl::StrCat(" (", std::strerror(err), ")") : "",
          "; create it (useradd --system) or give a numeric uid"));
    }
  }
  if (!group.empty()) {
    struct group entry;
    struct group* found = nullptr;
    uint32_t number = 0;
    if (absl::SimpleAtoi(group, &number)) {
      ids.gid = number;
    } else {
      const int err = getgrnam_r(group.c_str(), &entry, buffer.data(),
                                 buffer.size(), &found);
      if (found == nullptr) {
        return absl::NotFoundError(absl::StrCat(
            "unknown group ", Quoted(group),
            err != 0 ? absl::StrCat(" (", std::strerror(err), ")") : "",
            "; create it (groupadd --system) or give a numeric gid"));
      }
      ids.gid = found->gr_gid;
    }
  } else if (!has_entry) {
    return absl::InvalidArgumentError(absl::StrCat(
        "uid ", ids.uid,
        " has no passwd entry, so it has no primary group; give a group"));
  }
  if (has_entry) {
    int count = 64;
    std::vector<gid_t> groups(static_cast<size_t>(count));
    while (getgrouplist(user_name.c_str(), ids.gid, groups.data(), &count) <
           0) {
      if (count > 65536) break;
      groups.resize(static_cast<size_t>(count) * 2);
      count = static_cast<int>(groups.size());
    }
    groups.resize(static_cast<size_t>(std::max(count, 0)));
    ids.groups = std::move(groups);
  }
  ids.description =
      absl::StrCat("user ", has_entry ? user_name : absl::StrCat(ids.uid),
                   " (uid ", ids.uid, ", gid ", ids.gid, ")");
  return ids;
}

}  // namespace plugd
