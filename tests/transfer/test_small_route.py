"""The small-file route (mdl/transfer/small.py): a fresh file of pinned size under 1 MiB with a
hash is one GET read into memory, checked there, written and renamed. Each failure gives the
documented exit code and one line, and leaves neither the file nor a ``.part`` behind.

The servers are real loopback ones: the Hub and its CDN (tests/servers.py) for what a pull of a
repo's small files meets, and `FramedServer` (tests/hostile.py) for answers no honest server sends:
a chunked body longer than the file, a body whose Content-Length names another size.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from hostile import Answer, FramedServer, Phase, Policy, ScriptedServer, Seen, chunked
from runfixtures import HANG, mdl, use_catalog, wait_for
from servers import Fault, HubServer, make_data
from zygote import forked_mdl

from mdl.errors import ExitCode
from mdl.store.store import Store

KiB = 1 << 10
PATH = "/f.json"
DATA = make_data(24 * KiB, seed=7901)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def framed() -> Iterator[list[ScriptedServer]]:
    servers: list[ScriptedServer] = []
    yield servers
    for server in servers:
        server.stop()
    for server in servers:
        assert not server.errors, server.errors


def serve(started: list[ScriptedServer], policy: Policy | None = None) -> ScriptedServer:
    server = FramedServer({PATH: [Phase(DATA, etag='"v1"')]}, policy=policy).start()
    started.append(server)
    return server


def pinned(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    url: str,
    *,
    size: int = len(DATA),
    sha256: str = sha(DATA),
) -> Path:
    """A catalog pinning one file (``url``, its size and sha256) as model ``one``; its folder."""
    use_catalog(
        tmp_path,
        monkeypatch,
        f'[models.one]\nfiles = [{{ url = "{url}", sha256 = "{sha256}", size = {size} }}]\n',
    )
    return tmp_path / "models"


def debris(dest: Path) -> list[str]:
    """What a failed fetch left: the file, its ``.part``, its resume record."""
    left = [p.name for p in (dest / ".mdl" / "partial").rglob("*") if p.is_file()]
    return left + [p.name for p in (dest / "one").glob("*")]


def test_a_repo_of_small_files_is_fetched_whole_and_leaves_nothing(
    hub: HubServer, catalog: Path, tmp_path: Path
) -> None:
    """Git files (checked by their blob id) and a small LFS file (sha256, through the CDN): each
    one GET, asking no range, and nothing under .mdl/partial after."""
    files = {
        "config.json": b'{"hidden_size": 8}',
        "tokenizer.json": make_data(40 * KiB, seed=7902),
        "model.safetensors": make_data(300 * KiB, seed=7903),
    }
    hub.add_repo("org/one", files)
    catalog.write_text('[models.one]\nrepo = "org/one"\n')
    dest = tmp_path / "models"
    result = mdl("pull", "one", "--dest", str(dest))
    assert result.exit_code == 0, result.stderr
    for name, data in files.items():
        assert (dest / "one" / name).read_bytes() == data
    assert [p for p in (dest / ".mdl" / "partial").rglob("*") if p.is_file()] == []
    blob_gets = hub.cdn.log.records(method="GET", path_prefix="/blobs/")
    assert len(blob_gets) == 1 and blob_gets[0].range is None
    # a second run finds every file in place: nothing fetched
    again = mdl("pull", "one", "--dest", str(dest))
    assert again.exit_code == 0, again.stderr
    assert len(hub.cdn.log.records(method="GET", path_prefix="/blobs/")) == 1


def test_a_wrong_sha256_is_exit_6_naming_both_and_leaves_nothing(
    framed: list[ScriptedServer], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = serve(framed)
    wrong = sha(b"another file")
    dest = pinned(tmp_path, monkeypatch, server.url + PATH, sha256=wrong)
    result = mdl("pull", "one")
    assert result.exit_code == ExitCode.INTEGRITY, result.stderr
    assert f"sha256 mismatch: expected {wrong}, got {sha(DATA)}" in result.stderr
    assert "Traceback" not in result.stderr
    assert debris(dest) == []
    assert len([s for s in server.requests if s.method == "GET"]) == 1  # a fresh answer: no retry


def test_a_size_the_server_contradicts_is_exit_6_before_the_body_is_read(
    framed: list[ScriptedServer], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = serve(framed)
    dest = pinned(tmp_path, monkeypatch, server.url + PATH, size=len(DATA) - 1)
    result = mdl("pull", "one")
    assert result.exit_code == ExitCode.INTEGRITY, result.stderr
    said = f"size mismatch: expected {len(DATA) - 1} bytes, got {len(DATA)} bytes (server)"
    assert said in result.stderr and "Traceback" not in result.stderr
    assert debris(dest) == []


@pytest.mark.parametrize("extra", [1, 100 * KiB], ids=["one-byte", "100KiB"])
def test_a_chunked_body_longer_than_the_file_is_refused_at_its_extra_byte(
    framed: list[ScriptedServer], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, extra: int
) -> None:
    """No length in the headers: the read stops one byte past the pinned size (a bounded read),
    exit 6, nothing kept."""

    def policy(index: int, seen: Seen, server: ScriptedServer) -> Answer | None:
        return chunked(server.reply(seen), extra=b"X" * extra)

    server = serve(framed, policy)
    dest = pinned(tmp_path, monkeypatch, server.url + PATH)
    result = mdl("pull", "one")
    assert result.exit_code == ExitCode.INTEGRITY, result.stderr
    assert f"size mismatch: expected {len(DATA)} bytes, got more than" in result.stderr
    assert "Traceback" not in result.stderr
    assert debris(dest) == []


def test_a_short_body_is_retried_and_then_fetched_whole(
    framed: list[ScriptedServer], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A body cut short (its Content-Length says more) is a lost connection: asked again."""

    def policy(index: int, seen: Seen, server: ScriptedServer) -> Answer | None:
        answer = server.reply(seen)
        whole = {**answer.headers, "Content-Length": str(len(DATA))}
        if index == 0:
            return Answer(answer.status, whole, answer.body[:1000], close=True)
        return answer

    server = serve(framed, policy)
    dest = pinned(tmp_path, monkeypatch, server.url + PATH)
    result = mdl("pull", "one", env={"MDL_RETRIES": "2"})
    assert result.exit_code == 0, result.stderr
    assert (dest / "one" / "f.json").read_bytes() == DATA
    assert len([s for s in server.requests if s.method == "GET"]) == 2


