"""A real S3 server on loopback for the S3 tests: moto_server (PyPI moto[server]) on a free
port, and the environment that points `strata` at a bucket in it.

Import the fixtures into a test file: `from s3_server import moto, s3_storage  # noqa: F401`.
"""

import os
import shutil
import sys
import uuid
from pathlib import Path

import pytest

from emulator import BucketStorage, EmulatorProcess, serving, storage_in

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


class MotoServer(EmulatorProcess):
    """moto_server on 127.0.0.1; it keeps objects in memory."""

    name = "moto"

    def command(self) -> list:
        return [moto_server_bin(), "-H", "127.0.0.1", "-p", str(self.port)]

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
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return sorted(obj["Key"] for page in pages for obj in page.get("Contents", []))


@pytest.fixture
def moto(tmp_path):
    yield from serving(MotoServer(tmp_path))


@pytest.fixture
def s3_storage(moto, monkeypatch) -> BucketStorage:
    """A fresh bucket, and the environment (flags as STRATA_* variables) that makes every
    broker started in the test keep its log there. Request it before `strata`."""
    env = {
        **AWS_ENV,
        "STRATA_S3_ENDPOINT": moto.endpoint,
        "STRATA_S3_ALLOW_HTTP": "true",
        "STRATA_S3_PATH_STYLE": "true",
    }
    yield from storage_in(moto, "s3", moto.create_bucket(), env, monkeypatch)


def aws_env() -> dict:
    """This process's environment with AWS_ENV for its STRATA_* and AWS_* settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STRATA_", "AWS_"))}
    return {**env, **AWS_ENV}
