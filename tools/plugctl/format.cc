#include "format.h"

#include <google/protobuf/util/json_util.h>
#include <google/protobuf/util/time_util.h>

#include <algorithm>
#include <cstdint>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "plugd/common/json.h"

namespace plugd::plugctl {
namespace {

using plugd::v1::EventType;
using plugd::v1::LogStream;
using plugd::v1::PluginState;
using plugd::v1::RestartPolicy;

bool IsSet(const google::protobuf::Timestamp& t) {
  return t.seconds() != 0 || t.nanos() != 0;
}

absl::Time ToAbslTime(const google::protobuf::Timestamp& t) {
  return absl::FromUnixSeconds(t.seconds()) + absl::Nanoseconds(t.nanos());
}

std::string OrDash(const std::string& s) { return s.empty() ? "-" : s; }

bool IsRunning(const plugd::v1::PluginStatus& s) {
  return s.pid() != 0 && IsSet(s.started_at());
}

// Why the broker killed a plugin (ExitInfo.killed_for), for people.
std::string KilledForText(const std::string& killed_for) {
  if (killed_for == "liveness") {
    return "by the broker: no answer to health checks (liveness_timeout)";
  }
  if (killed_for == "unhealthy") {
    return "by the broker: NOT_SERVING for unhealthy_timeout";
  }
  if (killed_for == "start_timeout") {
    return "by the broker: no answer to the connect check (start_timeout)";
  }
  return absl::StrCat("by the broker (", killed_for, ")");
}

std::string ExitText(const plugd::v1::ExitInfo& exit) {
  std::string text = exit.text();
  if (text.empty()) {
    text = exit.signaled() ? absl::StrCat("killed by signal ", exit.signal())
                           : absl::StrCat("exited with code ", exit.code());
  }
  if (!exit.killed_for().empty()) {
    absl::StrAppend(&text, " ", KilledForText(exit.killed_for()));
  }
  return text;
}

std::string KindName(plugd::v1::ValueKind kind) {
  switch (kind) {
    case plugd::v1::VALUE_KIND_NUMBER:
      return "number";
    case plugd::v1::VALUE_KIND_STRING:
      return "string";
    case plugd::v1::VALUE_KIND_BOOL:
      return "bool";
    case plugd::v1::VALUE_KIND_LIST:
      return "list";
    case plugd::v1::VALUE_KIND_STRUCT:
      return "struct";
    default:
      return "any";
  }
}

}  // namespace

std::string StateName(PluginState state) {
  switch (state) {
    case plugd::v1::PLUGIN_STATE_STOPPED:
      return "stopped";
    case plugd::v1::PLUGIN_STATE_STARTING:
      return "starting";
    case plugd::v1::PLUGIN_STATE_READY:
      return "ready";
    case plugd::v1::PLUGIN_STATE_UNHEALTHY:
      return "unhealthy";
    case plugd::v1::PLUGIN_STATE_BACKING_OFF:
      return "backing-off";
    case plugd::v1::PLUGIN_STATE_FAILED:
      return "failed";
    case plugd::v1::PLUGIN_STATE_STOPPING:
      return "stopping";
    default:
      return "unknown";
  }
}

std::string EventTypeName(EventType type) {
  switch (type) {
    case plugd::v1::EVENT_TYPE_STARTING:
      return "starting";
    case plugd::v1::EVENT_TYPE_READY:
      return "ready";
    case plugd::v1::EVENT_TYPE_UNHEALTHY:
      return "unhealthy";
    case plugd::v1::EVENT_TYPE_EXITED:
      return "exited";
    case plugd::v1::EVENT_TYPE_BACKING_OFF:
      return "backing-off";
    case plugd::v1::EVENT_TYPE_FAILED:
      return "failed";
    case plugd::v1::EVENT_TYPE_STOPPED:
      return "stopped";
    case plugd::v1::EVENT_TYPE_START_FAILED:
      return "start-failed";
    case plugd::v1::EVENT_TYPE_STOPPING:
      return "stopping";
    case plugd::v1::EVENT_TYPE_HEALTHY:
      return "healthy";
    default:
      return "unknown";
  }
}

std::string RestartPolicyName(RestartPolicy policy) {
  switch (policy) {
    case plugd::v1::RESTART_POLICY_ON_FAILURE:
      return "on-failure";
    case plugd::v1::RESTART_POLICY_NEVER:
      return "never";
    default:
      return "always";
  }
}

std::string StreamName(LogStream stream) {
  switch (stream) {
    case plugd::v1::LOG_STREAM_STDOUT:
      return "stdout";
    case plugd::v1::LOG_STREAM_STDERR:
      return "stderr";
    default:
      return "-";
  }
}

std::string FormatUptime(absl::Duration d) {
  int64_t s = absl::ToInt64Seconds(std::max(d, absl::ZeroDuration()));
  constexpr int64_t kMinute = 60, kHour = 60 * kMinute, kDay = 24 * kHour;
  if (s < kMinute) return absl::StrCat(s, "s");
  if (s < kHour) return absl::StrFormat("%dm%02ds", s / kMinute, s % kMinute);
  if (s < kDay) {
    return absl::StrFormat("%dh%02dm", s / kHour, s % kHour / kMinute);
  }
  return absl::StrFormat("%dd%02dh", s / kDay, s % kDay / kHour);
}

std::string FormatDelay(const google::protobuf::Duration& d) {
  return absl::FormatDuration(absl::Seconds(d.seconds()) +
                              absl::Nanoseconds(d.nanos()));
}

std::string FormatTime(const google::protobuf::Timestamp& t) {
  if (!IsSet(t)) return "-";
  return absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", ToAbslTime(t),
                          absl::UTCTimeZone());
}

