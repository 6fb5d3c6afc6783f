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
    pid="${PIDS[$([ "$name" = on ] && echo 0 || echo 1)]}"
    for p in 1 16; do
      n=$((REQUESTS * (p == 16 ? 5 : 1)))
      before=$(awk '{print $14 + $15}' "/proc/$pid/stat")
      redis-benchmark -p "$(port "$name")" -c 50 -n "$n" -P "$p" \
        -r 100000 -t set,incr,sadd,hset --csv 2>/dev/null | tail -n +2 | tr -d '"' \
        | awk -F, -v n="$name" -v p="$p" '{print n",redis " $1 " P" p " ops/s,"$2}' >>"$OUT"
      after=$(awk '{print $14 + $15}' "/proc/$pid/stat")
      # The node's CPU time (all its threads), per write: steadier than throughput on a shared VM.
      echo "$name,node CPU us per write P$p,$(python3 -c "print(($after - $before) * 10000 / (4 * $n))")" >>"$OUT"
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
    fmt = (lambda v: f"{v:.2f}") if "CPU" in row else (lambda v: f"{v:,.0f}")
    print(f"| {row} | {fmt(on)} | {fmt(off)} | {on / off:.3f} |")
PY

metric() { curl -s "http://127.0.0.1:7795/metrics" | awk -v m="$1" '$1 ~ "^"m"[{]" {s += $2} END {print s}'; }
changes=$(metric squall_window_changes)
bytes=$(metric squall_window_bytes)
rss() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
echo
echo "window log after the runs: $changes changes, $bytes bytes ($(python3 -c "print(round($bytes / max($changes, 1), 1))") bytes per change); RSS on $(rss "${PIDS[0]}") KiB, off $(rss "${PIDS[1]}") KiB"

# KEYS keys written, then every tenth deleted; a snapshot opened before the
# deletes: how long it takes to open, to answer its first read (which builds
# the window's index, in steps), to scan every key through it (against a
# scan of now), and to move it by a second at a time under a write load.
python3 - "$KEYS" <<'PY'
import http.client, json, subprocess, sys, time
keys = int(sys.argv[1])
before_load = int(time.time() * 1000)
time.sleep(0.05)
load = "".join(f"*3\r\n$3\r\nSET\r\n${len(k)}\r\n{k}\r\n$1\r\nv\r\n" for k in (f"key:{i}" for i in range(keys)))
subprocess.run(["redis-cli", "-p", "7895", "--pipe"], input=load.encode(), check=True, capture_output=True)
time.sleep(0.05)
at = int(time.time() * 1000)
time.sleep(0.05)
changed = "".join(f"*2\r\n$3\r\nDEL\r\n${len(k)}\r\n{k}\r\n" for k in (f"key:{i}" for i in range(0, keys, 10)))
subprocess.run(["redis-cli", "-p", "7895", "--pipe"], input=changed.encode(), check=True, capture_output=True)
c = http.client.HTTPConnection("127.0.0.1", 7795)
def call(method, path, body=None):
    c.request(method, path, body=body, headers={"Host": "localhost"})
    r = c.getresponse()
    data = r.read()
    assert r.status < 300, (r.status, data)
    return json.loads(data) if data[:1] in b"{[" else data
def timed(f):
    start = time.perf_counter()
    out = f()
    return out, time.perf_counter() - start
snap, open_s = timed(lambda: call("POST", "/v1/snapshots", json.dumps({"at": f"{at}.65535"})))
sid = snap["id"]
_, first_s = timed(lambda: call("GET", f"/v1/snapshots/{sid}/kv/key:11"))
def scan(base):
    cursor, n = "0", 0
    while True:
        page = call("GET", f"{base}?limit=10000&cursor={cursor}")
        n += len(page["keys"])
        if page["done"]:
            return n
        cursor = page["cursor"]
n_now, now_s = timed(lambda: scan("/v1/kv"))
n_then, then_s = timed(lambda: scan(f"/v1/snapshots/{sid}/kv"))
print(f"open a snapshot before deleting {keys // 10:,} of {keys:,} keys: {open_s * 1000:.1f} ms; its first read {first_s * 1000:.0f} ms (builds the index back over the deletes)")
# Before the load too: the index must reach back over all 1,100,000 changes.
# A minute without reads of the past first, so the index is dropped.
time.sleep(62)
c = http.client.HTTPConnection("127.0.0.1", 7795)
old, old_open_s = timed(lambda: call("POST", "/v1/snapshots", json.dumps({"at": f"{before_load}.65535"})))
def get_any(path):
    c.request("GET", path, headers={"Host": "localhost"})
    r = c.getresponse()
    r.read()
    assert r.status in (200, 404), r.status
    return r.status
status, old_first_s = timed(lambda: get_any(f"/v1/snapshots/{old['id']}/kv/key:11"))
assert status == 404, "key:11 was not there before the load"

print(f"open a snapshot before the load, after a minute without reads of the past: {old_open_s * 1000:.1f} ms; its first read {old_first_s * 1000:.0f} ms (builds the index back over {keys + keys // 10:,} changes)")
print(f"scan every key: now {n_now:,} keys in {now_s:.2f} s; through the snapshot {n_then:,} keys in {then_s:.2f} s")
# Move it by one second at a time under a write load, reading a key after each move.
load = subprocess.Popen(["redis-benchmark", "-p", "7895", "-c", "10", "-n", "100000000", "-r", "100000", "-t", "set", "-q"],
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
time.sleep(7)
t = int(time.time() * 1000) - 6000
moves = []
for i in range(5):
    start = time.perf_counter()
    call("PATCH", f"/v1/snapshots/{sid}", json.dumps({"at": f"{t + i * 1000}.65535"}))
    call("GET", f"/v1/snapshots/{sid}/kv/key:11")
    moves.append(time.perf_counter() - start)
load.terminate()
print(f"move a snapshot by 1 s under a write load (redis-benchmark SET, 10 clients) and read a key: " + ", ".join(f"{m * 1000:.1f}" for m in moves) + " ms")
PY
