"""--fill-mirror in parts (issue 61) against a hostile mirror and hostile timing: parts that are
links, FIFOs or folders on a shared folder, a listing of names that are not parts, a live lease
whose parts stop, a follower that has every part before the holder made the object."""

from __future__ import annotations

import hashlib
import logging
import os
import re
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from buckets.memstore import MemoryStore
from clocks import VirtualWaits
from runfixtures import HANG, wait_for
from s3server import S3, s3, s3_server  # noqa: F401
from servers import HubServer, make_data

import mdl.buckets.lease as lease_module
import mdl.download._fill as fill_module
from mdl import partsize
from mdl.buckets.lease import lease_body
from mdl.buckets.names import Generation, Part, namespace
from mdl.buckets.protocol import Writer
from mdl.buckets.registry import STORES
from mdl.catalog.load import parse_catalog
from mdl.catalog.settings import build_settings
from mdl.catalog.specs import CatalogSettings
from mdl.download._parts import PartSet
from mdl.download.puller import pull_models
from mdl.download.session import TERM_VARIABLE, PullSession
from mdl.errors import InterruptedByUserError
from mdl.progress import Progress
from mdl.report import RunReport
from mdl.setting import Overrides
from mdl.store.store import Store
from mdl.transfer.http import Credentials
from mdl.transfer.job import Identity, RetryLog, TransferJob

PART = 1 << 20  # the tests' part size (MiB): 40 parts
# 40 MiB + 3 bytes: fetched in parallel ranges (a record saved as they land), a short last part
WEIGHTS = make_data(40 * PART + 3, seed=61)
SHA = hashlib.sha256(WEIGHTS).hexdigest()
COUNT = 41  # parts: 40 whole, then 3 bytes
CATALOG = """
[models.tiny]
repo = "org/tiny"
include = ["*.safetensors"]
"""


@pytest.fixture(autouse=True)
def small_parts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(partsize, "PART", PART)


@pytest.fixture
def virtual_waits(monkeypatch: pytest.MonkeyPatch) -> VirtualWaits:
    """A follower's patience set by the test, not by how fast this machine reads the parts: a few
    terms of an hour (0.72 s) on the test's clock, half a second of it between two looks, none
    while it reads; it gives up at its second look after reading every part published."""
    monkeypatch.setattr("mdl.buckets.lease.STALL_TERMS", 0.0002)
    waits = VirtualWaits(pause=0.5)
    monkeypatch.setattr(fill_module, "wait_for", waits.wrap(lease_module.wait_for))
    return waits


