"""A real cluster (3 etcd members, 2 coordinators, 3 gateways on a shared file:// store) under
faults: gateways killed, stopped, paused past their session; the active coordinator and the
etcd leader killed. Through all of it every acknowledged record is read back exactly once, in
produce order per partition, and partitions of a lost gateway get a new leader quickly. Also
partitions moved by hand and preferred leader elections with Kafka's admin clients, and
kafkajs and kcat routed through any gateway."""

import json
import signal
import subprocess
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from confluent_kafka import ElectionType, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from cluster_harness import Cluster, failover_time, led_by, leaders
from group_helpers import GROUP_BROKER_CONFIG, Ledger, Member, poll_until, produce
from strata_harness import (TIMEOUT, assert_acked_present, consume_all, create_topic,
                            produce_all, unique_topic, wait_until)

PARTITIONS = 6
DRIVER = Path(__file__).resolve().parent / "js" / "driver.js"
# A gateway lost without a goodbye must have its partitions led elsewhere within this long
# (the target is 5 s: the 3 s session timeout plus the reassignment).
FAILOVER_LIMIT = 10.0


@pytest.fixture
def cluster(tmp_path):
    c = Cluster(tmp_path, etcd_members=3, coordinators=2, gateways=3, config=GROUP_BROKER_CONFIG)
    try:
        c.start()
        yield c
    finally:
        c.stop()
        # Captured output is shown only when the test fails: then the logs explain it.
        print(c.logs())


# --- helpers

class NumberedProducer(threading.Thread):
    """An idempotent acks=all producer sending sequence numbers round-robin over the
    partitions until stopped, recording every delivery report.

    Retries are on (librdkafka's default): a record whose leader went away is sent again to
    the new one, and idempotence keeps that from storing it twice.

    `only` limits the writes to those partitions; `record_bytes` pads each sequence number
    with leading zeros to that size; `per_second` paces the records."""

    def __init__(self, bootstrap: str, topic: str, partitions: int = PARTITIONS,
                 only: list | None = None, record_bytes: int = 9,
                 per_second: float | None = None):
        super().__init__(daemon=True)
        self.topic = topic
        self.targets = only if only is not None else list(range(partitions))
        self.record_bytes = record_bytes
        self.per_second = per_second
        self.lock = threading.Lock()
        self.acked = {}          # value -> (partition, offset)
        self.errors = []         # delivery errors
        self.fatal = []          # fatal producer errors: idempotence broken
        self.pending = {}        # value -> partition, sent and not yet reported on
        self.stopped = threading.Event()
        self.undelivered = None
        self.stuck = []          # partitions of the records still undelivered at the end
        self.producer = Producer({
            "bootstrap.servers": bootstrap,
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": 5,
            "message.timeout.ms": 30000,
            # A request to a paused gateway never completes: give up on it well before the
            # records time out, so they are sent again to the new leader.
            "socket.timeout.ms": 6000,
            "reconnect.backoff.ms": 50,
            "reconnect.backoff.max.ms": 500,
            "retry.backoff.ms": 50,
            "retry.backoff.max.ms": 250,
            "error_cb": self.on_error,
        })

    def on_error(self, err):
        if err.fatal():
            with self.lock:
                self.fatal.append(err)

    def on_delivery(self, err, msg):
        with self.lock:
            self.pending.pop(msg.value(), None)
            if err is None:
                self.acked[msg.value()] = (msg.partition(), msg.offset())
            else:
                self.errors.append(err)

    def count(self) -> int:
        with self.lock:
            return len(self.acked)

    def acked_on(self, partitions) -> int:
        """How many acknowledged records went to any of `partitions`."""
        with self.lock:
            return sum(1 for p, _ in self.acked.values() if p in partitions)

    def summary(self) -> str:
        """Acknowledgements and delivery errors per partition, for failure messages."""
        with self.lock:
            acks, pending = {}, {}
            for p, _ in self.acked.values():
                acks[p] = acks.get(p, 0) + 1
            for p in self.pending.values():
                pending[p] = pending.get(p, 0) + 1
            errors = sorted({str(e) for e in self.errors})
        return f"acks per partition {acks}, unanswered per partition {pending}, errors {errors}"

    def wait_for(self, more: int, what: str, timeout: float = TIMEOUT, partitions=None):
        """Waits until `more` further records are acknowledged (on `partitions`, if given)."""
        def counted():
            return self.acked_on(partitions) if partitions is not None else self.count()
        target = counted() + more
        try:
            wait_until(lambda: counted() >= target or self.fatal,
                       f"{more} more acknowledgements ({what})", timeout)
        except AssertionError as e:
            raise AssertionError(f"{e}: {self.summary()}") from None
        assert not self.fatal, f"fatal producer error: {self.fatal}"

    def run(self):
        seq = 0
        started = time.monotonic()
        while not self.stopped.is_set():
            # At most 200 records queued: acks keep pace with sends, so a fault lands mid-stream.
            due = (self.per_second is None
                   or seq < (time.monotonic() - started) * self.per_second)
            if len(self.producer) < 200 and due:
                value = f"{seq:0{self.record_bytes}d}".encode()
                partition = self.targets[seq % len(self.targets)]
                with self.lock:
                    self.pending[value] = partition
                self.producer.produce(self.topic, value=value, partition=partition,
                                      on_delivery=self.on_delivery)
                seq += 1
            self.producer.poll(0.001)
        self.undelivered = self.producer.flush(TIMEOUT)
        with self.lock:
            self.stuck = sorted(set(self.pending.values()))
        self.producer.purge()  # whatever is left fails now; closing must not wait for it
        self.producer.flush(1)
        self.producer.close()

    def finish(self) -> dict:
        """Stops producing, waits for outstanding deliveries; returns the acknowledged records."""
        self.stopped.set()
        self.join(TIMEOUT + 10)
        assert not self.is_alive(), "the producer thread did not finish"
        assert not self.fatal, f"fatal producer error: {self.fatal}"
        assert self.undelivered == 0, (
            f"{self.undelivered} records undelivered after {TIMEOUT} s, to partitions "
            f"{self.stuck}; {self.summary()}")
        with self.lock:
            return dict(self.acked)


