"""The Grafana dashboards and the Prometheus alert rules against a real cluster: 3 gateways, 2
coordinators and etcd on loopback, scraped every second by a real Prometheus configured as
the chart's ServiceMonitors are (jobs strata-gateway and strata-coordinator) and loaded with
the alert rules. Producers and two consumer groups, one of them lagging, make traffic; then
every panel's PromQL must return series, the metrics behind them must tell the truth, the
rules must evaluate, and a coordinator failover and a lost gateway must show on the
coordinator panels and as pending alerts. promtool checks and unit-tests the rules.

The tests share one run of the cluster and go in file order: the last one kills processes.
Set STRATA_RENDER_DASHBOARDS=1 to write docs/dashboards/*.png from this run."""

import json
import os
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

import render_dashboards as dashboards
from cluster_harness import Cluster, Process
from group_helpers import GROUP_BROKER_CONFIG
from strata_harness import TIMEOUT, create_topic, free_ports, wait_until

ALERTS = dashboards.ROOT / "helm" / "strata" / "alerts"
GATEWAY_JOB, COORDINATOR_JOB = "strata-gateway", "strata-coordinator"
TOPICS = {"orders": 6, "clicks": 3}
# Records per second produced to each topic, and consumed by the lagging group.
PRODUCE_RATE = {"orders": 150, "clicks": 60}
LAGGING_RATE = 40
TRAFFIC_SECONDS = 40
BUFFER_MAX_BYTES = 48 * 1024 * 1024
# Query step and what $__rate_interval stands for, with Prometheus scraping every second.
STEP, RATE_INTERVAL = 2, "15s"


def alert_names() -> list:
    """The alerts of the rules file, in order."""
    rules = (ALERTS / "strata-alerts.yaml").read_text()
    return [line.split(":", 1)[1].strip() for line in rules.splitlines()
            if line.strip().startswith("- alert:")]


class Prometheus:
    """A real Prometheus on a free loopback port: scrapes every second, as the chart's
    ServiceMonitors would (job strata-gateway for the gateways, strata-coordinator for the
    coordinators), and evaluates `rule_files` every second."""

    def __init__(self, workdir: Path, gateways: list, coordinators: list, rule_files: list):
        workdir.mkdir(parents=True, exist_ok=True)
        (port,) = free_ports(1)
        self.url = f"http://127.0.0.1:{port}"
        config = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s",
                       "evaluation_interval": "1s"},
            "rule_files": [str(f) for f in rule_files],
            "scrape_configs": [
                {"job_name": GATEWAY_JOB, "metrics_path": "/metrics",
                 "static_configs": [{"targets": gateways}]},
                {"job_name": COORDINATOR_JOB, "metrics_path": "/metrics",
                 "static_configs": [{"targets": coordinators}]},
            ],
        }
        config_file = workdir / "prometheus.yml"
        config_file.write_text(json.dumps(config, indent=2))  # JSON is YAML
        cmd = ["prometheus", f"--config.file={config_file}",
               f"--storage.tsdb.path={workdir / 'data'}",
               f"--web.listen-address=127.0.0.1:{port}"]
        self.process = Process("prometheus", cmd, workdir / "prometheus.log")

    def start(self):
        assert shutil.which("prometheus"), "prometheus must be installed"
        self.process.start()
        wait_until(self._ready, "Prometheus /-/ready")

    def _ready(self) -> bool:
        assert self.process.alive(), f"prometheus exited\n{self.process.log()}"
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as r:
                return r.status == 200
        except OSError:
            return False

    def api(self, path: str, **params):
        query = urllib.parse.urlencode(params)
        with urllib.request.urlopen(f"{self.url}/api/v1/{path}?{query}", timeout=30) as r:
            body = json.load(r)
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list:
        return self.api("query", query=expr)["result"]

    def values(self, expr: str) -> dict:
        """{instance: value} of an instant query."""
        return {s["metric"].get("instance", ""): float(s["value"][1]) for s in self.query(expr)}

    def value(self, expr: str):
        """The value of an instant query with one series, else None."""
        result = self.query(expr)
        return float(result[0]["value"][1]) if len(result) == 1 else None

    def alerts(self) -> list:
        return self.api("alerts")["alerts"]

    def stop(self):
        self.process.kill()


