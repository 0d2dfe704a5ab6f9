"""A real Strata cluster for the cluster tests: an etcd cluster, coordinator replicas and
gateways sharing a `file://` object store, every one of them its own process on loopback.

The `cluster` fixture in test_cluster.py builds on `Cluster`; every process logs to its own
file, and `Cluster.logs()` gathers them for a failing test's output.
"""

import datetime
import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

from confluent_kafka import KafkaException, Producer
from confluent_kafka.admin import AdminClient

from strata_harness import TIMEOUT, free_ports, strata_bin, toml_value, wait_until

ELECTED = "elected: this coordinator is active"


class Process:
    """One child process whose output goes to its own log file; it can be started again with
    the same command, appending to the same log."""

    def __init__(self, name: str, cmd: list, log_file: Path):
        self.name = name
        self.cmd = cmd
        self.log_file = log_file
        self.proc = None
        self.starts = 0
        self.stopped = False  # the harness killed or terminated it

    def start(self):
        self.starts += 1
        self.stopped = False
        with open(self.log_file, "ab") as log:
            log.write(f"=== start {self.starts}: {' '.join(self.cmd)}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(self.cmd, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT)

    def mark(self, event: str):
        """Notes a signal the harness sent in the process's log, timestamped like strata's
        own lines, so the log shows what happened to it and when."""
        stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        with open(self.log_file, "ab") as log:
            log.write(f"{stamp} === harness: {event}\n".encode())

    def alive(self) -> bool:
        """Running (a paused process is running)."""
        return self.proc is not None and self.proc.poll() is None

    @property
    def returncode(self):
        """The exit code, or None while running."""
        return self.proc.poll() if self.proc else None

    def signal(self, sig):
        """Sends `sig` if the process runs, noting it in the log."""
        if self.alive():
            self.mark(signal.Signals(sig).name)
            self.proc.send_signal(sig)

    def kill(self) -> int:
        """SIGKILL, and waits for the process to be gone; returns its exit code."""
        if self.proc is None:
            return 0
        self.stopped = True
        if self.proc.poll() is None:
            self.mark("SIGKILL")
            self.proc.kill()  # a stopped (SIGSTOP) process dies of it too
        return self.proc.wait(timeout=TIMEOUT)

    def terminate(self, timeout: float = TIMEOUT) -> int:
        """SIGTERM, and waits up to `timeout` for the exit; returns the exit code."""
        if self.proc is None:
            return 0
        self.stopped = True
        self.signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"{self.name} did not exit within {timeout} s of SIGTERM\n{self.log()}")

    def wait_exit(self, timeout: float) -> int:
        """Waits up to `timeout` for the process to exit on its own; returns its exit code."""
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{self.name} still running after {timeout} s\n{self.log()}")

    def text(self) -> str:
        """The whole log so far."""
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""

    def log(self, tail: int = 200) -> str:
        """The log's last `tail` lines, framed with the process's name."""
        lines = self.text().splitlines()
        return f"--- {self.name} log ---\n" + "\n".join(lines[-tail:]) + f"\n--- end of {self.name} log ---"


def http_status(address: str, path: str) -> int | None:
    """The status of GET http://address/path, or None when nothing answers."""
    conn = http.client.HTTPConnection(address, timeout=1)
    try:
        conn.request("GET", path)
        return conn.getresponse().status
    except OSError:
        return None
    finally:
        conn.close()


