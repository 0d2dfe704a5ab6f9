"""Client quotas: AlterClientQuotas and DescribeClientQuotas (through kafka-python's
protocol messages: neither kafka-python 3.0 nor confluent-kafka has admin methods for
them), and their enforcement with Kafka's semantics: a producer over its producer_byte_rate
and a consumer over its consumer_byte_rate settle at their rates while clients without a
quota on the same broker are unaffected, throttled clients are told so (librdkafka's
throttle_cb), quotas per SASL user, and a quota set through one gateway of a cluster
applied by another.

The brokers measure over 2 windows of 1 s (quota.window.num) rather than Kafka's 11: Kafka's
measurement lets a client run ahead of or behind its quota by up to (windows - 1) seconds of
it, as samples expire, so with few windows a 12 s measurement is within a few percent."""

import threading
import time

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, ResourceType
from kafka import KafkaConsumer
from kafka import TopicPartition as KafkaTopicPartition
from kafka.admin import KafkaAdminClient
from kafka.protocol.admin.client_quotas import (AlterClientQuotasRequest,
                                                DescribeClientQuotasRequest)

from cluster_harness import Cluster
from emulator import metrics
from strata_harness import TIMEOUT, Strata, create_topic, unique_topic, wait_until
from test_sasl import add_users, sasl_broker, sasl_client

WINDOWS = {"quota.window.num": 2, "quota.window.size.seconds": 1}
INVALID_REQUEST = 42
# The rate quotas are held to: low enough for a loaded 2-core machine to exceed easily.
RATE = 300 * 1024
MESSAGE = b"x" * 4096
# After a new client's allowance (windows - 1 seconds of its quota) the rate is measured
# over this long.
SETTLE = 2.0
MEASURE = 12.0
TOLERANCE = 0.15


@pytest.fixture
def broker(tmp_path):
    b = Strata(tmp_path, WINDOWS)
    b.start()
    yield b
    b.stop(kill=True)
    print(b.log())


# --- the admin protocol, through kafka-python's messages

def send(admin, request, node_id=None):
    """One request through kafka-python's admin client, to `node_id` or any broker."""
    return admin._manager.run(admin._manager.send, request, node_id)


def alter(admin, entity, ops, validate_only=False, node_id=None):
    """`entity` {type: name or None}; `ops` {key: value or None to remove}. Returns the
    entry's (error_code, error_message)."""
    R = AlterClientQuotasRequest
    entry = R.EntryData(
        entity=[R.EntryData.EntityData(entity_type=t, entity_name=n) for t, n in entity.items()],
        ops=[R.EntryData.OpData(key=k, value=v or 0.0, remove=v is None) for k, v in ops.items()])
    response = send(admin, R(entries=[entry], validate_only=validate_only), node_id)
    [result] = response.entries
    return result.error_code, result.error_message


def describe(admin, components, strict=False, node_id=None):
    """`components` [(type, match_type, match)]; returns {((type, name), ...): {key: value}}."""
    D = DescribeClientQuotasRequest
    request = D(components=[D.ComponentData(entity_type=t, match_type=m, match=n)
                            for t, m, n in components], strict=strict)
    response = send(admin, request, node_id)
    assert response.error_code == 0, response.error_message
    return {tuple(sorted((e.entity_type, e.entity_name) for e in entry.entity)):
            {v.key: v.value for v in entry.values} for entry in response.entries}


EXACT, DEFAULT, SPECIFIED = 0, 1, 2