def produce(bootstrap: str, stop: threading.Event, failures: list):
    """acks=all records at PRODUCE_RATE until `stop`; delivery failures go to `failures`."""
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5})

    def delivered(err, _msg):
        if err is not None:
            failures.append(err)

    value = b"x" * 200
    sent = 0
    started = time.monotonic()
    while not stop.is_set():
        # Catch up to the pace, a tenth of a second at a time.
        due = int((time.monotonic() - started) * 10)
        for _ in range(due - sent):
            for topic, rate in PRODUCE_RATE.items():
                for _ in range(rate // 10):
                    producer.produce(topic, value=value, on_delivery=delivered)
        sent = max(sent, due)
        producer.poll(0.05)
    undelivered = producer.flush(TIMEOUT)
    if undelivered:
        failures.append(f"{undelivered} records undelivered")


def consume(bootstrap: str, group: str, topics: list, stop: threading.Event, counts: dict,
            per_second: float | None = None):
    """Consumes `topics` in `group` until `stop`, committing every second; at most
    `per_second` records per second when given."""
    consumer = Consumer({
        "bootstrap.servers": bootstrap, "group.id": group, "auto.offset.reset": "earliest",
        "enable.auto.commit": True, "auto.commit.interval.ms": 1000,
        "session.timeout.ms": 6000, "heartbeat.interval.ms": 500,
    })
    consumer.subscribe(topics)
    try:
        while not stop.is_set():
            msg = consumer.poll(0.2)
            if msg is None or msg.error():
                continue
            counts[group] = counts.get(group, 0) + 1
            if per_second:
                time.sleep(1 / per_second)
    finally:
        consumer.close()  # commits what was consumed


def provoke_partition_errors(bootstrap: str) -> list:
    """A Produce answered INVALID_REQUIRED_ACKS (acks=2 is no valid setting) and a Fetch
    answered OFFSET_OUT_OF_RANGE (an offset past the end); returns the producer's errors."""
    errors = []
    producer = Producer({"bootstrap.servers": bootstrap, "acks": 2, "retries": 0,
                         "message.timeout.ms": 10000})
    producer.produce("orders", value=b"refused",
                     on_delivery=lambda err, _msg: errors.append(err))
    producer.flush(TIMEOUT)
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "strata-out-of-range",
                         "enable.auto.commit": False, "auto.offset.reset": "earliest"})

    def record():
        msg = consumer.poll(0.5)
        return msg is not None and msg.error() is None

    try:
        consumer.assign([TopicPartition("orders", 0, 10**9)])
        # After the broker's OFFSET_OUT_OF_RANGE the consumer resets to the earliest offset.
        wait_until(record, "a record after the out-of-range reset")
    finally:
        consumer.close()
    return errors


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("dashboards")
    config = {**GROUP_BROKER_CONFIG, "buffer.max.bytes": BUFFER_MAX_BYTES}
    cluster = Cluster(workdir / "cluster", etcd_members=1, coordinators=2, gateways=3,
                      config=config)
    prometheus = None
    try:
        cluster.start()
        prometheus = Prometheus(workdir / "prometheus",
                                [g.http for g in cluster.gateways],
                                [c.http for c in cluster.coordinators],
                                [ALERTS / "strata-alerts.yaml"])
        prometheus.start()
        wait_until(lambda: prometheus.value("count(up == 1)") == 5, "every target scraped")
        bootstrap = cluster.bootstrap()
        for topic, partitions in TOPICS.items():
            create_topic(bootstrap, topic, partitions)

        start = time.time()
        stop = threading.Event()
        failures, counts = [], {}
        threads = [
            threading.Thread(target=produce, args=(bootstrap, stop, failures)),
            threading.Thread(target=consume, args=(bootstrap, "audit", list(TOPICS), stop,
                                                   counts)),
            threading.Thread(target=consume, args=(bootstrap, "billing", ["orders"], stop,
                                                   counts, LAGGING_RATE)),
        ]
        for t in threads:
            t.start()
        try:
            time.sleep(TRAFFIC_SECONDS / 2)
            refused = provoke_partition_errors(bootstrap)
            time.sleep(TRAFFIC_SECONDS / 2)
        finally:
            stop.set()
            for t in threads:
                t.join(TIMEOUT)
        assert not failures, f"produce failures: {failures[:5]}"
        assert counts.get("audit") and counts.get("billing"), f"records consumed: {counts}"
        # Two more scrapes after the last commits.
        time.sleep(2)
        yield SimpleNamespace(cluster=cluster, prometheus=prometheus, start=start,
                              end=time.time(), refused=refused, consumed=counts)
    finally:
        if prometheus:
            prometheus.stop()
        cluster.stop()
        # Shown with a failing test's output.
        print(cluster.logs(tail=60))
        if prometheus:
            print(prometheus.process.log(tail=60))


