// Fuzz target: the handshake line a plugin prints, and the version lists of
// the launch environment (common/plugd/common/protocol.h). Both are read from
// a process the host does not trust.
//
// Invariants checked beyond "no crash, no sanitizer report":
// - a line that parses formats back to a line that parses to the same fields;
// - a version list that parses formats back to the same list, and
//   negotiation picks a version that both sides offered;
// - QuoteForMessage never lets a control byte through and stays bounded.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "absl/strings/string_view.h"
#include "plugd/common/protocol.h"

namespace {

void Check(bool ok) {
  if (!ok) abort();
}

void FuzzHandshake(absl::string_view line) {
  absl::StatusOr<plugd::Handshake> parsed = plugd::ParseHandshake(line);
  if (!parsed.ok()) {
    Check(!parsed.status().message().empty());
    return;
  }
  Check(!parsed->GrpcTarget().empty());
  std::string again = plugd::FormatHandshake(*parsed);
  absl::StatusOr<plugd::Handshake> reparsed = plugd::ParseHandshake(again);
  Check(reparsed.ok());
  Check(reparsed->core_version == parsed->core_version);
  Check(reparsed->app_version == parsed->app_version);
  Check(reparsed->network == parsed->network);
  Check(reparsed->address == parsed->address);
  Check(reparsed->protocol == parsed->protocol);
}

void FuzzVersions(absl::string_view text) {
  // "HOST;PLUGIN": two lists to negotiate.
  size_t split = text.find(';');
  absl::string_view host_text = text.substr(0, split);
  absl::StatusOr<std::vector<uint32_t>> host =
      plugd::ParseVersionList(host_text);
  if (!host.ok()) return;
  absl::StatusOr<std::vector<uint32_t>> again =
      plugd::ParseVersionList(plugd::FormatVersionList(*host));
  Check(again.ok() && *again == *host);
  if (split == absl::string_view::npos) return;
  absl::StatusOr<std::vector<uint32_t>> plugin =
      plugd::ParseVersionList(text.substr(split + 1));
  if (!plugin.ok()) return;
  absl::StatusOr<uint32_t> chosen = plugd::NegotiateVersion(*host, *plugin);
  if (!chosen.ok()) return;
  bool in_host = false, in_plugin = false;
  for (uint32_t v : *host) in_host |= v == *chosen;
  for (uint32_t v : *plugin) in_plugin |= v == *chosen;
  Check(in_host && in_plugin);
}

void FuzzQuote(absl::string_view text) {
  std::string quoted = plugd::QuoteForMessage(text, 64);
  for (char c : quoted) {
    Check(static_cast<unsigned char>(c) >= 0x20 && c != 0x7f);
  }
  // 64 bytes each escaped to at most 4, the quotes, and the length note.
  Check(quoted.size() <= 64 * 4 + 64);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  absl::string_view text(reinterpret_cast<const char*>(data), size);
  FuzzHandshake(text);
  FuzzVersions(text);
  FuzzQuote(text);
  return 0;
}
