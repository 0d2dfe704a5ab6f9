"""Kafka transactions (exactly-once semantics) with real clients: a transactional producer's
commits and aborts, read_committed and read_uncommitted consumers, fencing of an older
producer instance, transaction timeouts, offsets committed in a transaction, and a
consume-transform-produce loop that outputs each input exactly once."""

import concurrent.futures
import random
import time
import uuid

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Producer, TopicPartition

from strata_harness import TIMEOUT, create_topic, unique_topic, wait_until

# The broker's timed-out transactions pass every 200 ms here, so a timeout test is quick.
FAST_CHECKS = {"transaction.abort.timed.out.transaction.cleanup.interval.ms": 200}


def transactional_producer(bootstrap, transactional_id=None, **extra):
    config = {
        "bootstrap.servers": bootstrap,
        "transactional.id": transactional_id or f"tx-{uuid.uuid4().hex[:8]}",
        "linger.ms": 5,
    }
    config.update(extra)
    producer = Producer(config)
    producer.init_transactions(TIMEOUT)
    return producer


def read_values(bootstrap, topic, isolation, partitions=1, idle=2.0, timeout=TIMEOUT):
    """Every value a consumer of `isolation` reads from the start, until none came for
    `idle` seconds; in partition, offset order."""
    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": f"reader-{uuid.uuid4().hex[:8]}",
        "enable.auto.commit": False,
        "isolation.level": isolation,
    })
    try:
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
        messages, last, deadline = [], time.monotonic(), time.monotonic() + timeout
        while time.monotonic() - last < idle:
            assert time.monotonic() < deadline, f"still reading {topic} after {timeout} s"
            for msg in consumer.consume(num_messages=1000, timeout=0.2):
                if msg.error():
                    assert msg.error().code() == KafkaError._PARTITION_EOF, msg.error()
                    continue
                messages.append(msg)
                last = time.monotonic()
        messages.sort(key=lambda m: (m.partition(), m.offset()))
        return [m.value().decode() for m in messages]
    finally:
        consumer.close()


