"""The consumer group protocol of KIP-848 with confluent-kafka (`group.protocol=consumer`):
server-side assignment, incremental rebalances, static members, committed offsets and
membership across a restart, regex subscriptions, and a group that refuses members of the
other protocol when online migration is disabled (test_groups_migration.py has it enabled)."""

import time

import pytest
from confluent_kafka import Consumer
from confluent_kafka.admin import AdminClient

from group_helpers import (GROUP_BROKER_CONFIG, PARTITIONS, Ledger, Member,
                           members_carry_on_across_a_broker_restart, poll_until, produce,
                           three_members_share_and_hand_over)
from strata_harness import TIMEOUT, create_topic, produce_all, unique_topic, wait_until

pytestmark = pytest.mark.strata_config(GROUP_BROKER_CONFIG)

CONSUMER_PROTOCOL = {"group.protocol": "consumer"}


@pytest.mark.parametrize("assignor", ["uniform", "range"])
def test_three_members_share_partitions_and_take_over_from_one_that_leaves(strata, assignor):
    # Incremental: the members that stay never give up a partition.
    config = {**CONSUMER_PROTOCOL, "group.remote.assignor": assignor}
    def new_member(name, group, topic, ledger):
        return Member(name, strata, group, topic, ledger, **config)
    three_members_share_and_hand_over(strata, new_member, sticky=True)


def test_members_resume_at_committed_offsets_after_a_restart(strata):
    topic = unique_topic("resume")
    group = unique_topic("group")
    create_topic(strata.bootstrap, topic, PARTITIONS)
    produced = produce(strata, topic, "before", 60)
    ledger = Ledger()
    first = Member("first", strata, group, topic, ledger, **CONSUMER_PROTOCOL)
    poll_until([first], lambda: ledger.count() == 60, "the records before the restart")
    first.close()
    consumed = set(ledger.consumed)

    strata.restart(kill=True)

    produced |= produce(strata, topic, "after", 60)
    second = Member("second", strata, group, topic, ledger, **CONSUMER_PROTOCOL)
    poll_until([second], lambda: ledger.count() == 120, "the records after the restart")
    second.close()
    ledger.check(produced)
    again = {position for position, members in ledger.consumed.items() if "second" in members}
    assert not again & consumed, "records consumed before the restart were consumed again"


@pytest.mark.parametrize("kill", [False, True], ids=["sigterm", "kill-9"])
def test_members_that_stay_up_carry_on_after_a_broker_restart(strata, kill):
    members_carry_on_across_a_broker_restart(strata, kill, **CONSUMER_PROTOCOL)


def test_a_static_member_returns_to_its_partitions(strata):
    topic = unique_topic("static")
    group = unique_topic("group")
    create_topic(strata.bootstrap, topic, PARTITIONS)
    ledger = Ledger()
    members = [Member(f"m{i}", strata, group, topic, ledger,
                      **CONSUMER_PROTOCOL, **{"group.instance.id": f"instance-{i}"})
               for i in range(3)]
    poll_until(members, lambda: [len(m.partitions()) for m in members] == [2, 2, 2],
               "two partitions each")
    before = [m.partitions() for m in members]
    revoked = [m.revoked_count for m in members[:2]]

    # It leaves "for now" (epoch -2): its partitions wait for it.
    members[2].close()
    restarted = Member("m2-again", strata, group, topic, ledger,
                       **CONSUMER_PROTOCOL, **{"group.instance.id": "instance-2"})
    poll_until(members[:2] + [restarted], lambda: restarted.partitions() == before[2],
               "the restarted member's partitions back")
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        for member in members[:2]:
            member.poll()
    assert [m.partitions() for m in members[:2]] == before[:2]
    assert [m.revoked_count for m in members[:2]] == revoked, "another member gave up partitions"
    for member in members[:2] + [restarted]:
        member.close()


@pytest.mark.strata_config({**GROUP_BROKER_CONFIG, "group.consumer.migration.policy": "disabled"})
def test_a_group_does_not_mix_protocols_when_migration_is_disabled(strata):
    topic = unique_topic("mixed")
    group = unique_topic("group")
    create_topic(strata.bootstrap, topic, PARTITIONS)
    produced = produce(strata, topic, "classic", 60)
    ledger = Ledger()
    classic = Member("classic", strata, group, topic, ledger)
    poll_until([classic], lambda: ledger.count() == 60, "the classic member's records")

    refused = Consumer({"bootstrap.servers": strata.bootstrap, "group.id": group,
                        **CONSUMER_PROTOCOL})
    refused.subscribe([topic])
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        refused.poll(0.1)
        classic.poll()
    assert refused.assignment() == []
    assert classic.partitions() == list(range(PARTITIONS))
    refused.close()
    admin = AdminClient({"bootstrap.servers": strata.bootstrap})
    described = admin.describe_consumer_groups([group])[group].result(timeout=TIMEOUT)
    assert [m.client_id for m in described.members] == ["rdkafka"]
    classic.close()

    # Once empty, the group takes members of the other protocol and keeps its offsets.
    converted = Member("converted", strata, group, topic, ledger, **CONSUMER_PROTOCOL)
    poll_until([converted], lambda: len(converted.partitions()) == PARTITIONS, "the new protocol")
    produced |= produce(strata, topic, "consumer", 60)
    poll_until([converted], lambda: ledger.count() == 120, "the records produced since")
    converted.close()
    ledger.check(produced)
    assert all(members in (["classic"], ["converted"]) for members in ledger.consumed.values())


def test_a_regex_subscription_follows_the_topics_it_matches(strata):
    """`subscribe(["^prefix.*"])` sends SubscribedTopicRegex: the member gets the matching
    topics' partitions (and not the others'), and those of a matching topic created later."""
    prefix = unique_topic("rx")
    matching = [f"{prefix}-a", f"{prefix}-b"]
    other = f"x{prefix}-a"  # matches the pattern only if it is not anchored
    for topic in matching + [other]:
        create_topic(strata.bootstrap, topic, 2)
    group = unique_topic("group")
    consumer = Consumer({"bootstrap.servers": strata.bootstrap, "group.id": group,
                         "auto.offset.reset": "earliest", **CONSUMER_PROTOCOL})
    consumer.subscribe([f"^{prefix}-.*"])
    try:
        def assigned_topics():
            consumer.poll(0.1)
            return sorted({tp.topic for tp in consumer.assignment()})
        wait_until(lambda: assigned_topics() == matching, "the matching topics assigned")

        later = f"{prefix}-c"
        create_topic(strata.bootstrap, later, 2)
        wait_until(lambda: assigned_topics() == matching + [later],
                   "the topic created later assigned")
        produce_all(strata.bootstrap, later, [b"late"], 2)
        wait_until(lambda: any(m is not None and m.error() is None and m.topic() == later
                               for m in [consumer.poll(0.2)]),
                   "a record of the topic created later")

        admin = AdminClient({"bootstrap.servers": strata.bootstrap})
        described = admin.describe_consumer_groups([group])[group].result(timeout=TIMEOUT)
        [member] = described.members
        assert sorted({tp.topic for tp in member.assignment.topic_partitions}) == \
            matching + [later]

        admin.delete_topics([matching[0]])[matching[0]].result(timeout=TIMEOUT)
        wait_until(lambda: assigned_topics() == [matching[1], later],
                   "the deleted topic's partitions revoked")
    finally:
        consumer.close()
