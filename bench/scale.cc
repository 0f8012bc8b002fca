// Scenario 7: one plugd daemon supervising 10, 100 and 200 plugins.
#include <signal.h>
#include <sys/stat.h>

#include <cstdio>
#include <fstream>
#include <iterator>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "bench.h"
#include "daemon.h"

namespace plugd::bench {

void RunScale(Context& ctx) {
  Report& report = ctx.report;
  const std::string sc = "7 scale";
  std::printf("== 7: scale (plugd daemon)\n");
  const std::vector<int> sizes = ctx.options.smoke ? std::vector<int>{3, 6}
                                 : ctx.options.quick
                                     ? std::vector<int>{10, 20}
                                     : std::vector<int>{10, 100, 200};
  const absl::Duration idle = ctx.options.smoke   ? absl::Seconds(1)
                              : ctx.options.quick ? absl::Seconds(2)
                                                  : absl::Seconds(10);
  double base_wakeups = -1, base_list = -1;
  int base_n = 0;
  for (int n : sizes) {
    const std::string dir = ctx.tmp.File(absl::StrCat("scale", n));
    mkdir(dir.c_str(), 0700);
    std::string yaml;
    for (int i = 0; i < n; ++i) {
      absl::StrAppend(&yaml, absl::StrFormat("  - name: e%03d\n", i),
                      "    command: [", Bin("plugd-echo"), "]\n");
    }
    const std::string label = absl::StrCat(n, " plugins");
    absl::StatusOr<std::unique_ptr<Daemon>> daemon =
        Daemon::Start(dir, yaml, n * 4 + 100);
    if (!daemon.ok()) {
      report.Skip(sc, label, std::string(daemon.status().message()));
      continue;
    }
    absl::Time last_ready;
    {
      EventFollower events((*daemon)->stub(), "", n * 4 + 100);
      std::set<std::string> ready;
      size_t seen = 0;
      while (static_cast<int>(ready.size()) < n) {
        int i = events.WaitFor(
            seen,
            [](const v1::Event& e) { return e.type() == v1::EVENT_TYPE_READY; },
            absl::Seconds(120));
        if (i < 0) break;
        v1::Event e = events.At(static_cast<size_t>(i));
        ready.insert(e.plugin());
        last_ready = std::max(last_ready, FromTimestamp(e.time()));
        seen = static_cast<size_t>(i) + 1;
      }
      if (static_cast<int>(ready.size()) < n) {
        report.Skip(
            sc, label,
            absl::StrCat("only ", ready.size(), " of ", n,
                         " plugins became ready; see ", (*daemon)->log_file()));
        continue;
      }
    }
    Row start;
    start.scenario = sc;
    start.figure =
        absl::StrCat("start all ", label, " (exec plugd -> last ready)");
    start.value =
        absl::ToDoubleMilliseconds(last_ready - (*daemon)->start_time());
    start.unit = "ms";
    if (ctx.figures.count("cold_cpp_ms")) {
      start.baseline = absl::StrCat(n, " x C++ cold start (4)");
      start.baseline_value = n * ctx.figures["cold_cpp_ms"];
    }
    report.Add(start);

    // Idle: let the health watches settle, then measure.
    absl::SleepFor(absl::Seconds(1));
    const pid_t pid = (*daemon)->pid();
    absl::StatusOr<ProcUsage> u0 = ReadProcUsage(pid);
    absl::SleepFor(idle);
    absl::StatusOr<ProcUsage> u1 = ReadProcUsage(pid);
    if (!u0.ok() || !u1.ok()) {
      report.Skip(sc, label, "cannot read /proc of the daemon");
      continue;
    }
    if (u1->rss_kib == 0) {  // a zombie has no VmRSS: plugd died
      std::ifstream in((*daemon)->log_file());
      std::string log((std::istreambuf_iterator<char>(in)),
                      std::istreambuf_iterator<char>());
      if (log.size() > 400) log = "..." + log.substr(log.size() - 400);
      report.Skip(
          sc, label,
          absl::StrCat("the daemon died while idle; its log ends: ", log));
      continue;
    }
    const double seconds = absl::ToDoubleSeconds(idle);
    const double wakeups =
        static_cast<double>(u1->context_switches - u0->context_switches) /
        seconds;
    const double cpu = (u1->cpu_seconds - u0->cpu_seconds) / seconds * 100;

    Row rss;
    rss.scenario = sc;
    rss.figure = absl::StrCat("broker RSS, ", label);
    rss.value = static_cast<double>(u1->rss_kib) / 1024;
    rss.unit = "MiB";
    if (n >= 200) {
      // The "30 MB": 30,000,000 bytes, 28.6 MiB.
      rss.goal = Goal::kValueAtMost;
      rss.target = 30e6 / (1 << 20);
    }
    report.Add(rss);

    Row cpu_row;
    cpu_row.scenario = sc;
    cpu_row.figure = absl::StrCat("broker idle CPU, ", label, " (",
                                  absl::FormatDuration(idle), ")");
    cpu_row.value = cpu;
    cpu_row.unit = "% of a core";
    cpu_row.goal = Goal::kValueAtMost;
    cpu_row.target = 1;
    report.Add(cpu_row);

    Row wake;
    wake.scenario = sc;
    wake.figure = absl::StrCat("broker idle wake-ups, ", label, " (",
                               u1->threads, " threads)");
    wake.value = wakeups;
    wake.unit = "/s";
    if (base_wakeups >= 0) {
      wake.baseline = absl::StrCat(base_n, " plugins");
      wake.baseline_value = base_wakeups;
      wake.goal = Goal::kAtMost;
      wake.target = 1.5;
    }
    report.Add(wake);

    // plugctl list, exec to exit.
    Samples list;
    for (int i = 0; i < ctx.Count(10, 3); ++i) {
      const int64_t t0 = NowNanos();
      absl::StatusOr<std::unique_ptr<Child>> c = Child::Start(
          {Bin("plugctl"), "--broker", (*daemon)->admin(), "list"});
      if (!c.ok()) break;
      std::string out = (*c)->ReadAll(absl::Seconds(60));
      std::optional<int> status = (*c)->Wait(absl::Seconds(10));
      if (!status || *status != 0) break;
      list.Add(static_cast<double>(NowNanos() - t0) / 1e6);
    }
    Row l;
    l.scenario = sc;
    l.figure = absl::StrCat("plugctl list, ", label, ", p50");
    l.value = list.Median();
    l.unit = "ms";
    if (base_list >= 0) {
      l.baseline = absl::StrCat(base_n, " plugins");
      l.baseline_value = base_list;
    } else if (ctx.figures.count("exec_floor_ms")) {
      l.baseline = "exec of /bin/true";
      l.baseline_value = ctx.figures["exec_floor_ms"];
    }
    report.Add(l);

    // Per-plugin idle RSS.
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(30)));
    v1::ListPluginsResponse plugins;
    if ((*daemon)
            ->stub()
            .List(&context, v1::ListPluginsRequest(), &plugins)
            .ok()) {
      Samples rss_each, pss_each;
      for (const v1::PluginStatus& p : plugins.plugins()) {
        absl::StatusOr<ProcUsage> u =
            ReadProcUsage(static_cast<pid_t>(p.pid()));
        if (!u.ok()) continue;
        rss_each.Add(static_cast<double>(u->rss_kib) / 1024);
        if (std::optional<int64_t> pss =
                ReadPssKib(static_cast<pid_t>(p.pid())))
          pss_each.Add(static_cast<double>(*pss) / 1024);
      }
      Row r;
      r.scenario = sc;
      r.figure = absl::StrCat("plugin idle RSS (mean), ", label);
      r.value = rss_each.Mean();
      r.unit = "MiB";
      report.Add(r);
      // What each plugin adds to the machine's memory: its RSS counts the
      // pages of the executable that all plugd-echo processes share.
      if (pss_each.size() == rss_each.size()) {
        r.figure = absl::StrCat("plugin idle PSS (mean), ", label);
        r.value = pss_each.Mean();
        report.Add(r);
      } else {
        report.Skip(sc, absl::StrCat("plugin idle PSS (mean), ", label),
                    absl::StrCat("/proc/PID/smaps_rollup gave no Pss for ",
                                 rss_each.size() - pss_each.size(), " of ",
                                 rss_each.size(), " plugins"));
      }
    }
    if (base_wakeups < 0) {
      base_wakeups = wakeups;
      base_list = list.Median();
      base_n = n;
    }
  }
}

}  // namespace plugd::bench