def committed_offset(bootstrap, group, topic, partition=0, isolation="read_uncommitted", timeout=10):
    """The group's committed offset; read_committed consumers require stable offsets, so
    theirs waits while a transaction under way commits one."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                         "isolation.level": isolation})
    try:
        [tp] = consumer.committed([TopicPartition(topic, partition)], timeout=timeout)
        return tp.offset
    finally:
        consumer.close()


def test_committed_records_are_read_and_aborted_ones_only_uncommitted(strata):
    topic = unique_topic("txn")
    create_topic(strata.bootstrap, topic, partitions=2)
    producer = transactional_producer(strata.bootstrap)

    producer.begin_transaction()
    for i in range(10):
        producer.produce(topic, f"committed-{i}".encode(), partition=i % 2)
    producer.commit_transaction(TIMEOUT)

    producer.begin_transaction()
    for i in range(10):
        producer.produce(topic, f"aborted-{i}".encode(), partition=i % 2)
    producer.flush(TIMEOUT)
    producer.abort_transaction(TIMEOUT)

    producer.begin_transaction()
    producer.produce(topic, b"after", partition=0)
    producer.commit_transaction(TIMEOUT)

    committed = read_values(strata.bootstrap, topic, "read_committed", partitions=2)
    assert sorted(committed) == sorted([f"committed-{i}" for i in range(10)] + ["after"])
    everything = read_values(strata.bootstrap, topic, "read_uncommitted", partitions=2)
    assert sorted(everything) == sorted(
        [f"committed-{i}" for i in range(10)] + [f"aborted-{i}" for i in range(10)] + ["after"])


def test_an_open_transaction_holds_read_committed_consumers_back(strata):
    topic = unique_topic("open")
    create_topic(strata.bootstrap, topic)
    plain = Producer({"bootstrap.servers": strata.bootstrap})
    plain.produce(topic, b"before")
    plain.flush(TIMEOUT)
    producer = transactional_producer(strata.bootstrap)
    producer.begin_transaction()
    producer.produce(topic, b"in-transaction")
    producer.flush(TIMEOUT)
    plain.produce(topic, b"behind-the-transaction")
    plain.flush(TIMEOUT)

    assert read_values(strata.bootstrap, topic, "read_committed") == ["before"]
    assert read_values(strata.bootstrap, topic, "read_uncommitted") == [
        "before", "in-transaction", "behind-the-transaction"]
    # The last stable offset is where the open transaction starts.
    consumer = Consumer({"bootstrap.servers": strata.bootstrap, "group.id": "lso",
                         "isolation.level": "read_committed"})
    try:
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10, cached=False)
        assert (low, high) == (0, 1)
    finally:
        consumer.close()

    producer.commit_transaction(TIMEOUT)
    assert read_values(strata.bootstrap, topic, "read_committed") == [
        "before", "in-transaction", "behind-the-transaction"]


def test_a_second_instance_fences_the_first_and_aborts_its_transaction(strata):
    topic = unique_topic("fenced")
    create_topic(strata.bootstrap, topic)
    transactional_id = f"fence-{uuid.uuid4().hex[:8]}"
    first = transactional_producer(strata.bootstrap, transactional_id)
    first.begin_transaction()
    first.produce(topic, b"zombie")
    first.flush(TIMEOUT)

    second = transactional_producer(strata.bootstrap, transactional_id)
    with pytest.raises(KafkaException) as fenced:
        first.produce(topic, b"zombie-2")
        first.commit_transaction(TIMEOUT)
    error = fenced.value.args[0]
    assert error.fatal() or error.code() in (KafkaError._FENCED, KafkaError.PRODUCER_FENCED,
                                             KafkaError.INVALID_PRODUCER_EPOCH), error

    second.begin_transaction()
    second.produce(topic, b"current")
    second.commit_transaction(TIMEOUT)
    assert read_values(strata.bootstrap, topic, "read_committed") == ["current"]


@pytest.mark.strata_config(FAST_CHECKS)
def test_a_transaction_past_its_timeout_is_aborted(strata):
    topic = unique_topic("timeout")
    create_topic(strata.bootstrap, topic)
    producer = transactional_producer(strata.bootstrap, **{"transaction.timeout.ms": 1000})
    producer.begin_transaction()
    producer.produce(topic, b"too-slow")
    producer.flush(TIMEOUT)
    # The broker aborts it: read_committed consumers move past it without its record.
    consumer = Consumer({"bootstrap.servers": strata.bootstrap, "group.id": "timeout",
                         "isolation.level": "read_committed"})
    try:
        def stable():
            _, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10, cached=False)
            return high == 2  # the record and the abort marker
        wait_until(stable, "the timed-out transaction aborted", timeout=TIMEOUT)
    finally:
        consumer.close()
    with pytest.raises(KafkaException):
        producer.commit_transaction(TIMEOUT)
    assert read_values(strata.bootstrap, topic, "read_committed") == []
    assert read_values(strata.bootstrap, topic, "read_uncommitted") == ["too-slow"]


def test_offsets_sent_in_a_transaction_are_visible_once_it_commits(strata):
    source, sink = unique_topic("offsets-in"), unique_topic("offsets-out")
    create_topic(strata.bootstrap, source)
    create_topic(strata.bootstrap, sink)
    group = f"eos-{uuid.uuid4().hex[:8]}"
    consumer = Consumer({"bootstrap.servers": strata.bootstrap, "group.id": group})
    metadata = consumer.consumer_group_metadata()
    producer = transactional_producer(strata.bootstrap)
    try:
        producer.begin_transaction()
        producer.produce(sink, b"x")
        producer.send_offsets_to_transaction([TopicPartition(source, 0, 5)], metadata, TIMEOUT)
        producer.abort_transaction(TIMEOUT)
        assert committed_offset(strata.bootstrap, group, source) < 0, "an abort commits nothing"

        producer.begin_transaction()
        producer.produce(sink, b"y")
        producer.send_offsets_to_transaction([TopicPartition(source, 0, 7)], metadata, TIMEOUT)
        assert committed_offset(strata.bootstrap, group, source) < 0, "not before the commit"
        # A consumer requiring stable offsets waits for the transaction instead (KIP-447).
        stable = concurrent.futures.ThreadPoolExecutor(1).submit(
            committed_offset, strata.bootstrap, group, source, 0, "read_committed", TIMEOUT)
        time.sleep(1)
        assert not stable.done(), f"read {stable.result()} while the transaction was open"
        producer.commit_transaction(TIMEOUT)
        assert committed_offset(strata.bootstrap, group, source) == 7
        assert stable.result(TIMEOUT) == 7
    finally:
        consumer.close()
    assert read_values(strata.bootstrap, sink, "read_committed") == ["y"]


def test_consume_transform_produce_outputs_each_input_exactly_once(strata):
    source, sink = unique_topic("ctp-in"), unique_topic("ctp-out")
    create_topic(strata.bootstrap, source, partitions=2)
    create_topic(strata.bootstrap, sink, partitions=2)
    plain = Producer({"bootstrap.servers": strata.bootstrap})
    inputs = [f"{i}" for i in range(200)]
    for i, value in enumerate(inputs):
        plain.produce(source, value.encode(), partition=i % 2)
    plain.flush(TIMEOUT)

    group = f"ctp-{uuid.uuid4().hex[:8]}"
    processed = run_transform(strata.bootstrap, source, sink, group, abort_every=3)
    assert processed >= len(inputs)
    outputs = read_values(strata.bootstrap, sink, "read_committed", partitions=2)
    assert sorted(outputs, key=lambda v: int(v.split("-")[1])) == [f"out-{v}" for v in inputs]
    # Per partition, outputs keep their inputs' order.
    for p in range(2):
        mine = [v for v in outputs if int(v.split("-")[1]) % 2 == p]
        assert mine == sorted(mine, key=lambda v: int(v.split("-")[1]))


def run_transform(bootstrap, source, sink, group, abort_every=None, transactional_id=None, idle=3.0):
    """Reads `source` as `group` (read_committed), writes out-<value> to the same partition
    of `sink` and commits the input offsets in the same transaction; every `abort_every`-th
    transaction is aborted instead and its inputs read again. Stops when idle once it has
    partitions. Returns how many inputs it processed in committed transactions."""
    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "isolation.level": "read_committed",
        # A crashed instance's member leaves the group this soon.
        "session.timeout.ms": 6000,
    })
    producer = transactional_producer(bootstrap, transactional_id)
    consumer.subscribe([source])
    processed, transactions, last = 0, 0, None
    deadline = time.monotonic() + TIMEOUT * 4
    try:
        while last is None or time.monotonic() - last < idle:
            assert time.monotonic() < deadline, f"the transform still runs after {TIMEOUT * 4} s"
            if last is None and consumer.assignment():
                last = time.monotonic()
            batch = [m for m in consumer.consume(num_messages=25, timeout=0.5) if not m.error()]
            if not batch:
                continue
            last = time.monotonic()
            producer.begin_transaction()
            for msg in batch:
                producer.produce(sink, b"out-" + msg.value(), partition=msg.partition())
            positions = consumer.position(consumer.assignment())
            producer.send_offsets_to_transaction(positions, consumer.consumer_group_metadata(), TIMEOUT)
            transactions += 1
            if abort_every and transactions % abort_every == 0:
                producer.abort_transaction(TIMEOUT)
                # Read the aborted inputs again from the committed offsets.
                committed = consumer.committed(consumer.assignment(), timeout=10)
                for tp in committed:
                    consumer.seek(TopicPartition(tp.topic, tp.partition,
                                                 tp.offset if tp.offset >= 0 else OFFSET_BEGINNING))
                continue
            producer.commit_transaction(TIMEOUT)
            processed += len(batch)
    finally:
        consumer.close()
    return processed


# Slow PUTs widen the window between EndTxn's durable decision and its markers' flush.
SLOW_FLUSHES = {**FAST_CHECKS, "simulate.put.latency.p50.ms": 300, "simulate.put.latency.p99.ms": 600}


@pytest.mark.strata_config(SLOW_FLUSHES)
def test_kill_9_mid_transaction_and_mid_commit_loses_no_commit_and_shows_no_abort(strata):
    """kill -9 with a transaction open, and at several points of its commit (before,
    between the decision and the markers, after): once restarted, each transaction is
    entirely visible to read_committed or not at all, never twice, every acknowledged commit
    is there and the open one is not."""
    import threading

    topic = unique_topic("txn-crash")
    create_topic(strata.bootstrap, topic, partitions=2)
    transactional_id = f"crash-{uuid.uuid4().hex[:8]}"
    acknowledged, rounds = set(), 0
    for kill_after in [None, 0.0, 0.2, 0.5, 1.0, 2.5]:
        producer = transactional_producer(strata.bootstrap, transactional_id,
                                          **{"transaction.timeout.ms": 60_000})
        producer.begin_transaction()
        for i in range(20):
            producer.produce(topic, f"{rounds}-{i}".encode(), partition=i % 2)
        producer.flush(TIMEOUT)
        if kill_after is None:
            strata.restart(kill=True)
        else:
            killer = threading.Timer(kill_after, lambda: strata.stop(kill=True))
            killer.start()
            try:
                producer.commit_transaction(5)
                acknowledged.add(rounds)
            except KafkaException:
                pass
            killer.join()
            strata.start()
        rounds += 1
        del producer

    # A new instance completes or aborts whatever is left.
    transactional_producer(strata.bootstrap, transactional_id)
    values = read_values(strata.bootstrap, topic, "read_committed", partitions=2)
    assert len(values) == len(set(values)), "a record was delivered twice"
    by_round = {}
    for value in values:
        r, i = map(int, value.split("-"))
        by_round.setdefault(r, []).append(i)
    assert 0 not in by_round, "the transaction open at the kill was not aborted"
    for r, items in by_round.items():
        assert sorted(items) == list(range(20)), f"transaction {r} is partly visible: {items}"
    assert acknowledged <= set(by_round), f"acknowledged {acknowledged}, visible {set(by_round)}"
    for p in range(2):
        mine = [tuple(map(int, v.split("-"))) for v in values if int(v.split("-")[1]) % 2 == p]
        assert mine == sorted(mine), f"partition {p} out of order"
    # read_uncommitted sees every record written, aborted ones included.
    assert len(read_values(strata.bootstrap, topic, "read_uncommitted", partitions=2)) >= len(values)


def test_kafka_python_transactions_commit_abort_and_read_committed(strata):
    """kafka-python's transactional producer and read_committed consumer."""
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition as KTopicPartition

    topic = unique_topic("kp-txn")
    create_topic(strata.bootstrap, topic)
    producer = KafkaProducer(bootstrap_servers=strata.bootstrap,
                             transactional_id=f"kp-{uuid.uuid4().hex[:8]}")
    try:
        producer.init_transactions()
        producer.begin_transaction()
        for i in range(5):
            producer.send(topic, f"kept-{i}".encode(), partition=0)
        producer.commit_transaction()
        producer.begin_transaction()
        for i in range(5):
            producer.send(topic, f"dropped-{i}".encode(), partition=0)
        producer.flush()
        producer.abort_transaction()
        producer.begin_transaction()
        producer.send(topic, b"last", partition=0)
        producer.commit_transaction()
    finally:
        producer.close()

    def read(isolation):
        consumer = KafkaConsumer(bootstrap_servers=strata.bootstrap, isolation_level=isolation,
                                 enable_auto_commit=False, consumer_timeout_ms=3000)
        try:
            consumer.assign([KTopicPartition(topic, 0)])
            consumer.seek_to_beginning()
            return [m.value.decode() for m in consumer]
        finally:
            consumer.close()

    assert read("read_committed") == [f"kept-{i}" for i in range(5)] + ["last"]
    assert read("read_uncommitted") == (
        [f"kept-{i}" for i in range(5)] + [f"dropped-{i}" for i in range(5)] + ["last"])


