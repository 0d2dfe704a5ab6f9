"""SASL listeners: users managed with AlterUserScramCredentials through the admin clients,
then PLAIN and SCRAM-SHA-256/512 over SASL_PLAINTEXT and SASL_SSL with confluent-kafka and
kafka-python; wrong passwords, unknown users, requests before authentication, an oversized
token and an expired session each close the connection; KIP-368 re-authentication keeps
a long-lived client going."""

import socket
import struct
import time

import pytest
from confluent_kafka import KafkaException, Producer
from confluent_kafka.admin import (AdminClient, ScramCredentialInfo, ScramMechanism,
                                   UserScramCredentialDeletion, UserScramCredentialUpsertion)
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient

from emulator import metrics
from pki import Authority, name
from strata_harness import (TIMEOUT, Strata, free_ports, produce_and_read_back, unique_topic,
                            wait_until)

AUTH_FAILURES = "strata_authentication_failures_total"
MECHANISMS = "PLAIN,SCRAM-SHA-256,SCRAM-SHA-512"


@pytest.fixture
def brokers():
    started = []
    yield started
    for broker in started:
        broker.stop(kill=True)
        print(broker.log())


def sasl_broker(tmp_path, brokers, protocol="SASL_PLAINTEXT", **settings):
    """A broker with a SASL listener (`broker.sasl_bootstrap`) and a PLAINTEXT one
    (`broker.bootstrap`) for administration."""
    broker = Strata(tmp_path)
    [port] = free_ports(1)
    broker.sasl_bootstrap = f"127.0.0.1:{port}"
    broker.write_config({"listeners": f"{protocol}://{broker.sasl_bootstrap},PLAINTEXT://{broker.bootstrap}",
                         "sasl.enabled.mechanisms": MECHANISMS, **settings})
    broker.start()
    brokers.append(broker)
    return broker


