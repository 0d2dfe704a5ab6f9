"""Log compaction (cleanup.policy=compact) with confluent-kafka and kafka-python (aiokafka
too for reading tombstones): after the LogCleaner ran, only the latest record of each key
is left, at the offset it was produced at; tombstones go delete.retention.ms after the
clean that kept them; a consumer reading from the start always folds the log into the same
table; records without key are refused; kill -9 mid-clean and a leader's failover lose
nothing."""

import asyncio
import http.client
import re
import time

import pytest
from confluent_kafka import (OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Producer,
                             TopicPartition)
from aiokafka import AIOKafkaConsumer
from aiokafka import TopicPartition as AioTopicPartition
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource
from kafka import KafkaConsumer, KafkaProducer
from kafka import TopicPartition as KpTopicPartition
from kafka.errors import InvalidRecordError

from strata_harness import (TIMEOUT, Strata, consumer_config, create_topic, unique_topic,
                            wait_until)

TIMEOUT_MS = TIMEOUT * 1000

# Chunks become segments within a second and the cleaner looks every 200 ms.
FAST_CLEANING = {
    "compaction.interval.ms": 100,
    "compaction.max.lag.ms": 300,
    "log.cleaner.backoff.ms": 200,
}
COMPACTED = {"cleanup.policy": "compact", "min.cleanable.dirty.ratio": "0.01"}

pytestmark = pytest.mark.strata_config(FAST_CLEANING)


def produce_keyed(bootstrap: str, topic: str, records: list) -> list:
    """Produces (key, value) records in order (value None: a tombstone) with confluent-kafka,
    acks=all, one at a time so each gets its own batch; returns their offsets."""
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 0,
                         "enable.idempotence": True})
    offsets = [None] * len(records)
    errors = []

    def on_delivery(i):
        def report(err, msg):
            if err is not None:
                errors.append(err)
            else:
                offsets[i] = msg.offset()
        return report

    try:
        for i, (key, value) in enumerate(records):
            producer.produce(topic, key=key, value=value, partition=0, on_delivery=on_delivery(i))
            producer.poll(0)
        assert producer.flush(TIMEOUT) == 0, "undelivered records"
    finally:
        producer.close()
    assert not errors, errors[:5]
    return offsets


def read_log(bootstrap: str, topic: str) -> list:
    """Every record of partition 0 from the log start to the high watermark, as
    (offset, key, value), with confluent-kafka (which handles offsets the cleaner removed)."""
    consumer = Consumer({**consumer_config(bootstrap), "enable.partition.eof": True})
    try:
        consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        records = []
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            for msg in consumer.consume(num_messages=1000, timeout=0.5):
                if msg.error() is not None:
                    assert msg.error().code() == KafkaError._PARTITION_EOF, msg.error()
                    return records
                records.append((msg.offset(), msg.key(), msg.value()))
        raise AssertionError(f"no end of {topic} within {TIMEOUT} s; read {len(records)}")
    finally:
        consumer.close()


def latest_per_key(records: list, offsets: list) -> list:
    """The log as compaction leaves it: the last record of each key at its offset."""
    latest = {}
    for (key, value), offset in zip(records, offsets):
        latest[key] = (offset, key, value)
    return sorted(latest.values())


def metric(strata, name: str) -> float:
    conn = http.client.HTTPConnection(strata.http, timeout=5)
    try:
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode()
    finally:
        conn.close()
    match = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    assert match, f"{name} not in /metrics"
    return float(match.group(1))


def test_only_the_latest_record_of_each_key_stays_at_its_offset(strata):
    topic = unique_topic("compact")
    create_topic(strata.bootstrap, topic, config=COMPACTED)
    # 20 keys written 10 times each, interleaved, then keys 0..4 deleted, then one more
    # value so that the log ends with a record that stays.
    records = [(f"key-{k}".encode(), f"value-{k}-{round}".encode())
               for round in range(10) for k in range(20)]
    records += [(f"key-{k}".encode(), None) for k in range(5)]
    records += [(b"key-19", b"last")]
    offsets = produce_keyed(strata.bootstrap, topic, records)
    assert offsets == list(range(len(records)))
    expected = latest_per_key(records, offsets)

    wait_until(lambda: read_log(strata.bootstrap, topic) == expected,
               "the cleaned log to hold the latest record of each key", timeout=TIMEOUT * 2)
    # Offsets did not move: the high watermark is where it was.
    consumer = Consumer(consumer_config(strata.bootstrap))
    try:
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10,
                                                   cached=False)
    finally:
        consumer.close()
    assert (low, high) == (0, len(records))
    assert metric(strata, "strata_log_cleaner_runs_total") >= 1
    assert metric(strata, "strata_log_cleaner_records_removed_total") >= 175


