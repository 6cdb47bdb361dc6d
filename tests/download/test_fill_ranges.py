"""A fleet with a trusted hash for every range (issue 70, item 5), against a real shared folder and
the Hub stand-in: a follower checks each peer part as it arrives (a wrong one planted under the
holder's token is neither written nor claimed, and only its bytes come again: from the mirror's
final object if there, else the origin), a wait counts only verified parts, and the holder
publishes only ranges that verified."""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from pathlib import Path
from typing import Any

import pytest
import rangetrust
from servers import HubServer, make_data

import mdl.download._swarm as swarm_module
from mdl import partsize
from mdl.buckets import names
from mdl.buckets.folder import FolderWriter
from mdl.buckets.lease import GaveUp, lease_body, wait_for
from mdl.buckets.names import Generation, Part, namespace
from mdl.catalog.load import parse_catalog
from mdl.catalog.settings import build_settings
from mdl.catalog.specs import CatalogSettings
from mdl.download._parts import PartSet, Publisher, Streamer
from mdl.download.puller import pull_models
from mdl.download.session import TERM_VARIABLE, FileSources
from mdl.progress import Progress
from mdl.report import RunReport
from mdl.setting import Overrides
from mdl.transfer import ranges
from mdl.transfer.http import Credentials
from mdl.transfer.job import Identity, RetryLog, TransferJob
from mdl.transfer.ranges import Digests, RangeCheck
from mdl.wait import Wait

PART = 1 << 20  # the tests' part size (MiB): 8 parts and 3 bytes
WEIGHTS = make_data(8 * PART + 3, seed=70)
SHA = hashlib.sha256(WEIGHTS).hexdigest()
COUNT = 9
WRONG = 4  # the planted part
HELD = "ab" * 16  # the token of the lease a test writes
CATALOG = """
[models.tiny]
repo = "org/tiny"
include = ["*.safetensors"]
"""


def trust_of(data: bytes, part: int = PART) -> Digests:
    return rangetrust.trust_of(data, part)


@pytest.fixture(autouse=True)
def small_parts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(partsize, "PART", PART)