@pytest.fixture
def tiny(hub: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> HubServer:
    hub.add_repo("org/tiny", {"model.safetensors": WEIGHTS})
    monkeypatch.setenv("MDL_LOG_FILE", str(tmp_path / "mdl.log"))
    return hub


@pytest.fixture
def root(tmp_path: Path) -> Path:
    folder = tmp_path / "shared"
    folder.mkdir()
    return folder


def pull(hub: HubServer, dest: Path, root: Path, env: dict[str, str] | None = None) -> RunReport:
    environ = {"HF_ENDPOINT": hub.url, **(env or {})}
    catalog = CatalogSettings(mirrors=(f"file://{root}/{{model}}/{{path}}",))
    settings = build_settings(
        Overrides(fill_mirror=True), environ=environ, dest=dest, catalog=catalog
    )
    return pull_models(parse_catalog(CATALOG).models, settings, progress=Progress())


def in_thread(
    hub: HubServer, dest: Path, root: Path, env: dict[str, str] | None = None
) -> tuple[threading.Thread, list[RunReport]]:
    reports: list[RunReport] = []
    thread = threading.Thread(target=lambda: reports.append(pull(hub, dest, root, env)))
    thread.start()
    return thread, reports


def writer() -> Writer:
    return STORES["file"].writer(endpoint=None, secrets=None)


def object_uri(root: Path) -> str:
    return f"file://{root}/tiny/model.safetensors"


HELD = "ab" * 16  # the token of the leases the tests write: their holder's parts go under it


def first_of(root: Path) -> Part:
    """The first part the tests' holder (``HELD``) publishes of the file."""
    ns = namespace(f"file://{root}/{{model}}/{{path}}")
    assert ns is not None
    return Part.of(ns, object_uri(root), pin=SHA, size=len(WEIGHTS), token=HELD)


def parts_of(root: Path) -> tuple[str, int]:
    first = first_of(root)
    return first.prefix, first.size


def part_files(root: Path) -> list[Path]:
    return sorted(p for p in (root / ".mdl" / "parts").rglob("*") if p.is_file())


def publish(root: Path, numbers: range, *, wrong: int | None = None) -> None:
    """Parts of the weights published as a holder would (``wrong``: that one's bytes flipped)."""
    prefix, part = parts_of(root)
    for n in numbers:
        data = WEIGHTS[(n - 1) * part : n * part]
        if n == wrong:
            data = bytes([data[0] ^ 1]) + data[1:]
        assert writer().create(f"{prefix}{n:05d}", data) is not None


def dead_holder(root: Path, *, aged: bool) -> None:
    """A lease another machine took and never renews (killed); ``aged``: an hour ago (lapsed by
    the folder's clock), else now (it lapses within the pull's 1 s term)."""
    ns = namespace(f"file://{root}/{{model}}/{{path}}")
    assert ns is not None
    first = Generation.of(ns, object_uri(root)).uri
    assert writer().create(first, lease_body("dead:1:x", HELD)) is not None
    if aged:
        an_hour_ago = time.time() - 3600
        os.utime(root / first.removeprefix("file://"), (an_hour_ago, an_hour_ago))


def cdn_bytes(hub: HubServer) -> int:
    return hub.cdn.log.body_bytes()


def log_has(caplog: pytest.LogCaptureFixture, text: str) -> bool:
    return any(text in r.getMessage() for r in list(caplog.records))


def live_liar(root: Path) -> str:
    """A lease another machine holds (an hour's term by the pull's setting) and never releases."""
    ns = namespace(f"file://{root}/{{model}}/{{path}}")
    assert ns is not None
    prefix = Generation.of(ns, object_uri(root)).uri.removesuffix("1")
    assert writer().create(f"{prefix}1", lease_body("liar:1:x", HELD)) is not None
    return prefix


def test_a_follower_with_every_part_before_the_object_is_made_installs_them(
    tiny: HubServer, root: Path, tmp_path: Path
) -> None:
    """The holder published its last part and is making the object: the follower has all the
    bytes (right ones) and must not fetch them again from the origin."""
    live_liar(root)
    publish(root, range(1, COUNT + 1))
    report = pull(tiny, tmp_path / "a", root, env={TERM_VARIABLE: "3600"})
    assert report.exit_code == 0, report.files
    (outcome,) = report.files
    assert (tmp_path / "a" / "tiny" / "model.safetensors").read_bytes() == WEIGHTS
    assert cdn_bytes(tiny) == 0, outcome


@pytest.mark.parametrize("kind", ["fifo", "link", "folder"])
def test_a_part_that_is_no_file_on_the_share_costs_only_its_bytes(
    tiny: HubServer, root: Path, tmp_path: Path, kind: str, virtual_waits: VirtualWaits
) -> None:
    """Part 1 is a FIFO, a link to a file of its size, or a folder; the rest are right; the lease
    stays live and nothing moves: the follower gives up (never hangs on the FIFO), keeps the parts
    it read, and fetches only part 1's bytes from the origin."""
    live_liar(root)
    prefix, part = parts_of(root)
    publish(root, range(2, COUNT + 1))
    first = root / prefix.removeprefix("file://") / "00001"
    if kind == "fifo":
        os.mkfifo(first)
    elif kind == "link":
        (tmp_path / "elsewhere").write_bytes(WEIGHTS[:part])
        first.symlink_to(tmp_path / "elsewhere")
    else:
        first.mkdir()
        (first / "00001").write_bytes(WEIGHTS[:part])
    report = pull(tiny, tmp_path / "a", root, env={TERM_VARIABLE: "3600"})
    assert report.exit_code == 0, report.files
    (outcome,) = report.files
    assert (tmp_path / "a" / "tiny" / "model.safetensors").read_bytes() == WEIGHTS
    assert outcome.fill == "from origin" and outcome.streamed == len(WEIGHTS) - part, outcome
    assert cdn_bytes(tiny) == part
    assert virtual_waits.pauses == 2  # it gave up on its patience, not on this machine's speed


def test_names_that_are_not_parts_do_not_keep_the_parts_in_the_mirror(
    tiny: HubServer, root: Path, tmp_path: Path
) -> None:
    """Another user's names under the parts' folder, sorting before them: the fill still removes
    every part it published once the object is there."""
    prefix, _ = parts_of(root)
    folder = root / prefix.removeprefix("file://")
    folder.mkdir(parents=True)
    for i in range(300):
        (folder / f"-junk{i:04d}").write_bytes(b"x")
    report = pull(tiny, tmp_path / "a", root)
    assert report.exit_code == 0, report.files
    assert (root / "tiny" / "model.safetensors").read_bytes() == WEIGHTS
    assert [p.name for p in part_files(root) if not p.name.startswith("-junk")] == []


def test_a_follower_stopped_mid_stream_keeps_what_it_read_for_its_next_run(
    tiny: HubServer,
    root: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Ctrl-C (the session's cancel) while it waits for more parts: exit 130 at once, the parts
    read kept in its partial and record; the next run, the holder gone, takes the lease, reads
    the rest of the parts and fetches nothing from the origin."""
    caplog.set_level(logging.INFO, logger="mdl.pull")
    cancel = threading.Event()
    monkeypatch.setattr(
        "mdl.download.puller.PullSession",
        lambda *args, **kwargs: PullSession(*args, **{**kwargs, "cancel": cancel}),
    )
    prefix = live_liar(root)
    publish(root, range(1, 18))
    stopped: list[BaseException] = []

    def run() -> None:
        try:
            pull(tiny, tmp_path / "a", root, env={TERM_VARIABLE: "3600"})
        except InterruptedByUserError as exc:
            stopped.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    wait_for(lambda: log_has(caplog, "parts another machine published"), what="parts read")
    cancel.set()
    thread.join(HANG)
    assert not thread.is_alive() and stopped
    assert list((tmp_path / "a" / ".mdl").rglob("*")), "nothing kept"
    monkeypatch.undo()
    monkeypatch.setattr(partsize, "PART", PART)
    # the holder published the rest, then died (its lease released)
    publish(root, range(18, COUNT + 1))
    assert writer().create(f"{prefix}2", lease_body("liar:1:x", HELD, released=True)) is not None
    again = pull(tiny, tmp_path / "a", root)
    assert again.exit_code == 0, again.files
    (outcome,) = again.files
    assert (tmp_path / "a" / "tiny" / "model.safetensors").read_bytes() == WEIGHTS
    assert cdn_bytes(tiny) == 0, outcome
    assert (root / "tiny" / "model.safetensors").read_bytes() == WEIGHTS
    assert part_files(root) == []


def test_the_object_appearing_while_parts_are_half_read_gives_the_rest(
    tiny: HubServer, root: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="mdl.pull")
    live_liar(root)
    publish(root, range(1, 18))
    thread, reports = in_thread(tiny, tmp_path / "a", root, env={TERM_VARIABLE: "3600"})
    # every published part read (a look reads a batch of them: on a busy machine the object
    # could otherwise come between two batches, and fewer parts be the follower's)
    wait_for(lambda: _parts_read(caplog) == 17, what="the 17 parts read")
    # the holder made the object (whole at once, as a store's and mdl's folder writes are) and
    # removed its parts
    (root / "tiny").mkdir()
    (root / "tiny" / ".model.tmp").write_bytes(WEIGHTS)
    (root / "tiny" / ".model.tmp").rename(root / "tiny" / "model.safetensors")
    for part in part_files(root):
        part.unlink()
    thread.join(HANG)
    (report,) = reports
    assert report.exit_code == 0, report.files
    (outcome,) = report.files
    assert (tmp_path / "a" / "tiny" / "model.safetensors").read_bytes() == WEIGHTS
    assert outcome.fill == "streamed" and outcome.streamed == 17 * PART, outcome
    assert cdn_bytes(tiny) == 0


def _parts_read(caplog: pytest.LogCaptureFixture) -> int:
    said = re.compile(r"read (\d+) parts another machine published")
    return sum(int(found[1]) for r in caplog.records if (found := said.search(r.getMessage())))


def test_a_look_at_a_folder_filled_with_other_names_reads_a_bounded_listing(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """2,000 names that are not parts beside the parts, sorting before them (another user of
    the share): they cost only their listing, bounded (the lease's listing is bounded so too),
    and hide no part; past the bound, no part is seen (the wait's stall decides)."""
    prefix, _ = parts_of(root)
    publish(root, range(1, 4))
    folder = root / prefix.removeprefix("file://")
    for i in range(2_000):
        (folder / f"0{i:05d}x").touch()
    read = 0
    scandir = os.scandir

    class Counted:
        def __init__(self, path: Any) -> None:
            self.found = scandir(path)

        def __enter__(self) -> Counted:
            return self

        def __exit__(self, *exc: object) -> None:
            self.found.close()

        def __iter__(self) -> Counted:
            return self

        def __next__(self) -> os.DirEntry[str]:
            nonlocal read
            entry = next(self.found)
            read += 1
            return entry

    monkeypatch.setattr(os, "scandir", Counted)
    parts = PartSet(writer(), first_of(root), len(WEIGHTS))
    assert parts.published() == {1, 2, 3}
    assert read <= lease_module.LISTED_LIMIT + 1
    monkeypatch.setattr(lease_module, "LISTED_LIMIT", 1_000)
    read = 0
    assert parts.published() == set()
    assert read <= 1_001


def test_a_follower_whose_partial_is_a_folder_fails_short(
    tiny: HubServer, root: Path, tmp_path: Path
) -> None:
    """A folder where the follower's ``.part`` goes: exit 7 naming it (as the engine says of its
    own), no traceback, no hang."""
    live_liar(root)
    publish(root, range(1, 18))
    part_path, _ = Store(tmp_path / "a").part_paths("tiny", "model.safetensors")
    part_path.mkdir(parents=True)
    report = pull(tiny, tmp_path / "a", root, env={TERM_VARIABLE: "3600"})
    (outcome,) = report.files
    assert report.exit_code == 7 and outcome.error, outcome


@pytest.mark.parametrize("size", [PART + 1, 2 * PART - 1, 3 * PART])
@pytest.mark.parametrize("published", [1, 2])
def test_a_taker_of_a_file_one_byte_past_a_part_fetches_only_the_rest(
    hub: HubServer,
    root: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    size: int,
    published: int,
) -> None:
    monkeypatch.setenv("MDL_LOG_FILE", str(tmp_path / "mdl.log"))
    data = make_data(size, seed=size)
    digest = hashlib.sha256(data).hexdigest()
    hub.add_repo("org/tiny", {"model.safetensors": data})
    dead_holder(root, aged=True)
    ns = namespace(f"file://{root}/{{model}}/{{path}}")
    assert ns is not None
    first = Part.of(ns, object_uri(root), pin=digest, size=size, token=HELD)
    prefix, part = first.prefix, first.size
    for n in range(1, published + 1):
        assert writer().create(f"{prefix}{n:05d}", data[(n - 1) * part : n * part]) is not None
    report = pull(hub, tmp_path / "a", root, env={TERM_VARIABLE: "1"})
    assert report.exit_code == 0, report.files
    (outcome,) = report.files
    kept = min(published * part, size)
    assert (tmp_path / "a" / "tiny" / "model.safetensors").read_bytes() == data
    assert outcome.fill == "filled" and outcome.streamed == kept, outcome
    assert cdn_bytes(hub) == size - kept
    assert (root / "tiny" / "model.safetensors").read_bytes() == data
    assert part_files(root) == []


def test_parts_that_cannot_be_published_still_leave_the_object_filled(
    tiny: HubServer, root: Path, tmp_path: Path
) -> None:
    """A file where the parts' folder goes (another user's, a store that refuses writes there):
    no part can be published, beside the fetch or at its end, yet the verified file is the
    mirror's object all the same (uploaded whole), as the publisher promises."""
    (root / ".mdl").mkdir()
    (root / ".mdl" / "parts").write_bytes(b"not a folder")
    report = pull(tiny, tmp_path / "a", root)
    assert report.exit_code == 0, report.files
    (outcome,) = report.files
    assert (tmp_path / "a" / "tiny" / "model.safetensors").read_bytes() == WEIGHTS
    assert (root / "tiny" / "model.safetensors").exists(), outcome.warnings
    assert (root / "tiny" / "model.safetensors").read_bytes() == WEIGHTS


def test_another_spelling_of_a_part_number_is_no_part(tmp_path: Path) -> None:
    """``1`` or ``000001`` beside the set is not part 1: a holder that counted it would never
    create ``00001``, and its followers would wait for it."""
    store = MemoryStore()
    job = TransferJob(
        label="m/f",
        url="http://127.0.0.1/f",
        identity=Identity(3 * (1 << 20) + 5, "a" * 64, None, None),
        credentials=Credentials(),
        final_path=tmp_path / "f",
        part_path=tmp_path / "f.part",
        state_path=tmp_path / "f.state",
        source="s",
        retries=RetryLog(),
        root=tmp_path,
    )
    parts = PartSet.of(store, "s3://b/m/.mdl/", "s3://b/m/x/f", job)
    assert parts is not None and parts.count > 1
    for name in ("1", "000001", "01", "+1"):
        store.put(parts.first.prefix + name, b"x" * parts.part)
    store.put(parts.uri(2), b"x" * parts.part)
    assert parts.published() == {2}


@pytest.mark.usefixtures("virtual_waits")
def test_parts_a_follower_threw_away_are_not_said_streamed(
    tiny: HubServer, root: Path, tmp_path: Path
) -> None:
    """Found (issue 75 F): a follower read every part under a live lease, the file they made
    failed its hash and was fetched again whole, yet ``--json`` said those bytes ``"streamed"``
    (and ``"fill": "streamed"`` when the mirror's object gave the rest). Only parts the installed
    file kept are said streamed: none here."""
    live_liar(root)
    publish(root, range(1, COUNT + 1), wrong=7)  # the right size, one byte wrong
    report = pull(tiny, tmp_path / "a", root, env={TERM_VARIABLE: "3600"})
    assert report.exit_code == 0, report.files
    (outcome,) = report.files
    assert (tmp_path / "a" / "tiny" / "model.safetensors").read_bytes() == WEIGHTS
    assert outcome.fill != "streamed" and outcome.streamed == 0, outcome
    assert "streamed" not in outcome.to_json(), outcome.to_json()
    assert outcome.fetched >= len(WEIGHTS) + (COUNT - 1) * PART  # the parts crossed the network
