"""Strata with its log in Google Cloud Storage (fake-gcs-server on loopback, see gcs_server.py
for what it lacks): restarts, compaction and retention, a store outage under an acks=all
producer, and start-up errors."""

import pytest

from gcs_server import fake_gcs, gcs_env, gcs_storage  # noqa: F401 (fixtures)
from store_scenarios import (COMPACTION_CONFIG, OUTAGE_CONFIG, check_compaction_and_retention,
                             check_log_survives_restarts, check_store_outage, run_standalone)


@pytest.fixture
def strata(gcs_storage, strata):
    """conftest's broker, started once gcs_storage has pointed the environment at the bucket."""
    return strata


def test_log_on_gcs_survives_restarts_and_is_read_back_through_the_caches(gcs_storage, tmp_path):
    check_log_survives_restarts(gcs_storage, tmp_path)


@pytest.mark.strata_config(COMPACTION_CONFIG)
def test_compaction_and_retention_on_gcs(gcs_storage, strata):
    check_compaction_and_retention(gcs_storage, strata)


@pytest.mark.strata_config(OUTAGE_CONFIG)
def test_gcs_outage_stalls_acks_all_producers_and_loses_nothing(gcs_storage, strata):
    check_store_outage(gcs_storage, strata)


def test_a_missing_bucket_fails_start_up_naming_the_url(fake_gcs, tmp_path):
    url = "gs://no-such-bucket/strata"
    result = run_standalone(tmp_path, url, gcs_env(fake_gcs))
    assert result.returncode != 0, result.stderr
    # fake-gcs-server answers the listing with a bare 500 (GCS itself: 404 NoSuchBucket).
    assert url in result.stderr and "500 Internal Server Error" in result.stderr, result.stderr
