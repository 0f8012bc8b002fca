#!/usr/bin/env bash
# Runs plugd's libFuzzer targets (fuzz/, docs/fuzzing.md).
#
#   tools/fuzz.sh BIN_DIR WORK_DIR TARGET|all SECONDS
#
# BIN_DIR holds plugd-fuzz-TARGET (build/fuzz-clang/bin). New corpus entries
# go to WORK_DIR/corpus/TARGET; failing inputs to WORK_DIR/artifacts. The
# committed seeds (fuzz/corpus/TARGET) and kept crash inputs
# (fuzz/regressions/TARGET) are read, never written. Each target fuzzes for
# SECONDS; exit 1 if any found a failing input, with how to reproduce it.
set -uo pipefail

if [ $# -ne 4 ]; then
  echo "usage: tools/fuzz.sh BIN_DIR WORK_DIR TARGET|all SECONDS" >&2
  exit 2
fi
bin=$1 work=$2 which=$3 seconds=$4
src=$(cd "$(dirname "$0")/.." && pwd)
targets=(handshake value config)
[ "$which" = all ] || targets=("$which")

# UBSan reports are errors; leaks are reported (LeakSanitizer) at exit.
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}

failed=0
for t in "${targets[@]}"; do
  fuzzer=$bin/plugd-fuzz-$t
  if [ ! -x "$fuzzer" ]; then
    echo "fuzz: $fuzzer is missing; build first (make build)" >&2
    exit 2
  fi
  mkdir -p "$work/corpus/$t" "$work/artifacts"
  started=$(mktemp)
  echo "fuzz: $t for ${seconds}s (corpus $work/corpus/$t)"
  if ! "$fuzzer" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
      -max_len=16384 -print_final_stats=1 \
      -artifact_prefix="$work/artifacts/$t-" \
      "$work/corpus/$t" "$src/fuzz/corpus/$t" "$src/fuzz/regressions/$t" \
      2>"$work/$t.log"; then
    failed=1
    tail -n 60 "$work/$t.log" >&2
    # This run's failing inputs only; earlier ones stay for reference.
    find "$work/artifacts" -name "$t-*" -newer "$started" | while read -r a; do
      echo "fuzz: $t failed on $a" >&2
      echo "  reproduce: $fuzzer $a" >&2
      echo "  keep it as a regression test: cp $a $src/fuzz/regressions/$t/" >&2
    done
  else
    grep -E "^(stat::number_of_executed_units|stat::new_units_added|Done)" \
      "$work/$t.log" | sed "s/^/fuzz: $t: /"
  fi
  rm -f "$started"
done
exit $failed