def secured_inter_broker_listener(tmp_path, protocol):
    """Settings for gateways whose INTERNAL listener, the inter-broker one, takes `protocol`
    (SSL with client certificates required, or SASL_SSL with SCRAM), beside PLAINTEXT for
    the clients."""
    from pki import Authority, name

    directory = tmp_path / "pki"
    directory.mkdir()
    ca = Authority(directory, "brokers-ca")
    certificate = ca.issue("broker.pem", name("strata-broker"), server=True)
    config = {"listener.security.protocol.map": f"PLAINTEXT:PLAINTEXT,INTERNAL:{protocol}",
              "inter.broker.listener.name": "INTERNAL",
              "ssl.keystore.location": str(certificate),
              "ssl.truststore.location": str(ca.path)}
    if protocol == "SSL":
        config["ssl.client.auth"] = "required"
    else:
        config.update({
            "sasl.enabled.mechanisms": "SCRAM-SHA-512",
            "sasl.mechanism.inter.broker.protocol": "SCRAM-SHA-512",
            "listener.name.internal.scram-sha-512.sasl.jaas.config":
                'org.apache.kafka.common.security.scram.ScramLoginModule required '
                'username="broker" password="broker-secret";'})
    return config


@pytest.mark.parametrize("inter_broker", [None, "SSL", "SASL_SSL"])
def test_a_transaction_spans_gateways_in_a_cluster(tmp_path, inter_broker):
    """The transactional id's coordinator is one gateway, the partitions' leaders are all
    three: markers reach the others through WriteTxnMarkers (over plaintext, or over an
    inter-broker listener that takes TLS with client certificates, or SCRAM over TLS), and
    offsets committed in the transaction (to the group's coordinator, maybe a third gateway)
    appear with the commit."""
    from cluster_harness import Cluster, leaders

    config, listeners = None, None
    if inter_broker:
        config = secured_inter_broker_listener(tmp_path, inter_broker)
        listeners = ["PLAINTEXT", "INTERNAL"]
    cluster = Cluster(tmp_path, etcd_members=1, coordinators=1, gateways=3, config=config,
                      listeners=listeners)
    try:
        cluster.start()
        bootstrap = cluster.bootstrap()
        if inter_broker == "SASL_SSL":
            from test_sasl import add_users
            add_users(bootstrap, {"broker": ("broker-secret", "SCRAM-SHA-512")})
        topic, source = unique_topic("cluster-txn"), unique_topic("cluster-src")
        create_topic(bootstrap, topic, partitions=6)
        create_topic(bootstrap, source)
        assert len(set(leaders(bootstrap, topic).values())) == 3, "partitions on every gateway"

        group = f"cluster-eos-{uuid.uuid4().hex[:8]}"
        consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
        producer = transactional_producer(bootstrap)
        try:
            producer.begin_transaction()
            for i in range(12):
                producer.produce(topic, f"kept-{i}".encode(), partition=i % 6)
            producer.send_offsets_to_transaction([TopicPartition(source, 0, 3)],
                                                 consumer.consumer_group_metadata(), TIMEOUT)
            producer.commit_transaction(TIMEOUT)
            producer.begin_transaction()
            for i in range(12):
                producer.produce(topic, f"dropped-{i}".encode(), partition=i % 6)
            producer.flush(TIMEOUT)
            producer.abort_transaction(TIMEOUT)
        finally:
            consumer.close()
        assert committed_offset(bootstrap, group, source) == 3
        assert sorted(read_values(bootstrap, topic, "read_committed", partitions=6)) == sorted(
            f"kept-{i}" for i in range(12))
        assert len(read_values(bootstrap, topic, "read_uncommitted", partitions=6)) == 24
    finally:
        cluster.stop()
        print(cluster.logs())


