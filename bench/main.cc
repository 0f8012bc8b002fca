// plugd-bench: runs the benchmark scenarios of docs/benchmarks.md and
// prints one table: each figure, its baseline measured in the same run, the
// ratio, the target and whether it was met.
//
//   build/bin/plugd-bench                 everything (~5-10 minutes)
//   BENCH_QUICK=1 build/bin/plugd-bench   a ~1 minute smoke (also --quick)
//   build/bin/plugd-bench --only=calls,callgrind --markdown=table.md
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <set>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "bench.h"
#include "plugd/common/log.h"
#include "plugd/common/poll_strategy.h"

namespace {

constexpr char kUsage[] =
    "usage: plugd-bench [--quick] [--only=GROUP,...] [--markdown=FILE]\n"
    "  --quick          few calls and repetitions (also BENCH_QUICK=1)\n"
    "  --smoke          like --quick, shorter still (the ctest entry)\n"
    "  --only=GROUPS    calls, peer, coldstart, recovery, scale, callgrind\n"
    "  --markdown=FILE  also write the table as Markdown\n"
    "  --grpc-poll-strategy=poll|epoll1\n"
    "                   gRPC's poll strategy for every client of the bench\n"
    "                   (HostOptions::grpc_poll_strategy; default: gRPC's)\n";

std::string FirstLine(const std::string& file, const std::string& prefix) {
  std::ifstream in(file);
  std::string line;
  while (std::getline(in, line)) {
    if (absl::StartsWith(line, prefix)) {
      return std::string(absl::StripAsciiWhitespace(line.substr(
          line.find(':') == std::string::npos ? 0 : line.find(':') + 1)));
    }
  }
  return "";
}

std::string LoadAverage() {
  std::ifstream in("/proc/loadavg");
  std::string a, b, c;
  in >> a >> b >> c;
  return absl::StrCat(a, " ", b, " ", c);
}

}  // namespace

int main(int argc, char** argv) {
  signal(SIGPIPE, SIG_IGN);
  plugd::bench::Options options;
  const char* quick = std::getenv("BENCH_QUICK");
  options.quick =
      quick != nullptr && *quick != '\0' && std::string(quick) != "0";
  std::string callgrind_client;
  int calls = 1000;
  std::string broker;
  for (int i = 1; i < argc; ++i) {
    absl::string_view arg = argv[i];
    if (arg == "--quick") {
      options.quick = true;
    } else if (arg == "--smoke") {
      options.quick = options.smoke = true;
    } else if (absl::ConsumePrefix(&arg, "--only=")) {
      for (absl::string_view g : absl::StrSplit(arg, ',', absl::SkipEmpty())) {
        options.only.insert(std::string(g));
      }
    } else if (absl::ConsumePrefix(&arg, "--markdown=")) {
      options.markdown_file = std::string(arg);
    } else if (absl::ConsumePrefix(&arg, "--grpc-poll-strategy=")) {
      options.grpc_poll_strategy = std::string(arg);
    } else if (absl::ConsumePrefix(&arg, "--callgrind-client=")) {
      callgrind_client = std::string(arg);
    } else if (absl::ConsumePrefix(&arg, "--broker=")) {
      broker = std::string(arg);
    } else if (absl::ConsumePrefix(&arg, "--calls=")) {
      if (!absl::SimpleAtoi(arg, &calls) || calls < 1) {
        std::fprintf(stderr, "plugd-bench: --calls wants a positive number\n");
        return 2;
      }
    } else if (arg == "--help" || arg == "-h") {
      std::printf("%s", kUsage);
      return 0;
    } else {
      std::fprintf(stderr, "plugd-bench: unknown argument \"%s\"\n%s", argv[i],
                   kUsage);
      return 2;
    }
  }
  for (const std::string& g : options.only) {
    static const std::set<std::string> kGroups = {
        "calls", "peer", "coldstart", "recovery", "scale", "callgrind"};
    if (!kGroups.count(g)) {
      std::fprintf(stderr, "plugd-bench: unknown group \"%s\"\n%s", g.c_str(),
                   kUsage);
      return 2;
    }
  }
  // Plugins' and plugd's own log lines would drown the table.
  if (std::getenv("PLUGD_BENCH_DEBUG") == nullptr)
    plugd::log::SetMinLevel(plugd::log::Level::kError);
  // Every client of the bench, plugd's and the bare gRPC baselines alike,
  // runs with the poll strategy asked for, as they share the host's malloc
  // tuning: one process, one setting (plugins and servers keep gRPC's).
  // Before anything here uses gRPC.
  if (!options.grpc_poll_strategy.empty()) {
    const absl::StatusOr<plugd::PollStrategyChoice> choice =
        plugd::ChooseGrpcPollStrategy(options.grpc_poll_strategy);
    if (!choice.ok() || !choice->applied) {
      std::fprintf(stderr, "plugd-bench: --grpc-poll-strategy: %s\n",
                   choice.ok()
                       ? choice->description.c_str()
                       : std::string(choice.status().message()).c_str());
      return 2;
    }
  }
  if (!callgrind_client.empty()) {
    return plugd::bench::CallgrindClientMain(callgrind_client, broker, calls);
  }

  plugd::bench::Context ctx;
  ctx.options = options;
  const std::string started =
      absl::FormatTime("%Y-%m-%d %H:%M UTC", absl::Now(), absl::UTCTimeZone());
  const std::string cpu = FirstLine("/proc/cpuinfo", "model name");
  const long cores = sysconf(_SC_NPROCESSORS_ONLN);
  const std::string load_start = LoadAverage();
  std::printf("plugd-bench %s: %s, %ld CPUs (%s), load average %s%s\n",
              options.quick ? "(quick)" : "", started.c_str(), cores,
              cpu.c_str(), load_start.c_str(),
              options.only.empty() ? "" : ", some groups only");
  const int64_t t0 = plugd::bench::NowNanos();
  if (ctx.Enabled("coldstart") || ctx.Enabled("peer")) {
    plugd::bench::RunColdStart(ctx);
  }
  if (ctx.Enabled("calls") || ctx.Enabled("peer")) plugd::bench::RunCalls(ctx);
  if (ctx.Enabled("recovery")) plugd::bench::RunRecovery(ctx);
  if (ctx.Enabled("scale")) plugd::bench::RunScale(ctx);
  if (ctx.Enabled("callgrind")) plugd::bench::RunCallgrind(ctx);
  const double minutes =
      static_cast<double>(plugd::bench::NowNanos() - t0) / 60e9;

  ctx.report.SortByScenario();
  std::string header =
      absl::StrCat("plugd-bench ", started, "; ", cores, " CPUs (", cpu,
                   "); load average at start ", load_start, ", at end ",
                   LoadAverage(), "; ", absl::StrFormat("%.1f", minutes),
                   " min", options.quick ? "; quick mode" : "",
                   options.grpc_poll_strategy.empty()
                       ? ""
                       : "; clients with gRPC's poll strategy " +
                             options.grpc_poll_strategy);
  std::printf("\n%s\n\n", header.c_str());
  std::printf("%s", ctx.report.Text().c_str());
  std::printf("\nplugd-bench: table complete (%d met, %d missed, %d skipped)\n",
              ctx.report.met(), ctx.report.missed(), ctx.report.skipped());
  if (!options.markdown_file.empty()) {
    std::ofstream out(options.markdown_file);
    out << header << "\n\n" << ctx.report.Markdown();
  }
  return 0;
}