def test_alter_and_describe_round_trip(broker):
    """Quotas of user, client-id and (user, client-id) entities, defaults included, are
    described by filter as Kafka matches them; removal, validate_only and Kafka's checks."""
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    try:
        assert alter(admin, {"user": "alice"}, {"producer_byte_rate": 1024,
                                                "request_percentage": 25.5})[0] == 0
        assert alter(admin, {"client-id": None}, {"consumer_byte_rate": 2048})[0] == 0
        assert alter(admin, {"user": None, "client-id": "app"}, {"producer_byte_rate": 4096})[0] == 0

        everything = describe(admin, [])
        assert everything == {
            (("user", "alice"),): {"producer_byte_rate": 1024.0, "request_percentage": 25.5},
            (("client-id", None),): {"consumer_byte_rate": 2048.0},
            (("client-id", "app"), ("user", None)): {"producer_byte_rate": 4096.0},
        }
        assert describe(admin, [("user", EXACT, "alice")], strict=True) == {
            (("user", "alice"),): {"producer_byte_rate": 1024.0, "request_percentage": 25.5}}
        # Non-strict: entities with other parts match too; SPECIFIED takes defaults as well.
        assert set(describe(admin, [("user", SPECIFIED, None)])) == {
            (("user", "alice"),), (("client-id", "app"), ("user", None))}
        assert set(describe(admin, [("user", SPECIFIED, None)], strict=True)) == {
            (("user", "alice"),)}
        assert set(describe(admin, [("client-id", DEFAULT, None)])) == {(("client-id", None),)}
        assert describe(admin, [("user", EXACT, "bob")]) == {}

        # Removing one key keeps the others; removing the last one removes the entity.
        assert alter(admin, {"user": "alice"}, {"request_percentage": None})[0] == 0
        assert describe(admin, [("user", EXACT, "alice")]) == {
            (("user", "alice"),): {"producer_byte_rate": 1024.0}}
        assert alter(admin, {"client-id": None}, {"consumer_byte_rate": None})[0] == 0
        assert describe(admin, [("client-id", DEFAULT, None)], strict=True) == {}

        # validate_only checks and stores nothing.
        assert alter(admin, {"user": "carol"}, {"producer_byte_rate": 1}, validate_only=True)[0] == 0
        assert describe(admin, [("user", EXACT, "carol")]) == {}

        for entity, ops, message in [
                ({"user": "alice"}, {"bytes_per_second": 1}, "Invalid configuration key bytes_per_second"),
                ({"user": "alice"}, {"producer_byte_rate": 0}, "Quota producer_byte_rate must be greater than 0"),
                ({"user": "alice"}, {"consumer_byte_rate": -5}, "Quota consumer_byte_rate must be greater than 0"),
                ({"user": "alice"}, {"producer_byte_rate": 1.5}, "producer_byte_rate cannot be a fractional value."),
                ({"user": ""}, {"producer_byte_rate": 1}, "Empty user not supported"),
                ({"group": "g"}, {"producer_byte_rate": 1}, "Unhandled client quota entity type: group")]:
            error, text = alter(admin, entity, ops)
            assert (error, text) == (INVALID_REQUEST, message)
        error, text = alter(admin, {"user": "alice"}, {"controller_mutation_rate": 10})
        assert error == INVALID_REQUEST and "controller_mutation_rate is not supported" in text
        assert describe(admin, [("user", EXACT, "alice")]) == {
            (("user", "alice"),): {"producer_byte_rate": 1024.0}}
    finally:
        admin.close()

    # The quotas are durable, and the windows are broker settings DescribeConfigs lists.
    broker.restart()
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    try:
        assert describe(admin, [("user", EXACT, "alice")]) == {
            (("user", "alice"),): {"producer_byte_rate": 1024.0}}
    finally:
        admin.close()
    confluent_admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    configs = confluent_admin.describe_configs([ConfigResource(ResourceType.BROKER, "0")])
    [entries] = [f.result(timeout=TIMEOUT) for f in configs.values()]
    assert entries["quota.window.num"].value == "2"
    assert entries["quota.window.size.seconds"].value == "1"


# --- enforcement

class Throttles:
    """librdkafka's throttle_cb: the throttle times brokers reported."""

    def __init__(self):
        self.times = []

    def __call__(self, event):
        self.times.append(event.throttle_time)


class ProduceRun:
    """A confluent-kafka producer sending 4 KiB messages flat out from a thread, recording
    when each delivery was acknowledged."""

    def __init__(self, bootstrap, topic, client_id, extra=None, partitions=(0,)):
        self.throttles = Throttles()
        self.acked = []
        self.stop = threading.Event()
        self.producer = Producer({"bootstrap.servers": bootstrap, "client.id": client_id,
                                  "linger.ms": 5, "batch.size": 65536,
                                  "queue.buffering.max.kbytes": 1024,
                                  "throttle_cb": self.throttles, **(extra or {})})
        self.topic = topic
        self.partitions = partitions
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _delivered(self, err, msg):
        if err is None:
            self.acked.append((time.monotonic(), len(msg.value())))

    def _run(self):
        i = 0
        while not self.stop.is_set():
            try:
                partition = self.partitions[i % len(self.partitions)]
                self.producer.produce(self.topic, MESSAGE, partition=partition,
                                      on_delivery=self._delivered)
                i += 1
            except BufferError:
                self.producer.poll(0.05)
            self.producer.poll(0)
        self.producer.flush(TIMEOUT)

    def start(self):
        self.started = time.monotonic()
        self.thread.start()
        return self

    def finish(self):
        self.stop.set()
        self.thread.join(TIMEOUT + 5)

    def rate(self, start, end):
        """Bytes per second acknowledged between `start` and `end` s after the start."""
        acked = sum(n for t, n in self.acked if start <= t - self.started < end)
        return acked / (end - start)


