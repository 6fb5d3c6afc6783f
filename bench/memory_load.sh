#!/usr/bin/env bash
# Memory and bulk load, Squall vs Redis, side by side in one run (loopback
# only): load N keys of 11 bytes with 8-byte values through `redis-cli
# --pipe` into each, and report the time the load took, the server's RSS
# after it, and Squall's RSS after a restart (recovery from its disk).
#
# Usage: bench/memory_load.sh            (KEYS=1000000 REPEATS=3 by default)
# Env:   KEYS, REPEATS, DURABILITY (async|sync), SHARDS, SQUALL (binary path)
#
# Redis runs with persistence off; Squall with DURABILITY (async by default:
# every write still goes to its log, fsynced about once a second).
set -euo pipefail
cd "$(dirname "$0")/.."

KEYS="${KEYS:-1000000}"
REPEATS="${REPEATS:-3}"
DURABILITY="${DURABILITY:-async}"
NEEDED="redis-server redis-cli python3"
# shellcheck source=bench/common.sh
. bench/common.sh

# The load: SET key:NNNNNNN valNNNNN (11-byte keys, 8-byte values), in RESP.
python3 - "$KEYS" >"$WORK/load.resp" <<'PY'
import sys
n = int(sys.argv[1])
out = sys.stdout.buffer
for i in range(n):
    k = b"key:%07d" % i
    v = b"val%05d" % (i % 100000)
    out.write(b"*3\r\n$3\r\nSET\r\n$11\r\n" + k + b"\r\n$8\r\n" + v + b"\r\n")
PY

rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
start_squall() {
  "$SQUALL" up --data-dir "$WORK/squall-data" --resp "127.0.0.1:$SQUALL_PORT" --http "$SQUALL_HTTP" \
    --durability "$DURABILITY" "${SHARD_FLAG[@]}" >>"$WORK/squall.log" 2>&1 &
  SQUALL_PID=$!
  PIDS+=("$SQUALL_PID")
  wait_ping "$SQUALL_PORT"
}
stop() { kill "$1"; wait "$1" 2>/dev/null || true; }
load() { # port -> seconds
  local t0 t1
  t0=$(date +%s.%N)
  redis-cli -p "$1" --pipe <"$WORK/load.resp" >"$WORK/pipe.out" 2>&1
  t1=$(date +%s.%N)
  grep -q "errors: 0" "$WORK/pipe.out" || { cat "$WORK/pipe.out" >&2; exit 1; }
  python3 -c "print(f'{$t1 - $t0:.3f}')"
}

echo "system,repeat,load_s,rss_kib,rss_restart_kib" >"$WORK/results.csv"
for rep in $(seq 1 "$REPEATS"); do
  # Alternate who goes first, so drift in machine load hits both alike.
  if [ $((rep % 2)) -eq 1 ]; then order="redis squall"; else order="squall redis"; fi
  for sys in $order; do
    echo "[$rep/$REPEATS] $sys" >&2
    if [ "$sys" = redis ]; then
      redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no --dir "$WORK" --daemonize no >"$WORK/redis.log" 2>&1 &
      pid=$!; PIDS+=("$pid")
      wait_ping "$REDIS_PORT"
      secs=$(load "$REDIS_PORT")
      sleep 1
      echo "redis,$rep,$secs,$(rss_kib "$pid")," >>"$WORK/results.csv"
      stop "$pid"
    else
      rm -rf "$WORK/squall-data"
      start_squall
      secs=$(load "$SQUALL_PORT")
      sleep 1
      rss=$(rss_kib "$SQUALL_PID")
      stop "$SQUALL_PID"
      start_squall
      sleep 1
      echo "squall,$rep,$secs,$rss,$(rss_kib "$SQUALL_PID")" >>"$WORK/results.csv"
      stop "$SQUALL_PID"
    fi
  done
done

python3 - "$WORK/results.csv" "$KEYS" "$DURABILITY" <<'PY'
import csv, statistics, sys
path, keys, durability = sys.argv[1:]
rows = list(csv.DictReader(open(path)))
def med(sys_, field):
    v = [float(r[field]) for r in rows if r["system"] == sys_ and r[field]]
    return statistics.median(v) if v else float("nan")
rl, sl = med("redis", "load_s"), med("squall", "load_s")
rr, sr, sa = med("redis", "rss_kib") / 1024, med("squall", "rss_kib") / 1024, med("squall", "rss_restart_kib") / 1024
print(f"{int(keys):,} keys of 11 bytes with 8-byte values, loaded with redis-cli --pipe; Squall durability={durability}, Redis persistence off; median of runs\n")
print("| measure | Redis | Squall | Squall / Redis |")
print("|---|---:|---:|---:|")
print(f"| load time (s) | {rl:.2f} | {sl:.2f} | {sl/rl:.2f} |")
print(f"| RSS after the load (MiB) | {rr:.1f} | {sr:.1f} | {sr/rr:.2f} |")
print(f"| RSS after a restart (MiB) | | {sa:.1f} | {sa/rr:.2f} |")
PY
