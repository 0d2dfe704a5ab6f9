"""Authorization with Kafka's ACLs (authorizer.class.name = StandardAuthorizer): ACLs
created, described and deleted with confluent-kafka's and kafka-python's admin clients;
users authenticated with SCRAM over SASL_PLAINTEXT refused with Kafka's codes until an ACL
lets them produce, consume, administer topics and configs, describe the cluster and run
transactions; deny wins, prefixed and host-bound ACLs, super users; and a second gateway of
a cluster enforcing an ACL created through the first."""

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import (AclBinding, AclBindingFilter, AclOperation, AclPermissionType,
                                   AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource,
                                   NewPartitions, NewTopic, ResourcePatternType, ResourceType,
                                   ScramCredentialInfo, ScramMechanism, UserScramCredentialUpsertion)
from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import (ACL, ACLFilter, ACLOperation, ACLPermissionType, ACLResourcePatternType,
                         ResourcePattern, ResourcePatternFilter)
from kafka.admin import ResourceType as KafkaPythonResourceType
from kafka.errors import ClusterAuthorizationFailedError, SecurityDisabledError, TopicAuthorizationFailedError

from cluster_harness import Cluster, led_by
from strata_harness import TIMEOUT, Strata, free_ports, unique_topic, wait_until

# confluent-kafka names the CLUSTER resource type (4) BROKER.
AUTHORIZER = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
PASSWORDS = {"admin": "admin-secret", "alice": "alice-secret", "bob": "bob-secret"}

TOPIC_AUTHORIZATION_FAILED = KafkaError.TOPIC_AUTHORIZATION_FAILED
GROUP_AUTHORIZATION_FAILED = KafkaError.GROUP_AUTHORIZATION_FAILED
CLUSTER_AUTHORIZATION_FAILED = KafkaError.CLUSTER_AUTHORIZATION_FAILED
TRANSACTIONAL_ID_AUTHORIZATION_FAILED = KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    """One broker with the authorizer on: a SASL_PLAINTEXT listener for the users, and a
    PLAINTEXT one whose principal, User:ANONYMOUS, is a super user (as the inter-broker
    principal is in Kafka) for setting things up."""
    b = Strata(tmp_path_factory.mktemp("acls"))
    [port] = free_ports(1)
    b.sasl_bootstrap = f"127.0.0.1:{port}"
    b.write_config({"listeners": f"SASL_PLAINTEXT://{b.sasl_bootstrap},PLAINTEXT://{b.bootstrap}",
                    "authorizer.class.name": AUTHORIZER,
                    "super.users": "User:admin;User:ANONYMOUS"})
    b.start()
    admin = AdminClient({"bootstrap.servers": b.bootstrap})
    upsertions = [UserScramCredentialUpsertion(user, ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 4096),
                                               password.encode())
                  for user, password in PASSWORDS.items()]
    for future in admin.alter_user_scram_credentials(upsertions).values():
        future.result(timeout=TIMEOUT)
    yield b
    b.stop(kill=True)
    print(b.log())


def user_config(b, user):
    return {"bootstrap.servers": b.sasl_bootstrap, "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanism": "SCRAM-SHA-256", "sasl.username": user, "sasl.password": PASSWORDS[user]}


def kafka_python_config(b, user):
    return {"bootstrap_servers": b.sasl_bootstrap, "security_protocol": "SASL_PLAINTEXT",
            "sasl_mechanism": "SCRAM-SHA-256", "sasl_plain_username": user,
            "sasl_plain_password": PASSWORDS[user]}


def acl(principal, operation, restype, name, pattern=ResourcePatternType.LITERAL,
        permission=AclPermissionType.ALLOW, host="*"):
    return AclBinding(restype, name, pattern, principal, host, operation, permission)


def grant(bootstrap, *bindings):
    """Creates ACLs as the super user of the PLAINTEXT listener."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_acls(list(bindings)).values():
        future.result(timeout=TIMEOUT)


def create_topic(bootstrap, topic, partitions=1):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, partitions)])[topic].result(timeout=TIMEOUT)


def produce_error(config, topic, partition=-1):
    """Produces one record; returns the delivery's error code, or None once it is stored."""
    producer = Producer({**config, "message.timeout.ms": int(TIMEOUT * 1000)})
    outcome = []
    producer.produce(topic, value=b"v", partition=partition,
                     on_delivery=lambda err, _: outcome.append(err))
    producer.flush(TIMEOUT)
    assert outcome, "no delivery report"
    return outcome[0].code() if outcome[0] else None


