// The plugd launch protocol: environment variables, the handshake line and
// version negotiation. docs/protocol.md is the normative description; this
// header is its C++ form, shared by the SDK and the launcher.
//
//   // Plugin side:
//   auto host = plugd::ParseVersionList(getenv(plugd::kEnvProtocolVersions));
//   auto v = plugd::NegotiateVersion(*host, {1, 2});
//   std::cout << plugd::FormatHandshake({1, *v, "unix", path, "grpc"}) << "\n";
//
//   // Host side:
//   absl::StatusOr<plugd::Handshake> h = plugd::ParseHandshake(line);
#ifndef PLUGD_COMMON_PROTOCOL_H_
#define PLUGD_COMMON_PROTOCOL_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace plugd {

// The core protocol version: the first field of the handshake. Same meaning
// and value as go-plugin's CoreProtocolVersion.
inline constexpr uint32_t kCoreProtocolVersion = 1;

// The magic cookie: a plugin refuses to run unless this variable holds this
// value, so that running it by hand explains instead of hanging.
inline constexpr char kEnvMagicCookieKey[] = "PLUGD_MAGIC_COOKIE";
inline constexpr char kMagicCookieValue[] = "d5a1f0c2-plugd-plugin-7e3b94c6";

// The Unix socket path the plugin must listen on (absolute, < 108 bytes).
inline constexpr char kEnvSocket[] = "PLUGD_SOCKET";

// The application protocol versions the host supports, comma separated,
// e.g. "1,2". The plugin picks the highest version it also supports.
inline constexpr char kEnvProtocolVersions[] = "PLUGD_PROTOCOL_VERSIONS";

// The name the host knows the plugin by (for the plugin's own logs).
inline constexpr char kEnvPluginName[] = "PLUGD_PLUGIN_NAME";

// The largest gRPC message, in bytes, either side accepts (decimal).
inline constexpr char kEnvMaxMessageBytes[] = "PLUGD_MAX_MESSAGE_BYTES";

// How long, in milliseconds, the plugin may take to finish in-flight calls
// after a shutdown request before it cancels them (decimal).
inline constexpr char kEnvShutdownGraceMs[] = "PLUGD_SHUTDOWN_GRACE_MS";

// The launcher's effective uid (decimal). Optional: a plugin accepts
// connections only from its own uid, root, and this uid; without it, only
// from its own uid and root (docs/security.md).
inline constexpr char kEnvLauncherUid[] = "PLUGD_LAUNCHER_UID";

// Default for kEnvMaxMessageBytes on both sides: 64 MiB.
inline constexpr int64_t kDefaultMaxMessageBytes = 64 << 20;

// The longest Unix socket path: sun_path is 108 bytes including the NUL.
inline constexpr size_t kMaxSocketPathBytes = 107;

// The health service name go-plugin hosts check; plugd plugins serve it
// SERVING alongside the whole-server name "".
inline constexpr char kHealthServicePlugin[] = "plugin";

// HashiCorp go-plugin's launch environment (docs/go-plugin.md). A go-plugin
// host sets the application's own magic cookie (its key and value are the
// application's choice), these versions, comma separated, and a TCP port
// range; the plugin picks its own address (a Unix socket in $TMPDIR on
// Linux) and announces it in the handshake.
inline constexpr char kEnvGoPluginProtocolVersions[] =
    "PLUGIN_PROTOCOL_VERSIONS";
inline constexpr char kEnvGoPluginMinPort[] = "PLUGIN_MIN_PORT";
inline constexpr char kEnvGoPluginMaxPort[] = "PLUGIN_MAX_PORT";
// go-plugin's defaults for the port range (ClientConfig.MinPort/MaxPort).
inline constexpr uint32_t kGoPluginDefaultMinPort = 10000;
inline constexpr uint32_t kGoPluginDefaultMaxPort = 25000;

// One parsed handshake line: CORE|APP|NETWORK|ADDRESS|PROTOCOL[|CERT[|...]]
struct Handshake {
  uint32_t core_version = 0;
  uint32_t app_version = 0;
  std::string network;   // "unix" (or "tcp")
  std::string address;   // socket path, or host:port for tcp
  std::string protocol;  // "grpc"
  // go-plugin's optional 6th field (a base64 server certificate for AutoMTLS);
  // empty when absent. plugd accepts but does not use it.
  std::string server_cert;

  // The gRPC target for this address: "unix:/path" or "host:port".
  std::string GrpcTarget() const;
};

// Parses a handshake line (without or with a trailing "\n" / "\r\n").
// Accepts go-plugin's optional trailing fields, including the empty 6th
// field go-plugin 1.0.1 prints ("...|grpc|"). Errors are INVALID_ARGUMENT and
// say what is wrong with the line. Does not check versions against a host's.
absl::StatusOr<Handshake> ParseHandshake(absl::string_view line);

// Formats the line a plugin prints (no trailing newline).
std::string FormatHandshake(const Handshake& handshake);

// Parses "1,2,3" (spaces allowed) into versions. Empty text, a zero, or a
// non-number is INVALID_ARGUMENT.
absl::StatusOr<std::vector<uint32_t>> ParseVersionList(absl::string_view text);

// "1,2,3".
std::string FormatVersionList(const std::vector<uint32_t>& versions);

// The highest version in both lists. None in common is FAILED_PRECONDITION,
// with a message listing both sides' versions.
absl::StatusOr<uint32_t> NegotiateVersion(
    const std::vector<uint32_t>& host_versions,
    const std::vector<uint32_t>& plugin_versions);

// Quotes untrusted text (a plugin's output, a config value) for an error
// message: in double quotes, control characters escaped as \xNN, cut after
// `max` bytes with the full length noted, so binary junk cannot wreck a
// terminal or a log line.
std::string QuoteForMessage(absl::string_view text, size_t max = 200);

// Checks a socket path for use as a plugin address: absolute and at most
// kMaxSocketPathBytes. INVALID_ARGUMENT names the path and its length.
absl::Status ValidateSocketPath(absl::string_view path);

}  // namespace plugd

#endif  // PLUGD_COMMON_PROTOCOL_H_