class EtcdCluster:
    """An n-member etcd cluster on free loopback ports, each member with its own data dir.

    Heartbeat 100 ms and election timeout 1 s (etcd's defaults, pinned so the tests do not
    depend on them): a lost leader is replaced within one to two seconds. Everything else is
    left at etcd's defaults, the server settings strata meets in production."""

    def __init__(self, workdir: Path, members: int = 3):
        self.workdir = workdir
        ports = free_ports(2 * members)
        self.client_ports = ports[:members]
        self.peer_ports = ports[members:]
        names = [f"etcd{i}" for i in range(members)]
        initial_cluster = ",".join(
            f"{name}=http://127.0.0.1:{port}" for name, port in zip(names, self.peer_ports))
        self.members = []
        for i, name in enumerate(names):
            client = f"http://127.0.0.1:{self.client_ports[i]}"
            peer = f"http://127.0.0.1:{self.peer_ports[i]}"
            cmd = ["etcd", "--name", name, "--data-dir", str(workdir / f"{name}.data"),
                   "--listen-client-urls", client, "--advertise-client-urls", client,
                   "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                   "--initial-cluster", initial_cluster, "--initial-cluster-state", "new",
                   "--initial-cluster-token", f"strata-test-{self.client_ports[0]}",
                   "--heartbeat-interval", "100", "--election-timeout", "1000",
                   "--logger", "zap", "--log-outputs", "stderr"]
            self.members.append(Process(name, cmd, workdir / f"{name}.log"))

    @property
    def endpoints(self) -> str:
        """Every member's client URL, comma-separated (what --etcd takes)."""
        return ",".join(f"http://127.0.0.1:{p}" for p in self.client_ports)

    def endpoint(self, i: int) -> str:
        """Member i's client URL."""
        return f"http://127.0.0.1:{self.client_ports[i]}"

    def start(self):
        assert shutil.which("etcd") and shutil.which("etcdctl"), "etcd and etcdctl must be installed"
        for member in self.members:
            member.start()
        wait_until(self.healthy, "every etcd member to be healthy with a leader")

    def status(self, i: int) -> dict | None:
        """`etcdctl endpoint status` of member i, or None when it does not answer."""
        result = subprocess.run(
            ["etcdctl", "--endpoints", self.endpoint(i), "--command-timeout=1s",
             "endpoint", "status", "-w", "json"],
            capture_output=True, text=True, timeout=10, env={**os.environ, "ETCDCTL_API": "3"})
        if result.returncode != 0:
            return None
        try:
            return json.loads(result.stdout)[0]["Status"]
        except (ValueError, LookupError):
            return None

    def leader(self) -> int | None:
        """The index of the member that is the raft leader, as the live members see it."""
        for i, member in enumerate(self.members):
            if not member.alive():
                continue
            status = self.status(i)
            if status is None:
                continue
            leader_id = status.get("leader")
            if leader_id and leader_id == status["header"]["member_id"]:
                return i
        return None

    def healthy(self) -> bool:
        """Every live member answers and one of them is the leader."""
        live = [i for i, m in enumerate(self.members) if m.alive()]
        return all(self.status(i) for i in live) and self.leader() is not None

    def kill_member(self, i: int) -> int:
        """kill -9 of member i; returns its exit code."""
        return self.members[i].kill()

    def restart_member(self, i: int):
        """Starts a killed member again on its data dir (which already holds the membership)."""
        assert not self.members[i].alive(), f"etcd member {i} is still running"
        self.members[i].start()
        wait_until(lambda: self.status(i), f"etcd member {i} to answer after its restart")

    def stop(self):
        """Kills every member."""
        for member in self.members:
            member.kill()