def consume_error(config, topic, group):
    """Consumes from the start with a group; returns the first error code, or None once a
    record is read."""
    consumer = Consumer({**config, "group.id": group, "auto.offset.reset": "earliest",
                         "enable.auto.commit": False})
    consumer.subscribe([topic])
    try:
        def outcome():
            message = consumer.poll(0.5)
            if message is None:
                return None
            error = message.error()
            if error is None:
                return ("read", None)
            return None if error.code() == KafkaError._PARTITION_EOF else ("error", error.code())
        return wait_until(outcome, f"a record or an error from {topic}")[1]
    finally:
        consumer.close()


def error_code(future):
    """The Kafka error code a future of confluent-kafka's admin client fails with."""
    with pytest.raises(KafkaException) as failed:
        future.result(timeout=TIMEOUT)
    return failed.value.args[0].code()


def test_acls_round_trip_through_both_admin_clients(broker):
    """CreateAcls, DescribeAcls (literal, MATCH and prefixed filters) and DeleteAcls with
    confluent-kafka, then with kafka-python; a principal without ALTER or DESCRIBE on the
    cluster is refused; a malformed ACL is INVALID_REQUEST."""
    admin = AdminClient(user_config(broker, "admin"))
    topic = unique_topic("rt")
    bindings = [acl("User:alice", AclOperation.READ, ResourceType.TOPIC, topic),
                acl("User:alice", AclOperation.WRITE, ResourceType.TOPIC, topic[:5],
                    ResourcePatternType.PREFIXED),
                acl("User:bob", AclOperation.ALL, ResourceType.GROUP, "g-" + topic,
                    permission=AclPermissionType.DENY, host="127.0.0.1")]
    for future in admin.create_acls(bindings).values():
        assert future.result(timeout=TIMEOUT) is None
    literal = AclBindingFilter(ResourceType.TOPIC, topic, ResourcePatternType.LITERAL, None, None,
                               AclOperation.ANY, AclPermissionType.ANY)
    assert admin.describe_acls(literal).result(timeout=TIMEOUT) == [bindings[0]]
    matching = AclBindingFilter(ResourceType.ANY, topic, ResourcePatternType.MATCH, None, None,
                                AclOperation.ANY, AclPermissionType.ANY)
    assert sorted(admin.describe_acls(matching).result(timeout=TIMEOUT), key=str) == \
        sorted(bindings[:2], key=str)
    denied = AclBindingFilter(ResourceType.GROUP, None, ResourcePatternType.ANY, "User:bob", None,
                              AclOperation.ANY, AclPermissionType.DENY)
    assert bindings[2] in admin.describe_acls(denied).result(timeout=TIMEOUT)

    # Not allowed to ALTER the cluster: refused (DESCRIBE is checked with kafka-python below:
    # confluent-kafka's describe_acls does not report a DescribeAcls error).
    alice = AdminClient(user_config(broker, "alice"))
    [refused] = alice.create_acls([acl("User:alice", AclOperation.ALL, ResourceType.BROKER,
                                       "kafka-cluster")]).values()
    assert error_code(refused) == CLUSTER_AUTHORIZATION_FAILED
    [bad] = admin.create_acls([acl("User:alice", AclOperation.ALTER, ResourceType.BROKER,
                                   "not-the-cluster")]).values()
    assert error_code(bad) == KafkaError.INVALID_REQUEST

    [deleted] = admin.delete_acls([matching]).values()
    assert sorted(deleted.result(timeout=TIMEOUT), key=str) == sorted(bindings[:2], key=str)
    assert admin.describe_acls(matching).result(timeout=TIMEOUT) == []

    # kafka-python: the same round trip.
    client = KafkaAdminClient(**kafka_python_config(broker, "admin"))
    try:
        pattern = ResourcePattern(KafkaPythonResourceType.TOPIC, topic, ACLResourcePatternType.LITERAL)
        created = client.create_acls([ACL("User:bob", "*", ACLOperation.DESCRIBE,
                                          ACLPermissionType.ALLOW, pattern)])
        assert len(created["succeeded"]) == 1 and not created["failed"], created
        by_filter = ACLFilter("User:bob", None, ACLOperation.ANY, ACLPermissionType.ANY,
                              ResourcePatternFilter(KafkaPythonResourceType.TOPIC, topic,
                                                    ACLResourcePatternType.ANY))
        described, _ = client.describe_acls(by_filter)
        assert [(a.principal, a.operation) for a in described] == [("User:bob", ACLOperation.DESCRIBE)]
        [(_, matched, error)] = client.delete_acls([by_filter])
        assert len(matched) == 1 and error.errno == 0, (matched, error)
        assert client.describe_acls(by_filter)[0] == []
    finally:
        client.close()
    bob = KafkaAdminClient(**kafka_python_config(broker, "bob"))
    try:
        with pytest.raises(ClusterAuthorizationFailedError):
            bob.describe_acls(by_filter)
    finally:
        bob.close()
    admin.delete_acls([denied])[denied].result(timeout=TIMEOUT)