def test_kafka_python_admin_describes_transactions_and_producers(strata):
    from kafka.admin import KafkaAdminClient

    topic = unique_topic("described")
    create_topic(strata.bootstrap, topic, partitions=2)
    transactional_id = f"described-{uuid.uuid4().hex[:8]}"
    producer = transactional_producer(strata.bootstrap, transactional_id)
    producer.begin_transaction()
    produced_at = int(time.time() * 1000)
    producer.produce(topic, b"x", partition=1, timestamp=produced_at)
    producer.flush(TIMEOUT)
    admin = KafkaAdminClient(bootstrap_servers=strata.bootstrap)
    try:
        described = admin.describe_transactions([transactional_id])[transactional_id]
        assert str(described.state.value) == "Ongoing"
        assert described.transaction_start_time_ms > 0
        assert {(tp.topic, tp.partition) for tp in described.topic_partitions} == {(topic, 1)}
        listed = [t for ts in admin.list_transactions().values() for t in ts]
        assert [(t.transactional_id, t.producer_id) for t in listed] == [
            (transactional_id, described.producer_id)]
        assert admin.list_transactions(state_filters=["CompleteCommit"]) in ({}, {0: []})
        from kafka import TopicPartition as KTopicPartition
        producers = admin.describe_producers([KTopicPartition(topic, 1)])
        [state] = producers[KTopicPartition(topic, 1)].active_producers
        assert (state.producer_id, state.last_sequence) == (described.producer_id, 0)
        assert state.current_transaction_start_offset == 0, "the open transaction starts at 0"
        assert state.last_timestamp == produced_at, "the max timestamp of its last batch"
        producer.commit_transaction(TIMEOUT)
        described = admin.describe_transactions([transactional_id])[transactional_id]
        assert str(described.state.value) == "CompleteCommit"
        assert described.topic_partitions == set()
    finally:
        admin.close()


