# Shared by the bench scripts that run Squall beside Redis: the ports, the
# binary (built if missing), a work dir, and every server started stopped
# on exit. Source it after `set -euo pipefail` and `cd` to the repo root;
# set NEEDED to the tools the script uses first. Gives SHARD_FLAG and
# wait_ping PORT.
SQUALL="${SQUALL:-target/release/squall}"
REDIS_PORT="${REDIS_PORT:-7379}"
SQUALL_PORT="${SQUALL_PORT:-7380}"
SQUALL_HTTP="${SQUALL_HTTP:-127.0.0.1:7781}"

for b in $NEEDED; do
  command -v "$b" >/dev/null || { echo "missing $b (apt-get install redis-server redis-tools)" >&2; exit 1; }
done
if [ ! -x "$SQUALL" ]; then
  echo "building $SQUALL" >&2
  cargo build --release -p squall-cli >&2
fi

WORK="$(mktemp -d)"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

# `--shards SHARDS` when SHARDS is set.
SHARD_FLAG=()
[ -n "${SHARDS:-}" ] && SHARD_FLAG=(--shards "$SHARDS")

# Waits until the server on port $1 answers PING (30 s at most).
wait_ping() {
  for _ in $(seq 1 300); do
    redis-cli -p "$1" PING >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "server on $1 did not start" >&2; cat "$WORK"/*.log >&2; exit 1
}
