"""The Helm chart helm/strata, offline: it lints, renders with its defaults and with each
option, every manifest validates against the Kubernetes schemas, the rendered objects
fit together as users rely on (per-pod addresses, etcd endpoints, probes, drain time,
storage credentials, monitoring), bad values fail with a clear message, and the config
file and environment it renders start the real `strata` binary.

Needs: pip install helm-python-sdk kubernetes-validate (which brings PyYAML and
jsonschema); the `strata` binary ($STRATA_BIN, else the debug build in $CARGO_TARGET_DIR,
default ~/.cache/strata-target); etcd on the PATH.
"""

import base64
import copy
import functools
import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import time
import tomllib
from pathlib import Path

import confluent_kafka
import confluent_kafka.admin
import helm_python
import jsonschema
import kubernetes_validate
import pytest
import yaml

from cluster_harness import http_status
from pki import Authority, name
from strata_harness import TIMEOUT, free_ports, strata_bin, wait_until

CHART = Path(__file__).resolve().parents[2] / "helm" / "strata"
RELEASE = "demo"
NAMESPACE = "streams"
# What the chart names its objects after: the release name, then the chart's.
FULLNAME = f"{RELEASE}-strata"
GATEWAY = f"{FULLNAME}-gateway"
GATEWAY_HEADLESS = f"{FULLNAME}-gateway-headless"
ETCD = f"{FULLNAME}-etcd"
SECRET = "store-credentials"
# The oldest Kubernetes the chart is checked against, and the newest kubernetes-validate
# has schemas for.
KUBE_VERSIONS = ["1.30.0", kubernetes_validate.latest_version()]
# Custom resources of the Prometheus Operator: no schema in kubernetes-validate, checked
# by `check_custom_resource` instead.
CUSTOM_KINDS = {"ServiceMonitor", "PrometheusRule"}
# A gateway drains on SIGTERM: open requests get up to 30 s, then it flushes and commits.
DRAIN_SECONDS = 30

NODE_PORTS = [31090, 31091, 31092]
EXTERNAL_ETCD = ["http://etcd-a.infra:2379", "http://etcd-b.infra:2379", "http://etcd-c.infra:2379"]
MONITORING = {
    "metrics": {
        "serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}},
        "prometheusRule": {"enabled": True, "labels": {"release": "prometheus"}},
        "dashboards": {"enabled": True},
    }
}

# TLS from a cert-manager Secret: SSL inside, SASL over TLS outside.
TLS = {"existingSecret": "kafka-tls", "caKey": "ca.crt", "clientAuth": "requested"}
SSL_INSIDE_SASL_OUTSIDE = {
    "listeners": {"internal": {"protocol": "SSL"}, "external": {"protocol": "SASL_SSL"}},
    "tls": TLS,
    "externalAccess": {"enabled": True, "advertisedListener": "$(POD_NAME).kafka.example.com:9094"},
    "config": {"sasl.enabled.mechanisms": "SCRAM-SHA-512"},
}

# Every option the chart has, each on its own: name -> values.
SCENARIOS = {
    "defaults": {},
    "external etcd": {"etcd": {"enabled": False, "externalEndpoints": EXTERNAL_ETCD}},
    "external access NodePort": {
        "gateway": {"autoscaling": {"enabled": False}, "replicas": 3},
        "externalAccess": {
            "enabled": True,
            "type": "NodePort",
            "advertisedListener": "nodes.example.com:3109$(POD_INDEX)",
            "nodePorts": NODE_PORTS,
        },
    },
    "external access LoadBalancer": {
        "externalAccess": {
            "enabled": True,
            "type": "LoadBalancer",
            "advertisedListener": "$(POD_NAME).kafka.example.com:9094",
            "annotations": {"external-dns.alpha.kubernetes.io/hostname": "$(POD_NAME).kafka.example.com"},
        },
    },
    "monitoring": MONITORING,
    "local volume on a hostPath": {"storage": {"localVolume": {"hostPath": "/srv/strata-objects"}}},
    "local volume on an existing claim": {"storage": {"localVolume": {"existingClaim": "shared-objects"}}},
    "S3": {
        "storage": {
            "url": "s3://bucket/strata",
            "s3": {"endpoint": "http://minio.storage:9000", "region": "eu-west-1",
                   "pathStyle": True, "allowHttp": True},
            "credentials": {"existingSecret": SECRET},
        }
    },
    "GCS": {"storage": {"url": "gs://bucket/strata", "credentials": {"existingSecret": SECRET}}},
    "Azure": {"storage": {"url": "az://container/strata", "credentials": {"existingSecret": SECRET}}},
    "HPA off": {"gateway": {"autoscaling": {"enabled": False}, "replicas": 5}},
    "broker ids from etcd": {"gateway": {"brokerIdFromOrdinal": False}},
    "SSL inside, SASL_SSL outside": SSL_INSIDE_SASL_OUTSIDE,
    "disk read cache and workload identity": {
        "config": {"read.cache.dir": "/var/cache/strata"},
        "gateway": {"extraVolumes": [{"name": "read-cache", "emptyDir": {"sizeLimit": "2Gi"}}],
                    "extraVolumeMounts": [{"name": "read-cache", "mountPath": "/var/cache/strata"}],
                    "extraEnv": [{"name": "AWS_REGION", "value": "eu-west-1"}]},
        "serviceAccount": {"annotations": {"eks.amazonaws.com/role-arn": "arn:aws:iam::1:role/strata"}},
        "storage": {"url": "s3://bucket/strata"},
    },
}


# --- rendering ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def chart_copy(tmp_path_factory) -> Path:
    """The chart with a rules file and a dashboard of the right shapes, for the monitoring
    objects: the real ones are written separately and may not be there yet."""
    path = tmp_path_factory.mktemp("chart") / "strata"
    shutil.copytree(CHART, path)
    alerts = path / "alerts" / "strata-alerts.yaml"
    if not alerts.exists():
        alerts.parent.mkdir(exist_ok=True)
        alerts.write_text(yaml.safe_dump({"groups": [{"name": "strata", "rules": [{
            "alert": "StrataFlushStalled",
            "expr": "max(strata_oldest_unflushed_seconds) > 30",
            "for": "2m",
            "labels": {"severity": "critical"},
            "annotations": {"summary": "{{ $labels.instance }} has not flushed for {{ $value }} s"},
        }]}]}))
    (path / "dashboards").mkdir(exist_ok=True)
    (path / "dashboards" / "Test_Stand-in.json").write_text(
        json.dumps({"title": "Stand-in <test> & \"quotes\"", "panels": []}, indent=2) + "\n")
    return path