def test_acl_apis_answer_security_disabled_without_an_authorizer(tmp_path):
    plain = Strata(tmp_path)
    plain.start()
    try:
        client = KafkaAdminClient(bootstrap_servers=plain.bootstrap)
        try:
            with pytest.raises(SecurityDisabledError):
                client.describe_acls(ACLFilter(None, None, ACLOperation.ANY, ACLPermissionType.ANY,
                                               ResourcePatternFilter(KafkaPythonResourceType.ANY, None,
                                                                     ACLResourcePatternType.ANY)))
        finally:
            client.close()
        # And every request is allowed, whoever sends it.
        assert produce_error({"bootstrap.servers": plain.bootstrap}, unique_topic("open")) is None
    finally:
        plain.stop(kill=True)


def test_produce_and_consume_need_write_read_and_the_group(broker):
    """confluent-kafka: TOPIC_AUTHORIZATION_FAILED until WRITE, then READ on the topic, then
    GROUP_AUTHORIZATION_FAILED until READ on the group; kafka-python's producer likewise."""
    topic = unique_topic("pc")
    group = unique_topic("g")
    create_topic(broker.bootstrap, topic)
    alice = user_config(broker, "alice")
    assert produce_error(alice, topic) == TOPIC_AUTHORIZATION_FAILED
    grant(broker.bootstrap, acl("User:alice", AclOperation.WRITE, ResourceType.TOPIC, topic))
    assert produce_error(alice, topic) is None
    assert consume_error(alice, topic, group) in (TOPIC_AUTHORIZATION_FAILED, GROUP_AUTHORIZATION_FAILED)
    grant(broker.bootstrap, acl("User:alice", AclOperation.READ, ResourceType.TOPIC, topic))
    assert consume_error(alice, topic, group) == GROUP_AUTHORIZATION_FAILED
    grant(broker.bootstrap, acl("User:alice", AclOperation.READ, ResourceType.GROUP, group))
    assert consume_error(alice, topic, group) is None

    producer = KafkaProducer(**kafka_python_config(broker, "bob"), max_block_ms=int(TIMEOUT * 1000))
    try:
        with pytest.raises(TopicAuthorizationFailedError):
            producer.send(topic, b"v").get(timeout=TIMEOUT)
    finally:
        producer.close()
    grant(broker.bootstrap, acl("User:bob", AclOperation.WRITE, ResourceType.TOPIC, topic))
    producer = KafkaProducer(**kafka_python_config(broker, "bob"), max_block_ms=int(TIMEOUT * 1000))
    try:
        assert producer.send(topic, b"v").get(timeout=TIMEOUT).offset >= 1
    finally:
        producer.close()