def check_log(bootstrap: str, topic: str, acked: dict, partitions: int = PARTITIONS) -> list:
    """Every acknowledged record is in the log once, at its acknowledged offset, and every
    partition holds its sequence numbers in increasing order (no record twice, none out of
    order, unacknowledged ones included). Returns the messages read."""
    messages = consume_all(bootstrap, topic, partitions=partitions)
    assert_acked_present(acked, messages)
    by_partition = {}
    for m in messages:
        by_partition.setdefault(m.partition(), []).append(int(m.value()))
    for p, seqs in by_partition.items():
        bad = next((i for i in range(1, len(seqs)) if seqs[i] <= seqs[i - 1]), None)
        assert bad is None, (f"partition {p}: sequence {seqs[bad]} follows {seqs[bad - 1]} "
                             f"(records {bad - 1} and {bad} of {len(seqs)})")
    return messages


def all_delivered_once(cluster: Cluster, topic: str, producer: "NumberedProducer", acked: dict,
                       partitions: int = PARTITIONS):
    """The idempotent producer got no delivery error, and the log holds every acknowledged
    record once, in order."""
    print(f"{len(acked)} acknowledged, {len(producer.errors)} delivery errors")
    assert not producer.errors, f"delivery errors of the idempotent producer: {producer.errors[:5]}"
    check_log(cluster.bootstrap(), topic, acked, partitions)


def kafkajs(cluster: Cluster, *args, bootstrap: str | None = None) -> subprocess.CompletedProcess:
    """Runs one command of the kafkajs driver against the cluster (all gateways, unless
    `bootstrap` names some)."""
    return subprocess.run(["node", str(DRIVER), bootstrap or cluster.bootstrap(), *map(str, args)],
                          capture_output=True, text=True, timeout=TIMEOUT * 2)