@pytest.fixture
def trusted(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every pull's job for the model's file carries its range trust (what a lock's part hashes
    give it)."""
    rangetrust.give_trust(monkeypatch, WEIGHTS, PART)


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


def template_of(root: Path) -> str:
    return f"file://{root}/{{model}}/{{path}}"


def object_uri(root: Path) -> str:
    return f"file://{root}/tiny/model.safetensors"


def pull(hub: HubServer, dest: Path, root: Path, env: dict[str, str] | None = None) -> RunReport:
    environ = {"HF_ENDPOINT": hub.url, **(env or {})}
    catalog = CatalogSettings(mirrors=(template_of(root),))
    settings = build_settings(
        Overrides(fill_mirror=True), environ=environ, dest=dest, catalog=catalog
    )
    return pull_models(parse_catalog(CATALOG).models, settings, progress=Progress())


def flipped(data: bytes) -> bytes:
    return bytes([data[0] ^ 1]) + data[1:]


def holder_prefix(root: Path) -> str:
    ns = namespace(template_of(root))
    assert ns is not None
    return Part.of(ns, object_uri(root), pin=SHA, size=len(WEIGHTS), token=HELD).prefix


def version_prefix(root: Path) -> str:
    """Where a swarm publishes the version's parts (no holder's token)."""
    ns = namespace(template_of(root))
    assert ns is not None
    return Part.of(ns, object_uri(root), pin=SHA, size=len(WEIGHTS)).prefix


def planted_fleet(root: Path, *, wrong: tuple[int, ...] = (WRONG,), swarm: bool = False) -> str:
    """A live lease of ``HELD``'s (its URI), every part under its token (``swarm``: no lease, the
    version's own parts, where a swarm publishes them), the parts ``wrong`` another writer's."""
    ns = namespace(template_of(root))
    assert ns is not None
    writer = FolderWriter()
    lease = Generation.of(ns, object_uri(root)).uri
    # (a swarm's machine that finds the object's lease held leaves the object to its holder)
    assert swarm or writer.create(lease, lease_body("holder:1:x", HELD)) is not None
    prefix = version_prefix(root) if swarm else holder_prefix(root)
    for n in range(1, COUNT + 1):
        data = WEIGHTS[(n - 1) * PART : n * PART]
        assert writer.create(f"{prefix}{n:05d}", flipped(data) if n in wrong else data)
    return lease


def installed(report: RunReport, dest: Path) -> Any:
    assert report.exit_code == 0, report.files
    assert (dest / "tiny" / "model.safetensors").read_bytes() == WEIGHTS
    (outcome,) = report.files
    return outcome


def said_once(outcome: Any) -> None:
    """One warning names the wrong part; no whole-file mismatch was ever met."""
    named = [w for w in outcome.warnings if f"{WRONG:05d}" in w and "failed its lock hash" in w]
    assert len(named) == 1, outcome.warnings
    assert not any("mismatch" in w for w in outcome.warnings), outcome.warnings


# --- a follower ---


def test_a_planted_part_is_fetched_alone_from_the_origin_when_no_object_is_there(
    tiny: HubServer, root: Path, tmp_path: Path, trusted: None
) -> None:
    """The swarm's parts are there, one of them planted (a file lease beside them is no swarm's
    business): this machine reads them all, each checked as it arrives; the planted part is
    refused, claimed, and the origin sends its bytes alone (not the whole file); this machine
    fills the mirror with the verified file."""
    planted_fleet(root, swarm=True)
    report = pull(tiny, tmp_path / "m0", root, env={TERM_VARIABLE: "2"})
    outcome = installed(report, tmp_path / "m0")
    said_once(outcome)
    assert tiny.cdn.log.body_bytes() == PART, outcome
    assert outcome.streamed == len(WEIGHTS) - PART, outcome
    assert outcome.fetched == len(WEIGHTS) + PART, outcome  # the planted part's bytes too
    assert (root / "tiny" / "model.safetensors").read_bytes() == WEIGHTS


def test_a_planted_part_is_read_alone_from_the_final_object(
    tiny: HubServer, root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, trusted: None
) -> None:
    """Another machine made the object (of its verified file) once this one had read the swarm's
    parts: it never met a whole-file mismatch, read the planted part's bytes alone from the
    object, and the origin sent nothing."""
    planted_fleet(root, swarm=True)
    last = f"{version_prefix(root)}{COUNT:05d}"
    real_read = FolderWriter.read

    def read(self: FolderWriter, uri: str, *, limit: int, aged: bool = True) -> Any:
        found = real_read(self, uri, limit=limit, aged=aged)
        if uri == last and not (root / "tiny" / "model.safetensors").exists():
            (root / "tiny").mkdir(exist_ok=True)  # the holder's object, made meanwhile
            (root / "tiny" / "model.safetensors").write_bytes(WEIGHTS)
        return found

    monkeypatch.setattr(FolderWriter, "read", read)
    report = pull(tiny, tmp_path / "m0", root, env={TERM_VARIABLE: "3600"})
    outcome = installed(report, tmp_path / "m0")
    said_once(outcome)
    assert outcome.fill == "swarmed" and tiny.cdn.log.body_bytes() == 0, outcome
    assert outcome.streamed == len(WEIGHTS) - PART, outcome
    # the planted part's bytes (read, refused) and the object's: one part each
    assert outcome.fetched == len(WEIGHTS) + PART, outcome


def test_a_takeover_reads_past_a_run_of_wrong_parts(
    tiny: HubServer, root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, trusted: None
) -> None:
    """The swarm's parts are there, read two at a time; parts 3 and 4 (a whole round's reads) are
    wrong, and the parts after them are read all the same: the origin sends the wrong ones'
    bytes alone."""
    monkeypatch.setattr(swarm_module, "READERS", 2)
    planted_fleet(root, wrong=(3, 4), swarm=True)
    report = pull(tiny, tmp_path / "m0", root)
    outcome = installed(report, tmp_path / "m0")
    assert outcome.fill == "filled", outcome
    assert tiny.cdn.log.body_bytes() == 2 * PART, outcome
    assert outcome.streamed == len(WEIGHTS) - 2 * PART, outcome


def test_without_a_trust_a_planted_part_is_read_as_before(
    tiny: HubServer, root: Path, tmp_path: Path
) -> None:
    """No range trust: every part is read and claimed as today, the whole file's hash fails, and
    the next source (no object yet, the lease lapsed) sends the whole file."""
    planted_fleet(root)
    report = pull(tiny, tmp_path / "m0", root, env={TERM_VARIABLE: "2"})
    outcome = installed(report, tmp_path / "m0")
    assert any("mismatch" in w for w in outcome.warnings), outcome.warnings
    assert not any("failed its" in w for w in outcome.warnings), outcome.warnings


def follower(tmp_path: Path, root: Path, trust: Digests | None) -> Streamer:
    job = TransferJob(
        label="tiny/model.safetensors",
        url="http://127.0.0.1/f",
        identity=Identity(len(WEIGHTS), SHA, None, None),
        credentials=Credentials(),
        final_path=tmp_path / "f",
        part_path=tmp_path / "f.part",
        state_path=tmp_path / "f.state",
        source="s",
        retries=RetryLog(),
        root=tmp_path,
    )
    ns = namespace(template_of(root))
    assert ns is not None
    parts = PartSet.of(FolderWriter(), ns, object_uri(root), job)
    assert parts is not None and parts.count == COUNT
    return Streamer(parts, job, trust)


def put_part(root: Path, number: int, data: bytes) -> None:
    assert FolderWriter().create(f"{holder_prefix(root)}{number:05d}", data) is not None


def test_a_wait_counts_only_verified_parts(
    root: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A planted part under a live holder's token is no progress: every look of the wait sees no
    bytes, and it gives up (by its own clock) with nothing of the planted part claimed; a right
    part that appears next is progress."""
    caplog.set_level(logging.INFO)
    ns = namespace(template_of(root))
    assert ns is not None
    lease = Generation.of(ns, object_uri(root))
    assert FolderWriter().create(lease.uri, lease_body("holder:1:x", HELD)) is not None
    put_part(root, WRONG, flipped(WEIGHTS[(WRONG - 1) * PART : WRONG * PART]))
    streamer = follower(tmp_path, root, trust_of(WEIGHTS))
    ticks = iter(range(0, 10**6, 1000))
    looked: list[int] = []  # the bytes each look of the wait saw
    state = wait_for(
        FolderWriter(),
        object_uri(root),
        lease,
        size=len(WEIGHTS),
        wait=Wait(clock=lambda: float(next(ticks))),
        term=3600,
        poll=lambda attempt: 0,
        step=lambda token: looked.append(streamer.step(token)) or looked[-1],
    )
    assert isinstance(state, GaveUp) and looked and set(looked) == {0}, (state, looked)
    assert streamer.ranges == [] and streamer.streamed == 0 and streamer.refused == PART
    assert streamer.wrong == {f"{holder_prefix(root)}{WRONG:05d}"}
    put_part(root, 2, WEIGHTS[PART : 2 * PART])
    assert streamer.step(HELD) == PART  # a right part is progress
    assert streamer.step(HELD) == PART  # the wrong one is not read again
    streamer.seed()


