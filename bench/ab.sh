#!/usr/bin/env bash
# Compares two strata binaries on this machine, alternating them so that drift in the
# machine's speed hits both: for each binary, on a fresh standalone broker, consume from the
# in-memory tail, then produce acks=all uncompressed and with lz4, and print MB/s and the
# broker's CPU seconds. Usage: bench/ab.sh OLD_STRATA NEW_STRATA [ROUNDS] [SECONDS]
# (strata-bench comes from a release build in CARGO_TARGET_DIR, as for run.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 2 ] || { echo "usage: bench/ab.sh OLD_STRATA NEW_STRATA [ROUNDS] [SECONDS]" >&2; exit 2; }
OLD="$1" NEW="$2" ROUNDS="${3:-2}" SECS="${4:-15}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/strata-target}"
cargo build --release -p strata-bench >&2
BENCH="$CARGO_TARGET_DIR/release/strata-bench"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/strata-ab.XXXXXX")"
PID=""
trap '[ -n "$PID" ] && kill -9 "$PID" 2>/dev/null; rm -rf "$WORK"' EXIT

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

run() {
  local binary="$1" label="$2" kafka http
  kafka="127.0.0.1:$(free_port)"
  http="127.0.0.1:$(free_port)"
  rm -rf "$WORK/data"
  "$binary" standalone --data-dir "$WORK/data" --listen "$kafka" --http "$http" >>"$WORK/broker.log" 2>&1 &
  PID=$!
  for _ in $(seq 300); do curl -sf "http://$http/readyz" >/dev/null && break; sleep 0.1; done
  local bench=("$BENCH" --bootstrap-servers "$kafka" --json)
  "${bench[@]}" produce --topic tail --partitions 6 --messages 49152 >/dev/null 2>&1
  local tail all lz4
  tail=$("${bench[@]}" consume --topic tail --rewind --duration "$SECS" 2>/dev/null | jq .mb_per_sec)
  all=$("${bench[@]}" produce --topic all --partitions 6 --acks all --duration "$SECS" 2>/dev/null | jq .mb_per_sec)
  lz4=$("${bench[@]}" produce --topic lz4 --partitions 6 --acks all --compression lz4 \
    --duration "$SECS" 2>/dev/null | jq .mb_per_sec)
  local cpu
  cpu=$(awk '{ print ($14 + $15) / 100 }' "/proc/$PID/stat")
  kill -TERM "$PID"
  wait "$PID" || true
  PID=""
  printf '%s tail %.1f MB/s, acks=all %.1f MB/s, lz4 %.1f MB/s, broker CPU %.2f s\n' \
    "$label" "$tail" "$all" "$lz4" "$cpu"
}

for _ in $(seq "$ROUNDS"); do
  run "$OLD" old
  run "$NEW" new
done
