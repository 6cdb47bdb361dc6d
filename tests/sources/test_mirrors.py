"""Mirrors ([settings].mirrors / $MDL_MIRRORS) against real loopback servers: a folder served over
HTTP.

The fleet recipe of the README: one machine pulls from the Hub into a folder, a static HTTP server
serves that folder, the rest of the fleet pulls with ``mirrors = ["http://host/{model}/{path}"]``
and verifies every byte against the hashes the Hub (or the catalog) gives. A mirror that is corrupt,
dead or sick is left for the next source; a mirror never sees a credential.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import pytest
from hypothesis import given
from hypothesis import strategies as st
from runfixtures import HANG, mdl
from servers import (
    TOKEN,
    CdnServer,
    Content,
    Exchange,
    Fault,
    HubServer,
    LoopbackServer,
    closed_port,
    make_data,
)
from typer.testing import Result

from mdl.catalog.load import parse_catalog
from mdl.catalog.settings import (
    MIRROR_FIELDS,
    build_settings,
    check_mirror,
    fill_template,
    parse_template,
)
from mdl.catalog.specs import CatalogSettings, ModelSpec
from mdl.download._owned import MIRROR_RETRIES
from mdl.download.puller import pull_models
from mdl.errors import ExitCode, UsageError
from mdl.progress import NullProgress
from mdl.report import RunReport
from mdl.setting import Overrides
from mdl.sources.resolve import RemoteFile, mirror_targets
from mdl.store.store import Store
from mdl.transfer import _stream
from mdl.transfer._stream import CUTS_PER_SOURCE

WEIGHTS = make_data(300_003, seed=11)  # LFS on the Hub: known by sha256
CONFIG = b'{"model_type": "bert", "hidden_size": 8}\n'  # small: known by its git blob id only
VOCAB = b"[PAD]\n[UNK]\n[CLS]\n" * 40
# a space and a non-ASCII letter: the mirror URL must quote both
SPECIAL = "nested/spécial tokens.json"
SPECIAL_DATA = b'{"pad": "[PAD]"}\n'
LORA = make_data(50_001, seed=12)
TINY_FILES = {
    "config.json": CONFIG,
    "model.safetensors": WEIGHTS,
    "vocab.txt": VOCAB,
    SPECIAL: SPECIAL_DATA,
}


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# -- a static folder server (what `python -m http.server` or nginx would be in the README recipe)
# -------------


class FolderServer(LoopbackServer):
    """Serves the files under ``root`` by path, with Range and If-Range, like a plain static web
    server.

    It knows nothing about mdl: no hashes, no signatures, an nginx-style ``"mtime-size"`` ETag. It
    reads the folder on every request, so a test may corrupt a file between runs. Nothing outside
    ``root`` is served, and ``/.mdl/`` is denied as in the README's nginx recipe.
    """

    name = "mirror"

    def __init__(self, root: Path) -> None:
        super().__init__()
        root.mkdir(parents=True, exist_ok=True)
        self.root = root.resolve()

    def route(self, ex: Exchange) -> None:
        """Answer a GET/HEAD for a file under the root, else 404."""
        # the README's nginx recipe: `location /.mdl/ { deny all; }`
        if ex.path.startswith("/.mdl/"):
            ex.send_bytes(403, b"forbidden\n")
            return
        target = (self.root / unquote(ex.path).lstrip("/")).resolve()
        if not target.is_relative_to(self.root) or not target.is_file():
            ex.send_bytes(404, b"not found\n")
            return
        stat = target.stat()
        ex.send_content(Content(target), etag=f'"{stat.st_mtime_ns:x}-{stat.st_size:x}"')

    def gets(self, path_prefix: str | None = None) -> list[Any]:
        """The GET requests this mirror saw."""
        return self.log.records(method="GET", path_prefix=path_prefix)


@pytest.fixture
def mirror(tmp_path: Path) -> Iterator[FolderServer]:
    """A started folder mirror over an (initially empty) folder; stopped after the test."""
    server = FolderServer(tmp_path / "mirror-root").start()
    try:
        yield server
    finally:
        server.stop()
    assert not server.errors, server.errors


def fill_folder(root: Path, files: dict[str, bytes], *, model: str = "tiny") -> None:
    """Lay files out as the plain layout does: ``<root>/<model>/<path>``."""
    for path, data in files.items():
        target = root / model / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)


def dead_url() -> str:
    """A loopback URL nothing listens on (``servers.closed_port``)."""
    return f"http://127.0.0.1:{closed_port()}"


# -- the Hub side
# ------------------------------------------------------------------------------------------


@pytest.fixture
def tiny(hub: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> HubServer:
    """The Hub stand-in with org/tiny, HF_ENDPOINT pointing at it, and a log file in tmp_path."""
    hub.add_repo(
        "org/tiny", {**TINY_FILES, "README.md": b"# tiny\n", "flax_model.msgpack": b"unwanted"}
    )
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.setenv("MDL_LOG_FILE", str(tmp_path / "mdl.log"))
    return hub


def catalog_text(mirrors: list[str] | None = None, *, extra: str = "") -> str:
    settings = f"[settings]\nmirrors = {json.dumps(mirrors)}\n" if mirrors is not None else ""
    return f"""{settings}
[models.tiny]
repo = "org/tiny"
include = ["*.json", "*.safetensors", "*.txt"]

