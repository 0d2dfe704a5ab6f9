"""SSL listeners: TLS with certificates made here, beside a PLAINTEXT listener; client
certificates (mTLS) and principal mapping rules; certificates rotated without a restart;
and every way a client can fail the handshake closes its connection and leaves the broker
serving."""

import socket
import ssl

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient
from cryptography import x509
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from emulator import metrics
from pki import Authority, name
from strata_harness import (TIMEOUT, Strata, free_ports, produce_and_read_back, unique_topic,
                            wait_until)

AUTH_FAILURES = "strata_authentication_failures_total"


@pytest.fixture
def pki(tmp_path):
    directory = tmp_path / "pki"
    directory.mkdir()
    ca = Authority(directory, "strata-test-ca")
    return ca, ca.issue("server.pem", name("strata"), server=True)


def ssl_broker(tmp_path, keystore, plaintext=True, **settings):
    """A broker with an SSL listener (`broker.ssl_bootstrap`) and, unless told otherwise, a
    PLAINTEXT one (`broker.bootstrap`)."""
    broker = Strata(tmp_path)
    [ssl_port] = free_ports(1)
    broker.ssl_bootstrap = f"127.0.0.1:{ssl_port}"
    listeners = [f"SSL://{broker.ssl_bootstrap}"]
    if plaintext:
        listeners.append(f"PLAINTEXT://{broker.bootstrap}")
    broker.write_config({"listeners": ",".join(listeners),
                         "ssl.keystore.type": "PEM",
                         "ssl.keystore.location": str(keystore), **settings})
    broker.start()
    return broker


@pytest.fixture
def brokers():
    started = []
    yield started
    for broker in started:
        broker.stop(kill=True)
        print(broker.log())


def ssl_client(broker, ca, keystore=None):
    config = {"bootstrap.servers": broker.ssl_bootstrap, "security.protocol": "SSL",
              "ssl.ca.location": str(ca.path)}
    if keystore:
        config["ssl.certificate.location"] = str(keystore)
        config["ssl.key.location"] = str(keystore)
    return config


def handshake_fails(address, ca, keystore=None):
    """Whether a TLS handshake (with `keystore` as the client certificate) to `address`
    fails, or the server closes the connection at once after it (TLS 1.3 reports a refused
    client certificate only then)."""
    context = ssl.create_default_context(cafile=str(ca.path))
    if keystore:
        context.load_cert_chain(str(keystore))
    host, port = address.rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=10) as raw:
            with context.wrap_socket(raw, server_hostname=host) as tls:
                # ApiVersions v0: the server answers a client it accepted.
                tls.sendall(bytes.fromhex("0000000a" "0012" "0000" "00000001" "0000"))
                return tls.recv(4) == b""
    except (ssl.SSLError, ConnectionError, OSError):
        return True


def test_produce_and_consume_over_ssl_beside_plaintext(tmp_path, pki, brokers):
    """confluent-kafka and kafka-python over the SSL listener; clients of each listener are
    told that listener's address, so both work against the same broker and topic."""
    ca, server = pki
    broker = ssl_broker(tmp_path, server)
    brokers.append(broker)
    topic = unique_topic("tls")
    values = [f"tls-{i}".encode() for i in range(50)]
    assert sorted(produce_and_read_back(ssl_client(broker, ca), topic, values)) == sorted(values)

    for bootstrap, extra in [(broker.ssl_bootstrap, ssl_client(broker, ca)),
                             (broker.bootstrap, {"bootstrap.servers": broker.bootstrap})]:
        advertised = AdminClient(extra).list_topics(timeout=TIMEOUT).brokers
        [(_, metadata_broker)] = advertised.items()
        assert f"{metadata_broker.host}:{metadata_broker.port}" == bootstrap

    # The records written over TLS are there for a PLAINTEXT client, and the other way.
    plain = {"bootstrap.servers": broker.bootstrap}
    more = [f"plain-{i}".encode() for i in range(10)]
    assert sorted(produce_and_read_back(plain, topic, more, earlier=len(values))) == sorted(values + more)

    producer = KafkaProducer(bootstrap_servers=broker.ssl_bootstrap, security_protocol="SSL",
                             ssl_cafile=str(ca.path), acks="all")
    sent = producer.send(topic, b"kafka-python").get(timeout=TIMEOUT)
    producer.close()
    consumer = KafkaConsumer(bootstrap_servers=broker.ssl_bootstrap, security_protocol="SSL",
                             ssl_cafile=str(ca.path), consumer_timeout_ms=int(TIMEOUT * 1000))
    partition = TopicPartition(topic, sent.partition)
    consumer.assign([partition])
    consumer.seek(partition, sent.offset)
    assert next(consumer).value == b"kafka-python"
    consumer.close()