def kafkajs_ok(cluster: Cluster, *args, bootstrap: str | None = None):
    """The JSON result of a kafkajs driver command that must succeed."""
    result = kafkajs(cluster, *args, bootstrap=bootstrap)
    assert result.returncode == 0, f"kafkajs {args} exited {result.returncode}:\n{result.stderr}"
    return json.loads(result.stdout)


def wait_for_leader(cluster: Cluster, topic: str, partition: int, broker_id: int, what: str):
    """Waits until every live gateway reports `broker_id` as the leader of the partition."""
    wait_until(lambda: all(leaders(cluster.gateways[i].address, topic).get(partition) == broker_id
                           for i in cluster.live_gateways()), what)


def topic_pair(cluster: Cluster, prefix: str):
    """A data topic and a probe topic, both with PARTITIONS partitions with leaders."""
    topic, probe = unique_topic(prefix), unique_topic(f"{prefix}-probe")
    for t in (topic, probe):
        create_topic(cluster.bootstrap(), t, partitions=PARTITIONS)
    return topic, probe


# --- tests

def test_every_gateway_serves_the_same_metadata(cluster):
    ids = sorted(g.broker_id for g in cluster.gateways)
    assert len(set(ids)) == 3, f"broker ids: {ids}"
    for g in cluster.gateways:
        md = AdminClient({"bootstrap.servers": g.address}).list_topics(timeout=5)
        listed = {b.id: f"{b.host}:{b.port}" for b in md.brokers.values()}
        assert listed == {x.broker_id: x.address for x in cluster.gateways}, (
            f"{g.name} lists brokers {listed}")

    topic = unique_topic("meta")
    create_topic(cluster.gateways[0].address, topic, partitions=PARTITIONS)

    def agreed():
        views = [leaders(g.address, topic) for g in cluster.gateways]
        if all(v == views[0] and len(v) == PARTITIONS for v in views):
            return views[0]
        return None

    # Gateways learn of the topic through their etcd watch: allow them a moment to agree.
    view = wait_until(agreed, "every gateway to report the same leaders for every partition")
    assert set(view.values()) == set(ids), f"leaders {view} do not cover brokers {ids}"


def test_kill_gateway_under_load(cluster):
    topic, probe = topic_pair(cluster, "kill")
    producer = NumberedProducer(cluster.bootstrap(), topic)
    producer.start()
    failovers = []
    try:
        producer.wait_for(500, "before the first kill")
        for round_ in range(2):
            victim = cluster.live_gateways()[0]
            victim_partitions = led_by(cluster, probe, victim)
            assert victim_partitions, f"gateway{victim} leads none of {probe}"
            killed_at = time.monotonic()
            assert cluster.kill_gateway(victim) == -9
            moved, took = failover_time(cluster, probe, victim, victim_partitions, killed_at)
            failovers.append(took)
            print(f"kill {round_ + 1}: gateway{victim} (broker "
                  f"{cluster.gateways[victim].broker_id}) partitions {victim_partitions}: new "
                  f"leaders in metadata after {moved:.2f} s, accept produce after {took:.2f} s")
            assert took < FAILOVER_LIMIT, f"failover took {took:.2f} s"
            producer.wait_for(500, f"after kill {round_ + 1}")
            if round_ == 0:
                # A fresh gateway, so the next kill still leaves two to take over.
                cluster.add_gateway()
        producer.wait_for(500, "after the last kill")
    finally:
        acked = producer.finish()
    print(f"failover times: {', '.join(f'{t:.2f} s' for t in failovers)}; "
          f"{len(acked)} acknowledged, {len(producer.errors)} delivery errors")
    assert not producer.errors, f"delivery errors of the idempotent producer: {producer.errors[:5]}"
    check_log(cluster.bootstrap(), topic, acked)