[models.combo]
files = [
  {{ repo = "org/tiny", path = "model.safetensors", as = "vae/ae.safetensors" }},
  {{ repo = "org/tiny", path = "config.json" }},
]
{extra}
"""


def write_catalog(path: Path, mirrors: list[str] | None = None, *, extra: str = "") -> Path:
    path.write_text(catalog_text(mirrors, extra=extra), encoding="utf-8")
    return path


def models(mirrors: list[str] | None = None, *, extra: str = "") -> dict[str, ModelSpec]:
    return {m.name: m for m in parse_catalog(catalog_text(mirrors, extra=extra)).models}


def pull(
    hub: HubServer,
    dest: Path,
    specs: list[ModelSpec],
    env: dict[str, str] | None = None,
    **flags: Any,
) -> Any:
    environ = {"HF_ENDPOINT": hub.url, **(env or {})}
    catalog = CatalogSettings(mirrors=tuple(flags.pop("mirrors", ())))
    settings = build_settings(Overrides(**flags), environ=environ, dest=dest, catalog=catalog)
    return pull_models(specs, settings, progress=NullProgress())


def outcomes(result: Result) -> dict[tuple[str, str], dict[str, Any]]:
    doc = json.loads(result.stdout)
    return {(f["model"], f["path"]): f for f in doc["files"]}


def by_path(report: RunReport) -> dict[tuple[str, str | None], Any]:
    return {(f.model, f.path): f for f in report.files}


def origin_body_requests(hub: HubServer) -> list[Any]:
    """Requests that carried file contents from the origin: GETs on Hub resolve URLs and anything
    on its CDN.
    """
    return [
        r
        for r in hub.log.records(method="GET")
        if "/resolve/" in r.url_path and not r.asks_metadata
    ] + hub.cdn.log.records()


def assert_no_debris(dest: Path, model: str, paths: list[str]) -> None:
    store = Store(dest)
    for path in paths:
        part, state = store.part_paths(model, path)
        assert not part.exists() and not state.exists(), (model, path)
    partial = dest / ".mdl" / "partial"
    assert not partial.exists() or [p for p in partial.rglob("*") if p.is_file()] == []


def clear_logs(*servers: LoopbackServer) -> None:
    for server in servers:
        server.log.clear()
    for server in servers:
        if isinstance(server, HubServer):
            server.cdn.log.clear()


class FinalPathWatcher:
    """Polls final paths while a pull runs and remembers any moment one held bytes other than the
    expected.
    """

    def __init__(self, expected: dict[Path, bytes]) -> None:
        self.expected = expected
        self.bad: list[str] = []
        self.seen: set[Path] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="final-path-watcher", daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            for path, data in self.expected.items():
                with contextlib.suppress(FileNotFoundError):
                    got = path.read_bytes()
                    self.seen.add(path)
                    if got != data:
                        self.bad.append(f"{path}: {len(got)} bytes, sha256 {sha(got)[:12]}")
            self._stop.wait(0.001)

    def __enter__(self) -> FinalPathWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


# == 1. the fleet recipe, end to end
# ======================================================================


def test_fleet_recipe_pulls_from_the_folder_mirror_and_verifies_against_the_hub(
    tiny: HubServer, tmp_path: Path
) -> None:
    # Machine A: a plain pull from the Hub.
    dest_a = tmp_path / "machine-a"
    first = mdl(
        "pull",
        "tiny",
        "combo",
        "--catalog",
        str(write_catalog(tmp_path / "a.toml")),
        "--dest",
        str(dest_a),
    )
    assert first.exit_code == 0, first.stderr
    # Serve machine A's folder as it is (its .mdl/ state is simply never asked for).
    with FolderServer(dest_a) as folder:
        template = folder.url + "/{model}/{path}"
        catalog_b = write_catalog(tmp_path / "b.toml", [template])
        clear_logs(tiny)
        dest_b = tmp_path / "machine-b"
        result = mdl(
            "pull", "tiny", "combo", "--catalog", str(catalog_b), "--dest", str(dest_b), "--json"
        )
        assert result.exit_code == 0, result.stderr

        files = outcomes(result)
        expected = {
            ("tiny", "config.json"): CONFIG,
            ("tiny", "model.safetensors"): WEIGHTS,
            ("tiny", "vocab.txt"): VOCAB,
            ("tiny", SPECIAL): SPECIAL_DATA,
            ("combo", "vae/ae.safetensors"): WEIGHTS,
            ("combo", "config.json"): CONFIG,
        }
        assert set(files) == set(expected)
        for (model, path), data in expected.items():
            outcome = files[(model, path)]
            assert (
                (dest_b / model / path).read_bytes() == data == (dest_a / model / path).read_bytes()
            )
            assert outcome["action"] == "downloaded"
            assert outcome["sha256"] == sha(data)
            assert outcome["mirror"] == f"{folder.url}/{model}/{quote(path)}"
        # The unicode/space path went over the wire quoted, and the folder server found it.
        assert folder.gets("/tiny/nested/sp%C3%A9cial%20tokens.json")

        # The origin sent no file bytes: only the listing/metadata calls, which give the hashes.
        assert origin_body_requests(tiny) == []
        assert tiny.cdn.log.body_bytes() == 0
        # the listing (hashes come from the Hub)
        assert tiny.log.records(method="GET", path_prefix="/api/")
        assert {r.method for r in tiny.log.records()} <= {"GET", "HEAD"}
        # The mirror sent each file exactly once, and nothing else.
        assert folder.log.body_bytes() == sum(len(d) for d in expected.values())
        assert all(r.status in (200, 206) for r in folder.log.records())
        assert not any(".mdl" in r.url_path for r in folder.log.records())
        # Records name the origin, not the mirror: a later verify or re-run does not depend on the
        # mirror.
        record = Store(dest_b).read_record("tiny")
        assert record is not None
        assert record.files["model.safetensors"].source.startswith("hf://org/tiny@")
        assert record.files["model.safetensors"].sha256 == sha(WEIGHTS)

        # A second run on machine B transfers nothing from anyone.
        clear_logs(tiny, folder)
        again = mdl(
            "pull", "tiny", "combo", "--catalog", str(catalog_b), "--dest", str(dest_b), "--json"
        )
        assert again.exit_code == 0, again.stderr
        assert {f["action"] for f in outcomes(again).values()} == {"skipped"}
        assert all("mirror" not in f for f in outcomes(again).values())
        assert folder.log.records() == [] and origin_body_requests(tiny) == []

        verify = mdl(
            "verify", "tiny", "combo", "--catalog", str(catalog_b), "--dest", str(dest_b), "--json"
        )
        assert verify.exit_code == 0, verify.stderr


def test_big_file_is_fetched_from_the_mirror_as_parallel_ranges(
    tiny: HubServer, mirror: FolderServer
) -> None:
    # above the split threshold: several ranged streams
    big = make_data(34 * 1024 * 1024 + 7, seed=13)
    tiny.commit("org/tiny", {"big.safetensors": big})
    fill_folder(mirror.root, {"big.safetensors": big}, model="big")
    dest = mirror.root.parent / "dest"
    extra = '[models.big]\nfiles = [{ repo = "org/tiny", path = "big.safetensors" }]\n'
    report = pull(
        tiny,
        dest,
        [models(extra=extra)["big"]],
        mirrors=[mirror.url + "/{model}/{path}"],
        connections=4,
    )
    assert report.ok, report.files
    (outcome,) = report.files
    assert outcome.mirror == mirror.url + "/big/big.safetensors"
    assert (dest / "big" / "big.safetensors").read_bytes() == big
    ranged = [r for r in mirror.gets() if r.range and r.status == 206]
    assert len(ranged) > 1
    assert tiny.cdn.log.body_bytes() == 0


# == 2. a corrupt mirror is rejected, the origin is used
# ==================================================


@pytest.mark.slow
@pytest.mark.parametrize(
    ("path", "corrupt"),
    [
        pytest.param(
            "model.safetensors",
            lambda d: d[:1000] + bytes([d[1000] ^ 1]) + d[1001:],
            id="lfs-same-size",
        ),
        pytest.param("config.json", lambda d: d.replace(b"bert", b"gpt2"), id="git-same-size"),
        pytest.param("model.safetensors", lambda d: d + b"\0" * 10, id="lfs-longer"),
        pytest.param("config.json", lambda d: d[:-5], id="git-shorter"),
    ],
)
def test_corrupt_file_on_the_mirror_is_rejected_and_the_origin_used(
    tiny: HubServer, mirror: FolderServer, tmp_path: Path, path: str, corrupt: Any
) -> None:
    bad = corrupt(TINY_FILES[path])
    assert bad != TINY_FILES[path]
    fill_folder(mirror.root, {**TINY_FILES, path: bad})
    # The template carries a signature-like query: it must never be shown, only its redacted form.
    catalog = write_catalog(
        tmp_path / "c.toml", [mirror.url + "/{model}/{path}?X-Amz-Signature=deadbeef0123"]
    )
    dest = tmp_path / "dest"
    final = dest / "tiny" / path
    with FinalPathWatcher({final: TINY_FILES[path]}) as watcher:
        result = mdl("pull", "tiny", "--catalog", str(catalog), "--dest", str(dest), "--json")
    assert result.exit_code == 0, result.stderr
    # the final path never held the mirror's bad bytes, not even for a moment
    assert watcher.bad == []
    assert final.read_bytes() == TINY_FILES[path]

    files = outcomes(result)
    assert "mirror" not in files[("tiny", path)]
    assert files[("tiny", path)]["action"] == "downloaded"
    assert files[("tiny", path)]["sha256"] == sha(TINY_FILES[path])
    for other in set(TINY_FILES) - {path}:  # the good files still came from the mirror
        assert files[("tiny", other)]["mirror"].startswith(mirror.url + "/tiny/")
        assert files[("tiny", other)]["mirror"].endswith("?REDACTED")

    # The warning names the file and the (redacted) mirror, on stderr and in the log file.
    shown = f"{mirror.url}/tiny/{path}?REDACTED"
    assert f"tiny/{path}" in result.stderr and shown in result.stderr
    log_text = (tmp_path / "mdl.log").read_text(encoding="utf-8")
    assert shown in log_text and "WARNING" in log_text
    for text in (result.stdout, result.stderr, log_text):
        assert "deadbeef0123" not in text
    # The mirror was asked once (a mismatch is not retried there), the origin then sent the file.
    assert len(mirror.gets(f"/tiny/{path}")) == 1
    origin_bytes = tiny.cdn.log.body_bytes() + sum(
        r.bytes_sent for r in tiny.log.records(method="GET") if "/resolve/" in r.url_path
    )
    assert origin_bytes == len(TINY_FILES[path])
    assert_no_debris(dest, "tiny", list(TINY_FILES))


def test_a_corrupt_mirror_is_still_verified_with_no_verify(
    tiny: HubServer, mirror: FolderServer, tmp_path: Path
) -> None:
    # --no-verify trusts the origin's bytes, never a mirror's: a mirror without a hash check is a
    # hole.
    bad = bytearray(WEIGHTS)
    bad[7] ^= 0xFF
    fill_folder(mirror.root, {**TINY_FILES, "model.safetensors": bytes(bad)})
    report = pull(
        tiny,
        tmp_path / "d",
        [models()["tiny"]],
        mirrors=[mirror.url + "/{model}/{path}"],
        verify=False,
    )
    assert report.ok, report.files
    assert (tmp_path / "d" / "tiny" / "model.safetensors").read_bytes() == WEIGHTS
    assert by_path(report)[("tiny", "model.safetensors")].mirror is None
    assert by_path(report)[("tiny", "config.json")].mirror is not None


def test_mirror_cut_mid_body_falls_back_to_a_correct_file(
    tiny: HubServer, mirror: FolderServer, tmp_path: Path
) -> None:
    fill_folder(mirror.root, TINY_FILES)
    mirror.faults.add(
        Fault.reset(after_bytes=100_000, path_prefix="/tiny/model.safetensors", times=None)
    )
    dest = tmp_path / "d"
    report = pull(tiny, dest, [models()["tiny"]], mirrors=[mirror.url + "/{model}/{path}"])
    assert report.ok, report.files
    assert (dest / "tiny" / "model.safetensors").read_bytes() == WEIGHTS
    assert by_path(report)[("tiny", "model.safetensors")].mirror is None
    assert len(mirror.gets("/tiny/model.safetensors")) == 1 + MIRROR_RETRIES
    assert_no_debris(dest, "tiny", list(TINY_FILES))


def _pull_from_a_cutting_mirror(
    tiny: HubServer, mirror: FolderServer, tmp_path: Path
) -> tuple[bytes, Path, Any]:
    """``mdl pull --json`` of a 3 MB file from a mirror that cuts every answer after 400 KB."""
    data = make_data(3_000_000, seed=19)
    tiny.add_repo("org/cuts", {"w.bin": data})
    fill_folder(mirror.root, {"w.bin": data}, model="cuts")
    mirror.faults.add(Fault.reset(after_bytes=400_000, path_prefix="/cuts/", times=None))
    catalog = write_catalog(
        tmp_path / "c.toml",
        [mirror.url + "/{model}/{path}"],
        extra='[models.cuts]\nrepo = "org/cuts"\n',
    )
    dest = tmp_path / "d"
    return data, dest, mdl("pull", "cuts", "--catalog", str(catalog), "--dest", str(dest), "--json")


def test_mirror_cutting_every_answer_after_progress_is_left_after_a_few_cuts_and_said(
    tiny: HubServer, mirror: FolderServer, tmp_path: Path
) -> None:
    # A store that cuts every read mid-body, each after real progress (so no retry budget runs
    # out): the stream leaves it after CUTS_PER_SOURCE cuts, says so, and the origin resumes on the
    # bytes the mirror sent (the hash checks them), not from zero.
    data, dest, result = _pull_from_a_cutting_mirror(tiny, mirror, tmp_path)
    assert result.exit_code == 0, result.stderr
    assert (dest / "cuts" / "w.bin").read_bytes() == data
    asked = mirror.gets("/cuts/")
    assert len(asked) == CUTS_PER_SOURCE, [r.range for r in asked]
    said = [line for line in result.stderr.splitlines() if "cut mid-body" in line]
    assert len(said) == 1, result.stderr
    assert f"mirror {mirror.url}/cuts/w.bin" in said[0] and "trying the next source" in said[0]
    outcome = outcomes(result)[("cuts", "w.bin")]
    assert "mirror" not in outcome and "cut mid-body 3 times" in outcome["warning"], outcome
    # every cut before it was said too, not only the first
    assert result.stderr.count("connection lost") == CUTS_PER_SOURCE - 1, result.stderr
    # the origin sent only what the mirror had not
    from_mirror = sum(r.bytes_sent for r in asked)
    assert from_mirror >= CUTS_PER_SOURCE * 300_000
    assert tiny.cdn.log.body_bytes() <= len(data) - from_mirror + 64 * 1024


def test_a_mirror_cut_now_and_then_after_long_progress_is_kept(
    tiny: HubServer, mirror: FolderServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A proxy's longest request cuts a good stream now and then: each cut comes CUT_SPAN or more
    # past the last, so the count starts afresh and the mirror serves the whole file.
    monkeypatch.setattr(_stream, "CUT_SPAN", 300_000)
    data, dest, result = _pull_from_a_cutting_mirror(tiny, mirror, tmp_path)
    assert result.exit_code == 0, result.stderr
    assert (dest / "cuts" / "w.bin").read_bytes() == data
    assert len(mirror.gets("/cuts/")) > CUTS_PER_SOURCE
    assert "cut mid-body" not in result.stderr, result.stderr
    assert outcomes(result)[("cuts", "w.bin")].get("mirror"), result.stdout
    assert tiny.cdn.log.body_bytes() == 0


# == 3. dead and sick mirrors fall through
# ================================================================


def test_dead_mirror_falls_through_to_the_origin_quickly(tiny: HubServer, tmp_path: Path) -> None:
    dest = tmp_path / "d"
    started = time.monotonic()
    report = pull(tiny, dest, [models()["tiny"]], mirrors=[dead_url() + "/{model}/{path}"])
    elapsed = time.monotonic() - started
    assert report.ok, report.files
    assert elapsed < HANG, elapsed  # a safety net, not a measure of speed
    assert all(f.mirror is None and f.action == "downloaded" for f in report.files)
    for path, data in TINY_FILES.items():
        assert (dest / "tiny" / path).read_bytes() == data
    assert_no_debris(dest, "tiny", list(TINY_FILES))


def test_mirror_answering_404_falls_through_after_one_request(
    tiny: HubServer, mirror: FolderServer, tmp_path: Path
) -> None:
    fill_folder(mirror.root, {"config.json": CONFIG})  # it has one file and lacks the others
    report = pull(
        tiny, tmp_path / "d", [models()["tiny"]], mirrors=[mirror.url + "/{model}/{path}"]
    )
    assert report.ok, report.files
    mirrored = {f.path for f in report.files if f.mirror}
    assert mirrored == {"config.json"}
    for path in set(TINY_FILES) - {"config.json"}:
        requests = [r for r in mirror.gets() if unquote(r.url_path) == f"/tiny/{path}"]
        assert [r.status for r in requests] == [404]  # a 404 is an answer, not a hiccup: no retry
    for path, data in TINY_FILES.items():
        assert (tmp_path / "d" / "tiny" / path).read_bytes() == data


def test_mirror_answering_503_is_retried_at_most_once(
    tiny: HubServer, mirror: FolderServer, tmp_path: Path
) -> None:
    fill_folder(mirror.root, TINY_FILES)
    mirror.faults.add(Fault.http_error(503, retry_after=0, times=None))
    report = pull(
        tiny, tmp_path / "d", [models()["tiny"]], mirrors=[mirror.url + "/{model}/{path}"]
    )
    assert report.ok, report.files
    assert all(f.mirror is None for f in report.files)
    for path in TINY_FILES:
        requests = [r for r in mirror.gets() if unquote(r.url_path) == f"/tiny/{path}"]
        assert [r.status for r in requests] == [503] * (1 + MIRROR_RETRIES)


def test_stalling_mirror_is_left_after_at_most_one_retry(
    tiny: HubServer, mirror: FolderServer, tmp_path: Path
) -> None:
    fill_folder(mirror.root, TINY_FILES)
    mirror.faults.add(
        Fault.stall(after_bytes=1000, seconds=10, path_prefix="/tiny/model.safetensors", times=None)
    )
    specs = [
        models(extra='[models.w]\nfiles = [{ repo = "org/tiny", path = "model.safetensors" }]\n')[
            "w"
        ]
    ]
    report = pull(
        tiny,
        tmp_path / "d",
        specs,
        env={"MDL_STALL_TIMEOUT": "0.15"},
        mirrors=[mirror.url + "/tiny/{path}"],
    )
    assert report.ok, report.files
    assert (tmp_path / "d" / "w" / "model.safetensors").read_bytes() == WEIGHTS
    assert len(mirror.gets("/tiny/model.safetensors")) <= 1 + MIRROR_RETRIES


# == 4. several mirrors, in order
# ========================================================================


@pytest.mark.slow
@pytest.mark.parametrize("first", ["dead", "404", "corrupt"])
def test_second_mirror_is_used_when_the_first_fails(
    tiny: HubServer, mirror: FolderServer, tmp_path: Path, first: str
) -> None:
    fill_folder(mirror.root, TINY_FILES)
    with FolderServer(tmp_path / "first-root") as other:
        if first == "corrupt":
            fill_folder(other.root, {p: b"x" * len(d) for p, d in TINY_FILES.items()})
        first_url = dead_url() if first == "dead" else other.url
        templates = [first_url + "/{model}/{path}", mirror.url + "/{model}/{path}"]
        report = pull(tiny, tmp_path / "d", [models()["tiny"]], mirrors=templates)
        assert report.ok, report.files
        assert {f.path: f.mirror for f in report.files} == {
            "config.json": mirror.url + "/tiny/config.json",
            "model.safetensors": mirror.url + "/tiny/model.safetensors",
            "vocab.txt": mirror.url + "/tiny/vocab.txt",
            SPECIAL: mirror.url + "/tiny/nested/sp%C3%A9cial%20tokens.json",
        }
        if first != "dead":
            # each file asked there once, in order, before the second
            assert len(other.gets()) == len(TINY_FILES)
    for path, data in TINY_FILES.items():
        assert (tmp_path / "d" / "tiny" / path).read_bytes() == data
    assert origin_body_requests(tiny) == []


# == 5. mirrors get no credentials
# ========================================================================


def test_hub_token_is_never_sent_to_a_mirror(
    tiny: HubServer, mirror: FolderServer, tmp_path: Path
) -> None:
    # one corrupt file: the origin is used too
    fill_folder(mirror.root, {**TINY_FILES, "config.json": b"{}"})
    fill_folder(mirror.root, {"vae/ae.safetensors": WEIGHTS, "config.json": CONFIG}, model="combo")
    m = models()
    report = pull(
        tiny,
        tmp_path / "d",
        [m["tiny"], m["combo"]],
        env={"HF_TOKEN": TOKEN},
        mirrors=[mirror.url + "/{model}/{path}"],
    )
    assert report.ok, report.files
    assert by_path(report)[("tiny", "config.json")].mirror is None
    assert by_path(report)[("tiny", "model.safetensors")].mirror is not None
    assert mirror.log.records()
    assert all(r.authorization is None for r in mirror.log.records())
    # The token still went to the Hub (for the listing and the file that fell back), and only there.
    assert tiny.log.records() and all(
        r.authorization == f"Bearer {TOKEN}" for r in tiny.log.records()
    )
    assert all(r.authorization is None for r in tiny.cdn.log.records())


def test_direct_url_headers_are_never_sent_to_a_mirror(
    tiny: HubServer,
    cdn: CdnServer,
    mirror: FolderServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    secret = {"Authorization": "Bearer civ-secret-123", "X-Api-Key": "k-secret-456"}
    url = cdn.add_file("/loras/style.safetensors", LORA, required_headers=secret)
    broken = cdn.add_file("/loras/broken.safetensors", LORA, required_headers=secret)
    headers = '{ Authorization = "Bearer ${CIV}", X-Api-Key = "${KEY}" }'
    extra = f"""
