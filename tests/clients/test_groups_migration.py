"""Online migration between the classic and the consumer group protocol (KIP-848's upgrade
path): classic consumers (kafka-python, confluent-kafka) replaced one by one by
consumer-protocol ones (confluent-kafka `group.protocol=consumer`) while they consume, and
back; and a group where both kinds consume side by side. Every record is consumed, none again
below the group's committed offset."""

import time

import pytest
from confluent_kafka import ConsumerGroupType
from confluent_kafka.admin import AdminClient

from group_helpers import (GROUP_BROKER_CONFIG, PARTITIONS, RESTART_SESSION_TIMEOUT_MS, Ledger,
                           Member, poll_until, produce)
from strata_harness import TIMEOUT, create_topic, unique_topic
from test_groups_kafka_python import Member as KafkaPythonMember

pytestmark = pytest.mark.strata_config(GROUP_BROKER_CONFIG)

CONSUMER_PROTOCOL = {"group.protocol": "consumer"}


def group_type(strata, group):
    admin = AdminClient({"bootstrap.servers": strata.bootstrap})
    return admin.describe_consumer_groups([group])[group].result(timeout=TIMEOUT).type


def share_all_partitions(members):
    """Every partition with exactly one member."""
    owned = sorted(p for m in members for p in m.partitions())
    return owned == list(range(PARTITIONS))


def replace_one_by_one(strata, topic, ledger, produced, members, new_member):
    """Closes each member in turn and starts its replacement, the group consuming new
    records after each step; returns the new members and the records produced."""
    for i in range(len(members)):
        members[i].close()
        members[i] = new_member(i)
        poll_until(members, lambda: share_all_partitions(members),
                   f"the partitions shared after replacing member {i}")
        produced |= produce(strata, topic, f"step-{members[i].name}", 60)
        expected = len(produced)
        poll_until(members, lambda: ledger.count() == expected,
                   f"the records produced after replacing member {i}")
    return members, produced


def test_a_rolling_upgrade_and_a_rolling_downgrade(strata):
    topic = unique_topic("migration")
    group = unique_topic("group")
    create_topic(strata.bootstrap, topic, PARTITIONS)
    produced = produce(strata, topic, "classic", 120)
    ledger = Ledger()
    members = [KafkaPythonMember("kp0", strata, group, topic, ledger),
               Member("ck1", strata, group, topic, ledger),
               KafkaPythonMember("kp2", strata, group, topic, ledger)]
    poll_until(members, lambda: share_all_partitions(members) and ledger.count() == 120,
               "the classic group consuming")
    assert group_type(strata, group) == ConsumerGroupType.CLASSIC

    # Upgrade: the first consumer-protocol member converts the group; the classic ones
    # carry on inside it until they are replaced too.
    def consumer_member(i):
        return Member(f"new{i}", strata, group, topic, ledger, **CONSUMER_PROTOCOL)
    members, produced = replace_one_by_one(strata, topic, ledger, produced, members,
                                           consumer_member)
    assert group_type(strata, group) == ConsumerGroupType.CONSUMER

    # Downgrade: classic members join the consumer group; when the last consumer-protocol
    # member leaves, it is a classic group again.
    def classic_member(i):
        if i % 2:
            return Member(f"old{i}", strata, group, topic, ledger)
        return KafkaPythonMember(f"old{i}", strata, group, topic, ledger)
    members, produced = replace_one_by_one(strata, topic, ledger, produced, members,
                                           classic_member)
    assert group_type(strata, group) == ConsumerGroupType.CLASSIC
    for member in members:
        member.close()
    ledger.check(produced)


@pytest.mark.parametrize("strategy", ["range", "cooperative-sticky"])
def test_classic_and_consumer_protocol_members_consume_side_by_side(strata, strategy):
    """Eager classic members revoke everything before they join again; cooperative ones say
    in their subscription what they still own and give up only what they must."""
    topic = unique_topic("mixed")
    group = unique_topic("group")
    create_topic(strata.bootstrap, topic, PARTITIONS)
    produced = produce(strata, topic, "first", 120)
    ledger = Ledger()
    assignor = {"partition.assignment.strategy": strategy}
    # kafka-python knows no cooperative protocol: two confluent-kafka members then.
    first = (KafkaPythonMember("kp", strata, group, topic, ledger) if strategy == "range"
             else Member("kp", strata, group, topic, ledger, **assignor))
    classic = [first, Member("ck", strata, group, topic, ledger, **assignor)]
    poll_until(classic, lambda: share_all_partitions(classic), "the classic group settled")
    members = classic + [Member("new", strata, group, topic, ledger, **CONSUMER_PROTOCOL)]
    poll_until(members, lambda: share_all_partitions(members)
               and all(len(m.partitions()) == 2 for m in members),
               "two partitions each in the mixed group")
    assert group_type(strata, group) == ConsumerGroupType.CONSUMER

    # Settled: the assignment holds while all of them consume.
    settled = [m.partitions() for m in members]
    produced |= produce(strata, topic, "second", 120)
    poll_until(members, lambda: ledger.count() == 240, "every record consumed")
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        for member in members:
            member.poll()
    assert [m.partitions() for m in members] == settled
    for member in members:
        member.close()
    ledger.check(produced)
    by_member = {name: {p for (p, _), names in ledger.consumed.items() if name in names}
                 for name in ("kp", "ck", "new")}
    assert all(by_member.values()), f"a member consumed nothing: {by_member}"


def test_a_mixed_group_carries_on_across_a_broker_restart(strata):
    """The group's record keeps the classic member as such: after kill -9 both kinds go on
    with the partitions they had, without a rebalance."""
    topic = unique_topic("mixed-restart")
    group = unique_topic("group")
    create_topic(strata.bootstrap, topic, PARTITIONS)
    produced = produce(strata, topic, "before", 60)
    ledger = Ledger()
    classic = Member("classic", strata, group, topic, ledger,
                     **{"session.timeout.ms": RESTART_SESSION_TIMEOUT_MS})
    poll_until([classic], lambda: share_all_partitions([classic]), "the classic group settled")
    members = [classic, Member("new", strata, group, topic, ledger, **CONSUMER_PROTOCOL)]
    poll_until(members, lambda: share_all_partitions(members) and ledger.count() == 60
               and all(len(m.partitions()) == 3 for m in members),
               "three partitions each in the mixed group")
    assigned = [m.partitions() for m in members]
    rebalances = [(m.assigned_count, m.revoked_count) for m in members]

    strata.restart(kill=True)
    produced |= produce(strata, topic, "after", 60)
    poll_until(members, lambda: ledger.count() == 120, "the records after the restart")
    assert [m.partitions() for m in members] == assigned
    assert [(m.assigned_count, m.revoked_count) for m in members] == rebalances, \
        "the group rebalanced across the restart"
    assert group_type(strata, group) == ConsumerGroupType.CONSUMER
    for member in members:
        member.close()
    ledger.check(produced)
