"""Helpers shared by the consumer-group tests (test_groups_*.py, test_group_admin.py,
test_lag.py): broker settings for short rebalances, a ledger of what a group consumed and
committed, the three-member scenario every client runs, a confluent-kafka member, and
consumer lag from /metrics.

A member, whatever its client, has `poll()` (consume what is there, record it in the ledger,
commit), `partitions()` (its assignment) and `close()` (leave the group)."""

import http.client
import re
import time
from collections import defaultdict

from confluent_kafka import Consumer, ConsumerGroupState, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient

from strata_harness import TIMEOUT, create_topic, produce_all, unique_topic, wait_until

# Short rebalances: the first one waits 1 s for the other members; consumer-protocol members
# heartbeat every 500 ms and time out after 6 s.
GROUP_BROKER_CONFIG = {
    "group.initial.rebalance.delay.ms": 1000,
    "group.consumer.heartbeat.interval.ms": 500,
    "group.consumer.session.timeout.ms": 6000,
}

# Classic consumers: the broker's minimum session timeout, and quick heartbeats.
SESSION_TIMEOUT_MS = 6000
HEARTBEAT_INTERVAL_MS = 500

PARTITIONS = 6

# Classic members that must keep their membership across a broker restart: librdkafka gives
# its membership up once no heartbeat succeeded for a session timeout.
RESTART_SESSION_TIMEOUT_MS = 30000


class Ledger:
    """What the members of one group consumed and committed, to check the group's promise:
    every record is consumed, and none is consumed again once the group has committed an
    offset beyond it (a record whose commit failed may be delivered again)."""

    def __init__(self):
        # (partition, offset) -> names of the members that consumed it, in order.
        self.consumed = defaultdict(list)
        # partition -> the group's committed offset: the last commit acknowledged to a member.
        self.committed = {}
        # (partition, offset, committed offset, member) of each record consumed again although
        # the group had already committed beyond it.
        self.again_below_commit = []

    def record(self, member: str, partition: int, offset: int):
        committed = self.committed.get(partition, -1)
        if self.consumed[(partition, offset)] and offset < committed:
            self.again_below_commit.append((partition, offset, committed, member))
        self.consumed[(partition, offset)].append(member)

    def commit(self, partition: int, offset: int):
        self.committed[partition] = offset

    def count(self) -> int:
        return len(self.consumed)

    def check(self, produced: set):
        """`produced`: every (partition, offset) written."""
        missing = produced - set(self.consumed)
        assert not missing, f"{len(missing)} records never consumed, e.g. {sorted(missing)[:5]}"
        extra = set(self.consumed) - produced
        assert not extra, f"consumed records that were not produced: {sorted(extra)[:5]}"
        assert not self.again_below_commit, (
            "records consumed again below the group's committed offset "
            f"(partition, offset, committed, member): {self.again_below_commit[:5]}")


def metrics_text(strata) -> str:
    conn = http.client.HTTPConnection(strata.http, timeout=TIMEOUT)
    try:
        conn.request("GET", "/metrics")
        response = conn.getresponse()
        assert response.status == 200, f"GET /metrics: {response.status}"
        return response.read().decode()
    finally:
        conn.close()


def group_lag(strata, group: str) -> tuple[dict, int | None]:
    """({(topic, partition): lag}, the group's lag sum or None) from /metrics."""
    text = metrics_text(strata)
    partitions = {}
    for topic, partition, value in re.findall(
            r'^strata_consumer_group_lag\{group="' + re.escape(group)
            + r'",topic="([^"]+)",partition="(\d+)"\} (\d+)$', text, re.M):
        partitions[(topic, int(partition))] = int(value)
    total = re.search(r'^strata_consumer_group_lag_sum\{group="' + re.escape(group)
                      + r'"\} (\d+)$', text, re.M)
    return partitions, int(total.group(1)) if total else None


class Member:
    """A group member that records what it consumes and commits after every poll."""

    def __init__(self, name, strata, group, topic, ledger, **config):
        self.name, self.topic, self.ledger = name, topic, ledger
        self.assigned_count = 0
        self.revoked_count = 0
        # The consumer protocol sets these on the broker.
        classic = {} if config.get("group.protocol") == "consumer" else {
            "session.timeout.ms": SESSION_TIMEOUT_MS,
            "heartbeat.interval.ms": HEARTBEAT_INTERVAL_MS,
        }
        self.consumer = Consumer({
            "bootstrap.servers": strata.bootstrap,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            **classic,
            **config,
        })
        self.consumer.subscribe([topic], on_assign=self._assigned, on_revoke=self._revoked)

    def _assigned(self, consumer, partitions):
        self.assigned_count += 1

    def _revoked(self, consumer, partitions):
        self.revoked_count += 1

    def poll(self):
        last = {}
        for message in self.consumer.consume(num_messages=100, timeout=0.05):
            assert message.error() is None, f"{self.name}: {message.error()}"
            self.ledger.record(self.name, message.partition(), message.offset())
            last[message.partition()] = message.offset() + 1
        if last:
            offsets = [TopicPartition(self.topic, p, o) for p, o in last.items()]
            try:
                self.consumer.commit(offsets=offsets, asynchronous=False)
            except KafkaException:
                return  # A rebalance moved the partition on: the next owner reads it again.
            for p, o in last.items():
                self.ledger.commit(p, o)

    def partitions(self) -> list:
        return sorted(tp.partition for tp in self.consumer.assignment())

    def close(self):
        self.consumer.close()


