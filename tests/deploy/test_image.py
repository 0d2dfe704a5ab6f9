"""The container image: the repository's Dockerfile built with podman, offline, around the
`strata` binary in $STRATA_BIN, and that binary run from the image's own filesystem.

No base image can be pulled here, and no RUN step can run, so the Dockerfile's last stage is
built on a stand-in: an image imported from a root filesystem that holds what the stage's
RUN and COPY instructions produce (the binary, the data directory owned by the user) and
what Debian provides (the shared libraries and the dynamic loader), with the stage's other
instructions taken verbatim. How the image runs (entrypoint, command, user, working
directory, ports and stop signal) thus comes from the Dockerfile itself. Containers cannot
be started here either (the sandbox refuses the OCI runtime's setrlimit), so the tests
create one, mount its filesystem and run the entrypoint in it with chroot, as the image's
user: the container short of its namespaces.
"""

import http.client
import json
import shutil
import signal
import subprocess
import tarfile
import uuid
from pathlib import Path
from types import SimpleNamespace

import pytest

REPO = Path(__file__).resolve().parents[2]

from strata_harness import (  # noqa: E402
    TIMEOUT,
    consume_all,
    create_topic,
    free_ports,
    produce_all,
    strata_bin,
    unique_topic,
    wait_until,
)

DOCKERFILE = REPO / "Dockerfile"
# Where the Dockerfile's last stage puts the binary and the data directory.
BINARY = "/usr/local/bin/strata"
DATA_DIR = "/var/lib/strata"
# The instructions whose results the stand-in root filesystem holds instead.
FILESYSTEM_INSTRUCTIONS = ("RUN", "COPY", "ADD")


def last_stage() -> list:
    """The instructions of the Dockerfile's last stage, each on one line (continuations
    joined, comments dropped), its FROM first."""
    instructions, current = [], ""
    for line in DOCKERFILE.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            current += line[:-1]
            continue
        instructions.append(" ".join((current + line).split()))
        current = ""
    start = max(i for i, ins in enumerate(instructions) if ins.upper().startswith("FROM "))
    return instructions[start:]


def keyword(instruction: str) -> str:
    return instruction.split()[0].upper()


def stage_user() -> tuple:
    """The uid and gid of the last stage's USER instruction."""
    users = [ins.split()[1] for ins in last_stage() if keyword(ins) == "USER"]
    assert len(users) == 1, f"expected one USER instruction, found {users}"
    uid, gid = users[0].split(":")
    return int(uid), int(gid)


def shared_objects(binary: Path) -> tuple:
    """(dynamic loader, [shared libraries]) of `binary`, as paths on this machine."""
    out = subprocess.run(["ldd", str(binary)], check=True, capture_output=True, text=True).stdout
    loader, libs = None, []
    for line in out.splitlines():
        words = line.split()
        if "=>" in words:
            libs.append(words[words.index("=>") + 1])
        elif words and words[0].startswith("/"):
            loader = words[0]
    assert loader, f"no dynamic loader in the ldd output of {binary}:\n{out}"
    return loader, libs


def stand_in_root(binary: Path, tar_path: Path, uid: int, gid: int):
    """Writes to `tar_path` a root filesystem with what the last stage's RUN and COPY
    instructions and its Debian base provide: the binary, the data directory owned by the
    user, the binary's shared libraries and loader."""
    loader, libs = shared_objects(binary)
    files = {BINARY.lstrip("/"): binary}
    for path in [loader, *libs]:
        files[path.lstrip("/")] = Path(path).resolve()  # the file itself, not a link to it
    with tarfile.open(tar_path, "w") as tar:
        def add_dir(name, owner=(0, 0)):
            info = tarfile.TarInfo(name)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            info.uid, info.gid = owner
            tar.addfile(info)

        data_dir = DATA_DIR.lstrip("/")
        dirs = {str(p) for name in [*files, data_dir] for p in Path(name).parents if str(p) != "."}
        for d in sorted(dirs):
            add_dir(d)
        add_dir(data_dir, (uid, gid))
        for name, source in files.items():
            info = tar.gettarinfo(str(source), name)
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            with open(source, "rb") as f:
                tar.addfile(info, f)


