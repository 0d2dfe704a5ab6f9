"""kill -9 while an acks=all producer runs: every acknowledged record survives, exactly once,
at the offset it was acknowledged with."""

import os
import random
import threading
import time

import pytest
from confluent_kafka import Producer

from strata_harness import DeliveryLog, assert_acked_present, consume_all, create_topic, unique_topic, wait_until

KILLS = 5
PARTITIONS = 2


class BackgroundProducer(threading.Thread):
    """Produces sequence-numbered values until stopped, recording each acknowledgement.

    No retries: a record is sent once, so a record stored twice is the broker's doing, and a
    failed delivery (the broker died with it in flight) is simply not acknowledged."""

    def __init__(self, bootstrap, topic):
        super().__init__(daemon=True)
        self.topic = topic
        self.deliveries = DeliveryLog()
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.producer = Producer({
            "bootstrap.servers": bootstrap,
            "acks": "all",
            "linger.ms": 2,
            "message.send.max.retries": 0,
            "message.timeout.ms": 10000,
            "reconnect.backoff.ms": 50,
            "reconnect.backoff.max.ms": 200,
        })

    def on_delivery(self, err, msg):
        with self.lock:
            self.deliveries(err, msg)

    def acked(self) -> dict:
        with self.lock:
            return dict(self.deliveries.acked)

    def run(self):
        seq = 0
        while not self.stopped.is_set():
            # At most 500 records queued, so memory and the checks after each kill stay small.
            if len(self.producer) < 500:
                self.producer.produce(self.topic, value=f"{seq:09d}".encode(),
                                      partition=seq % PARTITIONS, on_delivery=self.on_delivery)
                seq += 1
            self.producer.poll(0.0005)
        self.producer.flush(15)
        self.producer.purge()  # whatever is left fails; close() must not wait for it
        self.producer.close()


def test_acknowledged_records_survive_sigkill(strata):
    survive_sigkills(strata)


@pytest.mark.strata_config({"storage.local.direct.io": False})
def test_acknowledged_records_survive_sigkill_through_the_page_cache(strata):
    """The same with the local store's direct I/O turned off: every object is written
    through the page cache, and its fsync alone makes it durable."""
    assert "direct I/O turned off" in strata.log()
    survive_sigkills(strata)


def survive_sigkills(strata):
    topic = unique_topic("crash")
    create_topic(strata.bootstrap, topic, partitions=PARTITIONS)
    seed = int(os.environ.get("STRATA_CRASH_SEED", "2"))
    rng = random.Random(seed)

    producer = BackgroundProducer(strata.bootstrap, topic)
    producer.start()
    try:
        for kill in range(1, KILLS + 1):
            before = len(producer.acked())
            wait_until(lambda: len(producer.acked()) >= before + 200,
                       f"the producer to get 200 more acks before kill {kill}")
            time.sleep(rng.uniform(0.0, 1.5))  # a random moment of the write path

            code = strata.restart(kill=True)
            assert code == -9, f"kill {kill}: broker exit code {code}"

            # Taken after the restart, so it holds every ack of the killed process; acks of the
            # new one are checked too (consume_all reads the watermarks after this).
            acked = producer.acked()
            messages = consume_all(strata.bootstrap, topic, partitions=PARTITIONS)
            assert_acked_present(acked, messages)
            print(f"kill {kill} (seed {seed}): {len(acked)} acknowledged records checked, "
                  f"{len(messages)} in the log")
    finally:
        producer.stopped.set()
        producer.join(30)

    # After the last restart the producer carried on; everything it got acknowledged is there too.
    assert_acked_present(producer.acked(), consume_all(strata.bootstrap, topic, partitions=PARTITIONS))
