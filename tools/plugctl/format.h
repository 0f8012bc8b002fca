// Text and JSON rendering of the broker's admin API messages for plugctl.
//
// Pure functions (the current time is a parameter), so they are unit tested
// without a broker:
//
//   std::string table = plugd::plugctl::FormatPluginList(response,
//   absl::Now()); std::string line = plugd::plugctl::FormatEvent(event);
//   std::string json = plugd::plugctl::ToJson(status);  // snake_case keys
#ifndef PLUGD_TOOLS_PLUGCTL_FORMAT_H_
#define PLUGD_TOOLS_PLUGCTL_FORMAT_H_

#include <google/protobuf/duration.pb.h>
#include <google/protobuf/message.h>
#include <google/protobuf/timestamp.pb.h>

#include <string>
#include <vector>

#include "absl/time/time.h"
#include "plugd/v1/broker.pb.h"

namespace plugd::plugctl {

// "stopped", "starting", "ready", "unhealthy", "backing-off", "failed",
// "stopping"; "unknown" for anything else.
std::string StateName(plugd::v1::PluginState state);

// "starting", "ready", "unhealthy", "exited", "backing-off", "failed",
// "stopped", "start-failed", "stopping", "healthy"; "unknown" otherwise.
std::string EventTypeName(plugd::v1::EventType type);

// "always", "on-failure", "never"; "always" for UNSPECIFIED.
std::string RestartPolicyName(plugd::v1::RestartPolicy policy);

// "stdout", "stderr"; "-" when unspecified.
std::string StreamName(plugd::v1::LogStream stream);

// A duration for people, two units at most: "0s", "3s", "5m12s", "2h03m",
// "4d01h". Negative durations count as zero; fractions of seconds are
// dropped.
std::string FormatUptime(absl::Duration d);

// A short duration with sub-second precision, e.g. "1.5s", "250ms".
std::string FormatDelay(const google::protobuf::Duration& d);

// UTC, RFC 3339 with milliseconds: "2026-11-25T10:48:35.123Z"; "-" if unset
// (seconds and nanos both zero).
std::string FormatTime(const google::protobuf::Timestamp& t);

// Left-aligned columns two spaces apart, widths from the content, no
// trailing spaces; one line per row (the first row is the header).
std::string FormatTable(const std::vector<std::vector<std::string>>& rows);

// The `list` table: NAME STATE PID UPTIME RESTARTS ADDRESS VERSION. Uptime
// and pid are "-" when the plugin is not running; empty fields are "-".
std::string FormatPluginList(const plugd::v1::ListPluginsResponse& list,
                             absl::Time now);

// The `status` output: one "key: value" line per field, keys aligned.
std::string FormatPluginStatus(const plugd::v1::PluginStatus& status,
                               absl::Time now);

// One line for start/stop/restart: "random: ready (pid 4242)".
std::string FormatStateLine(const plugd::v1::PluginStatus& status);

// The `describe` output: name, version, protocol, pid, services, functions
// with their parameters and help.
std::string FormatDescribe(const plugd::v1::DescribeResponse& describe);

// One `events` line: "TIME PLUGIN TYPE details" (details: pid, exit text,
// backoff delay, message; absent parts left out).
std::string FormatEvent(const plugd::v1::Event& event);

// One `logs` line: "TIME LEVEL [stream] text".
std::string FormatLogLine(const plugd::v1::LogLine& line);

// A message as compact, single-line JSON: proto field names (snake_case),
// fields with default values included, enums by name, 64-bit integers as
// strings and timestamps as RFC 3339 strings (the proto3 JSON mapping).
std::string ToJson(const google::protobuf::Message& message);

}  // namespace plugd::plugctl

#endif  // PLUGD_TOOLS_PLUGCTL_FORMAT_H_
