"""Consumer groups with confluent-kafka (librdkafka) and the classic protocol: partitions
shared and moved, committed offsets across broker restarts, static membership."""

import pytest
from confluent_kafka import Consumer, TopicPartition

from group_helpers import (GROUP_BROKER_CONFIG, PARTITIONS, Ledger, Member,
                           members_carry_on_across_a_broker_restart, poll_until, produce,
                           three_members_share_and_hand_over)
from strata_harness import TIMEOUT, create_topic, unique_topic

pytestmark = pytest.mark.strata_config(GROUP_BROKER_CONFIG)


def members(strata, **config):
    return lambda name, group, topic, ledger: Member(name, strata, group, topic, ledger, **config)


def test_three_members_share_partitions_and_take_over_from_one_that_leaves(strata):
    three_members_share_and_hand_over(strata, members(strata))


def test_cooperative_sticky_members_keep_their_partitions(strata):
    cooperative = members(strata, **{"partition.assignment.strategy": "cooperative-sticky"})
    three_members_share_and_hand_over(strata, cooperative, sticky=True)


@pytest.mark.parametrize("kill", [False, True], ids=["sigterm", "kill-9"])
def test_members_resume_at_committed_offsets_after_a_broker_restart(strata, kill):
    topic = unique_topic("resume")
    group = unique_topic("group")
    create_topic(strata.bootstrap, topic, PARTITIONS)
    produce(strata, topic, "before", 60)  # 10 per partition
    consumer = Consumer({"bootstrap.servers": strata.bootstrap, "group.id": group,
                         "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    commits = [TopicPartition(topic, p, 4 + p, f"checkpoint-{p}", 0) for p in range(PARTITIONS)]
    consumer.commit(offsets=commits, asynchronous=False)
    consumer.close()

    strata.restart(kill=kill)

    ledger = Ledger()
    member = Member("after", strata, group, topic, ledger)
    committed = member.consumer.committed([TopicPartition(topic, p) for p in range(PARTITIONS)],
                                          timeout=TIMEOUT)
    assert [(tp.partition, tp.offset, tp.metadata, tp.leader_epoch) for tp in committed] == [
        (p, 4 + p, f"checkpoint-{p}", 0) for p in range(PARTITIONS)]
    expected = {(p, o) for p in range(PARTITIONS) for o in range(4 + p, 10)}
    poll_until([member], lambda: ledger.count() >= len(expected), "the uncommitted records")
    member.close()
    assert set(ledger.consumed) == expected


@pytest.mark.parametrize("kill", [False, True], ids=["sigterm", "kill-9"])
def test_members_that_stay_up_carry_on_after_a_broker_restart(strata, kill):
    members_carry_on_across_a_broker_restart(strata, kill)


def test_a_static_member_restarts_without_a_rebalance(strata):
    topic = unique_topic("static")
    group = unique_topic("group")
    create_topic(strata.bootstrap, topic, PARTITIONS)
    ledger = Ledger()
    # Long enough a session for the restart, which must not be noticed.
    static = {"session.timeout.ms": 20000}
    members = [Member(f"m{i}", strata, group, topic, ledger, **{"group.instance.id": f"instance-{i}"},
                      **static) for i in range(3)]
    poll_until(members, lambda: [len(m.partitions()) for m in members] == [2, 2, 2],
               "two partitions each")
    before = [m.partitions() for m in members]
    rebalances = [(m.assigned_count, m.revoked_count) for m in members[:2]]

    # A static member leaves no LeaveGroup behind: the group waits for it.
    members[2].close()
    restarted = Member("m2-again", strata, group, topic, ledger,
                       **{"group.instance.id": "instance-2"}, **static)
    poll_until(members[:2] + [restarted], lambda: restarted.partitions() == before[2],
               "the restarted member's partitions back")
    for _ in range(20):  # a few more heartbeats of the others
        for member in members[:2]:
            member.poll()
    assert [m.partitions() for m in members[:2]] == before[:2]
    assert [(m.assigned_count, m.revoked_count) for m in members[:2]] == rebalances, \
        "the other members went through a rebalance"
    for member in members[:2] + [restarted]:
        member.close()
