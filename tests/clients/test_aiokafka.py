"""aiokafka 0.14 (asyncio): produce and consume without consumer groups."""

import asyncio

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from strata_harness import TIMEOUT, unique_topic

COUNT = 500


async def round_trip(bootstrap, topic):
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])
    finally:
        await admin.close()

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        sent = [await producer.send(topic, value=f"a{i}".encode(), partition=i % 2) for i in range(COUNT)]
        acked = {}
        for i, meta in enumerate(await asyncio.gather(*sent)):
            acked[f"a{i}".encode()] = (meta.partition, meta.offset)
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in range(2)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        found = {}
        while len(found) < COUNT:
            batches = await consumer.getmany(timeout_ms=500)
            for records in batches.values():
                for r in records:
                    found[r.value] = (r.partition, r.offset)
    finally:
        await consumer.stop()
    return acked, found


def test_produce_and_consume(strata):
    topic = unique_topic("aio")
    acked, found = asyncio.run(asyncio.wait_for(round_trip(strata.bootstrap, topic), TIMEOUT))
    assert len(acked) == COUNT, f"{len(acked)} acknowledged"
    assert found == acked, "records read back differ from the acknowledged (partition, offset)s"
