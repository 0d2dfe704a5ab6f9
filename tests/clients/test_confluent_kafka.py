"""confluent-kafka (bundled librdkafka 2.16): produce with every codec, idempotence, offsets by
time, watermarks, admin operations, every Kafka topic config and timestamp bounds, leader
elections and DeleteRecords."""

import time

import pytest
from confluent_kafka import (Consumer, ElectionType, KafkaError, KafkaException, Producer,
                             TopicPartition)
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ConfigSource,
    NewPartitions,
    NewTopic,
    ResourceType,
)

from emulator import metrics
from strata_harness import (
    TIMEOUT,
    assert_acked_present,
    consume_all,
    consumer_config,
    create_topic,
    produce_all,
    unique_topic,
    wait_until,
)


def assert_in_produce_order(messages, values, partitions):
    """Each partition holds its values (round-robin from `values`) at offsets 0.., in order."""
    for p in range(partitions):
        stored = [(m.offset(), m.value()) for m in messages if m.partition() == p]
        expected = list(enumerate(values[p::partitions]))
        if stored != expected:
            first = next((i for i, (a, b) in enumerate(zip(stored, expected)) if a != b), None)
            raise AssertionError(
                f"partition {p}: log differs from produce order at index {first}: "
                f"stored {stored[first:first + 3] if first is not None else stored[-3:]}, "
                f"expected {expected[first:first + 3] if first is not None else expected[-3:]}")


def result(futures):
    """Waits for every future of an admin call; returns {key: result}. (Keep the AdminClient
    referenced meanwhile: a collected client never completes its futures.)"""
    return {k: f.result(timeout=TIMEOUT) for k, f in futures.items()}


@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
def test_compressed_produce_and_assign_consume(strata, codec):
    topic = unique_topic(codec)
    create_topic(strata.bootstrap, topic, partitions=3)
    # Repetitive values so each codec really compresses; several batches per partition.
    values = [f"{codec} record {i:05d} ".encode() * 8 for i in range(3000)]
    acked = produce_all(strata.bootstrap, topic, values, partitions=3,
                  **{"compression.type": codec, "batch.num.messages": 200})

    messages = consume_all(strata.bootstrap, topic, partitions=3)
    assert len(messages) == len(values), f"read {len(messages)} records, produced {len(values)}"
    assert_acked_present(acked, messages)
    assert_in_produce_order(messages, values, partitions=3)


def test_idempotent_producer_writes_no_duplicates(strata):
    topic = unique_topic("idempotent")
    create_topic(strata.bootstrap, topic, partitions=2)
    values = [f"idem-{i:05d}".encode() for i in range(5000)]
    acked = produce_all(strata.bootstrap, topic, values, partitions=2,
                  **{"enable.idempotence": True, "max.in.flight.requests.per.connection": 5,
                     "batch.num.messages": 100})

    messages = consume_all(strata.bootstrap, topic, partitions=2)
    assert len(messages) == len(values), f"read {len(messages)} records, produced {len(values)}"
    assert_acked_present(acked, messages)
    assert_in_produce_order(messages, values, partitions=2)


def test_offsets_for_times(strata):
    topic = unique_topic("times")
    create_topic(strata.bootstrap, topic)
    base = 1_700_000_000_000
    # 200 records one second apart, in batches of 10, so lookups cross batch boundaries.
    timestamps = [base + i * 1000 for i in range(200)]
    produce_all(strata.bootstrap, topic, [f"v{i}".encode() for i in range(200)],
            timestamps=timestamps, **{"batch.num.messages": 10, "linger.ms": 50})

    # Kafka's answer: the first offset whose timestamp >= target, -1 if none. Expectations come
    # from the stored log so that this tests ListOffsets alone (produce order is tested above).
    stored = [(m.offset(), m.timestamp()[1]) for m in consume_all(strata.bootstrap, topic)]
    assert sorted(ts for _, ts in stored) == timestamps, "stored timestamps differ from produced"
    targets = [0, base, base + 1, base + 57_000, base + 57_500, base + 199_000, base + 10_000_000]
    expected = {t: next((o for o, ts in stored if ts >= t), -1) for t in targets}

    consumer = Consumer(consumer_config(strata.bootstrap))
    try:
        got = {}
        for t in targets:  # one lookup per call: a request may name a partition only once
            [answer] = consumer.offsets_for_times([TopicPartition(topic, 0, t)], timeout=TIMEOUT)
            assert answer.error is None, f"offsets_for_times({t}): {answer.error}"
            got[t] = answer.offset
        assert got == expected, f"offsets_for_times: got {got}, expected {expected}"
    finally:
        consumer.close()


