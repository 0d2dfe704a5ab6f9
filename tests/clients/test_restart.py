"""A graceful restart (SIGTERM) exits 0 and loses nothing, acks=1 records included."""

from collections import Counter

from strata_harness import assert_acked_present, consume_all, create_topic, produce_all, unique_topic

PARTITIONS = 3


def values(prefix, count):
    return [f"{prefix}-{i}".encode() for i in range(count)]


def test_sigterm_restart_loses_nothing(strata):
    topic = unique_topic("restart")
    create_topic(strata.bootstrap, topic, partitions=PARTITIONS)
    acked = produce_all(strata.bootstrap, topic, values("all", 2000), PARTITIONS)
    # acks=1 is answered once buffered: the SIGTERM right after must still flush these.
    acked |= produce_all(strata.bootstrap, topic, values("one", 2000), PARTITIONS, acks="1")

    code = strata.restart()
    assert code == 0, f"exit code after SIGTERM: {code}"

    messages = consume_all(strata.bootstrap, topic, partitions=PARTITIONS)
    assert len(messages) == len(acked), f"{len(messages)} records after restart, {len(acked)} acked"
    assert_acked_present(acked, messages)

    # Offsets continue where they were: none is handed out twice.
    more = produce_all(strata.bootstrap, topic, values("after", PARTITIONS), PARTITIONS)
    next_offsets = Counter(p for p, _ in acked.values())
    assert sorted(more.values()) == sorted(next_offsets.items()), f"offsets after restart: {more}"

    code = strata.restart()
    assert code == 0, f"exit code after the second SIGTERM: {code}"
    assert_acked_present(acked | more, consume_all(strata.bootstrap, topic, partitions=PARTITIONS))