def test_paused_gateway_is_fenced_and_exits(cluster):
    topic, _ = topic_pair(cluster, "pause")
    victim = 1
    victim_partitions = led_by(cluster, topic, victim)
    assert victim_partitions, f"gateway{victim} leads none of {topic}"
    producer = NumberedProducer(cluster.bootstrap(), topic)
    producer.start()
    try:
        producer.wait_for(300, "before the pause")
        cluster.pause_gateway(victim)
        paused_at = time.monotonic()
        broker = cluster.gateways[victim].broker_id
        peer = cluster.gateways[0].address
        wait_until(lambda: all(leaders(peer, topic).get(p) not in (None, -1, broker)
                               for p in victim_partitions),
                   f"new leaders for gateway{victim}'s partitions {victim_partitions}",
                   timeout=FAILOVER_LIMIT)
        moved = time.monotonic() - paused_at
        print(f"gateway{victim} paused: its partitions had new leaders after {moved:.2f} s")
        # While it is still paused, its former partitions take records on their new leaders.
        producer.wait_for(100, "on the moved partitions while paused", partitions=victim_partitions)

        cluster.resume_gateway(victim)
        resumed_at = time.monotonic()
        code = cluster.gateways[victim].wait_exit(timeout=10)
        print(f"gateway{victim} exited with {code} {time.monotonic() - resumed_at:.2f} s after SIGCONT")
        assert code != 0, f"gateway{victim} exited cleanly ({code}) although its session expired"
        producer.wait_for(300, "after the paused gateway exited")
    finally:
        acked = producer.finish()
    all_delivered_once(cluster, topic, producer, acked)


def test_standby_coordinator_takes_over(cluster):
    topic, probe = topic_pair(cluster, "coord")
    active = cluster.active_coordinator()
    assert active is not None
    killed_at = time.monotonic()
    assert cluster.kill_coordinator(active) == -9
    standby = cluster.wait_for_election(other_than=active, timeout=FAILOVER_LIMIT + 5)
    print(f"coordinator{standby} elected {time.monotonic() - killed_at:.2f} s after "
          f"coordinator{active} was killed")

    # The new active coordinator does what the old one did: move a dead gateway's partitions.
    producer = NumberedProducer(cluster.bootstrap(), topic)
    producer.start()
    try:
        producer.wait_for(300, "before the gateway kill")
        victim = 2
        victim_partitions = led_by(cluster, probe, victim)
        assert victim_partitions, f"gateway{victim} leads none of {probe}"
        killed_at = time.monotonic()
        cluster.kill_gateway(victim)
        moved, took = failover_time(cluster, probe, victim, victim_partitions, killed_at)
        print(f"with coordinator{standby} active: gateway{victim}'s partitions "
              f"{victim_partitions} have new leaders after {moved:.2f} s, accept produce "
              f"after {took:.2f} s")
        assert took < FAILOVER_LIMIT, f"failover took {took:.2f} s"
        producer.wait_for(300, "after the gateway kill")
    finally:
        acked = producer.finish()
    assert not producer.errors, f"delivery errors of the idempotent producer: {producer.errors[:5]}"
    check_log(cluster.bootstrap(), topic, acked)


def test_etcd_leader_killed_under_load(cluster):
    topic, _ = topic_pair(cluster, "etcd")
    producer = NumberedProducer(cluster.bootstrap(), topic)
    producer.start()
    try:
        producer.wait_for(500, "before the etcd leader kill")
        old = cluster.etcd.leader()
        assert old is not None, "no etcd leader"
        killed_at = time.monotonic()
        cluster.etcd.kill_member(old)
        wait_until(lambda: cluster.etcd.leader() is not None, "etcd to elect a new leader",
                   timeout=15)
        new = cluster.etcd.leader()
        print(f"etcd{new} leads {time.monotonic() - killed_at:.2f} s after etcd{old} was killed")
        try:
            producer.wait_for(1000, "after the etcd leader kill")
        finally:
            # Losing one etcd member of three must cost no gateway or coordinator its session.
            assert not cluster.exited(), f"exited after the etcd leader kill: {cluster.exited()}"
        assert cluster.active_coordinator() is not None, "no coordinator is active"

        # The killed member catches up, and writes go on.
        cluster.etcd.restart_member(old)
        wait_until(cluster.etcd.healthy, "the etcd cluster to be healthy again")
        producer.wait_for(300, "after the etcd member came back")
    finally:
        acked = producer.finish()
    all_delivered_once(cluster, topic, producer, acked)


