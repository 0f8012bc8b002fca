// Extra integer gRPC channel arguments for plugd-perf's experiments, from the
// environment, applied by its client and its two servers (plugd-perf-echo,
// an SDK plugin, and perf-bare-echo, a bare gRPC server; both serve
// bench/echo_service.h, the handler of the benchmark suite):
//
//   PLUGD_PERF_GRPC_ARGS="grpc.http2.lookahead_bytes=1048576,name=value"
//   plugd::perf::ForEachPerfArg([&](const std::string& name, int value) {
//     builder.AddChannelArgument(name, value);
//   });
//
// Items without "=" or with a value that is not an integer are skipped.
#ifndef PLUGD_BENCH_PERF_PERF_ARGS_H_
#define PLUGD_BENCH_PERF_PERF_ARGS_H_

#include <cstdlib>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"

namespace plugd::perf {

template <typename F>
void ForEachPerfArg(F f) {
  const char* env = std::getenv("PLUGD_PERF_GRPC_ARGS");
  if (env == nullptr) return;
  for (absl::string_view item : absl::StrSplit(env, ',', absl::SkipEmpty())) {
    std::pair<absl::string_view, absl::string_view> kv =
        absl::StrSplit(item, absl::MaxSplits('=', 1));
    int value = 0;
    if (item.find('=') == absl::string_view::npos ||
        !absl::SimpleAtoi(kv.second, &value)) {
      continue;
    }
    f(std::string(kv.first), value);
  }
}

}  // namespace plugd::perf

#endif  // PLUGD_BENCH_PERF_PERF_ARGS_H_
