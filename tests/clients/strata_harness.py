"""A real `strata standalone` process for the client tests, and helpers shared by them.

The `strata` fixture in conftest.py builds on `Strata`; test files import the helpers.
"""

import http.client
import json
import os
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path

# Every wait in these tests is bounded by this (seconds) unless it says otherwise.
TIMEOUT = 30


def strata_bin() -> Path:
    """$STRATA_BIN, else the debug build in $CARGO_TARGET_DIR (default ~/.cache/strata-target)."""
    if os.environ.get("STRATA_BIN"):
        return Path(os.environ["STRATA_BIN"])
    target = os.environ.get("CARGO_TARGET_DIR") or Path.home() / ".cache" / "strata-target"
    return Path(target) / "debug" / "strata"


def free_ports(n: int) -> list:
    """n distinct free loopback ports (all sockets held until all are chosen)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    return json.dumps(str(value))  # a JSON string is a valid TOML basic string


def wait_until(condition, what: str, timeout: float = TIMEOUT, interval: float = 0.05):
    """Polls `condition()` until it returns something truthy; fails with `what` on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


class Strata:
    """One broker on fixed ports and a fixed data dir, so it can be restarted in place."""

    def __init__(self, workdir: Path, config: dict | None = None):
        self.workdir = workdir
        self.data_dir = workdir / "data"
        kafka_port, http_port = free_ports(2)
        self.bootstrap = f"127.0.0.1:{kafka_port}"
        self.http = f"127.0.0.1:{http_port}"
        self.config_file = None
        self.listeners_in_config = False
        if config:
            self.write_config(config)
        self.log_file = workdir / "broker.log"
        self.proc = None
        self.starts = 0

    def write_config(self, config: dict):
        """The config file of the next start. One that sets `listeners` replaces --listen."""
        self.config_file = self.workdir / "strata.toml"
        self.config_file.write_text(
            "".join(f"{json.dumps(k)} = {toml_value(v)}\n" for k, v in config.items())
        )
        self.listeners_in_config = "listeners" in config

    def start(self):
        bin_path = strata_bin()
        assert bin_path.exists(), f"{bin_path} not found: run `cargo build -p gateway` or set STRATA_BIN"
        cmd = [str(bin_path), "standalone", "--data-dir", str(self.data_dir), "--http", self.http]
        if not self.listeners_in_config:
            cmd += ["--listen", self.bootstrap]
        if self.config_file:
            cmd += ["--config", str(self.config_file)]
        self.starts += 1
        with open(self.log_file, "ab") as log:
            log.write(f"=== start {self.starts}: {' '.join(cmd)}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT)
        wait_until(self._ready, f"GET http://{self.http}/readyz == 200")

    def _ready(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"broker exited with {self.proc.returncode} while starting\n{self.log()}")
        conn = http.client.HTTPConnection(self.http, timeout=1)
        try:
            conn.request("GET", "/readyz")
            return conn.getresponse().status == 200
        except OSError:
            return False
        finally:
            conn.close()

    def stop(self, kill: bool = False) -> int:
        """SIGTERM (graceful) or SIGKILL; returns the exit code (negative: killed by signal)."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            return self.proc.wait(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"broker did not exit within {TIMEOUT} s of SIGTERM\n{self.log()}")

    def restart(self, kill: bool = False) -> int:
        """Stops the broker (gracefully or with SIGKILL) and starts it again on the same
        ports and data dir; returns the exit code of the stopped process."""
        code = self.stop(kill=kill)
        self.start()
        return code

    def log(self, tail: int = 200) -> str:
        lines = self.log_file.read_text(errors="replace").splitlines() if self.log_file.exists() else []
        return "--- broker log ---\n" + "\n".join(lines[-tail:]) + "\n--- end of broker log ---"


def unique_topic(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


# confluent-kafka helpers, used by several files.

def consumer_config(bootstrap: str) -> dict:
    # The broker has no consumer groups yet: a group.id is set because some code paths want
    # one, but nothing is committed and partitions are assigned explicitly.
    return {
        "bootstrap.servers": bootstrap,
        "group.id": "strata-tests",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "error",
    }


def create_topic(bootstrap: str, topic: str, partitions: int = 1, config: dict | None = None):
    """Creates a topic with confluent-kafka's admin client and waits until it has leaders."""
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(topic, partitions, 1, config=config or {})],
                                  request_timeout=TIMEOUT)
    futures[topic].result(timeout=TIMEOUT)

    def has_leaders():
        t = admin.list_topics(topic, timeout=5).topics.get(topic)
        return t and t.error is None and len(t.partitions) == partitions and all(
            p.leader >= 0 for p in t.partitions.values())

    wait_until(has_leaders, f"topic {topic} with {partitions} partitions and leaders")