def test_client_certificates_are_required_and_mapped_to_principals(tmp_path, pki, brokers):
    """ssl.client.auth=required: a client certificate the CA signed is accepted when a
    principal mapping rule matches its subject; none, an expired one, one from another CA,
    or one no rule matches is refused with a closed connection and counted, and the broker
    keeps serving."""
    ca, server = pki
    broker = ssl_broker(tmp_path, server, plaintext=False, **{
        "ssl.client.auth": "required",
        "ssl.truststore.type": "PEM",
        "ssl.truststore.location": str(ca.path),
        "ssl.principal.mapping.rules": "RULE:^CN=(app-.*),OU=services,O=Example,C=GB$/$1/L",
    })
    brokers.append(broker)
    good = ca.issue("app.pem", name("app-Payments", unit="services"))
    topic = unique_topic("mtls")
    values = [f"m-{i}".encode() for i in range(20)]
    assert sorted(produce_and_read_back(ssl_client(broker, ca, good), topic, values)) == sorted(values)

    other_ca = Authority(ca.directory, "other-ca")
    refused = {
        "no certificate": None,
        "expired": ca.issue("expired.pem", name("app-old", unit="services"), expired=True),
        "unknown CA": other_ca.issue("stranger.pem", name("app-x", unit="services")),
        "no matching rule": ca.issue("intruder.pem", name("intruder", unit="services")),
    }
    before = metrics(broker.http).get(AUTH_FAILURES, 0)
    for why, keystore in refused.items():
        assert handshake_fails(broker.ssl_bootstrap, ca, keystore), why
    assert not handshake_fails(broker.ssl_bootstrap, ca, good)
    wait_until(lambda: metrics(broker.http)[AUTH_FAILURES] >= before + len(refused),
               "every refused client counted")

    # librdkafka with the refused certificate gets no metadata; the broker still serves.
    admin = AdminClient(ssl_client(broker, ca, refused["unknown CA"]))
    with pytest.raises(Exception):
        admin.list_topics(timeout=3)
    read = produce_and_read_back(ssl_client(broker, ca, good), topic, [b"after"], earlier=len(values))
    assert sorted(read) == sorted(values + [b"after"])


def test_plaintext_and_garbage_to_an_ssl_listener_close_the_connection(tmp_path, pki, brokers):
    """A Kafka request in plaintext, or bytes that are not TLS, to the SSL listener: the
    connection is closed and counted; the broker keeps serving TLS clients."""
    ca, server = pki
    broker = ssl_broker(tmp_path, server)
    brokers.append(broker)
    host, port = broker.ssl_bootstrap.rsplit(":", 1)
    for payload in [bytes.fromhex("0000000a00120000000000010000"), b"\x16\x03\x01\xff\xff" + b"x" * 64]:
        with socket.create_connection((host, int(port)), timeout=10) as raw:
            raw.sendall(payload)
            raw.settimeout(TIMEOUT)
            try:
                while raw.recv(4096):
                    pass
            except ConnectionResetError:
                pass
    wait_until(lambda: metrics(broker.http).get(AUTH_FAILURES, 0) >= 2, "both counted")
    assert not handshake_fails(broker.ssl_bootstrap, ca)


def test_the_private_key_may_be_a_file_of_its_own(tmp_path, pki, brokers):
    """ssl.key.location beside a chain-only ssl.keystore.location, as a Kubernetes TLS
    Secret's tls.key and tls.crt are mounted."""
    ca, server = pki
    chain, key = server.read_text().split("-----BEGIN PRIVATE KEY-----")
    (tmp_path / "tls.crt").write_text(chain)
    (tmp_path / "tls.key").write_text("-----BEGIN PRIVATE KEY-----" + key)
    broker = ssl_broker(tmp_path, tmp_path / "tls.crt", **{"ssl.key.location": str(tmp_path / "tls.key")})
    brokers.append(broker)
    assert not handshake_fails(broker.ssl_bootstrap, ca)


def test_certificates_rotate_without_a_restart(tmp_path, pki, brokers):
    """Replacing the keystore file: new connections get the new certificate, the open ones
    carry on, and a file caught half-written keeps the previous certificate."""
    ca, server = pki
    broker = ssl_broker(tmp_path, server)
    brokers.append(broker)

    def served_serial():
        context = ssl.create_default_context(cafile=str(ca.path))
        host, port = broker.ssl_bootstrap.rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=10) as raw:
            with context.wrap_socket(raw, server_hostname=host) as tls:
                return x509.load_der_x509_certificate(tls.getpeercert(binary_form=True)).serial_number

    first = served_serial()
    assert first == x509.load_pem_x509_certificate(server.read_bytes()).serial_number
    open_producer = Producer({**ssl_client(broker, ca), "acks": "all"})
    topic = unique_topic("rotate")
    open_producer.produce(topic, b"before")
    assert open_producer.flush(TIMEOUT) == 0

    # Half-written: the broker keeps serving the old certificate.
    text = server.read_bytes()
    server.write_bytes(text[: len(text) // 2])
    assert served_serial() == first
    assert f"keeping the previous TLS certificates" in broker.log(tail=50)

    rotated = ca.issue("rotated.pem", name("strata-rotated"), server=True)
    server.write_bytes(rotated.read_bytes())
    new = x509.load_pem_x509_certificate(rotated.read_bytes()).serial_number
    wait_until(lambda: served_serial() == new, "the new certificate served")
    open_producer.produce(topic, b"after")
    assert open_producer.flush(TIMEOUT) == 0


@pytest.mark.parametrize("config,reason", [
    ({"listeners": "SSL://127.0.0.1:0"}, "ssl.keystore.location"),
    ({"listeners": "SASL_SSL://127.0.0.1:0"}, "ssl.keystore.location"),
    ({"sasl.enabled.mechanisms": "GSSAPI"}, "GSSAPI is not supported"),
    ({"listeners": "PLAINTEXT://0.0.0.0:0"}, "advertised.listeners must"),
    ({"listeners": "SSL://127.0.0.1:0", "ssl.keystore.location": "/nonexistent.pem"}, "/nonexistent.pem"),
    ({"ssl.keystore.type": "JKS"}, "only PEM keystores"),
    ({"ssl.client.auth": "sometimes"}, "none, requested or required"),
])
def test_bad_listener_settings_stop_start_up_with_a_reason(tmp_path, config, reason):
    broker = Strata(tmp_path, config)
    with pytest.raises(AssertionError) as error:
        broker.start()
    assert reason in str(error.value), error.value
    broker.stop(kill=True)