def test_without_a_trust_a_planted_part_counts_as_before(root: Path, tmp_path: Path) -> None:
    put_part(root, WRONG, flipped(WEIGHTS[(WRONG - 1) * PART : WRONG * PART]))
    streamer = follower(tmp_path, root, None)
    assert streamer.step(HELD) == PART and streamer.wrong == set()
    streamer.seed()


def test_ranges_smaller_than_a_part_are_claimed_one_by_one(root: Path, tmp_path: Path) -> None:
    """A trust that cuts the file finer than the parts: each range inside a part is checked, and
    the ones that verify are claimed even in a part with a wrong one; a range reaching past the
    part's end (the file's last: 3 bytes) is checked as any range wholly inside."""
    half = PART // 2
    bad = (WRONG - 1) * PART  # the first half of part 4 is wrong, its second half right
    put_part(root, WRONG, flipped(WEIGHTS[bad : bad + PART]))
    streamer = follower(tmp_path, root, trust_of(WEIGHTS, half))
    assert streamer.step(HELD) == half
    assert streamer.ranges == [(bad + half, bad + PART)]
    streamer.seed()
    on_disk = (tmp_path / "f.part").read_bytes()
    assert on_disk[bad + half : bad + PART] == WEIGHTS[bad + half : bad + PART]
    assert on_disk[bad : bad + half] == bytes(half)  # the wrong range never written