def kp_read_log(bootstrap: str, topic: str) -> list:
    """As read_log, with kafka-python."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                             enable_auto_commit=False, request_timeout_ms=TIMEOUT_MS)
    try:
        tp = KpTopicPartition(topic, 0)
        consumer.assign([tp])
        consumer.seek_to_beginning(tp)
        end = consumer.end_offsets([tp])[tp]
        records = []
        deadline = time.monotonic() + TIMEOUT
        while consumer.position(tp) < end:
            assert time.monotonic() < deadline, f"read {len(records)} records of {topic} by {end}"
            for batch in consumer.poll(timeout_ms=500).values():
                records.extend((r.offset, r.key, r.value) for r in batch)
        return records
    finally:
        consumer.close()


async def aio_read_log(bootstrap: str, topic: str, end: int) -> list:
    """As read_log, with aiokafka, up to offset `end`."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tp = AioTopicPartition(topic, 0)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        records = []
        deadline = time.monotonic() + TIMEOUT
        while await consumer.position(tp) < end:
            assert time.monotonic() < deadline, f"read {len(records)} records of {topic}"
            for batch in (await consumer.getmany(timeout_ms=500)).values():
                records.extend((r.offset, r.key, r.value) for r in batch)
        return records
    finally:
        await consumer.stop()


def test_tombstones_go_after_delete_retention_ms(strata):
    topic = unique_topic("tombstones")
    create_topic(strata.bootstrap, topic, config={**COMPACTED, "delete.retention.ms": "6000"})
    producer = KafkaProducer(bootstrap_servers=strata.bootstrap, acks="all", linger_ms=0,
                             request_timeout_ms=TIMEOUT_MS)
    try:
        sent = [(b"a", b"a0"), (b"b", b"b0"), (b"a", None), (b"b", b"b1")]
        offsets = [producer.send(topic, key=k, value=v, partition=0).get(timeout=TIMEOUT).offset
                   for k, v in sent]
    finally:
        producer.close(timeout=TIMEOUT)
    assert offsets == [0, 1, 2, 3]
    # Cleaned: a0 and b0 went, the tombstone stays for delete.retention.ms ...
    wait_until(lambda: kp_read_log(strata.bootstrap, topic) == [(2, b"a", None), (3, b"b", b"b1")],
               "a clean that keeps the tombstone", timeout=TIMEOUT * 2)
    kept_at = time.monotonic()
    # aiokafka reads the cleaned batches too (gaps, and the delete horizon in the header).
    assert asyncio.run(aio_read_log(strata.bootstrap, topic, 4)) == [(2, b"a", None),
                                                                      (3, b"b", b"b1")]
    # ... then it goes too.
    wait_until(lambda: kp_read_log(strata.bootstrap, topic) == [(3, b"b", b"b1")],
               "the tombstone to go after delete.retention.ms", timeout=TIMEOUT * 2)
    assert time.monotonic() - kept_at > 3, "the tombstone went well before delete.retention.ms"


def fold(records: list) -> dict:
    """The table a consumer builds from a log: the last value of each key, deletions applied."""
    table = {}
    for _, key, value in records:
        if value is None:
            table.pop(key, None)
        else:
            table[key] = value
    return table


def test_a_consumer_from_the_start_always_builds_the_same_table(strata):
    """While rounds of updates and deletes are produced and the cleaner rewrites the log,
    every read from the start folds into exactly the table of everything produced."""
    topic = unique_topic("table")
    create_topic(strata.bootstrap, topic, config={**COMPACTED, "delete.retention.ms": "500"})
    produced = []
    for round in range(12):
        batch = [(f"k{k}".encode(), None if (k + round) % 7 == 0 else f"{k}-{round}".encode())
                 for k in range(30)]
        batch.append((b"end", f"round-{round}".encode()))
        produce_keyed(strata.bootstrap, topic, batch)
        produced += batch
        expected = fold([(None, k, v) for k, v in produced])
        # Both clients, reading everything committed so far.
        assert fold(read_log(strata.bootstrap, topic)) == expected, f"round {round}"
        assert fold(kp_read_log(strata.bootstrap, topic)) == expected, f"round {round}"
        time.sleep(0.3)  # lets the cleaner run between rounds
    assert metric(strata, "strata_log_cleaner_runs_total") >= 2
    assert metric(strata, "strata_background_errors_total{task=\"log_cleaner\"}") == 0


