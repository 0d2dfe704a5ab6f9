"""Produce throughput and metadata-store cost of a Strata cluster, for `bench/run.sh
--cluster`: starts a 3-member etcd, 1 coordinator and 3 gateways on loopback sharing one
`file://` store (the cluster tests' harness), creates a topic, runs `strata-bench produce`
bootstrapped from every gateway, and writes strata-bench's JSON report with the etcd
transactions of the run added, from the `/metrics` of each process before and after: the
count over every process, the gateways' request bytes and flushes, and the upper bound of
the histogram bucket that holds the largest transaction a gateway sent.

Usage: .venv/bin/python bench/cluster_bench.py --strata-bench PATH --partitions N
           --seconds S [--rate MSGS_PER_SEC] OUT.json
Uses $STRATA_BIN, else the release build in $CARGO_TARGET_DIR (default
~/.cache/strata-target).
"""

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import urllib.request
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "clients"))

from cluster_harness import Cluster, leaders  # noqa: E402
from strata_harness import create_topic  # noqa: E402

TOPIC = "cluster-bench"
COUNTERS = {
    "transactions": "strata_metadata_store_transactions_total",
    "transaction_bytes": "strata_metadata_store_transaction_bytes_total",
    "flushes": "strata_flushes_total",
}
SIZE_BUCKET = re.compile(r'strata_metadata_store_transaction_size_bytes_bucket\{le="([^"]+)"\}')


def scrape(address: str) -> dict:
    """{series: value} of the process's /metrics."""
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=10) as response:
        text = response.read().decode()
    return {name: float(value) for name, value, *_ in
            (line.split() for line in text.splitlines() if line and not line.startswith("#"))}


def totals(processes: list) -> dict:
    """Each counter of COUNTERS, and each cumulative bucket of the transaction size
    histogram (by upper bound), summed over `processes`."""
    scraped = [scrape(p.http) for p in processes]
    summed = {key: sum(m[series] for m in scraped) for key, series in COUNTERS.items()}
    buckets = Counter()
    for metrics in scraped:
        for series, value in metrics.items():
            if bucket := SIZE_BUCKET.fullmatch(series):
                buckets[float(bucket.group(1))] += value
    return {**summed, "size_buckets": buckets}


def largest_bound(before: Counter, after: Counter) -> float:
    """The upper bound of the smallest bucket that holds every transaction between the two
    scrapes (the buckets are cumulative)."""
    return min(le for le in after if after[le] - before[le] == after[float("inf")] - before[float("inf")])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--strata-bench", required=True)
    parser.add_argument("--partitions", type=int, required=True)
    parser.add_argument("--seconds", type=int, required=True)
    parser.add_argument("--rate", type=int, help="messages per second (default: as fast as it goes)")
    parser.add_argument("out")
    args = parser.parse_args()
    if not os.environ.get("STRATA_BIN"):
        target = os.environ.get("CARGO_TARGET_DIR") or Path.home() / ".cache" / "strata-target"
        os.environ["STRATA_BIN"] = str(Path(target) / "release" / "strata")
    # bench/run.sh stops it with SIGTERM: stop the cluster on the way out.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))

    with tempfile.TemporaryDirectory(prefix="strata-cluster-bench.") as workdir:
        cluster = Cluster(Path(workdir), etcd_members=3, coordinators=1, gateways=3)
        try:
            cluster.start()
            create_topic(cluster.bootstrap(), TOPIC, partitions=args.partitions)
            led = Counter(leaders(cluster.bootstrap(), TOPIC).values())
            gateways = [cluster.gateways[i] for i in cluster.live_gateways()]
            before = totals(gateways), totals(cluster.coordinators)
            rate = ["--rate", str(args.rate)] if args.rate else []
            produced = subprocess.run(
                [args.strata_bench, "--bootstrap-servers", cluster.bootstrap(), "--json", "produce",
                 "--topic", TOPIC, "--partitions", str(args.partitions), "--acks", "all",
                 "--duration", str(args.seconds), *rate],
                check=True, stdout=subprocess.PIPE, text=True)
            after = totals(gateways), totals(cluster.coordinators)
        except Exception:
            print(cluster.logs(), file=sys.stderr)
            raise
        finally:
            cluster.stop()
    report = json.loads(produced.stdout)
    report["partitions_per_gateway"] = sorted(led[g.broker_id] for g in gateways)
    (gateways_before, coordinator_before), (gateways_after, coordinator_after) = before, after
    gateway_delta = {key: gateways_after[key] - gateways_before[key] for key in COUNTERS}
    report["etcd"] = {
        "transactions": gateway_delta["transactions"]
        + coordinator_after["transactions"] - coordinator_before["transactions"],
        "gateway_transactions": gateway_delta["transactions"],
        "gateway_transaction_bytes": gateway_delta["transaction_bytes"],
        "flushes": gateway_delta["flushes"],
        "largest_bytes_at_most": largest_bound(gateways_before["size_buckets"],
                                               gateways_after["size_buckets"]),
    }
    Path(args.out).write_text(json.dumps(report))


if __name__ == "__main__":
    main()
