// Loading the plugd daemon's YAML config into a plugd.v1.BrokerConfig.
//
// The schema is proto/plugd/v1/config.proto: the YAML file is walked against
// the descriptors of BrokerConfig, so its keys are the proto field names and a
// field added to config.proto is accepted by the loader with no change here.
// docs/config.md documents every key for operators.
//
// Loading checks everything that can be checked without starting anything
// (types, ranges, unknown or duplicate keys, plugin names, commands, durations,
// backoff shape, the admin address) and fills every default documented in
// config.proto, so the rest of the broker reads plain values and never looks
// at field presence. Errors are INVALID_ARGUMENT (NOT_FOUND for a missing file,
// PERMISSION_DENIED for an unreadable one) with a message that says where,
// what is wrong and what to do:
//
//   plugd.yaml:7:5: plugins[0]: unknown key "comand"; did you mean "command"?
//   (allowed here: name, command, restart, ...)
//
// Usage:
//
//   absl::StatusOr<plugd::v1::BrokerConfig> config =
//       plugd::broker::LoadConfigFile("/etc/plugd/plugd.yaml");
//   if (!config.ok()) {
//     std::cerr << config.status().message() << "\n";  // file:line: ...
//     return 2;
//   }
//   for (const plugd::v1::PluginConfig& plugin : config->plugins()) {
//     // plugin.start_timeout(), plugin.backoff().multiplier(), ... are all
//     // set; plugin.command(0) is absolute or a bare name to find in PATH.
//   }
//
// ParseConfig never throws and never crashes, whatever the input (it is
// fuzzed); it is thread-compatible and does not touch the file system, except
// that a plugin's `user` and `group` are looked up in the user database
// (getpwnam_r, getgrnam_r) so that an unknown one is an error at its line.
#ifndef PLUGD_BROKER_CONFIG_H_
#define PLUGD_BROKER_CONFIG_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "plugd/v1/config.pb.h"

namespace plugd::broker {

// Reads, parses and validates the config file at `path`. Relative command
// paths and working directories in it are resolved against the directory of
// `path` (made absolute against the current directory). Errors: NOT_FOUND if
// the file does not exist, PERMISSION_DENIED / INVALID_ARGUMENT if it cannot
// be read, else the errors of ParseConfig, all prefixed "FILE:LINE:".
absl::StatusOr<v1::BrokerConfig> LoadConfigFile(const std::string& path);

// Parses and validates config text `yaml`, then applies defaults (the
// defaults of ApplyDefaults, plus each plugin's working_dir defaulting to
// `base_dir`). `filename` is only used in error messages ("FILE:LINE:COL:
// key.path: what is wrong; what to do", lines and columns 1-based).
// `base_dir` resolves relative command executables (those containing a '/',
// like "build/bin/plugd-random" or "./x") and relative working_dir values;
// bare executable names stay as they are, to be looked up in PATH. An empty
// `base_dir` leaves relative paths relative. Never throws.
absl::StatusOr<v1::BrokerConfig> ParseConfig(absl::string_view yaml,
                                             const std::string& filename,
                                             const std::string& base_dir);

// Fills every default documented in config.proto into the fields left unset
// (zero, empty or absent): admin (DefaultAdminAddress()), socket_dir (the
// admin socket's directory), log_level "info", event_history 1000, and for
// each plugin restart ALWAYS, start_timeout 10s, stop_timeout 5s, backoff
// 100ms / 30s / x2, max_restarts 5, restart_window 60s, health_interval 1s,
// unhealthy_timeout 5s, liveness_timeout 5s, protocol_versions [1],
// max_message_bytes 64 MiB, log_buffer_bytes 1 MiB, log_line_bytes 16384,
// log_rate_bytes 262144, autostart true and inherit_environment false; for a
// plugin with go_plugin, go_plugin.min_port 10000 and max_port 25000.
// working_dir is left as it is (it defaults to the config file's directory,
// which only ParseConfig knows). Idempotent. Does not validate.
//
// Plain proto3 scalars cannot tell 0 from unset, so 0 there means "use the
// default"; the fields where 0 is meaningful (max_restarts, log_rate_bytes:
// "no limit") are proto3 `optional` and keep an explicit 0.
void ApplyDefaults(v1::BrokerConfig* config);

// The default admin address: "unix:$XDG_RUNTIME_DIR/plugd/admin.sock" when
// XDG_RUNTIME_DIR is set and non-empty, else "unix:/tmp/plugd-$UID/admin.sock".
std::string DefaultAdminAddress();

}  // namespace plugd::broker

#endif  // PLUGD_BROKER_CONFIG_H_
