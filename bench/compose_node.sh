#!/usr/bin/env bash
# Starts a fresh Squall node (release build, --examples, ephemeral loopback
# ports, a temporary data dir), deploys the benchmark functions blob and
# size, runs CLIENT ARGS... --node URL --cluster-start-s S (with the node's
# pid in SQUALL_PID), then stops the node. The client prints the JSON;
# cluster_start_s is the node's start to /readyz ready.
#   bench/compose_node.sh python3 bench/squall_tasks.py
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SQUALL="${SQUALL:-$ROOT/target/release/squall}"
GUESTS="$ROOT/target/guests/wasm32-wasip2/release"
dir="$(mktemp -d)"
pid=""
cleanup() {
  if [ -n "$pid" ]; then kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$dir"
}
trap cleanup EXIT

t0=$(date +%s.%N)
SQUALL_LOG=warn "$SQUALL" up --examples --data-dir "$dir/data" --http 127.0.0.1:0 --resp 127.0.0.1:0 > "$dir/out" 2> "$dir/err" &
pid=$!
url=""
for _ in $(seq 1 600); do
  url="$(awk '$1 == "http" { print $2; exit }' "$dir/out")"
  [ -n "$url" ] && break
  sleep 0.05
done
[ -n "$url" ] || { echo "the node did not start: $(cat "$dir/err")" >&2; exit 1; }
until [ "$(curl -s -o /dev/null -w '%{http_code}' "$url/readyz")" = 200 ]; do sleep 0.01; done
t1=$(date +%s.%N)
start=$(python3 -c "print(round($t1 - $t0, 2))")
for f in blob size; do
  "$SQUALL" deploy "$f" "$GUESTS/$f.wasm" --node "$url" > /dev/null
done
SQUALL_PID="$pid" "$@" --node "$url" --cluster-start-s "$start"