def test_watermarks_are_earliest_and_latest(strata):
    topic = unique_topic("watermarks")
    create_topic(strata.bootstrap, topic, partitions=2)
    produce_all(strata.bootstrap, topic, [f"x{i}".encode() for i in range(30)], partitions=2)
    consumer = Consumer(consumer_config(strata.bootstrap))
    try:
        for p in range(2):
            marks = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=TIMEOUT, cached=False)
            assert marks == (0, 15), f"partition {p} watermarks {marks}, expected (0, 15)"
    finally:
        consumer.close()


def test_admin_topics_configs_and_partitions(strata):
    client = AdminClient({"bootstrap.servers": strata.bootstrap})
    topic = unique_topic("admin")

    # validate_only creates nothing.
    result(client.create_topics([NewTopic(topic, 2, 1)], validate_only=True))
    assert topic not in client.list_topics(timeout=TIMEOUT).topics, "validate_only created the topic"

    result(client.create_topics([NewTopic(topic, 2, 1, config={"retention.ms": "3600000"})]))
    wait_until(lambda: topic in client.list_topics(timeout=5).topics, f"{topic} in metadata")
    with pytest.raises(KafkaException) as exists:
        result(client.create_topics([NewTopic(topic, 2, 1)]))
    assert exists.value.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS, exists.value

    def topic_configs():
        resource = ConfigResource(ResourceType.TOPIC, topic)
        return result(client.describe_configs([resource]))[resource]

    configs = topic_configs()
    assert configs["retention.ms"].value == "3600000", configs["retention.ms"]
    assert configs["cleanup.policy"].value == "delete", configs["cleanup.policy"]
    assert "max.message.bytes" in configs, sorted(configs)

    # IncrementalAlterConfigs: set one key, others untouched.
    result(client.incremental_alter_configs([ConfigResource(
        ResourceType.TOPIC, topic, incremental_configs=[
            ConfigEntry("retention.ms", "7200000", incremental_operation=AlterConfigOpType.SET)])]))
    configs = topic_configs()
    assert configs["retention.ms"].value == "7200000", configs["retention.ms"]

    # AlterConfigs (legacy): replaces the whole set of overrides.
    result(client.alter_configs([ConfigResource(
        ResourceType.TOPIC, topic, set_config={"segment.bytes": "10485760"})]))
    configs = topic_configs()
    assert configs["segment.bytes"].value == "10485760", configs["segment.bytes"]
    assert configs["retention.ms"].value != "7200000", "AlterConfigs kept an override it did not name"

    # A policy Kafka does not know is refused (test_compaction.py alters to compact).
    with pytest.raises(KafkaException):
        result(client.incremental_alter_configs([ConfigResource(
            ResourceType.TOPIC, topic, incremental_configs=[
                ConfigEntry("cleanup.policy", "shred", incremental_operation=AlterConfigOpType.SET)])]))

    result(client.create_partitions([NewPartitions(topic, 5)]))
    wait_until(lambda: len(client.list_topics(topic, timeout=5).topics[topic].partitions) == 5,
               f"{topic} with 5 partitions")

    result(client.delete_topics([topic]))
    wait_until(lambda: topic not in client.list_topics(timeout=5).topics, f"{topic} gone from metadata")


# What provisioning tools (Terraform, operators, Kafka Connect) create topics with.
STANDARD_CONFIGS = {
    "min.insync.replicas": "2",
    "unclean.leader.election.enable": "false",
    "compression.type": "producer",
    "message.format.version": "2.8-IV1",
    "flush.ms": "1000",
    "preallocate": "true",
    "min.cleanable.dirty.ratio": "0.3",
    "segment.index.bytes": "1048576",
    "retention.ms": "3600000",
}