def assert_near(measured, expected, what):
    assert abs(measured - expected) <= TOLERANCE * expected, \
        f"{what}: {measured / 1024:.0f} KiB/s, expected {expected / 1024:.0f} KiB/s ±{TOLERANCE:.0%}"


def test_producer_settles_at_its_byte_rate_and_others_are_unaffected(broker):
    """confluent-kafka: a producer whose client id has a producer_byte_rate is held to it
    (and told, through throttle_cb); one with another client id produces freely, at the same
    time, on the same broker. The quota's series shows the throttling."""
    topic = unique_topic("quota-produce")
    create_topic(broker.bootstrap, topic)
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    try:
        assert alter(admin, {"client-id": "slow-producer"}, {"producer_byte_rate": RATE})[0] == 0
    finally:
        admin.close()
    slow = ProduceRun(broker.bootstrap, topic, "slow-producer").start()
    fast = ProduceRun(broker.bootstrap, topic, "fast-producer").start()
    time.sleep(SETTLE + MEASURE)
    slow.finish()
    fast.finish()
    # Kafka counts whole requests; the payload is most of them.
    assert_near(slow.rate(SETTLE, SETTLE + MEASURE), RATE, "throttled producer")
    assert slow.throttles.times and max(slow.throttles.times) > 0
    assert fast.rate(SETTLE, SETTLE + MEASURE) > 3 * RATE
    assert not [t for t in fast.throttles.times if t > 0]
    series = metrics(broker.http)
    throttled = 'strata_client_throttle_time_seconds_total{quota="produce",user="",client_id="slow-producer"}'
    assert series[throttled] > 0
    assert series['strata_client_bytes_in_total{user="",client_id="slow-producer"}'] > 0
    # A client without a quota is not measured: no series names it.
    assert not [name for name in series if "fast-producer" in name]


def fill(bootstrap, topic, size):
    """Produces `size` bytes in batches of at most 16 KiB: a fetch returns at least one whole
    batch, and one larger than a window of the quota would always be throttled."""
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "batch.size": 16384})
    for _ in range(size // len(MESSAGE)):
        while True:
            try:
                producer.produce(topic, MESSAGE, partition=0)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    assert producer.flush(TIMEOUT) == 0


def test_consumer_settles_at_its_byte_rate_and_others_are_unaffected(broker):
    """kafka-python: a consumer whose client id has a consumer_byte_rate reads at it; a
    confluent-kafka consumer with another client id reads everything at once."""
    topic = unique_topic("quota-fetch")
    create_topic(broker.bootstrap, topic)
    total = int(RATE * (SETTLE + MEASURE + 6))
    fill(broker.bootstrap, topic, total)
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    try:
        assert alter(admin, {"client-id": "slow-consumer"}, {"consumer_byte_rate": RATE})[0] == 0
    finally:
        admin.close()

    fast = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "fast",
                     "client.id": "fast-consumer", "enable.auto.commit": False})
    fast.assign([TopicPartition(topic, 0, 0)])
    read, started = 0, time.monotonic()
    while read < total // len(MESSAGE) and time.monotonic() - started < TIMEOUT:
        read += len([m for m in fast.consume(1000, 1.0) if not m.error()])
    fast.close()
    assert read == total // len(MESSAGE)
    assert total / (time.monotonic() - started) > 3 * RATE

    # Small fetches, so a 10 s measurement is not made of a few large ones.
    slow = KafkaConsumer(bootstrap_servers=broker.bootstrap, client_id="slow-consumer",
                         enable_auto_commit=False, max_partition_fetch_bytes=32768,
                         fetch_max_bytes=32768)
    try:
        slow.assign([KafkaTopicPartition(topic, 0)])
        slow.seek(KafkaTopicPartition(topic, 0), 0)
        received = []
        started = time.monotonic()
        while time.monotonic() - started < SETTLE + MEASURE:
            for records in slow.poll(timeout_ms=200).values():
                now = time.monotonic() - started
                received += [(now, len(r.value)) for r in records]
    finally:
        slow.close()
    measured = sum(n for t, n in received if SETTLE <= t) / MEASURE
    assert_near(measured, RATE, "throttled consumer")
    series = metrics(broker.http)
    assert series['strata_client_throttle_time_seconds_total{quota="fetch",user="",client_id="slow-consumer"}'] > 0


