"""Strata with its log in Azure Blob Storage (Azurite on loopback): restarts, compaction and
retention, a store outage under an acks=all producer, and start-up errors."""

import pytest
from azure.core.exceptions import ResourceExistsError

from azure_server import azure_env, azure_storage, azurite  # noqa: F401 (fixtures)
from store_scenarios import (COMPACTION_CONFIG, OUTAGE_CONFIG, check_compaction_and_retention,
                             check_log_survives_restarts, check_store_outage, run_standalone)


@pytest.fixture
def strata(azure_storage, strata):
    """conftest's broker, started once azure_storage has pointed the environment at the container."""
    return strata


def test_log_on_azure_survives_restarts_and_is_read_back_through_the_caches(azure_storage, tmp_path):
    check_log_survives_restarts(azure_storage, tmp_path)


@pytest.mark.strata_config(COMPACTION_CONFIG)
def test_compaction_and_retention_on_azure(azure_storage, strata):
    check_compaction_and_retention(azure_storage, strata)


@pytest.mark.strata_config(OUTAGE_CONFIG)
def test_azure_outage_stalls_acks_all_producers_and_loses_nothing(azure_storage, strata):
    check_store_outage(azure_storage, strata)


def test_a_missing_container_fails_start_up_naming_the_url(azurite, tmp_path):
    url = "az://no-such-container/strata"
    result = run_standalone(tmp_path, url, azure_env(azurite))
    assert result.returncode != 0, result.stderr
    assert url in result.stderr and "ContainerNotFound" in result.stderr, result.stderr


def test_azurite_refuses_to_create_a_blob_twice(azurite):
    """Conditional create (If-None-Match: *, object_store's PutMode::Create) holds in Azurite:
    the second create fails and the first blob stays."""
    container = azurite.client().get_container_client(azurite.create_container())
    blob = container.get_blob_client("strata/once")
    blob.upload_blob(b"first", overwrite=False)
    with pytest.raises(ResourceExistsError) as refused:
        blob.upload_blob(b"second", overwrite=False)
    assert refused.value.error_code == "BlobAlreadyExists"
    assert blob.download_blob().readall() == b"first"
