"""What the object store tests share: an emulator process on a free loopback port, a bucket
prefix in it where a broker keeps its log, and the broker's metrics.

The per-store modules (s3_server.py, gcs_server.py, azure_server.py) build on these.
"""

import http.client
import signal
import subprocess
from pathlib import Path

from strata_harness import TIMEOUT, free_ports, wait_until


class EmulatorProcess:
    """A server process on 127.0.0.1:`port`, logging to `name`.log in `workdir`. An outage is
    simulated by pausing it (SIGSTOP/SIGCONT): the kernel still accepts connections, but
    nothing answers."""

    name = "emulator"

    def __init__(self, workdir: Path):
        (self.port,) = free_ports(1)
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.workdir = workdir
        self.log_file = workdir / f"{self.name}.log"
        self.proc = None
        self.paused = False

    def command(self) -> list:
        raise NotImplementedError

    def start(self):
        with open(self.log_file, "ab") as log:
            # In `workdir`: whatever files it leaves go with the test's temporary directory.
            self.proc = subprocess.Popen(self.command(), cwd=self.workdir, stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=subprocess.STDOUT)
        wait_until(self._ready, f"{self.name} on {self.endpoint}")

    def _ready(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"{self.name} exited with {self.proc.returncode}\n{self.log()}")
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=1)
        try:
            # Any answer will do: some of them refuse requests without credentials.
            conn.request("GET", "/")
            conn.getresponse()
            return True
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

    def keys(self, bucket: str, prefix: str = "") -> list:
        """Every key in `bucket` under `prefix`, sorted."""
        raise NotImplementedError

    def log(self, tail: int = 50) -> str:
        lines = self.log_file.read_text(errors="replace").splitlines() if self.log_file.exists() else []
        return f"--- {self.name} log ---\n" + "\n".join(lines[-tail:]) + f"\n--- end of {self.name} log ---"


class BucketStorage:
    """Where a broker's log lives: a bucket (or container) of `server` and a key prefix in it."""

    def __init__(self, server: EmulatorProcess, scheme: str, bucket: str, prefix: str):
        self.server = server
        self.bucket = bucket
        self.prefix = prefix
        self.url = f"{scheme}://{bucket}/{prefix}"

    def keys(self, under: str = "") -> list:
        """Keys of the broker's objects (without the prefix), e.g. "flush/0/....flush"."""
        return [k[len(self.prefix) + 1:] for k in self.server.keys(self.bucket, f"{self.prefix}/{under}")]

    def all_keys(self) -> list:
        """Every key in the bucket, the prefix included."""
        return self.server.keys(self.bucket)


def serving(server: EmulatorProcess):
    """A server fixture's body (`yield from serving(...)`): the server, started, and stopped
    after the test."""
    try:
        server.start()
        yield server
    finally:
        server.stop()


def storage_in(server: EmulatorProcess, scheme: str, bucket: str, env: dict, monkeypatch):
    """A storage fixture's body (`yield from storage_in(...)`): prefix "cluster-1" of `bucket`,
    and the environment (`env` and STRATA_STORAGE) that makes every broker started in the test
    keep its log there."""
    storage = BucketStorage(server, scheme, bucket, "cluster-1")
    for name, value in {**env, "STRATA_STORAGE": storage.url}.items():
        monkeypatch.setenv(name, value)
    yield storage
    # Shown when the test fails, with the broker log.
    print(server.log())


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