[models.lora]
files = [
  {{ url = "{url}", sha256 = "{sha(LORA)}", headers = {headers} }},
  {{ url = "{broken}", sha256 = "{sha(LORA)}", headers = {headers} }},
]
"""
    fill_folder(
        mirror.root, {"style.safetensors": LORA, "broken.safetensors": LORA[::-1]}, model="lora"
    )
    report = pull(
        tiny,
        tmp_path / "d",
        [models(extra=extra)["lora"]],
        env={"CIV": "civ-secret-123", "KEY": "k-secret-456"},
        mirrors=[mirror.url + "/{model}/{path}"],
    )
    assert report.ok, report.files
    assert (
        by_path(report)[("lora", "style.safetensors")].mirror
        == mirror.url + "/lora/style.safetensors"
    )
    # corrupt there: the origin, with headers
    assert by_path(report)[("lora", "broken.safetensors")].mirror is None
    assert (tmp_path / "d" / "lora" / "broken.safetensors").read_bytes() == LORA
    assert len(mirror.gets()) == 2
    for record in mirror.log.records():
        assert record.authorization is None and record.header("x-api-key") is None
    # The origin got its headers for the file that fell back, and served nothing for the mirrored
    # one.
    assert [r.url_path for r in cdn.log.records(method="GET")] == ["/loras/broken.safetensors"]
    assert all(r.authorization == "Bearer civ-secret-123" for r in cdn.log.records())


# == 6. templates: filling, validation, precedence
# =======================================================


def remote(**fields: Any) -> RemoteFile:
    base: dict[str, Any] = {
        "model": "tiny",
        "path": "model.safetensors",
        "url": "https://origin.example/x",
    }
    return RemoteFile(**{**base, **fields})


HEX64 = "ab" * 32
HEX40 = "cd" * 20
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def mirror_urls(templates: list[str], remote: RemoteFile) -> list[str]:
    return [url for _, url in mirror_targets(templates, remote)]


def test_mirror_urls_fill_every_placeholder_and_quote() -> None:
    file = remote(
        path="nested/spécial tokens 100%.json",
        sha256=HEX64,
        repo="org/tiny",
        revision="refs/pr/1",
        commit=COMMIT,
        model="my model",
    )
    templates = [
        "http://m/{model}/{path}",
        "http://m/{repo}/resolve/{revision}/{path}",
        "http://m/{repo}@{commit}/{path}",
        "http://m/cas/{sha256}",
        "http://m/static",  # no placeholder at all: the same URL for every file (allowed, if odd)
    ]
    assert mirror_urls(templates, file) == [
        "http://m/my%20model/nested/sp%C3%A9cial%20tokens%20100%25.json",
        "http://m/org/tiny/resolve/refs%2Fpr%2F1/nested/sp%C3%A9cial%20tokens%20100%25.json",
        f"http://m/org/tiny@{COMMIT}/nested/sp%C3%A9cial%20tokens%20100%25.json",
        f"http://m/cas/{HEX64}",
        "http://m/static",
    ]


def test_mirror_urls_skip_templates_the_file_cannot_fill() -> None:
    templates = [
        "http://m/{repo}/{path}",
        "http://m/cas/{sha256}",
        "http://m/{commit}/{path}",
        "http://m/{model}/{path}",
    ]
    direct = remote(sha256=HEX64)  # a direct URL: no repo, no commit
    assert mirror_urls(templates, direct) == [
        f"http://m/cas/{HEX64}",
        "http://m/tiny/model.safetensors",
    ]
    # a small Hub file
    small = remote(path="config.json", git_oid=HEX40, repo="org/tiny", commit=COMMIT)
    assert mirror_urls(templates, small) == [
        "http://m/org/tiny/config.json",
        f"http://m/{COMMIT}/config.json",
        "http://m/tiny/config.json",
    ]


def test_mirror_urls_need_a_hash_to_check_against() -> None:
    unhashed = remote(repo="org/tiny", commit=COMMIT, size=10, etag='"abc"')
    assert mirror_urls(["http://m/{model}/{path}"], unhashed) == []
    assert mirror_urls([], remote(sha256=HEX64)) == []


@pytest.mark.slow
@pytest.mark.parametrize(
    ("template", "words"),
    [
        ("http://m/{model}/{name}", ["unknown placeholder", "{name}"]),
        ("ftp://m/{model}/{path}", ["http(s)"]),
        ("/srv/models/{model}/{path}", ["http(s)"]),
        ("http://m/{model/{path}", ["http://m/{model/{path}"]),
        ("http://m/{}/{path}", ["unknown placeholder"]),
        ("http://m/{path.upper}", ["unknown placeholder"]),
        # format specs and conversions are refused at load time, never run at pull time (issue 27)
        ("http://m/{model}/{path:d}", ["{path} takes no format spec"]),
        ("http://m/{model}/{path:{sha256}}", ["lone '{'"]),
        ("http://m/{path:>99999999999999999999}", ["{path} takes no format spec"]),
        ("http://m/{path:>20000000}", ["{path} takes no format spec"]),
        ("http://m/{path!r}", ["{path} takes no format spec"]),
        ("http://m/{{model}}/{path}", ["lone '{'"]),
        ("http://m/{model}}/{path}", ["lone '{'"]),
    ],
)
def test_bad_mirror_template_in_the_catalog_is_a_usage_error(
    tiny: HubServer, tmp_path: Path, template: str, words: list[str]
) -> None:
    catalog = write_catalog(tmp_path / "bad.toml", ["http://ok/{model}/{path}", template])
    result = mdl("pull", "tiny", "--catalog", str(catalog), "--dest", str(tmp_path / "d"))
    assert result.exit_code == ExitCode.USAGE, result.stderr
    assert "settings.mirrors[1]" in result.stderr
    for word in words:
        assert word in result.stderr
    assert "Traceback" not in result.stderr
    assert len(tiny.log) == 0  # refused before any network


def test_first_bad_mirror_is_named_by_its_index(tiny: HubServer, tmp_path: Path) -> None:
    catalog = write_catalog(tmp_path / "bad.toml", ["gopher://m/{path}"])
    result = mdl("list", "--catalog", str(catalog), "--json")
    assert result.exit_code == 2
    assert "settings.mirrors[0]" in result.stderr
    assert json.loads(result.stdout)["ok"] is False


def test_mirrors_must_be_a_list_of_strings(tiny: HubServer, tmp_path: Path) -> None:
    catalog = tmp_path / "bad.toml"
    catalog.write_text(
        '[settings]\nmirrors = "http://m/{model}/{path}"\n[models.x]\nrepo = "org/tiny"\n'
    )
    result = mdl("list", "--catalog", str(catalog))
    assert result.exit_code == 2
    assert "settings.mirrors" in result.stderr


@pytest.mark.slow
def test_env_mirrors_override_the_catalog(
    tiny: HubServer, mirror: FolderServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fill_folder(mirror.root, TINY_FILES)
    with FolderServer(tmp_path / "catalog-root") as catalog_mirror:
        fill_folder(catalog_mirror.root, TINY_FILES)
        catalog = write_catalog(tmp_path / "c.toml", [catalog_mirror.url + "/{model}/{path}"])
        # Whitespace-separated, the first one dead: both env mirrors are used in order, the
        # catalog's never.
        monkeypatch.setenv(
            "MDL_MIRRORS", f"  {dead_url()}/{{model}}/{{path}}\n\t{mirror.url}/{{model}}/{{path}} "
        )
        result = mdl(
            "pull", "tiny", "--catalog", str(catalog), "--dest", str(tmp_path / "d"), "--json"
        )
        assert result.exit_code == 0, result.stderr
        assert {f["mirror"] for f in outcomes(result).values()} == {
            mirror.url + "/tiny/config.json",
            mirror.url + "/tiny/model.safetensors",
            mirror.url + "/tiny/vocab.txt",
            mirror.url + "/tiny/nested/sp%C3%A9cial%20tokens.json",
        }
        assert catalog_mirror.log.records() == []


def test_bad_env_mirror_is_a_usage_error(
    tiny: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MDL_MIRRORS", "http://ok/{model}/{path} http://m/{nope}")
    result = mdl(
        "pull",
        "tiny",
        "--catalog",
        str(write_catalog(tmp_path / "c.toml")),
        "--dest",
        str(tmp_path / "d"),
    )
    assert result.exit_code == 2, result.stderr
    assert "$MDL_MIRRORS" in result.stderr and "{nope}" in result.stderr
    assert len(tiny.log) == 0


def test_content_addressed_mirror_serves_lfs_files_by_sha256(
    tiny: HubServer, mirror: FolderServer, tmp_path: Path
) -> None:
    (mirror.root / "cas").mkdir()
    (mirror.root / "cas" / sha(WEIGHTS)).write_bytes(WEIGHTS)
    dest = tmp_path / "d"
    m = models()
    report = pull(tiny, dest, [m["tiny"], m["combo"]], mirrors=[mirror.url + "/cas/{sha256}"])
    assert report.ok, report.files
    # Both copies of the LFS file come from the store; the small git files have no sha256 to
    # address: the origin.
    assert {(f.model, f.path): f.mirror for f in report.files} == {
        ("tiny", "config.json"): None,
        ("tiny", "model.safetensors"): f"{mirror.url}/cas/{sha(WEIGHTS)}",
        ("tiny", "vocab.txt"): None,
        ("tiny", SPECIAL): None,
        ("combo", "vae/ae.safetensors"): f"{mirror.url}/cas/{sha(WEIGHTS)}",
        ("combo", "config.json"): None,
    }
    assert (dest / "combo" / "vae" / "ae.safetensors").read_bytes() == WEIGHTS
    assert {r.url_path for r in mirror.gets()} == {f"/cas/{sha(WEIGHTS)}"}
    assert tiny.cdn.log.body_bytes() == 0  # the only LFS blob never left the origin's CDN


def test_hub_shaped_mirror_by_repo_and_revision_follows_its_redirects(
    tiny: HubServer, tmp_path: Path
) -> None:
    # A second Hub stand-in (a caching proxy of the Hub, say): resolve URLs that 302 to its own CDN.
    with HubServer() as proxy:
        proxy.add_repo("org/tiny", TINY_FILES)
        template = proxy.url + "/{repo}/resolve/{revision}/{path}"
        report = pull(
            tiny, tmp_path / "d", [models()["tiny"]], env={"HF_TOKEN": TOKEN}, mirrors=[template]
        )
        assert report.ok, report.files
        assert (
            by_path(report)[("tiny", "model.safetensors")].mirror
            == proxy.url + "/org/tiny/resolve/main/model.safetensors"
        )
        # the LFS file came via the proxy's redirect
        assert proxy.cdn.log.body_bytes() == len(WEIGHTS)
        assert all(
            r.authorization is None for r in [*proxy.log.records(), *proxy.cdn.log.records()]
        )
        assert proxy.errors == [] and proxy.cdn.errors == []
    assert origin_body_requests(tiny) == []
    for path, data in TINY_FILES.items():
        assert (tmp_path / "d" / "tiny" / path).read_bytes() == data


# == 7. offline means no network, mirrors included
# =======================================================


def test_offline_never_asks_a_mirror(tiny: HubServer, mirror: FolderServer, tmp_path: Path) -> None:
    fill_folder(mirror.root, TINY_FILES)
    catalog = write_catalog(tmp_path / "c.toml", [mirror.url + "/{model}/{path}"])
    dest = tmp_path / "d"
    assert mdl("pull", "tiny", "--catalog", str(catalog), "--dest", str(dest)).exit_code == 0
    (dest / "tiny" / "model.safetensors").unlink()
    clear_logs(tiny, mirror)

    online = mdl("pull", "tiny", "--catalog", str(catalog), "--dest", str(dest), "--json")
    assert online.exit_code == 0  # sanity: without HF_HUB_OFFLINE the mirror fills the gap
    assert (
        outcomes(online)[("tiny", "model.safetensors")]["mirror"]
        == mirror.url + "/tiny/model.safetensors"
    )
    (dest / "tiny" / "model.safetensors").unlink()
    clear_logs(tiny, mirror)

    result = mdl(
        "pull",
        "tiny",
        "--catalog",
        str(catalog),
        "--dest",
        str(dest),
        "--json",
        env={"HF_HUB_OFFLINE": "1"},
    )
    assert result.exit_code == ExitCode.NETWORK, result.stderr
    failed = [f for f in outcomes(result).values() if f["action"] == "failed"]
    assert [f["path"] for f in failed] == ["model.safetensors"]
    assert "HF_HUB_OFFLINE" in failed[0]["error"]
    assert mirror.log.records() == []
    assert len(tiny.log) == len(tiny.cdn.log) == 0

    never = mdl(
        "pull",
        "combo",
        "--catalog",
        str(catalog),
        "--dest",
        str(dest),
        "--json",
        env={"HF_HUB_OFFLINE": "1"},
    )
    assert never.exit_code == 5
    assert mirror.log.records() == [] and len(tiny.log) == 0


# == 8. direct-URL files through a mirror
# =================================================================


def test_direct_url_file_is_served_by_the_mirror(
    tiny: HubServer, cdn: CdnServer, mirror: FolderServer, tmp_path: Path
) -> None:
    url = cdn.add_file("/loras/style.safetensors", LORA)
    unhashed = cdn.add_file("/loras/nohash.bin", b"no hash known\n")
    extra = f"""