def test_promtool_checks_and_unit_tests_the_alert_rules():
    for command in (["check", "rules", "strata-alerts.yaml"],
                    ["test", "rules", "strata-alerts.test.yaml"]):
        result = subprocess.run(["promtool", *command], cwd=ALERTS, capture_output=True,
                                text=True, timeout=60)
        assert result.returncode == 0, f"promtool {' '.join(command)}:\n{result.stdout}{result.stderr}"
    # Every alert is tested both firing (expected alerts listed) and not (`exp_alerts: []`).
    lines = [line.strip() for line in (ALERTS / "strata-alerts.test.yaml").read_text().splitlines()]
    cases = {(name.split(": ", 1)[1], expected == "exp_alerts: []")
             for name, expected in zip(lines, lines[1:]) if name.startswith("alertname: ")}
    alerts = alert_names()
    assert len(alerts) >= 10, alerts
    missing = [(a, quiet) for a in alerts for quiet in (False, True) if (a, quiet) not in cases]
    assert not missing, f"(alert, not firing) cases without a unit test: {missing}"


def test_dashboards_are_well_formed():
    boards = dashboards.load_dashboards()
    assert set(boards) == {"strata-overview", "strata-storage", "strata-consumer-lag",
                           "strata-gateways", "strata-coordinator"}
    for uid, board in boards.items():
        assert board["schemaVersion"] >= 39, uid
        names = [v["name"] for v in board["templating"]["list"]]
        assert names[0] == "datasource", uid
        assert board["templating"]["list"][0]["type"] == "datasource", uid
        assert board["templating"]["list"][0]["query"] == "prometheus", uid
        for panel in dashboards.panels(board):
            # Every query goes to the chosen data source, never to a hard-coded one.
            for ref in [panel["datasource"], *(t["datasource"] for t in panel["targets"])]:
                assert ref == {"type": "prometheus", "uid": "${datasource}"}, (uid, panel["title"])
            assert panel.get("description"), (uid, panel["title"])


def test_every_panel_returns_series(run):
    empty, failed, checked = [], [], 0
    for uid, board in dashboards.load_dashboards().items():
        values = dashboards.variables(board, f"{STEP}s", RATE_INTERVAL)
        for panel in dashboards.panels(board):
            for target in panel["targets"]:
                expr = dashboards.expand(target["expr"], values)
                checked += 1
                try:
                    series = dashboards.query_range(run.prometheus.url, expr, run.start,
                                                    run.end, STEP)
                except urllib.error.HTTPError as e:
                    failed.append(f"{uid} / {panel['title']}: {expr}: {e.read().decode()}")
                    continue
                if not series:
                    empty.append(f"{uid} / {panel['title']}: {expr}")
    assert checked > 60, checked
    assert not failed, "queries Prometheus refused:\n" + "\n".join(failed)
    assert not empty, "queries without any series:\n" + "\n".join(empty)


def test_the_metrics_behind_the_panels_tell_the_truth(run):
    prom, cluster = run.prometheus, run.cluster
    gw = f'job="{GATEWAY_JOB}"'
    # Every partition is led by exactly one gateway, and each leads some.
    led = prom.values(f"strata_partitions_led{{{gw}}}")
    assert sum(led.values()) == sum(TOPICS.values()) and len(led) == 3 and all(led.values()), led
    # The memory bounds are the configured ones; RSS is real.
    assert set(prom.values(f"strata_buffer_max_bytes{{{gw}}}").values()) == {BUFFER_MAX_BYTES}
    assert set(prom.values(f"strata_fetch_buffer_max_bytes{{{gw}}}").values()) == {64 << 20}
    rss = prom.values("strata_process_resident_memory_bytes")
    assert len(rss) == 5 and min(rss.values()) > 1 << 20, rss
    # Every gateway exports the same lag series: the panels' max by partition is one of them.
    raw = prom.query(f'strata_consumer_group_lag{{{gw}, group="billing", topic="orders"}}')
    assert len(raw) == 3 * TOPICS["orders"], [s["metric"] for s in raw]
    per_partition = {}
    for s in raw:
        per_partition.setdefault(s["metric"]["partition"], set()).add(s["value"][1])
    assert all(len(v) == 1 for v in per_partition.values()), per_partition
    deduplicated = prom.query(
        f'max by (group, topic, partition) (strata_consumer_group_lag{{{gw}, group="billing"}})')
    assert len(deduplicated) == TOPICS["orders"]
    # The lagging group is far behind (it consumed 40 of every 150 records), the other not.
    lag = prom.values(f'sum by (group) (max by (group, topic, partition) '
                      f'(strata_consumer_group_lag{{{gw}}}))')
    billing = prom.value(f'sum(max by (group, topic, partition) '
                         f'(strata_consumer_group_lag{{{gw}, group="billing"}}))')
    audit = prom.value(f'sum(max by (group, topic, partition) '
                       f'(strata_consumer_group_lag{{{gw}, group="audit"}}))')
    assert billing > 2000 and audit < billing / 4, (billing, audit, lag)
    # The refused produce and the out-of-range fetch are counted as such.
    assert [e.code() for e in run.refused] == [KafkaError.INVALID_REQUIRED_ACKS], run.refused
    errors = {(s["metric"]["api"], s["metric"]["error"]): float(s["value"][1])
              for s in prom.query("sum by (api, error) (strata_partition_errors_total)")}
    assert errors.get(("Produce", "InvalidRequiredAcks"), 0) >= 1, errors
    assert errors.get(("Fetch", "OffsetOutOfRange"), 0) >= 1, errors
    # Every record the groups consumed was fetched.
    out = prom.value(f"sum(strata_topic_messages_out_total{{{gw}}})")
    assert out >= sum(run.consumed.values()), (out, run.consumed)
    # Flushes PUT objects, timed per operation, and cost something.
    puts = prom.value(f'sum(strata_object_store_request_duration_seconds_count{{{gw}, operation="put"}})')
    assert puts and puts == prom.value(f'sum(strata_object_store_requests_total{{{gw}, operation="put"}})')
    # One coordinator is active.
    active = prom.values(f'strata_coordinator_active{{job="{COORDINATOR_JOB}"}}')
    assert sorted(active.values()) == [0, 1], active
    assert prom.value("sum(strata_metadata_store_transaction_errors_total)") == 0


