#!/usr/bin/env bash
# The window log's cost, side by side in one run: two Squall nodes, one with
# the window log (the default: 15 minutes, 256 MiB) and one with it off
# (`--retention 0`), get the same redis-benchmark write runs in alternating
# order (async durability, so the CPU cost is not hidden behind fsyncs).
# Prints medians and the on/off ratio of each row, then what a change costs
# the window in memory, and how long reading every key of 1,000,000 takes
# at a past time against now.
#
# Usage: bench/window_cost.sh     (ROUNDS=5 REQUESTS=200000 KEYS=1000000 by default)
# Needs: redis-benchmark and redis-cli (apt-get install redis-tools), python3, curl.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS="${ROUNDS:-5}"
REQUESTS="${REQUESTS:-200000}"
KEYS="${KEYS:-1000000}"
NEEDED="redis-benchmark redis-cli python3 curl"
# shellcheck source=bench/common.sh
. bench/common.sh

# name http-port resp-port flags...
start() {
  local name="$1" http="$2" resp="$3"; shift 3
  SQUALL_LOG=warn "$SQUALL" up --durability async --data-dir "$WORK/$name" \
    --http "127.0.0.1:$http" --resp "127.0.0.1:$resp" "$@" >"$WORK/$name.log" 2>&1 &
  PIDS+=($!)
}
start on 7795 7895
start off 7796 7896 --retention 0
wait_ping 7895
wait_ping 7896
port() { case "$1" in on) echo 7895 ;; off) echo 7896 ;; esac; }

OUT="$WORK/results.csv"
echo "node,row,value" >"$OUT"
for round in $(seq 1 "$ROUNDS"); do
  if [ $((round % 2)) -eq 1 ]; then order="on off"; else order="off on"; fi
  for name in $order; do
    echo "[$round/$ROUNDS] $name" >&2
    for p in 1 16; do
      redis-benchmark -p "$(port "$name")" -c 50 -n $((REQUESTS * (p == 16 ? 5 : 1))) -P "$p" \
        -r 100000 -t set,incr,sadd,hset --csv 2>/dev/null | tail -n +2 | tr -d '"' \
        | awk -F, -v n="$name" -v p="$p" '{print n",redis " $1 " P" p " ops/s,"$2}' >>"$OUT"
    done
  done
done

python3 - "$OUT" "$ROUNDS" "$REQUESTS" <<'PY'
import csv, statistics, sys
path, rounds, requests = sys.argv[1:]
rows = list(csv.DictReader(open(path)))
order = []
for r in rows:
    if r["row"] not in order:
        order.append(r["row"])
med = lambda node, row: statistics.median(float(r["value"]) for r in rows if r["node"] == node and r["row"] == row)
print(f"window log on vs off, {rounds} alternating rounds, median ops/s (redis-benchmark -c 50 -r 100000, {requests} requests at P1, 5x at P16)\n")
print("| row | window on | window off | on / off |")
print("|---|---:|---:|---:|")
for row in order:
    on, off = med("on", row), med("off", row)
    print(f"| {row} | {on:,.0f} | {off:,.0f} | {on / off:.3f} |")
PY

metric() { curl -s "http://127.0.0.1:7795/metrics" | awk -v m="$1" '$1 ~ "^"m"[{]" {s += $2} END {print s}'; }
changes=$(metric squall_window_changes)
bytes=$(metric squall_window_bytes)
rss() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
echo
echo "window log after the runs: $changes changes, $bytes bytes ($(python3 -c "print(round($bytes / max($changes, 1), 1))") bytes per change); RSS on $(rss "${PIDS[0]}") KiB, off $(rss "${PIDS[1]}") KiB"

# Every key of KEYS, read at a past time and now, over HTTP in pages of 10,000.
python3 - "$KEYS" <<'PY'
import http.client, json, socket, subprocess, sys, time
keys = int(sys.argv[1])
load = "".join(f"*3\r\n$3\r\nSET\r\n${len(k)}\r\n{k}\r\n$1\r\nv\r\n" for k in (f"key:{i}" for i in range(keys)))
subprocess.run(["redis-cli", "-p", "7895", "--pipe"], input=load.encode(), check=True, capture_output=True)
time.sleep(0.05)
at = f"{int(time.time() * 1000)}.65535"
time.sleep(0.05)
changed = "".join(f"*2\r\n$3\r\nDEL\r\n${len(k)}\r\n{k}\r\n" for k in (f"key:{i}" for i in range(0, keys, 10)))
subprocess.run(["redis-cli", "-p", "7895", "--pipe"], input=changed.encode(), check=True, capture_output=True)

def scan(query):
    c = http.client.HTTPConnection("127.0.0.1", 7795)
    cursor, n, start = "0", 0, time.perf_counter()
    while True:
        c.request("GET", f"/v1/kv?limit=10000&cursor={cursor}{query}", headers={"Host": "localhost"})
        page = json.loads(c.getresponse().read())
        n += len(page["keys"])
        if page["done"]:
            return n, time.perf_counter() - start
        cursor = page["cursor"]

for label, q in [("now", ""), (f"at {at} (before deleting every tenth key)", f"&at={at}")]:
    n, s = scan(q)
    print(f"scan of all keys {label}: {n:,} keys in {s:.2f} s")
PY