def test_every_kafka_topic_config_is_accepted_and_described(strata):
    """CreateTopics with the standard configs tools send succeeds; DescribeConfigs lists every
    Kafka topic config with its source, synonyms and type; values Kafka's types and limits
    refuse, and unknown names, are refused with INVALID_CONFIG naming the config."""
    client = AdminClient({"bootstrap.servers": strata.bootstrap})
    topic = unique_topic("standard-configs")
    result(client.create_topics([NewTopic(topic, 1, 1, config=STANDARD_CONFIGS)]))
    resource = ConfigResource(ResourceType.TOPIC, topic)
    configs = result(client.describe_configs([resource]))[resource]
    for name, value in STANDARD_CONFIGS.items():
        entry = configs[name]
        assert (entry.value, entry.source) == (value, ConfigSource.DYNAMIC_TOPIC_CONFIG.value), (
            f"{name}: {entry}")
    # Configs left alone show Kafka's defaults, and where the default comes from.
    assert configs["delete.retention.ms"].value == "86400000"
    assert configs["delete.retention.ms"].source == ConfigSource.DEFAULT_CONFIG.value
    synonyms = configs["retention.ms"].synonyms
    assert [(s.name, s.value, s.source) for s in synonyms.values()] == [
        ("retention.ms", "3600000", ConfigSource.DYNAMIC_TOPIC_CONFIG.value),
        ("log.retention.ms", "604800000", ConfigSource.DEFAULT_CONFIG.value)], synonyms
    assert len(configs) >= 35, sorted(configs)

    refused = [("compression.type", "brotli", "must be one of"),
               ("min.insync.replicas", "0", "at least 1"),
               ("preallocate", "maybe", "true or false"),
               ("no.such.config", "1", "Unknown config name")]
    for name, value, reason in refused:
        with pytest.raises(KafkaException) as error:
            result(client.create_topics([NewTopic(unique_topic("refused"), 1, 1,
                                                  config={name: value})]))
        assert error.value.args[0].code() == KafkaError.INVALID_CONFIG, (name, error.value)
        assert reason in error.value.args[0].str(), (name, error.value)
    # Altering them goes through the same checks.
    result(client.incremental_alter_configs([ConfigResource(
        ResourceType.TOPIC, topic, incremental_configs=[
            ConfigEntry("min.insync.replicas", "3", incremental_operation=AlterConfigOpType.SET)])]))
    assert result(client.describe_configs([resource]))[resource]["min.insync.replicas"].value == "3"


@pytest.mark.strata_config({"flush.bytes": 1048576, "group.max.size": 50,
                             "log.retention.ms": 3600000})
def test_describe_configs_for_a_broker_lists_its_settings(strata):
    """DescribeConfigs on the broker resource lists the broker's own settings (the config
    file's as static broker configs, the rest as defaults, all read-only) beside the topic
    defaults."""
    client = AdminClient({"bootstrap.servers": strata.bootstrap})
    [broker_id] = client.list_topics(timeout=TIMEOUT).brokers
    resource = ConfigResource(ResourceType.BROKER, str(broker_id))
    configs = result(client.describe_configs([resource]))[resource]
    static, default = ConfigSource.STATIC_BROKER_CONFIG.value, ConfigSource.DEFAULT_CONFIG.value
    expected = {
        "flush.bytes": ("1048576", static),
        "group.max.size": ("50", static),
        "log.retention.ms": ("3600000", static),
        "broker.id": (str(broker_id), static),
        "flush.interval.ms": ("0", default),  # the default for a local store
        "socket.request.max.bytes": ("104857600", default),
        "group.consumer.assignors": ("uniform,range", default),
        "offsets.retention.minutes": ("10080", default),
        "auto.leader.rebalance.enable": ("true", default),
    }
    for name, (value, source) in expected.items():
        assert (configs[name].value, configs[name].source) == (value, source), configs[name]
    assert all(entry.is_read_only for entry in configs.values())
    assert len(configs) >= 60, sorted(configs)


@pytest.mark.parametrize("codec,producer_codec", [
    ("zstd", "none"), ("gzip", "none"), ("lz4", "snappy"), ("snappy", "gzip"), ("uncompressed", "zstd")])
def test_the_broker_recompresses_with_the_topics_compression_type(strata, codec, producer_codec):
    """compression.type naming a codec: every batch is stored compressed with it, whatever the
    producer used (seen in the bytes stored, as the topic's bytes-in), and consumers read
    the same records."""
    client = AdminClient({"bootstrap.servers": strata.bootstrap})
    values = [f"{i:05d}-".encode() + bytes([97 + i % 26]) * 1000 for i in range(200)]
    stored = {}
    for compression in (codec, "producer"):
        topic = unique_topic(f"recompress-{compression}")
        result(client.create_topics([NewTopic(topic, 1, 1, config={"compression.type": compression})]))
        produce_all(strata.bootstrap, topic, values, **{"compression.type": producer_codec})
        assert [m.value() for m in consume_all(strata.bootstrap, topic)] == values
        stored[compression] = metrics(strata.http)[f'strata_topic_bytes_in_total{{topic="{topic}"}}']
    if codec == "uncompressed":
        assert stored[codec] > 5 * stored["producer"], stored
    elif producer_codec == "none":
        assert stored[codec] * 5 < stored["producer"], stored
    else:
        assert stored[codec] != stored["producer"], stored


