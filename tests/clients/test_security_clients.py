"""kcat (Debian's librdkafka) and kafkajs (its own protocol code) over every secured
listener kind: SSL with a client certificate (mTLS), SASL_PLAINTEXT and SASL_SSL, with
PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512; a wrong password is refused. confluent-kafka and
kafka-python are covered by the TLS and SASL tests."""

import json
import os
import subprocess

import pytest

from pki import Authority, name
from strata_harness import TIMEOUT, Strata, consume_all, free_ports, unique_topic
from test_kafkajs import DRIVER
from test_sasl import add_users

USERS = {"plain-user": ("plain-pw", "SCRAM-SHA-256"),
         "scram256-user": ("scram256-pw", "SCRAM-SHA-256"),
         "scram512-user": ("scram512-pw", "SCRAM-SHA-512")}

# (listener, SASL mechanism, user): the mechanism's user authenticates with its password.
CASES = [("SSL", None, None),
         ("SASL_PLAINTEXT", "PLAIN", "plain-user"),
         ("SASL_PLAINTEXT", "SCRAM-SHA-256", "scram256-user"),
         ("SASL_SSL", "SCRAM-SHA-512", "scram512-user"),
         ("SASL_SSL", "PLAIN", "plain-user")]


@pytest.fixture(scope="module")
def secured(tmp_path_factory):
    """One broker with an SSL listener that asks for client certificates, a SASL_PLAINTEXT
    and a SASL_SSL one, and PLAINTEXT for administration; the users of USERS."""
    tmp_path = tmp_path_factory.mktemp("secured")
    directory = tmp_path / "pki"
    directory.mkdir()
    ca = Authority(directory, "clients-ca")
    server = ca.issue("server.pem", name("strata"), server=True)
    client = ca.issue("client.pem", name("app-client", unit="services"))
    broker = Strata(tmp_path)
    ports = free_ports(3)
    broker.listeners = {protocol: f"127.0.0.1:{port}"
                        for protocol, port in zip(["SSL", "SASL_PLAINTEXT", "SASL_SSL"], ports)}
    listeners = [f"{protocol}://{address}" for protocol, address in broker.listeners.items()]
    broker.write_config({
        "listeners": ",".join(listeners + [f"PLAINTEXT://{broker.bootstrap}"]),
        "sasl.enabled.mechanisms": "PLAIN,SCRAM-SHA-256,SCRAM-SHA-512",
        "ssl.keystore.location": str(server),
        "ssl.client.auth": "requested",
        "ssl.truststore.type": "PEM",
        "ssl.truststore.location": str(ca.path),
    })
    broker.start()
    add_users(broker.bootstrap, USERS)
    broker.ca, broker.client_certificate = ca.path, client
    yield broker
    broker.stop(kill=True)
    print(broker.log())


def kcat_settings(broker, listener, mechanism, user, password):
    settings = {"security.protocol": listener}
    if "SSL" in listener:
        settings["ssl.ca.location"] = str(broker.ca)
    if listener == "SSL":
        settings["ssl.certificate.location"] = str(broker.client_certificate)
        settings["ssl.key.location"] = str(broker.client_certificate)
    if mechanism:
        settings.update({"sasl.mechanisms": mechanism, "sasl.username": user,
                         "sasl.password": password})
    return [arg for key, value in settings.items() for arg in ("-X", f"{key}={value}")]


def kcat(broker, listener, settings, *args, stdin=None):
    return subprocess.run(["kcat", "-b", broker.listeners[listener], *settings, *args],
                          input=stdin, capture_output=True, text=True, timeout=TIMEOUT * 2)


def kafkajs_security(broker, listener, mechanism, user, password):
    security = {}
    if "SSL" in listener:
        security["ssl"] = {"ca": str(broker.ca)}
    if listener == "SSL":
        security["ssl"]["certificate"] = str(broker.client_certificate)
    if mechanism:
        security["sasl"] = {"mechanism": mechanism.lower(), "username": user, "password": password}
    return security


def kafkajs(broker, listener, security, *args):
    return subprocess.run(["node", str(DRIVER), broker.listeners[listener], *map(str, args)],
                          env={**os.environ, "KAFKAJS_SECURITY": json.dumps(security)},
                          capture_output=True, text=True, timeout=TIMEOUT * 2)


@pytest.mark.parametrize("listener,mechanism,user", CASES)
def test_kcat_produces_and_consumes(secured, listener, mechanism, user):
    topic = unique_topic(f"kcat-{listener}-{mechanism}".lower())
    settings = kcat_settings(secured, listener, mechanism, user, USERS.get(user, ("",))[0])
    lines = [f"{listener}-{mechanism}-{i}" for i in range(50)]
    produced = kcat(secured, listener, settings, "-P", "-t", topic, "-p", "0",
                    stdin="\n".join(lines) + "\n")
    assert produced.returncode == 0, produced.stderr
    consumed = kcat(secured, listener, settings, "-C", "-t", topic, "-p", "0", "-o", "beginning",
                    "-e", "-q")
    assert consumed.returncode == 0, consumed.stderr
    assert consumed.stdout.splitlines() == lines
    if mechanism:
        wrong = kcat_settings(secured, listener, mechanism, user, "wrong")
        refused = kcat(secured, listener, wrong, "-L", "-m", "5")
        assert refused.returncode != 0
        assert "Authentication failed" in refused.stderr, refused.stderr


@pytest.mark.parametrize("listener,mechanism,user", CASES)
def test_kafkajs_produces_and_consumes(secured, listener, mechanism, user):
    topic = unique_topic(f"js-{listener}-{mechanism}".lower())
    security = kafkajs_security(secured, listener, mechanism, user, USERS.get(user, ("",))[0])
    for args in [("create", topic, 1), ("produce", topic, 200)]:
        result = kafkajs(secured, listener, security, *args)
        assert result.returncode == 0, result.stderr
    consumed = kafkajs(secured, listener, security, "consume", topic, 200)
    assert consumed.returncode == 0, consumed.stderr
    assert json.loads(consumed.stdout) == [f"js-{i}" for i in range(200)]
    # What kafkajs wrote over the secured listener reads back over plaintext.
    assert [m.value() for m in consume_all(secured.bootstrap, topic)] == [
        f"js-{i}".encode() for i in range(200)]
    if mechanism:
        wrong = kafkajs_security(secured, listener, mechanism, user, "wrong")
        refused = kafkajs(secured, listener, wrong, "list")
        assert refused.returncode != 0
        assert "SASL" in refused.stderr and "authentication failed" in refused.stderr.lower(), \
            refused.stderr
