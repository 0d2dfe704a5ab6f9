"""kafka-python 3.0 (pure Python; insists on ApiVersions v3): admin and a produce/consume
round trip without consumer groups, also through the broker's recompression."""

import time

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType

from strata_harness import TIMEOUT, unique_topic, wait_until

TIMEOUT_MS = TIMEOUT * 1000


def test_admin_create_describe_delete_topics(strata):
    admin = KafkaAdminClient(bootstrap_servers=strata.bootstrap, request_timeout_ms=TIMEOUT_MS)
    try:
        topic = unique_topic("kp-admin")
        # Standard Kafka configs Strata has no use for are accepted like the others.
        admin.create_topics({topic: {"num_partitions": 3, "replication_factor": 1,
                                     "configs": {"retention.ms": "123456789",
                                                 "min.insync.replicas": "2",
                                                 "unclean.leader.election.enable": "false"}}})
        wait_until(lambda: topic in admin.list_topics(), f"{topic} listed")

        [described] = admin.describe_topics([topic])
        assert described["error_code"] == 0, described
        assert len(described["partitions"]) == 3, described

        # By default only the topic's overrides are described.
        configs = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
        topic_configs = configs["topic"][topic]
        assert topic_configs["retention.ms"]["value"] == "123456789", topic_configs
        assert topic_configs["retention.ms"]["config_source"] == "DYNAMIC_TOPIC_CONFIG", topic_configs
        assert topic_configs["min.insync.replicas"]["value"] == "2", topic_configs

        admin.delete_topics([topic])
        wait_until(lambda: topic not in admin.list_topics(), f"{topic} gone")
    finally:
        admin.close()


@pytest.mark.strata_config({"max.connections": 500})
def test_describe_configs_for_a_broker(strata):
    """The broker resource lists the broker's settings, the config file's as static."""
    admin = KafkaAdminClient(bootstrap_servers=strata.bootstrap, request_timeout_ms=TIMEOUT_MS)
    try:
        [broker] = admin.describe_cluster()["brokers"]
        broker_id = str(broker["broker_id"])
        configs = admin.describe_configs([ConfigResource(ConfigResourceType.BROKER, broker_id)],
                                         config_filter="all")
        broker_configs = configs["broker"][broker_id]
        assert broker_configs["max.connections"]["value"] == "500", broker_configs
        assert broker_configs["max.connections"]["config_source"] == "STATIC_BROKER_CONFIG"
        assert broker_configs["buffer.max.bytes"]["value"] == str(64 << 20), broker_configs
        assert broker_configs["buffer.max.bytes"]["config_source"] == "DEFAULT_CONFIG"
        assert broker_configs["log.retention.ms"]["value"] == "604800000", broker_configs
    finally:
        admin.close()


@pytest.mark.parametrize("compression", ["producer", "gzip"])
def test_produce_and_consume_with_assign(strata, compression):
    """With compression.type=gzip the broker stores the uncompressed batches gzipped, and
    kafka-python reads them back as it sent them."""
    topic = unique_topic("kp-data")
    admin = KafkaAdminClient(bootstrap_servers=strata.bootstrap, request_timeout_ms=TIMEOUT_MS)
    try:
        admin.create_topics({topic: {"num_partitions": 1, "replication_factor": 1,
                                     "configs": {"compression.type": compression}}})
    finally:
        admin.close()

    producer = KafkaProducer(bootstrap_servers=strata.bootstrap, acks="all", linger_ms=5,
                             request_timeout_ms=TIMEOUT_MS)
    try:
        futures = [producer.send(topic, key=f"k{i}".encode(), value=f"v{i}".encode(), partition=0)
                   for i in range(500)]
        offsets = [f.get(timeout=TIMEOUT).offset for f in futures]
    finally:
        producer.close(timeout=TIMEOUT)
    assert offsets == list(range(500)), "acknowledged offsets are not 0..499 in order"

    consumer = KafkaConsumer(bootstrap_servers=strata.bootstrap, group_id=None,
                             enable_auto_commit=False, request_timeout_ms=TIMEOUT_MS)
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        consumer.seek_to_beginning(tp)
        records = []
        deadline = time.monotonic() + TIMEOUT
        while len(records) < 500 and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=500).values():
                records.extend(batch)
    finally:
        consumer.close()
    assert [(r.offset, r.key, r.value) for r in records] == [
        (i, f"k{i}".encode(), f"v{i}".encode()) for i in range(500)], \
        f"read {len(records)} records back, expected 500 in order"
