"""Consumer lag on /metrics: the high watermark minus the committed offset per group, topic
and partition, plus a per-group sum, computed at scrape time; the series go with their
group or topic."""

import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient

from group_helpers import GROUP_BROKER_CONFIG, group_lag, produce
from strata_harness import TIMEOUT, create_topic, unique_topic, wait_until

pytestmark = pytest.mark.strata_config(GROUP_BROKER_CONFIG)

PARTITIONS = 2


def consume_and_commit(strata, group, topic, count):
    """A group member consumes `count` records and commits exactly those: the position after
    them in each partition, 0 in a partition it did not read."""
    consumer = Consumer({"bootstrap.servers": strata.bootstrap, "group.id": group,
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([topic])
    consumed = []
    wait_until(lambda: consumed.extend(consumer.consume(100, timeout=0.1)) or len(consumed) >= count,
               f"{count} records")
    assert all(m.error() is None for m in consumed)
    ends = dict.fromkeys(range(PARTITIONS), 0)
    for message in consumed[:count]:
        ends[message.partition()] = max(ends.get(message.partition(), 0), message.offset() + 1)
    assert sum(ends.values()) == count, "the first records of each partition, in order"
    consumer.commit(offsets=[TopicPartition(topic, p, o) for p, o in ends.items()],
                    asynchronous=False)
    consumer.close()
    return ends


def test_lag_is_produced_minus_committed(strata):
    topic = unique_topic("lag")
    group = unique_topic("group")
    create_topic(strata.bootstrap, topic, PARTITIONS)
    produce(strata, topic, "first", 100, PARTITIONS)
    committed = consume_and_commit(strata, group, topic, 30)

    partitions, total = group_lag(strata, group)
    assert partitions == {(topic, p): 50 - committed[p] for p in range(PARTITIONS)}
    assert total == 100 - 30

    # Computed at scrape time: new records show at once.
    produce(strata, topic, "second", 10, PARTITIONS)
    assert group_lag(strata, group)[1] == 110 - 30


def test_lag_series_go_with_their_group_or_topic(strata):
    topic = unique_topic("lag")
    create_topic(strata.bootstrap, topic, PARTITIONS)
    produce(strata, topic, "records", 20, PARTITIONS)
    deleted_group, kept_group = unique_topic("deleted"), unique_topic("kept")
    for group in (deleted_group, kept_group):
        consume_and_commit(strata, group, topic, 5)
        assert group_lag(strata, group)[1] == 15

    admin = AdminClient({"bootstrap.servers": strata.bootstrap})
    admin.delete_consumer_groups([deleted_group])[deleted_group].result(timeout=TIMEOUT)
    assert group_lag(strata, deleted_group) == ({}, None)
    assert group_lag(strata, kept_group)[1] == 15

    admin.delete_topics([topic])[topic].result(timeout=TIMEOUT)
    wait_until(lambda: group_lag(strata, kept_group) == ({}, None), "no lag of a deleted topic")
