// A small logging facade: levels, a replaceable sink, gRPC's logs routed in.
//
// Abseil 20220623 has no absl/log, so plugd logs through this. The default
// sink writes one line per message to stderr:
//
//   2026-11-25T10:48:35.123Z INFO  [host] launched plugin random (pid 4242)
//
// Usage:
//   PLUGD_LOG(INFO) << "launched plugin " << name;
//   plugd::log::Write(plugd::log::Level::kWarning, "random", line);
//   plugd::log::SetSink([](const plugd::log::Record& r) { ... });
#ifndef PLUGD_COMMON_LOG_H_
#define PLUGD_COMMON_LOG_H_

#include <functional>
#include <sstream>
#include <string>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace plugd::log {

enum class Level { kDebug = 0, kInfo = 1, kWarning = 2, kError = 3 };

// "DEBUG", "INFO", "WARN", "ERROR".
absl::string_view LevelName(Level level);

// Parses "debug", "info", "warn"/"warning", "error" (any case).
bool ParseLevel(absl::string_view text, Level* level);

// One log record. `source` says where it came from: "plugd" for plugd's own
// messages, "grpc" for gRPC's, a plugin's name for a plugin's output.
struct Record {
  absl::Time time;
  Level level;
  absl::string_view source;
  absl::string_view message;
};

using Sink = std::function<void(const Record&)>;

// Replaces the sink (thread-safe). An empty function restores the default
// stderr sink. The sink may be called from any thread, concurrently.
void SetSink(Sink sink);

// Records below `level` are dropped. Default: kInfo, or what PLUGD_LOG_LEVEL
// says in the environment.
void SetMinLevel(Level level);
Level MinLevel();

// Writes one record (if at or above the minimum level).
void Write(Level level, absl::string_view source, absl::string_view message);

// Formats a record the way the default sink does (without the newline).
std::string Format(const Record& record);

// Routes gRPC's own log output (gpr_log) through this facade, with source
// "grpc". Call once, early; calling it again does nothing.
void RouteGrpcLogs();

namespace internal {
class Message {
 public:
  explicit Message(Level level) : level_(level) {}
  ~Message() { Write(level_, "plugd", stream_.str()); }
  std::ostream& stream() { return stream_; }

 private:
  Level level_;
  std::ostringstream stream_;
};

// Turns PLUGD_LOG's stream expression into void, so that both arms of its
// conditional have one type; `&` binds looser than `<<`.
struct Voidify {
  void operator&(std::ostream& /*unused*/) {}
};
}  // namespace internal
}  // namespace plugd::log

#define PLUGD_LOG_LEVEL_DEBUG ::plugd::log::Level::kDebug
#define PLUGD_LOG_LEVEL_INFO ::plugd::log::Level::kInfo
#define PLUGD_LOG_LEVEL_WARNING ::plugd::log::Level::kWarning
#define PLUGD_LOG_LEVEL_ERROR ::plugd::log::Level::kError

// PLUGD_LOG(INFO) << "text";  Levels: DEBUG, INFO, WARNING, ERROR.
// One expression (as Abseil's LOG), not an if/else: `if (x) PLUGD_LOG(INFO)
// << ...; else ...` binds as written, and compilers see no ambiguous else.
// Below the minimum level nothing in the `<<` chain is evaluated (a comma
// after the chain would end the conditional: do not write one).
#define PLUGD_LOG(level)                               \
  (PLUGD_LOG_LEVEL_##level < ::plugd::log::MinLevel()) \
      ? (void)0                                        \
      : ::plugd::log::internal::Voidify() &            \
            ::plugd::log::internal::Message(PLUGD_LOG_LEVEL_##level).stream()

#endif  // PLUGD_COMMON_LOG_H_