def test_sigterm_gateway_under_load(cluster):
    topic, probe = topic_pair(cluster, "term")
    producer = NumberedProducer(cluster.bootstrap(), topic)
    producer.start()
    try:
        producer.wait_for(500, "before the SIGTERM")
        victim = 0
        victim_partitions = led_by(cluster, probe, victim)
        assert victim_partitions, f"gateway{victim} leads none of {probe}"
        stopped_at = time.monotonic()
        code = cluster.stop_gateway(victim)
        drained = time.monotonic() - stopped_at
        assert code == 0, f"gateway{victim} exited with {code} after SIGTERM"
        moved, took = failover_time(cluster, probe, victim, victim_partitions, stopped_at)
        print(f"gateway{victim} drained in {drained:.2f} s; its partitions have new leaders "
              f"{moved:.2f} s and accept produce {took:.2f} s after SIGTERM")
        # It unregistered on the way out: no session timeout to wait for.
        assert took < FAILOVER_LIMIT, f"partitions moved {took:.2f} s after SIGTERM"
        producer.wait_for(500, "after the SIGTERM")
    finally:
        acked = producer.finish()
    # Retriable errors are retried by the producer; a delivery error means one gave up.
    print(f"{len(acked)} acknowledged, {len(producer.errors)} delivery errors: {producer.errors[:5]}")
    check_log(cluster.bootstrap(), topic, acked)


def kcat(bootstrap: str, *args, stdin=None) -> str:
    result = subprocess.run(["kcat", "-b", bootstrap, *args], input=stdin,
                            capture_output=True, text=True, timeout=TIMEOUT)
    assert result.returncode == 0, f"kcat {' '.join(args)} exited {result.returncode}: {result.stderr}"
    return result.stdout


def test_kcat_through_one_gateway_reaches_all(cluster):
    bootstrap = cluster.gateways[0].address
    topic = unique_topic("kcat")
    create_topic(bootstrap, topic, partitions=PARTITIONS)

    metadata = json.loads(kcat(bootstrap, "-L", "-J", "-t", topic))
    assert len(metadata["brokers"]) == 3, metadata["brokers"]
    partition_leaders = {p["partition"]: p["leader"] for p in metadata["topics"][0]["partitions"]}
    others = [p for p, leader in partition_leaders.items() if leader != cluster.gateways[0].broker_id]
    assert others, f"every partition is led by gateway0: {partition_leaders}"

    expected = {}
    for p in range(PARTITIONS):
        lines = [f"p{p}-{i:03d}" for i in range(100)]
        kcat(bootstrap, "-P", "-t", topic, "-p", str(p), "-X", "acks=all",
             stdin="\n".join(lines) + "\n")
        expected[p] = lines

    out = kcat(bootstrap, "-C", "-t", topic, "-o", "beginning", "-e", "-q", "-J")
    got = {}
    for line in out.splitlines():
        record = json.loads(line)
        got.setdefault(record["partition"], []).append(record["payload"])
    assert got == expected, (
        f"read back {({p: len(v) for p, v in got.items()})} records per partition; partitions "
        f"{sorted(p for p in expected if got.get(p) != expected[p])} differ")


