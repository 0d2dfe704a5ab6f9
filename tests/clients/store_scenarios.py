"""The object store tests, written once for every store: test_s3.py, test_gcs.py and
test_azure.py run them against their emulator. `storage` is an emulator.BucketStorage whose
environment the broker was started with."""

import http.client
import subprocess
import threading
import time

from confluent_kafka import Consumer, Producer, TopicPartition

from emulator import BucketStorage, metrics
from strata_harness import (TIMEOUT, DeliveryLog, Strata, assert_acked_present, consume_all,
                            consumer_config, create_topic, free_ports, produce_all, strata_bin,
                            unique_topic, wait_until)


def check_log_survives_restarts(storage: BucketStorage, tmp_path):
    """The log is written to the store, read back from it through the caches after a restart,
    and carries on after a kill -9 without losing an acknowledged record."""
    cache_dir = tmp_path / "read-cache"
    # A one-block memory cache, so re-reads must come from the disk tier.
    broker = Strata(tmp_path, {"read.cache.bytes": 1 << 20, "read.cache.dir": str(cache_dir)})
    try:
        broker.start()
        topic = unique_topic("store")
        create_topic(broker.bootstrap, topic, partitions=3)
        values = [f"{i:06d}-".encode() + b"x" * 1000 for i in range(3000)]
        acked = produce_all(broker.bootstrap, topic, values, partitions=3)
        assert_acked_present(acked, consume_all(broker.bootstrap, topic, partitions=3))

        keys = storage.keys()
        assert any(k.startswith("flush/0/") for k in keys), keys
        outside = [k for k in storage.all_keys() if not k.startswith(storage.prefix + "/")]
        assert not outside, f"objects outside the prefix: {outside}"

        assert broker.restart() == 0
        # The in-memory tail is gone: this reads the flush objects back from the store.
        messages = consume_all(broker.bootstrap, topic, partitions=3)
        assert len(messages) == len(acked)
        assert_acked_present(acked, messages)
        after_first = metrics(broker.http)
        gets = after_first['strata_object_store_requests_total{operation="get_range"}']
        assert gets > 0
        assert after_first['strata_read_cache_misses_total{tier="disk"}'] > 0
        assert any(cache_dir.iterdir()), "no block files in the disk cache"

        # Again: the memory tier holds one block, the disk tier has them all.
        assert_acked_present(acked, consume_all(broker.bootstrap, topic, partitions=3))
        after_second = metrics(broker.http)
        assert after_second['strata_read_cache_hits_total{tier="disk"}'] > 0
        assert after_second['strata_object_store_requests_total{operation="get_range"}'] == gets

        # Offsets carry on where the log in the store ends; a kill -9 loses no acknowledged record.
        more = produce_all(broker.bootstrap, topic, [b"after-0", b"after-1", b"after-2"], partitions=3)
        assert sorted(more.values()) == [(0, 1000), (1, 1000), (2, 1000)], more
        assert broker.restart(kill=True) == -9
        everything = consume_all(broker.bootstrap, topic, partitions=3)
        assert len(everything) == len(acked) + 3
        assert_acked_present(acked | more, everything)
    finally:
        broker.stop(kill=True)
        print(broker.log())


def watermarks(bootstrap: str, topic: str) -> tuple:
    consumer = Consumer(consumer_config(bootstrap))
    try:
        return consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10, cached=False)
    finally:
        consumer.close()


def segment_base_offsets(keys: list) -> list:
    """Base offsets of the segments among object keys ("topics/{id}/{p}/{base:020}-{uid}.log")."""
    return sorted(int(k.rsplit("/", 1)[1].split("-")[0]) for k in keys if k.endswith(".log"))


# The object naming the cluster that owns the store.
CLUSTER_MARKER = "strata-cluster.json"

# The broker config for check_compaction_and_retention: both run often, deletes come soon.
COMPACTION_CONFIG = {
    "compaction.interval.ms": 200,
    "compaction.max.lag.ms": 500,
    "object.delete.grace.ms": 500,
    "log.retention.check.interval.ms": 200,
}


def check_compaction_and_retention(storage: BucketStorage, strata: Strata):
    """Flush objects are compacted into segments and deleted, and retention deletes the
    segments of old records; what is left is read back. The broker runs COMPACTION_CONFIG."""
    topic = unique_topic("store-retention")
    create_topic(strata.bootstrap, topic, partitions=1, config={"retention.ms": "3600000"})

    # Two hours old: compacted into segments, then past retention.
    two_hours_ago = int(time.time() * 1000) - 2 * 3600 * 1000
    old = [f"old-{i}".encode() for i in range(300)]
    produce_all(strata.bootstrap, topic, old, timestamps=[two_hours_ago] * len(old))
    wait_until(lambda: watermarks(strata.bootstrap, topic) == (300, 300),
               "retention to move the log start offset past the old records")

    new = [f"new-{i}".encode() for i in range(300)]
    acked = produce_all(strata.bootstrap, topic, new)

    def compacted_and_collected():
        keys = storage.keys()
        bases = segment_base_offsets(keys)
        # Every flush object compacted and deleted, the old segments deleted by retention.
        return keys if bases and min(bases) >= 300 and not any(k.startswith("flush/") for k in keys) else None

    keys = wait_until(compacted_and_collected, "only segments of the new records in the bucket")
    # Besides the segments, only the cluster marker, which the collector never touches.
    assert CLUSTER_MARKER in keys, keys
    segments = [k for k in keys if k != CLUSTER_MARKER]
    assert all(k.startswith("topics/") and k.endswith((".log", ".index", ".timeindex")) for k in segments), keys
    messages = consume_all(strata.bootstrap, topic)
    assert [m.offset() for m in messages] == list(range(300, 600))
    assert_acked_present(acked, messages)
    deletes = metrics(strata.http)['strata_object_store_requests_total{operation="delete"}']
    assert deletes >= 2, f"{deletes} deletes"