def test_records_without_key_are_refused_with_invalid_record(strata):
    topic = unique_topic("keyless")
    create_topic(strata.bootstrap, topic, config=COMPACTED)
    producer = Producer({"bootstrap.servers": strata.bootstrap, "acks": "all"})
    reports = []
    try:
        producer.produce(topic, value=b"no key", partition=0,
                         on_delivery=lambda err, msg: reports.append(err))
        # A batch of its own: Kafka refuses a batch with a keyless record whole.
        assert producer.flush(TIMEOUT) == 0
        producer.produce(topic, key=b"k", value=b"keyed", partition=0,
                         on_delivery=lambda err, msg: reports.append(err))
        assert producer.flush(TIMEOUT) == 0
    finally:
        producer.close()
    assert reports[0] is not None and reports[0].code() == KafkaError.INVALID_RECORD, reports
    assert reports[1] is None, reports

    kp = KafkaProducer(bootstrap_servers=strata.bootstrap, acks="all",
                       request_timeout_ms=TIMEOUT_MS)
    try:
        with pytest.raises(InvalidRecordError):
            kp.send(topic, value=b"no key either", partition=0).get(timeout=TIMEOUT)
    finally:
        kp.close(timeout=TIMEOUT)
    assert [(o, k, v) for o, k, v in read_log(strata.bootstrap, topic)] == [(0, b"k", b"keyed")]


def test_delete_records_is_refused_on_a_compact_only_topic(strata):
    """Kafka: the records of a topic without the delete policy cannot be deleted."""
    topic = unique_topic("no-delete")
    create_topic(strata.bootstrap, topic, config=COMPACTED)
    produce_keyed(strata.bootstrap, topic, [(b"k", b"v1"), (b"k", b"v2")])
    admin = AdminClient({"bootstrap.servers": strata.bootstrap})
    [future] = admin.delete_records([TopicPartition(topic, 0, 1)]).values()
    with pytest.raises(KafkaException) as refused:
        future.result(timeout=TIMEOUT)
    assert refused.value.args[0].code() == KafkaError.POLICY_VIOLATION


def test_altering_a_topic_from_delete_to_compact_cleans_it(strata):
    topic = unique_topic("altered")
    create_topic(strata.bootstrap, topic)
    records = [(f"k{i % 3}".encode(), f"v{i}".encode()) for i in range(30)]
    offsets = produce_keyed(strata.bootstrap, topic, records)
    time.sleep(1.5)  # segments are sealed; a delete topic keeps every record
    assert len(read_log(strata.bootstrap, topic)) == 30

    admin = AdminClient({"bootstrap.servers": strata.bootstrap})
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic, incremental_configs=[
        ConfigEntry("cleanup.policy", "compact",
                    incremental_operation=AlterConfigOpType.SET),
        ConfigEntry("min.cleanable.dirty.ratio", "0.01",
                    incremental_operation=AlterConfigOpType.SET),
    ])
    admin.incremental_alter_configs([resource])[resource].result(timeout=TIMEOUT)
    described = admin.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, topic)])
    configs = list(described.values())[0].result(timeout=TIMEOUT)
    assert configs["cleanup.policy"].value == "compact"

    expected = latest_per_key(records, offsets)
    wait_until(lambda: read_log(strata.bootstrap, topic) == expected,
               "the altered topic to be cleaned", timeout=TIMEOUT * 2)
    # Keyless records are refused from now on (kafka-python).
    kp = KafkaProducer(bootstrap_servers=strata.bootstrap, acks="all",
                       request_timeout_ms=TIMEOUT_MS)
    try:
        with pytest.raises(InvalidRecordError):
            kp.send(topic, value=b"no key", partition=0).get(timeout=TIMEOUT)
    finally:
        kp.close(timeout=TIMEOUT)


def mid_clean(strata, cleans_before: int) -> bool:
    """A clean started after the first `cleans_before` ones and has not finished (the broker
    logs both at debug level)."""
    text = strata.log_file.read_text(errors="replace")
    started = text.count("cleaning the log")
    return started > cleans_before and text.rfind("cleaning the log") > text.rfind("cleaned the log")


