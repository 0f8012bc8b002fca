#!/usr/bin/env bash
# Runs the whole test suite: every GoogleTest binary through ctest (and, as
# they land, the other languages' tests). The last line is ctest's summary.
set -uo pipefail
build_dir=${1:-build}
cd "$(dirname "$0")/.."

# Tests start real processes; 2 at a time fits a 2-core machine.
ctest --test-dir "$build_dir" --output-on-failure -j 2 --timeout 300
