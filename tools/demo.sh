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

step "The plugd broker supervises plugins; plugctl drives it"
mkdir -p "$work/run"
cat > "$work/plugd.yaml" <<YAML
admin: unix:$work/run/admin.sock
plugins:
  - name: random
    command: [$PWD/$bin/plugd-random]
    restart: always
  - name: arith
    command: [$PWD/$bin/plugd-arith]
YAML
printf '$ plugd --config %s &\n' "$work/plugd.yaml"
PLUGD_LOG_LEVEL=warn "$bin/plugd" --config "$work/plugd.yaml" &
plugd_pid=$!
trap 'kill $plugd_pid 2>/dev/null || true; wait $plugd_pid 2>/dev/null || true; rm -rf "$work"' EXIT
export PLUGD_ADMIN="unix:$work/run/admin.sock"
# Wait for the admin socket (plugctl exits 3 while the broker is not up).
for _ in $(seq 100); do "$bin/plugctl" list >/dev/null 2>&1 && break; sleep 0.05; done
"$bin/plugctl" restart random >/dev/null   # returns once random is ready
run "$bin/plugctl" list
run "$bin/plugctl" call arith mul 6 7
run "$bin/calc" --broker "$PLUGD_ADMIN" random 1 6

step "A plugin killed with SIGKILL is back at once, on the same address"
old_pid=$("$bin/plugctl" status random --json | sed -n 's/.*"pid": *"\{0,1\}\([0-9]*\).*/\1/p')
"$bin/plugctl" events --follow --plugin random --history 0 --json > "$work/events" &
events_pid=$!
sleep 0.2
printf '$ kill -9 %s\n' "$old_pid"
kill -9 "$old_pid"
timeout 10 sh -c "tail -f '$work/events' | grep -q -m1 EVENT_TYPE_READY" || true
kill $events_pid 2>/dev/null; wait $events_pid 2>/dev/null || true
run "$bin/plugctl" events --plugin random --history 4
run "$bin/plugctl" list

step "Stopping the broker stops every plugin gracefully"
printf '$ kill -TERM %s\n' "$plugd_pid"
kill -TERM "$plugd_pid"; wait "$plugd_pid" || true
echo "plugd exited"

step "No plugin process is left behind"
# Only this build's plugins (started as $bin/... or $PWD/$bin/...), not
# those of another checkout running tests on the same machine.
own="^($PWD/)?$bin/plugd-"
if pgrep -f "$own" >/dev/null; then
  echo "leftover plugin processes:"; pgrep -af "$own"; exit 1
fi
echo "none"
