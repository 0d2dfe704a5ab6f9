"""Strata with its log in a real S3 server (moto on loopback): restarts, compaction and
retention, a store outage under an acks=all producer, and start-up errors."""

import pytest

from s3_server import aws_env, moto, s3_storage  # noqa: F401 (fixtures)
from store_scenarios import (COMPACTION_CONFIG, OUTAGE_CONFIG, check_compaction_and_retention,
                             check_log_survives_restarts, check_store_outage, run_standalone)
from strata_harness import free_ports


@pytest.fixture
def strata(s3_storage, strata):
    """conftest's broker, started once s3_storage has pointed the environment at the bucket."""
    return strata


def test_log_on_s3_survives_restarts_and_is_read_back_through_the_caches(s3_storage, tmp_path):
    check_log_survives_restarts(s3_storage, tmp_path)


@pytest.mark.strata_config(COMPACTION_CONFIG)
def test_compaction_and_retention_on_s3(s3_storage, strata):
    check_compaction_and_retention(s3_storage, strata)


@pytest.mark.strata_config(OUTAGE_CONFIG)
def test_store_outage_stalls_acks_all_producers_and_loses_nothing(s3_storage, strata):
    check_store_outage(s3_storage, strata)


def run_on_s3(tmp_path, url: str, endpoint: str):
    return run_standalone(tmp_path, url, aws_env(), "--s3-endpoint", endpoint, "--s3-allow-http",
                          "--s3-path-style")


def test_a_missing_bucket_fails_start_up_naming_the_url(moto, tmp_path):
    url = "s3://no-such-bucket/strata"
    result = run_on_s3(tmp_path, url, moto.endpoint)
    assert result.returncode != 0, result.stderr
    assert url in result.stderr and "NoSuchBucket" in result.stderr, result.stderr


def test_a_wrong_endpoint_fails_start_up_naming_the_url(tmp_path):
    (unused_port,) = free_ports(1)
    url = "s3://bucket/strata"
    result = run_on_s3(tmp_path, url, f"http://127.0.0.1:{unused_port}")
    assert result.returncode != 0, result.stderr
    assert url in result.stderr and "error sending request" in result.stderr, result.stderr