def add_users(bootstrap, users):
    """{user: (password, mechanism name)} through confluent-kafka's admin client."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    upsertions = [UserScramCredentialUpsertion(
        user, ScramCredentialInfo(ScramMechanism[mechanism.replace("-", "_")], 4096), password.encode())
        for user, (password, mechanism) in users.items()]
    for future in admin.alter_user_scram_credentials(upsertions).values():
        future.result(timeout=TIMEOUT)


def sasl_client(broker, mechanism, user, password, **extra):
    return {"bootstrap.servers": broker.sasl_bootstrap, "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanism": mechanism, "sasl.username": user, "sasl.password": password, **extra}


def test_users_authenticate_with_plain_and_scram(tmp_path, brokers):
    """Each mechanism with confluent-kafka and kafka-python: the right password produces
    and consumes; a wrong one, an unknown user or a deleted credential is refused, counted
    and answered alike."""
    broker = sasl_broker(tmp_path, brokers)
    add_users(broker.bootstrap, {"alice": ("alice-secret", "SCRAM-SHA-256"),
                                 "bob": ("bob-secret", "SCRAM-SHA-512")})
    topic = unique_topic("sasl")
    expected = []
    for mechanism, user, password in [("SCRAM-SHA-256", "alice", "alice-secret"),
                                      ("SCRAM-SHA-512", "bob", "bob-secret"),
                                      ("PLAIN", "alice", "alice-secret")]:
        values = [f"{mechanism}-{i}".encode() for i in range(20)]
        expected += values
        client = sasl_client(broker, mechanism, user, password)
        read = produce_and_read_back(client, topic, values, earlier=len(expected) - len(values))
        assert sorted(read) == sorted(expected), mechanism

    for mechanism in ["SCRAM-SHA-512", "PLAIN"]:
        producer = KafkaProducer(bootstrap_servers=broker.sasl_bootstrap,
                                 security_protocol="SASL_PLAINTEXT", sasl_mechanism=mechanism,
                                 sasl_plain_username="bob", sasl_plain_password="bob-secret",
                                 acks="all")
        sent = producer.send(topic, f"kafka-python-{mechanism}".encode()).get(timeout=TIMEOUT)
        producer.close()
        consumer = KafkaConsumer(bootstrap_servers=broker.sasl_bootstrap,
                                 security_protocol="SASL_PLAINTEXT", sasl_mechanism=mechanism,
                                 sasl_plain_username="bob", sasl_plain_password="bob-secret",
                                 consumer_timeout_ms=int(TIMEOUT * 1000))
        partition = TopicPartition(topic, sent.partition)
        consumer.assign([partition])
        consumer.seek(partition, sent.offset)
        assert next(consumer).value == f"kafka-python-{mechanism}".encode()
        consumer.close()

    before = metrics(broker.http).get(AUTH_FAILURES, 0)
    refused = [("SCRAM-SHA-256", "alice", "wrong"), ("SCRAM-SHA-512", "mallory", "bob-secret"),
               ("PLAIN", "alice", "wrong"), ("SCRAM-SHA-256", "bob", "bob-secret")]
    for mechanism, user, password in refused:
        errors = []
        admin = AdminClient(sasl_client(broker, mechanism, user, password,
                                        error_cb=lambda e: errors.append(e)))
        with pytest.raises(KafkaException):
            admin.list_topics(timeout=3)
        # Errors reach error_cb through poll.
        wait_until(lambda: admin.poll(0.1) is not None and errors, "the error reported")
        assert any(e.code() == -169 for e in errors), (mechanism, user, errors)  # _AUTHENTICATION
        assert any("Authentication failed" in e.str() for e in errors), errors
    wait_until(lambda: metrics(broker.http)[AUTH_FAILURES] >= before + len(refused), "failures counted")
    log = broker.log(tail=400)
    assert "wrong" not in log and "alice-secret" not in log

    # Deleting a credential ends that user's logins with it.
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    deletion = UserScramCredentialDeletion("alice", ScramMechanism.SCRAM_SHA_256)
    admin.alter_user_scram_credentials([deletion])["alice"].result(timeout=TIMEOUT)
    with pytest.raises(KafkaException):
        AdminClient(sasl_client(broker, "SCRAM-SHA-256", "alice", "alice-secret")).list_topics(timeout=3)


def test_scram_credentials_are_managed_with_kafkas_admin_apis(tmp_path, brokers):
    """Describe lists each user's mechanisms and iterations (never a secret); Kafka's checks:
    too few iterations, unknown users, deleting what does not exist. kafka-python and
    confluent-kafka."""
    broker = sasl_broker(tmp_path, brokers)
    add_users(broker.bootstrap, {"carol": ("pw", "SCRAM-SHA-512")})
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    upsertion = UserScramCredentialUpsertion(
        "carol", ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 8192), b"pw2")
    admin.alter_user_scram_credentials([upsertion])["carol"].result(timeout=TIMEOUT)
    described = admin.describe_user_scram_credentials().result(timeout=TIMEOUT)
    infos = sorted((i.mechanism, i.iterations) for i in described["carol"].scram_credential_infos)
    assert infos == [(ScramMechanism.SCRAM_SHA_256, 8192), (ScramMechanism.SCRAM_SHA_512, 4096)]

    futures = admin.describe_user_scram_credentials(["carol", "nobody"])
    assert futures["carol"].result(timeout=TIMEOUT).user == "carol"
    with pytest.raises(KafkaException) as error:
        futures["nobody"].result(timeout=TIMEOUT)
    assert "does not exist" in str(error.value)

    too_few = UserScramCredentialUpsertion(
        "dave", ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 100), b"pw")
    with pytest.raises(KafkaException) as error:
        admin.alter_user_scram_credentials([too_few])["dave"].result(timeout=TIMEOUT)
    assert "iterations" in str(error.value)
    missing = UserScramCredentialDeletion("nobody", ScramMechanism.SCRAM_SHA_512)
    with pytest.raises(KafkaException) as error:
        admin.alter_user_scram_credentials([missing])["nobody"].result(timeout=TIMEOUT)
    assert "does not exist" in str(error.value)

    kp = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    try:
        described = kp.describe_user_scram_credentials(["carol"])
        assert "carol" in str(described), described
    finally:
        kp.close()

    # The credentials outlive a restart.
    broker.restart()
    described = admin.describe_user_scram_credentials().result(timeout=TIMEOUT)
    assert set(described) == {"carol"}
    assert sorted(produce_and_read_back(sasl_client(broker, "SCRAM-SHA-256", "carol", "pw2"),
                             unique_topic("after-restart"), [b"x"])) == [b"x"]


def frame(api_key, version, correlation_id, body):
    header = struct.pack(">hhih", api_key, version, correlation_id, 4) + b"test"
    message = header + body
    return struct.pack(">i", len(message)) + message


def kafka_string(text):
    return struct.pack(">h", len(text)) + text.encode()


def response(sock):
    """The next response's body after its correlation id, or None when the connection closed."""
    size = sock.recv(4)
    if len(size) < 4:
        return None
    (length,) = struct.unpack(">i", size)
    data = b""
    while len(data) < length:
        chunk = sock.recv(length - len(data))
        if not chunk:
            return None
        data += chunk
    return data[4:]


