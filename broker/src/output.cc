#include "plugd/broker/output.h"

#include <algorithm>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace plugd::broker {
namespace {

// Longest level word considered in a prefix or a JSON value ("critical").
constexpr size_t kMaxLevelWord = 10;

// Maps numeric levels (pino/bunyan: 10 trace ... 60 fatal).
bool NumericLevel(absl::string_view text, log::Level* level) {
  int n = 0;
  if (!absl::SimpleAtoi(text, &n)) return false;
  if (n >= 50) {
    *level = log::Level::kError;
  } else if (n >= 40) {
    *level = log::Level::kWarning;
  } else if (n >= 30) {
    *level = log::Level::kInfo;
  } else if (n >= 10) {
    *level = log::Level::kDebug;
  } else {
    return false;
  }
  return true;
}

// Finds `"key"` (case-insensitive) in `line` followed by `:` and a string or
// number value; returns the value.
bool FindJsonField(absl::string_view line, absl::string_view key,
                   absl::string_view* value) {
  size_t from = 0;
  while (from < line.size()) {
    size_t quote = line.find('"', from);
    if (quote == absl::string_view::npos) return false;
    size_t start = quote + 1;
    if (line.size() - start >= key.size() + 1 &&
        absl::EqualsIgnoreCase(line.substr(start, key.size()), key) &&
        line[start + key.size()] == '"') {
      size_t i = start + key.size() + 1;
      while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) ++i;
      if (i < line.size() && line[i] == ':') {
        ++i;
        while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) ++i;
        if (i < line.size() && line[i] == '"') {
          size_t end = line.find('"', i + 1);
          if (end == absl::string_view::npos) return false;
          *value = line.substr(i + 1, end - i - 1);
          return true;
        }
        size_t end = i;
        while (end < line.size() && absl::ascii_isdigit(line[end])) ++end;
        if (end > i) {
          *value = line.substr(i, end - i);
          return true;
        }
      }
    }
    from = start;
  }
  return false;
}

bool ParseLevelWord(absl::string_view word, log::Level* level) {
  if (word.empty() || word.size() > kMaxLevelWord) return false;
  return log::ParseLevel(word, level);
}

}  // namespace

LineSplitter::LineSplitter(size_t max_line_bytes)
    : max_line_bytes_(std::max<size_t>(max_line_bytes, 1)) {}

void LineSplitter::Feed(
    absl::string_view data,
    const std::function<void(absl::string_view, bool)>& emit) {
  while (!data.empty()) {
    size_t newline = data.find('\n');
    absl::string_view piece =
        newline == absl::string_view::npos ? data : data.substr(0, newline);
    bool complete = newline != absl::string_view::npos;
    data.remove_prefix(complete ? newline + 1 : data.size());

    if (discarding_) {
      // The rest of a line already emitted cut.
      if (complete) discarding_ = false;
      continue;
    }
    if (partial_.size() + piece.size() > max_line_bytes_) {
      size_t room = max_line_bytes_ - partial_.size();
      partial_.append(piece.data(), room);
      emit(partial_, true);
      partial_.clear();
      discarding_ = !complete;
      continue;
    }
    if (complete) {
      if (partial_.empty()) {
        emit(piece, false);
      } else {
        partial_.append(piece.data(), piece.size());
        emit(partial_, false);
        partial_.clear();
      }
    } else {
      partial_.append(piece.data(), piece.size());
    }
  }
}

void LineSplitter::Flush(
    const std::function<void(absl::string_view, bool)>& emit) {
  if (!partial_.empty()) emit(partial_, false);
  partial_.clear();
  discarding_ = false;
}

log::Level DetectLevel(absl::string_view line, log::Level fallback) {
  absl::string_view text = absl::StripLeadingAsciiWhitespace(line);
  if (text.empty()) return fallback;
  log::Level level = fallback;
  if (text.front() == '{') {
    for (absl::string_view key : {"level", "@level", "severity"}) {
      absl::string_view value;
      if (FindJsonField(text, key, &value) &&
          (ParseLevelWord(value, &level) || NumericLevel(value, &level))) {
        return level;
      }
    }
    return fallback;
  }
  if (text.front() == '[') {
    size_t close = text.find(']');
    if (close != absl::string_view::npos &&
        ParseLevelWord(text.substr(1, close - 1), &level)) {
      return level;
    }
    return fallback;
  }
  size_t colon = text.find(':');
  if (colon != absl::string_view::npos && colon <= kMaxLevelWord &&
      ParseLevelWord(text.substr(0, colon), &level)) {
    return level;
  }
  return fallback;
}