def test_timestamps_outside_the_topics_bounds_are_refused(strata):
    """message.timestamp.before.max.ms and after.max.ms: a record stamped too far in the past
    or the future is refused with INVALID_TIMESTAMP; one within the bounds is stored."""
    client = AdminClient({"bootstrap.servers": strata.bootstrap})
    topic = unique_topic("timestamp-bounds")
    result(client.create_topics([NewTopic(topic, 1, 1, config={
        "message.timestamp.before.max.ms": "3600000",
        "message.timestamp.after.max.ms": "60000"})]))
    now = int(time.time() * 1000)
    outcomes = {}

    def delivered(err, msg):
        outcomes[msg.value()] = err

    producer = Producer({"bootstrap.servers": strata.bootstrap, "acks": "all", "retries": 0})
    for value, timestamp in [(b"two-hours-ago", now - 7_200_000), (b"in-ten-minutes", now + 600_000),
                             (b"now", now)]:
        producer.produce(topic, value=value, timestamp=timestamp, on_delivery=delivered)
        producer.flush(TIMEOUT)
    assert outcomes[b"now"] is None, outcomes
    for late in (b"two-hours-ago", b"in-ten-minutes"):
        assert outcomes[late] is not None and outcomes[late].code() == KafkaError.INVALID_TIMESTAMP, outcomes
    assert [m.value() for m in consume_all(strata.bootstrap, topic)] == [b"now"]

    # Kafka 4's default bounds the future at one hour, the past not at all.
    topic = unique_topic("timestamp-defaults")
    create_topic(strata.bootstrap, topic)
    outcomes.clear()
    for value, timestamp in [(b"in-two-hours", now + 7_200_000), (b"a-year-ago", now - 31_536_000_000)]:
        producer.produce(topic, value=value, timestamp=timestamp, on_delivery=delivered)
        producer.flush(TIMEOUT)
    assert outcomes[b"a-year-ago"] is None, outcomes
    assert outcomes[b"in-two-hours"].code() == KafkaError.INVALID_TIMESTAMP, outcomes


def test_leader_elections_on_a_single_broker_are_not_needed(strata):
    """Standalone is one broker leading every partition: no election moves anything, and
    one for an unknown partition says so."""
    client = AdminClient({"bootstrap.servers": strata.bootstrap})
    topic = unique_topic("elect")
    create_topic(strata.bootstrap, topic, partitions=2)
    # All partitions: only those an election moved are listed.
    assert client.elect_leaders(ElectionType.PREFERRED, None).result(timeout=TIMEOUT) == {}
    wanted = [TopicPartition(topic, 0), TopicPartition(topic, 1), TopicPartition(topic, 7)]
    for election in (ElectionType.PREFERRED, ElectionType.UNCLEAN):
        errors = client.elect_leaders(election, wanted).result(timeout=TIMEOUT)
        codes = {tp.partition: error.code() for tp, error in errors.items()}
        assert codes == {0: KafkaError.ELECTION_NOT_NEEDED, 1: KafkaError.ELECTION_NOT_NEEDED,
                         7: KafkaError.UNKNOWN_TOPIC_OR_PART}, (election, codes)


def test_delete_records_advances_low_watermark(strata):
    topic = unique_topic("delete-records")
    create_topic(strata.bootstrap, topic)
    produce_all(strata.bootstrap, topic, [f"r{i}".encode() for i in range(100)])

    client = AdminClient({"bootstrap.servers": strata.bootstrap})
    deleted = result(client.delete_records([TopicPartition(topic, 0, 40)]))
    assert [d.low_watermark for d in deleted.values()] == [40], deleted

    consumer = Consumer(consumer_config(strata.bootstrap))
    try:
        marks = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=TIMEOUT, cached=False)
        assert marks == (40, 100), f"watermarks after DeleteRecords: {marks}"
    finally:
        consumer.close()
    messages = consume_all(strata.bootstrap, topic)
    assert [m.offset() for m in messages] == list(range(40, 100)), "records left after DeleteRecords"
    assert messages[0].value() == b"r40", messages[0].value()