def test_a_new_gateway_takes_its_share_under_load(cluster):
    topic, probe = topic_pair(cluster, "grow")
    producer = NumberedProducer(cluster.bootstrap(), topic)
    producer.start()

    def per_broker() -> dict:
        counts = {g.broker_id: 0 for g in cluster.gateways if g.alive()}
        for t in (topic, probe):
            for leader in leaders(cluster.bootstrap(), t).values():
                counts[leader] = counts.get(leader, 0) + 1
        return counts

    try:
        producer.wait_for(500, "before the new gateway")
        added_at = time.monotonic()
        new = cluster.add_gateway()
        broker = cluster.gateways[new].broker_id
        # Twelve partitions over four gateways: three each, the newcomer's by handover.
        wait_until(lambda: per_broker().get(broker) == 3,
                   f"gateway{new} (broker {broker}) to lead its share: {per_broker()}")
        print(f"gateway{new} leads its share {time.monotonic() - added_at:.2f} s after it "
              f"was started: {per_broker()}")
        assert max(per_broker().values()) == 3, f"leaders per broker: {per_broker()}"
        # Records go on to every partition, the moved ones included.
        producer.wait_for(500, "after the handovers")
        moved = led_by(cluster, topic, new)
        if moved:
            producer.wait_for(100, "on the moved partitions", partitions=moved)
    finally:
        acked = producer.finish()
    all_delivered_once(cluster, topic, producer, acked)


def group_coordinator(bootstrap: str, group: str) -> int:
    """The broker id that coordinates `group`."""
    # Kept in a variable: a client destroyed before the answer never resolves the future.
    admin = AdminClient({"bootstrap.servers": bootstrap})
    return admin.describe_consumer_groups([group])[group].result(timeout=10).coordinator.id


def group_coordinator_once_answered(bootstrap: str, group: str):
    """As group_coordinator, or None while the answer does not come: the group's coordinator
    was just killed and is still named until its session expires."""
    try:
        return group_coordinator(bootstrap, group)
    except (TimeoutError, KafkaException):
        return None


@pytest.mark.parametrize("kill", [False, True], ids=["sigterm", "kill-9"])
@pytest.mark.parametrize("protocol", ["classic", "consumer", "mixed"])
def test_group_members_on_different_gateways_survive_their_coordinator_leaving(
        cluster, protocol, kill):
    """Two members bootstrapped from different gateways consume a topic whose partitions
    live on all of them; the gateway coordinating their group is drained (SIGTERM) or killed:
    the group moves to another gateway with its membership and committed offsets, and the
    members go on without a rebalance and without consuming again what they committed.
    "mixed": a classic member, then a consumer-protocol one that upgrades the group online."""
    topic, group = unique_topic("group"), unique_topic(f"{protocol}-group")
    create_topic(cluster.bootstrap(), topic, partitions=PARTITIONS)
    # Classic members: a session long enough for the move on a loaded machine (librdkafka
    # gives its membership up once no heartbeat succeeded for a session timeout).
    classic, consumer = {"session.timeout.ms": 30000}, {"group.protocol": "consumer"}
    configs = {"classic": [classic, classic], "consumer": [consumer, consumer],
               "mixed": [classic, consumer]}[protocol]
    shared = SimpleNamespace(bootstrap=cluster.bootstrap())
    produced = produce(shared, topic, "before", 120)
    ledger = Ledger()
    members = []
    for i, config in zip((1, 2), configs):
        members.append(Member(f"m{i}", SimpleNamespace(bootstrap=cluster.gateways[i].address),
                              group, topic, ledger, **config))
        if protocol == "mixed" and i == 1:
            poll_until(members, lambda: len(members[0].partitions()) == PARTITIONS,
                       "the classic group settled")
    try:
        poll_until(members, lambda: ledger.count() == 120
                   and sorted(len(m.partitions()) for m in members) == [3, 3],
                   "the records before the move, three partitions each")
        assigned = [m.partitions() for m in members]
        rebalances = [(m.assigned_count, m.revoked_count) for m in members]
        coordinator = group_coordinator(cluster.bootstrap(), group)
        victim = cluster.gateway_of_broker(coordinator)
        if kill:
            assert cluster.kill_gateway(victim) == -9
        else:
            assert cluster.stop_gateway(victim) == 0
        wait_until(lambda: group_coordinator_once_answered(cluster.bootstrap(), group)
                   not in (None, coordinator), "the group to move to another gateway")
        print(f"group {group} moved from broker {coordinator} to broker "
              f"{group_coordinator(cluster.bootstrap(), group)}")
        produced |= produce(SimpleNamespace(bootstrap=cluster.bootstrap()), topic, "after", 120)
        poll_until(members, lambda: ledger.count() == 240, "the records after the move")
        assert [m.partitions() for m in members] == assigned
        assert [(m.assigned_count, m.revoked_count) for m in members] == rebalances, \
            "the group rebalanced when its coordinator moved"
    finally:
        for member in members:
            member.close()
    ledger.check(produced)