class Cluster:
    """An etcd cluster, `coordinators` coordinator replicas and `gateways` gateways.

    Gateways and coordinators are indexed in the order they were started; a stopped one keeps
    its index (and its log) so tests can refer to it afterwards."""

    def __init__(self, workdir: Path, etcd_members: int = 3, coordinators: int = 2,
                 gateways: int = 3, config: dict | None = None, listeners: list | None = None):
        """`listeners`: the names of each gateway's listeners (with their protocols in
        `config`'s listener.security.protocol.map), each on a port of its own; by default one
        PLAINTEXT listener. A gateway's `address` is its first listener's."""
        self.workdir = workdir
        self.listener_names = listeners
        workdir.mkdir(parents=True, exist_ok=True)
        self.storage = workdir / "objects"
        self.storage.mkdir(exist_ok=True)
        self.config = {"broker.session.timeout.ms": 3000, **(config or {})}
        self.config_file = workdir / "strata.toml"
        self.config_file.write_text(
            "".join(f"{json.dumps(k)} = {toml_value(v)}\n" for k, v in self.config.items()))
        self.etcd = EtcdCluster(workdir, etcd_members)
        self.coordinators = []
        self.gateways = []
        self._initial = (coordinators, gateways)

    @property
    def session_timeout(self) -> float:
        """broker.session.timeout.ms, in seconds."""
        return self.config["broker.session.timeout.ms"] / 1000

    def start(self):
        assert strata_bin().exists(), f"{strata_bin()} not found: build it or set STRATA_BIN"
        self.etcd.start()
        coordinators, gateways = self._initial
        for _ in range(coordinators):
            self.add_coordinator()
        # Gateways start once a coordinator is active, so new topics get leaders at once.
        self.wait_for_election()
        for _ in range(gateways):
            self.add_gateway()

    # --- coordinators

    def add_coordinator(self) -> int:
        """Starts one more coordinator replica; returns its index once it answers /readyz."""
        i = len(self.coordinators)
        (http_port,) = free_ports(1)
        cmd = [str(strata_bin()), "coordinator", "--etcd", self.etcd.endpoints,
               "--http", f"127.0.0.1:{http_port}", "--config", str(self.config_file)]
        proc = Process(f"coordinator{i}", cmd, self.workdir / f"coordinator{i}.log")
        proc.http = f"127.0.0.1:{http_port}"
        self.coordinators.append(proc)
        proc.start()
        wait_until(lambda: self._ready(proc), f"coordinator{i} /readyz")
        return i

    def active_coordinator(self) -> int | None:
        """The index of the live coordinator that logged its election last, or None.

        A replica logs "elected" only once it has won, and exits when its session expires, so
        the live one with the latest such line is the active one."""
        best, best_at = None, ""
        for i, proc in enumerate(self.coordinators):
            if not proc.alive():
                continue
            for line in proc.text().splitlines():
                # Lines start with an ISO 8601 UTC timestamp, which sorts as text.
                if ELECTED in line and line.split()[0] > best_at:
                    best, best_at = i, line.split()[0]
        return best

    def wait_for_election(self, other_than: int | None = None, timeout: float = TIMEOUT) -> int:
        """Waits until a live coordinator (not `other_than`) is active; returns its index."""
        def elected():
            i = self.active_coordinator()
            return None if i is None or i == other_than else (i,)
        return wait_until(elected, "a coordinator to be elected", timeout)[0]

    def kill_coordinator(self, i: int) -> int:
        """kill -9 of coordinator i; returns its exit code."""
        return self.coordinators[i].kill()

    # --- gateways

    def add_gateway(self) -> int:
        """Starts one more gateway (broker id allocated through etcd); returns its index once
        it answers /readyz."""
        i = len(self.gateways)
        names = self.listener_names or ["PLAINTEXT"]
        *kafka_ports, http_port = free_ports(len(names) + 1)
        listeners = {name: f"127.0.0.1:{port}" for name, port in zip(names, kafka_ports)}
        address = listeners[names[0]]
        if self.listener_names:
            listen = ["--listeners", ",".join(f"{n}://{a}" for n, a in listeners.items())]
        else:
            listen = ["--listen", address, "--advertised-listener", address]
        cmd = [str(strata_bin()), "gateway", "--etcd", self.etcd.endpoints,
               "--storage", f"file://{self.storage}", *listen,
               "--http", f"127.0.0.1:{http_port}", "--config", str(self.config_file)]
        proc = Process(f"gateway{i}", cmd, self.workdir / f"gateway{i}.log")
        proc.address = address
        proc.listeners = listeners
        proc.http = f"127.0.0.1:{http_port}"
        proc.broker_id = None
        self.gateways.append(proc)
        proc.start()
        wait_until(lambda: self._ready(proc), f"gateway{i} /readyz")
        found = re.search(r"starting strata gateway broker_id=(\d+)", proc.text())
        assert found, f"gateway{i} did not log its broker id\n{proc.log()}"
        proc.broker_id = int(found.group(1))
        return i

    def restart_gateway(self, i: int):
        """Starts a stopped gateway again under its broker id, on its ports; returns once it
        answers /readyz."""
        proc = self.gateways[i]
        assert not proc.alive(), f"gateway{i} is still running"
        if "--broker-id" not in proc.cmd:
            proc.cmd += ["--broker-id", str(proc.broker_id)]
        proc.start()
        wait_until(lambda: self._ready(proc), f"gateway{i} /readyz after its restart")

    def live_gateways(self) -> list:
        """Indexes of the gateways whose process is running (paused ones included)."""
        return [i for i, g in enumerate(self.gateways) if g.alive()]

    def gateway_of_broker(self, broker_id: int) -> int | None:
        """The index of the gateway with `broker_id`, or None."""
        for i, g in enumerate(self.gateways):
            if g.broker_id == broker_id:
                return i
        return None

    def bootstrap(self, gateways=None) -> str:
        """Comma-separated addresses of the given gateways (default: every live one)."""
        indexes = self.live_gateways() if gateways is None else gateways
        return ",".join(self.gateways[i].address for i in indexes)

    def kill_gateway(self, i: int) -> int:
        """kill -9: its partitions move only once its etcd session times out."""
        return self.gateways[i].kill()

    def stop_gateway(self, i: int, timeout: float = TIMEOUT) -> int:
        """SIGTERM, and waits for the drain to end; returns the exit code."""
        return self.gateways[i].terminate(timeout)

    def pause_gateway(self, i: int):
        """SIGSTOP: the process stays, but neither serves nor renews its etcd session."""
        self.gateways[i].signal(signal.SIGSTOP)

    def resume_gateway(self, i: int):
        """SIGCONT of a paused gateway."""
        self.gateways[i].signal(signal.SIGCONT)

    # --- everything

    def _ready(self, proc) -> bool:
        if not proc.alive():
            raise AssertionError(f"{proc.name} exited with {proc.returncode} while starting\n{proc.log()}")
        return http_status(proc.http, "/readyz") == 200

    def exited(self) -> dict:
        """{name: exit code} of the strata processes that exited without the harness stopping
        them (a process it signalled to stop is expected to be gone)."""
        return {p.name: p.returncode for p in [*self.coordinators, *self.gateways]
                if p.starts and not p.alive() and not p.stopped}

    def processes(self) -> list:
        """Every process of the cluster, etcd members first."""
        return [*self.etcd.members, *self.coordinators, *self.gateways]

    def logs(self, tail: int = 150) -> str:
        """Every process's log tail, for a failing test's output (etcd's, which say little
        about strata, shorter)."""
        return "\n".join(p.log(tail if p not in self.etcd.members else 40)
                         for p in self.processes() if p.starts)

    def stop(self):
        """Kills every process: strata ones first, so none of them outlives etcd."""
        for proc in [*self.gateways, *self.coordinators]:
            proc.kill()
        self.etcd.stop()


