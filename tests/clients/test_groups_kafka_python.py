"""Consumer groups with kafka-python (pure Python, classic protocol): partitions shared and
moved, committed offsets across broker restarts, static membership."""

import threading
import time

import pytest
from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata

from group_helpers import (GROUP_BROKER_CONFIG, HEARTBEAT_INTERVAL_MS, PARTITIONS,
                           SESSION_TIMEOUT_MS, Ledger, poll_until, produce,
                           three_members_share_and_hand_over)
from strata_harness import TIMEOUT, create_topic, unique_topic

pytestmark = pytest.mark.strata_config(GROUP_BROKER_CONFIG)


class Member:
    """A kafka-python group member, polled by a thread of its own, that commits what it
    consumed after every poll. Its own thread: kafka-python 3.0 sends a fresh JoinGroup when a
    join completed between two polls, and a leader's JoinGroup starts another rebalance, so
    members polled in turn from one thread can keep the group rebalancing."""

    def __init__(self, name, strata, group, topic, ledger, **config):
        self.name, self.topic, self.ledger = name, topic, ledger
        config = {"session_timeout_ms": SESSION_TIMEOUT_MS,
                  "heartbeat_interval_ms": HEARTBEAT_INTERVAL_MS, **config}
        self.consumer = KafkaConsumer(
            bootstrap_servers=strata.bootstrap, group_id=group, auto_offset_reset="earliest",
            enable_auto_commit=False, request_timeout_ms=TIMEOUT * 1000, **config)
        self.consumer.subscribe([topic])
        self.lock = threading.Lock()
        self.assigned = []
        self.stopping = threading.Event()
        self.failure = None
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.thread.start()

    def _run(self):
        try:
            while not self.stopping.is_set():
                try:
                    self._poll_once()
                except KafkaError as e:
                    # kafka-python 3.0 raises from poll, once, the error its heartbeat loop
                    # ended with (a restarting broker refuses connections); the next poll
                    # starts the loop again. Only a retriable error is worth going on after.
                    if not e.retriable:
                        raise
                    time.sleep(0.1)
        except Exception as e:  # pylint: disable=broad-except
            self.failure = e
        finally:
            self.consumer.close()

    def _poll_once(self):
        last = {}
        records = self.consumer.poll(timeout_ms=500)
        with self.lock:
            for tp, batch in records.items():
                for record in batch:
                    self.ledger.record(self.name, tp.partition, record.offset)
                    last[tp.partition] = record.offset + 1
            self.assigned = sorted(tp.partition for tp in self.consumer.assignment())
        if last:
            offsets = {TopicPartition(self.topic, p): OffsetAndMetadata(o, "", -1)
                       for p, o in last.items()}
            try:
                self.consumer.commit(offsets)
            except Exception:  # pylint: disable=broad-except
                return  # A rebalance moved the partition on: the next owner reads it again.
            with self.lock:
                for p, o in last.items():
                    self.ledger.commit(p, o)

    def poll(self):
        assert self.failure is None, f"{self.name}: {self.failure!r}"
        time.sleep(0.01)

    def partitions(self) -> list:
        with self.lock:
            return list(self.assigned)

    def generation(self) -> int:
        with self.lock:
            return self.consumer._coordinator._generation.generation_id

    def close(self):
        self.stopping.set()
        self.thread.join(TIMEOUT)
        assert not self.thread.is_alive(), f"{self.name} did not stop"


def test_three_members_share_partitions_and_take_over_from_one_that_leaves(strata):
    def new_member(name, group, topic, ledger):
        return Member(name, strata, group, topic, ledger)
    three_members_share_and_hand_over(strata, new_member)


@pytest.mark.parametrize("kill", [False, True], ids=["sigterm", "kill-9"])
def test_members_resume_at_committed_offsets_after_a_broker_restart(strata, kill):
    topic = unique_topic("resume")
    group = unique_topic("group")
    create_topic(strata.bootstrap, topic, PARTITIONS)
    produce(strata, topic, "before", 60)  # 10 per partition
    consumer = KafkaConsumer(bootstrap_servers=strata.bootstrap, group_id=group,
                             enable_auto_commit=False)
    consumer.commit({TopicPartition(topic, p): OffsetAndMetadata(4 + p, f"checkpoint-{p}", -1)
                     for p in range(PARTITIONS)})
    consumer.close()

    strata.restart(kill=kill)

    reader = KafkaConsumer(bootstrap_servers=strata.bootstrap, group_id=group,
                           enable_auto_commit=False)
    for p in range(PARTITIONS):
        committed = reader.committed(TopicPartition(topic, p), metadata=True)
        assert (committed.offset, committed.metadata) == (4 + p, f"checkpoint-{p}")
    reader.close()
    ledger = Ledger()
    member = Member("after", strata, group, topic, ledger)
    expected = {(p, o) for p in range(PARTITIONS) for o in range(4 + p, 10)}
    poll_until([member], lambda: ledger.count() >= len(expected), "the uncommitted records")
    member.close()
    assert set(ledger.consumed) == expected


def test_a_static_member_restarts_without_a_rebalance(strata):
    topic = unique_topic("static")
    group = unique_topic("group")
    create_topic(strata.bootstrap, topic, PARTITIONS)
    ledger = Ledger()
    static = {"session_timeout_ms": 20000}
    members = [Member(f"m{i}", strata, group, topic, ledger, group_instance_id=f"instance-{i}",
                      **static) for i in range(3)]
    poll_until(members, lambda: [len(m.partitions()) for m in members] == [2, 2, 2],
               "two partitions each")
    generations = [m.generation() for m in members[:2]]
    before = [m.partitions() for m in members]

    members[2].close()
    restarted = Member("m2-again", strata, group, topic, ledger,
                       group_instance_id="instance-2", **static)
    poll_until(members[:2] + [restarted], lambda: restarted.partitions() == before[2],
               "the restarted member's partitions back")
    time.sleep(2)  # a few more heartbeats of the others
    assert [m.partitions() for m in members[:2]] == before[:2]
    assert [m.generation() for m in members[:2]] == generations, \
        "the other members went through a rebalance"
    for member in members[:2] + [restarted]:
        member.close()


@pytest.mark.parametrize("kill", [False, True], ids=["sigterm", "kill-9"])
def test_a_settled_group_keeps_its_generation_across_a_broker_restart(strata, kill):
    topic = unique_topic("carry-on")
    group = unique_topic("group")
    create_topic(strata.bootstrap, topic, PARTITIONS)
    produced = produce(strata, topic, "before", 60)
    ledger = Ledger()
    # A session long enough for the restart on a loaded machine.
    members = [Member(f"m{i}", strata, group, topic, ledger, session_timeout_ms=30000)
               for i in range(2)]
    poll_until(members, lambda: ledger.count() == 60
               and sorted(len(m.partitions()) for m in members) == [3, 3],
               "the records before the restart, three partitions each")
    generations = [m.generation() for m in members]
    assigned = [m.partitions() for m in members]

    strata.restart(kill=kill)

    produced |= produce(strata, topic, "after", 60)
    poll_until(members, lambda: ledger.count() == 120, "the records after the restart")
    assert [m.generation() for m in members] == generations, "the group rebalanced"
    assert [m.partitions() for m in members] == assigned
    for member in members:
        member.close()
    ledger.check(produced)
