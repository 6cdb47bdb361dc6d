"""Hostile reviews of the Xet path: what a hostile CAS, a hostile disk or an impatient user does to
a Xet pull, and what the plain path does that the Xet path must do too."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
import time
from itertools import pairwise
from pathlib import Path

import httpx2
import pytest
from pytest_httpx2 import HTTPXMock
from runfixtures import HANG, mdl, mdl_as_child, use_catalog, wait_for
from servers import TOKEN, Fault, make_data
from signkeys import key_pair, official_sign, write_files
from xetserver import XetHubServer, bearer
from zygote import forked_mdl, shared

from mdl.progress import Progress
from mdl.redact import Secrets
from mdl.sources.resolve import XetRef
from mdl.store.filesystem import DirSyncs
from mdl.transfer.http import Credentials, RetryPolicy, make_client
from mdl.xet import _partial as xet_partial
from mdl.xet._hashing import chunk_hash
from mdl.xet._reuse import ReuseIndex, Written
from mdl.xet.failures import XetFallback
from mdl.xet.fetch import XetSource

WEIGHTS = "model.safetensors"


@pytest.fixture
def catalog(xet_hub: XetHubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = use_catalog(tmp_path, monkeypatch, '[models.m]\nrepo = "org/m"\n', endpoint=xet_hub.url)
    monkeypatch.setenv("MDL_LOG_LEVEL", "debug")
    return path


def _installed(catalog: Path) -> Path:
    return catalog.parent / "models" / "m" / WEIGHTS


def _events(stderr: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]


def test_hf_cache_layout_pulls_by_chunk_and_links_the_snapshot(
    xet_hub: XetHubServer, catalog: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    data = make_data(2 << 20, seed=101)
    xet_hub.add_repo("org/m", {WEIGHTS: data})
    result = mdl("pull", "m", "--layout", "hf-cache")
    assert result.exit_code == 0, result.stderr
    assert "Traceback" not in result.stderr
    (snap,) = (tmp_path / "hf-cache").rglob(f"snapshots/*/{WEIGHTS}")
    assert snap.read_bytes() == data
    assert xet_hub.cas.xorb_bytes() > 0


@pytest.mark.slow
def test_limit_rate_holds_for_xorb_streams(xet_hub: XetHubServer, catalog: Path) -> None:
    data = make_data(1 << 20, seed=102)
    xet_hub.add_repo("org/m", {WEIGHTS: data}, scheme="none")
    began = time.monotonic()
    result = mdl("pull", "m", "--limit-rate", "400K")
    assert result.exit_code == 0, result.stderr
    assert xet_hub.cas.xorb_bytes() > 0
    assert time.monotonic() - began >= 1.5  # 1 MiB at 400 KB/s: well over two seconds


@pytest.mark.slow
def test_progress_bytes_add_up_after_a_stream_is_retried(
    xet_hub: XetHubServer, catalog: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two terms of one xorb range (one fetch): the first is done when the stream stalls; the retry
    must not count its bytes again."""
    part, other = make_data(1 << 20, seed=110), make_data(256 << 10, seed=111)
    xet_hub.add_repo("org/parts", {"a.safetensors": part}, scheme="none")
    whole = part[:600_000] + other + part
    xet_hub.add_repo("org/m", {WEIGHTS: whole}, scheme="none")
    xf = xet_hub.xet_file("org/m", WEIGHTS)
    # overlapping: one fetch
    assert xf.terms[0].xorb == xf.terms[-1].xorb and xf.terms[0].end > xf.terms[-1].start
    xet_hub.cas.v2_status = 404  # v1 merges overlapping ranges into one URL
    xet_hub.cas.stall_xorbs(after_bytes=xf.terms[0].length + 50_000, seconds=None, times=1)
    result = mdl("pull", "m", "--progress", "json", "--stall-timeout", "1", "--connections", "1")
    assert result.exit_code == 0, result.stderr
    assert _installed(catalog).read_bytes() == whole
    events = [e for e in _events(result.stderr) if e.get("path") == WEIGHTS]
    finish = [e for e in events if e["event"] == "finish"]
    assert finish and finish[-1]["bytes"] == len(whole), finish
    for event in events:
        if event["event"] == "progress":
            assert 0 <= int(event["bytes"]) <= len(whole), event  # type: ignore[call-overload]


