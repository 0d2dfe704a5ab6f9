"""A graceful restart (SIGTERM) exits 0 and loses nothing, acks=1 records included."""

from collections import Counter

from confluent_kafka import Producer

from strata_harness import TIMEOUT, DeliveryLog, assert_acked_present, consume_all, create_topic, unique_topic


def produce(bootstrap, topic, acks, prefix, count, partitions):
    producer = Producer({"bootstrap.servers": bootstrap, "acks": acks, "linger.ms": 5})
    log = DeliveryLog()
    for i in range(count):
        producer.produce(topic, value=f"{prefix}-{i}".encode(), partition=i % partitions, on_delivery=log)
        producer.poll(0)
    assert producer.flush(TIMEOUT) == 0, "undelivered messages"
    assert not log.errors and len(log.acked) == count, f"{len(log.acked)} acked, errors {log.errors[:5]}"
    return log.acked


def test_sigterm_restart_loses_nothing(strata):
    topic = unique_topic("restart")
    create_topic(strata.bootstrap, topic, partitions=3)
    acked = produce(strata.bootstrap, topic, "all", "all", 2000, 3)
    # acks=1 is answered once buffered: the SIGTERM right after must still flush these.
    acked |= produce(strata.bootstrap, topic, "1", "one", 2000, 3)

    code = strata.restart()
    assert code == 0, f"exit code after SIGTERM: {code}"

    messages = consume_all(strata.bootstrap, topic, partitions=3)
    assert len(messages) == len(acked), f"{len(messages)} records after restart, {len(acked)} acked"
    assert_acked_present(acked, messages)

    # Offsets continue where they were: none is handed out twice.
    more = produce(strata.bootstrap, topic, "all", "after", 3, 3)
    next_offsets = Counter(p for p, _ in acked.values())
    assert sorted(more.values()) == sorted(next_offsets.items()), f"offsets after restart: {more}"

    code = strata.restart()
    assert code == 0, f"exit code after the second SIGTERM: {code}"
    assert_acked_present(acked | more, consume_all(strata.bootstrap, topic, partitions=3))