def plain_login(sock, user, password):
    """SaslHandshake v1 (PLAIN) and SaslAuthenticate v0; returns the authenticate error code."""
    sock.sendall(frame(17, 1, 1, kafka_string("PLAIN")))
    assert struct.unpack(">h", response(sock)[:2])[0] == 0
    token = f"\0{user}\0{password}".encode()
    sock.sendall(frame(36, 0, 2, struct.pack(">i", len(token)) + token))
    return struct.unpack(">h", response(sock)[:2])[0]


METADATA_V0_ALL = struct.pack(">i", 0)


def test_protocol_violations_close_the_connection(tmp_path, brokers):
    """Before authentication only ApiVersions and the SASL APIs are served: Metadata closes
    the connection, so do SaslAuthenticate without a handshake (ILLEGAL_SASL_STATE) and a
    frame beyond sasl.server.max.receive.size; the broker keeps serving others."""
    broker = sasl_broker(tmp_path, brokers, **{"sasl.server.max.receive.size": 65536})
    add_users(broker.bootstrap, {"erin": ("pw", "SCRAM-SHA-256")})
    host, port = broker.sasl_bootstrap.rsplit(":", 1)

    def connect():
        sock = socket.create_connection((host, int(port)), timeout=TIMEOUT)
        return sock

    with connect() as sock:
        sock.sendall(frame(18, 0, 1, b""))  # ApiVersions is fine
        assert response(sock) is not None
        sock.sendall(frame(3, 0, 2, METADATA_V0_ALL))
        assert response(sock) is None
    with connect() as sock:
        token = b"\0erin\0pw"
        sock.sendall(frame(36, 0, 1, struct.pack(">i", len(token)) + token))
        body = response(sock)
        assert struct.unpack(">h", body[:2])[0] == 34  # ILLEGAL_SASL_STATE
        assert response(sock) is None
    with connect() as sock:
        sock.sendall(frame(17, 1, 1, kafka_string("GSSAPI")))
        body = response(sock)
        assert struct.unpack(">h", body[:2])[0] == 33  # UNSUPPORTED_SASL_MECHANISM
        assert b"SCRAM-SHA-512" in body
        assert response(sock) is None
    with connect() as sock:
        sock.sendall(frame(17, 1, 1, kafka_string("PLAIN")))
        assert response(sock) is not None
        huge = b"\0erin\0" + b"p" * 100_000
        try:
            sock.sendall(frame(36, 0, 2, struct.pack(">i", len(huge)) + huge))
        except OSError:
            pass
        assert response(sock) is None
    with connect() as sock:
        assert plain_login(sock, "erin", "pw") == 0
        sock.sendall(frame(3, 0, 3, METADATA_V0_ALL))
        assert response(sock) is not None


def bare_frame(data):
    return struct.pack(">i", len(data)) + data