def test_deny_wins_prefixed_acls_hosts_and_super_users(broker):
    """A prefixed ALLOW covers every topic it starts; a literal DENY inside it wins; an ACL
    for another host does not apply; a super user needs no ACL."""
    prefix = unique_topic("orders") + "."
    allowed, secret, elsewhere = prefix + "eu", prefix + "secret", unique_topic("host")
    for topic in (allowed, secret, elsewhere):
        create_topic(broker.bootstrap, topic)
    grant(broker.bootstrap,
          acl("User:bob", AclOperation.WRITE, ResourceType.TOPIC, prefix, ResourcePatternType.PREFIXED),
          acl("User:bob", AclOperation.WRITE, ResourceType.TOPIC, secret,
              permission=AclPermissionType.DENY),
          acl("User:bob", AclOperation.WRITE, ResourceType.TOPIC, elsewhere, host="10.9.9.9"))
    bob = user_config(broker, "bob")
    assert produce_error(bob, allowed) is None
    assert produce_error(bob, secret) == TOPIC_AUTHORIZATION_FAILED
    assert produce_error(bob, elsewhere) == TOPIC_AUTHORIZATION_FAILED
    grant(broker.bootstrap, acl("User:bob", AclOperation.WRITE, ResourceType.TOPIC, elsewhere,
                                host="127.0.0.1"))
    assert produce_error(bob, elsewhere) is None
    admin = user_config(broker, "admin")
    assert produce_error(admin, secret) is None
    assert consume_error(admin, secret, unique_topic("g")) is None


def test_topic_and_cluster_administration(broker):
    """CreateTopics, Metadata, CreatePartitions, DescribeConfigs, IncrementalAlterConfigs,
    DeleteRecords, DeleteTopics, DescribeCluster and ListGroups through confluent-kafka: each
    refused with Kafka's code, then allowed by its ACL (DescribeCluster lists the cluster's
    authorized operations once it may be described)."""
    prefix = unique_topic("adm") + "."
    topic = prefix + "a"
    alice = AdminClient(user_config(broker, "alice"))
    assert error_code(alice.create_topics([NewTopic(topic, 1)])[topic]) == TOPIC_AUTHORIZATION_FAILED
    grant(broker.bootstrap, acl("User:alice", AclOperation.CREATE, ResourceType.TOPIC, prefix,
                                ResourcePatternType.PREFIXED))
    alice.create_topics([NewTopic(topic, 1)])[topic].result(timeout=TIMEOUT)
    # Metadata lists only the topics the principal may describe: CREATE does not imply it.
    assert topic not in alice.list_topics(timeout=TIMEOUT).topics
    grant(broker.bootstrap, acl("User:alice", AclOperation.DESCRIBE, ResourceType.TOPIC, topic))
    wait_until(lambda: topic in alice.list_topics(timeout=TIMEOUT).topics, "the topic listed")

    assert error_code(alice.create_partitions([NewPartitions(topic, 2)])[topic]) == TOPIC_AUTHORIZATION_FAILED
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
    assert error_code(alice.describe_configs([resource])[resource]) == TOPIC_AUTHORIZATION_FAILED
    change = ConfigResource(ConfigResource.Type.TOPIC, topic, incremental_configs=[
        ConfigEntry("retention.ms", "3600000", incremental_operation=AlterConfigOpType.SET)])
    assert error_code(alice.incremental_alter_configs([change])[change]) == TOPIC_AUTHORIZATION_FAILED
    partition = TopicPartition(topic, 0, 0)
    assert error_code(alice.delete_records([partition])[partition]) == TOPIC_AUTHORIZATION_FAILED
    assert error_code(alice.delete_topics([topic])[topic]) == TOPIC_AUTHORIZATION_FAILED
    # DescribeCluster needs no ACL, but lists the cluster's operations only to who may DESCRIBE it.
    cluster = alice.describe_cluster(include_authorized_operations=True).result(timeout=TIMEOUT)
    assert not cluster.authorized_operations

    grant(broker.bootstrap,
          acl("User:alice", AclOperation.ALTER, ResourceType.TOPIC, topic),
          acl("User:alice", AclOperation.ALTER_CONFIGS, ResourceType.TOPIC, topic),
          acl("User:alice", AclOperation.DELETE, ResourceType.TOPIC, prefix, ResourcePatternType.PREFIXED),
          acl("User:alice", AclOperation.DESCRIBE, ResourceType.BROKER, "kafka-cluster"))
    alice.create_partitions([NewPartitions(topic, 2)])[topic].result(timeout=TIMEOUT)
    alice.incremental_alter_configs([change])[change].result(timeout=TIMEOUT)
    # ALTER_CONFIGS implies DESCRIBE_CONFIGS.
    described = alice.describe_configs([resource])[resource].result(timeout=TIMEOUT)
    assert described["retention.ms"].value == "3600000"
    alice.delete_records([partition])[partition].result(timeout=TIMEOUT)
    cluster = alice.describe_cluster(include_authorized_operations=True).result(timeout=TIMEOUT)
    assert AclOperation.DESCRIBE in cluster.authorized_operations
    assert AclOperation.ALTER not in cluster.authorized_operations
    # ListGroups lists every group to who may DESCRIBE the cluster (alice now), and to
    # others the groups they may describe.
    group = unique_topic("hidden")
    committer = Consumer({**user_config(broker, "admin"), "group.id": group})
    committer.commit(offsets=[TopicPartition(topic, 0, 0)], asynchronous=False)
    committer.close()
    bob = AdminClient(user_config(broker, "bob"))

    def listed(client):
        return {g.group_id for g in client.list_consumer_groups().result(timeout=TIMEOUT).valid}
    assert group in listed(alice)
    assert group not in listed(bob)
    grant(broker.bootstrap, acl("User:bob", AclOperation.DESCRIBE, ResourceType.GROUP, group))
    assert group in listed(bob)
    alice.delete_topics([topic])[topic].result(timeout=TIMEOUT)


