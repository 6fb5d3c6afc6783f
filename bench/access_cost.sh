#!/usr/bin/env bash
# The cost of auth and of TLS, side by side in one run: three Squall nodes
# (open; with a token; with a token and TLS) get the same warm invokes and
# the same redis-benchmark runs, in alternating order. Prints a markdown
# table of medians and the ratio of each to the open node.
#
# Usage: bench/access_cost.sh     (ROUNDS=5 N=3000 REQUESTS=200000 by default)
# Needs: target/release/squall and target/release/examples/compose_bench
#   (cargo build --release -p squall-cli --example compose_bench),
#   redis-benchmark built with TLS (Debian's redis-tools is), openssl.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS="${ROUNDS:-5}"
N="${N:-3000}"
REQUESTS="${REQUESTS:-200000}"
BENCH="${BENCH:-target/release/examples/compose_bench}"
GUESTS="target/guests/wasm32-wasip2/release"
TOKEN="bench-token-0123456789"
NEEDED="redis-benchmark openssl python3 curl"
# shellcheck source=bench/common.sh
. bench/common.sh
[ -x "$BENCH" ] || { echo "build first: cargo build --release -p squall-cli --example compose_bench" >&2; exit 1; }

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj /CN=localhost \
  -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" -addext "basicConstraints=critical,CA:FALSE" -keyout "$WORK/key.pem" -out "$WORK/cert.pem" 2>/dev/null

# name http-port resp-port flags...
start() {
  local name="$1" http="$2" resp="$3"; shift 3
  SQUALL_LOG=warn "$SQUALL" up --examples --durability async --data-dir "$WORK/$name" \
    --http "127.0.0.1:$http" --resp "127.0.0.1:$resp" "$@" >"$WORK/$name.log" 2>&1 &
  PIDS+=($!)
}
start open 7791 7891
start auth 7792 7892 --token "$TOKEN"
start tls 7793 7893 --token "$TOKEN" --tls-cert "$WORK/cert.pem" --tls-key "$WORK/key.pem"
export SQUALL_CACERT="$WORK/cert.pem"
url() { case "$1" in open) echo http://127.0.0.1:7791 ;; auth) echo http://127.0.0.1:7792 ;; tls) echo https://127.0.0.1:7793 ;; esac; }
for name in open auth tls; do
  for _ in $(seq 1 300); do
    [ "$(curl -s --cacert "$WORK/cert.pem" -o /dev/null -w '%{http_code}' "$(url $name)/healthz")" = 200 ] && break
    sleep 0.1
  done
  for f in blob size; do
    SQUALL_TOKEN="$([ "$name" = open ] || echo "$TOKEN")" "$SQUALL" deploy "$f" "$GUESTS/$f.wasm" --node "$(url $name)" >/dev/null
  done
done

redis_flags() {
  case "$1" in
    open) echo "-p 7891" ;;
    auth) echo "-p 7892 -a $TOKEN" ;;
    tls) echo "-p 7893 -a $TOKEN --tls --cacert $WORK/cert.pem" ;;
  esac
}

OUT="$WORK/results.csv"
echo "node,row,value" >"$OUT"
for round in $(seq 1 "$ROUNDS"); do
  if [ $((round % 2)) -eq 1 ]; then order="open auth tls"; else order="tls auth open"; fi
  for name in $order; do
    echo "[$round/$ROUNDS] $name" >&2
    token=""; [ "$name" = open ] || token="$TOKEN"
    p50=$(SQUALL_TOKEN="$token" "$BENCH" --only single_task --n "$N" --node "$(url $name)" \
      | python3 -c 'import json,sys; print(json.load(sys.stdin)["single_task"]["p50_us"])')
    echo "$name,warm invoke p50 us,$p50" >>"$OUT"
    for p in 1 16; do
      # shellcheck disable=SC2046
      redis-benchmark -h 127.0.0.1 $(redis_flags "$name") -c 50 -n $((REQUESTS * (p == 16 ? 5 : 1))) -P "$p" \
        -r 100000 -t set,get --csv 2>/dev/null | tail -n +2 | tr -d '"' \
        | awk -F, -v n="$name" -v p="$p" '{print n",redis " $1 " P" p " ops/s,"$2}' >>"$OUT"
    done
  done
done

python3 - "$OUT" "$ROUNDS" "$N" "$REQUESTS" <<'PY'
import csv, statistics, sys
path, rounds, n, requests = sys.argv[1:]
rows = list(csv.DictReader(open(path)))
names = ["open", "auth", "tls"]
order = list(dict.fromkeys(r["row"] for r in rows))
def med(node, row):
    v = [float(r["value"]) for r in rows if r["node"] == node and r["row"] == row]
    return statistics.median(v) if v else float("nan")
print(f"Open vs token vs token+TLS, medians of {rounds} alternating rounds; warm invoke: compose_bench --only single_task --n {n}; "
      f"redis-benchmark -c 50 -r 100000 -n {requests} (P16: x5)\n")
print("| row | open | token | ratio | token + TLS | ratio |")
print("|---|---:|---:|---:|---:|---:|")
for row in order:
    o, a, t = (med(x, row) for x in names)
    print(f"| {row} | {o:,.1f} | {a:,.1f} | {a/o:.2f} | {t:,.1f} | {t/o:.2f} |")
PY
