#!/usr/bin/env bash
# Benchmarks Strata on this machine and prints one results table (bench/README.md):
# measures the machine's limits, runs a release `strata standalone` on fresh data
# directories on free 127.0.0.1 ports, drives it with strata-bench, and compares.
# With --storage s3 the broker keeps its log in s3s-fs (an S3 server on loopback, data on
# disk) and the table adds PUTs/s, GETs/s and bytes per PUT. With --cluster it adds a cluster
# (3-member etcd, 1 coordinator, 3 gateways, file:// store) run by bench/cluster_bench.py:
# produce throughput, etcd transactions and bytes per flush commit, and failover time.
# Usage: bench/run.sh [--quick] [--storage file|s3] [--cluster]
set -euo pipefail
cd "$(dirname "$0")/.."

usage() { echo "usage: bench/run.sh [--quick] [--storage file|s3] [--cluster]" >&2; exit 2; }
QUICK=false
STORAGE=file
CLUSTER=false
while (($#)); do
  case "$1" in
    --quick) QUICK=true ;;
    --storage) STORAGE="${2:-}"; shift ;;
    --cluster) CLUSTER=true ;;
    *) usage ;;
  esac
  shift
done
[[ "$STORAGE" == file || "$STORAGE" == s3 ]] || usage
# PRODUCE_CAP: the most messages of 1 KiB a produce row of SECS sends, so that a fast
# machine does not write more than the disk holds (a row stops at SECS or at the cap).
# NEED_GB: free disk the run needs. The produce-all row writes up to the cap (24.6 GB; ~6 GB
# quick) and stays on disk through the cold consume, and compaction rewrites it before the
# flush objects are deleted, so the disk holds up to ~50 GB; every other produce row runs on
# a fresh broker whose data is deleted after it. On a full disk PUTs fail and are retried,
# which stalls producers and ruins the figures.
if $QUICK; then
  SECS=5 PRODUCE_CAP=6000000 COMPACTION_WAIT=150 DD_MB=512 IPERF_SECS=3 NEED_GB=16 DIAL_SECS=5 KILLS=3 SPREAD_MESSAGES=500000
else
  SECS=30 PRODUCE_CAP=24000000 COMPACTION_WAIT=300 DD_MB=2048 IPERF_SECS=10 NEED_GB=60 DIAL_SECS=15 KILLS=10 SPREAD_MESSAGES=3000000
fi
# The cluster rows: a topic spread over the 3 gateways, and etcd's cost at a small and a
# large partition count.
CLUSTER_PARTITIONS=12
ETCD_PARTITIONS="1 10000"
# The latency/cost dial: a light steady load (1 MB/s of 1 KiB messages) at each
# flush.interval.ms, on the local store and with S3-like PUT latency injected.
DIAL_RATE=1000
DIAL_INTERVALS="10 50 100 250 500"
# Steady loads of 1 KiB messages (messages/s) for the latency rows.
STEADY_RATES="10000 50000"
# Partition counts of the spread rows: the same bytes (SPREAD_MESSAGES of 1 KiB) produced as
# Kafka clients send keyless messages, to a topic of each size. The counts take turns for
# SPREAD_ROUNDS rounds and the rows compare medians: on this machine one run of each varies
# by more than the 5% and 10% the targets allow.
SPREAD_PARTITIONS="6 10000"
SPREAD_ROUNDS=3
# msg/s of the paced spread runs: half of what one producer reaches at 6 partitions here,
# and within its reach at 10,000.
SPREAD_RATE=250000
# The tail-consume data set: 48 MiB over 6 partitions, inside the broker's 64 MiB
# in-memory tail, read over and over for SECS.
TAIL_MESSAGES=49152

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/strata-target}"
STRATA="$CARGO_TARGET_DIR/release/strata"
BENCH="$CARGO_TARGET_DIR/release/strata-bench"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/strata-bench.XXXXXX")"
RESULTS="$WORK/results"
mkdir -p "$RESULTS"
FREE_GB=$(($(df --output=avail -k "$WORK" | tail -1) / 1024 / 1024))
if ((FREE_GB < NEED_GB)); then
  echo "bench/run.sh: needs about $NEED_GB GB free under $WORK, only $FREE_GB GB free" >&2
  rm -rf "$WORK"
  exit 1