def test_request_percentage_throttles_every_api(broker):
    """kafka-python: a client id with a tiny request_percentage gets throttle_time_ms in its
    responses (here DescribeClientQuotas) once its requests have taken more than that share
    of a thread, bounded by one window as in Kafka; another client id is not throttled."""
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    busy = KafkaAdminClient(bootstrap_servers=broker.bootstrap, client_id="busy-admin")
    try:
        assert alter(admin, {"client-id": "busy-admin"}, {"request_percentage": 0.01})[0] == 0
        D = DescribeClientQuotasRequest
        request = D(components=[], strict=False)

        def throttled():
            return send(busy, request).throttle_time_ms or None

        throttle_ms = wait_until(throttled, "a throttled response")
        assert 0 < throttle_ms <= 1000
        assert send(admin, request).throttle_time_ms == 0
    finally:
        busy.close()
        admin.close()
    series = metrics(broker.http)
    assert series['strata_client_requests_total{user="",client_id="busy-admin"}'] > 0
    assert series['strata_client_throttle_time_seconds_total{quota="request",user="",client_id="busy-admin"}'] > 0


def test_quotas_apply_per_sasl_user(tmp_path):
    """A user quota holds every client of that SASL user, whatever its client id, and not
    another user's."""
    brokers = []
    try:
        broker = sasl_broker(tmp_path, brokers, **WINDOWS)
        add_users(broker.bootstrap, {"alice": ("alice-secret", "SCRAM-SHA-256"),
                                     "bob": ("bob-secret", "SCRAM-SHA-256")})
        admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
        try:
            assert alter(admin, {"user": "alice"}, {"producer_byte_rate": RATE})[0] == 0
        finally:
            admin.close()
        topic = unique_topic("quota-user")
        create_topic(broker.bootstrap, topic)

        def run(user, client_id):
            config = sasl_client(broker, "SCRAM-SHA-256", user, f"{user}-secret")
            return ProduceRun(config.pop("bootstrap.servers"), topic, client_id, config)

        # Two of alice's clients share her quota; bob is free.
        alice = [run("alice", "a1").start(), run("alice", "a2").start()]
        bob = run("bob", "a1").start()
        time.sleep(SETTLE + MEASURE)
        for r in alice + [bob]:
            r.finish()
        assert_near(sum(r.rate(SETTLE, SETTLE + MEASURE) for r in alice), RATE, "alice's clients")
        assert all(r.throttles.times for r in alice)
        assert bob.rate(SETTLE, SETTLE + MEASURE) > 2 * RATE
        assert not [t for t in bob.throttles.times if t > 0]
        series = metrics(broker.http)
        assert series['strata_client_throttle_time_seconds_total{quota="produce",user="alice",client_id=""}'] > 0
    finally:
        for b in brokers:
            b.stop(kill=True)
            print(b.log())


@pytest.fixture
def cluster(tmp_path):
    c = Cluster(tmp_path, etcd_members=1, coordinators=1, gateways=2, config=WINDOWS)
    try:
        c.start()
        yield c
    finally:
        for proc in c.gateways + c.coordinators:
            proc.kill()
        c.etcd.stop()
        for proc in c.gateways:
            print(proc.log())


def test_a_quota_set_through_one_gateway_is_applied_by_another(cluster):
    """AlterClientQuotas on gateway 0; gateway 1 describes it and throttles by it."""
    first, second = cluster.gateways
    admin = KafkaAdminClient(bootstrap_servers=cluster.bootstrap())
    try:
        assert alter(admin, {"client-id": "cluster-producer"}, {"producer_byte_rate": RATE},
                     node_id=first.broker_id)[0] == 0
        wait_until(lambda: describe(admin, [("client-id", EXACT, "cluster-producer")],
                                    node_id=second.broker_id),
                   "gateway 1 to describe the quota set through gateway 0")
    finally:
        admin.close()
    topic = unique_topic("quota-cluster")
    create_topic(cluster.bootstrap(), topic, partitions=4)
    run = ProduceRun(cluster.bootstrap(), topic, "cluster-producer", partitions=range(4)).start()
    throttled = 'strata_client_throttle_time_seconds_total{quota="produce",user="",client_id="cluster-producer"}'
    try:
        for gateway in cluster.gateways:
            wait_until(lambda: metrics(gateway.http).get(throttled, 0) > 0,
                       f"{gateway.name} to throttle the producer")
    finally:
        run.finish()
    assert run.throttles.times