std::string FormatTable(const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> widths;
  for (const auto& row : rows) {
    if (widths.size() < row.size()) widths.resize(row.size(), 0);
    for (size_t i = 0; i < row.size(); ++i) {
      widths[i] = std::max(widths[i], row[i].size());
    }
  }
  std::string out;
  for (const auto& row : rows) {
    std::string line;
    for (size_t i = 0; i < row.size(); ++i) {
      line += row[i];
      if (i + 1 < row.size()) {
        line.append(widths[i] - row[i].size() + 2, ' ');
      }
    }
    // A last cell that is empty would leave padding behind.
    line.erase(line.find_last_not_of(' ') + 1);
    absl::StrAppend(&out, line, "\n");
  }
  return out;
}

std::string FormatPluginList(const plugd::v1::ListPluginsResponse& list,
                             absl::Time now) {
  std::vector<std::vector<std::string>> rows = {
      {"NAME", "STATE", "PID", "UPTIME", "RESTARTS", "ADDRESS", "VERSION"}};
  for (const plugd::v1::PluginStatus& s : list.plugins()) {
    const bool running = IsRunning(s);
    rows.push_back({
        s.name(),
        StateName(s.state()),
        running ? absl::StrCat(s.pid()) : "-",
        running ? FormatUptime(now - ToAbslTime(s.started_at())) : "-",
        absl::StrCat(s.restarts()),
        OrDash(s.address()),
        OrDash(s.version()),
    });
  }
  return FormatTable(rows);
}

std::string FormatPluginStatus(const plugd::v1::PluginStatus& s,
                               absl::Time now) {
  const bool running = IsRunning(s);
  std::string next_start = "-";
  if (IsSet(s.next_start_at())) {
    absl::Duration in = ToAbslTime(s.next_start_at()) - now;
    next_start = absl::StrCat(FormatTime(s.next_start_at()), " (in ",
                              FormatUptime(in), ")");
  }
  std::vector<std::pair<std::string, std::string>> fields = {
      {"name", s.name()},
      {"state", StateName(s.state())},
      {"pid", running ? absl::StrCat(s.pid()) : "-"},
      {"started", running ? FormatTime(s.started_at()) : "-"},
      {"uptime",
       running ? FormatUptime(now - ToAbslTime(s.started_at())) : "-"},
      {"restarts", absl::StrCat(s.restarts())},
      {"restart policy", RestartPolicyName(s.restart_policy())},
      {"address",
       s.announced_address().empty()
           ? OrDash(s.address())
           : absl::StrCat(s.address(), " -> ", s.announced_address())},
      {"protocol",
       absl::StrCat(
           s.protocol_version() == 0 ? "-" : absl::StrCat(s.protocol_version()),
           s.go_plugin() ? " (go-plugin)" : "")},
      {"version", OrDash(s.version())},
      {"command", OrDash(absl::StrJoin(s.command(), " "))},
      {"last exit", s.has_last_exit() ? ExitText(s.last_exit()) : "-"},
      {"last error", OrDash(s.last_error())},
      {"next start", next_start},
      {"log lines dropped", absl::StrCat(s.log_lines_dropped())},
  };
  size_t width = 0;
  for (const auto& [key, value] : fields) width = std::max(width, key.size());
  std::string out;
  for (const auto& [key, value] : fields) {
    absl::StrAppend(&out, key, ":", std::string(width - key.size() + 1, ' '),
                    value, "\n");
  }
  return out;
}