# libyaml's loader where PyYAML has it: the pure-Python one takes most of the run.
YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def render(values: dict, chart: Path = CHART) -> list:
    """The rendered objects, in template order."""
    manifests = helm_python.Chart.load(str(chart)).render(values, name=RELEASE, namespace=NAMESPACE)
    return [doc for path, text in sorted(manifests.items()) if not path.endswith("NOTES.txt")
            for doc in yaml.load_all(text, Loader=YAML_LOADER) if doc]


def render_scenario(name: str, chart_copy: Path) -> list:
    return render(SCENARIOS[name], chart_copy if name == "monitoring" else CHART)


def render_error(values: dict) -> str:
    with pytest.raises(helm_python.HelmRenderError) as failure:
        render(values)
    return str(failure.value)


def deep_merge(base: dict, over: dict) -> dict:
    result = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = deep_merge(result[key], value)
        else:
            result[key] = copy.deepcopy(value)
    return result


def find(objects: list, kind: str, name: str | None = None) -> list:
    return [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]


def one(objects: list, kind: str, name: str) -> dict:
    found = find(objects, kind, name)
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


def container(workload: dict) -> dict:
    containers = workload["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def port_of(container_spec: dict, name: str) -> int:
    return next(p["containerPort"] for p in container_spec["ports"] if p["name"] == name)


def selects(selector: dict, labels: dict) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


def expand(text: str, env: dict) -> str:
    """Kubernetes' $(VAR) expansion in env values and args: names defined earlier are
    replaced, $$ is a literal $, other references stay as they are."""
    def substitute(match):
        if match.group(0) == "$$":
            return "$"
        return env.get(match.group(1), match.group(0))
    return re.sub(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)", substitute, text)


def pod_env(statefulset: dict, index: int, host_ip: str = "192.0.2.7") -> dict:
    """The environment the kubelet gives the StatefulSet's pod `index`: the downward API
    fields filled in, $(VAR) references expanded, secrets as "secret:NAME/KEY"."""
    pod_name = f"{statefulset['metadata']['name']}-{index}"
    fields = {
        "metadata.name": pod_name,
        "metadata.labels['apps.kubernetes.io/pod-index']": str(index),
        "status.hostIP": host_ip,
    }
    env = {}
    for var in container(statefulset)["env"]:
        if "value" in var:
            env[var["name"]] = expand(var["value"], env)
        elif "fieldRef" in var["valueFrom"]:
            env[var["name"]] = fields[var["valueFrom"]["fieldRef"]["fieldPath"]]
        else:
            ref = var["valueFrom"]["secretKeyRef"]
            env[var["name"]] = f"secret:{ref['name']}/{ref['key']}"
    return env


# --- lint and schemas ---------------------------------------------------------------------


@pytest.mark.parametrize("version", KUBE_VERSIONS)
def test_the_chart_lints_strictly(chart_copy, version):
    for chart, values in [(CHART, {}), (chart_copy, MONITORING), (CHART, SSL_INSIDE_SASL_OUTSIDE)]:
        report = helm_python.lint(str(chart), values, strict=True, kube_version=f"v{version}")
        assert report["errors"] == [], report
        # Severity 2 is a warning, 3 an error; 1 (information, e.g. "icon is recommended") passes.
        assert [m for m in report["messages"] if m["severity"] >= 2] == [], report


@pytest.mark.parametrize("version", KUBE_VERSIONS)
def test_every_manifest_validates_against_the_kubernetes_schemas(chart_copy, version, monkeypatch):
    # kubernetes-validate reads and parses its schema files again for every object; they
    # do not change while the test runs.
    monkeypatch.setattr(kubernetes_validate.utils, "schema_contents",
                        functools.lru_cache(kubernetes_validate.utils.schema_contents))
    checked = {}
    for scenario in SCENARIOS:
        for obj in render_scenario(scenario, chart_copy):
            # Scenarios share most objects: each distinct one is validated once.
            checked.setdefault(json.dumps(obj, sort_keys=True), (scenario, obj))
    failures = []
    custom = set()
    for scenario, obj in checked.values():
        where = f"{scenario}: {obj['kind']} {obj['metadata']['name']}"
        if obj["kind"] in CUSTOM_KINDS:
            custom.add(obj["kind"])
            failures += [f"{where}: {problem}" for problem in check_custom_resource(obj)]
            continue
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as e:
            failures.append(f"{where}: {'.'.join(map(str, e.path))}: {e.message}")
        except kubernetes_validate.SchemaNotFoundError as e:
            failures.append(f"{where}: {e.message}")
    assert failures == []
    assert custom == CUSTOM_KINDS


# The Prometheus Operator's duration format (monitoring.coreos.com/v1).
DURATION = r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"
STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
METADATA = {"type": "object", "required": ["name", "namespace"],
            "properties": {"name": {"type": "string"}, "namespace": {"type": "string"},
                           "labels": STRING_MAP, "annotations": STRING_MAP}}
# The fields of the Prometheus Operator's custom resources the chart uses, with their
# types in its CRDs; anything else the chart renders is reported.
CUSTOM_SCHEMAS = {
    "ServiceMonitor": {
        "type": "object", "additionalProperties": False,
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": "monitoring.coreos.com/v1"}, "kind": {"const": "ServiceMonitor"},
            "metadata": METADATA,
            "spec": {
                "type": "object", "additionalProperties": False, "required": ["selector", "endpoints"],
                "properties": {
                    "namespaceSelector": {
                        "type": "object", "additionalProperties": False,
                        "properties": {"matchNames": {"type": "array", "items": {"type": "string"}}}},
                    "selector": {"type": "object", "additionalProperties": False, "required": ["matchLabels"],
                                 "properties": {"matchLabels": STRING_MAP}},
                    "endpoints": {"type": "array", "minItems": 1, "items": {
                        "type": "object", "additionalProperties": False, "required": ["port"],
                        "properties": {"port": {"type": "string"}, "path": {"type": "string"},
                                       "interval": {"type": "string", "pattern": DURATION},
                                       "scrapeTimeout": {"type": "string", "pattern": DURATION},
                                       "relabelings": {"type": "array", "items": {
                                           "type": "object", "additionalProperties": False,
                                           "properties": {"targetLabel": {"type": "string"},
                                                          "replacement": {"type": "string"}}}}}}},
                },
            },
        },
    },
    "PrometheusRule": {
        "type": "object", "additionalProperties": False,
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": "monitoring.coreos.com/v1"}, "kind": {"const": "PrometheusRule"},
            "metadata": METADATA,
            "spec": {
                "type": "object", "additionalProperties": False, "required": ["groups"],
                "properties": {"groups": {"type": "array", "minItems": 1, "items": {
                    "type": "object", "required": ["name", "rules"],
                    "properties": {
                        "name": {"type": "string", "minLength": 1},
                        "interval": {"type": "string", "pattern": DURATION},
                        "rules": {"type": "array", "items": {
                            "type": "object", "required": ["expr"],
                            "oneOf": [{"required": ["alert"]}, {"required": ["record"]}],
                            "properties": {
                                "alert": {"type": "string", "minLength": 1},
                                "record": {"type": "string", "minLength": 1},
                                "expr": {"type": ["string", "integer"]},
                                "for": {"type": "string", "pattern": DURATION},
                                "keep_firing_for": {"type": "string", "pattern": DURATION},
                                "labels": STRING_MAP, "annotations": STRING_MAP,
                            }}},
                    }}}},
            },
        },
    },
}