def test_a_xorb_url_on_the_hub_origin_gets_no_hub_token(
    xet_hub: XetHubServer, catalog: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    data = make_data(1 << 20, seed=103)
    xet_hub.add_repo("org/m", {WEIGHTS: data})
    cas_url, hub_url = xet_hub.cas.url, xet_hub.url

    def to_hub(_version: int, reply: dict[str, object]) -> bytes:
        return json.dumps(reply).replace(cas_url, hub_url).encode()

    xet_hub.cas.rewrite = to_hub
    result = mdl("pull", "m")
    assert result.exit_code == 0, result.stderr
    assert _installed(catalog).read_bytes() == data
    xorb_asks = [r for r in xet_hub.log.records() if r.url_path.startswith("/xorb/")]
    assert xorb_asks and all(bearer(r) is None for r in xorb_asks)


def test_get_of_a_single_xet_file(xet_hub: XetHubServer, catalog: Path, tmp_path: Path) -> None:
    data = make_data(1 << 20, seed=104)
    xet_hub.add_repo("org/m", {WEIGHTS: data})
    out = tmp_path / "got"
    result = mdl("get", f"hf://org/m/{WEIGHTS}", "-o", str(out))
    assert result.exit_code == 0, result.stderr
    found = out / WEIGHTS if out.is_dir() else out
    assert found.read_bytes() == data
    assert xet_hub.cas.xorb_bytes() > 0  # by chunk
    # a chunk record only a model's record would ever read
    assert not (found.parent / ".mdl" / "xet").exists()


def test_dry_run_touches_no_cas(xet_hub: XetHubServer, catalog: Path) -> None:
    xet_hub.add_repo("org/m", {WEIGHTS: make_data(1 << 20, seed=105)})
    result = mdl("pull", "m", "--dry-run")
    assert result.exit_code == 0, result.stderr
    assert xet_hub.cas.log.records() == []
    assert not _installed(catalog).exists()


def test_the_record_of_a_xet_pull_is_the_plain_path_s(xet_hub: XetHubServer, catalog: Path) -> None:
    """Every field but how the bytes came (fetched, reused, when, the Xet hash a fetch by chunk
    checked: a plain fetch checks none, so records none) and the resolve answer's ETag, which a
    Xet pull never asks for (the sha256 decides for such a file, never the ETag)."""
    xet_hub.add_repo("org/m", {WEIGHTS: make_data(1 << 20, seed=106)})
    record = catalog.parent / "models" / ".mdl" / "records" / "m.json"
    assert mdl("pull", "m").exit_code == 0
    by_chunk = json.loads(record.read_text())["files"][WEIGHTS]
    assert mdl("pull", "m", "--no-xet", "--force").exit_code == 0
    plain = json.loads(record.read_text())["files"][WEIGHTS]
    assert xet_hub.cas.xorb_bytes() > 0 and by_chunk["fetched"] != plain["fetched"]
    skip = {"fetched", "reused", "fetched_at", "mtime_ns", "etag", "xet", "xet_checked"}
    # the Hub's word alone binds nothing
    assert plain.get("xet") is None and plain["xet_checked"] is False
    assert {k: v for k, v in by_chunk.items() if k not in skip} == {
        k: v for k, v in plain.items() if k not in skip
    }
    assert (
        by_chunk["verified"] is True and by_chunk["xet"] == xet_hub.xet_file("org/m", WEIGHTS).hash
    )
    assert by_chunk["xet_checked"] is True


# --- Ctrl-C mid-pull, then the plain path or a CAS that is down: the Xet partial never confuses the
# plain engine ----


def _interrupted(
    tmp_path: Path, hub: XetHubServer, *, seed: int, plain: bool = False, real: bool = False
) -> tuple[dict[str, str], bytes]:
    """``mdl pull m`` stopped by SIGINT once some of the file is on disk: exit 130, the partial
    kept. ``real``: a child process and its Ctrl-C (the one test whose proof is the signal's);
    else in this process (the partial it leaves is the proof), its main thread sent the SIGINT.
    """
    parts = [make_data(512 << 10, seed=seed + i) for i in range(6)]
    whole = b"".join(parts)
    hub.add_repo("org/parts", {f"p{i}.safetensors": p for i, p in enumerate(parts)}, scheme="none")
    hub.add_repo("org/m", {WEIGHTS: whole}, scheme="none")
    # The file's answer after its first MiB, and every xorb after the first two, held until the
    # SIGINT was sent: the pull is mid-way then, however slow the test's look at the record (at
    # 1 MiB/s alone the pull was sometimes done before its SIGINT).
    hub.cas.throttle_bps = hub.cdn.throttle_bps = 256 << 10
    sent = threading.Event()
    hub.cdn.faults.add(Fault.stall(1 << 20, until=sent, resume=True, times=None))
    hub.cas.faults.add(
        Fault.stall(until=sent, resume=True, path_prefix="/xorb/", skip=2, times=None)
    )
    (tmp_path / "catalog.toml").write_text('[models.m]\nrepo = "org/m"\n')
    env = {
        **os.environ,
        "HF_ENDPOINT": hub.url,
        "MDL_CATALOG": str(tmp_path / "catalog.toml"),
        "MDL_DEST": str(tmp_path / "models"),
        "MDL_LOG_FILE": str(tmp_path / "mdl.log"),
        "MDL_CONNECTIONS": "1",
    }
    state = tmp_path / "models" / ".mdl" / "partial"

    def saved() -> bool:
        for record in state.glob("*.part.json"):
            try:
                body = json.loads(record.read_text())
            except (OSError, ValueError):
                return False
            return bool(body.get("pieces") if plain else body.get("terms"))
        return False

    args = ["pull", "m", *(["--no-xet"] if plain else [])]
    if real:
        # forked from the worker's zygote (tests/zygote.py): the SIGINT is mdl's own
        child = shared().spawn(args, env=env, cwd=Path.cwd())
        try:
            wait_for(saved, what="a resume record")
        finally:
            child.send_signal(signal.SIGINT)
            sent.set()
            stderr = child.communicate(timeout=HANG)[1].decode()
            hub.cas.faults.clear()
            hub.cdn.faults.clear()
        code = child.returncode
    else:  # the same pull in this process, its Ctrl-C a SIGINT to this process's main thread
        main = threading.main_thread().ident
        assert main == threading.get_ident() and main is not None

        def press_ctrl_c() -> None:
            try:
                wait_for(saved, what="a resume record")
            finally:
                signal.pthread_kill(main, signal.SIGINT)
                sent.set()

        pressing = threading.Thread(target=press_ctrl_c)
        pressing.start()
        try:
            result = mdl_as_child(args, env=env)
        finally:
            pressing.join(HANG)
            hub.cas.faults.clear()
            hub.cdn.faults.clear()
        code, stderr = result.exit_code, result.stderr
    assert code == 130, stderr
    assert "Traceback" not in stderr
    assert list(state.glob("*.part")), "the partial is kept"
    hub.cas.throttle_bps = hub.cdn.throttle_bps = None
    return env, whole


@pytest.mark.slow
@pytest.mark.parametrize("then", ["no-xet", "cas-down"])
def test_a_xet_partial_is_never_misread_by_the_plain_engine(tmp_path: Path, then: str) -> None:
    with XetHubServer() as hub:
        env, whole = _interrupted(tmp_path, hub, seed=120)
        if then == "cas-down":
            hub.cas.down = "503"
        args = ["pull", "m", *(["--no-xet"] if then == "no-xet" else [])]
        result = mdl_as_child(args, env=env)
        assert result.exit_code == 0, result.stderr
        assert (tmp_path / "models" / "m" / WEIGHTS).read_bytes() == whole
        assert "unreadable resume record" not in result.stderr
        assert "unreadable resume record" not in (tmp_path / "mdl.log").read_text()


@pytest.mark.slow
def test_ctrl_c_then_resume_fetches_only_missing_terms_and_clean_names_the_partial(
    tmp_path: Path,
) -> None:
    with XetHubServer() as hub:
        env, whole = _interrupted(tmp_path, hub, seed=130, real=True)
        listed = mdl_as_child(["clean", "--dry-run"], env=env)
        assert listed.exit_code == 0, listed.stderr
        assert WEIGHTS in listed.stdout + listed.stderr
        first = hub.cas.xorb_bytes()
        result = mdl_as_child(["pull", "m"], env=env)
        assert result.exit_code == 0, result.stderr
        assert (tmp_path / "models" / "m" / WEIGHTS).read_bytes() == whole
        assert hub.cas.xorb_bytes() - first < len(whole)  # what was on disk was not fetched again


@pytest.mark.slow
def test_a_plain_partial_is_resumed_by_the_plain_path(tmp_path: Path) -> None:
    with XetHubServer() as hub:
        env, whole = _interrupted(tmp_path, hub, seed=140, plain=True)
        before = sum(r.bytes_sent for r in hub.cdn.log.records())
        result = mdl_as_child(["pull", "m"], env=env)
        assert result.exit_code == 0, result.stderr
        assert (tmp_path / "models" / "m" / WEIGHTS).read_bytes() == whole
        assert sum(r.bytes_sent for r in hub.cdn.log.records()) - before < len(whole)


@pytest.mark.slow
@pytest.mark.parametrize("where", ["reconstruction", "token"])
def test_a_stalled_json_reply_falls_back_in_a_bounded_wait(
    xet_hub: XetHubServer, catalog: Path, where: str
) -> None:
    """The body of a reconstruction (or of the read token) goes silent: a clean fallback, no
    internal error.
    """
    data = make_data(1 << 20, seed=150)
    xet_hub.add_repo("org/m", {WEIGHTS: data})
    if where == "reconstruction":
        xet_hub.cas.faults.add(Fault.stall(10, None, path_prefix="/v", times=None))
    else:
        xet_hub.faults.add(
            Fault.stall(10, None, path_prefix="/api/models/org/m/xet-read-token/", times=None)
        )
    began = time.monotonic()
    result = mdl("pull", "m", "--stall-timeout", "1")
    assert result.exit_code == 0, result.stderr
    assert _installed(catalog).read_bytes() == data
    # the stall is endless: ending at all is the stall timeout firing
    assert time.monotonic() - began < HANG


@pytest.mark.slow
def test_hf_cache_upgrade_reuses_the_old_blob(
    xet_hub: XetHubServer, catalog: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setenv("MDL_LAYOUT", "hf-cache")
    old = make_data(4 << 20, seed=151)
    new = bytearray(old)
    new[2 << 20 : (2 << 20) + 50] = b"x" * 50
    xet_hub.add_repo("org/m", {WEIGHTS: old})
    assert mdl("pull", "m").exit_code == 0
    xet_hub.commit("org/m", {WEIGHTS: bytes(new)})
    result = mdl("pull", "m", "--json")
    assert result.exit_code == 0, result.stderr
    (entry,) = json.loads(result.stdout)["files"]
    assert entry["reused"] > 2 << 20, entry


@pytest.mark.slow
@pytest.mark.parametrize("plant", ["fifo", "symlink", "outside", "absolute", "huge_chunk"])
def test_a_planted_chunk_record_costs_at_most_a_fetch(
    xet_hub: XetHubServer, catalog: Path, plant: str
) -> None:
    old = make_data(2 << 20, seed=152)
    xet_hub.add_repo("org/m", {WEIGHTS: old})
    assert mdl("pull", "m").exit_code == 0
    first = xet_hub.xet_file("org/m", WEIGHTS)
    dest = catalog.parent / "models"
    sidecar = dest / ".mdl" / "xet" / f"{first.hash}.json"
    body = json.loads(sidecar.read_text())
    if plant == "fifo":
        os.mkfifo(dest / "m" / "pipe")
        body["where"] = "m/pipe"
    elif plant == "symlink":
        (catalog.parent / "elsewhere").write_bytes(old)
        (dest / "m" / "link").symlink_to(catalog.parent / "elsewhere")
        body["where"] = "m/link"
    elif plant == "outside":
        body["where"] = "../elsewhere"
    elif plant == "absolute":
        body["where"] = "/etc/passwd"
    else:  # a chunk of 4 PiB: never read into memory
        body["terms"][0][5][0] = 1 << 52
    sidecar.write_text(json.dumps(body))
    new = bytearray(old)
    new[1 << 20 : (1 << 20) + 50] = b"y" * 50
    xet_hub.commit("org/m", {WEIGHTS: bytes(new)})
    began = time.monotonic()
    result = mdl("pull", "m")
    assert result.exit_code == 0, result.stderr
    assert time.monotonic() - began < HANG  # a FIFO read, or a 4 PiB chunk, would never end
    assert _installed(catalog).read_bytes() == new


# --- a signed model: every Xet file is held to its signature as on the plain path
# -------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("replaced", [False, True])
def test_a_signed_model_s_xet_file_is_held_to_its_signature(
    xet_hub: XetHubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, replaced: bool
) -> None:
    weights = make_data(1 << 20, seed=160)
    files = {"config.json": b'{"model_type": "bert"}\n', WEIGHTS: weights}
    private, public = key_pair(tmp_path / "keys")
    signature = official_sign(write_files(tmp_path / "upstream", files), private)
    xet_hub.add_repo("org/tiny", {**files, "model.sig": signature})
    if replaced:
        # the listing's hashes are the new file's
        xet_hub.commit("org/tiny", {WEIGHTS: make_data(1 << 20, seed=161)})
    catalog = use_catalog(tmp_path, monkeypatch, None, endpoint=xet_hub.url)
    catalog.write_text(
        f'[models.tiny]\nrepo = "org/tiny"\n[models.tiny.signature]\nkey = "{public}"\n'
    )
    result = mdl("pull", "tiny")
    installed = tmp_path / "models" / "tiny" / WEIGHTS
    if replaced:  # refused by the listing's sha256 before a chunk is asked
        assert result.exit_code == 6, result.stderr
        assert "signed" in result.stderr
        assert not installed.exists()
    else:
        assert result.exit_code == 0, result.stderr
        assert installed.read_bytes() == weights
        assert xet_hub.cas.xorb_bytes() > 0  # by chunk


@pytest.mark.slow
def test_a_lying_chunk_record_is_caught_and_the_file_fetched_again(
    xet_hub: XetHubServer, catalog: Path
) -> None:
    """The record claims the new file's chunks lie in the old file (their hashes taken from the old
    bytes, so each read checks out): the Xet file hash catches it and the file is fetched again
    whole."""
    old = make_data(2 << 20, seed=170)
    xet_hub.add_repo("org/m", {WEIGHTS: old})
    assert mdl("pull", "m").exit_code == 0
    first = xet_hub.xet_file("org/m", WEIGHTS)
    new = make_data(2 << 20, seed=171)
    xet_hub.commit("org/m", {WEIGHTS: new})
    after = xet_hub.xet_file("org/m", WEIGHTS)
    terms = []
    for term in after.terms:
        count = term.end - term.start
        sizes = [term.length // count] * (count - 1)
        sizes.append(term.length - sum(sizes))
        hashes, at = b"", 0
        for size in sizes:
            hashes += chunk_hash(old[at : at + size])
            at += size
        terms.append([term.xorb, term.start, term.end, 0, hashes.hex(), sizes])
    sidecar = catalog.parent / "models" / ".mdl" / "xet" / f"{first.hash}.json"
    body = json.loads(sidecar.read_text())
    body["terms"] = terms
    sidecar.write_text(json.dumps(body))
    result = mdl("pull", "m")
    assert result.exit_code == 0, result.stderr
    assert _installed(catalog).read_bytes() == new
    assert "fetching it again whole" in (catalog.parent / "mdl.log").read_text()


@pytest.mark.slow
def test_two_runs_pulling_one_xet_file_at_once(xet_hub: XetHubServer, catalog: Path) -> None:
    data = make_data(3 << 20, seed=172)
    xet_hub.add_repo("org/m", {WEIGHTS: data}, scheme="none")
    xet_hub.cas.throttle_bps = 4 << 20
    runs = [
        subprocess.Popen(
            [forked_mdl(), "pull", "m"], stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        for _ in range(2)
    ]
    for run in runs:
        _, stderr = run.communicate(timeout=120)
        assert run.returncode == 0, stderr.decode()
        assert b"Traceback" not in stderr
    assert _installed(catalog).read_bytes() == data
    assert not list((catalog.parent / "models" / ".mdl" / "partial").glob("*.part*"))


@pytest.mark.slow
def test_a_reply_of_one_chunk_terms_over_one_range_ends_in_the_right_bytes(
    xet_hub: XetHubServer, catalog: Path
) -> None:
    """Every term split into one-chunk terms, all read from one merged v1 range (the streams place
    each chunk into the terms holding it, not into every term of the range)."""
    data = make_data(4 << 20, seed=180)
    xet_hub.add_repo("org/m", {WEIGHTS: data}, scheme="lz4")
    xorbs = xet_hub.store.xorbs

    def split(_version: int, reply: dict[str, object]) -> dict[str, object]:
        terms = []
        for term in reply["terms"]:  # type: ignore[attr-defined]
            sizes = xorbs[term["hash"]].sizes
            for i in range(term["range"]["start"], term["range"]["end"]):
                terms.append(
                    {
                        "hash": term["hash"],
                        "range": {"start": i, "end": i + 1},
                        "unpacked_length": sizes[i],
                    }
                )
        return {**reply, "terms": terms}

    xet_hub.cas.v2_status = 404
    xet_hub.cas.rewrite = split
    result = mdl("pull", "m")
    assert result.exit_code == 0, result.stderr
    assert _installed(catalog).read_bytes() == data
    # once each
    assert xet_hub.cas.xorb_bytes() == xet_hub.store.xorb_bytes(xet_hub.xet_file("org/m", WEIGHTS))


class _CountedTerm(Written):
    """A term that counts every read of its fields: the work a find does, counted, never timed."""

    reads = 0

    def __getattribute__(self, name: str) -> object:
        if not name.startswith("__"):
            _CountedTerm.reads += 1
        return super().__getattribute__(name)


def _index_of_one_chunk_terms(xorb: str, count: int) -> ReuseIndex:
    index = ReuseIndex(Path("/nowhere"))
    terms = [
        _CountedTerm(xorb, i, i + 1, 100 * i, ((bytes(32), 100),)) for i in range(count) if i != 7
    ]
    index.add(Path("/nowhere/a"), terms, xet_hash="cd" * 32)
    return index


def test_the_chunks_on_disk_are_found_in_log_time_however_many_terms() -> None:
    """A model whose files hold 4,096 one-chunk terms of one xorb: finding each read every term
    (terms x terms reads, seconds at 16,384 terms); each find now reads a few terms, whatever the
    count (the reads counted, so a busy machine changes nothing); the farthest-reaching term wins,
    and gaps are still gaps."""
    xorb, count = "ab" * 32, 4096
    index = _index_of_one_chunk_terms(xorb, count)
    _CountedTerm.reads = 0
    for i in range(count):
        assert (index.find(xorb, i, i + 1) is None) == (i == 7)
    # the index's order made once (a sort: a few reads a term), then a handful per find
    assert _CountedTerm.reads <= 16 * count, _CountedTerm.reads
    whole = index.find(xorb, 8, count)
    assert whole is not None and len(whole) == count - 8 and whole[0].offset == 800
    index.add(
        Path("/nowhere/b"), [Written(xorb, 0, 20, 5, ((bytes(32), 1),) * 20)], xet_hash="ef" * 32
    )
    (copy,) = index.find(xorb, 3, 12) or []
    assert (copy.path, copy.offset, len(copy.chunks)) == (Path("/nowhere/b"), 8, 9)


def test_a_reconstruction_redirected_off_the_cas_carries_no_cas_token(
    xet_hub: XetHubServer, catalog: Path
) -> None:
    data = make_data(1 << 20, seed=190)
    xet_hub.add_repo("org/m", {WEIGHTS: data})
    elsewhere = xet_hub.cdn.url + "/v2/reconstructions/x"
    xet_hub.cas.faults.add(
        Fault.http_error(302, headers={"Location": elsewhere}, path_prefix="/v", times=None)
    )
    result = mdl("pull", "m")
    assert result.exit_code == 0, result.stderr
    assert _installed(catalog).read_bytes() == data
    tokens = set(xet_hub.cas.tokens)
    assert tokens and [r for r in xet_hub.cdn.log.records() if r.url_path.startswith("/v2/")]
    assert all(bearer(r) not in tokens for r in xet_hub.cdn.log.records() + xet_hub.log.records())


@pytest.mark.slow
@pytest.mark.parametrize("fault", ["reset", "full_body"])
def test_a_xorb_stream_cut_or_unranged_ends_in_the_right_bytes(
    xet_hub: XetHubServer, catalog: Path, fault: str
) -> None:
    data = make_data(2 << 20, seed=191)
    xet_hub.add_repo("org/m", {WEIGHTS: data}, scheme="bg4")
    made = (
        Fault.reset(50_000, path_prefix="/xorb/")
        if fault == "reset"
        else Fault.full_body(path_prefix="/xorb/")
    )
    xet_hub.cas.faults.add(made)
    result = mdl("pull", "m")
    assert result.exit_code == 0, result.stderr
    assert _installed(catalog).read_bytes() == data
    lines = [
        line
        for line in (catalog.parent / "mdl.log").read_text().splitlines()
        if "over plain HTTP" in line
    ]
    assert len(lines) == (1 if fault == "full_body" else 0), lines


@pytest.mark.slow
@pytest.mark.parametrize("tamper", ["hashes", "lengths", "other_file", "garbage", "bytes"])
def test_a_tampered_xet_resume_record_or_partial_ends_in_the_right_bytes(
    tmp_path: Path, tamper: str
) -> None:
    with XetHubServer() as hub:
        env, whole = _interrupted(tmp_path, hub, seed=200)
        state = tmp_path / "models" / ".mdl" / "partial"
        (record,) = state.glob("*.part.json")
        body = json.loads(record.read_text())
        if tamper == "hashes":
            for term in body["terms"]:
                term[4] = ("00" if term[4][:2] != "00" else "11") + term[4][2:]
        elif tamper == "lengths":
            for term in body["terms"]:
                term[5] = [size + 1 for size in term[5]]
        elif tamper == "other_file":
            body["xet"] = "ab" * 32
        elif tamper == "bytes":  # the record is right, the bytes it names are not
            (part,) = state.glob("*.part")
            with part.open("r+b") as handle:
                handle.write(b"\xff" * 4096)
        if tamper == "garbage":
            record.write_text("{not json")
        else:
            record.write_text(json.dumps(body))
        result = mdl_as_child(["pull", "m"], env=env)
        assert result.exit_code == 0, result.stderr
        assert "Traceback" not in result.stderr
        assert (tmp_path / "models" / "m" / WEIGHTS).read_bytes() == whole


@pytest.mark.slow
def test_xorb_urls_at_a_port_that_never_answers_fall_back_in_a_bounded_wait(
    xet_hub: XetHubServer, catalog: Path
) -> None:
    data = make_data(1 << 20, seed=210)
    xet_hub.add_repo("org/m", {WEIGHTS: data})
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)  # connections queue, none is ever answered
        cas_url, port = xet_hub.cas.url, silent.getsockname()[1]

        def elsewhere(_version: int, reply: dict[str, object]) -> bytes:
            return (
                json.dumps(reply)
                .replace(cas_url + "/xorb/", f"http://127.0.0.1:{port}/xorb/")
                .encode()
            )

        xet_hub.cas.rewrite = elsewhere
        began = time.monotonic()
        result = mdl("pull", "m", "--timeout", "1")
    assert result.exit_code == 0, result.stderr
    # the silent server never answers: ending at all is --timeout firing
    assert time.monotonic() - began < HANG
    assert _installed(catalog).read_bytes() == data


@pytest.mark.slow
def test_a_costly_resume_record_is_saved_less_often(
    xet_hub: XetHubServer, catalog: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A huge file's record (every chunk's hash) takes long to write: saving it every second would
    take the streams' time (a 50 GB file's record is ~50 MB and ~0.5 s of CPU); saves are spaced so
    they cost at most a small share."""
    parts = [make_data(512 << 10, seed=220 + i) for i in range(8)]
    whole = b"".join(parts)
    xet_hub.add_repo(
        "org/parts", {f"p{i}.safetensors": p for i, p in enumerate(parts)}, scheme="none"
    )
    xet_hub.add_repo("org/m", {WEIGHTS: whole}, scheme="none")
    # one stream: about half a second a term, four seconds in all
    xet_hub.cas.throttle_bps = 1 << 20
    saves: list[float] = []
    real = xet_partial.save_state

    def slow(*args: object, **kwargs: object) -> None:
        saves.append(time.monotonic())
        time.sleep(0.25)
        real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(xet_partial, "save_state", slow)
    result = mdl("pull", "m", "--connections", "1")
    assert result.exit_code == 0, result.stderr
    assert _installed(catalog).read_bytes() == whole
    # Spaced by the cost (0.25 s at most 5 % of the time: 5 s apart), never every second: only
    # lower bounds on the gaps, with room for a busy machine's late start of a save (a slow run
    # makes more saves, each as far apart).
    spacing = 0.25 / xet_partial.SAVE_SHARE
    assert saves and all(b - a >= spacing / 2 for a, b in pairwise(saves)), saves


@pytest.mark.slow
@pytest.mark.parametrize(
    "cause", ["token_503", "xorb_404", "xorb_403_always", "xorb_reset_always", "size"]
)
def test_every_fallback_mid_way_ends_in_the_right_bytes_and_one_line(
    xet_hub: XetHubServer, catalog: Path, cause: str
) -> None:
    parts = [make_data(512 << 10, seed=230 + i) for i in range(4)]
    whole = b"".join(parts)
    xet_hub.add_repo(
        "org/parts", {f"p{i}.safetensors": p for i, p in enumerate(parts)}, scheme="lz4"
    )
    xet_hub.add_repo("org/m", {WEIGHTS: whole}, scheme="lz4")
    # the others are fetched first
    xorb = "/xorb/default/" + xet_hub.xet_file("org/m", WEIGHTS).terms[-1].xorb
    if cause == "token_503":
        xet_hub.faults.add(
            Fault.http_error(503, path_prefix="/api/models/org/m/xet-read-token/", times=None)
        )
    elif cause == "xorb_404":
        xet_hub.cas.faults.add(Fault.http_error(404, path_prefix=xorb, times=None))
    elif cause == "xorb_403_always":
        xet_hub.cas.faults.add(Fault.http_error(403, path_prefix=xorb, times=None))
    elif cause == "xorb_reset_always":
        xet_hub.cas.faults.add(Fault.reset(1000, path_prefix=xorb, times=None))
    else:
        xet_hub.cas.rewrite = lambda _v, reply: {
            **reply,
            "terms": [{**t, "unpacked_length": t["unpacked_length"] + 1} for t in reply["terms"]],  # type: ignore[attr-defined]
        }
    result = mdl("pull", "m", "--connections", "1")
    assert result.exit_code == 0, result.stderr
    assert _installed(catalog).read_bytes() == whole
    log = (catalog.parent / "mdl.log").read_text()
    assert len([line for line in log.splitlines() if "fetching it over plain HTTP" in line]) == 1, (
        log
    )
    assert "WARNING" not in log, log
    assert not list((catalog.parent / "models" / ".mdl" / "partial").glob("*.part*"))


@pytest.mark.slow
@pytest.mark.parametrize("link", ["hard", "symbolic"])
def test_a_partial_replaced_by_a_link_is_set_aside_never_written_through(
    tmp_path: Path, link: str
) -> None:
    with XetHubServer() as hub:
        env, whole = _interrupted(tmp_path, hub, seed=240)
        (part,) = (tmp_path / "models" / ".mdl" / "partial").glob("*.part")
        outside = tmp_path / "outside.bin"
        outside.write_bytes(b"precious" * 1000)
        part.unlink()
        if link == "hard":
            os.link(outside, part)
        else:
            part.symlink_to(outside)
        result = mdl_as_child(["pull", "m"], env=env)
        assert result.exit_code == 0, result.stderr
        assert (tmp_path / "models" / "m" / WEIGHTS).read_bytes() == whole
        assert outside.read_bytes() == b"precious" * 1000


@pytest.mark.slow
def test_progress_of_an_upgrade_adds_up_to_the_file_size(
    xet_hub: XetHubServer, catalog: Path
) -> None:
    old = make_data(4 << 20, seed=250)
    new = bytearray(old)
    new[(3 << 20) : (3 << 20) + 50] = b"z" * 50
    xet_hub.add_repo("org/m", {WEIGHTS: old})
    assert mdl("pull", "m").exit_code == 0
    xet_hub.commit("org/m", {WEIGHTS: bytes(new)})
    result = mdl("pull", "m", "--progress", "json")
    assert result.exit_code == 0, result.stderr
    events = [e for e in _events(result.stderr) if e.get("path") == WEIGHTS]
    finish = [e for e in events if e["event"] == "finish"]
    assert finish and finish[-1]["bytes"] == len(new), events
    assert all(0 <= int(e.get("bytes", 0)) <= len(new) for e in events), events  # type: ignore[call-overload]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("header", "code"),
    [
        (b"\x00\xff\xff\xff", 6),  # version 0, 16 MiB compressed: never buffered past the range
        # an uncompressed length of 1 MiB: more than a chunk
        (b"\x00\x08\x00\x00\x00\x00\x00\x10", 6),
        (b"\x00\x00\x00\x00\x00\x00\x00\x00", 6),  # an empty chunk
    ],
)
def test_a_lying_chunk_header_is_exit_6_never_a_traceback(
    xet_hub: XetHubServer, catalog: Path, header: bytes, code: int
) -> None:
    data = make_data(1 << 20, seed=260)
    xet_hub.add_repo("org/m", {WEIGHTS: data}, scheme="none")
    xf = xet_hub.xet_file("org/m", WEIGHTS)
    xet_hub.cas.patch(xf.terms[0].xorb, xet_hub.store.xorbs[xf.terms[0].xorb].offsets[1], header)
    result = mdl("pull", "m")
    assert result.exit_code == code, result.stderr
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr
    assert not _installed(catalog).exists()


# --- https never gives way to http: the CAS token and presigned URLs stay off the clear
# ---------------------------

_HUB = "https://hub.test"
_TOKEN_URL = f"{_HUB}/api/models/org/m/xet-read-token/main"
_HASH = "ab" * 32


def _source(client: httpx2.Client) -> XetSource:
    return XetSource(
        client,
        retry=RetryPolicy(retries=0),
        progress=Progress(),
        cancel=threading.Event(),
        streams=lambda _size: 1,
        stall_timeout=None,
        hub=Credentials,
        secrets=Secrets(),
        dirs=DirSyncs(),
        recorded=lambda _model: [],
        bound=lambda _job, _xet: False,
    )


def _reply(url: str) -> dict[str, object]:
    return {
        "offset_into_first_range": 0,
        "terms": [{"hash": _HASH, "range": {"start": 0, "end": 1}, "unpacked_length": 10}],
        "fetch_info": {
            _HASH: [
                {"range": {"start": 0, "end": 1}, "url": url, "url_range": {"start": 0, "end": 9}}
            ]
        },
        "xorbs": {
            _HASH: [
                {
                    "url": url,
                    "ranges": [
                        {"chunks": {"start": 0, "end": 1}, "bytes": {"start": 0, "end": 17}}
                    ],
                }
            ]
        },
    }


@pytest.mark.parametrize(
    ("cas", "xorb_url", "falls_back"),
    [
        # the Hub over https names a CAS over http
        ("http://cas.test", "http://cas.test/xorb/x?sig=1", True),
        # the CAS over https names xorbs over http
        ("https://cas.test", "http://cdn.test/xorb/x?sig=1", True),
        ("https://cas.test", "https://cdn.test/xorb/x?sig=1", False),
    ],
)
def test_a_xet_answer_over_https_naming_plain_http_falls_back(
    httpx2_mock: HTTPXMock, cas: str, xorb_url: str, falls_back: bool
) -> None:
    httpx2_mock.add_response(
        url=_TOKEN_URL, json={"accessToken": "xet_tok", "exp": time.time() + 3600, "casUrl": cas}
    )
    httpx2_mock.add_response(
        url=f"{cas}/v2/reconstructions/{_HASH}", json=_reply(xorb_url), is_optional=True
    )
    with make_client(timeout=5, pool_size=4, transport=httpx2.HTTPTransport()) as client:
        source = _source(client)
        if falls_back:
            with pytest.raises(XetFallback, match="over plain http"):
                source.reconstruction(XetRef(_HASH, _TOKEN_URL), "m/f", size=10)
        else:
            assert (
                source.reconstruction(XetRef(_HASH, _TOKEN_URL), "m/f", size=10).fetches[0].url
                == xorb_url
            )
    sent = [str(r.url) for r in httpx2_mock.get_requests()]
    # the CAS token never went over http
    assert not [url for url in sent if url.startswith("http://")]


def test_get_of_a_xet_file_to_a_relative_output(
    xet_hub: XetHubServer, catalog: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = make_data(1 << 20, seed=270)
    xet_hub.add_repo("org/m", {WEIGHTS: data})
    monkeypatch.chdir(tmp_path)
    result = mdl("get", f"hf://org/m/{WEIGHTS}", "-o", "out.bin")
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "out.bin").read_bytes() == data
    assert xet_hub.cas.xorb_bytes() > 0
