"""Strata with its log in a real S3 server (moto on loopback): restarts, compaction and
retention, a store outage under an acks=all producer, and start-up errors (issue 4)."""

import http.client
import subprocess
import threading
import time

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from s3_server import aws_env, metrics, moto, s3_storage  # noqa: F401 (fixtures)
from strata_harness import (TIMEOUT, DeliveryLog, Strata, assert_acked_present, consume_all,
                            consumer_config, create_topic, free_ports, produce_all, strata_bin,
                            unique_topic, wait_until)


@pytest.fixture
def strata(s3_storage, strata):
    """conftest's broker, started once s3_storage has pointed the environment at the bucket."""
    return strata


def test_log_on_s3_survives_restarts_and_is_read_back_through_the_caches(s3_storage, tmp_path):
    cache_dir = tmp_path / "read-cache"
    # A one-block memory cache, so re-reads must come from the disk tier.
    broker = Strata(tmp_path, {"read.cache.bytes": 1 << 20, "read.cache.dir": str(cache_dir)})
    try:
        broker.start()
        topic = unique_topic("s3")
        create_topic(broker.bootstrap, topic, partitions=3)
        values = [f"{i:06d}-".encode() + b"x" * 1000 for i in range(3000)]
        acked = produce_all(broker.bootstrap, topic, values, partitions=3)
        assert_acked_present(acked, consume_all(broker.bootstrap, topic, partitions=3))

        keys = s3_storage.keys()
        assert any(k.startswith("flush/0/") for k in keys), keys
        outside = [k for k in s3_storage.server.keys(s3_storage.bucket)
                   if not k.startswith(s3_storage.prefix + "/")]
        assert not outside, f"objects outside the prefix: {outside}"

        assert broker.restart() == 0
        # The in-memory tail is gone: this reads the flush objects back from S3.
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

        # Offsets carry on where the log in S3 ends; a kill -9 loses no acknowledged record.
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


@pytest.mark.strata_config({
    "compaction.interval.ms": 200,
    "compaction.max.lag.ms": 500,
    "object.delete.grace.ms": 500,
    "log.retention.check.interval.ms": 200,
})
def test_compaction_and_retention_on_s3(s3_storage, strata):
    topic = unique_topic("s3-retention")
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
        keys = s3_storage.keys()
        bases = segment_base_offsets(keys)
        # Every flush object compacted and deleted, the old segments deleted by retention.
        return keys if bases and min(bases) >= 300 and not any(k.startswith("flush/") for k in keys) else None

    keys = wait_until(compacted_and_collected, "only segments of the new records in the bucket")
    # Besides the segments, only the cluster marker, which the collector never touches.
    assert "strata-cluster.json" in keys, keys
    segments = [k for k in keys if k != "strata-cluster.json"]
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


@pytest.fixture
def short_request_timeout(monkeypatch):
    """object_store's request timeout (AWS_TIMEOUT) well below the outage, so the hung
    requests fail and are retried instead of waiting for the server to come back."""
    monkeypatch.setenv("AWS_TIMEOUT", "2s")


def readyz(http_address: str) -> tuple:
    """GET /readyz as (status, body)."""
    conn = http.client.HTTPConnection(http_address, timeout=5)
    try:
        conn.request("GET", "/readyz")
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


@pytest.mark.strata_config({"flush.stall.timeout.ms": 3000})
def test_store_outage_stalls_acks_all_producers_and_loses_nothing(short_request_timeout, s3_storage,
                                                                  strata):
    topic = unique_topic("s3-outage")
    create_topic(strata.bootstrap, topic, partitions=1)
    producer = PacedProducer(strata.bootstrap, topic, rate=500)
    producer.start()
    try:
        wait_until(lambda: len(producer.acked()) >= 1000, "1000 acknowledgements before the outage")
        s3_storage.server.pause()
        paused_at = time.monotonic()
        time.sleep(10)
        during = metrics(strata.http)
        ready_during = readyz(strata.http)
        acked_during = [t for t in producer.ack_times if t > paused_at + 1]
        s3_storage.server.resume()
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


def run_standalone(tmp_path, storage: str, endpoint: str) -> subprocess.CompletedProcess:
    kafka_port, http_port = free_ports(2)
    cmd = [str(strata_bin()), "standalone", "--data-dir", str(tmp_path / "data"),
           "--listen", f"127.0.0.1:{kafka_port}", "--http", f"127.0.0.1:{http_port}",
           "--storage", storage, "--s3-endpoint", endpoint, "--s3-allow-http", "--s3-path-style"]
    return subprocess.run(cmd, env=aws_env(), stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=TIMEOUT)


def test_a_missing_bucket_fails_start_up_naming_the_url(moto, tmp_path):
    url = "s3://no-such-bucket/strata"
    result = run_standalone(tmp_path, url, moto.endpoint)
    assert result.returncode != 0, result.stderr
    assert url in result.stderr and "NoSuchBucket" in result.stderr, result.stderr


def test_a_wrong_endpoint_fails_start_up_naming_the_url(tmp_path):
    (unused_port,) = free_ports(1)
    url = "s3://bucket/strata"
    result = run_standalone(tmp_path, url, f"http://127.0.0.1:{unused_port}")
    assert result.returncode != 0, result.stderr
    assert url in result.stderr and "error sending request" in result.stderr, result.stderr
