"""Group administration with each client's admin API: list, describe and delete groups, read
and delete committed offsets."""

import json
import subprocess
from pathlib import Path

import pytest
from confluent_kafka import (ConsumerGroupState, ConsumerGroupTopicPartitions, ConsumerGroupType,
                             KafkaError, KafkaException, TopicPartition)
from confluent_kafka.admin import AdminClient
from kafka import TopicPartition as KafkaPythonPartition
from kafka import errors as Errors
from kafka.admin import KafkaAdminClient, MemberToRemove
from kafka.structs import OffsetAndMetadata

from group_helpers import GROUP_BROKER_CONFIG, Ledger, Member, poll_until, produce
from strata_harness import TIMEOUT, create_topic, unique_topic

pytestmark = pytest.mark.strata_config(GROUP_BROKER_CONFIG)

PARTITIONS = 3
DRIVER = Path(__file__).parent / "js" / "driver.js"


def active_member(strata, topic, **config):
    """A group with one member that consumed the topic and committed."""
    group = unique_topic("active")
    ledger = Ledger()
    member = Member("member", strata, group, topic, ledger, **config)
    poll_until([member], lambda: ledger.count() == 30 and len(member.partitions()) == PARTITIONS,
               "the member's records")
    return group, member


def setup_topic(strata):
    topic = unique_topic("admin")
    create_topic(strata.bootstrap, topic, PARTITIONS)
    produce(strata, topic, "record", 30, PARTITIONS)  # 10 per partition
    return topic


def test_confluent_kafka_lists_describes_and_deletes_groups(strata):
    topic = setup_topic(strata)
    active, member = active_member(strata, topic)
    admin = AdminClient({"bootstrap.servers": strata.bootstrap})
    # A tool commits to a group that has no members: a "simple" group.
    simple = unique_topic("simple")
    offsets = [TopicPartition(topic, p, 5) for p in range(PARTITIONS)]
    admin.alter_consumer_group_offsets(
        [ConsumerGroupTopicPartitions(simple, offsets)])[simple].result(timeout=TIMEOUT)

    listed = admin.list_consumer_groups().result(timeout=TIMEOUT)
    assert not listed.errors
    by_id = {g.group_id: g for g in listed.valid}
    assert set(by_id) == {active, simple}
    assert (by_id[active].state, by_id[active].is_simple_consumer_group) == (ConsumerGroupState.STABLE, False)
    assert (by_id[simple].state, by_id[simple].is_simple_consumer_group) == (ConsumerGroupState.EMPTY, True)
    assert by_id[active].type == ConsumerGroupType.CLASSIC
    empty = admin.list_consumer_groups(states={ConsumerGroupState.EMPTY}).result(timeout=TIMEOUT)
    assert [g.group_id for g in empty.valid] == [simple]

    described = admin.describe_consumer_groups([active, simple])
    group = described[active].result(timeout=TIMEOUT)
    assert (group.state, group.partition_assignor, group.coordinator.id) == (ConsumerGroupState.STABLE, "range", 0)
    [described_member] = group.members
    assert described_member.client_id == "rdkafka"
    assert sorted(tp.partition for tp in described_member.assignment.topic_partitions) == [0, 1, 2]
    assert described[simple].result(timeout=TIMEOUT).members == []

    committed = admin.list_consumer_group_offsets(
        [ConsumerGroupTopicPartitions(active)])[active].result(timeout=TIMEOUT)
    assert sorted((tp.partition, tp.offset) for tp in committed.topic_partitions) == [
        (p, 10) for p in range(PARTITIONS)]

    # A group with members cannot go.
    with pytest.raises(KafkaException) as refused:
        admin.delete_consumer_groups([active])[active].result(timeout=TIMEOUT)
    assert refused.value.args[0].code() == KafkaError.NON_EMPTY_GROUP
    member.close()
    deleted = admin.delete_consumer_groups([active, simple])
    for future in deleted.values():
        future.result(timeout=TIMEOUT)
    assert admin.list_consumer_groups().result(timeout=TIMEOUT).valid == []
    gone = admin.list_consumer_group_offsets(
        [ConsumerGroupTopicPartitions(active, [TopicPartition(topic, 0)])])[active].result(timeout=TIMEOUT)
    assert gone.topic_partitions[0].offset == -1001, "the deleted group's offsets are gone"


