// Fuzz target: the daemon's YAML config (broker/config), which operators
// write by hand and which SIGHUP reloads into a running broker.
//
// Invariants checked beyond "no crash, no hang, no sanitizer report":
// - a rejected config has an error message that names the file;
// - an accepted config has every default filled (ApplyDefaults is
//   idempotent on it) and every plugin has a name and a command.
#include <google/protobuf/util/message_differencer.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/string_view.h"
#include "plugd/broker/config.h"

namespace {

void Check(bool ok) {
  if (!ok) abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  absl::string_view yaml(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<plugd::v1::BrokerConfig> config =
      plugd::broker::ParseConfig(yaml, "fuzz.yaml", "/etc/plugd");
  if (!config.ok()) {
    Check(absl::StrContains(config.status().message(), "fuzz.yaml"));
    return 0;
  }
  plugd::v1::BrokerConfig defaulted = *config;
  plugd::broker::ApplyDefaults(&defaulted);
  Check(google::protobuf::util::MessageDifferencer::Equals(defaulted, *config));
  for (const auto& plugin : config->plugins()) {
    Check(!plugin.name().empty());
    Check(plugin.command_size() > 0);
  }
  return 0;
}