def test_ranges_across_parts_are_left_to_the_fetch(root: Path, tmp_path: Path) -> None:
    """A trust whose ranges straddle the parts: only those wholly inside a part are checked from
    it; the rest of its bytes are neither written nor claimed (the fetch of the rest brings
    them)."""
    put_part(root, 1, WEIGHTS[:PART])
    put_part(root, 2, WEIGHTS[PART : 2 * PART])
    streamer = follower(tmp_path, root, trust_of(WEIGHTS, 3 * PART // 4))
    # ranges [0, .75), [.75, 1.5), [1.5, 2.25) MiB: only the first lies inside a part
    assert streamer.step(HELD) == 3 * PART // 4
    assert streamer.ranges == [(0, 3 * PART // 4)]
    # part 2 holds no whole range: nothing of it can be claimed, so it is not read again (a wait
    # or a takeover reading on would read it for ever); it is not said to be wrong
    assert [uri.rsplit("/", 1)[1] for uri in streamer.wrong] == ["00002"]
    assert not streamer.warned
    assert streamer.step(HELD) == 3 * PART // 4
    streamer.seed()


# --- the holder ---


def test_the_holder_never_publishes_a_range_that_failed_its_hash(
    tiny: HubServer, root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, trusted: None
) -> None:
    """A byte of part 4 flipped on the wire: the holder's range check fails it, it is fetched
    again alone, and every part the holder wrote to the mirror (during its fetch or at its end)
    is the file's bytes; the object made of them is the file."""
    tiny.cdn.flips.append([(WRONG - 1) * PART + 17, 1])
    written: list[tuple[str, bytes]] = []
    real_create, real_replace = FolderWriter.create, FolderWriter.replace

    def create(self: FolderWriter, uri: str, data: bytes, **more: Any) -> Any:
        written.append((uri, bytes(data)))
        return real_create(self, uri, data, **more)

    def replace_(self: FolderWriter, uri: str, data: bytes, **more: Any) -> Any:
        written.append((uri, bytes(data)))
        return real_replace(self, uri, data, **more)

    monkeypatch.setattr(FolderWriter, "create", create)
    monkeypatch.setattr(FolderWriter, "replace", replace_)
    report = pull(tiny, tmp_path / "m0", root)
    outcome = installed(report, tmp_path / "m0")
    assert outcome.fill == "filled", outcome
    assert any("fetched again alone" in w for w in outcome.warnings), outcome.warnings
    parts = [(names.parse(uri), data) for uri, data in written]
    sent = [(part.number, data) for part, data in parts if isinstance(part, names.Part)]
    assert len(sent) >= COUNT, [uri for uri, _ in written]
    for number, data in sent:
        assert data == WEIGHTS[(number - 1) * PART : number * PART], number
    assert tiny.cdn.log.body_bytes() == len(WEIGHTS) + PART
    assert (root / "tiny" / "model.safetensors").read_bytes() == WEIGHTS


def test_a_locked_file_is_published_at_its_locks_part_size(
    tiny: HubServer, root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lock's part hashes cut the file at 2 MiB (as an mdl at another part size wrote them;
    this one would cut it at 1 MiB): the holder publishes 2 MiB parts under a name that says so,
    each one range of the lock, and the object made of them is the file; a second machine then
    reads it from the mirror, nothing from the origin."""
    locked = 2 * PART
    real = FileSources.beside.fget
    assert real is not None
    monkeypatch.setattr(
        FileSources,
        "beside",
        property(lambda sources: real(sources)._replace(trust=trust_of(WEIGHTS, locked))),
    )
    written: list[tuple[str, bytes]] = []
    real_create = FolderWriter.create

    def create(self: FolderWriter, uri: str, data: bytes, **more: Any) -> Any:
        written.append((uri, bytes(data)))
        return real_create(self, uri, data, **more)

    monkeypatch.setattr(FolderWriter, "create", create)
    outcome = installed(pull(tiny, tmp_path / "m0", root), tmp_path / "m0")
    assert outcome.fill == "filled", outcome
    sent = [(names.parse(uri), data) for uri, data in written]
    parts = {p.number: data for p, data in sent if isinstance(p, names.Part)}
    assert {p.size for p, _ in sent if isinstance(p, names.Part)} == {locked}
    assert sorted(parts) == list(range(1, -(-len(WEIGHTS) // locked) + 1))
    for number, data in parts.items():
        assert data == WEIGHTS[(number - 1) * locked : number * locked], number
    assert (root / "tiny" / "model.safetensors").read_bytes() == WEIGHTS
    origin = tiny.cdn.log.body_bytes()
    second = installed(pull(tiny, tmp_path / "m1", root), tmp_path / "m1")
    assert tiny.cdn.log.body_bytes() == origin == len(WEIGHTS), second


def test_the_holder_publishes_only_what_its_check_verified(root: Path, tmp_path: Path) -> None:
    """Beside the fetch, the holder hears verified bytes only (its fetch's range check tells it,
    as the fetch's ``JobContext.landing``): a part with a range that failed its hash is not sent,
    every other part is, and nothing is hashed twice for it."""
    trust = trust_of(WEIGHTS)
    streamer = follower(tmp_path, root, trust)
    job, parts = streamer.job, streamer.parts.under(HELD)
    wrong = bytearray(WEIGHTS)
    wrong[PART + 5] ^= 1  # part 2's bytes, as a flaky origin sent them
    job.part_path.write_bytes(wrong)
    fd = os.open(job.part_path, os.O_RDWR)
    try:
        with (
            Publisher(parts, job) as publisher,
            RangeCheck(trust, fd, job.part_path, ranges.Releases(), then=publisher) as check,
        ):
            check.landed(0, len(WEIGHTS))
            assert check.settle(threading.Event()) == [(PART, 2 * PART)]
            publisher.drain(threading.Event())
    finally:
        os.close(fd)
    assert parts.published() == set(range(1, COUNT + 1)) - {2}
    assert publisher.beside == len(WEIGHTS) - PART
    assert FolderWriter().read(parts.uri(1), limit=PART)[0] == WEIGHTS[:PART]  # type: ignore[index]
