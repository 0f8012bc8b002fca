#include "plugd/common/log.h"

#include <grpc/support/log.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"

namespace plugd::log {
namespace {

Level InitialLevel() {
  const char* env = std::getenv("PLUGD_LOG_LEVEL");
  Level level = Level::kInfo;
  if (env != nullptr) ParseLevel(env, &level);
  return level;
}

std::atomic<int>& MinLevelStore() {
  static std::atomic<int> level{static_cast<int>(InitialLevel())};
  return level;
}

struct SinkHolder {
  absl::Mutex mu;
  Sink sink ABSL_GUARDED_BY(mu);
};

SinkHolder& Holder() {
  static auto* holder = new SinkHolder;  // never destroyed: used at exit
  return *holder;
}

void DefaultSink(const Record& record) {
  std::string line = Format(record);
  line.push_back('\n');
  // One write(2) per line keeps lines from different threads whole.
  ssize_t ignored = ::write(STDERR_FILENO, line.data(), line.size());
  (void)ignored;
}

void GrpcLogFunction(gpr_log_func_args* args) {
  Level level = Level::kInfo;
  switch (args->severity) {
    case GPR_LOG_SEVERITY_DEBUG:
      level = Level::kDebug;
      break;
    case GPR_LOG_SEVERITY_INFO:
      level = Level::kInfo;
      break;
    case GPR_LOG_SEVERITY_ERROR:
      level = Level::kError;
      break;
  }
  Write(level, "grpc", args->message);
}

}  // namespace

absl::string_view LevelName(Level level) {
  switch (level) {
    case Level::kDebug:
      return "DEBUG";
    case Level::kInfo:
      return "INFO";
    case Level::kWarning:
      return "WARN";
    case Level::kError:
      return "ERROR";
  }
  return "INFO";
}

bool ParseLevel(absl::string_view text, Level* level) {
  std::string lower = absl::AsciiStrToLower(absl::StripAsciiWhitespace(text));
  if (lower == "debug" || lower == "trace") {
    *level = Level::kDebug;
  } else if (lower == "info" || lower == "notice") {
    *level = Level::kInfo;
  } else if (lower == "warn" || lower == "warning") {
    *level = Level::kWarning;
  } else if (lower == "error" || lower == "err" || lower == "fatal" ||
             lower == "critical") {
    *level = Level::kError;
  } else {
    return false;
  }
  return true;
}

void SetSink(Sink sink) {
  SinkHolder& holder = Holder();
  absl::MutexLock lock(&holder.mu);
  holder.sink = std::move(sink);
}

void SetMinLevel(Level level) {
  MinLevelStore().store(static_cast<int>(level), std::memory_order_relaxed);
}

Level MinLevel() {
  return static_cast<Level>(MinLevelStore().load(std::memory_order_relaxed));
}

std::string Format(const Record& record) {
  return absl::StrCat(absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", record.time,
                                       absl::UTCTimeZone()),
                      " ", absl::StrFormat("%-5s", LevelName(record.level)),
                      " [", record.source, "] ", record.message);
}

void Write(Level level, absl::string_view source, absl::string_view message) {
  if (level < MinLevel()) return;
  Record record{absl::Now(), level, source, message};
  SinkHolder& holder = Holder();
  Sink sink;
  {
    absl::MutexLock lock(&holder.mu);
    sink = holder.sink;
  }
  if (sink) {
    sink(record);
  } else {
    DefaultSink(record);
  }
}

void RouteGrpcLogs() {
  static std::atomic<bool> done{false};
  if (done.exchange(true)) return;
  gpr_set_log_function(GrpcLogFunction);
}

}  // namespace plugd::log
