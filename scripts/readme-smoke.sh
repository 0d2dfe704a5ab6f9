#!/usr/bin/env bash
# Runs the README's run command exactly as written (its first sh block), then the commands
# of its "Using it" section against it, checks that the 1,000 records produced come back,
# stops the broker with SIGTERM and expects exit status 0. A newcomer's first command must
# never break unnoticed. Uses the README's defaults: Kafka on 127.0.0.1:9092, HTTP on :9644,
# data in ./data (removed afterwards unless it was there before).
set -euo pipefail
cd "$(dirname "$0")/.."

# The body of the first ```sh block after the line matching $1 ("" for the first block).
sh_block_after() {
  awk -v heading="$1" '
    heading != "" && index($0, heading) == 1 { seen = 1 }
    heading == "" { seen = 1 }
    seen && /^```sh$/ { inside = 1; next }
    inside && /^```$/ { exit }
    inside { print }
  ' README.md
}

RUN=$(sh_block_after "")
USE=$(sh_block_after "## Using it")
[ -n "$RUN" ] && [ -n "$USE" ] || { echo "readme-smoke: README blocks not found" >&2; exit 1; }

for port in 9092 9644; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "readme-smoke: port $port is in use; the README's command needs it" >&2
    exit 1
  fi
done

had_data=false
[ -e data ] && had_data=true
LOG=$(mktemp)
echo "==> $RUN"
# exec: cargo run replaces itself with strata, so this PID is the broker's.
setsid bash -c "exec $RUN" >"$LOG" 2>&1 &
PID=$!
cleanup() {
  kill -9 "$PID" 2>/dev/null || true
  $had_data || rm -rf data
  rm -f "$LOG"
}
trap cleanup EXIT

# The command builds the release binary first: allow for a cold build.
for _ in $(seq 1800); do
  if ! kill -0 "$PID" 2>/dev/null; then
    cat "$LOG" >&2
    echo "readme-smoke: the run command exited before it was ready" >&2
    exit 1
  fi
  python3 - <<'PY' 2>/dev/null && break
import urllib.request
urllib.request.urlopen("http://127.0.0.1:9644/readyz", timeout=1)
PY
  sleep 1
done

echo "==> the \"Using it\" commands"
OUT=$(bash -euo pipefail -c "$USE")
fail() {
  echo "$OUT" | tail -20 >&2
  echo "readme-smoke: $*" >&2
  exit 1
}
grep -qx 1000 <<<"$OUT" || fail "record 1000 did not come back"
[ "$(grep -cxE '[0-9]+' <<<"$OUT")" -ge 1000 ] || fail "fewer than 1000 records came back"
grep -q 'topic "demo" with' <<<"$OUT" || fail "the metadata listing lacks topic demo"

kill -TERM "$PID"
status=0
wait "$PID" || status=$?
tail -3 "$LOG"
if [ "$status" -ne 0 ]; then
  cat "$LOG" >&2
  echo "readme-smoke: the broker exited with $status after SIGTERM" >&2
  exit 1
fi
echo "readme-smoke: passed"