def test_confluent_kafka_describes_consumer_protocol_groups(strata):
    topic = setup_topic(strata)
    group, member = active_member(strata, topic, **{"group.protocol": "consumer"})
    admin = AdminClient({"bootstrap.servers": strata.bootstrap})
    [listed] = admin.list_consumer_groups().result(timeout=TIMEOUT).valid
    assert (listed.group_id, listed.type) == (group, ConsumerGroupType.CONSUMER)
    described = admin.describe_consumer_groups([group])[group].result(timeout=TIMEOUT)
    assert (described.type, described.state, described.partition_assignor) == (
        ConsumerGroupType.CONSUMER, ConsumerGroupState.STABLE, "uniform")
    [described_member] = described.members
    assert sorted(tp.partition for tp in described_member.assignment.topic_partitions) == [0, 1, 2]
    assert sorted(tp.partition for tp in described_member.target_assignment.topic_partitions) == [0, 1, 2]
    member.close()


def test_kafka_python_deletes_offsets_and_removes_members(strata):
    topic = setup_topic(strata)
    group, member = active_member(strata, topic, **{"group.instance.id": "static-1"})
    admin = KafkaAdminClient(bootstrap_servers=strata.bootstrap, request_timeout_ms=TIMEOUT * 1000)
    try:
        described = admin.describe_groups([group])[group]
        assert (described["group_state"], described["protocol_data"]) == ("Stable", "range")
        [described_member] = described["members"]
        assert described_member["group_instance_id"] == "static-1"
        assert described_member["member_assignment"]["assigned_partitions"] == [
            {"topic": topic, "partitions": [0, 1, 2]}]
        assert [(g["group_id"], g["group_type"]) for g in admin.list_groups()] == [(group, "classic")]

        # The group consumes the topic: its offsets stay.
        partitions = [KafkaPythonPartition(topic, p) for p in range(PARTITIONS)]
        refused = admin.delete_group_offsets(group, partitions[:1])
        assert refused == {partitions[0]: Errors.GroupSubscribedToTopicError}

        # An administrator removes the static member (LeaveGroup by group.instance.id).
        assert admin.remove_group_members(group, [MemberToRemove(group_instance_id="static-1")]) == {
            "static-1": Errors.NoError}
        assert admin.describe_groups([group])[group]["group_state"] == "Empty"
        member.close()

        assert admin.delete_group_offsets(group, partitions[:1]) == {partitions[0]: Errors.NoError}
        offsets = admin.list_group_offsets({group: None})[group]
        assert sorted((tp.partition, meta.offset) for tp, meta in offsets.items()) == [(1, 10), (2, 10)]
        admin.alter_group_offsets(group, {partitions[0]: OffsetAndMetadata(3, "reset", -1)})
        offsets = admin.list_group_offsets({group: None})[group]
        assert (offsets[partitions[0]].offset, offsets[partitions[0]].metadata) == (3, "reset")

        assert admin.delete_groups([group]) == {group: "OK"}
        assert admin.list_groups() == []
    finally:
        admin.close()


def kafkajs(strata, *args):
    result = subprocess.run(["node", str(DRIVER), strata.bootstrap, *map(str, args)],
                            capture_output=True, text=True, timeout=TIMEOUT * 2)
    assert result.returncode == 0, f"kafkajs {args} exited {result.returncode}:\n{result.stderr}"
    return json.loads(result.stdout)


def test_kafkajs_lists_describes_and_deletes_groups(strata):
    topic = setup_topic(strata)
    group, member = active_member(strata, topic)
    listed = kafkajs(strata, "list-groups")
    assert listed["groups"] == [{"groupId": group, "protocolType": "consumer"}]
    [described] = kafkajs(strata, "describe-group", group)["groups"]
    assert (described["groupId"], described["state"], described["protocol"]) == (group, "Stable", "range")
    assert len(described["members"]) == 1
    [offsets] = kafkajs(strata, "fetch-offsets", topic, group)
    assert sorted((p["partition"], p["offset"]) for p in offsets["partitions"]) == [
        (p, "10") for p in range(PARTITIONS)]

    member.close()
    kafkajs(strata, "delete-group", group)
    assert kafkajs(strata, "list-groups")["groups"] == []
