"""Azure Blob Storage on loopback for the Azure tests: Azurite (npm, installed with the other
Node packages in tests/clients/js) on a free port, and the environment that points `strata`
at a container in it through object_store's emulator settings.

Import the fixtures into a test file: `from azure_server import azurite, azure_storage  # noqa: F401`.
"""

import os
import uuid
from pathlib import Path

import pytest

from emulator import BucketStorage, EmulatorProcess, serving, storage_in

AZURITE_BIN = Path(__file__).parent / "js" / "node_modules" / ".bin" / "azurite-blob"
# Azurite's well-known account and key (object_store's emulator mode uses them too).
ACCOUNT = "devstoreaccount1"
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


class Azurite(EmulatorProcess):
    """azurite-blob on 127.0.0.1, keeping blobs in memory."""

    name = "azurite"

    def command(self) -> list:
        assert AZURITE_BIN.exists(), f"{AZURITE_BIN} not found: run `npm ci` in tests/clients/js"
        return [str(AZURITE_BIN), "--blobHost", "127.0.0.1", "--blobPort", str(self.port),
                "--inMemoryPersistence", "--silent",
                # Else it reports usage to Microsoft: no traffic leaves the machine.
                "--disableTelemetry",
                # The Python SDK speaks a newer API version than Azurite knows.
                "--skipApiVersionCheck"]

    def client(self):
        from azure.storage.blob import BlobServiceClient

        return BlobServiceClient(f"{self.endpoint}/{ACCOUNT}",
                                 credential={"account_name": ACCOUNT, "account_key": ACCOUNT_KEY})

    def create_container(self) -> str:
        container = f"strata-{uuid.uuid4().hex[:12]}"
        self.client().create_container(container)
        return container

    def keys(self, container: str, prefix: str = "") -> list:
        blobs = self.client().get_container_client(container).list_blobs(name_starts_with=prefix)
        return sorted(blob.name for blob in blobs)

    def env(self) -> dict:
        """The variables that point object_store's Azure client at this server."""
        return {"AZURE_STORAGE_USE_EMULATOR": "true", "AZURITE_BLOB_STORAGE_URL": self.endpoint}


@pytest.fixture
def azurite(tmp_path):
    yield from serving(Azurite(tmp_path))


@pytest.fixture
def azure_storage(azurite, monkeypatch) -> BucketStorage:
    """A fresh container, and the environment that makes every broker started in the test
    keep its log there. Request it before `strata`."""
    yield from storage_in(azurite, "az", azurite.create_container(), azurite.env(), monkeypatch)


def azure_env(azurite: Azurite) -> dict:
    """This process's environment with only `azurite`'s Azure settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STRATA_", "AZURE_", "AZURITE_"))}
    return {**env, **azurite.env()}