def test_transactions_need_write_on_the_transactional_id(broker):
    """init_transactions is TRANSACTIONAL_ID_AUTHORIZATION_FAILED without WRITE on the
    transactional id; with it (and WRITE on the topic) a transaction commits."""
    topic = unique_topic("tx")
    transactional_id = unique_topic("tx-alice")
    create_topic(broker.bootstrap, topic)
    config = {**user_config(broker, "alice"), "transactional.id": transactional_id}
    producer = Producer(config)
    with pytest.raises(KafkaException) as refused:
        producer.init_transactions(TIMEOUT)
    assert refused.value.args[0].code() == TRANSACTIONAL_ID_AUTHORIZATION_FAILED
    grant(broker.bootstrap,
          acl("User:alice", AclOperation.WRITE, ResourceType.TRANSACTIONAL_ID, transactional_id),
          acl("User:alice", AclOperation.WRITE, ResourceType.TOPIC, topic))
    producer = Producer(config)
    producer.init_transactions(TIMEOUT)
    producer.begin_transaction()
    producer.produce(topic, value=b"in a transaction")
    producer.commit_transaction(TIMEOUT)


@pytest.fixture
def cluster(tmp_path):
    """Two gateways over etcd with the authorizer on; their listeners are PLAINTEXT, so every
    client is User:ANONYMOUS, which may do what no ACL names."""
    c = Cluster(tmp_path, etcd_members=1, coordinators=1, gateways=2,
                config={"authorizer.class.name": AUTHORIZER, "allow.everyone.if.no.acl.found": True})
    try:
        c.start()
        yield c
    finally:
        print(c.logs())
        c.stop()


def test_a_second_gateway_enforces_acls_created_through_the_first(cluster):
    first, second = cluster.gateways[0].address, cluster.gateways[1].address
    topic = unique_topic("locked")
    create_topic(first, topic, partitions=4)
    # A partition the second gateway leads: its produce requests go there.
    partition = wait_until(lambda: led_by(cluster, topic, 1), "a partition led by the second gateway")[0]
    second_client = {"bootstrap.servers": second}
    assert produce_error(second_client, topic, partition) is None
    deny = acl("User:ANONYMOUS", AclOperation.WRITE, ResourceType.TOPIC, topic,
               permission=AclPermissionType.DENY)
    grant(first, deny)
    wait_until(lambda: produce_error(second_client, topic, partition) == TOPIC_AUTHORIZATION_FAILED,
               "the second gateway to refuse the write")
    remove = AclBindingFilter(ResourceType.TOPIC, topic, ResourcePatternType.LITERAL, None, None,
                              AclOperation.ANY, AclPermissionType.ANY)
    admin = AdminClient(second_client)
    [deleted] = admin.delete_acls([remove]).values()
    assert deleted.result(timeout=TIMEOUT) == [deny]
    wait_until(lambda: produce_error(second_client, topic, partition) is None,
               "the second gateway to allow the write again")
