#!/usr/bin/env bash
# What authorization costs on the hot paths: produce (acks=all) and consume from the
# in-memory tail on a fresh standalone broker, alternately without an authorizer and with
# one (StandardAuthorizer, every request decided by ACLs: the bench's principal,
# User:ANONYMOUS, is not a super user, and 1,000 literal and 100 prefixed ACLs of other users
# sit beside its own). Prints MB/s and the broker's CPU seconds per round.
# Usage: bench/acl.sh [ROUNDS] [SECONDS]; STRATA and BENCH name the binaries (default: release
# builds in CARGO_TARGET_DIR), PYTHON one with confluent-kafka (creates the ACLs).
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS="${1:-2}" SECS="${2:-15}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/strata-target}"
STRATA="${STRATA:-$CARGO_TARGET_DIR/release/strata}"
BENCH="${BENCH:-$CARGO_TARGET_DIR/release/strata-bench}"
PYTHON="${PYTHON:-.venv/bin/python}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/strata-acl.XXXXXX")"
PID=""
trap '[ -n "$PID" ] && kill -9 "$PID" 2>/dev/null; rm -rf "$WORK"' EXIT

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# The ACLs of the "on" runs, created through the broker itself: with
# allow.everyone.if.no.acl.found the first ones may be created by anyone, and once they exist
# every resource the bench uses is decided by them.
create_acls() {
  "$PYTHON" - "$1" <<'EOF'
import sys
from confluent_kafka.admin import (AclBinding, AclOperation, AclPermissionType, AdminClient,
                                   ResourcePatternType, ResourceType)
admin = AdminClient({"bootstrap.servers": sys.argv[1]})
me = "User:ANONYMOUS"
literal, prefixed = ResourcePatternType.LITERAL, ResourcePatternType.PREFIXED
allow = AclPermissionType.ALLOW
acls = [AclBinding(ResourceType.BROKER, "kafka-cluster", literal, me, "*", AclOperation.ALL, allow),
        AclBinding(ResourceType.GROUP, "*", literal, me, "*", AclOperation.READ, allow)]
for topic in ("tail", "all"):
    for op in (AclOperation.READ, AclOperation.WRITE, AclOperation.CREATE):
        acls.append(AclBinding(ResourceType.TOPIC, topic, literal, me, "*", op, allow))
acls += [AclBinding(ResourceType.TOPIC, f"other-{i}", literal, f"User:u{i}", "*",
                    AclOperation.READ, allow) for i in range(1000)]
acls += [AclBinding(ResourceType.TOPIC, f"team-{i}.", prefixed, f"User:t{i}", "*",
                    AclOperation.WRITE, allow) for i in range(100)]
for future in admin.create_acls(acls).values():
    future.result(timeout=30)
EOF
}

run() {
  local mode="$1" kafka http
  kafka="127.0.0.1:$(free_port)"
  http="127.0.0.1:$(free_port)"
  rm -rf "$WORK/data"
  : >"$WORK/strata.toml"
  if [ "$mode" = on ]; then
    printf '%s\n' '"authorizer.class.name" = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"' \
      '"allow.everyone.if.no.acl.found" = true' >"$WORK/strata.toml"
  fi
  "$STRATA" standalone --data-dir "$WORK/data" --listen "$kafka" --http "$http" \
    --config "$WORK/strata.toml" >>"$WORK/broker.log" 2>&1 &
  PID=$!
  for _ in $(seq 300); do curl -sf "http://$http/readyz" >/dev/null && break; sleep 0.1; done
  [ "$mode" = on ] && create_acls "$kafka"
  local bench=("$BENCH" --bootstrap-servers "$kafka" --json)
  "${bench[@]}" produce --topic tail --partitions 6 --messages 49152 >/dev/null 2>&1
  local tail all cpu
  tail=$("${bench[@]}" consume --topic tail --rewind --duration "$SECS" 2>/dev/null | jq .mb_per_sec)
  all=$("${bench[@]}" produce --topic all --partitions 6 --acks all --duration "$SECS" 2>/dev/null | jq .mb_per_sec)
  cpu=$(awk '{ print ($14 + $15) / 100 }' "/proc/$PID/stat")
  kill -TERM "$PID"
  wait "$PID" || true
  PID=""
  printf 'authorizer %-3s consume tail %.1f MB/s, produce acks=all %.1f MB/s, broker CPU %.2f s\n' \
    "$mode" "$tail" "$all" "$cpu"
}

for _ in $(seq "$ROUNDS"); do
  run off
  run on
done