def test_kafkajs_through_one_gateway_reaches_the_leader(cluster):
    """kafkajs bootstrapped from a gateway that does not lead partition 0 produces there
    (acks=all) and consumes it in a group, through the leader the metadata names."""
    topic = unique_topic("js")
    create_topic(cluster.bootstrap(), topic, partitions=PARTITIONS)
    leader = leaders(cluster.bootstrap(), topic)[0]
    bootstrap = next(g.address for g in cluster.gateways if g.broker_id != leader)
    sent = kafkajs_ok(cluster, "produce", topic, 300, bootstrap=bootstrap)
    assert {(r["partition"], r["errorCode"]) for r in sent} == {(0, 0)}, sent
    consumed = kafkajs_ok(cluster, "consume", topic, 300, bootstrap=bootstrap)
    assert consumed == [f"js-{i}" for i in range(300)]


def test_a_partition_reassigned_by_hand_moves_under_load_and_stays(cluster):
    """kafkajs moves a partition to another gateway with AlterPartitionReassignments while an
    idempotent producer writes to it: the handover completes, the partition stays there
    (balancing moves others instead), ListPartitionReassignments has nothing left, and every
    acknowledged record is in the log once. A reassignment to no live broker is refused."""
    topic, _ = topic_pair(cluster, "reassign")
    producer = NumberedProducer(cluster.bootstrap(), topic)
    producer.start()
    try:
        producer.wait_for(300, "before the reassignment")
        partition = 0
        source = leaders(cluster.bootstrap(), topic)[partition]
        target = next(g.broker_id for g in cluster.gateways if g.broker_id != source)
        kafkajs_ok(cluster, "reassign", topic, f"{partition}:{target}")
        wait_for_leader(cluster, topic, partition, target, "the reassigned partition to move")
        producer.wait_for(300, "after the reassignment")
        # The controller balances on every change and every second: it has had its passes.
        time.sleep(2.5)
        assert leaders(cluster.bootstrap(), topic)[partition] == target
        assert kafkajs_ok(cluster, "list-reassignments") == {"topics": []}

        refused = kafkajs(cluster, "reassign", topic, f"{partition}:99")
        assert refused.returncode == 1, refused.stdout
        assert "INVALID_REPLICA_ASSIGNMENT" in refused.stderr, refused.stderr
        assert leaders(cluster.bootstrap(), topic)[partition] == target
    finally:
        acked = producer.finish()
    all_delivered_once(cluster, topic, producer, acked)


def test_preferred_leader_election_brings_a_partition_back(tmp_path):
    """With auto.leader.rebalance.enable=false, a partition reassigned to a gateway that was
    drained and came back stays where it moved meanwhile, until a preferred leader election
    (confluent-kafka's elect_leaders) hands it back; a partition no one reassigned needs no
    election."""
    c = Cluster(tmp_path, etcd_members=1, coordinators=1, gateways=2,
                config={"auto.leader.rebalance.enable": False})
    try:
        c.start()
        topic = unique_topic("elect")
        create_topic(c.bootstrap(), topic, partitions=2)
        home = c.gateways[1].broker_id
        by_leader = leaders(c.bootstrap(), topic)
        reassigned = next(p for p, leader in by_leader.items() if leader != home)
        other = 1 - reassigned
        kafkajs_ok(c, "reassign", topic, f"{reassigned}:{home}")
        wait_for_leader(c, topic, reassigned, home, "the reassigned partition to move")

        assert c.stop_gateway(1) == 0
        away = c.gateways[0].broker_id
        wait_for_leader(c, topic, reassigned, away, "the partition to move off the drained gateway")
        c.restart_gateway(1)
        time.sleep(2.5)
        assert leaders(c.bootstrap(), topic)[reassigned] == away, "moved back without an election"

        admin = AdminClient({"bootstrap.servers": c.bootstrap()})
        wanted = [TopicPartition(topic, reassigned), TopicPartition(topic, other)]
        result = admin.elect_leaders(ElectionType.PREFERRED, wanted).result(timeout=TIMEOUT)
        errors = {tp.partition: error for tp, error in result.items()}
        assert errors[reassigned] is None, errors
        assert errors[other].code() == KafkaError.ELECTION_NOT_NEEDED, errors
        # The answer came once the election was done.
        assert leaders(c.bootstrap(), topic)[reassigned] == home
    finally:
        c.stop()