def test_a_version_0_handshake_is_followed_by_bare_tokens(tmp_path, brokers):
    """Kafka 0.10 clients: after SaslHandshake v0 the SASL tokens come as bare frames, and
    so do the broker's answers; a wrong password closes the connection without an answer."""
    broker = sasl_broker(tmp_path, brokers)
    add_users(broker.bootstrap, {"frank": ("pw", "SCRAM-SHA-256")})
    host, port = broker.sasl_bootstrap.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=TIMEOUT) as sock:
        sock.sendall(frame(17, 0, 1, kafka_string("PLAIN")))
        assert struct.unpack(">h", response(sock)[:2])[0] == 0
        sock.sendall(bare_frame(b"\0frank\0pw"))
        assert sock.recv(4) == struct.pack(">i", 0)  # PLAIN's empty answer
        sock.sendall(frame(3, 0, 2, METADATA_V0_ALL))
        assert response(sock) is not None
    with socket.create_connection((host, int(port)), timeout=TIMEOUT) as sock:
        sock.sendall(frame(17, 0, 1, kafka_string("PLAIN")))
        assert struct.unpack(">h", response(sock)[:2])[0] == 0
        sock.sendall(bare_frame(b"\0frank\0wrong"))
        assert sock.recv(4) == b""


@pytest.mark.parametrize("reauth_ms", [3000])
def test_sessions_end_unless_the_client_re_authenticates(tmp_path, brokers, reauth_ms):
    """connections.max.reauth.ms: the session lifetime is sent to the client; a client that
    does not re-authenticate is disconnected at its next request after it, while librdkafka,
    which re-authenticates (KIP-368), produces throughout on one connection."""
    broker = sasl_broker(tmp_path, brokers, **{"connections.max.reauth.ms": reauth_ms})
    add_users(broker.bootstrap, {"frank": ("pw", "SCRAM-SHA-512")})
    host, port = broker.sasl_bootstrap.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=TIMEOUT) as sock:
        sock.sendall(frame(17, 1, 1, kafka_string("PLAIN")))
        assert response(sock) is not None
        token = b"\0frank\0pw"
        sock.sendall(frame(36, 1, 2, struct.pack(">i", len(token)) + token))
        body = response(sock)
        error, message_len = struct.unpack(">hh", body[:4])
        assert error == 0
        (auth_len,) = struct.unpack(">i", body[4:8])
        (lifetime,) = struct.unpack(">q", body[8 + auth_len:16 + auth_len])
        assert lifetime == reauth_ms
        sock.sendall(frame(3, 0, 3, METADATA_V0_ALL))
        assert response(sock) is not None
        time.sleep(reauth_ms / 1000 + 0.5)
        sock.sendall(frame(3, 0, 4, METADATA_V0_ALL))
        assert response(sock) is None

    topic = unique_topic("reauth")
    errors = []
    producer = Producer({**sasl_client(broker, "SCRAM-SHA-512", "frank", "pw"), "acks": "all",
                         "error_cb": lambda e: errors.append(e)})
    deadline = time.monotonic() + 3 * reauth_ms / 1000
    sent = 0
    while time.monotonic() < deadline:
        producer.produce(topic, f"r-{sent}".encode())
        sent += 1
        assert producer.flush(TIMEOUT) == 0
        time.sleep(0.2)
    assert not [e for e in errors if e.code() == -169], errors
    assert sent >= 10


def test_sasl_over_tls(tmp_path, brokers):
    """SASL_SSL: SCRAM over an encrypted connection."""
    directory = tmp_path / "pki"
    directory.mkdir()
    ca = Authority(directory, "sasl-ca")
    server = ca.issue("server.pem", name("strata"), server=True)
    broker = sasl_broker(tmp_path, brokers, protocol="SASL_SSL",
                         **{"ssl.keystore.location": str(server)})
    add_users(broker.bootstrap, {"grace": ("pw", "SCRAM-SHA-256")})
    client = {**sasl_client(broker, "SCRAM-SHA-256", "grace", "pw"),
              "security.protocol": "SASL_SSL", "ssl.ca.location": str(ca.path)}
    values = [f"s-{i}".encode() for i in range(10)]
    assert sorted(produce_and_read_back(client, unique_topic("sasl-ssl"), values)) == sorted(values)
    with pytest.raises(KafkaException):
        AdminClient({**client, "sasl.password": "nope"}).list_topics(timeout=3)
