// The result table of plugd-bench: one row per figure, with its baseline
// measured in the same run, the ratio, the target and whether it was met.
#ifndef PLUGD_BENCH_REPORT_H_
#define PLUGD_BENCH_REPORT_H_

#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace plugd::bench {

// How a ratio (figure / baseline) is judged against its target.
enum class Goal {
  kNone,         // information only
  kAtMost,       // ratio <= target
  kAtLeast,      // ratio >= target
  kValueAtMost,  // the figure itself <= target (absolute targets, e.g. 1 ms)
  kZero,         // the figure must be 0 (failed calls)
};

struct Row {
  std::string scenario;  // "1 latency", ...
  std::string figure;    // "plugd typed p50, 64 B"
  double value = 0;
  std::string unit;      // "us", "ms", "calls/s", "MiB", "Ir/call", ...
  std::string baseline;  // what value is compared with; empty: none
  double baseline_value = 0;
  Goal goal = Goal::kNone;
  double target = 0;
  std::string note;      // shown after the verdict
  bool skipped = false;  // the figure could not be measured (note says why)
};

// A measured row: `value` in `unit`, compared with `baseline` (empty: none)
// measured at `base`, judged against `target` when `goal` says so.
inline Row MakeRow(std::string unit, std::string scenario, std::string figure,
                   double value, std::string baseline = "", double base = 0,
                   Goal goal = Goal::kNone, double target = 0) {
  Row row;
  row.scenario = std::move(scenario);
  row.figure = std::move(figure);
  row.value = value;
  row.unit = std::move(unit);
  row.baseline = std::move(baseline);
  row.baseline_value = base;
  row.goal = goal;
  row.target = target;
  return row;
}

class Report {
 public:
  void Add(Row row);
  // A row that could not be measured; `why` is printed.
  void Skip(const std::string& scenario, const std::string& figure,
            const std::string& why);
  // Prints the row at once (progress), as "scenario: figure = value ...".
  static void PrintProgress(const Row& row);

  // The final table, in plain text and in Markdown.
  std::string Text() const;
  std::string Markdown() const;
  // Orders the rows by scenario number, keeping the order within each.
  void SortByScenario();
  int missed() const;
  int met() const;
  // Rows that could not be measured (a missing tool, a failed start), and
  // target rows without a baseline figure to compare ("n/a"): they count as
  // neither met nor missed, so the summary names them.
  int skipped() const;
  const std::vector<Row>& rows() const { return rows_; }

 private:
  std::vector<Row> rows_;
};

// "≤ 1.05×", "≥ 1.0×", "≤ 1 ms", "0", "" for a row.
std::string TargetText(const Row& row);
// "met", "MISSED", "" (no target), "skipped".
std::string Verdict(const Row& row);
std::optional<double> Ratio(const Row& row);

}  // namespace plugd::bench

#endif  // PLUGD_BENCH_REPORT_H_
