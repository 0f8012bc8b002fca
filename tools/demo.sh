#!/usr/bin/env bash
# The plugd demo: plugins launched as child processes, functions listed and
# called by name, a typed gRPC call, errors, and clean shutdown.
set -euo pipefail
build_dir=${1:-build}
cd "$(dirname "$0")/.."
bin="$build_dir/bin"
work=$(mktemp -d /tmp/plugd-demo.XXXXXX)
trap 'rm -rf "$work"' EXIT

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }
fails() { printf '$ %s\n' "$*"; if "$@"; then echo "(expected a failure)"; exit 1; else echo "(exit code $?)"; fi; }

step "Two C++ plugins, launched as child processes; every function they offer"
run "$bin/calc" --plugin "$bin/plugd-random" --plugin "$bin/plugd-arith" --list

step "Calling functions by name: calc finds which plugin offers each"
run "$bin/calc" --plugin "$bin/plugd-random" --plugin "$bin/plugd-arith" random 1 6
run "$bin/calc" --plugin "$bin/plugd-random" --plugin "$bin/plugd-arith" add 1 2 3.5
run "$bin/calc" --plugin "$bin/plugd-arith" pow 2 10

step "Errors say what was wrong"
fails "$bin/calc" --plugin "$bin/plugd-arith" div 1 0
fails "$bin/calc" --plugin "$bin/plugd-arith" sub 1 two
fails "$bin/calc" --plugin "$bin/plugd-arith" frobnicate 1

step "A typed service (kv.v1.KV) through generated stubs; data survives restarts"
db="$work/kv.pb"
run "$bin/kvctl" --data "$db" put greeting "hello, plugins"
run "$bin/kvctl" --data "$db" put answer 42
run "$bin/kvctl" --data "$db" get greeting
run "$bin/kvctl" --data "$db" scan

step "A plugin is not a program: run by hand, it explains itself"
fails "$bin/plugd-random"

step "The lifecycle, with plugd's log on: launch, handshake, call, clean stop"
run "$bin/calc" -v --plugin "$bin/plugd-random" random 10 20

step "No plugin process is left behind"
if pgrep -f "$bin/plugd-" >/dev/null; then
  echo "leftover plugin processes:"; pgrep -af "$bin/plugd-"; exit 1
fi
echo "none"
