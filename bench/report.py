"""Prints bench/run.sh's results as one Markdown table, each row with its limit, ratio and
target (bench/README.md). Usage: report.py RESULTS_DIR MODE"""

import json
import os
import statistics
import subprocess
import sys
from datetime import datetime, timezone

results, mode = sys.argv[1], sys.argv[2]


def read(name):
    with open(os.path.join(results, name)) as f:
        return f.read().strip()


def report(name):
    return json.loads(read(name + ".json"))


def mbps(value):
    return f"{value:,.1f} MB/s"


def errors(*runs):
    count = sum(r["errors"] for r in runs)
    return f" ({count} errors)" if count else ""


def met(ok):
    return "met" if ok else "**missed**"


def median_and_range(values, unit):
    return f"{statistics.median(values):,.1f}{unit} ({min(values):,.1f}–{max(values):,.1f})"


fsync = float(read("fsync_mb_per_sec"))
loopback = float(read("loopback_mb_per_sec"))
produce_limit = min(fsync, 0.4 * loopback)
rows = [
    (f"fsync write (dd {read('dd_args')})", mbps(fsync), "", "", "", ""),
    ("loopback TCP (iperf3, one stream)", mbps(loopback), "", "", "", ""),
]


def cpu_per_gb(r, broker_seconds):
    """The client's and the broker's CPU seconds per GB of one run."""
    gigabytes = r["bytes"] / 1e9
    return (r["cpu_seconds"]["user"] + r["cpu_seconds"]["system"]) / gigabytes, broker_seconds / gigabytes


def broker_cpu(name):
    return sum(float(v) for v in read(f"{name}_broker_cpu").split())


# Durable produce from librdkafka, then from the lean producer: the target is on the lean
# row, because on two cores shared with the broker librdkafka's own CPU per GB caps the other.
limit_text = f"{mbps(produce_limit)} = min(fsync, 0.4 × loopback)"
produce_all = report("produce_all")
rows.append(("produce acks=all, 1 KiB, 6 partitions (librdkafka)",
             mbps(produce_all["mb_per_sec"]) + errors(produce_all),
             limit_text, f"{produce_all['mb_per_sec'] / produce_limit:.2f}", "", ""))
# What the flusher and the broker's CPU did in that row: a slow disk shows as fewer, larger
# and longer flushes, a costly write path as more CPU per GB.
flushes = int(read("produce_all_flushes"))
flush_bytes = int(read("produce_all_flush_bytes"))
flush_seconds = float(read("produce_all_flush_seconds"))
user, system = (float(v) for v in read("produce_all_broker_cpu").split())
gigabytes = produce_all["bytes"] / 1e9
rows.append(("flushes and broker CPU during produce acks=all",
             f"{flushes:,} flushes of {flush_bytes / max(flushes, 1) / 2**20:,.2f} MiB, "
             f"{flush_seconds / max(flushes, 1) * 1000:,.1f} ms each on average; broker CPU "
             f"{user / gigabytes:,.2f} s user, {system / gigabytes:,.2f} s system per GB", "", "", "", ""))
produce_lean = report("produce_lean")
ratio = produce_lean["mb_per_sec"] / produce_limit
rows.append(("produce acks=all, 1 KiB, 6 partitions, lean producer",
             mbps(produce_lean["mb_per_sec"]) + errors(produce_lean),
             limit_text, f"{ratio:.2f}", "≥ 0.90", met(ratio >= 0.9)))
rows.append(("CPU per GB, librdkafka and lean producer",
             "librdkafka: client {:.2f} s, broker {:.2f} s; lean: client {:.2f} s, broker {:.2f} s".format(
                 *cpu_per_gb(produce_all, broker_cpu("produce_all")),
                 *cpu_per_gb(produce_lean, broker_cpu("produce_lean"))),
             "", "", "", ""))
produce_one = report("produce_one")
rows.append(("produce acks=1", mbps(produce_one["mb_per_sec"]) + errors(produce_one), mbps(produce_limit),
             f"{produce_one['mb_per_sec'] / produce_limit:.2f}", "", ""))

for codec in ("lz4", "snappy"):
    r = report(f"produce_{codec}")
    rows.append((f"produce acks=all, {codec} (records inflated and checked)", mbps(r["mb_per_sec"]) + errors(r),
                 "produce acks=all", f"{r['mb_per_sec'] / produce_all['mb_per_sec']:.2f}", "", ""))

tail = report("consume_tail")
ratio = tail["mb_per_sec"] / loopback
rows.append(("consume from the in-memory tail", mbps(tail["mb_per_sec"]) + errors(tail), "loopback",
             f"{ratio:.2f}", "≥ 0.40", met(ratio >= 0.4)))
cold = report("consume_cold")
ratio = cold["mb_per_sec"] / loopback
waited, backlog = (int(v) for v in read("compaction_wait").split())
compacted = (f"all in segments after {waited} s" if backlog == 0
             else f"{backlog / 1e6:,.0f} MB still in flush objects after {waited} s")