def consume_all(bootstrap: str, topic: str, partitions: int = 1, timeout: float = TIMEOUT) -> list:
    """Every record from the log start to the high watermark of each partition, read with
    assign(); returns confluent_kafka Messages in partition, offset order."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    consumer = Consumer(consumer_config(bootstrap))
    try:
        lows, highs = {}, {}
        for p in range(partitions):
            lows[p], highs[p] = consumer.get_watermark_offsets(
                TopicPartition(topic, p), timeout=10, cached=False)
        pending = {p for p in highs if highs[p] > lows[p]}
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in pending])
        messages = []
        deadline = time.monotonic() + timeout
        while pending:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"consumed {len(messages)} records of {topic}; partitions {sorted(pending)} "
                    f"did not reach their high watermarks {highs} within {timeout} s")
            for msg in consumer.consume(num_messages=1000, timeout=0.5):
                assert msg.error() is None, f"consumer error: {msg.error()}"
                messages.append(msg)
                if msg.offset() + 1 >= highs[msg.partition()]:
                    pending.discard(msg.partition())
        return sorted((m for m in messages if m.offset() < highs[m.partition()]),
                      key=lambda m: (m.partition(), m.offset()))
    finally:
        consumer.close()


class DeliveryLog:
    """Collects confluent-kafka delivery reports: value -> (partition, offset) of each ack."""

    def __init__(self):
        self.acked = {}
        self.errors = []

    def __call__(self, err, msg):
        if err is None:
            self.acked[msg.value()] = (msg.partition(), msg.offset())
        else:
            self.errors.append(err)


def produce_all(bootstrap: str, topic: str, values: list, partitions: int = 1,
                timestamps: list | None = None, **config) -> dict:
    """Produces `values` round-robin over partitions (acks=all unless `config` says otherwise),
    waits for every delivery report and returns {value: (partition, offset)}."""
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5, **config})
    log = DeliveryLog()
    try:
        for i, value in enumerate(values):
            kwargs = {"timestamp": timestamps[i]} if timestamps else {}
            producer.produce(topic, value=value, partition=i % partitions, on_delivery=log, **kwargs)
            producer.poll(0)
        remaining = producer.flush(TIMEOUT)
    finally:
        producer.close()  # else it lingers, reconnecting to a stopped broker
    assert remaining == 0, f"{remaining} messages still undelivered after {TIMEOUT} s"
    assert not log.errors, f"delivery errors: {log.errors[:5]}"
    assert len(log.acked) == len(values), f"{len(log.acked)} of {len(values)} acknowledged"
    return log.acked


def assert_acked_present(acked: dict, messages: list):
    """Every acknowledged value is in the log exactly once, at the offset it was acked with."""
    at = {}
    seen = {}
    for m in messages:
        at[(m.partition(), m.offset())] = m.value()
        seen[m.value()] = seen.get(m.value(), 0) + 1
    missing = [(v, pos) for v, pos in acked.items() if at.get(pos) != v]
    assert not missing, (
        f"{len(missing)} of {len(acked)} acknowledged records are not at their acknowledged "
        f"(partition, offset); first ones (value, position, found there): "
        f"{[(v, pos, at.get(pos)) for v, pos in missing[:5]]}")
    duplicated = [v for v in acked if seen.get(v, 0) != 1]
    assert not duplicated, f"acknowledged records stored more than once: {duplicated[:5]}"


def produce_and_read_back(client_config, topic, values, earlier: int = 0):
    """Produces `values` with acks=all, then reads the topic from the start until it has the
    `earlier` records it held before and these; returns what was read."""
    from confluent_kafka import Consumer, Producer

    errors = []
    producer = Producer({**client_config, "acks": "all", "message.timeout.ms": int(TIMEOUT * 1000)})
    for value in values:
        producer.produce(topic, value=value, on_delivery=lambda err, _: err and errors.append(err))
    assert producer.flush(TIMEOUT) == 0 and not errors, errors
    consumer = Consumer({**client_config, "group.id": unique_topic("g"),
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([topic])
    read = []
    try:
        wait_until(lambda: read.extend(m.value() for m in consumer.consume(100, 0.5) if not m.error())
                   or len(read) >= earlier + len(values), f"{earlier + len(values)} records read back")
    finally:
        consumer.close()
    return read
