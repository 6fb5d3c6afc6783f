#!/usr/bin/env bash
# Issue 16 side by side in one run: Squall's Python functions and client
# (bench/python_map.py against a fresh release node, started by
# bench/compose_node.sh) and the peers' Ray and
# Dask benches (../shared/peers, their map of a trivial Python function over
# 10,000 inputs), round-robin REPEATS times, then the medians and ratios.
# Needs the peers' venv (../shared/peers/setup.sh) and componentize-py on
# the PATH (or $SQUALL_COMPONENTIZE_PY). ~3 minutes a round on 2 cores.
#   bench/python_compare.sh              # REPEATS=3
#   REPEATS=1 BIG=100000 bench/python_compare.sh
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PEERS="${PEERS:-$ROOT/../shared/peers}"
cd "$ROOT"
cargo build --release --locked -p squall-cli --bin squall
SQUALL="$ROOT/target/release/squall"
VENV="$ROOT/target/bench-client-venv"
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/pip" install -q --disable-pip-version-check --force-reinstall --no-deps ./clients/python
"$VENV/bin/pip" install -q --disable-pip-version-check ./clients/python
OUT="$ROOT/bench/results/python-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$OUT"

ours() {
  SQUALL="$SQUALL" bench/compose_node.sh "$VENV/bin/python" bench/python_map.py --squall "$SQUALL" --big "${BIG:-1000000}" > "$1"
}

for r in $(seq 1 "${REPEATS:-3}"); do
  echo "round $r: squall" >&2; ours "$OUT/squall.$r.json"
  echo "round $r: ray" >&2; "$PEERS/.venv/bin/python" "$PEERS/ray_bench.py" > "$OUT/ray.$r.json" 2> "$OUT/ray.$r.log"
  echo "round $r: dask" >&2; "$PEERS/.venv/bin/python" "$PEERS/dask_bench.py" > "$OUT/dask.$r.json" 2> "$OUT/dask.$r.log"
done

python3 - "$OUT" <<'PY' | tee "$OUT/summary.md"
import glob, json, statistics, sys
out = sys.argv[1]
def runs(label):
    return [json.load(open(f)) for f in sorted(glob.glob(f"{out}/{label}.*.json"))]
def med(xs):
    return statistics.median(xs), min(xs), max(xs)
s, ray, dask = runs("squall"), runs("ray"), runs("dask")
def row(name, xs, fmt="{:,.0f}"):
    m, lo, hi = med(xs)
    print(f"| {name} | {fmt.format(m)} ({fmt.format(lo)}-{fmt.format(hi)}) |")
print(f"median (min-max) of {len(s)} rounds\n\n| metric | value |\n|---|---:|")
row("deploy, first Python function, s (runtime built, node compiles it)", [x["deploy_first_s"] for x in s], "{:.2f}")
row("deploy, second Python function, s", [x["deploy_second_s"] for x in s], "{:.2f}")
row("node RSS, first Python function, MiB", [x["rss_first_python_function_mib"] for x in s], "{:.1f}")
row("node RSS, second Python function, MiB", [x["rss_second_python_function_mib"] for x in s], "{:.1f}")
row("node RSS per further Python function, MiB", [x["rss_per_further_python_function_mib"] for x in s], "{:.1f}")
for lang in ("rust", "python", "rust_spaced", "python_spaced"):
    row(f"warm invoke p50, us, {lang}", [x["warm_invoke"][lang]["p50_us"] for x in s])
    row(f"warm invoke p99, us, {lang}", [x["warm_invoke"][lang]["p99_us"] for x in s])
row("client.map 10k, tasks/s", [x["map_10k"]["tasks_per_s"] for x in s])
row(f"client.map {s[0]['map_1m']['n']:,}, tasks/s", [x["map_1m"]["tasks_per_s"] for x in s])
row("Ray map 10k, tasks/s", [x["map_10k"]["tasks_per_s"] for x in ray])
row("Dask map 10k, tasks/s", [x["map_10k"]["tasks_per_s"] for x in dask])
peer = max(med([x["map_10k"]["tasks_per_s"] for x in ray])[0], med([x["map_10k"]["tasks_per_s"] for x in dask])[0])
ours10k = med([x["map_10k"]["tasks_per_s"] for x in s])[0]
ours1m = med([x["map_1m"]["tasks_per_s"] for x in s])[0]
print(f"\nclient.map 10k / the faster peer's map 10k: {ours10k / peer:.1f}x; client.map {s[0]['map_1m']['n']:,} / the same: {ours1m / peer:.1f}x")
PY