@pytest.mark.strata_config({**FAST_CHECKS, "simulate.put.latency.p50.ms": 50,
                            "simulate.put.latency.p99.ms": 200,
                            "group.initial.rebalance.delay.ms": 0})
def test_consume_transform_produce_through_crashes_outputs_each_input_once(strata):
    """The transform of the test above as an application process, crashed with kill -9
    together with the broker, then alone, at several points, and started again (same
    transactional id and group) each time: the committed output holds every input exactly
    once, in order per partition. (An application whose broker restarts under it would
    carry on by itself, but librdkafka's transactional calls can then wait far beyond their
    timeouts, so the test restarts the application too, as a supervisor would.)"""
    import multiprocessing

    source, sink = unique_topic("ctp-kill-in"), unique_topic("ctp-kill-out")
    create_topic(strata.bootstrap, source, partitions=2)
    create_topic(strata.bootstrap, sink, partitions=2)
    plain = Producer({"bootstrap.servers": strata.bootstrap})
    inputs = [f"{i}" for i in range(400)]
    for i, value in enumerate(inputs):
        plain.produce(source, value.encode(), partition=i % 2)
    plain.flush(TIMEOUT)
    del plain

    group, transactional_id = f"ctp-kill-{uuid.uuid4().hex[:8]}", f"ctp-kill-{uuid.uuid4().hex[:8]}"
    spawn = multiprocessing.get_context("spawn")
    def inputs_done():
        return sum(max(committed_offset(strata.bootstrap, group, source, p), 0) for p in range(2))

    for crashed in ["broker", "application", "broker"]:
        application = spawn.Process(target=run_transform, args=(
            strata.bootstrap, source, sink, group), kwargs={"transactional_id": transactional_id})
        done = inputs_done()
        application.start()
        # The crash comes in the middle of the stream, at a random point once this instance
        # has committed.
        wait_until(lambda: inputs_done() > done, "the instance commits a transaction", timeout=TIMEOUT * 2)
        after = random.uniform(0.0, 0.4)
        print(f"{crashed} crashes {after:.3f} s after a commit")
        time.sleep(after)
        if crashed == "broker":
            strata.stop(kill=True)
        application.kill()
        application.join()
        if crashed == "broker":
            strata.start()
    assert inputs_done() < len(inputs), "the crashes came after the last input"
    run_transform(strata.bootstrap, source, sink, group, transactional_id=transactional_id)

    outputs = read_values(strata.bootstrap, sink, "read_committed", partitions=2)
    assert len(outputs) == len(set(outputs)), "an input was output twice"
    assert sorted(outputs, key=lambda v: int(v.split("-")[1])) == [f"out-{v}" for v in inputs]
    for p in range(2):
        mine = [v for v in outputs if int(v.split("-")[1]) % 2 == p]
        assert mine == sorted(mine, key=lambda v: int(v.split("-")[1])), f"partition {p} out of order"


