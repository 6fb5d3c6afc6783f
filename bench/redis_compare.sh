#!/usr/bin/env bash
# Squall vs Redis, side by side in one run, with the same redis-benchmark
# invocations against both (loopback only). Prints a markdown table of
# ops/s and p50 latency per row, with the ratio Squall/Redis.
#
# Usage: bench/redis_compare.sh            (REPEATS=3 REQUESTS=200000 by default)
# Env:   REPEATS, REQUESTS, CLIENTS, DURABILITY (async|sync), SHARDS, SQUALL (binary path),
#        TESTS (redis-benchmark's -t, set,get,incr,sadd by default)
#
# Rows (each of TESTS; 50 clients):
#   P1_r100000   -r 100000 -P 1    100k random keys, no pipelining
#   P16_r100000  -r 100000 -P 16   same, 16 commands pipelined per connection
#                                  (5 x REQUESTS: at REQUESTS a run lasts a
#                                  fraction of a second and is mostly noise)
#   P1_r1        -r 1      -P 1    one hot key
# Redis runs with persistence off; Squall with DURABILITY (async by default:
# writes still go to its disk tier, fsynced about once a second).
set -euo pipefail
cd "$(dirname "$0")/.."

REPEATS="${REPEATS:-3}"
REQUESTS="${REQUESTS:-200000}"
CLIENTS="${CLIENTS:-50}"
DURABILITY="${DURABILITY:-async}"
TESTS="${TESTS:-set,get,incr,sadd}"
NEEDED="redis-server redis-benchmark redis-cli python3"
# shellcheck source=bench/common.sh
. bench/common.sh

redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no --dir "$WORK" --daemonize no >"$WORK/redis.log" 2>&1 &
PIDS+=($!)
"$SQUALL" up --data-dir "$WORK/squall" --resp "127.0.0.1:$SQUALL_PORT" --http "$SQUALL_HTTP" --durability "$DURABILITY" "${SHARD_FLAG[@]}" >"$WORK/squall.log" 2>&1 &
PIDS+=($!)
for port in "$REDIS_PORT" "$SQUALL_PORT"; do wait_ping "$port"; done

RUNS=("P1_r100000:1:-r 100000 -P 1" "P16_r100000:5:-r 100000 -P 16" "P1_r1:1:-r 1 -P 1")
OUT="$WORK/results.csv"
echo "system,run,repeat,test,rps,p50_ms,p99_ms" >"$OUT"
for rep in $(seq 1 "$REPEATS"); do
  for run in "${RUNS[@]}"; do
    name="${run%%:*}"; rest="${run#*:}"; scale="${rest%%:*}"; flags="${rest#*:}"
    # Alternate who goes first, so drift in machine load hits both alike.
    if [ $((rep % 2)) -eq 1 ]; then order="redis:$REDIS_PORT squall:$SQUALL_PORT"; else order="squall:$SQUALL_PORT redis:$REDIS_PORT"; fi
    for target in $order; do
      sys="${target%%:*}"; port="${target#*:}"
      echo "[$rep/$REPEATS] $name $sys" >&2
      # shellcheck disable=SC2086
      redis-benchmark -h 127.0.0.1 -p "$port" -c "$CLIENTS" -n $((REQUESTS * scale)) -t "$TESTS" $flags --csv 2>/dev/null \
        | tail -n +2 | tr -d '"' | awk -F, -v s="$sys" -v r="$name" -v k="$rep" '{print s","r","k","$1","$2","$5","$7}' >>"$OUT"
    done
  done
done

python3 - "$OUT" "$DURABILITY" "$REQUESTS" "$CLIENTS" <<'PY'
import csv, statistics, sys
path, durability, requests, clients = sys.argv[1:]
rows = list(csv.DictReader(open(path)))
def med(sys_, run, test, field):
    v = [float(r[field]) for r in rows if r["system"] == sys_ and r["run"] == run and r["test"] == test]
    return statistics.median(v) if v else float("nan")
print(f"Squall (durability={durability}) vs Redis (persistence off); redis-benchmark -c {clients} -n {requests} (P16 rows -n {int(requests) * 5}); median of runs\n")
print("| run | test | Redis ops/s | Squall ops/s | ratio | Redis p50 ms | Squall p50 ms |")
print("|---|---|---:|---:|---:|---:|---:|")
tests = list(dict.fromkeys(r["test"] for r in rows))
for run in ["P1_r100000", "P16_r100000", "P1_r1"]:
    for test in tests:
        r, s = med("redis", run, test, "rps"), med("squall", run, test, "rps")
        print(f"| {run} | {test} | {r:,.0f} | {s:,.0f} | {s/r:.2f} | {med('redis', run, test, 'p50_ms'):.3f} | {med('squall', run, test, 'p50_ms'):.3f} |")
PY
