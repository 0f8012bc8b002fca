// Capturing a plugin's output: line splitting with bounds, a bounded ring of
// recent lines, level detection, forwarding to a log sink, drop counting.
//
// A plugin's stderr, and its stdout after the handshake line, are read by the
// loop thread as they come (pipes are always drained, so a plugin never blocks
// on a full pipe), cut into lines of at most max_line_bytes, and
//   * appended to a ring buffer of at most ring_bytes (oldest lines dropped),
//   * passed to `sink` (default: plugd's log, source = the plugin's name),
//     unless the plugin exceeds forward_bytes_per_second, in which case lines
//     are dropped from forwarding (still kept in the ring) and counted.
#ifndef PLUGD_BROKER_OUTPUT_H_
#define PLUGD_BROKER_OUTPUT_H_

#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "plugd/common/log.h"

namespace plugd::broker {

enum class OutputStream { kStdout, kStderr };

// One captured line.
struct OutputLine {
  absl::Time time;
  OutputStream stream = OutputStream::kStderr;
  // The level: from a JSON line's "level"/"@level" field, or a leading
  // "[LEVEL]" / "LEVEL:" tag; else kInfo.
  log::Level level = log::Level::kInfo;
  // The text, without the newline; at most max_line_bytes.
  std::string text;
  // True when the line was longer than max_line_bytes and was cut.
  bool truncated = false;
};

struct OutputOptions {
  // Longest line kept; longer lines are cut and marked truncated. Default 16
  // KiB.
  size_t max_line_bytes = 16 * 1024;
  // Most bytes of text the ring keeps (oldest lines go first). Default 1 MiB.
  size_t ring_bytes = 1 << 20;
  // Most bytes per second forwarded to the sink (a token bucket with one
  // second of burst); the rest is counted as dropped. 0 means no limit.
  // Default 256 KiB/s.
  size_t forward_bytes_per_second = 256 * 1024;
  // Where lines go, besides the ring. Called on the loop thread. Default:
  // plugd::log::Write(line.level, plugin name, line.text).
  std::function<void(const std::string& plugin, const OutputLine& line)> sink;
};

// Cuts a byte stream into lines of at most `max_line_bytes`.
class LineSplitter {
 public:
  explicit LineSplitter(size_t max_line_bytes);
  // Feeds bytes; calls `emit(text, truncated)` for every complete line.
  // A line over the limit is emitted once, cut, with truncated = true; the
  // rest of it up to the newline is discarded.
  void Feed(absl::string_view data,
            const std::function<void(absl::string_view, bool)>& emit);
  // Emits what is left as a last line (at EOF), if anything.
  void Flush(const std::function<void(absl::string_view, bool)>& emit);

 private:
  size_t max_line_bytes_;
  std::string partial_;
  bool discarding_ = false;
};

// Detects a line's level: JSON {"level": "warn", ...} (also "@level",
// "severity"), or a "[WARN] ..." / "WARN: ..." prefix. Returns `fallback`
// when the line says nothing.
log::Level DetectLevel(absl::string_view line, log::Level fallback);

// The per-plugin output record: ring buffer plus counters. Thread-safe.
class OutputCapture {
 public:
  OutputCapture(std::string plugin_name, OutputOptions options);

  // Records one line (ring + sink, subject to the forwarding limit).
  void Add(OutputLine line);

  // The last `n` lines in the ring (all when n == 0), oldest first.
  std::vector<OutputLine> Tail(size_t n = 0) const;
  // Lines ever seen, lines evicted from the ring, lines not forwarded to the
  // sink because of the rate limit, lines cut at max_line_bytes.
  uint64_t lines_total() const;
  uint64_t lines_evicted() const;
  uint64_t lines_rate_dropped() const;
  uint64_t lines_truncated() const;
  // Current bytes of text in the ring (<= ring_bytes).
  size_t ring_bytes() const;

  // Subscribes to new lines (called on the loop thread after Add). Returns an
  // id for Unsubscribe.
  int Subscribe(std::function<void(const OutputLine&)> callback);
  void Unsubscribe(int id);

 private:
  const std::string plugin_name_;
  const OutputOptions options_;
  mutable absl::Mutex mu_;
  std::deque<OutputLine> ring_ ABSL_GUARDED_BY(mu_);
  size_t ring_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t total_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t evicted_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t rate_dropped_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t truncated_ ABSL_GUARDED_BY(mu_) = 0;
  double tokens_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Time last_refill_ ABSL_GUARDED_BY(mu_);
  uint64_t dropped_since_report_ ABSL_GUARDED_BY(mu_) = 0;
  int next_id_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<std::pair<int, std::function<void(const OutputLine&)>>>
      subscribers_ ABSL_GUARDED_BY(mu_);
};

}  // namespace plugd::broker

#endif  // PLUGD_BROKER_OUTPUT_H_
