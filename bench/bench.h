// plugd-bench: the benchmark driver (docs/benchmarks.md). One process runs
// every scenario, measures each figure next to its baseline in the same run,
// and prints one table.
#ifndef PLUGD_BENCH_BENCH_H_
#define PLUGD_BENCH_BENCH_H_

#include <algorithm>
#include <map>
#include <memory>
#include <set>
#include <string>

#include "report.h"
#include "util.h"

namespace plugd::bench {

struct Options {
  // BENCH_QUICK=1 or --quick: few calls and repetitions, a ~1 minute smoke.
  bool quick = false;
  // --smoke: the ctest entry; like quick, with the slowest parts shortened.
  bool smoke = false;
  // --only=a,b: run only these scenario groups (calls, peer, coldstart,
  // recovery, scale, callgrind); empty: all.
  std::set<std::string> only;
  // --markdown=FILE: also write the table as Markdown.
  std::string markdown_file;
  // --grpc-poll-strategy=NAME: gRPC's poll strategy for every client of the
  // bench (this process and its callgrind clients), as
  // HostOptions::grpc_poll_strategy would choose it; "" (default): the
  // host library's default.
  std::string grpc_poll_strategy;
};

// What one run shares between scenarios.
struct Context {
  Options options;
  Report report;
  TempDir tmp;
  // Figures measured by one scenario and used as baselines by another.
  std::map<std::string, double> figures;

  bool Enabled(const std::string& group) const {
    return options.only.empty() || options.only.count(group) > 0;
  }
  // n in full mode, quick in quick mode.
  // (--smoke halves the quick count, at least 1.)
  int Count(int n, int quick) const {
    if (options.smoke) return std::max(1, quick / 2);
    return options.quick ? quick : n;
  }
};

// 1 call latency, 2 throughput, 3 the peer comparison's call figures
// (go-plugin, Python, Node).
void RunCalls(Context& ctx);
// 4 cold start (and 3's cold-start ratio against go-plugin).
void RunColdStart(Context& ctx);
// 5 recovery and 6 calls across restarts, under the plugd daemon.
void RunRecovery(Context& ctx);
// 7 one daemon supervising many plugins.
void RunScale(Context& ctx);
// 8 instructions per call under callgrind.
void RunCallgrind(Context& ctx);

// The client loop run under valgrind by RunCallgrind:
//   plugd-bench --callgrind-client=plugd|grpc --calls=N --broker=ADDR
// (plugd: attaches to plugin "echo" of the plugd daemon at ADDR).
int CallgrindClientMain(const std::string& kind, const std::string& broker,
                        int calls);

// The go-plugin peer host, when the perf branch built it.
std::string GoPluginHost();
std::string GoPluginEcho();
// Runs bench-goplugin-host; the numeric fields of its JSON answer.
absl::StatusOr<std::map<std::string, double>> RunGoPluginHost(
    const std::string& mode, size_t payload, int calls, int inflight,
    bool gomaxprocs_one);

}  // namespace plugd::bench

#endif  // PLUGD_BENCH_BENCH_H_
