#!/bin/sh
# ab.sh RUNS -- ARGS_A -- ARGS_B: runs `plugd-perf ARGS_A` and `plugd-perf
# ARGS_B` alternately RUNS times (interleaved, so that load from elsewhere
# hits both alike) and prints each run's JSON, then the medians of the first
# field. Used for the before/after figures in docs/performance-notes.md.
set -eu
bin=$(dirname "$0")/../../build/bin
[ -x "$bin/plugd-perf" ] || bin=build/bin
runs=$1; shift; [ "$1" = "--" ] && shift
a=""; while [ "$1" != "--" ]; do a="$a $1"; shift; done; shift
b="$*"
ra=""; rb=""
i=0
while [ $i -lt "$runs" ]; do
  x=$("$bin/plugd-perf" $a 2>/dev/null); y=$("$bin/plugd-perf" $b 2>/dev/null)
  echo "A $x   B $y"
  ra="$ra $(echo "$x" | sed 's/^{"[a-z_0-9]*":\([0-9.]*\).*/\1/')"
  rb="$rb $(echo "$y" | sed 's/^{"[a-z_0-9]*":\([0-9.]*\).*/\1/')"
  i=$((i + 1))
done
med() { printf '%s\n' $1 | sort -g | awk '{v[NR]=$1} END {print (NR%2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}'; }
echo "median A:$a -> $(med "$ra")"
echo "median B: $b -> $(med "$rb")"
