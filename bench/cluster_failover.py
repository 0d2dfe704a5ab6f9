"""Failover time of a Strata cluster after kill -9 of a gateway: until every live gateway's
metadata names new leaders for the partitions it led, and until a producer created at the
kill has an acks=all record accepted on each (this adds the client's metadata refresh). Runs a 3-member etcd, 2 coordinators and 3
gateways on loopback (the cluster tests' harness), kills a gateway N times (starting a new
one after each kill so that three stay up) and prints each time with the p50 and the max.

Usage: .venv/bin/python bench/cluster_failover.py [--kills N] [--session-timeout-ms MS]
           [--json OUT.json]
Uses $STRATA_BIN, else the release build in $CARGO_TARGET_DIR (default
~/.cache/strata-target).
"""

import argparse
import json
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "clients"))

from cluster_harness import Cluster, failover_time, led_by  # noqa: E402
from strata_harness import create_topic  # noqa: E402

PARTITIONS = 12


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--session-timeout-ms", type=int, default=3000)
    parser.add_argument("--json", help="also write the times to this file (for bench/run.sh)")
    args = parser.parse_args()
    if not os.environ.get("STRATA_BIN"):
        target = os.environ.get("CARGO_TARGET_DIR") or Path.home() / ".cache" / "strata-target"
        os.environ["STRATA_BIN"] = str(Path(target) / "release" / "strata")
    # bench/run.sh stops it with SIGTERM: stop the cluster on the way out.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))

    with tempfile.TemporaryDirectory() as workdir:
        config = {"broker.session.timeout.ms": args.session_timeout_ms}
        cluster = Cluster(Path(workdir), etcd_members=3, coordinators=2, gateways=3, config=config)
        try:
            cluster.start()
            topic = "failover"
            create_topic(cluster.bootstrap(), topic, partitions=PARTITIONS)
            moved_after, accepted_after = [], []
            for kill in range(args.kills):
                victim = next(i for i in cluster.live_gateways() if led_by(cluster, topic, i))
                partitions = led_by(cluster, topic, victim)
                killed_at = time.monotonic()
                cluster.kill_gateway(victim)
                moved, accepted = failover_time(cluster, topic, victim, partitions, killed_at)
                moved_after.append(moved)
                accepted_after.append(accepted)
                print(f"kill {kill + 1}: {len(partitions)} partitions have new leaders after "
                      f"{moved:.2f} s, accept produce after {accepted:.2f} s", flush=True)
                cluster.add_gateway()
                # Let the new gateway take its share before the next kill.
                time.sleep(1)
        except BaseException:
            print(cluster.logs(), file=sys.stderr)
            raise
        finally:
            cluster.stop()
    print(f"failover over {len(moved_after)} kills (session timeout "
          f"{args.session_timeout_ms} ms): new leaders p50 {statistics.median(moved_after):.2f} s, "
          f"max {max(moved_after):.2f} s; produce accepted p50 "
          f"{statistics.median(accepted_after):.2f} s, max {max(accepted_after):.2f} s")
    if args.json:
        times = {"session_timeout_ms": args.session_timeout_ms, "moved": moved_after,
                 "accepted": accepted_after}
        Path(args.json).write_text(json.dumps(times))


if __name__ == "__main__":
    main()