def test_kafkajs_transactions_commit_and_abort(strata):
    """kafkajs's transactional producer (its own protocol code): what it commits is read,
    what it aborts is not."""
    import json
    import subprocess
    from pathlib import Path

    topic = unique_topic("js-txn")
    create_topic(strata.bootstrap, topic)
    driver = Path(__file__).parent / "js" / "driver.js"
    result = subprocess.run(["node", str(driver), strata.bootstrap, "transact", topic, "10"],
                            capture_output=True, text=True, timeout=TIMEOUT * 2)
    assert result.returncode == 0, f"kafkajs transact exited {result.returncode}:\n{result.stderr}"
    assert json.loads(result.stdout) is True
    assert read_values(strata.bootstrap, topic, "read_committed") == [
        f"js-commit-{i}" for i in range(10)]
    assert read_values(strata.bootstrap, topic, "read_uncommitted") == [
        f"js-commit-{i}" for i in range(10)] + [f"js-abort-{i}" for i in range(10)]


def test_a_killed_coordinator_gateways_open_transaction_is_aborted_by_its_successor(tmp_path):
    """kill -9 of the gateway coordinating a transactional id while its transaction is open:
    the id moves to a live gateway, whose coordinator finds the transaction in etcd and aborts
    it (markers to partition leaders that moved too) when the producer comes back."""
    from kafka.admin import KafkaAdminClient

    from cluster_harness import Cluster

    cluster = Cluster(tmp_path, etcd_members=1, coordinators=1, gateways=3)
    try:
        cluster.start()
        topic = unique_topic("failover-txn")
        create_topic(cluster.bootstrap(), topic, partitions=6)
        transactional_id = f"failover-{uuid.uuid4().hex[:8]}"
        first = transactional_producer(cluster.bootstrap(), transactional_id)
        first.begin_transaction()
        for i in range(12):
            first.produce(topic, f"orphan-{i}".encode(), partition=i % 6)
        first.flush(TIMEOUT)
        admin = KafkaAdminClient(bootstrap_servers=cluster.bootstrap())
        try:
            coordinator = admin.describe_transactions([transactional_id])[transactional_id].coordinator_id
        finally:
            admin.close()
        cluster.kill_gateway(cluster.gateway_of_broker(coordinator))
        del first

        survivors = cluster.bootstrap()
        second = transactional_producer(survivors, transactional_id)
        second.begin_transaction()
        for i in range(12):
            second.produce(topic, f"kept-{i}".encode(), partition=i % 6)
        second.commit_transaction(TIMEOUT)
        assert sorted(read_values(survivors, topic, "read_committed", partitions=6)) == sorted(
            f"kept-{i}" for i in range(12))
    finally:
        cluster.stop()
        print(cluster.logs())
