#!/usr/bin/env bash
# Squall's task benchmarks side by side with Ray and Dask in one run: the
# peers' run_all.sh loop (round-robin, REPEATS times), with Squall from a
# native client and from a Python client as two more columns, then the
# ratios against the faster peer. Needs the peers' venv
# (../shared/peers/setup.sh). ~7 minutes with REPEATS=3 on 2 cores.
#   bench/compose_compare.sh             # REPEATS=3
#   REPEATS=1 bench/compose_compare.sh
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PEERS="${PEERS:-$ROOT/../shared/peers}"
cd "$ROOT"
cargo build --release --locked -p squall-cli --bin squall --example compose_bench
OUTDIR="$ROOT/bench/results/compose-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$OUTDIR"
export OUTDIR
REPEATS="${REPEATS:-3}" BENCHES="${BENCHES-dask ray}" \
EXTRA_BENCHES="squall-native=$ROOT/bench/compose_node.sh $ROOT/target/release/examples/compose_bench;squall-python=$ROOT/bench/compose_node.sh python3 $ROOT/bench/squall_tasks.py" \
  "$PEERS/run_all.sh"
python3 "$ROOT/bench/compose_ratios.py" "$OUTDIR/medians.json" | tee "$OUTDIR/ratios.md"
