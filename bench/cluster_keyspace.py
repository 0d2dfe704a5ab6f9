"""What a Strata cluster keeps in etcd under steady load: keys and bytes under its prefix,
and etcd's database size, sampled while 3 gateways take acks=all produce for a while, to
show the keyspace stays bounded (flush records are replaced by segments at compaction and
deleted, the active coordinator compacts etcd's history every minute).

The run is compressed time: compaction of chunks into segments is due after 5 s instead of
60 s, so each minute holds as many compaction cycles as twelve minutes at the defaults; and
a local store flushes as soon as the previous flush is done, so a gateway commits far more
flushes per second than one on S3 (one per 250 ms). The summary says how many hours of an
S3-backed gateway's flush commits and of default compaction cycles the run amounts to.

Usage: .venv/bin/python bench/cluster_keyspace.py [--seconds S] [--rate MSG_PER_S]
Uses $STRATA_BIN, else the release build in $CARGO_TARGET_DIR (default
~/.cache/strata-target).
"""

import argparse
import base64
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "clients"))

from confluent_kafka import Producer  # noqa: E402

from cluster_bench import scrape  # noqa: E402
from cluster_harness import Cluster  # noqa: E402
from strata_harness import create_topic  # noqa: E402

PARTITIONS = 12
MESSAGE = b"x" * 1024
COMPACTION_MAX_LAG_S = 5
# Defaults the run is compared with: a gateway on a remote store flushes every 250 ms, and a
# partition's chunks are compacted at least every 60 s.
REMOTE_FLUSHES_PER_HOUR = 3600 * 4
DEFAULT_COMPACTION_LAG_S = 60


def etcdctl(endpoint: str, *args) -> str:
    result = subprocess.run(["etcdctl", "--endpoints", endpoint, "--command-timeout=10s", *args],
                            capture_output=True, text=True, timeout=30,
                            env={**os.environ, "ETCDCTL_API": "3"})
    result.check_returncode()
    return result.stdout


def keyspace(endpoint: str) -> dict:
    """Keys and bytes (key plus value) under strata/, by their first component, and etcd's
    database size (allocated, and in use)."""
    kvs = json.loads(etcdctl(endpoint, "get", "--prefix", "strata/", "-w", "json")).get("kvs", [])
    by_kind = {}
    for kv in kvs:
        key = base64.b64decode(kv["key"]).decode()
        size = len(key) + len(base64.b64decode(kv.get("value", "")))
        kind = key.split("/")[1]
        keys, total = by_kind.get(kind, (0, 0))
        by_kind[kind] = (keys + 1, total + size)
    status = json.loads(etcdctl(endpoint, "endpoint", "status", "-w", "json"))[0]["Status"]
    return {
        "keys": sum(k for k, _ in by_kind.values()),
        "bytes": sum(b for _, b in by_kind.values()),
        "by_kind": by_kind,
        "db_size": status["dbSize"],
        "db_in_use": status.get("dbSizeInUse", status["dbSize"]),
        "revision": status["header"]["revision"],
    }


def flushes(cluster: Cluster) -> int:
    """Flush commits so far, over the live gateways."""
    return int(sum(scrape(cluster.gateways[i].http)["strata_flushes_total"]
                   for i in cluster.live_gateways()))


def produce(bootstrap: str, topic: str, rate: int, stop: threading.Event, errors: list):
    """acks=all at `rate` messages per second until `stop`."""
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5,
                         "enable.idempotence": True})

    def on_delivery(err, _msg):
        if err is not None:
            errors.append(err)

    started, sent = time.monotonic(), 0
    while not stop.is_set():
        due = int((time.monotonic() - started) * rate)
        while sent < due:
            try:
                producer.produce(topic, MESSAGE, partition=sent % PARTITIONS, on_delivery=on_delivery)
                sent += 1
            except BufferError:
                producer.poll(0.01)
        producer.poll(0.005)
    producer.flush(30)


def kib(n: int) -> str:
    return f"{n / 1024:.0f} KiB"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=300)
    parser.add_argument("--rate", type=int, default=2000, help="messages of 1 KiB per second")
    parser.add_argument("--sample-every", type=int, default=15)
    args = parser.parse_args()
    if not os.environ.get("STRATA_BIN"):
        target = os.environ.get("CARGO_TARGET_DIR") or Path.home() / ".cache" / "strata-target"
        os.environ["STRATA_BIN"] = str(Path(target) / "release" / "strata")
    # Stopped with SIGTERM: stop the cluster on the way out.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))

    config = {
        "compaction.max.lag.ms": COMPACTION_MAX_LAG_S * 1000,
        "compaction.interval.ms": 1000,
        "object.delete.grace.ms": 5000,
    }
    with tempfile.TemporaryDirectory() as workdir:
        cluster = Cluster(Path(workdir), etcd_members=3, coordinators=1, gateways=3, config=config)
        stop, errors = threading.Event(), []
        try:
            cluster.start()
            endpoint = cluster.etcd.endpoint(0)
            topic = "keyspace"
            create_topic(cluster.bootstrap(), topic, partitions=PARTITIONS)
            load = threading.Thread(target=produce,
                                    args=(cluster.bootstrap(), topic, args.rate, stop, errors))
            started = time.monotonic()
            load.start()
            samples = []
            print("  time   keys  key+value bytes  etcd db (in use)  revision", flush=True)
            while True:
                elapsed = time.monotonic() - started
                sample = keyspace(endpoint)
                samples.append((elapsed, sample))
                print(f"{elapsed:5.0f} s {sample['keys']:6d}  {kib(sample['bytes']):>15}  "
                      f"{kib(sample['db_size']):>8} ({kib(sample['db_in_use'])})  "
                      f"{sample['revision']}", flush=True)
                if elapsed >= args.seconds:
                    break
                time.sleep(min(args.sample_every, max(0.0, args.seconds - elapsed)))
            commits = flushes(cluster)
            stop.set()
            load.join()
        except BaseException:
            stop.set()
            print(cluster.logs(), file=sys.stderr)
            raise
        finally:
            cluster.stop()

    half = [s for t, s in samples if t >= args.seconds / 2]
    last = samples[-1][1]
    hours_of_flushes = commits / 3 / REMOTE_FLUSHES_PER_HOUR
    hours_of_compaction = args.seconds / COMPACTION_MAX_LAG_S * DEFAULT_COMPACTION_LAG_S / 3600
    print(f"after {args.seconds} s at {args.rate} msg/s of 1 KiB over {PARTITIONS} partitions "
          f"and 3 gateways ({len(errors)} delivery errors): {commits} flush commits, "
          f"{hours_of_flushes:.1f} h of an S3-backed gateway's each, and "
          f"{hours_of_compaction:.1f} h of default compaction cycles")
    print(f"etcd keyspace at the end: {last['keys']} keys, {kib(last['bytes'])} "
          f"({', '.join(f'{kind} {k} keys {kib(b)}' for kind, (k, b) in sorted(last['by_kind'].items()))}); "
          f"second half: keys {min(s['keys'] for s in half)}-{max(s['keys'] for s in half)}, "
          f"bytes {kib(min(s['bytes'] for s in half))}-{kib(max(s['bytes'] for s in half))}, "
          f"etcd db in use {kib(min(s['db_in_use'] for s in half))}-"
          f"{kib(max(s['db_in_use'] for s in half))}")


if __name__ == "__main__":
    main()