def test_alert_rules_evaluate_on_the_real_series(run):
    prom = run.prometheus

    def evaluated():
        rules = [r for g in prom.api("rules")["groups"] for r in g["rules"]]
        return rules if all(r["health"] == "ok" for r in rules) else None

    rules = wait_until(evaluated, "every rule evaluated without error")
    assert sorted(r["name"] for r in rules) == sorted(alert_names())
    active = {(a["labels"]["alertname"], a["labels"].get("group"), a["state"])
              for a in prom.alerts()}
    # The lagging group is over the threshold and growing: pending (for: 15m), the rest quiet.
    assert active == {("StrataConsumerLagGrowing", "billing", "pending")}, active


def test_pictures_from_the_scraped_data(run, tmp_path):
    out = dashboards.DOCS if os.environ.get("STRATA_RENDER_DASHBOARDS") else tmp_path
    paths = dashboards.render(run.prometheus.url, run.start, run.end, out, STEP, RATE_INTERVAL)
    assert [p.name for p in paths] == ["consumer-lag.png", "throughput.png"]
    for path in paths:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 20_000


def test_a_failover_shows_on_the_coordinator_panels_and_as_alerts(run):
    prom, cluster = run.prometheus, run.cluster
    since = time.time()
    killed = cluster.active_coordinator()
    cluster.kill_coordinator(killed)
    standby = cluster.wait_for_election(other_than=killed)
    new, old = cluster.coordinators[standby].http, cluster.coordinators[killed].http
    wait_until(lambda: prom.value(f'strata_coordinator_active{{instance="{new}"}}') == 1,
               "the standby reported active")
    assert prom.value(f'strata_coordinator_elections_total{{instance="{new}"}}') == 1

    # A gateway lost: the new active coordinator gives its partitions new leaders.
    victim = cluster.gateways[2]
    lost = prom.value(f'strata_partitions_led{{instance="{victim.http}"}}')
    cluster.kill_gateway(2)
    wait_until(lambda: prom.value(
        f'strata_leader_changes_total{{instance="{new}", reason="failover"}}') == lost,
        f"{lost} failovers counted by the new active coordinator")
    wait_until(lambda: prom.value(f"sum(strata_partitions_led{{job=\"{GATEWAY_JOB}\"}})")
               == sum(TOPICS.values()), "every partition led by the remaining gateways")

    # The coordinator dashboard shows both.
    board = dashboards.load_dashboards()["strata-coordinator"]
    values = dashboards.variables(board, f"{STEP}s", RATE_INTERVAL)
    by_title = {p["title"]: p for p in dashboards.panels(board)}

    def peak(title: str, **labels) -> float:
        """The panel's highest point since the kill, over the series with `labels`."""
        expr = dashboards.expand(by_title[title]["targets"][0]["expr"], values)
        series = dashboards.query_range(prom.url, expr, since, time.time(), 1)
        matching = [s for s in series if labels.items() <= s["metric"].items()]
        return max((float(value) for s in matching for _, value in s["values"]), default=0)

    # Waits: the range's last step may precede the newest scrape.
    wait_until(lambda: peak("Coordinator elections", instance=new) > 0,
               "the election on the Coordinator elections panel")
    wait_until(lambda: peak("Partition leader changes", reason="failover") > 0,
               "the failovers on the Partition leader changes panel")

    def pending(alertname: str, instance: str) -> bool:
        return any(a["labels"]["alertname"] == alertname and
                   a["labels"].get("instance") == instance and a["state"] == "pending"
                   for a in prom.alerts())

    wait_until(lambda: pending("StrataGatewayDown", victim.http), "StrataGatewayDown pending")
    wait_until(lambda: pending("StrataCoordinatorDown", old), "StrataCoordinatorDown pending")