def check_custom_resource(obj: dict) -> list:
    validator = jsonschema.Draft202012Validator(CUSTOM_SCHEMAS[obj["kind"]])
    return [f"{'.'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(obj)]


# --- what users rely on -------------------------------------------------------------------


def test_each_gateway_advertises_its_own_dns_name_in_the_cluster():
    objects = render({})
    statefulset = one(objects, "StatefulSet", GATEWAY)
    headless = one(objects, "Service", GATEWAY_HEADLESS)
    assert statefulset["spec"]["serviceName"] == GATEWAY_HEADLESS
    assert headless["spec"]["clusterIP"] == "None"
    # A gateway is listed to clients once it registers, before /readyz says so.
    assert headless["spec"]["publishNotReadyAddresses"] is True
    pod_labels = statefulset["spec"]["template"]["metadata"]["labels"]
    assert selects(headless["spec"]["selector"], pod_labels)
    kafka_port = port_of(container(statefulset), "kafka")
    assert {"name": "kafka", "port": kafka_port, "targetPort": "kafka"} in headless["spec"]["ports"]
    for index in range(3):
        env = pod_env(statefulset, index)
        assert env["STRATA_ADVERTISED_LISTENERS"] == (
            f"INTERNAL://{GATEWAY}-{index}.{GATEWAY_HEADLESS}.{NAMESPACE}.svc.cluster.local:{kafka_port}")
        assert env["STRATA_LISTENERS"] == f"INTERNAL://0.0.0.0:{kafka_port}"
    # Plaintext inside, the gateways' own listener, and no TLS to mount.
    assert tomllib.loads(rendered_config(objects)) == {**DEFAULT_CONFIG, **PLAINTEXT_INSIDE}
    assert [v["name"] for v in statefulset["spec"]["template"]["spec"]["volumes"]] == ["config", "objects"]
    bootstrap = one(objects, "Service", f"{FULLNAME}-bootstrap")
    assert selects(bootstrap["spec"]["selector"], pod_labels)
    assert bootstrap["spec"]["ports"] == [{"name": "kafka", "port": kafka_port, "targetPort": "kafka"}]


def test_broker_ids_come_from_pod_ordinals_unless_allocated_through_etcd():
    statefulset = one(render({}), "StatefulSet", GATEWAY)
    assert [pod_env(statefulset, i)["STRATA_BROKER_ID"] for i in range(3)] == ["0", "1", "2"]
    statefulset = one(render(SCENARIOS["broker ids from etcd"]), "StatefulSet", GATEWAY)
    assert "STRATA_BROKER_ID" not in pod_env(statefulset, 0)


def external_services(objects: list) -> list:
    return [o for o in find(objects, "Service") if o["metadata"]["name"].endswith("-external")]


def test_nodeport_access_gives_each_gateway_a_service_and_advertises_its_node_port():
    objects = render(SCENARIOS["external access NodePort"])
    statefulset = one(objects, "StatefulSet", GATEWAY)
    pod_labels = statefulset["spec"]["template"]["metadata"]["labels"]
    services = external_services(objects)
    assert len(services) == statefulset["spec"]["replicas"] == 3
    for index, service in enumerate(services):
        pod = f"{GATEWAY}-{index}"
        assert service["metadata"]["name"] == f"{pod}-external"
        assert service["spec"]["type"] == "NodePort"
        # The pod's own labels, as the StatefulSet controller sets them, select it alone.
        labels = {**pod_labels, "statefulset.kubernetes.io/pod-name": pod}
        assert selects(service["spec"]["selector"], labels)
        assert service["spec"]["selector"]["statefulset.kubernetes.io/pod-name"] == pod
        [port] = service["spec"]["ports"]
        assert (port["nodePort"], port["targetPort"]) == (NODE_PORTS[index], "external")
        assert advertised(statefulset, index) == {
            "INTERNAL": f"{pod}.{GATEWAY_HEADLESS}.{NAMESPACE}.svc.cluster.local:9092",
            "EXTERNAL": f"nodes.example.com:{NODE_PORTS[index]}"}
    # The EXTERNAL listener on its own port, which the Services target.
    assert port_of(container(statefulset), "external") == 9094
    assert pod_env(statefulset, 0)["STRATA_LISTENERS"] == "INTERNAL://0.0.0.0:9092,EXTERNAL://0.0.0.0:9094"
    assert tomllib.loads(rendered_config(objects))["listener.security.protocol.map"] == (
        "INTERNAL:PLAINTEXT,EXTERNAL:PLAINTEXT")


def test_loadbalancer_access_covers_every_gateway_the_autoscaler_may_add():
    objects = render(SCENARIOS["external access LoadBalancer"])
    statefulset = one(objects, "StatefulSet", GATEWAY)
    hpa = one(objects, "HorizontalPodAutoscaler", GATEWAY)
    services = external_services(objects)
    assert len(services) == hpa["spec"]["maxReplicas"] == 9
    for index, service in enumerate(services):
        pod = f"{GATEWAY}-{index}"
        assert service["spec"]["type"] == "LoadBalancer"
        assert service["spec"]["selector"]["statefulset.kubernetes.io/pod-name"] == pod
        assert service["metadata"]["annotations"] == {
            "external-dns.alpha.kubernetes.io/hostname": f"{pod}.kafka.example.com"}
        [port] = service["spec"]["ports"]
        assert port["targetPort"] == "external"
        assert advertised(statefulset, index) == {
            "INTERNAL": f"{pod}.{GATEWAY_HEADLESS}.{NAMESPACE}.svc.cluster.local:9092",
            "EXTERNAL": f"{pod}.kafka.example.com:{port['port']}"}


def advertised(statefulset: dict, index: int) -> dict:
    """Listener name to the address pod `index` advertises on it."""
    listeners = pod_env(statefulset, index)["STRATA_ADVERTISED_LISTENERS"].split(",")
    return dict(listener.split("://") for listener in listeners)


def test_tls_inside_and_sasl_outside_come_from_the_secret_and_the_config_file():
    objects = render(SSL_INSIDE_SASL_OUTSIDE)
    statefulset = one(objects, "StatefulSet", GATEWAY)
    assert tomllib.loads(rendered_config(objects)) == {
        **DEFAULT_CONFIG,
        "sasl.enabled.mechanisms": "SCRAM-SHA-512",
        "listener.security.protocol.map": "INTERNAL:SSL,EXTERNAL:SASL_SSL",
        "inter.broker.listener.name": "INTERNAL",
        "ssl.keystore.location": "/etc/strata-tls/tls.crt",
        "ssl.key.location": "/etc/strata-tls/tls.key",
        "ssl.truststore.location": "/etc/strata-tls/ca.crt",
        "ssl.client.auth": "requested",
    }
    assert pod_env(statefulset, 1)["STRATA_LISTENERS"] == "INTERNAL://0.0.0.0:9092,EXTERNAL://0.0.0.0:9094"
    assert advertised(statefulset, 1) == {
        "INTERNAL": f"{GATEWAY}-1.{GATEWAY_HEADLESS}.{NAMESPACE}.svc.cluster.local:9092",
        "EXTERNAL": f"{GATEWAY}-1.kafka.example.com:9094"}
    # The whole Secret, read-only, without subPath: a rotated certificate reaches the pod.
    pod = statefulset["spec"]["template"]["spec"]
    assert {"name": "tls", "secret": {"secretName": "kafka-tls"}} in pod["volumes"]
    assert {"name": "tls", "mountPath": "/etc/strata-tls", "readOnly": True} in container(statefulset)["volumeMounts"]
    # No secret in the ConfigMap: only the files' paths.
    assert "BEGIN" not in rendered_config(objects)


def member_urls(objects: list) -> list:
    """Each bundled etcd member's client URL, from the StatefulSet and its Service."""
    statefulset = one(objects, "StatefulSet", ETCD)
    headless = one(objects, "Service", statefulset["spec"]["serviceName"])
    assert headless["spec"]["clusterIP"] == "None"
    assert selects(headless["spec"]["selector"], statefulset["spec"]["template"]["metadata"]["labels"])
    client_port = next(p["port"] for p in headless["spec"]["ports"] if p["name"] == "client")
    return [f"http://{ETCD}-{i}.{headless['metadata']['name']}.{NAMESPACE}.svc.cluster.local:{client_port}"
            for i in range(statefulset["spec"]["replicas"])]


def etcd_endpoints(objects: list) -> dict:
    """STRATA_ETCD of gateways and coordinators."""
    gateway = pod_env(one(objects, "StatefulSet", GATEWAY), 0)
    coordinator = {v["name"]: v.get("value") for v in container(
        one(objects, "Deployment", f"{FULLNAME}-coordinator"))["env"]}
    return {"gateway": gateway["STRATA_ETCD"], "coordinator": coordinator["STRATA_ETCD"]}


def test_gateways_and_coordinators_reach_every_bundled_etcd_member():
    objects = render({})
    urls = member_urls(objects)
    assert len(urls) == 3
    assert etcd_endpoints(objects) == {"gateway": ",".join(urls), "coordinator": ",".join(urls)}


def test_etcd_members_form_one_cluster():
    objects = render({})
    statefulset = one(objects, "StatefulSet", ETCD)
    etcd = container(statefulset)
    flags = dict(arg.removeprefix("--").split("=", 1) for arg in etcd["args"])
    peers = dict(member.split("=", 1) for member in flags["initial-cluster"].split(","))
    headless = statefulset["spec"]["serviceName"]
    peer_port = port_of(etcd, "peer")
    expected = {f"{ETCD}-{i}": f"http://{ETCD}-{i}.{headless}.{NAMESPACE}.svc.cluster.local:{peer_port}"
                for i in range(3)}
    assert peers == expected
    # Each member names itself and advertises the peer URL the others expect of it.
    env = {"POD_NAME": f"{ETCD}-1"}
    assert expand(flags["name"], env) == f"{ETCD}-1"
    assert expand(flags["initial-advertise-peer-urls"], env) == expected[f"{ETCD}-1"]
    assert flags["initial-cluster-state"] == "new"
    # Members start together (one alone never becomes ready without a quorum).
    assert statefulset["spec"]["podManagementPolicy"] == "Parallel"
    claim = statefulset["spec"]["volumeClaimTemplates"][0]
    mount = next(m for m in etcd["volumeMounts"] if m["name"] == claim["metadata"]["name"])
    assert flags["data-dir"].startswith(mount["mountPath"] + "/")
    pdb = one(objects, "PodDisruptionBudget", ETCD)
    assert pdb["spec"]["maxUnavailable"] == 1


def test_an_external_etcd_replaces_the_bundled_one():
    objects = render(SCENARIOS["external etcd"])
    assert etcd_endpoints(objects) == {"gateway": ",".join(EXTERNAL_ETCD), "coordinator": ",".join(EXTERNAL_ETCD)}
    assert [o for o in objects if "etcd" in o["metadata"]["name"]] == []


@pytest.mark.parametrize("kind,name", [("StatefulSet", GATEWAY), ("Deployment", f"{FULLNAME}-coordinator")])
def test_probes_ask_readyz_and_healthz_on_the_http_port(kind, name):
    workload = one(render({}), kind, name)
    spec = container(workload)
    http_port = port_of(spec, "http")
    env = {v["name"]: v.get("value") for v in spec["env"]}
    assert env["STRATA_HTTP"] == f"0.0.0.0:{http_port}"
    assert spec["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert spec["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert spec["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}


def test_gateways_get_time_to_drain():
    pod = one(render({}), "StatefulSet", GATEWAY)["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] > DRAIN_SECONDS


def test_gateways_scale_on_cpu_and_the_autoscaler_owns_the_replica_count():
    objects = render({})
    statefulset = one(objects, "StatefulSet", GATEWAY)
    hpa = one(objects, "HorizontalPodAutoscaler", GATEWAY)
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": GATEWAY}
    assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"
    # Helm would otherwise set the count back on every upgrade.
    assert "replicas" not in statefulset["spec"]
    assert container(statefulset)["resources"]["requests"]["cpu"]

    objects = render(SCENARIOS["HPA off"])
    assert find(objects, "HorizontalPodAutoscaler") == []
    assert one(objects, "StatefulSet", GATEWAY)["spec"]["replicas"] == 5


def test_disruption_budgets_cover_every_component():
    objects = render({})
    workloads = [one(objects, "StatefulSet", GATEWAY), one(objects, "StatefulSet", ETCD),
                 one(objects, "Deployment", f"{FULLNAME}-coordinator")]
    budgets = find(objects, "PodDisruptionBudget")
    for workload in workloads:
        labels = workload["spec"]["template"]["metadata"]["labels"]
        [budget] = [b for b in budgets if selects(b["spec"]["selector"]["matchLabels"], labels)]
        assert budget["spec"]["maxUnavailable"] == 1
    assert one(objects, "Deployment", f"{FULLNAME}-coordinator")["spec"]["replicas"] == 2


def test_every_container_runs_unprivileged_with_resources():
    for scenario in ["defaults", "GCS"]:
        objects = render(SCENARIOS[scenario])
        for workload in find(objects, "StatefulSet") + find(objects, "Deployment"):
            pod = workload["spec"]["template"]["spec"]
            assert pod["securityContext"]["runAsNonRoot"] is True
            assert pod["securityContext"]["runAsUser"] == 10001
            assert pod["automountServiceAccountToken"] is False
            for spec in pod["containers"]:
                security = spec["securityContext"]
                assert security["readOnlyRootFilesystem"] is True
                assert security["allowPrivilegeEscalation"] is False
                assert security["capabilities"]["drop"] == ["ALL"]
                assert {"cpu", "memory"} <= spec["resources"]["requests"].keys()
                assert {"cpu", "memory"} <= spec["resources"]["limits"].keys()


def test_the_image_defaults_to_the_app_version_and_runs_the_subcommand():
    app_version = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]
    objects = render({})
    assert container(one(objects, "StatefulSet", GATEWAY))["image"] == f"strata:{app_version}"
    assert container(one(objects, "StatefulSet", GATEWAY))["args"] == ["gateway"]
    assert container(one(objects, "Deployment", f"{FULLNAME}-coordinator"))["args"] == ["coordinator"]
    objects = render({"image": {"repository": "registry.example.com/strata", "tag": "1.2.3"}})
    assert container(one(objects, "StatefulSet", GATEWAY))["image"] == "registry.example.com/strata:1.2.3"


# --- storage ------------------------------------------------------------------------------


def test_s3_settings_and_credentials_reach_the_gateways():
    statefulset = one(render(SCENARIOS["S3"]), "StatefulSet", GATEWAY)
    env = pod_env(statefulset, 0)
    assert env["STRATA_STORAGE"] == "s3://bucket/strata"
    assert (env["STRATA_S3_ENDPOINT"], env["STRATA_S3_REGION"]) == ("http://minio.storage:9000", "eu-west-1")
    assert (env["STRATA_S3_PATH_STYLE"], env["STRATA_S3_ALLOW_HTTP"]) == ("true", "true")
    assert env["AWS_ACCESS_KEY_ID"] == f"secret:{SECRET}/AWS_ACCESS_KEY_ID"
    assert env["AWS_SECRET_ACCESS_KEY"] == f"secret:{SECRET}/AWS_SECRET_ACCESS_KEY"


def test_a_gcs_key_file_is_mounted_from_the_secret():
    statefulset = one(render(SCENARIOS["GCS"]), "StatefulSet", GATEWAY)
    env = pod_env(statefulset, 0)
    assert env["STRATA_STORAGE"] == "gs://bucket/strata"
    volume = next(v for v in statefulset["spec"]["template"]["spec"]["volumes"] if "secret" in v)
    assert volume["secret"] == {"secretName": SECRET, "items": [{"key": "credentials.json", "path": "credentials.json"}]}
    mount = next(m for m in container(statefulset)["volumeMounts"] if m["name"] == volume["name"])
    assert env["GOOGLE_APPLICATION_CREDENTIALS"] == f"{mount['mountPath']}/credentials.json"
    assert not any(name.startswith(("AWS_", "AZURE_")) for name in env)


def test_azure_account_and_key_come_from_the_secret():
    env = pod_env(one(render(SCENARIOS["Azure"]), "StatefulSet", GATEWAY), 0)
    assert env["STRATA_STORAGE"] == "az://container/strata"
    assert env["AZURE_STORAGE_ACCOUNT_NAME"] == f"secret:{SECRET}/AZURE_STORAGE_ACCOUNT_NAME"
    assert env["AZURE_STORAGE_ACCOUNT_KEY"] == f"secret:{SECRET}/AZURE_STORAGE_ACCOUNT_KEY"
    assert not any(name.startswith(("AWS_", "GOOGLE_", "STRATA_S3")) for name in env)


def objects_volume(statefulset: dict) -> tuple:
    """The store volume of the gateways and where it is mounted."""
    volume = next(v for v in statefulset["spec"]["template"]["spec"]["volumes"] if v["name"] == "objects")
    mount = next(m for m in container(statefulset)["volumeMounts"] if m["name"] == "objects")
    return volume, mount["mountPath"]


def test_without_a_store_url_the_gateways_share_a_local_volume():
    objects = render({})
    statefulset = one(objects, "StatefulSet", GATEWAY)
    volume, mount_path = objects_volume(statefulset)
    assert pod_env(statefulset, 0)["STRATA_STORAGE"] == f"file://{mount_path}"
    claim = one(objects, "PersistentVolumeClaim", volume["persistentVolumeClaim"]["claimName"])
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]

    objects = render(SCENARIOS["local volume on a hostPath"])
    volume, _ = objects_volume(one(objects, "StatefulSet", GATEWAY))
    assert volume["hostPath"] == {"path": "/srv/strata-objects", "type": "Directory"}
    assert find(objects, "PersistentVolumeClaim") == []

    objects = render(SCENARIOS["local volume on an existing claim"])
    volume, _ = objects_volume(one(objects, "StatefulSet", GATEWAY))
    assert volume["persistentVolumeClaim"] == {"claimName": "shared-objects"}
    assert find(objects, "PersistentVolumeClaim") == []

    statefulset = one(render(SCENARIOS["S3"]), "StatefulSet", GATEWAY)
    assert not any(v["name"] == "objects" for v in statefulset["spec"]["template"]["spec"]["volumes"])


# --- monitoring ---------------------------------------------------------------------------


def test_monitoring_is_off_by_default():
    kinds = {o["kind"] for o in render({})}
    assert not kinds & CUSTOM_KINDS
    assert not [o for o in find(render({}), "ConfigMap") if "grafana_dashboard" in o["metadata"]["labels"]]


def test_service_monitors_scrape_metrics_of_gateways_coordinators_and_etcd(chart_copy):
    objects = render(MONITORING, chart_copy)
    services = find(objects, "Service")
    workloads = find(objects, "StatefulSet") + find(objects, "Deployment")
    scraped = set()
    for monitor in find(objects, "ServiceMonitor"):
        assert monitor["metadata"]["labels"]["release"] == "prometheus"
        assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
        [endpoint] = monitor["spec"]["endpoints"]
        assert endpoint["path"] == "/metrics"
        [service] = [s for s in services if selects(monitor["spec"]["selector"]["matchLabels"], s["metadata"]["labels"])]
        [port] = [p for p in service["spec"]["ports"] if p["name"] == endpoint["port"]]
        # The Service's port leads to the container port serving /metrics.
        [workload] = [w for w in workloads
                      if selects(service["spec"]["selector"], w["spec"]["template"]["metadata"]["labels"])]
        assert port_of(container(workload), port["targetPort"]) == port["port"]
        [job] = [r["replacement"] for r in endpoint["relabelings"] if r["targetLabel"] == "job"]
        scraped.add((workload["metadata"]["name"], job))
    assert scraped == {(GATEWAY, "strata-gateway"), (f"{FULLNAME}-coordinator", "strata-coordinator"),
                       (ETCD, "strata-etcd")}
    # The alert rules select the processes by those job names.
    rules = (CHART / "alerts" / "strata-alerts.yaml").read_text()
    assert set(re.findall(r'job="([^"]+)"', rules)) == {"strata-gateway", "strata-coordinator"}


def test_the_prometheus_rule_is_the_rules_file(chart_copy):
    rules = yaml.safe_load((chart_copy / "alerts" / "strata-alerts.yaml").read_text())
    [rule] = find(render(MONITORING, chart_copy), "PrometheusRule")
    assert rule["spec"] == {"groups": rules["groups"]}
    assert rule["metadata"]["labels"]["release"] == "prometheus"


def test_each_dashboard_file_becomes_a_configmap_grafana_loads(chart_copy):
    files = sorted((chart_copy / "dashboards").glob("*.json"))
    values = deep_merge(MONITORING, {"metrics": {"dashboards": {
        "label": "dashboards", "labelValue": "strata", "annotations": {"grafana_folder": "Strata"}}}})
    configmaps = [c for c in find(render(values, chart_copy), "ConfigMap")
                  if c["metadata"]["labels"].get("dashboards") == "strata"]
    assert sorted(name for c in configmaps for name in c["data"]) == [f.name for f in files]
    for configmap in configmaps:
        [(name, text)] = configmap["data"].items()
        assert text == (chart_copy / "dashboards" / name).read_text()
        assert configmap["metadata"]["annotations"] == {"grafana_folder": "Strata"}
    stand_in = next(c for c in configmaps if "Test_Stand-in.json" in c["data"])
    assert stand_in["metadata"]["name"] == f"{FULLNAME}-dashboard-test-stand-in"
    # Grafana's sidecar looks for grafana_dashboard: "1" unless told otherwise.
    [default] = [c for c in find(render(MONITORING, chart_copy), "ConfigMap")
                 if "Test_Stand-in.json" in c.get("data", {})]
    assert default["metadata"]["labels"]["grafana_dashboard"] == "1"


def test_a_prometheus_rule_without_its_rules_file_fails_clearly(chart_copy, tmp_path):
    chart = tmp_path / "strata"
    shutil.copytree(chart_copy, chart)
    (chart / "alerts" / "strata-alerts.yaml").unlink()
    with pytest.raises(helm_python.HelmRenderError, match="the chart has no alerts/strata-alerts.yaml"):
        render(MONITORING, chart)
    (chart / "alerts" / "strata-alerts.yaml").write_text("alerts: []\n")
    with pytest.raises(helm_python.HelmRenderError, match="has no groups"):
        render(MONITORING, chart)


# --- bad values ---------------------------------------------------------------------------


EXTERNAL = {"enabled": True, "type": "LoadBalancer", "advertisedListener": "$(POD_NAME).example.com:9094"}


@pytest.mark.parametrize("values,message", [
    ({"gateway": {"autoscaling": {"enabled": False}, "replicas": 0}}, "gateway.replicas must be at least 1"),
    ({"gateway": {"autoscaling": {"minReplicas": 0}}}, "minReplicas must be at least 1"),
    ({"gateway": {"autoscaling": {"minReplicas": 4, "maxReplicas": 3}}}, "maxReplicas must be at least"),
    ({"gateway": {"resources": {"requests": {"cpu": None}}}}, "set gateway.resources.requests.cpu"),
    ({"coordinator": {"replicas": 0}}, "coordinator.replicas must be at least 1"),
    ({"etcd": {"replicas": 0}}, "etcd.replicas must be at least 1"),
    ({"etcd": {"enabled": False}}, "list the external etcd's members in etcd.externalEndpoints"),
    ({"etcd": {"enabled": False, "externalEndpoints": ["https://etcd:2379"]}}, "is not http://host:port"),
    ({"gateway": {"terminationGracePeriodSeconds": 30}}, "terminationGracePeriodSeconds must exceed 30"),
    ({"storage": {"url": "memory://"}}, "expected s3://, gs:// or az://"),
    ({"storage": {"localVolume": {"mountPath": "objects"}}}, "mountPath must be an absolute path"),
    ({"externalAccess": {"enabled": True}}, "externalAccess.advertisedListener is required"),
    ({"externalAccess": {**EXTERNAL, "type": "ClusterIP"}}, "expected NodePort or LoadBalancer"),
    ({"externalAccess": {**EXTERNAL, "advertisedListener": "kafka.example.com:9094"}},
     "gives several gateways the same address"),
    ({"externalAccess": {**EXTERNAL, "advertisedListener": "$(POD_NAME).example.com:9092"}},
     "but its Service listens on port 9094"),
    ({"externalAccess": {**EXTERNAL, "type": "NodePort", "nodePorts": NODE_PORTS,
                         "advertisedListener": "nodes.example.com:3109$(POD_INDEX)"}},
     "lists 3 ports, but there can be 9 gateways"),
    ({"gateway": {"autoscaling": {"enabled": False}},
      "externalAccess": {**EXTERNAL, "type": "NodePort", "nodePorts": [31090, 31091, 31099],
                         "advertisedListener": "nodes.example.com:3109$(POD_INDEX)"}},
     "gives gateway 2 the address \"nodes.example.com:31092\", but its Service listens on port 31099"),
    ({"config": {"flush.interval.ms": 2.5}}, "Strata takes whole numbers only"),
    ({"config": {"num.partitions": [3]}}, "expected a string, number or boolean"),
    ({"listeners": {"internal": {"protocol": "TLS"}}}, 'listeners.internal.protocol "TLS": expected PLAINTEXT, SSL'),
    ({"externalAccess": EXTERNAL, "listeners": {"external": {"protocol": "sasl_ssl"}}},
     'listeners.external.protocol "sasl_ssl": expected'),
    ({"listeners": {"internal": {"protocol": "SSL"}}}, "listeners.internal.protocol is SSL: set tls.existingSecret"),
    ({"externalAccess": EXTERNAL, "listeners": {"external": {"protocol": "SASL_SSL"}}},
     "listeners.external.protocol is SASL_SSL: set tls.existingSecret"),
    ({"externalAccess": EXTERNAL, "listeners": {"external": {"containerPort": 9092}}},
     "listeners.external.containerPort 9092 is also gateway.kafkaPort or gateway.httpPort"),
    ({"listeners": {"internal": {"protocol": "SASL_PLAINTEXT"}}},
     "listeners.internal.protocol cannot be SASL_*: the gateways log in to each other"),
    ({"listeners": {"internal": {"protocol": "SASL_SSL"}}, "tls": TLS}, "listeners.internal.protocol cannot be SASL_*"),
    ({"listeners": {"internal": {"protocol": "SSL"}}, "tls": {"existingSecret": "kafka-tls"}},
     "gateways check each other's certificates against a CA, set tls.caKey"),
    ({"tls": {"existingSecret": "kafka-tls", "clientAuth": "required"}},
     "tls.clientAuth is required: client certificates are checked against a CA, set tls.caKey"),
    ({"tls": {**TLS, "clientAuth": "always"}}, 'tls.clientAuth "always": expected none, requested or required'),
    ({"tls": {**TLS, "mountPath": "tls"}}, "tls.mountPath must be an absolute path"),
    ({"config": {"listener.security.protocol.map": "INTERNAL:SSL"}},
     'config "listener.security.protocol.map" is set by the chart'),
    ({"config": {"ssl.keystore.location": "/x.pem"}}, 'config "ssl.keystore.location" is set by the chart'),
])
def test_bad_values_fail_with_a_clear_message(values, message):
    assert message in render_error(values)


# --- the config file and environment, with the real binary --------------------------------


CONFIG = {
    "broker.session.timeout.ms": 3000,
    # Helm reads numbers as floats: this one must not come out as 6.7108864e+07.
    "buffer.max.bytes": 67108864,
    "auto.create.topics.enable": False,
    "auto.leader.rebalance.enable": True,
    "num.partitions": 3,
    "log.message.timestamp.type": "LogAppendTime",
    "group.consumer.assignors": "uniform,range",
}


# The chart's own settings of a default install, and its default config values.
PLAINTEXT_INSIDE = {"listener.security.protocol.map": "INTERNAL:PLAINTEXT", "inter.broker.listener.name": "INTERNAL"}
DEFAULT_CONFIG = {"broker.session.timeout.ms": 3000}


def rendered_config(objects: list) -> str:
    return one(objects, "ConfigMap", f"{FULLNAME}-config")["data"]["strata.toml"]


def typed(settings: dict) -> dict:
    """Values with their types: 67108864.0 == 67108864 in Python, not for Strata."""
    return {key: (type(value), value) for key, value in settings.items()}


def test_the_config_map_is_the_toml_of_the_config_values():
    assert typed(tomllib.loads(rendered_config(render({"config": CONFIG})))) == typed(
        {**CONFIG, **PLAINTEXT_INSIDE})
    odd = {"quoted": 'say "hi" \\ <there> & ünïcode', "big": 9007199254740992, "zero": 0}
    # The chart's default setting stays unless overridden.
    assert typed(tomllib.loads(rendered_config(render({"config": odd})))) == typed(
        {**DEFAULT_CONFIG, **odd, **PLAINTEXT_INSIDE})


class Process:
    """A process started for a test, its output in a log file; `started` stops it."""

    def __init__(self, started: list, cmd: list, env: dict, log: Path):
        self.log = log
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT)
        started.append(self)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def running(self) -> bool:
        assert self.proc.poll() is None, f"exited with {self.proc.returncode}:\n{self.output()}"
        return True

    def terminate(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"did not exit within {TIMEOUT} s of SIGTERM:\n{self.output()}")


@pytest.fixture
def started():
    """The processes a test starts: any still running when it ends are killed."""
    processes = []
    yield processes
    for process in processes:
        if process.proc.poll() is None:
            process.proc.kill()
            process.proc.wait()


@pytest.fixture
def etcd(started, tmp_path):
    """A one-member etcd on loopback; returns its client URL."""
    assert shutil.which("etcd"), "etcd not found: apt-get install etcd-server"
    client, peer = free_ports(2)
    url = f"http://127.0.0.1:{client}"
    process = Process(started, [
        "etcd", "--name", "test", "--data-dir", str(tmp_path / "etcd"),
        "--listen-client-urls", url, "--advertise-client-urls", url,
        "--listen-peer-urls", f"http://127.0.0.1:{peer}",
        "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
        "--initial-cluster", f"test=http://127.0.0.1:{peer}",
    ], dict(os.environ), tmp_path / "etcd.log")
    wait_until(lambda: process.running() and http_status(url.removeprefix("http://"), "/health") == 200,
               "etcd's /health")
    return url


def etcd_get(url: str, key: str) -> dict | None:
    """The JSON value of `key`, through etcd's HTTP gateway to its v3 API."""
    conn = http.client.HTTPConnection(url.removeprefix("http://"), timeout=5)
    try:
        body = json.dumps({"key": base64.b64encode(key.encode()).decode()})
        conn.request("POST", "/v3/kv/range", body, {"Content-Type": "application/json"})
        kvs = json.loads(conn.getresponse().read()).get("kvs", [])
    finally:
        conn.close()
    return json.loads(base64.b64decode(kvs[0]["value"])) if kvs else None


def run_rendered(started: list, workload: dict, config: Path, etcd_url: str, tmp_path: Path,
                 advertise_loopback: bool = False, **overrides) -> tuple:
    """Starts the binary with a rendered container's arguments and environment (as pod 0),
    changing only what points into the cluster: its listeners go to free loopback ports
    (and, with `advertise_loopback`, are advertised as localhost there, for clients of the
    test), etcd to the test's, the config file to `config`, and what `overrides` says.
    Returns the process and its HTTP address."""
    assert strata_bin().exists(), f"{strata_bin()} not found: run `cargo build -p gateway` or set STRATA_BIN"
    [http_port] = free_ports(1)
    env = pod_env(workload, 0) if workload["kind"] == "StatefulSet" else {
        v["name"]: v["value"] for v in container(workload)["env"]}
    env.update(STRATA_HTTP=f"127.0.0.1:{http_port}", STRATA_ETCD=etcd_url, STRATA_CONFIG=str(config))
    if "STRATA_LISTENERS" in env:
        names = [listener.split("://")[0] for listener in env["STRATA_LISTENERS"].split(",")]
        ports = free_ports(len(names))
        env["STRATA_LISTENERS"] = ",".join(f"{n}://127.0.0.1:{p}" for n, p in zip(names, ports))
        if advertise_loopback:
            env["STRATA_ADVERTISED_LISTENERS"] = ",".join(f"{n}://localhost:{p}" for n, p in zip(names, ports))
    env.update(overrides)
    cmd = [str(strata_bin()), *container(workload)["args"]]
    log = tmp_path / f"{workload['metadata']['name']}.log"
    process = Process(started, cmd, {"PATH": os.environ.get("PATH", ""), **env}, log)
    process.env = env
    return process, env["STRATA_HTTP"]


def test_the_rendered_config_and_environment_start_a_coordinator_and_a_gateway(started, etcd, tmp_path):
    objects = render({"config": CONFIG})
    config = tmp_path / "strata.toml"
    config.write_text(rendered_config(objects))
    statefulset = one(objects, "StatefulSet", GATEWAY)
    prefix = pod_env(statefulset, 0)["STRATA_ETCD_PREFIX"]

    coordinator, coordinator_http = run_rendered(
        started, one(objects, "Deployment", f"{FULLNAME}-coordinator"), config, etcd, tmp_path)
    gateway, gateway_http = run_rendered(started, statefulset, config, etcd, tmp_path,
                                         STRATA_STORAGE=f"file://{tmp_path / 'objects'}")
    for process, address in [(coordinator, coordinator_http), (gateway, gateway_http)]:
        wait_until(lambda: process.running() and http_status(address, "/readyz") == 200,
                   f"/readyz of {process.log.stem}")
    # Broker id from the pod ordinal, its own per-pod DNS name advertised.
    registration = etcd_get(etcd, f"{prefix}brokers/0")
    assert registration["info"]["host"] == f"{GATEWAY}-0.{GATEWAY_HEADLESS}.{NAMESPACE}.svc.cluster.local"
    assert registration["info"]["port"] == 9092
    assert gateway.terminate() == 0, gateway.output()
    assert coordinator.terminate() == 0, coordinator.output()
    # Drained: it gave up its registration on SIGTERM.
    assert etcd_get(etcd, f"{prefix}brokers/0") is None


def write_tls_secret(directory: Path) -> Authority:
    """The files of a kubernetes.io/tls Secret as cert-manager fills it and the kubelet mounts
    it (tls.crt, tls.key, ca.crt), for a certificate naming localhost."""
    directory.mkdir()
    authority = Authority(directory, "ca")
    pem = authority.issue("issued.pem", name("gateway"), server=True).read_text()
    split = pem.index("-----BEGIN PRIVATE KEY-----")
    (directory / "tls.crt").write_text(pem[:split])
    (directory / "tls.key").write_text(pem[split:])
    authority.path.rename(directory / "ca.crt")
    return authority


def read_back(client: dict, topic: str, group: str) -> list:
    """The values of `topic` from the start, as a new group's consumer reads them."""
    consumer = confluent_kafka.Consumer({**client, "group.id": group, "auto.offset.reset": "earliest"})
    try:
        consumer.subscribe([topic])
        values = []
        deadline = time.monotonic() + TIMEOUT
        while not values and time.monotonic() < deadline:
            message = consumer.poll(1)
            if message is not None and message.error() is None:
                values.append(message.value())
        return values
    finally:
        consumer.close()


def test_the_rendered_tls_and_sasl_settings_serve_clients_on_both_listeners(started, etcd, tmp_path):
    """SSL inside and SASL_SSL outside from the rendered config and environment, the
    certificate and key from the Secret's files where the chart mounts them: a client
    checking the gateway's certificate against the CA produces over the INTERNAL listener
    and creates a SCRAM user there, who reads the record back over the EXTERNAL one."""
    secret = tmp_path / "tls"
    write_tls_secret(secret)
    objects = render(deep_merge(SSL_INSIDE_SASL_OUTSIDE, {"tls": {"mountPath": str(secret)}}))
    config = tmp_path / "strata.toml"
    config.write_text(rendered_config(objects))
    coordinator, coordinator_http = run_rendered(
        started, one(objects, "Deployment", f"{FULLNAME}-coordinator"), config, etcd, tmp_path)
    gateway, gateway_http = run_rendered(started, one(objects, "StatefulSet", GATEWAY), config, etcd,
                                         tmp_path, advertise_loopback=True,
                                         STRATA_STORAGE=f"file://{tmp_path / 'objects'}")
    for process, address in [(coordinator, coordinator_http), (gateway, gateway_http)]:
        wait_until(lambda: process.running() and http_status(address, "/readyz") == 200,
                   f"/readyz of {process.log.stem}")
    addresses = dict(listener.split("://") for listener in gateway.env["STRATA_ADVERTISED_LISTENERS"].split(","))
    tls = {"ssl.ca.location": str(secret / "ca.crt")}
    internal = {"bootstrap.servers": addresses["INTERNAL"], "security.protocol": "SSL", **tls}
    producer = confluent_kafka.Producer(internal)
    delivered = []
    producer.produce("over-tls", b"sealed", callback=lambda err, msg: delivered.append(err))
    assert producer.flush(TIMEOUT) == 0
    assert delivered == [None]
    assert read_back(internal, "over-tls", "internal-reader") == [b"sealed"]

    admin = confluent_kafka.admin.AdminClient(internal)
    upsertion = confluent_kafka.admin.UserScramCredentialUpsertion(
        "reader", confluent_kafka.admin.ScramCredentialInfo(confluent_kafka.admin.ScramMechanism.SCRAM_SHA_512, 4096),
        b"reader-secret")
    for future in admin.alter_user_scram_credentials([upsertion]).values():
        future.result(timeout=TIMEOUT)
    external = {"bootstrap.servers": addresses["EXTERNAL"], "security.protocol": "SASL_SSL",
                "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": "reader",
                "sasl.password": "reader-secret", **tls}
    assert read_back(external, "over-tls", "external-reader") == [b"sealed"]
    assert gateway.terminate() == 0, gateway.output()
    assert coordinator.terminate() == 0, coordinator.output()


def test_the_binary_refuses_a_rendered_config_with_a_bad_key(started, etcd, tmp_path):
    """The rendered file is what the binary reads: an unknown key in it stops start-up."""
    objects = render({"config": {"no.such.key": 1}})
    config = tmp_path / "strata.toml"
    config.write_text(rendered_config(objects))
    gateway, _ = run_rendered(started, one(objects, "StatefulSet", GATEWAY), config, etcd, tmp_path,
                              STRATA_STORAGE=f"file://{tmp_path / 'objects'}")
    assert gateway.proc.wait(timeout=TIMEOUT) != 0
    assert "no.such.key" in gateway.output()