fi

BROKER_PID=""
IPERF_PID=""
S3_PID=""
DRIVER_PID=""
PEAK_RSS_KB=0

step() { printf '\n==> %s\n' "$*" >&2; }

cleanup() {
  local status=$?
  if ((status != 0)) && [ -s "$WORK/broker.log" ]; then
    echo "bench/run.sh failed; the end of the broker's log:" >&2
    tail -n 40 "$WORK/broker.log" >&2
  fi
  [ -n "$BROKER_PID" ] && stop_broker
  [ -n "$IPERF_PID" ] && kill "$IPERF_PID" 2>/dev/null
  [ -n "$S3_PID" ] && kill "$S3_PID" 2>/dev/null
  # The Python drivers stop their cluster on SIGTERM.
  [ -n "$DRIVER_PID" ] && kill "$DRIVER_PID" 2>/dev/null && wait "$DRIVER_PID"
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Waits until `curl -sf URL` succeeds, at most 30 s.
wait_for() {
  for _ in $(seq 300); do
    curl -sf "$1" >/dev/null && return 0
    sleep 0.1
  done
  echo "timed out waiting for $1" >&2
  return 1
}

# start_broker DATA_DIR PREFIX [FLAG...]: PREFIX names the broker's objects in the S3
# bucket, so a fresh data directory also starts from an empty log in the store; the flags
# go to strata standalone.
start_broker() {
  local data_dir="$1" prefix="$2"
  shift 2
  local storage=()
  if [[ "$STORAGE" == s3 ]]; then
    storage=(--storage "s3://bench/$prefix" --s3-endpoint "http://$S3" --s3-allow-http --s3-path-style)
  fi
  start_standalone --data-dir "$data_dir" "${storage[@]}" "$@"
}

# start_standalone FLAG...: strata standalone on free ports with these flags.
start_standalone() {
  KAFKA="127.0.0.1:$(free_port)"
  HTTP="127.0.0.1:$(free_port)"
  "$STRATA" standalone --listen "$KAFKA" --http "$HTTP" "$@" >>"$WORK/broker.log" 2>&1 &
  BROKER_PID=$!
  wait_for "http://$HTTP/readyz"
}

# Stops the broker, keeping the highest peak RSS (VmHWM) seen over the whole run.
stop_broker() {
  local rss
  rss=$(awk '/^VmHWM:/ { print $2 }' "/proc/$BROKER_PID/status")
  ((rss > PEAK_RSS_KB)) && PEAK_RSS_KB=$rss
  kill -TERM "$BROKER_PID"
  wait "$BROKER_PID" || true
  BROKER_PID=""
}

# metric NAME: the broker's current value of one series (exact name with labels).
metric() {
  curl -sf "http://$HTTP/metrics" | awk -v name="$1" '$1 == name { print $2 }'
}

# broker_cpu: the broker's user and system CPU seconds so far.
broker_cpu() {
  awk -v tck="$(getconf CLK_TCK)" '{ print $14 / tck, $15 / tck }' "/proc/$BROKER_PID/stat"
}

# broker_cpu_since BEFORE: the broker's user and system CPU seconds since broker_cpu said BEFORE.
broker_cpu_since() {
  echo "$(broker_cpu) $1" | awk '{ print $1 - $3, $2 - $4 }'
}

puts_so_far() { metric 'strata_object_store_requests_total{operation="put"}'; }

gets_so_far() {
  echo $(($(metric 'strata_object_store_requests_total{operation="get"}') +
    $(metric 'strata_object_store_requests_total{operation="get_range"}')))
}

bench() { "$BENCH" --bootstrap-servers "$KAFKA" --json "$@"; }

# produce_on_fresh_broker NAME FLAG...: a produce row of SECS (at most PRODUCE_CAP messages)
# to 6 partitions of topic produce-NAME on a fresh broker, with these strata-bench flags;
# writes produce_NAME.json and the broker's CPU seconds, then deletes the broker's data, so
# that the disk holds one row's data at a time.
produce_on_fresh_broker() {
  local name="$1"
  shift
  start_broker "$WORK/fresh" "produce-$name"
  local cpu_before
  cpu_before=$(broker_cpu)
  bench produce --topic "produce-$name" --partitions 6 --duration "$SECS" --messages "$PRODUCE_CAP" \
    "$@" >"$RESULTS/produce_$name.json"
  broker_cpu_since "$cpu_before" >"$RESULTS/produce_${name}_broker_cpu"
  stop_broker
  rm -rf "$WORK/fresh"
  sync
}

# driver SCRIPT ARG...: a Python driver of a cluster (bench/cluster_*.py) with the release
# build, its work files under $WORK; in the background, so that cleanup can stop it.
driver() {
  STRATA_BIN="$STRATA" TMPDIR="$WORK" .venv/bin/python "$@" &
  DRIVER_PID=$!
  wait "$DRIVER_PID"
  DRIVER_PID=""
}

missing=()
command -v iperf3 >/dev/null || missing+=(iperf3)
command -v curl >/dev/null || missing+=(curl)
command -v jq >/dev/null || missing+=(jq)
if ((${#missing[@]})); then
  step "Installing ${missing[*]} with apt-get"
  bash scripts/apt-install.sh "${missing[@]}"
fi
if $CLUSTER && ! { [ -x .venv/bin/python ] && command -v etcd >/dev/null; }; then
  echo "bench/run.sh --cluster needs etcd and .venv (bash scripts/test.sh installs both)" >&2
  exit 1
fi

step "Building strata and strata-bench (release, CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"
cargo build --release -p gateway -p strata-bench

if [[ "$STORAGE" == s3 ]]; then
  if ! command -v s3s-fs >/dev/null; then
    step "Installing s3s-fs 0.14.1 (later versions need a newer rustc)"
    cargo install s3s-fs@0.14.1 --locked --features binary
  fi
  S3="127.0.0.1:$(free_port)"
  mkdir -p "$WORK/s3/bench" # s3s-fs serves each directory as a bucket
  export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench AWS_REGION=us-east-1
  s3s-fs --host "${S3%:*}" --port "${S3#*:}" --access-key bench --secret-key bench "$WORK/s3" \
    >"$WORK/s3s-fs.log" 2>&1 &
  S3_PID=$!
  for _ in $(seq 100); do
    curl -s -o /dev/null "http://$S3/" && break
    sleep 0.1
  done
fi
echo "$STORAGE" >"$RESULTS/storage"

cut -d' ' -f1-3 /proc/loadavg >"$RESULTS/load_start"
df -h --output=source,fstype,size "$WORK" | tail -1 | xargs >"$RESULTS/disk"

step "Machine limit: sequential write with fdatasync, ${DD_MB} MiB on $(cat "$RESULTS/disk")"
# With direct I/O, as the broker's local store writes where the file system takes it (a
# write through the page cache measures the kernel's copy, which varied 5x on one machine).
dd_write() { LC_ALL=C dd if=/dev/zero of="$WORK/dd.bin" $1 2>"$WORK/dd.log"; }
DD_ARGS="bs=4M count=$((DD_MB / 4)) conv=fdatasync"
if dd_write "$DD_ARGS oflag=direct"; then
  DD_ARGS="$DD_ARGS oflag=direct"
else
  dd_write "$DD_ARGS"
fi
echo "$DD_ARGS" >"$RESULTS/dd_args"
rm -f "$WORK/dd.bin"
tail -1 "$WORK/dd.log" >&2
# "N bytes (...) copied, S s, ...": bytes / seconds.
awk '/copied/ { for (i = 1; i <= NF; i++) if ($i == "s,") s = $(i - 1); print $1 / s / 1e6 }' \
  "$WORK/dd.log" >"$RESULTS/fsync_mb_per_sec"

step "Machine limit: loopback TCP, iperf3 single stream, ${IPERF_SECS} s"
IPERF_PORT=$(free_port)
iperf3 -s -p "$IPERF_PORT" >/dev/null 2>&1 &
IPERF_PID=$!
# Retried until the server listens (with -J, iperf3 exits 0 even when it cannot connect).
for _ in $(seq 50); do
  iperf3 -c 127.0.0.1 -p "$IPERF_PORT" -t "$IPERF_SECS" -J >"$WORK/iperf.json" || true
  jq -e .end.sum_received "$WORK/iperf.json" >/dev/null && break
  sleep 0.1
done
kill "$IPERF_PID"
IPERF_PID=""
jq -e '.end.sum_received.bits_per_second / 8e6' "$WORK/iperf.json" >"$RESULTS/loopback_mb_per_sec"

start_broker "$WORK/data" main

# First, while it is the only topic, so its data stays in the broker's in-memory tail.
step "Consume from the in-memory tail (${SECS} s)"
bench produce --topic tail --partitions 6 --messages "$TAIL_MESSAGES" >/dev/null
bench consume --topic tail --rewind --duration "$SECS" >"$RESULTS/consume_tail.json"

step "Produce acks=all, 1 KiB, 6 partitions (${SECS} s)"
puts_before=$(puts_so_far)
flushes_before=$(metric strata_flushes_total)
flush_bytes_before=$(metric strata_flush_bytes_total)
flush_seconds_before=$(metric strata_flush_duration_seconds_sum)
cpu_before=$(broker_cpu)
bench produce --topic produce-all --partitions 6 --acks all --duration "$SECS" --messages "$PRODUCE_CAP" \
  >"$RESULTS/produce_all.json"
echo $(($(puts_so_far) - puts_before)) >"$RESULTS/produce_all_puts"
echo $(($(metric strata_flushes_total) - flushes_before)) >"$RESULTS/produce_all_flushes"
echo $(($(metric strata_flush_bytes_total) - flush_bytes_before)) >"$RESULTS/produce_all_flush_bytes"
echo "$(metric strata_flush_duration_seconds_sum) $flush_seconds_before" | awk '{ print $1 - $2 }' \
  >"$RESULTS/produce_all_flush_seconds"
broker_cpu_since "$cpu_before" >"$RESULTS/produce_all_broker_cpu"

# A catch-up after a restart reads segments once compaction has caught up: wait for it (at
# most COMPACTION_WAIT s), so that the cold consume reads what the target names and does not
# share the disk with compaction. The broker measures the backlog as each pass goes, and a
# pass starts every compaction.interval.ms (10 s by default): the wait is at least that long,
# so the figure it ends on is from a pass that started after the produce.
step "Waiting for compaction to catch up (at most ${COMPACTION_WAIT} s)"
compaction_interval_secs=10
waited=0
until ((waited >= COMPACTION_WAIT)) || { ((waited > compaction_interval_secs)) &&
  awk -v b="$(metric strata_compaction_backlog_bytes)" 'BEGIN { exit !(b == 0) }'; }; do
  sleep 1
  waited=$((waited + 1))
done
echo "$waited $(metric strata_compaction_backlog_bytes)" >"$RESULTS/compaction_wait"

step "Consume cold after a broker restart: all of produce-all"
stop_broker
start_broker "$WORK/data" main
gets_before=$(gets_so_far)
bench consume --topic produce-all >"$RESULTS/consume_cold.json"
echo $(($(gets_so_far) - gets_before)) >"$RESULTS/consume_cold_gets"
step "Consume the same again, the read cache warm"
bench consume --topic produce-all >"$RESULTS/consume_warm.json"
stop_broker
# Nothing reads this data again, and its compaction backlog would hold the disk. The
# latency rows start on a fresh broker, so the disk holds one phase's data at a time (the
# deletion may stall the disk at their start: they have no targets, the steady rows do).
rm -rf "$WORK/data"
sync

step "Produce acks=1 (${SECS} s)"
produce_on_fresh_broker one --acks 1
# The same durable produce from strata-bench's lean producer, which spends a fraction of
# librdkafka's CPU per GB: on two cores shared with the broker, librdkafka's own CPU caps
# the acks=all row, and this one measures what the broker takes.
step "Produce acks=all, lean producer, 1 KiB, 6 partitions (${SECS} s)"
produce_on_fresh_broker lean --acks all --client lean --partitioner sticky

start_broker "$WORK/data" latency

# Half of the measured acks=all maximum, in messages per second.
RATE=$(jq '.messages_per_sec / 2 | round' "$RESULTS/produce_all.json")
echo "$RATE" >"$RESULTS/half_rate"

step "Produce latency at 50% load, $RATE msg/s (${SECS} s)"
bench produce --topic latency --partitions 6 --rate "$RATE" --duration "$SECS" >"$RESULTS/produce_latency.json"

# The same load without waiting for flushes: what the client, the broker and the machine
# add before any durability wait, as a reference for the acks=all row.
step "Produce latency acks=1 at 50% load, $RATE msg/s (${SECS} s)"
bench produce --topic latency-one --partitions 6 --acks 1 --rate "$RATE" --duration "$SECS" \
  >"$RESULTS/produce_latency_one.json"

step "End-to-end latency at 50% load, $RATE msg/s (${SECS} s)"
bench e2e --topic e2e --partitions 6 --rate "$RATE" --duration "$SECS" >"$RESULTS/e2e_latency.json"
stop_broker

# Steady loads, each on a fresh broker so that no other topic's compaction falls into the
# window (its own does, in a full run). Their data directories are removed only afterwards:
# deleting gigabytes just before would stall the disk inside the window.
for rate in $STEADY_RATES; do
  step "Produce latency acks=all at a steady $rate msg/s (${SECS} s)"
  start_broker "$WORK/steady-$rate" "steady-$rate"
  bench produce --topic steady --partitions 6 --rate "$rate" --duration "$SECS" \
    >"$RESULTS/steady_produce_$rate.json"
  step "End-to-end latency at a steady $rate msg/s (${SECS} s)"
  bench e2e --topic steady-e2e --partitions 6 --rate "$rate" --duration "$SECS" \
    >"$RESULTS/steady_e2e_$rate.json"
  stop_broker
done
echo "$STEADY_RATES" >"$RESULTS/steady_rates"
rm -rf "$WORK"/steady-*

# Each count at full speed from librdkafka, then paced to SPREAD_RATE, then at full speed
# from the lean producer. A local store flushes as soon as the previous flush is done, so its
# PUTs/s follow the producer's rate: librdkafka's rate falls with the partition count (its
# own CPU per GB rises), the lean producer's shows whether the broker's does.
for round in $(seq "$SPREAD_ROUNDS"); do
  for partitions in $SPREAD_PARTITIONS; do
    for pace in full paced lean; do
      step "Produce acks=all, $SPREAD_MESSAGES messages of 1 KiB, sticky partitioner, $partitions partitions, $pace (round $round of $SPREAD_ROUNDS)"
      name="spread_${pace}_${partitions}_$round"
      rm -rf "$WORK/data"
      start_broker "$WORK/data" "$name"
      before=$(puts_so_far)
      cpu_before=$(broker_cpu)
      how=()
      [[ $pace == paced ]] && how=(--rate "$SPREAD_RATE")
      [[ $pace == lean ]] && how=(--client lean)
      bench produce --topic spread --partitions "$partitions" --partitioner sticky \
        --messages "$SPREAD_MESSAGES" "${how[@]}" >"$RESULTS/$name.json"
      echo $(($(puts_so_far) - before)) >"$RESULTS/${name}_puts"
      broker_cpu_since "$cpu_before" >"$RESULTS/${name}_broker_cpu"
      stop_broker
    done
  done
done
rm -rf "$WORK/data"
echo "$SPREAD_PARTITIONS" >"$RESULTS/spread_partitions"
echo "$SPREAD_ROUNDS" >"$RESULTS/spread_rounds"
echo "$SPREAD_RATE" >"$RESULTS/spread_rate"

# The broker inflates every compressed batch to check its records: what that costs.
for codec in lz4 snappy; do
  step "Produce acks=all, $codec (${SECS} s)"
  produce_on_fresh_broker "$codec" --acks all --compression "$codec"
done

# Each partition count on a fresh broker, so that no other topic's compaction PUTs fall
# into the window.
for partitions in 1 100 1000; do
  step "Object-store PUTs at $partitions partitions, $RATE msg/s (${SECS} s)"
  rm -rf "$WORK/data"
  start_broker "$WORK/data" "puts-$partitions"
  before=$(puts_so_far)
  bench produce --topic puts --partitions "$partitions" --rate "$RATE" --duration "$SECS" \
    >"$RESULTS/puts_$partitions.json"
  after=$(puts_so_far)
  echo $((after - before)) >"$RESULTS/puts_$partitions"
  stop_broker
done
# The latency/cost dial, always on a local directory: as it is, and made to answer PUTs as S3
# does (the simulate.put.latency.* settings wrap it in the fault injector).
for store in local simulated-s3; do
  for interval in $DIAL_INTERVALS; do
    step "Latency/cost dial: $store, flush.interval.ms $interval, $DIAL_RATE msg/s (${DIAL_SECS} s)"
    rm -rf "$WORK/dial"
    mkdir -p "$WORK/dial"
    echo "\"flush.interval.ms\" = $interval" >"$WORK/dial/strata.toml"
    if [[ "$store" == simulated-s3 ]]; then
      printf '"simulate.put.latency.p50.ms" = 50\n"simulate.put.latency.p99.ms" = 300\n' \
        >>"$WORK/dial/strata.toml"
    fi
    start_standalone --data-dir "$WORK/dial/data" --config "$WORK/dial/strata.toml"
    before=$(puts_so_far)
    bench e2e --topic dial --partitions 6 --rate "$DIAL_RATE" --duration "$DIAL_SECS" \
      >"$RESULTS/dial_${store}_$interval.json"
    echo $(($(puts_so_far) - before)) >"$RESULTS/dial_${store}_${interval}_puts"
    stop_broker
  done
done
echo "$DIAL_INTERVALS" >"$RESULTS/dial_intervals"

if $CLUSTER; then
  # The standalone rows are done: their disk goes to the cluster's.
  rm -rf "$WORK/data" "$WORK/dial"
  step "Cluster: produce acks=all, 1 KiB, $CLUSTER_PARTITIONS partitions over 3 gateways (${SECS} s)"
  driver bench/cluster_bench.py --strata-bench "$BENCH" --partitions "$CLUSTER_PARTITIONS" \
    --seconds "$SECS" "$RESULTS/cluster_produce.json"
  for partitions in $ETCD_PARTITIONS; do
    step "Cluster: etcd transactions at $partitions partitions, $RATE msg/s (${SECS} s)"
    driver bench/cluster_bench.py --strata-bench "$BENCH" --partitions "$partitions" \
      --rate "$RATE" --seconds "$SECS" "$RESULTS/cluster_etcd_$partitions.json"
  done
  echo "$ETCD_PARTITIONS" >"$RESULTS/etcd_partitions"
  step "Cluster: failover after kill -9 of a gateway, $KILLS kills"
  driver bench/cluster_failover.py --kills "$KILLS" --json "$RESULTS/cluster_failover.json" >&2
fi

echo "$PEAK_RSS_KB" >"$RESULTS/peak_rss_kb"
cut -d' ' -f1-3 /proc/loadavg >"$RESULTS/load_end"

step "Results"
python3 bench/report.py "$RESULTS" "$($QUICK && echo quick || echo full)"
