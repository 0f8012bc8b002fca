#include "plugd/common/protocol.h"

#include <algorithm>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace plugd {
namespace {

constexpr char kExpected[] =
    "expected CORE|APP|NETWORK|ADDRESS|PROTOCOL, e.g. "
    "1|1|unix|/run/plugd/x.sock|grpc";

absl::Status Malformed(absl::string_view line, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("malformed handshake line ",
                                                 QuoteForMessage(line), ": ",
                                                 what, "; ", kExpected));
}

bool ParseVersionField(absl::string_view field, uint32_t* out) {
  if (field.empty() || field.size() > 9) return false;
  for (char c : field) {
    if (!absl::ascii_isdigit(static_cast<unsigned char>(c))) return false;
  }
  return absl::SimpleAtoi(field, out);
}

}  // namespace

std::string QuoteForMessage(absl::string_view text, size_t max) {
  std::string out = "\"";
  for (size_t i = 0; i < text.size() && i < max; ++i) {
    unsigned char c = static_cast<unsigned char>(text[i]);
    if (c == '"' || c == '\\') {
      out.push_back('\\');
      out.push_back(static_cast<char>(c));
    } else if (c < 0x20 || c == 0x7f) {
      absl::StrAppend(&out, "\\x", absl::Hex(c, absl::kZeroPad2));
    } else {
      out.push_back(static_cast<char>(c));
    }
  }
  out.push_back('"');
  if (text.size() > max) {
    absl::StrAppend(&out, "... (", text.size(), " bytes)");
  }
  return out;
}

std::string Handshake::GrpcTarget() const {
  if (network == "unix") return absl::StrCat("unix:", address);
  return address;
}

absl::StatusOr<Handshake> ParseHandshake(absl::string_view line) {
  absl::string_view text = line;
  absl::ConsumeSuffix(&text, "\n");
  absl::ConsumeSuffix(&text, "\r");
  if (text.empty()) return Malformed(line, "the line is empty");
  std::vector<absl::string_view> fields = absl::StrSplit(text, '|');
  if (fields.size() < 5) {
    return Malformed(line, absl::StrCat("it has ", fields.size(),
                                        " field(s), at least 5 are needed"));
  }
  if (fields.size() > 7) {
    return Malformed(line, absl::StrCat("it has ", fields.size(),
                                        " fields, at most 7 are allowed"));
  }
  Handshake h;
  if (!ParseVersionField(fields[0], &h.core_version) || h.core_version == 0) {
    return Malformed(line,
                     absl::StrCat("core version ", QuoteForMessage(fields[0]),
                                  " is not a positive integer"));
  }
  if (!ParseVersionField(fields[1], &h.app_version) || h.app_version == 0) {
    return Malformed(line,
                     absl::StrCat("app version ", QuoteForMessage(fields[1]),
                                  " is not a positive integer"));
  }
  h.network = std::string(fields[2]);
  if (h.network != "unix" && h.network != "tcp") {
    return Malformed(line, absl::StrCat("network ", QuoteForMessage(fields[2]),
                                        " is neither \"unix\" nor \"tcp\""));
  }
  h.address = std::string(fields[3]);
  if (h.address.empty()) return Malformed(line, "the address is empty");
  if (h.network == "unix") {
    if (h.address.front() != '/') {
      return Malformed(line,
                       absl::StrCat("unix address ", QuoteForMessage(fields[3]),
                                    " is not an absolute path"));
    }
    if (h.address.size() > kMaxSocketPathBytes) {
      return Malformed(line, absl::StrCat("unix address is ", h.address.size(),
                                          " bytes, over the ",
                                          kMaxSocketPathBytes, "-byte limit"));
    }
  } else if (h.address.find(':') == std::string::npos) {
    return Malformed(line,
                     absl::StrCat("tcp address ", QuoteForMessage(fields[3]),
                                  " has no port"));
  }
  h.protocol = std::string(fields[4]);
  if (h.protocol != "grpc") {
    if (h.protocol == "netrpc") {
      return absl::FailedPreconditionError(absl::StrCat(
          "handshake line ", QuoteForMessage(line),
          " asks for go-plugin's net/rpc protocol; plugd speaks only grpc "
          "(build the plugin with GRPCServer)"));
    }
    return Malformed(line, absl::StrCat("protocol ", QuoteForMessage(fields[4]),
                                        " is not \"grpc\""));
  }
  if (fields.size() >= 6) h.server_cert = std::string(fields[5]);
  return h;
}

std::string FormatHandshake(const Handshake& h) {
  return absl::StrCat(h.core_version, "|", h.app_version, "|", h.network, "|",
                      h.address, "|", h.protocol);
}

absl::StatusOr<std::vector<uint32_t>> ParseVersionList(absl::string_view text) {
  std::vector<uint32_t> versions;
  for (absl::string_view part : absl::StrSplit(text, ',')) {
    part = absl::StripAsciiWhitespace(part);
    uint32_t v = 0;
    if (!ParseVersionField(part, &v) || v == 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "protocol version list ", QuoteForMessage(text),
          " is not a comma-separated list of positive integers, e.g. \"1,2\""));
    }
    versions.push_back(v);
  }
  return versions;
}

std::string FormatVersionList(const std::vector<uint32_t>& versions) {
  return absl::StrJoin(versions, ",");
}

absl::StatusOr<uint32_t> NegotiateVersion(
    const std::vector<uint32_t>& host_versions,
    const std::vector<uint32_t>& plugin_versions) {
  std::set<uint32_t> host(host_versions.begin(), host_versions.end());
  uint32_t best = 0;
  for (uint32_t v : plugin_versions) {
    if (host.count(v) != 0) best = std::max(best, v);
  }
  if (best == 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        "no protocol version in common: the host supports [",
        FormatVersionList(host_versions), "], the plugin supports [",
        FormatVersionList(plugin_versions),
        "]; upgrade whichever side is older"));
  }
  return best;
}

absl::Status ValidateSocketPath(absl::string_view path) {
  if (path.empty() || path.front() != '/') {
    return absl::InvalidArgumentError(absl::StrCat(
        "socket path ", QuoteForMessage(path), " is not an absolute path"));
  }
  if (path.size() > kMaxSocketPathBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "socket path ", QuoteForMessage(path), " is ", path.size(),
        " bytes long; Unix socket paths are limited to ", kMaxSocketPathBytes,
        " bytes: choose a shorter socket directory"));
  }
  return absl::OkStatus();
}

}  // namespace plugd