def test_a_compacted_topic_survives_sigkill_mid_clean(tmp_path, monkeypatch):
    monkeypatch.setenv("RUST_LOG", "info,strata::background::log_cleaner=debug")
    strata = Strata(tmp_path, {
        **FAST_CLEANING,
        # Every PUT takes a few hundred milliseconds, as on a slow remote store: a clean
        # (three objects per segment) lasts long enough to be killed in the middle.
        "simulate.put.latency.p50.ms": 200,
        "simulate.put.latency.p99.ms": 400,
        "object.delete.grace.ms": 1000,
    })
    strata.start()
    try:
        topic = unique_topic("crash-compact")
        create_topic(strata.bootstrap, topic,
                     config={**COMPACTED, "delete.retention.ms": "1000"})
        produced, offsets = [], []
        for kill in range(4):
            batch = [(f"k{k}".encode(),
                      None if (k + kill) % 9 == 0 else f"{k}-{kill}".encode())
                     for k in range(40)]
            batch.append((b"end", f"round-{kill}".encode()))
            text = strata.log_file.read_text(errors="replace")
            cleans_before = text.count("cleaning the log")
            offsets += produce_keyed(strata.bootstrap, topic, batch)
            produced += batch
            wait_until(lambda: mid_clean(strata, cleans_before), f"a clean to start ({kill})",
                       timeout=TIMEOUT * 2, interval=0.01)
            assert strata.restart(kill=True) == -9, f"kill {kill}"

            # Whatever the clean was doing, the log reads back whole: each record at the
            # offset it was produced at, and folding it gives the table of all produced.
            at = {offset: record for offset, record in zip(offsets, produced)}
            records = read_log(strata.bootstrap, topic)
            wrong = [(o, k, v) for o, k, v in records if at.get(o) != (k, v)]
            assert not wrong, f"kill {kill}: records not as produced at their offsets: {wrong[:5]}"
            assert fold(records) == fold([(None, k, v) for k, v in produced]), f"kill {kill}"

        # After the kills a clean completes, and what the killed cleans wrote is collected:
        # one cleaned segment is left, its three objects.
        expected = [r for r in latest_per_key(produced, offsets) if r[2] is not None]
        wait_until(lambda: [r for r in read_log(strata.bootstrap, topic) if r[2] is not None]
                   == expected, "a clean to complete after the restarts", timeout=TIMEOUT * 3)
        segments = strata.data_dir / "objects" / "topics"
        wait_until(lambda: len(list(segments.glob("*/0/*"))) == 3,
                   "the objects of killed and replaced cleans to be collected",
                   timeout=TIMEOUT * 3)
    except BaseException:
        print(strata.log())
        raise
    finally:
        strata.stop(kill=True)


def test_a_new_leader_goes_on_cleaning_after_the_old_one_is_killed(tmp_path):
    """Cluster mode: the cleaned segments are swapped in through etcd, fenced by the leader
    epoch; after kill -9 of the leader the partition's new leader reads the cleaned log and
    cleans what is produced next."""
    from cluster_harness import Cluster, leaders

    c = Cluster(tmp_path, etcd_members=1, coordinators=1, gateways=2,
                config={**FAST_CLEANING, "auto.leader.rebalance.enable": False})
    try:
        c.start()
        topic = unique_topic("cluster-compact")
        create_topic(c.bootstrap(), topic, config=COMPACTED)
        first = [(f"k{i % 10}".encode(), f"first-{i}".encode()) for i in range(50)]
        offsets = produce_keyed(c.bootstrap(), topic, first)
        wait_until(lambda: read_log(c.bootstrap(), topic) == latest_per_key(first, offsets),
                   "the first leader's clean", timeout=TIMEOUT * 2)

        victim = c.gateway_of_broker(leaders(c.bootstrap(), topic)[0])
        assert c.kill_gateway(victim) == -9
        survivor = next(i for i in c.live_gateways() if i != victim)
        wait_until(lambda: leaders(c.bootstrap([survivor]), topic).get(0)
                   == c.gateways[survivor].broker_id, "the partition's new leader",
                   timeout=TIMEOUT)
        second = [(f"k{i % 10}".encode(), f"second-{i}".encode()) for i in range(30)]
        offsets += produce_keyed(c.bootstrap([survivor]), topic, second)
        expected = latest_per_key(first + second, offsets)
        wait_until(lambda: read_log(c.bootstrap([survivor]), topic) == expected,
                   "the new leader's clean", timeout=TIMEOUT * 2)
    except BaseException:
        print(c.logs())
        raise
    finally:
        c.stop()
