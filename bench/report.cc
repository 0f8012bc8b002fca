#include "report.h"

#include <algorithm>
#include <cstdio>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

namespace plugd::bench {
namespace {

std::string Number(double v) {
  if (v == 0) return "0";
  double a = v < 0 ? -v : v;
  if (a >= 1000) return absl::StrFormat("%.0f", v);
  if (a >= 100) return absl::StrFormat("%.1f", v);
  if (a >= 10) return absl::StrFormat("%.2f", v);
  return absl::StrFormat("%.3g", v);
}

std::string ValueText(double v, const std::string& unit) {
  return unit.empty() ? Number(v) : absl::StrCat(Number(v), " ", unit);
}

std::string TargetNumber(double v) { return absl::StrFormat("%g", v); }

}  // namespace

std::optional<double> Ratio(const Row& row) {
  if (row.skipped || row.baseline.empty() || row.baseline_value == 0) {
    return std::nullopt;
  }
  return row.value / row.baseline_value;
}

std::string TargetText(const Row& row) {
  switch (row.goal) {
    case Goal::kNone:
      return "";
    case Goal::kAtMost:
      return absl::StrCat("<= ", TargetNumber(row.target), "x");
    case Goal::kAtLeast:
      return absl::StrCat(">= ", TargetNumber(row.target), "x");
    case Goal::kValueAtMost:
      return absl::StrCat("<= ", TargetNumber(row.target), " ", row.unit);
    case Goal::kZero:
      return "0";
  }
  return "";
}

std::string Verdict(const Row& row) {
  if (row.skipped) return "skipped";
  std::optional<double> ratio = Ratio(row);
  switch (row.goal) {
    case Goal::kNone:
      return "";
    case Goal::kAtMost:
      if (!ratio) return "n/a";
      return *ratio <= row.target ? "met" : "MISSED";
    case Goal::kAtLeast:
      if (!ratio) return "n/a";
      return *ratio >= row.target ? "met" : "MISSED";
    case Goal::kValueAtMost:
      return row.value <= row.target ? "met" : "MISSED";
    case Goal::kZero:
      return row.value == 0 ? "met" : "MISSED";
  }
  return "";
}

void Report::Add(Row row) {
  PrintProgress(row);
  rows_.push_back(std::move(row));
}

void Report::Skip(const std::string& scenario, const std::string& figure,
                  const std::string& why) {
  Row row;
  row.scenario = scenario;
  row.figure = figure;
  row.skipped = true;
  row.note = why;
  Add(std::move(row));
}

void Report::PrintProgress(const Row& row) {
  std::string line = absl::StrCat("  [", row.scenario, "] ", row.figure, ": ");
  if (row.skipped) {
    absl::StrAppend(&line, "skipped: ", row.note);
  } else {
    absl::StrAppend(&line, ValueText(row.value, row.unit));
    if (std::optional<double> r = Ratio(row)) {
      absl::StrAppend(&line, " vs ", row.baseline, " ",
                      ValueText(row.baseline_value, row.unit), " = ",
                      absl::StrFormat("%.2f", *r), "x");
    }
    if (row.goal != Goal::kNone) {
      absl::StrAppend(&line, " (target ", TargetText(row), ": ", Verdict(row),
                      ")");
    }
  }
  std::printf("%s\n", line.c_str());
  std::fflush(stdout);
}

std::string Report::Text() const {
  std::vector<std::vector<std::string>> cells;
  cells.push_back({"scenario", "figure", "value", "baseline", "base value",
                   "ratio", "target", "verdict"});
  for (const Row& row : rows_) {
    std::optional<double> r = Ratio(row);
    cells.push_back({row.scenario, row.figure,
                     row.skipped ? "-" : ValueText(row.value, row.unit),
                     row.baseline,
                     row.baseline.empty() || row.skipped
                         ? ""
                         : ValueText(row.baseline_value, row.unit),
                     r ? absl::StrFormat("%.2fx", *r) : "", TargetText(row),
                     row.skipped ? "skipped: " + row.note : Verdict(row)});
  }
  std::vector<size_t> width(cells[0].size(), 0);
  for (const auto& line : cells) {
    for (size_t i = 0; i + 1 < line.size(); ++i) {
      width[i] = std::max(width[i], line[i].size());
    }
  }
  std::string out;
  for (size_t n = 0; n < cells.size(); ++n) {
    const auto& line = cells[n];
    std::string text;
    for (size_t i = 0; i < line.size(); ++i) {
      std::string cell = line[i];
      if (i + 1 < line.size()) cell.resize(width[i], ' ');
      absl::StrAppend(&text, cell, i + 1 < line.size() ? "  " : "");
    }
    while (!text.empty() && text.back() == ' ') text.pop_back();
    absl::StrAppend(&out, text, "\n");
    if (n == 0) {
      size_t total = 0;
      for (size_t w : width) total += w + 2;
      absl::StrAppend(&out, std::string(total + 6, '-'), "\n");
    }
  }
  return out;
}

std::string Report::Markdown() const {
  std::string out =
      "| scenario | figure | value | baseline | baseline value | ratio | "
      "target | verdict |\n|---|---|---|---|---|---|---|---|\n";
  for (const Row& row : rows_) {
    std::optional<double> r = Ratio(row);
    std::string verdict = row.skipped ? "skipped: " + row.note : Verdict(row);
    if (!row.skipped && !row.note.empty()) {
      absl::StrAppend(&verdict, verdict.empty() ? "" : " — ", row.note);
    }
    absl::StrAppend(&out, "| ", row.scenario, " | ", row.figure, " | ",
                    row.skipped ? "-" : ValueText(row.value, row.unit), " | ",
                    row.baseline, " | ",
                    row.baseline.empty() || row.skipped
                        ? ""
                        : ValueText(row.baseline_value, row.unit),
                    " | ", r ? absl::StrFormat("%.2f×", *r) : "", " | ",
                    TargetText(row), " | ", verdict, " |\n");
  }
  return out;
}

void Report::SortByScenario() {
  std::stable_sort(rows_.begin(), rows_.end(), [](const Row& a, const Row& b) {
    return a.scenario.substr(0, 1) < b.scenario.substr(0, 1);
  });
}

int Report::missed() const {
  return static_cast<int>(
      std::count_if(rows_.begin(), rows_.end(),
                    [](const Row& r) { return Verdict(r) == "MISSED"; }));
}

int Report::met() const {
  return static_cast<int>(
      std::count_if(rows_.begin(), rows_.end(),
                    [](const Row& r) { return Verdict(r) == "met"; }));
}

int Report::skipped() const {
  return static_cast<int>(std::count_if(
      rows_.begin(), rows_.end(),
      [](const Row& r) { return r.skipped || Verdict(r) == "n/a"; }));
}

}  // namespace plugd::bench