@pytest.mark.parametrize(
    ("status", "code", "tries"),
    [(503, ExitCode.NETWORK, 3), (404, ExitCode.NOT_FOUND, 1), (401, ExitCode.AUTH, 1)],
)
def test_a_server_error_gives_its_exit_code_after_the_retries_it_deserves(
    hub: HubServer, catalog: Path, tmp_path: Path, status: int, code: int, tries: int
) -> None:
    hub.add_repo("org/one", {"model.safetensors": make_data(64 * KiB, seed=7904)})
    hub.cdn.faults.add(
        Fault.http_error(status, "shard on fire", retry_after=0, path_prefix="/blobs/", times=None)
    )
    catalog.write_text('[models.one]\nrepo = "org/one"\n')
    dest = tmp_path / "models"
    result = mdl("pull", "one", "--dest", str(dest), env={"MDL_RETRIES": "2"})
    assert result.exit_code == code, result.stderr
    assert "Traceback" not in result.stderr
    assert len(hub.cdn.log.records(method="GET", path_prefix="/blobs/")) == tries
    assert not (dest / "one" / "model.safetensors").exists()
    assert [p for p in (dest / ".mdl" / "partial").rglob("*") if p.is_file()] == []


def test_a_cut_body_leaves_nothing_to_resume(
    framed: list[ScriptedServer], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Out of retries mid-body: exit 5 and nothing on disk (the body was in memory only)."""

    def policy(index: int, seen: Seen, server: ScriptedServer) -> Answer | None:
        answer = server.reply(seen)
        whole = {**answer.headers, "Content-Length": str(len(DATA))}
        return Answer(answer.status, whole, answer.body[: len(DATA) // 2], close=True)

    server = serve(framed, policy)
    dest = pinned(tmp_path, monkeypatch, server.url + PATH)
    result = mdl("pull", "one", env={"MDL_RETRIES": "0"})
    assert result.exit_code == ExitCode.NETWORK, result.stderr
    assert "Traceback" not in result.stderr
    assert debris(dest) == []


def test_a_partial_without_its_record_is_replaced_whole(
    framed: list[ScriptedServer], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A killed run's ``.part`` with no resume record (all a small file's route could leave) is
    planned as a download: written over through the same checks (an entry mdl made), the file
    whole and verified, nothing left."""
    server = serve(framed)
    dest = pinned(tmp_path, monkeypatch, server.url + PATH)
    part, _ = Store(dest).part_paths("one", "f.json")
    part.parent.mkdir(parents=True)
    part.write_bytes(DATA[: len(DATA) // 2])
    result = mdl("pull", "one")
    assert result.exit_code == 0, result.stderr
    assert (dest / "one" / "f.json").read_bytes() == DATA
    assert debris(dest) == ["f.json"]


def test_sigterm_mid_body_is_exit_130_and_leaves_nothing_half_written(
    hub: HubServer, catalog: Path, tmp_path: Path
) -> None:
    """A pull stopped while a small file's body is on its way: exit 130, no file in place and no
    ``.part`` (its bytes were only in memory); the next run fetches it whole."""
    data = make_data(200 * KiB, seed=7905)
    hub.add_repo("org/one", {"model.safetensors": data})
    catalog.write_text('[models.one]\nrepo = "org/one"\n')
    dest = tmp_path / "models"
    gate = threading.Event()
    stall = hub.cdn.faults.add(
        Fault.stall(after_bytes=50 * KiB, until=gate, path_prefix="/blobs/", times=None)
    )
    proc = subprocess.Popen(
        [forked_mdl(), "pull", "one", "--dest", str(dest), "--no-progress"],
        env=dict(os.environ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        wait_for(lambda: stall.hits > 0 or proc.poll() is not None, what="the stalled body")
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=HANG)
    finally:
        hub.cdn.faults.clear()
        gate.set()
    assert proc.returncode == 130, err.decode()
    assert "Traceback" not in err.decode()
    assert not (dest / "one" / "model.safetensors").exists()
    assert [p for p in (dest / ".mdl" / "partial").rglob("*") if p.is_file()] == []
    again = mdl("pull", "one", "--dest", str(dest))
    assert again.exit_code == 0, again.stderr
    assert (dest / "one" / "model.safetensors").read_bytes() == data