[models.lora]
files = [
  {{ url = "{url}", sha256 = "{sha(LORA)}", as = "loras/style v2.safetensors" }},
  {{ url = "{unhashed}" }},
]
"""
    fill_folder(
        mirror.root,
        {"loras/style v2.safetensors": LORA, "nohash.bin": b"no hash known\n"},
        model="lora",
    )
    dest = tmp_path / "d"
    report = pull(
        tiny, dest, [models(extra=extra)["lora"]], mirrors=[mirror.url + "/{model}/{path}"]
    )
    assert report.ok, report.files
    assert by_path(report)[("lora", "loras/style v2.safetensors")].mirror == (
        mirror.url + "/lora/loras/style%20v2.safetensors"
    )
    assert (dest / "lora" / "loras" / "style v2.safetensors").read_bytes() == LORA
    # A file with no sha256 cannot be checked against the origin: the mirror is not even asked for
    # it.
    assert by_path(report)[("lora", "nohash.bin")].mirror is None
    assert [unquote(r.url_path) for r in mirror.gets()] == ["/lora/loras/style v2.safetensors"]
    assert [r.url_path for r in cdn.log.records(method="GET") if r.bytes_sent > 1] == [
        "/loras/nohash.bin"
    ]
    assert cdn.log.body_bytes(path_prefix="/loras/style.safetensors") == 0


# == the same mirror feeds the hf-cache layout
# ============================================================


def test_mirror_feeds_the_hf_cache_layout(
    tiny: HubServer, mirror: FolderServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "hf-cache"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    fill_folder(mirror.root, TINY_FILES)
    catalog = write_catalog(tmp_path / "c.toml", [mirror.url + "/{model}/{path}"])
    result = mdl(
        "pull",
        "tiny",
        "--catalog",
        str(catalog),
        "--dest",
        str(tmp_path / "d"),
        "--layout",
        "hf-cache",
        "--json",
    )
    assert result.exit_code == 0, result.stderr
    assert all("mirror" in f for f in outcomes(result).values())
    snapshot = cache / "models--org--tiny" / "snapshots" / tiny.repo("org/tiny").sha
    for path, data in TINY_FILES.items():
        assert (snapshot / path).read_bytes() == data
    assert (cache / "models--org--tiny" / "blobs" / sha(WEIGHTS)).read_bytes() == WEIGHTS
    assert origin_body_requests(tiny) == []


def test_renamed_hub_file_from_a_hub_shaped_mirror_is_still_correct(
    tiny: HubServer, tmp_path: Path
) -> None:
    # combo saves org/tiny:model.safetensors `as` vae/ae.safetensors: {path} is the save path, so a
    # Hub-shaped template asks the proxy for vae/ae.safetensors, which it does not have. Whatever it
    # asks, the result is right.
    with HubServer() as proxy:
        proxy.add_repo("org/tiny", TINY_FILES)
        template = proxy.url + "/{repo}/resolve/{revision}/{path}"
        report = pull(tiny, tmp_path / "d", [models()["combo"]], mirrors=[template])
        assert report.ok, report.files
        assert (tmp_path / "d" / "combo" / "vae" / "ae.safetensors").read_bytes() == WEIGHTS
        assert (tmp_path / "d" / "combo" / "config.json").read_bytes() == CONFIG
        assert (
            by_path(report)[("combo", "config.json")].mirror
            == proxy.url + "/org/tiny/resolve/main/config.json"
        )


# == when every source fails, the origin's failure is the one reported
# ===================================


@pytest.mark.parametrize("status", [401, 403, 410, 500])
def test_mirror_error_statuses_fall_through(
    tiny: HubServer, mirror: FolderServer, tmp_path: Path, status: int
) -> None:
    fill_folder(mirror.root, TINY_FILES)
    mirror.faults.add(Fault.http_error(status, retry_after=0, times=None))
    report = pull(
        tiny, tmp_path / "d", [models()["tiny"]], mirrors=[mirror.url + "/{model}/{path}"]
    )
    assert report.ok, report.files
    assert all(f.mirror is None for f in report.files)
    for path, data in TINY_FILES.items():
        assert (tmp_path / "d" / "tiny" / path).read_bytes() == data


def test_corrupt_mirror_and_unreachable_origin_fail_as_a_network_error(
    tiny: HubServer, mirror: FolderServer, tmp_path: Path
) -> None:
    bad = bytearray(WEIGHTS)
    bad[0] ^= 1
    fill_folder(mirror.root, {**TINY_FILES, "model.safetensors": bytes(bad)})
    tiny.cdn.faults.add(Fault.http_error(503, retry_after=0, path_prefix="/blobs/", times=None))
    dest = tmp_path / "d"
    report = pull(
        tiny,
        dest,
        [models()["tiny"]],
        env={"MDL_RETRIES": "1"},
        mirrors=[mirror.url + "/{model}/{path}"],
    )
    failed = by_path(report)[("tiny", "model.safetensors")]
    assert failed.action == "failed"
    # The last source tried was the origin, and it is the origin's failure that counts (a later run
    # may succeed), not the mirror's mismatch (which would read as "the upstream file is corrupt").
    assert report.exit_code == ExitCode.NETWORK, failed.error
    assert "503" in (failed.error or "")
    assert not (dest / "tiny" / "model.safetensors").exists()
    assert all(f.action == "downloaded" for f in report.files if f.path != "model.safetensors")


def test_dead_mirror_and_corrupt_origin_fail_as_an_integrity_error(
    tiny: HubServer, tmp_path: Path
) -> None:
    bad = bytearray(WEIGHTS)
    bad[5] ^= 1
    blob = tiny.cdn.add_blob(tiny.repo("org/tiny").file("model.safetensors").content)
    # the CDN now serves bad bytes
    tiny.cdn.add_file(blob, bytes(bad), etag=f'"{sha(WEIGHTS)}"', signed=True)
    dest = tmp_path / "d"
    report = pull(tiny, dest, [models()["tiny"]], mirrors=[dead_url() + "/{model}/{path}"])
    failed = by_path(report)[("tiny", "model.safetensors")]
    assert failed.action == "failed"
    assert report.exit_code == ExitCode.INTEGRITY, failed.error
    assert "sha256 mismatch" in (failed.error or "")
    assert not (dest / "tiny" / "model.safetensors").exists()
    assert_no_debris(dest, "tiny", ["model.safetensors"])


class ByteCounter(NullProgress):
    """Sums what the engine reports as transferred (what the total bar and its ETA are built
    from).
    """

    def __init__(self) -> None:
        self.total = 0
        self._lock = threading.Lock()

    def advance(self, key: str, nbytes: int) -> None:
        with self._lock:
            self.total += nbytes


def test_discarded_mirror_bytes_are_taken_back_from_the_progress_total(
    tiny: HubServer, mirror: FolderServer, tmp_path: Path
) -> None:
    bad = bytearray(WEIGHTS)
    bad[3] ^= 1
    fill_folder(mirror.root, {**TINY_FILES, "model.safetensors": bytes(bad)})
    counter = ByteCounter()
    mirrors = CatalogSettings(mirrors=(mirror.url + "/{model}/{path}",))
    settings = build_settings(
        environ={"HF_ENDPOINT": tiny.url}, dest=tmp_path / "d", catalog=mirrors
    )
    report = pull_models([models()["tiny"]], settings, progress=counter)
    assert report.ok, report.files
    assert counter.total == sum(len(data) for data in TINY_FILES.values())


def test_a_failed_mirror_leaves_no_bytes_for_the_origin_to_resume_on(
    hub: HubServer, tmp_path: Path
) -> None:
    """A mirror that cuts off, claiming the origin's ETag, must not get its bytes spliced in
    (even --no-verify).
    """
    good = make_data(3_000_000, seed=31)
    bad = make_data(3_000_000, seed=32)
    hub.add_repo("org/m", {"w.safetensors": good})
    mirror = CdnServer().start()
    try:
        mirror.add_file("/m/w.safetensors", bad, etag=f'"{hashlib.sha256(good).hexdigest()}"')
        mirror.faults.add(Fault.reset(after_bytes=1_000_000, path_prefix="/m/"))
        mirror.faults.add(Fault.http_error(404, path_prefix="/m/", times=None))
        spec = parse_catalog('[models.m]\nrepo = "org/m"\n', source="c.toml").get("m")
        report = pull(
            hub, tmp_path / "d", [spec], mirrors=[mirror.url + "/{model}/{path}"], verify=False
        )
    finally:
        mirror.stop()
    assert report.ok, report.files
    assert (tmp_path / "d" / "m" / "w.safetensors").read_bytes() == good
    assert report.files[0].action == "downloaded", (
        "fetched from zero, not resumed on the mirror's bytes"
    )


@pytest.mark.slow
@pytest.mark.parametrize("where", ["--mirror", "MDL_MIRRORS"])
@pytest.mark.parametrize(
    "template", ["http://m/{model}/{path:d}", "http://m/{path:>20000000}", "http://m/{path!s}"]
)
def test_a_format_spec_from_the_flag_or_environment_is_refused_before_any_request(
    tiny: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str, template: str
) -> None:
    catalog = write_catalog(tmp_path / "c.toml", [])
    args = ["pull", "tiny", "--catalog", str(catalog), "--dest", str(tmp_path / "d")]
    if where == "--mirror":
        args += ["--mirror", template]
    else:
        monkeypatch.setenv("MDL_MIRRORS", template)
    result = mdl(*args)
    assert result.exit_code == ExitCode.USAGE, result.stderr
    assert ("--mirror" if where == "--mirror" else "$MDL_MIRRORS") in result.stderr
    assert "takes no format spec" in result.stderr and "Traceback" not in result.stderr
    assert len(tiny.log) == 0
    assert not (tmp_path / "d" / "tiny").exists()


_FIELD = st.sampled_from(["model", "repo", "revision", "commit", "path", "sha256"])
_TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12)


@given(pieces=st.lists(st.one_of(_TEXT, _FIELD.map(lambda f: "{" + f + "}")), max_size=8))
def test_any_accepted_template_is_filled_by_plain_replacement(pieces: list[str]) -> None:
    """Whatever the text, a template is either refused (UsageError) or filled by replacing each
    {field} with its value and nothing else: the result never depends on str.format's mini-language.
    """
    template = "http://m/" + "".join(pieces)
    try:
        parts = parse_template(template, fields=MIRROR_FIELDS, where="mirror")
    except UsageError:
        assert "{" in template[9:] or "}" in template[9:]
        return
    values = {f: f"<{f.upper()}>" for f in MIRROR_FIELDS}
    expected = template
    for field in MIRROR_FIELDS:
        expected = expected.replace("{" + field + "}", values[field])
    assert fill_template(parts, values) == expected


@given(template=st.text(max_size=60))
def test_no_template_text_ends_in_anything_but_a_usage_error(template: str) -> None:
    try:
        check_mirror("http://m/" + template, where="--mirror")
    except UsageError as exc:
        assert len(exc.message) < 700  # a huge template is not echoed whole