@pytest.fixture(scope="module")
def container(tmp_path_factory):
    """A container of the image built from the Dockerfile's last stage on the stand-in:
    the image's config and the container's mounted filesystem. Removed afterwards."""
    binary = strata_bin()
    assert binary.exists(), f"{binary} not found: build it or set STRATA_BIN"
    work = tmp_path_factory.mktemp("image")
    # A store of its own, so the test neither sees nor leaves images in the machine's; vfs
    # works on any filesystem, nested containers included.
    podman = ["podman", "--root", str(work / "storage"), "--runroot", str(work / "run"),
              "--storage-driver", "vfs"]
    name = f"strata-test-{uuid.uuid4().hex[:12]}"
    base, image = f"localhost/{name}:base", f"localhost/{name}:image"

    def run(*args) -> str:
        result = subprocess.run([*podman, *args], capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, f"podman {' '.join(args)} failed:\n{result.stderr}"
        return result.stdout

    try:
        stand_in_root(binary, work / "root.tar", *stage_user())
        run("import", str(work / "root.tar"), base)
        context = work / "context"
        context.mkdir()
        stage = [f"FROM {base}"] + [ins for ins in last_stage()[1:]
                                    if keyword(ins) not in FILESYSTEM_INSTRUCTIONS]
        (context / "Containerfile").write_text("\n".join(stage) + "\n")
        run("build", "--pull=never", "--network=none", "-t", image, str(context))
        config = json.loads(run("image", "inspect", image))[0]["Config"]
        run("create", "--network=none", "--name", name, image)
        root = Path(run("mount", name).strip())
        yield SimpleNamespace(config=config, root=root)
    finally:
        subprocess.run([*podman, "rm", "--force", name], capture_output=True)
        subprocess.run([*podman, "rmi", "--force", image, base], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)


def in_container(container, *args) -> list:
    """The command that runs the image's entrypoint with `args` in the container's
    filesystem, as the image's user."""
    return ["chroot", f"--userspec={container.config['User']}", str(container.root),
            *container.config["Entrypoint"], *args]


def with_flags(cmd: list, values: dict) -> list:
    """`cmd` with the values of these flags replaced; each flag must be in it."""
    cmd = list(cmd)
    for name, value in values.items():
        assert name in cmd, f"{name} is not in the image's command {cmd}"
        cmd[cmd.index(name) + 1] = value
    return cmd


def flag(cmd: list, name: str) -> str:
    assert name in cmd, f"{name} is not in the image's command {cmd}"
    return cmd[cmd.index(name) + 1]


def test_runs_strata_itself_as_pid_1(container):
    """The entrypoint is the binary the stage copies in, in exec form (no shell in between to
    swallow the stop signal); the stop signal is SIGTERM, on which a gateway drains; the
    default command is a standalone broker."""
    config = container.config
    assert config["Entrypoint"] == [BINARY]
    copies = [ins for ins in last_stage() if keyword(ins) == "COPY"]
    assert any(ins.split()[-1] == BINARY for ins in copies), f"no COPY to {BINARY}: {copies}"
    with open(container.root / BINARY.lstrip("/"), "rb") as f:
        assert f.read(4) == b"\x7fELF", "the entrypoint is not an executable"
    assert config["StopSignal"] == "SIGTERM"
    assert config["Cmd"][0] == "standalone"


def test_runs_as_a_fixed_non_root_user_in_its_data_dir(container):
    """The image runs as a fixed non-root uid:gid, in the data directory the default command
    uses, and the stage's RUN creates that user and gives it that directory."""
    uid, gid = (int(n) for n in container.config["User"].split(":"))
    assert uid != 0 and gid != 0
    assert container.config["WorkingDir"] == DATA_DIR
    assert flag(container.config["Cmd"], "--data-dir") == DATA_DIR
    runs = " ".join(ins for ins in last_stage() if keyword(ins) == "RUN")
    assert f"useradd --uid {uid} --gid {gid}" in runs, f"the stage creates another user: {runs}"
    assert f"install -d -o {uid} -g {gid} {DATA_DIR}" in runs, \
        f"the stage does not give the user {DATA_DIR}: {runs}"


def test_exposes_the_ports_the_default_command_listens_on(container):
    """The exposed ports are the Kafka listener's and the HTTP server's, both bound on every
    interface, as a container's must be to be reached through a published port."""
    cmd = container.config["Cmd"]
    assert set(container.config["ExposedPorts"]) == {"9092/tcp", "9644/tcp"}
    assert flag(cmd, "--listen") == "0.0.0.0:9092"
    assert flag(cmd, "--http") == "0.0.0.0:9644"


def test_binary_starts_in_the_container(container):
    """The entrypoint starts in the container's filesystem alone, on its loader and
    libraries, as the image's user, and knows the three commands."""
    result = subprocess.run(in_container(container, "--help"), capture_output=True, text=True,
                            timeout=TIMEOUT)
    assert result.returncode == 0, result.stderr
    for command in ("standalone", "gateway", "coordinator"):
        assert command in result.stdout


def get(address: str, path: str) -> tuple:
    conn = http.client.HTTPConnection(address, timeout=2)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


def test_default_command_serves_kafka_and_exits_cleanly_on_sigterm(container, tmp_path):
    """The image's default command, moved to loopback ports, runs a standalone broker as the
    image's user in its data directory, that takes and serves records and exits 0 on the
    image's stop signal, leaving its files, owned by that user, in the data directory."""
    kafka_port, http_port = free_ports(2)
    bootstrap, http_address = f"127.0.0.1:{kafka_port}", f"127.0.0.1:{http_port}"
    cmd = with_flags(container.config["Cmd"], {"--listen": bootstrap, "--http": http_address})
    data_dir = container.root / flag(cmd, "--data-dir").lstrip("/")
    log_path = tmp_path / "strata.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(in_container(container, *cmd), stdin=subprocess.DEVNULL,
                                stdout=log, stderr=subprocess.STDOUT)
    try:
        def healthy():
            assert proc.poll() is None, f"strata exited with {proc.returncode}"
            try:
                return get(http_address, "/healthz") == (200, "ok\n")
            except OSError:
                return False

        wait_until(healthy, f"GET http://{http_address}/healthz == 200")

        topic = unique_topic("image")
        create_topic(bootstrap, topic)
        values = [f"record-{i}".encode() for i in range(5)]
        produce_all(bootstrap, topic, values)
        assert [m.value() for m in consume_all(bootstrap, topic)] == values

        proc.send_signal(getattr(signal, container.config["StopSignal"]))
        assert proc.wait(timeout=TIMEOUT) == 0
        uid, gid = (int(n) for n in container.config["User"].split(":"))
        written = list(data_dir.iterdir())
        assert written and all((f.stat().st_uid, f.stat().st_gid) == (uid, gid) for f in written)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        print(log_path.read_text(errors="replace"))