class PacedProducer(threading.Thread):
    """Produces numbered 1 KiB values with acks=all at about `rate` a second until stopped,
    recording when each acknowledgement arrived."""

    def __init__(self, bootstrap: str, topic: str, rate: int):
        super().__init__(daemon=True)
        self.topic = topic
        self.interval = 1 / rate
        self.deliveries = DeliveryLog()
        self.ack_times = []
        self.sent = 0
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.producer = Producer({
            "bootstrap.servers": bootstrap,
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": 5,
            "message.timeout.ms": 120000,
        })

    def on_delivery(self, err, msg):
        with self.lock:
            self.deliveries(err, msg)
            if err is None:
                self.ack_times.append(time.monotonic())

    def acked(self) -> dict:
        with self.lock:
            return dict(self.deliveries.acked)

    def run(self):
        next_send = time.monotonic()
        while not self.stopped.is_set():
            self.producer.produce(self.topic, value=f"{self.sent:09d}-".encode() + b"x" * 1014,
                                  on_delivery=self.on_delivery)
            self.sent += 1
            next_send += self.interval
            self.producer.poll(max(0.0, next_send - time.monotonic()))
        self.remaining = self.producer.flush(TIMEOUT)


# The broker config for check_store_outage: store requests time out and flushes count as
# stalled well within the outage, so hung requests fail and are retried.
OUTAGE_CONFIG = {"storage.request.timeout.ms": 2000, "flush.stall.timeout.ms": 3000}


def readyz(http_address: str) -> tuple:
    """GET /readyz as (status, body)."""
    conn = http.client.HTTPConnection(http_address, timeout=5)
    try:
        conn.request("GET", "/readyz")
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


def check_store_outage(storage: BucketStorage, strata: Strata):
    """The store stops answering for 10 s under an acks=all producer: nothing is acknowledged
    meanwhile, the broker reports itself not ready while flushes stall, and afterwards
    everything is acknowledged, each record stored once. The broker runs OUTAGE_CONFIG."""
    topic = unique_topic("store-outage")
    create_topic(strata.bootstrap, topic, partitions=1)
    producer = PacedProducer(strata.bootstrap, topic, rate=500)
    producer.start()
    try:
        wait_until(lambda: len(producer.acked()) >= 1000, "1000 acknowledgements before the outage")
        storage.server.pause()
        paused_at = time.monotonic()
        time.sleep(10)
        during = metrics(strata.http)
        ready_during = readyz(strata.http)
        acked_during = [t for t in producer.ack_times if t > paused_at + 1]
        storage.server.resume()
        resumed_at = time.monotonic()
        before = len(producer.acked())
        wait_until(lambda: len(producer.acked()) >= before + 1000, "1000 acknowledgements after the outage")
        wait_until(lambda: readyz(strata.http)[0] == 200, "ready again once flushes resume")
    finally:
        producer.stopped.set()
        producer.join(TIMEOUT + 5)

    # Nothing could be stored while the server was paused, so nothing was acknowledged.
    assert not acked_during, f"{len(acked_during)} acknowledgements while the store was down"
    assert during["strata_buffered_bytes"] > 0, "the produced bytes should wait in the buffer"
    # Flushes stalled past flush.stall.timeout.ms: not ready, and the wait shows.
    assert during["strata_oldest_unflushed_seconds"] > 3, during["strata_oldest_unflushed_seconds"]
    assert ready_during[0] == 503 and "stalled" in ready_during[1], ready_during
    assert producer.remaining == 0 and not producer.deliveries.errors, producer.deliveries.errors[:5]
    acked = producer.acked()
    assert len(acked) == producer.sent, f"{len(acked)} of {producer.sent} acknowledged"

    messages = consume_all(strata.bootstrap, topic)
    assert_acked_present(acked, messages)
    assert len(messages) == len(acked)

    after = metrics(strata.http)
    retries = after['strata_object_store_retries_total{operation="put"}']
    errors = after['strata_object_store_errors_total{operation="put"}']
    assert retries > 0, "timed-out PUTs should have been retried"
    gaps = [b - a for a, b in zip(producer.ack_times, producer.ack_times[1:])]
    stall = max(gaps)
    assert stall >= 9, f"longest gap between acknowledgements {stall:.1f} s"
    print(f"outage: server paused {resumed_at - paused_at:.1f} s; acks=all stall {stall:.1f} s; "
          f"PUT retries {retries:.0f}, PUT errors after retries {errors:.0f}, "
          f"flush errors {after['strata_flush_errors_total']:.0f}; "
          f"{len(acked)} records acknowledged, {len(messages)} found, each once")


def run_standalone(tmp_path, storage: str, env: dict, *flags: str) -> subprocess.CompletedProcess:
    """`strata standalone` with its log in `storage`, run to its exit (for start-up errors)."""
    kafka_port, http_port = free_ports(2)
    cmd = [str(strata_bin()), "standalone", "--data-dir", str(tmp_path / "data"),
           "--listen", f"127.0.0.1:{kafka_port}", "--http", f"127.0.0.1:{http_port}",
           "--storage", storage, *flags]
    return subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=TIMEOUT)
