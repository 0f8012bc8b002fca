// Scenarios 1 (call latency), 2 (throughput) and the call figures of 3 (the
// go-plugin peer, the Python and Node plugins).
#include <grpcpp/grpcpp.h>

#include <cstdio>
#include <functional>
#include <regex>
#include <utility>

#include "absl/strings/str_cat.h"
#include "bench.h"
#include "callback_throughput.h"
#include "clients.h"

namespace plugd::bench {
namespace {

constexpr size_t kPayloads[] = {64, 4 << 10, 64 << 10, 1 << 20};

// Calls per target and payload (full mode); quick mode divides by 10.
int CallsFor(const Context& ctx, size_t payload) {
  int n = payload >= (1 << 20) ? 300 : payload >= (64 << 10) ? 1500 : 4000;
  if (ctx.options.smoke) return std::max(10, n / 100);
  return ctx.options.quick ? std::max(20, n / 20) : n;
}

// Latency of `targets`, interleaved: `rounds` rounds, each running a block
// of calls on every target in turn (the order rotates each round), so that
// the machine's background load falls on all of them alike. Microseconds.
std::vector<Samples> MeasureLatency(const std::vector<EchoTarget*>& targets,
                                    const std::string& payload, int calls,
                                    int rounds, std::string* error) {
  std::vector<Samples> samples(targets.size());
  const int warmup = payload.size() >= (1 << 20) ? 5 : 50;
  for (EchoTarget* t : targets) {
    for (int i = 0; i < warmup; ++i) {
      if (!t->Call(payload, error)) return {};
    }
  }
  const int block = std::max(1, calls / rounds);
  bool failed = false;
  RotatingRounds(rounds, static_cast<int>(targets.size()), [&](int i) {
    for (int c = 0; c < block; ++c) {
      const int64_t t0 = NowNanos();
      if (!targets[i]->Call(payload, error)) {
        failed = true;
        return false;
      }
      samples[i].Add(static_cast<double>(NowNanos() - t0) / 1e3);
    }
    return true;
  });
  if (failed) return {};
  return samples;
}

// `calls` calls with `inflight` outstanding at any time (the callback API
// on one channel, after a warm-up); calls per second, or 0 with *error set.
double MeasureThroughput(const std::shared_ptr<grpc::Channel>& channel,
                         int inflight, int calls, const std::string& payload,
                         std::string* error) {
  // Warm-up, so that the connection is up.
  {
    std::string e;
    GrpcTarget warm(channel);
    for (int i = 0; i < 20; ++i) warm.Call(payload, &e);
  }
  auto stub = echo::v1::Echo::NewStub(channel);
  echo::v1::EchoRequest request;
  request.set_payload(payload);
  return CallbackThroughput(stub.get(), request, inflight, calls, error);
}

// RotatingRounds of two: a b, b a, a b, ...
void AlternateRounds(int rounds, const std::function<bool()>& a,
                     const std::function<bool()>& b) {
  RotatingRounds(rounds, 2, [&](int i) { return i == 0 ? a() : b(); });
}

}  // namespace

std::string GoPluginHost() { return Bin("bench-goplugin-host"); }
std::string GoPluginEcho() { return Bin("bench-goplugin-echo"); }

absl::StatusOr<std::map<std::string, double>> RunGoPluginHost(
    const std::string& mode, size_t payload, int calls, int inflight,
    bool gomaxprocs_one) {
  std::map<std::string, std::string> env;
  std::vector<std::string> unset;
  if (gomaxprocs_one) {
    env["GOMAXPROCS"] = "1";
  } else {
    unset.push_back("GOMAXPROCS");
  }
  absl::StatusOr<std::unique_ptr<Child>> child =
      Child::Start({GoPluginHost(), "--plugin", GoPluginEcho(), "--mode", mode,
                    "--payload", absl::StrCat(payload), "--calls",
                    absl::StrCat(calls), "--inflight", absl::StrCat(inflight)},
                   env, "", unset);
  if (!child.ok()) return child.status();
  std::string out = (*child)->ReadAll(absl::Seconds(300));
  std::optional<int> status = (*child)->Wait(absl::Seconds(30));
  if (!status || !WIFEXITED(*status) || WEXITSTATUS(*status) != 0) {
    return absl::InternalError(absl::StrCat("bench-goplugin-host --mode ", mode,
                                            " failed; it printed: ", out));
  }
  std::map<std::string, double> fields;
  static const std::regex kField(R"re("(\w+)"\s*:\s*(-?[0-9.eE+-]+))re");
  for (std::sregex_iterator it(out.begin(), out.end(), kField), end; it != end;
       ++it) {
    fields[(*it)[1]] = std::stod((*it)[2]);
  }
  if (fields.empty()) {
    return absl::InternalError(
        absl::StrCat("bench-goplugin-host printed no JSON figures: ", out));
  }
  return fields;
}

void RunCalls(Context& ctx) {
  Report& report = ctx.report;
  std::printf("== 1-3: calls (latency, throughput, peers)\n");
  absl::StatusOr<std::unique_ptr<host::Host>> host = host::Host::Create();
  if (!host.ok()) {
    report.Skip("1 latency", "all", std::string(host.status().message()));
    return;
  }
  auto launch = [&](const std::string& name, std::vector<std::string> command,
                    bool supervised) -> std::shared_ptr<host::Plugin> {
    absl::StatusOr<std::shared_ptr<host::Plugin>> p = (*host)->Launch(
        EchoPluginOptions(name, std::move(command), supervised));
    if (!p.ok()) {
      report.Skip("1 latency", name, std::string(p.status().message()));
      return nullptr;
    }
    return *p;
  };
  std::shared_ptr<host::Plugin> plugd =
      launch("echo", {Bin("plugd-echo")}, true);
  std::shared_ptr<host::Plugin> plugd_bare =
      launch("echo-unsupervised", {Bin("plugd-echo")}, false);
  std::shared_ptr<host::Plugin> plugd_nofn =
      launch("echo-nofn", {Bin("plugd-echo"), "--no-functions"}, true);
  if (!plugd || !plugd_bare || !plugd_nofn) return;

  const std::string s_plugd = ctx.tmp.File("grpc-plugd.sock");
  const std::string s_default = ctx.tmp.File("grpc-default.sock");
  const std::string s_raw = ctx.tmp.File("raw.sock");
  auto server_plugd = StartEchoServer("grpc-plugd", s_plugd);
  auto server_default = StartEchoServer("grpc-default", s_default);
  auto server_raw = StartEchoServer("raw", s_raw);
  if (!server_plugd.ok() || !server_default.ok() || !server_raw.ok()) {
    report.Skip("1 latency", "baselines", "bench-echo-server did not start");
    return;
  }
  auto raw = RawTarget::Connect(s_raw);
  if (!raw.ok()) {
    report.Skip("1 latency", "raw floor", std::string(raw.status().message()));
    return;
  }
  GrpcTarget t_plugd(plugd->channel());
  GrpcTarget t_plugd_bare(plugd_bare->channel());
  GrpcTarget t_plugd_nofn(plugd_nofn->channel());
  GrpcTarget t_grpc(PlugdSettingsChannel("unix:" + s_plugd));
  GrpcTarget t_default(DefaultChannel("unix:" + s_default));
  DynamicTarget t_dynamic(plugd);

  // ---- 1: latency per payload.
  const std::string sc = "1 latency";
  const int rounds = ctx.options.quick ? 2 : 10;
  const bool calls_enabled = ctx.Enabled("calls");
  for (size_t size : calls_enabled ? std::vector<size_t>(std::begin(kPayloads),
                                                         std::end(kPayloads))
                                   : std::vector<size_t>{}) {
    const std::string payload = Payload(size);
    const std::string sz = SizeName(size);
    std::string error;
    std::vector<EchoTarget*> targets = {&t_plugd,      &t_grpc,
                                        &t_default,    raw->get(),
                                        &t_plugd_bare, &t_plugd_nofn};
    std::vector<Samples> s =
        MeasureLatency(targets, payload, CallsFor(ctx, size), rounds, &error);
    if (s.empty()) {
      report.Skip(sc, sz, error);
      continue;
    }
    const Samples &plugd_s = s[0], &grpc_s = s[1], &default_s = s[2],
                  &raw_s = s[3], &bare_s = s[4], &nofn_s = s[5];
    ctx.figures["plugd_p50_" + std::to_string(size)] = plugd_s.Median();
    report.Add(MakeRow("us", sc, "plugd typed p50, " + sz, plugd_s.Median(),
                       "bare gRPC, plugd settings", grpc_s.Median(),
                       Goal::kAtMost, 1.05));
    report.Add(MakeRow("us", sc, "plugd typed p99, " + sz,
                       plugd_s.Percentile(99), "bare gRPC, plugd settings",
                       grpc_s.Percentile(99)));
    report.Add(MakeRow("us", sc, "plugd typed p50, " + sz, plugd_s.Median(),
                       "bare gRPC, defaults", default_s.Median()));
    Row floor = MakeRow("us", sc, "plugd typed p50, " + sz, plugd_s.Median(),
                        "raw socket floor", raw_s.Median());
    if (size == (1 << 20)) {
      floor.goal = Goal::kAtMost;
      floor.target = 4;
    }
    report.Add(floor);
    report.Add(MakeRow("us", sc, "bare gRPC (plugd settings) p50, " + sz,
                       grpc_s.Median(), "raw socket floor", raw_s.Median()));
    report.Add(MakeRow("us", sc, "plugd unsupervised launch p50, " + sz,
                       bare_s.Median(), "bare gRPC, defaults",
                       default_s.Median()));
    report.Add(MakeRow("us", sc, "plugd typed, no Functions service p50, " + sz,
                       nofn_s.Median(), "plugd typed", plugd_s.Median()));
  }
  // The dynamic call against the typed one.
  for (size_t size : calls_enabled ? std::vector<size_t>{64, 64 << 10}
                                   : std::vector<size_t>{}) {
    const std::string payload = Payload(size);
    std::string error;
    std::vector<Samples> s = MeasureLatency(
        {&t_dynamic, &t_plugd}, payload, CallsFor(ctx, size), rounds, &error);
    if (s.empty()) {
      report.Skip(sc, "dynamic call " + SizeName(size), error);
      continue;
    }
    report.Add(MakeRow("us", sc, "plugd dynamic call p50, " + SizeName(size),
                       s[0].Median(), "plugd typed", s[1].Median()));
  }

  // ---- 2: throughput, 64 B. Rounds rotate the order of the three targets,
  // as scenario 1 interleaves its blocks, so that background load falls on
  // all alike; each figure is the median of its rounds.
  if (calls_enabled) {
    const std::string sc2 = "2 throughput";
    const std::string payload = Payload(64);
    const int throughput_rounds =
        ctx.options.quick || ctx.options.smoke ? 1 : 3;
    const int calls = std::max(1, ctx.Count(20000, 1000) / throughput_rounds);
    const std::pair<const char*, std::shared_ptr<grpc::Channel>> targets[] = {
        {"plugd", plugd->channel()},
        {"bare gRPC, plugd settings", t_grpc.channel()},
        {"bare gRPC, defaults", t_default.channel()}};
    for (int inflight : {1, 2, 8, 32}) {
      std::string error;
      Samples rates[3];
      RotatingRounds(throughput_rounds, 3, [&](int i) {
        const double rate = MeasureThroughput(targets[i].second, inflight,
                                              calls, payload, &error);
        if (rate == 0) {
          error = absl::StrCat(targets[i].first, ": ", error);
          return false;
        }
        rates[i].Add(rate);
        return true;
      });
      if (!error.empty() || rates[0].empty() || rates[1].empty() ||
          rates[2].empty()) {
        report.Skip(sc2, absl::StrCat(inflight, " in flight"), error);
        continue;
      }
      const double p = rates[0].Median();
      ctx.figures[absl::StrCat("plugd_cps_", inflight)] = p;
      Row row;
      row.scenario = sc2;
      row.figure = absl::StrCat("plugd typed, ", inflight, " in flight, 64 B");
      row.value = p;
      row.unit = "calls/s";
      row.baseline = "bare gRPC, plugd settings";
      row.baseline_value = rates[1].Median();
      report.Add(row);
      row.baseline = "bare gRPC, defaults";
      row.baseline_value = rates[2].Median();
      report.Add(row);
    }
  }

  // ---- 3: the peers' call figures.
  const std::string sc3 = "3 peers";
  if (!ctx.Enabled("peer")) return;
  if (!IsExecutable(GoPluginHost()) || !IsExecutable(GoPluginEcho())) {
    report.Skip(sc3, "go-plugin latency and throughput",
                "build/bin/bench-goplugin-host not built");
  } else {
    // Alternating rounds, as scenario 1 interleaves its targets: a block of
    // plugd calls, then one go-plugin host run with as many calls (or the
    // other way round), so that background load falls on both alike. The
    // go-plugin host reports one p50 and p99 per run, so both sides' figures
    // are the medians of their per-round p50s and p99s.
    const int peer_rounds = ctx.options.quick || ctx.options.smoke ? 1 : 5;
    for (bool one : {false, true}) {
      const std::string procs = one ? "GOMAXPROCS=1" : "GOMAXPROCS default";
      for (size_t size : kPayloads) {
        const std::string payload = Payload(size);
        const int calls = std::max(1, CallsFor(ctx, size) / peer_rounds);
        std::string error;
        Samples plugd_p50, plugd_p99, go_p50, go_p99;
        AlternateRounds(
            peer_rounds,
            [&] {
              std::vector<Samples> s =
                  MeasureLatency({&t_plugd}, payload, calls, 1, &error);
              if (s.empty()) return false;
              plugd_p50.Add(s[0].Median());
              plugd_p99.Add(s[0].Percentile(99));
              return true;
            },
            [&] {
              auto go = RunGoPluginHost("latency", size, calls, 1, one);
              if (!go.ok()) {
                error = std::string(go.status().message());
                return false;
              }
              go_p50.Add((*go)["p50_us"]);
              go_p99.Add((*go)["p99_us"]);
              return true;
            });
        if (!error.empty() || plugd_p50.empty() || go_p50.empty()) {
          report.Skip(sc3, "go-plugin latency " + SizeName(size), error);
          continue;
        }
        report.Add(MakeRow("us", sc3, "plugd typed p50, " + SizeName(size),
                           plugd_p50.Median(), "go-plugin (" + procs + ")",
                           go_p50.Median(), Goal::kAtMost, 1.0));
        report.Add(MakeRow("us", sc3, "plugd typed p99, " + SizeName(size),
                           plugd_p99.Median(), "go-plugin (" + procs + ")",
                           go_p99.Median()));
      }
      const int calls = ctx.Count(20000, 1000);
      const int throughput_rounds = peer_rounds > 1 ? 3 : 1;
      std::string error;
      Samples plugd_rate, go_rate;
      AlternateRounds(
          throughput_rounds,
          [&] {
            double p = MeasureThroughput(plugd->channel(), 8, calls,
                                         Payload(64), &error);
            if (p == 0) return false;
            plugd_rate.Add(p);
            return true;
          },
          [&] {
            auto go = RunGoPluginHost("throughput", 64, calls, 8, one);
            if (!go.ok()) {
              error = std::string(go.status().message());
              return false;
            }
            go_rate.Add((*go)["calls_per_s"]);
            return true;
          });
      if (!error.empty() || plugd_rate.empty() || go_rate.empty()) {
        report.Skip(sc3, "go-plugin throughput", error);
        continue;
      }
      Row row;
      row.scenario = sc3;
      row.figure = "plugd typed, 8 in flight, 64 B";
      row.value = plugd_rate.Median();
      row.unit = "calls/s";
      row.baseline = "go-plugin (" + procs + ")";
      row.baseline_value = go_rate.Median();
      row.goal = Goal::kAtLeast;
      row.target = 1.0;
      report.Add(row);
    }
  }
  // Python and Node plugins' latency against the C++ plugin's.
  for (const auto& [name, bin] :
       {std::pair<std::string, std::string>{"Python", "plugd-py-echo"},
        std::pair<std::string, std::string>{"Node", "plugd-node-echo"}}) {
    absl::StatusOr<std::shared_ptr<host::Plugin>> p =
        (*host)->Launch(EchoPluginOptions(bin, {Bin(bin)}, true));
    if (!p.ok()) {
      report.Skip(sc3, name + " plugin latency",
                  std::string(p.status().message()));
      continue;
    }
    GrpcTarget t((*p)->channel());
    for (size_t size : {size_t{64}, size_t{64 << 10}}) {
      std::string error;
      std::vector<Samples> s =
          MeasureLatency({&t, &t_plugd}, Payload(size), CallsFor(ctx, size) / 2,
                         rounds, &error);
      if (s.empty()) {
        report.Skip(sc3, name + " plugin latency", error);
        continue;
      }
      report.Add(MakeRow("us", sc3, name + " plugin p50, " + SizeName(size),
                         s[0].Median(), "plugd C++ plugin", s[1].Median()));
      report.Add(MakeRow("us", sc3, name + " plugin p99, " + SizeName(size),
                         s[0].Percentile(99), "plugd C++ plugin",
                         s[1].Percentile(99)));
    }
    (*p)->Stop().IgnoreError();
  }
  server_plugd.value()->Stop(SIGTERM, absl::Seconds(5));
  server_default.value()->Stop(SIGTERM, absl::Seconds(5));
  server_raw.value()->Stop(SIGTERM, absl::Seconds(5));
}

}  // namespace plugd::bench