# --- what clients see of a cluster

def leaders(address: str, topic: str) -> dict:
    """{partition: leader broker id} of `topic` as the gateway at `address` reports it."""
    md = AdminClient({"bootstrap.servers": address}).list_topics(topic, timeout=5)
    t = md.topics[topic]
    if t.error is not None:
        return {}
    return {p.id: p.leader for p in t.partitions.values()}


def led_by(cluster: "Cluster", topic: str, gateway: int) -> list:
    """The partitions of `topic` that `gateway` leads, by the metadata of a live peer."""
    peer = next(i for i in cluster.live_gateways() if i != gateway)
    broker = cluster.gateways[gateway].broker_id
    return sorted(p for p, leader in leaders(cluster.gateways[peer].address, topic).items()
                  if leader == broker)


def time_until_accepted(bootstrap: str, topic: str, partitions: list, since: float,
                        timeout: float = TIMEOUT) -> dict:
    """Produces one acks=all record to each of `partitions` through a fresh producer; returns
    {partition: seconds from `since` until it was acknowledged}.

    The producer refreshes its metadata every 200 ms at most while a leader is unreachable
    or refuses, so the times exceed the move by little more than that."""
    accepted, errors = {}, []

    def on_delivery(err, msg):
        if err is None:
            accepted[msg.partition()] = time.monotonic() - since
        else:
            errors.append((msg.partition(), err))

    producer = Producer({
        "bootstrap.servers": bootstrap,
        "acks": "all",
        "message.timeout.ms": int(timeout * 1000),
        "reconnect.backoff.ms": 50,
        "reconnect.backoff.max.ms": 200,
        "retry.backoff.ms": 50,
        "retry.backoff.max.ms": 200,
    })
    try:
        for p in partitions:
            producer.produce(topic, value=b"probe", partition=p, on_delivery=on_delivery)
        producer.flush(timeout + 5)
    finally:
        producer.purge()
        producer.flush(1)
        producer.close()
    assert not errors, f"probe records failed: {errors}"
    assert sorted(accepted) == sorted(partitions), f"probes acknowledged: {accepted}"
    return accepted


def failover_time(cluster: "Cluster", topic: str, victim: int, partitions: list, since: float,
                  timeout: float = TIMEOUT) -> tuple:
    """(metadata, produce): seconds from `since` until every live gateway reports a live
    leader for each of `partitions` (led by gateway `victim` before), and until each of them
    accepted an acks=all record from a fresh producer."""
    broker = cluster.gateways[victim].broker_id
    live_ids = {g.broker_id for g in cluster.gateways if g.alive()} - {broker}

    def moved():
        for i in cluster.live_gateways():
            if i == victim:
                continue
            try:
                now = leaders(cluster.gateways[i].address, topic)
            except KafkaException:
                return False
            if any(now.get(p) not in live_ids for p in partitions):
                return False
        return True

    wait_until(moved, f"new leaders for partitions {partitions} on every gateway",
               timeout=timeout, interval=0.1)
    metadata = time.monotonic() - since
    produce = max(time_until_accepted(cluster.bootstrap(), topic, partitions, since).values())
    return metadata, produce