std::string FormatStateLine(const plugd::v1::PluginStatus& s) {
  std::string out = absl::StrCat(s.name(), ": ", StateName(s.state()));
  if (s.pid() != 0) absl::StrAppend(&out, " (pid ", s.pid(), ")");
  return out;
}

std::string FormatDescribe(const plugd::v1::DescribeResponse& d) {
  std::string out;
  absl::StrAppend(&out, "name:     ", OrDash(d.name()), "\n");
  absl::StrAppend(&out, "version:  ", OrDash(d.version()), "\n");
  absl::StrAppend(&out, "protocol: ", d.protocol_version(), " (core ",
                  d.core_protocol_version(), ")\n");
  absl::StrAppend(
      &out, "pid:      ", d.pid() == 0 ? "-" : absl::StrCat(d.pid()), "\n");
  absl::StrAppend(&out, "services:", d.services().empty() ? " -" : "", "\n");
  for (const std::string& service : d.services()) {
    absl::StrAppend(&out, "  ", service, "\n");
  }
  absl::StrAppend(&out, "functions:", d.functions().empty() ? " -" : "", "\n");
  for (const plugd::v1::FunctionInfo& f : d.functions()) {
    std::vector<std::string> params;
    for (const plugd::v1::Parameter& p : f.params()) {
      params.push_back(absl::StrCat(p.name(), p.variadic() ? "..." : "",
                                    p.optional() ? "?" : "", ": ",
                                    KindName(p.kind())));
    }
    absl::StrAppend(&out, "  ", f.name(), "(", absl::StrJoin(params, ", "),
                    ")\n");
    for (absl::string_view line : absl::StrSplit(f.help(), '\n')) {
      if (!line.empty()) absl::StrAppend(&out, "      ", line, "\n");
    }
    for (const plugd::v1::Parameter& p : f.params()) {
      if (!p.help().empty()) {
        absl::StrAppend(&out, "      ", p.name(), ": ", p.help(), "\n");
      }
    }
  }
  return out;
}

std::string FormatEvent(const plugd::v1::Event& e) {
  std::vector<std::string> details;
  if (e.pid() != 0) details.push_back(absl::StrCat("pid ", e.pid()));
  if (e.has_exit()) details.push_back(ExitText(e.exit()));
  if (e.has_delay()) {
    details.push_back(absl::StrCat("next start in ", FormatDelay(e.delay())));
  }
  if (!e.message().empty()) details.push_back(e.message());
  std::string out = absl::StrCat(FormatTime(e.time()), " ", OrDash(e.plugin()),
                                 " ", EventTypeName(e.type()));
  if (!details.empty())
    absl::StrAppend(&out, " ", absl::StrJoin(details, ", "));
  return out;
}

std::string FormatLogLine(const plugd::v1::LogLine& l) {
  std::string level =
      absl::AsciiStrToUpper(l.level().empty() ? "info" : l.level());
  if (level.size() < 5) level.append(5 - level.size(), ' ');
  std::string out = absl::StrCat(FormatTime(l.time()), " ", level, " [",
                                 StreamName(l.stream()), "] ", l.text());
  if (l.truncated()) absl::StrAppend(&out, " [truncated]");
  return out;
}

std::string ToJson(const google::protobuf::Message& message) {
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  options.always_print_primitive_fields = true;
  options.add_whitespace = false;
  absl::StatusOr<std::string> out = MessageToJson(message, options);
  if (!out.ok()) {
    // Only invalid data (e.g. an out-of-range timestamp) gets here.
    return absl::StrCat("{\"error\":\"cannot render as JSON\"}");
  }
  return *std::move(out);
}

}  // namespace plugd::plugctl
