"""A real S3 server on loopback for the S3 tests: moto_server (PyPI moto[server]) on a free
port, and the environment that points `strata` at a bucket in it.

Import the fixtures into a test file: `from s3_server import moto, s3_storage  # noqa: F401`.
"""

import http.client
import os
import shutil
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from strata_harness import TIMEOUT, free_ports, wait_until

REGION = "us-east-1"
# moto accepts any credentials; object_store and boto3 need some.
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "strata-test", "AWS_SECRET_ACCESS_KEY": "strata-test-secret"}
# The AWS settings `strata` reads from its environment.
AWS_ENV = {**CREDENTIALS, "AWS_REGION": REGION}


def moto_server_bin() -> str:
    """moto_server next to this interpreter (the .venv), else on PATH."""
    beside = Path(sys.executable).parent / "moto_server"
    found = str(beside) if beside.exists() else shutil.which("moto_server")
    assert found, "moto_server not found: pip install -r tests/clients/requirements.txt"
    return found


class MotoServer:
    """moto_server on 127.0.0.1. It keeps objects in memory, so an outage is simulated by
    pausing the process (SIGSTOP/SIGCONT): connections are accepted by the kernel, but
    nothing answers."""

    def __init__(self, workdir: Path):
        (self.port,) = free_ports(1)
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.log_file = workdir / "moto.log"
        self.proc = None
        self.paused = False

    def start(self):
        with open(self.log_file, "ab") as log:
            self.proc = subprocess.Popen(
                [moto_server_bin(), "-H", "127.0.0.1", "-p", str(self.port)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        wait_until(self._ready, f"moto_server on {self.endpoint}")

    def _ready(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"moto_server exited with {self.proc.returncode}\n{self.log()}")
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=1)
        try:
            conn.request("GET", "/")
            return conn.getresponse().status == 200
        except OSError:
            return False
        finally:
            conn.close()

    def pause(self):
        self.proc.send_signal(signal.SIGSTOP)
        self.paused = True

    def resume(self):
        self.proc.send_signal(signal.SIGCONT)
        self.paused = False

    def stop(self):
        if self.proc is None or self.proc.poll() is not None:
            return
        if self.paused:
            self.resume()
        self.proc.terminate()
        try:
            self.proc.wait(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, region_name=REGION,
                            aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
                            aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"])

    def create_bucket(self) -> str:
        bucket = f"strata-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=bucket)
        return bucket

    def keys(self, bucket: str, prefix: str = "") -> list:
        """Every key in `bucket` under `prefix`, sorted."""
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return sorted(obj["Key"] for page in pages for obj in page.get("Contents", []))

    def log(self, tail: int = 50) -> str:
        lines = self.log_file.read_text(errors="replace").splitlines() if self.log_file.exists() else []
        return "--- moto log ---\n" + "\n".join(lines[-tail:]) + "\n--- end of moto log ---"


class S3Storage:
    """Where a broker's log lives: a bucket of `server` and a key prefix in it."""

    def __init__(self, server: MotoServer, bucket: str, prefix: str):
        self.server = server
        self.bucket = bucket
        self.prefix = prefix
        self.url = f"s3://{bucket}/{prefix}"

    def keys(self, under: str = "") -> list:
        """Keys of the broker's objects (without the prefix), e.g. "flush/0/....flush"."""
        return [k[len(self.prefix) + 1:] for k in self.server.keys(self.bucket, f"{self.prefix}/{under}")]


@pytest.fixture
def moto(tmp_path):
    server = MotoServer(tmp_path)
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture
def s3_storage(moto, monkeypatch) -> S3Storage:
    """A fresh bucket, and the environment (flags as STRATA_* variables) that makes every
    broker started in the test keep its log there. Request it before `strata`."""
    storage = S3Storage(moto, moto.create_bucket(), "cluster-1")
    env = {
        **AWS_ENV,
        "STRATA_STORAGE": storage.url,
        "STRATA_S3_ENDPOINT": moto.endpoint,
        "STRATA_S3_ALLOW_HTTP": "true",
        "STRATA_S3_PATH_STYLE": "true",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    yield storage
    # Shown when the test fails, with the broker log.
    print(moto.log())


def metrics(http_address: str) -> dict:
    """The broker's /metrics as {'name{labels}': value}."""
    conn = http.client.HTTPConnection(http_address, timeout=5)
    try:
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode()
    finally:
        conn.close()
    series = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            series[name] = float(value)
    return series


def aws_env() -> dict:
    """This process's environment with AWS_ENV for its STRATA_* and AWS_* settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STRATA_", "AWS_"))}
    return {**env, **AWS_ENV}