def test_hot_partitions_spread_by_bytes_in(tmp_path):
    """Two gateways lead two partitions each, and the two one gateway leads take all the
    writes. The controller sees their bytes-in and exchanges one of them for an idle partition
    of the other gateway: each then leads one hot partition and two in all, and every
    acknowledged record is there once, in order."""
    c = Cluster(tmp_path, etcd_members=1, coordinators=1, gateways=2,
                config={"leader.imbalance.bytes.in.min.bytes.per.second": 256 * 1024})
    try:
        c.start()
        topic = unique_topic("hot")
        create_topic(c.bootstrap(), topic, partitions=4)
        before = leaders(c.bootstrap(), topic)
        busy = c.gateways[0].broker_id
        hot = sorted(p for p, leader in before.items() if leader == busy)
        assert len(hot) == 2, f"leaders {before}"
        # 2 MB/s of 1 KiB records, all to the busy gateway's partitions.
        producer = NumberedProducer(c.bootstrap(), topic, partitions=4, only=hot,
                                    record_bytes=1024, per_second=2000)
        producer.start()
        try:
            started = time.monotonic()

            def spread():
                now = leaders(c.bootstrap(), topic)
                return now if len(now) == 4 and now[hot[0]] != now[hot[1]] else None

            after = wait_until(spread, "the hot partitions to be led by different gateways",
                               timeout=60, interval=0.5)
            print(f"hot partitions {hot} spread {time.monotonic() - started:.1f} s after the "
                  f"writes began: leaders {before} -> {after}")
            per_gateway = sorted(list(after.values()).count(g.broker_id) for g in c.gateways)
            assert per_gateway == [2, 2], f"leaders {after}"
            moved = [p for p in hot if after[p] != busy]
            producer.wait_for(500, "on the moved partition", partitions=moved)
        finally:
            acked = producer.finish()
        all_delivered_once(c, topic, producer, acked, partitions=4)
    finally:
        c.stop()
        print(c.logs())


def test_a_second_sigterm_ends_a_drain_that_cannot_commit(tmp_path):
    """With etcd gone, a gateway's final flush cannot be committed and its drain waits for
    etcd, saying so; a second SIGTERM ends it at once, naming what was not committed."""
    c = Cluster(tmp_path, etcd_members=1, coordinators=1, gateways=1)
    try:
        c.start()
        topic = unique_topic("drain")
        create_topic(c.bootstrap(), topic, partitions=1)
        c.etcd.kill_member(0)
        # acks=1 is answered from the buffer; the flush of it is never committed.
        produce_all(c.bootstrap(), topic, [f"buffered-{i}".encode() for i in range(100)],
                    acks="1")
        gateway = c.gateways[0]
        gateway.signal(signal.SIGTERM)
        wait_until(lambda: "still flushing" in gateway.text(),
                   "the gateway to say its final flush waits", timeout=15)
        assert gateway.alive(), "the drain gave up with etcd gone"
        gateway.signal(signal.SIGTERM)
        assert gateway.wait_exit(10) != 0
        assert "SIGTERM during the drain: exiting with" in gateway.text(), gateway.log()
    finally:
        c.stop()