def poll_until(members, condition, what, timeout=TIMEOUT):
    def polled():
        for member in members:
            member.poll()
        return condition()
    wait_until(polled, what, timeout=timeout, interval=0)


def produce(strata, topic, prefix, count, partitions=PARTITIONS):
    """`count` records round-robin over the partitions; returns their (partition, offset)."""
    values = [f"{prefix}-{i}".encode() for i in range(count)]
    return set(produce_all(strata.bootstrap, topic, values, partitions).values())


def three_members_share_and_hand_over(strata, new_member, sticky=False, crash=False):
    """Three members of one group on a 6-partition topic get two partitions each; when one
    leaves (or, if `crash`, dies without a word), the other two take its partitions within
    the session timeout of its leaving (or of its last heartbeat), keeping their own if
    `sticky`; every record is consumed, none below a commit twice.
    `new_member(name, group, topic, ledger)` starts a member."""
    topic = unique_topic("groups")
    group = unique_topic("group")
    create_topic(strata.bootstrap, topic, PARTITIONS)
    produced = produce(strata, topic, "first", 300)
    ledger = Ledger()
    members = [new_member(f"m{i}", group, topic, ledger) for i in range(3)]
    poll_until(members, lambda: [len(m.partitions()) for m in members] == [2, 2, 2],
               "two partitions each")
    assert sorted(p for m in members for p in m.partitions()) == list(range(PARTITIONS))
    poll_until(members, lambda: ledger.count() == 300, "the first 300 records consumed")

    kept = [set(m.partitions()) for m in members[:2]]
    leaving = members.pop()
    if crash:
        leaving.kill()
    else:
        leaving.close()
    left = time.monotonic()
    # A crashed member is noticed when its session times out, then the others rejoin.
    within = SESSION_TIMEOUT_MS / 1000 * (2 if crash else 1)
    poll_until(members, lambda: [len(m.partitions()) for m in members] == [3, 3],
               "three partitions each after one member left", timeout=within)
    assert time.monotonic() - left < within
    assert sorted(p for m in members for p in m.partitions()) == list(range(PARTITIONS))
    if sticky:
        assert all(before <= set(m.partitions()) for before, m in zip(kept, members)), \
            "a remaining member lost a partition"

    produced |= produce(strata, topic, "second", 300)
    poll_until(members, lambda: ledger.count() == 600, "all 600 records consumed")
    for member in members:
        member.close()
    ledger.check(produced)


def described_members(strata, group) -> tuple:
    """(state, [(member id, partitions)]) of a group as the admin client describes it."""
    admin = AdminClient({"bootstrap.servers": strata.bootstrap})
    group = admin.describe_consumer_groups([group])[group].result(timeout=TIMEOUT)
    members = sorted((m.member_id, sorted(tp.partition for tp in m.assignment.topic_partitions))
                     for m in group.members)
    return group.state, members


def members_carry_on_across_a_broker_restart(strata, kill, **config):
    """Two members of a settled group that stay up while the broker restarts carry on without
    a rebalance (the group is loaded from its record with their assignment) and go on where
    they committed: nothing is lost, no partition moves, no rebalance callback fires."""
    topic = unique_topic("carry-on")
    group = unique_topic("group")
    create_topic(strata.bootstrap, topic, PARTITIONS)
    produced = produce(strata, topic, "before", 60)
    ledger = Ledger()
    # Classic members: a session long enough for a restart on a loaded machine.
    if config.get("group.protocol") != "consumer":
        config = {"session.timeout.ms": RESTART_SESSION_TIMEOUT_MS, **config}
    members = [Member(f"m{i}", strata, group, topic, ledger, **config) for i in range(2)]
    poll_until(members, lambda: ledger.count() == 60
               and sorted(len(m.partitions()) for m in members) == [3, 3],
               "the records before the restart, three partitions each")
    assigned = [m.partitions() for m in members]
    rebalances = [(m.assigned_count, m.revoked_count) for m in members]
    described = described_members(strata, group)
    assert described[0] == ConsumerGroupState.STABLE, described
    strata.restart(kill=kill)
    produced |= produce(strata, topic, "after", 60)
    poll_until(members, lambda: ledger.count() == 120, "the records after the restart")
    assert [m.partitions() for m in members] == assigned
    assert [(m.assigned_count, m.revoked_count) for m in members] == rebalances, \
        "the group rebalanced across the restart"
    assert described_members(strata, group) == described, "the group's members changed"
    for member in members:
        member.close()
    ledger.check(produced)