rows.append((f"consume cold after a restart ({cold['bytes'] / 1e6:,.0f} MB, {compacted})",
             mbps(cold["mb_per_sec"]) + errors(cold),
             "loopback", f"{ratio:.2f}", "≥ 0.40", met(ratio >= 0.4)))
warm = report("consume_warm")
rows.append(("consume the same again, read cache warm", mbps(warm["mb_per_sec"]) + errors(warm),
             "loopback", f"{warm['mb_per_sec'] / loopback:.2f}", "", ""))

def percentiles(latency):
    return f"p50 {latency['p50_ms']:.1f} ms, p99 {latency['p99_ms']:.1f} ms"


# At half the measured maximum the client itself is the floor on two cores: reference rows,
# the latency targets are at the steady rates below.
rate = int(read("half_rate"))
for name, label, kind in [
    ("produce_latency", "produce latency acks=all", "ack"),
    ("produce_latency_one", "produce latency acks=1 (reference: no flush wait)", "ack"),
    ("e2e_latency", "end-to-end latency", "e2e"),
]:
    r = report(name)
    rows.append((f"{label} at 50% load ({rate:,} msg/s)", percentiles(r["latency"][kind]) + errors(r),
                 f"achieved {mbps(r['mb_per_sec'])}", "", "", ""))

# Steady loads: acks=all p99 targets by rate, end-to-end at 10,000 msg/s.
for rate in (int(r) for r in read("steady_rates").split()):
    for kind, label, target in [
        ("produce", "produce latency acks=all", 15 if rate <= 10000 else 20),
        ("e2e", "end-to-end latency", 20 if rate <= 10000 else None),
    ]:
        r = report(f"steady_{kind}_{rate}")
        latency = r["latency"]["ack" if kind == "produce" else "e2e"]
        rows.append((f"{label} at a steady {rate:,} msg/s", percentiles(latency) + errors(r),
                     f"achieved {mbps(r['mb_per_sec'])}", "",
                     f"p99 ≤ {target} ms" if target else "",
                     met(latency["p99_ms"] <= target) if target else ""))

# The same bytes to 6 and to 10,000 partitions (sticky partitioner), the counts taking turns
# for several rounds: medians of throughput and PUTs/s, with each one's range, and the CPU per
# GB of the client and of the broker (which of them the partition count costs). Three ways:
# librdkafka at full speed, librdkafka paced (PUTs/s at one rate), and the lean producer at
# full speed, which carries the targets: with it the broker, not the client, sets the rate.
rounds = range(1, int(read("spread_rounds")) + 1)
spread_rate = int(read("spread_rate"))
spread_partitions = [int(p) for p in read("spread_partitions").split()]


def spread_runs(pace, partitions):
    """Each round's report of one pace and count, with its PUTs/s and CPU per GB."""
    runs = []
    for n in rounds:
        name = f"spread_{pace}_{partitions}_{n}"
        r = report(name)
        r["puts_per_sec"] = int(read(f"{name}_puts")) / r["seconds"]
        r["client_cpu"], r["broker_cpu"] = cpu_per_gb(r, broker_cpu(name))
        runs.append(r)
    return runs


for pace, how in [("full", "librdkafka"), ("paced", f"librdkafka paced to {spread_rate:,} msg/s"),
                  ("lean", "lean producer")]:
    first = None
    for partitions in spread_partitions:
        runs = spread_runs(pace, partitions)
        mb = statistics.median(r["mb_per_sec"] for r in runs)
        puts = statistics.median(r["puts_per_sec"] for r in runs)
        label = (f"produce acks=all, {runs[0]['bytes'] / 1e9:,.1f} GB, sticky partitioner, {how}, "
                 f"{partitions:,} partitions (median of {len(runs)}, range)")
        result = (f"{median_and_range([r['mb_per_sec'] for r in runs], ' MB/s')}, "
                  f"{median_and_range([r['puts_per_sec'] for r in runs], ' PUTs/s')}; CPU per GB: client "
                  f"{median_and_range([r['client_cpu'] for r in runs], ' s')}, broker "
                  f"{median_and_range([r['broker_cpu'] for r in runs], ' s')}{errors(*runs)}")
        if first is None:
            first = (partitions, mb, puts)
            rows.append((label, result, "", "", "", ""))
            continue
        first_partitions, first_mb, first_puts = first
        targets = pace == "lean"
        rows.append((label, result, f"MB/s at {first_partitions} partitions", f"{mb / first_mb:.2f}",
                     "≥ 0.95" if targets else "", met(mb / first_mb >= 0.95) if targets else ""))
        rows.append((f"PUTs/s, {how}, {partitions:,} partitions (same bytes)", f"{puts:,.1f}/s",
                     f"{first_puts:,.1f}/s at {first_partitions} partitions", f"{puts / first_puts:.2f}",
                     "within ±10%" if targets else "",
                     met(abs(puts / first_puts - 1) <= 0.1) if targets else ""))