OutputCapture::OutputCapture(std::string plugin_name, OutputOptions options)
    : plugin_name_(std::move(plugin_name)), options_(std::move(options)) {
  tokens_ = static_cast<double>(options_.forward_bytes_per_second);
  last_refill_ = absl::Now();
}

void OutputCapture::Add(OutputLine line) {
  if (line.time == absl::InfinitePast() || line.time == absl::UnixEpoch()) {
    line.time = absl::Now();
  }
  bool forward = true;
  uint64_t report_dropped = 0;
  std::vector<std::function<void(const OutputLine&)>> subscribers;
  {
    absl::MutexLock lock(&mu_);
    ++total_;
    if (line.truncated) ++truncated_;

    // Forwarding limit: a token bucket holding at most one second's worth.
    if (options_.forward_bytes_per_second > 0) {
      const double rate =
          static_cast<double>(options_.forward_bytes_per_second);
      absl::Time now = line.time;
      if (now > last_refill_) {
        tokens_ = std::min(
            rate, tokens_ + absl::ToDoubleSeconds(now - last_refill_) * rate);
        last_refill_ = now;
      }
      const double cost = static_cast<double>(line.text.size() + 1);
      if (tokens_ >= cost) {
        tokens_ -= cost;
      } else {
        forward = false;
        ++rate_dropped_;
        ++dropped_since_report_;
      }
    }
    if (forward && dropped_since_report_ > 0) {
      report_dropped = std::exchange(dropped_since_report_, 0);
    }

    // The ring, bounded by bytes of text.
    ring_bytes_ += line.text.size();
    ring_.push_back(line);
    while (ring_bytes_ > options_.ring_bytes && !ring_.empty()) {
      ring_bytes_ -= ring_.front().text.size();
      ring_.pop_front();
      ++evicted_;
    }
    subscribers.reserve(subscribers_.size());
    for (const auto& [id, callback] : subscribers_) {
      subscribers.push_back(callback);
    }
  }

  auto sink = [this](const OutputLine& l) {
    if (options_.sink) {
      options_.sink(plugin_name_, l);
    } else {
      log::Write(l.level, plugin_name_, l.text);
    }
  };
  if (report_dropped > 0) {
    OutputLine report;
    report.time = line.time;
    report.stream = line.stream;
    report.level = log::Level::kWarning;
    report.text = absl::StrCat("plugin ", plugin_name_, ": ", report_dropped,
                               " log lines dropped (over "
                               "forward_bytes_per_second = ",
                               options_.forward_bytes_per_second, ")");
    sink(report);
  }
  if (forward) sink(line);
  for (const auto& callback : subscribers) callback(line);
}

std::vector<OutputLine> OutputCapture::Tail(size_t n) const {
  absl::MutexLock lock(&mu_);
  size_t count = (n == 0 || n > ring_.size()) ? ring_.size() : n;
  return std::vector<OutputLine>(ring_.end() - static_cast<ptrdiff_t>(count),
                                 ring_.end());
}

uint64_t OutputCapture::lines_total() const {
  absl::MutexLock lock(&mu_);
  return total_;
}

uint64_t OutputCapture::lines_evicted() const {
  absl::MutexLock lock(&mu_);
  return evicted_;
}

uint64_t OutputCapture::lines_rate_dropped() const {
  absl::MutexLock lock(&mu_);
  return rate_dropped_;
}

uint64_t OutputCapture::lines_truncated() const {
  absl::MutexLock lock(&mu_);
  return truncated_;
}

size_t OutputCapture::ring_bytes() const {
  absl::MutexLock lock(&mu_);
  return ring_bytes_;
}

int OutputCapture::Subscribe(std::function<void(const OutputLine&)> callback) {
  absl::MutexLock lock(&mu_);
  int id = ++next_id_;
  subscribers_.emplace_back(id, std::move(callback));
  return id;
}

void OutputCapture::Unsubscribe(int id) {
  absl::MutexLock lock(&mu_);
  subscribers_.erase(
      std::remove_if(subscribers_.begin(), subscribers_.end(),
                     [id](const auto& entry) { return entry.first == id; }),
      subscribers_.end());
}

}  // namespace plugd::broker