puts = {}
for partitions in (1, 100, 1000):
    r = report(f"puts_{partitions}")
    puts[partitions] = int(read(f"puts_{partitions}")) / r["seconds"]
    ratio = puts[partitions] / puts[1]
    rows.append((f"object-store PUTs/s, {partitions} partition{'s' if partitions > 1 else ''}",
                 f"{puts[partitions]:,.1f}/s at {mbps(r['mb_per_sec'])}, ack {percentiles(r['latency']['ack'])}"
                 f"{errors(r)}",
                 "PUTs/s at 1 partition", f"{ratio:.2f}",
                 "within ±10%" if partitions == 1000 else "",
                 met(abs(ratio - 1) <= 0.1) if partitions == 1000 else ""))

storage = read("storage")
if storage == "s3":
    # Object-store traffic of the acks=all produce row and of the cold consume row.
    puts = int(read("produce_all_puts"))
    rows.append(("S3 PUTs/s during produce acks=all", f"{puts / produce_all['seconds']:,.1f}/s", "", "", "", ""))
    gets = int(read("consume_cold_gets"))
    rows.append(("S3 GETs/s during the cold consume", f"{gets / cold['seconds']:,.1f}/s "
                 f"({cold['bytes'] / max(gets, 1) / 2**20:,.2f} MiB per GET)", "", "", "", ""))

# S3 Standard: $0.005 per 1,000 PUTs; a month of 30 days.
PUT_DOLLARS = 0.005 / 1000
MONTH_SECS = 30 * 24 * 3600
for store in ("local", "simulated-s3"):
    for interval in read("dial_intervals").split():
        r = report(f"dial_{store}_{interval}")
        puts_per_sec = int(read(f"dial_{store}_{interval}_puts")) / r["seconds"]
        label = "local directory" if store == "local" else "local + S3-like PUT latency (p50 50, p99 300 ms)"
        rows.append((f"dial: flush.interval.ms {interval}, {label}",
                     f"ack {percentiles(r['latency']['ack'])}; e2e {percentiles(r['latency']['e2e'])}{errors(r)}",
                     f"{puts_per_sec:,.1f} PUTs/s", f"${puts_per_sec * PUT_DOLLARS * MONTH_SECS:,.0f}/month", "", ""))

if os.path.exists(os.path.join(results, "cluster_failover.json")):
    cluster = report("cluster_produce")
    led = "/".join(str(n) for n in cluster["partitions_per_gateway"])
    rows.append((f"cluster produce acks=all, 1 KiB, 12 partitions over 3 gateways ({led})",
                 mbps(cluster["mb_per_sec"]) + errors(cluster), "standalone produce acks=all",
                 f"{cluster['mb_per_sec'] / produce_all['mb_per_sec']:.2f}", "", ""))
    # etcd's default --max-request-bytes.
    etcd_limit = 1.5 * 2**20
    for partitions in read("etcd_partitions").split():
        r = report(f"cluster_etcd_{partitions}")
        etcd = r["etcd"]
        per_commit = etcd["gateway_transaction_bytes"] / max(etcd["gateway_transactions"], 1)
        largest = etcd["largest_bytes_at_most"]
        ratio = largest / etcd_limit
        rows.append((f"etcd transactions, cluster, {int(partitions):,} partition{'s' if partitions != '1' else ''} "
                     f"at {mbps(r['mb_per_sec'])}",
                     f"{etcd['transactions'] / r['seconds']:,.1f} txn/s ({etcd['flushes'] / r['seconds']:,.1f} "
                     f"flushes/s); {per_commit:,.0f} B per gateway txn, largest ≤ {largest / 1024:,.1f} KiB"
                     f"{errors(r)}",
                     "1.5 MiB per request", f"≤ {ratio:.2g}", "≤ 1.00", met(ratio <= 1)))
    failover = report("cluster_failover")
    moved, accepted = failover["moved"], failover["accepted"]
    rows.append((f"cluster failover after kill -9 of a gateway ({len(moved)} kills)",
                 f"new leaders p50 {statistics.median(moved):.2f} s, max {max(moved):.2f} s; produce "
                 f"accepted p50 {statistics.median(accepted):.2f} s, max {max(accepted):.2f} s",
                 f"session timeout {failover['session_timeout_ms'] / 1000:g} s", "", "max ≤ 5 s",
                 met(max(accepted) <= 5)))

rss_mib = int(read("peak_rss_kb")) / 1024
rows.append(("peak broker RSS (VmHWM)", f"{rss_mib:,.0f} MiB", "512 MiB", f"{rss_mib / 512:.2f}", "≤ 1.00",
             met(rss_mib <= 512)))

commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                       text=True).stdout.strip()
with open("/proc/meminfo") as f:
    memory_gib = int(f.readline().split()[1]) / 2**20
print(f"{mode} run, storage {storage}, {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, commit {commit}{' (modified)' if dirty else ''}")
print(f"machine: {os.cpu_count()} cores, {memory_gib:.0f} GiB memory, disk {read('disk')}")
print(f"load average (1, 5, 15 min): {read('load_start')} at the start, {read('load_end')} at the end")
print()
header = ("measurement", "result", "limit", "ratio", "target", "")
print("| " + " | ".join(header) + " |")
print("|" + "---|" * len(header))
for row in rows:
    print("| " + " | ".join(row) + " |")
