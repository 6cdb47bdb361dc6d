"""A fleet that trusts nothing but what it observes (issue 68, C), against a real shared folder,
moto and the Hub stand-in: an object planted at a part's name (both public facts) or at the name
a holder creates, 2,000 foreign names in a lease's folder, a follower whose parts fail the hash
(the mirror's final object before the origin), a holder ``kill -9``ed and restarted (its partial
published, not fetched again)."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from clocks import VirtualWaits
from runfixtures import HANG, wait_for
from s3server import S3, s3, s3_server  # noqa: F401
from servers import Fault, HubServer, hold_after, make_data
from zygote import Forked, shared

import mdl.download._fill as fill_module
from mdl import partsize
from mdl.buckets.folder import FolderWriter
from mdl.buckets.lease import TAKE_TRIES, lease_body
from mdl.buckets.names import GENERATIONS, Generation, Part, namespace
from mdl.catalog.load import parse_catalog
from mdl.catalog.settings import build_settings
from mdl.catalog.specs import CatalogSettings
from mdl.download._owned import TERM_VARIABLE, OriginRate
from mdl.download.puller import pull_models
from mdl.progress import Progress
from mdl.report import RunReport
from mdl.setting import Overrides

PART = 1 << 20  # the tests' part size (MiB) in this process: 8 parts and 3 bytes
WEIGHTS = make_data(8 * PART + 3, seed=68)
SHA = hashlib.sha256(WEIGHTS).hexdigest()
COUNT = 9
HELD = "cd" * 16  # the token of a lease a test writes
CATALOG = """
[models.tiny]
repo = "org/tiny"
include = ["*.safetensors"]
"""
MACHINES = 3


@pytest.fixture(autouse=True)
def small_parts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(partsize, "PART", PART)


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


def pull(hub: HubServer, dest: Path, template: str, env: dict[str, str] | None = None) -> RunReport:
    environ = {"HF_ENDPOINT": hub.url, **(env or {})}
    catalog = CatalogSettings(mirrors=(template,))
    settings = build_settings(
        Overrides(fill_mirror=True), environ=environ, dest=dest, catalog=catalog
    )
    return pull_models(parse_catalog(CATALOG).models, settings, progress=Progress())


def fleet(
    hub: HubServer, tmp_path: Path, template: str, caplog: pytest.LogCaptureFixture
) -> list[RunReport]:
    """``MACHINES`` pulls at once (threads of this process, each its own destination); the
    first to reach the CDN is held there until every other waits on its lease."""
    caplog.set_level(logging.INFO)
    held = threading.Event()
    hub.cdn.faults.add(Fault.stall(after_bytes=1000, until=held, resume=True))

    def waiting() -> bool:
        said = [r.getMessage() for r in list(caplog.records)]
        return sum("another machine is filling mirror" in m for m in said) >= MACHINES - 1

    with ThreadPoolExecutor(MACHINES) as pool:
        runs = [pool.submit(pull, hub, tmp_path / f"m{i}", template) for i in range(MACHINES)]
        try:
            wait_for(waiting, what="every other machine waiting on the holder's lease")
        finally:
            held.set()
        return [run.result(timeout=HANG) for run in runs]


def template_of(root: Path) -> str:
    return f"file://{root}/{{model}}/{{path}}"


def object_uri(root: Path) -> str:
    return f"file://{root}/tiny/model.safetensors"


def version_prefix(template: str, uri: str) -> str:
    ns = namespace(template)
    assert ns is not None
    return Part.of(ns, uri, pin=SHA, size=len(WEIGHTS)).prefix


def flipped(data: bytes) -> bytes:
    return bytes([data[0] ^ 1]) + data[1:]


def cdn_bytes(hub: HubServer) -> int:
    return hub.cdn.log.body_bytes()


def all_verified(reports: list[RunReport], tmp_path: Path) -> None:
    for i, report in enumerate(reports):
        assert report.exit_code == 0, report.files
        assert (tmp_path / f"m{i}" / "tiny" / "model.safetensors").read_bytes() == WEIGHTS


# --- a planted part ---


def test_a_part_planted_at_its_public_name_costs_the_fleet_nothing(
    tiny: HubServer, root: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 68: wrong bytes at ``<sha256>-<size>/00001`` (public facts) were counted published:
    every follower failed the hash and went to the origin (4.6× for 4). Parts live under the
    lease generation's token now: the planted name is no part; the origin sends the file once."""
    prefix = version_prefix(template_of(root), object_uri(root))
    writer = FolderWriter()
    assert writer.create(f"{prefix}00001", flipped(WEIGHTS[:PART])) is not None
    assert writer.create(f"{prefix}{HELD}/00001", flipped(WEIGHTS[:PART])) is not None
    reports = fleet(tiny, tmp_path, template_of(root), caplog)
    all_verified(reports, tmp_path)
    assert cdn_bytes(tiny) == len(WEIGHTS)
    assert (root / "tiny" / "model.safetensors").read_bytes() == WEIGHTS


def test_an_object_at_the_name_the_holder_creates_is_replaced_not_trusted(
    tiny: HubServer, root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another writer got to the holder's own part name first (it read the lease): the holder's
    create finds it, its bytes are not the holder's, so it is replaced on that version; the
    object is made of right parts and the origin sent the file once."""
    monkeypatch.setattr("mdl.buckets.lease.new_token", lambda: HELD)
    prefix = version_prefix(template_of(root), object_uri(root))
    writer = FolderWriter()
    for n in (1, COUNT):
        start = (n - 1) * PART
        assert writer.create(f"{prefix}{HELD}/{n:05d}", flipped(WEIGHTS[start : start + PART]))
    report = pull(tiny, tmp_path / "m0", template_of(root))
    all_verified([report], tmp_path)
    assert report.files[0].fill == "filled"
    assert cdn_bytes(tiny) == len(WEIGHTS)
    assert (root / "tiny" / "model.safetensors").read_bytes() == WEIGHTS


def test_an_object_planted_at_the_final_name_during_a_fill_is_replaced_not_trusted(
    tiny: HubServer, root: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The final object is a name the holder creates too: another writer's bytes put there while
    it fetches (after its look) made its conditional create fail, and the fill counted the mirror
    "filled by another machine" with wrong bytes in it for every later reader. The holder checks
    the object's own bytes, and replaces what is not the file on that version."""

    def plant() -> None:
        (root / "tiny").mkdir(exist_ok=True)
        (root / "tiny" / "model.safetensors").write_bytes(flipped(WEIGHTS))

    report = planted_while_fetching(tiny, tmp_path, template_of(root), caplog, plant)
    all_verified([report], tmp_path)
    (outcome,) = report.files
    assert outcome.fill == "filled", outcome
    assert any("not the file's: replaced" in said for said in outcome.warnings), outcome.warnings
    assert (root / "tiny" / "model.safetensors").read_bytes() == WEIGHTS
    assert cdn_bytes(tiny) == len(WEIGHTS)


def test_a_follower_whose_parts_fail_reads_the_final_object_not_the_origin(
    tiny: HubServer, root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A follower read every part of a live holder, one wrong; the holder made the object of its
    verified file meanwhile. The whole-file hash fails, the partial goes, and the next source is
    the mirror's object (there, verified), never the origin."""
    ns = namespace(template_of(root))
    assert ns is not None
    writer = FolderWriter()
    lease = Generation.of(ns, object_uri(root)).uri
    assert writer.create(lease, lease_body("holder:1:x", HELD)) is not None
    prefix = f"{version_prefix(template_of(root), object_uri(root))}{HELD}/"
    for n in range(1, COUNT + 1):
        data = WEIGHTS[(n - 1) * PART : n * PART]
        assert writer.create(f"{prefix}{n:05d}", flipped(data) if n == 4 else data)
    last = f"{prefix}{COUNT:05d}"
    real_read = FolderWriter.read

    def read(self: FolderWriter, uri: str, *, limit: int, aged: bool = True) -> Any:
        found = real_read(self, uri, limit=limit, aged=aged)
        if uri == last and not (root / "tiny" / "model.safetensors").exists():
            # the holder's object, made once the follower has read its last part
            (root / "tiny").mkdir(exist_ok=True)
            (root / "tiny" / "model.safetensors").write_bytes(WEIGHTS)
        return found

    monkeypatch.setattr(FolderWriter, "read", read)
    report = pull(tiny, tmp_path / "m0", template_of(root), env={TERM_VARIABLE: "3600"})
    all_verified([report], tmp_path)
    (outcome,) = report.files
    assert any("mismatch" in said for said in outcome.warnings), outcome.warnings
    assert outcome.fill == "read" and cdn_bytes(tiny) == 0, outcome


def test_parts_forged_under_a_live_holders_token_send_no_follower_to_the_origin(
    tiny: HubServer, root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The holder's token is in its lease's body, which anyone can read: another writer put every
    part under it (one wrong) before the holder published them. The follower read them all, the
    whole file's hash failed, and with no object there yet it went to the origin at once (every
    follower: the fleet's N×). It waits on the live holder again, for its object alone."""
    ns = namespace(template_of(root))
    assert ns is not None
    writer = FolderWriter()
    lease = Generation.of(ns, object_uri(root)).uri
    assert writer.create(lease, lease_body("holder:1:x", HELD)) is not None
    prefix = f"{version_prefix(template_of(root), object_uri(root))}{HELD}/"
    for n in range(1, COUNT + 1):
        data = WEIGHTS[(n - 1) * PART : n * PART]
        assert writer.create(f"{prefix}{n:05d}", flipped(data) if n == 4 else data)
    real_wait = fill_module.wait_for
    waits: list[str] = []

    def wait(*args: Any, **kwargs: Any) -> Any:
        waits.append(args[1])
        if len(waits) == 2:  # the holder makes its object of its verified file meanwhile
            (root / "tiny").mkdir(exist_ok=True)
            (root / "tiny" / "model.safetensors").write_bytes(WEIGHTS)
        return real_wait(*args, **kwargs)

    monkeypatch.setattr(fill_module, "wait_for", wait)
    report = pull(tiny, tmp_path / "m0", template_of(root), env={TERM_VARIABLE: "3600"})
    all_verified([report], tmp_path)
    (outcome,) = report.files
    assert any("mismatch" in said for said in outcome.warnings), outcome.warnings
    assert len(waits) == 2 and cdn_bytes(tiny) == 0, (waits, outcome)


# --- foreign names in a lease's folder ---


def test_foreign_names_in_a_lease_folder_cost_nothing_on_a_share(
    tiny: HubServer, root: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 68: 2,000 empty files in a file's lease folder made every machine take the lease
    and fetch from the origin ("changed hands 5 times", 4.00× for 4). They are ignored now: one
    machine fetches, the others follow."""
    ns = namespace(template_of(root))
    assert ns is not None
    folder = root / Generation.of(ns, object_uri(root)).uri.removeprefix("file://")[:-1]
    folder.mkdir(parents=True)
    for n in range(2000):
        (folder / f"0{n:04d}x").touch()  # sorting among the numbers
    reports = fleet(tiny, tmp_path, template_of(root), caplog)
    all_verified(reports, tmp_path)
    assert cdn_bytes(tiny) == len(WEIGHTS)
    assert not any("changed hands" in w for r in reports for f in r.files for w in f.warnings)


S3_TEMPLATE = "s3://fleet/hub/{model}/{path}"
S3_OBJECT = "s3://fleet/hub/tiny/model.safetensors"
S3_PART = 5 * PART  # S3 copies parts of at least 5 MiB (but the last)
SMALL = make_data(2 * S3_PART + 3, seed=69)


@pytest.fixture
def bucket(s3: S3, hub: HubServer, monkeypatch: pytest.MonkeyPatch) -> Any:  # noqa: F811
    monkeypatch.setattr(partsize, "PART", S3_PART)
    hub.add_repo("org/tiny", {"model.safetensors": SMALL})
    client = s3.client()
    client.create_bucket(Bucket="fleet")
    return client


@pytest.mark.slow
def test_foreign_names_and_a_planted_part_cost_nothing_on_moto(
    hub: HubServer,
    bucket: Any,
    s3: S3,  # noqa: F811
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The same on an S3 store: 2,000 foreign keys under the lease's prefix (more than a page of
    the listing) and a planted part at its public name; one machine fetches, the rest follow."""
    ns = namespace(S3_TEMPLATE)
    assert ns is not None
    leases = Generation.of(ns, S3_OBJECT).uri.removeprefix("s3://fleet/")[:-1]
    s3.plant("fleet", (f"{leases}0{n:04d}x" for n in range(2000)), b"")
    digest = hashlib.sha256(SMALL).hexdigest()
    planted = Part.of(ns, S3_OBJECT, pin=digest, size=len(SMALL)).prefix.removeprefix("s3://fleet/")
    bucket.put_object(Bucket="fleet", Key=f"{planted}00001", Body=flipped(SMALL[:S3_PART]))
    reports = fleet(hub, tmp_path, S3_TEMPLATE, caplog)
    for i, report in enumerate(reports):
        assert report.exit_code == 0, report.files
        assert (tmp_path / f"m{i}" / "tiny" / "model.safetensors").read_bytes() == SMALL
    assert cdn_bytes(hub) == len(SMALL)
    made = bucket.get_object(Bucket="fleet", Key="hub/tiny/model.safetensors")["Body"].read()
    assert made == SMALL


def planted_while_fetching(
    hub: HubServer, tmp_path: Path, template: str, caplog: pytest.LogCaptureFixture, plant: Any
) -> RunReport:
    """One pull, held at the CDN once it holds the lease (past its look at the object) while
    ``plant`` puts another writer's bytes at the object's name."""
    caplog.set_level(logging.INFO)
    held = threading.Event()
    hub.cdn.faults.add(Fault.stall(after_bytes=1000, until=held, resume=True))
    with ThreadPoolExecutor(1) as pool:
        run = pool.submit(pull, hub, tmp_path / "m0", template)
        try:
            wait_for(
                lambda: any("lease taken" in r.getMessage() for r in list(caplog.records)),
                what="the holder fetching",
            )
            plant()
        finally:
            held.set()
        return run.result(timeout=HANG)


@pytest.mark.slow
def test_an_object_planted_at_the_final_name_during_a_fill_is_replaced_on_moto(
    hub: HubServer, bucket: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The same on an S3 store, the planted object carrying a mark copied from another key (what
    a server-side copy keeps): neither its existence nor its mark makes it the file."""
    key = "hub/tiny/model.safetensors"

    def plant() -> None:
        bucket.put_object(
            Bucket="fleet",
            Key=key,
            Body=flipped(SMALL),
            Metadata={"mdl": "2 " + hashlib.sha256(SMALL).hexdigest() + " 0123456789abcdef 00"},
        )

    report = planted_while_fetching(hub, tmp_path, S3_TEMPLATE, caplog, plant)
    assert report.exit_code == 0, report.files
    assert report.files[0].fill == "filled", report.files[0]
    assert bucket.get_object(Bucket="fleet", Key=key)["Body"].read() == SMALL
    assert cdn_bytes(hub) == len(SMALL)


# --- a holder kill -9ed, then restarted ---

BIG_PART = 16 * PART  # a child process's parts: mdl's own size
BIG = make_data(4 * BIG_PART + 3, seed=70)


@pytest.fixture
def processes() -> Iterator[list[Forked]]:
    started: list[Forked] = []
    yield started
    for process in started:  # a failed test leaves none behind
        if process.poll() is None:
            process.kill()
            process.wait()


def child(hub: HubServer, tmp_path: Path, root: Path, name: str = "m0") -> Forked:
    """``mdl pull --fill-mirror`` forked from the worker's zygote (tests/zygote.py): a kill -9 is
    mdl's own."""
    catalog = tmp_path / "catalog.toml"
    catalog.write_text(CATALOG)
    env = {
        **os.environ,
        "HF_ENDPOINT": hub.url,
        "MDL_LOG_FILE": str(tmp_path / f"{name}.log"),
        TERM_VARIABLE: "3600",  # another machine would wait an hour: only its own takes it
    }
    command = ["pull", "--all", "--catalog", str(catalog), "--dest", str(tmp_path / name)]
    fill = ["--mirror", template_of(root), "--fill-mirror", "--json", "--no-progress"]
    return shared().spawn([*command, *fill], env=env, cwd=Path.cwd())


@pytest.mark.slow
def test_a_holder_killed_then_restarted_takes_its_lease_at_once_and_publishes_its_partial(
    hub: HubServer,
    root: Path,
    tmp_path: Path,
    processes: list[Forked],
    request: pytest.FixtureRequest,
) -> None:
    """Issue 68: a holder kill -9ed at 20 % cost 1.42× the file at N = 4: its partial was never
    published, and a machine beside it took the lease at once and fetched the file again. Its
    restart knows its own lease (the token beside its partial), takes it over at once (the term
    is an hour: the follower waits), and resumes on its partial: the origin sends only the rest,
    and the follower reads it from the mirror."""
    hub.add_repo("org/tiny", {"model.safetensors": BIG})
    # Each answer (a half part: eight at once) held at 3 MiB until the kill: the first run holds
    # the lease while the follower starts, and is killed with a third and more on disk, however
    # busy the machine. (Throttled instead, how far the holder got before the follower started
    # was the machine's pace: on a busy one the holder had the whole file, the follower read it
    # and never waited.)
    held = hold_after(hub.cdn, 3 * PART)
    request.addfinalizer(held.set)
    processes.append(first := child(hub, tmp_path, root))

    def holding() -> bool:  # the first run holds the lease before the follower starts
        log = tmp_path / "m0.log"
        return log.exists() and "(lease taken)" in log.read_text()

    wait_for(holding, what="a holder")
    processes.append(follower := child(hub, tmp_path, root, "m1"))

    def waiting() -> bool:
        log = tmp_path / "m1.log"
        return log.exists() and "is filling mirror" in log.read_text()

    wait_for(waiting, what="the follower waits on the lease")
    landed = [0]

    def a_third_on_disk() -> bool:  # as its resume record says (what a restart resumes on)
        for record in (tmp_path / "m0").rglob("*.part.json"):
            try:
                pieces = json.loads(record.read_text())["pieces"]
            except (OSError, ValueError, KeyError):
                continue
            landed[0] = sum(done for _, _, done in pieces)
        return landed[0] >= len(BIG) // 3

    wait_for(a_third_on_disk, what="a third of the file on the holder's disk")
    first.send_signal(signal.SIGKILL)
    first.wait(HANG)
    # the dead run's answers stay held till the test ends: nothing more is counted as sent to
    # sockets no one reads (released, the kernel took a part's rest for them)
    hub.cdn.faults.clear()
    processes.append(again := child(hub, tmp_path, root))
    out, err = again.communicate(timeout=HANG)
    assert again.returncode == 0, err
    assert (tmp_path / "m0" / "tiny" / "model.safetensors").read_bytes() == BIG
    log = (tmp_path / "m0.log").read_text()
    assert (root / "tiny" / "model.safetensors").read_bytes() == BIG
    (line,) = json.loads(out)["files"]
    assert line.get("fill") == "filled", line
    out, err = follower.communicate(timeout=HANG)
    assert follower.returncode == 0, err
    assert (tmp_path / "m1" / "tiny" / "model.safetensors").read_bytes() == BIG
    # the target: at most 1.25× the file from the origin (each machine fetching what it
    # had not would be 1.33× and more; the killed run's bytes in flight are the rest)
    assert cdn_bytes(hub) <= 1.25 * len(BIG)
    assert "took over lease" in log


# --- issue 75, C: names in a lease's folder that no machine may read alike ---

NINES = "9" * 30  # was a generation: the first machine took 10^30, which no other parsed
MANY = 20_001  # was past the listing's limit: the lease "unknown", every machine to the origin


def spoil_folder(folder: Path, case: str) -> None:
    folder.mkdir(parents=True)
    if case == "nines":
        (folder / NINES).write_bytes(b"9")
        (folder / ("9" * 31)).write_bytes(b"9")
    elif case == "many":
        for n in range(MANY):
            (folder / f"{n:06d}").touch()  # numbers too, with leading zeros: no generation
    elif case == "spaced":  # junk at 1, 7, ..., 97: each past the walk's gap from the one below
        for n in range(1, GENERATIONS, TAKE_TRIES + 1):
            (folder / str(n)).write_bytes(b"9")
    else:  # every generation number junk, and past them: the last is taken over in place
        for n in range(1, MANY + 1):
            (folder / str(n)).write_bytes(b"9")


@pytest.mark.parametrize("case", ["nines", "many", "numbered", "spaced"])
def test_names_no_machine_reads_alike_cost_one_fetch_on_a_share(
    tiny: HubServer, root: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture, case: str
) -> None:
    """Issue 75, C: a 1-byte file named with 30 nines, or 20,001 names, in a file's lease folder
    sent every machine to the origin (4.00x). Generations are looked up by name, 1 to 99 (junk at
    every one of them: the 99th taken over in place): the fleet fetches the file once. Junk every
    few numbers (review R1) made each machine a holder above the last: they converge on one."""
    ns = namespace(template_of(root))
    assert ns is not None
    spoil_folder(root / Generation.of(ns, object_uri(root)).uri.removeprefix("file://")[:-1], case)
    reports = fleet(tiny, tmp_path, template_of(root), caplog)
    all_verified(reports, tmp_path)
    assert cdn_bytes(tiny) == len(WEIGHTS)  # the fleet's origin bytes: 1.00x the file
    fills = sorted(str(f.fill) for r in reports for f in r.files)
    # one holder; each other machine streamed its parts, or read the object if it came first
    assert fills[0] == "filled" and set(fills[1:]) <= {"read", "streamed"}, fills


S3_MANY = 1_200  # keys past the generations on moto: over a listing's page of 1,000


@pytest.mark.slow
@pytest.mark.parametrize("case", ["numbered", "spaced"])
def test_names_no_machine_reads_alike_cost_one_fetch_on_moto(
    hub: HubServer,
    bucket: Any,
    s3: S3,  # noqa: F811
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    case: str,
) -> None:
    """The same on an S3 store: 30 nines (and 31) and 1,200 keys under the lease's prefix (more
    than a listing's page: no machine lists; the share's case holds 20,001, which cost moto
    minutes of PUTs), the first 99 of them every generation number (junk: the 99th is taken over
    in place); or junk every few numbers, each past the walk's gap (review R1)."""
    ns = namespace(S3_TEMPLATE)
    assert ns is not None
    leases = Generation.of(ns, S3_OBJECT).uri.removeprefix("s3://fleet/")[:-1]
    keys = [NINES, "9" * 31, *(str(n) for n in range(1, S3_MANY + 1))]
    if case == "spaced":
        keys = [str(n) for n in range(1, GENERATIONS, TAKE_TRIES + 1)]
    s3.plant("fleet", (leases + k for k in keys), b"9")
    reports = fleet(hub, tmp_path, S3_TEMPLATE, caplog)
    for i, report in enumerate(reports):
        assert report.exit_code == 0, report.files
        assert (tmp_path / f"m{i}" / "tiny" / "model.safetensors").read_bytes() == SMALL
    assert cdn_bytes(hub) == len(SMALL)  # 1.00x
    made = bucket.get_object(Bucket="fleet", Key="hub/tiny/model.safetensors")["Body"].read()
    assert made == SMALL


# --- issue 75, B: parts written under a live holder's token, no part hashes ---


@pytest.mark.slow
def test_junk_parts_under_a_live_token_without_part_hashes_hold_a_follower_no_longer(
    tiny: HubServer, root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The token is in the lease, which anyone can read: a co-tenant keeps a lease live and
    writes parts of the right size under its token, one more at each look of the follower. Each
    was progress (up to parts x 3 terms, ~80 min for a 5 GB shard). Without part hashes none is:
    the follower's waits end within their bound (a few terms: no origin rate measured yet), and
    the file comes from the origin once, verified; the junk is never installed."""
    monkeypatch.setattr("mdl.buckets.lease.STALL_TERMS", 0.001)  # 3.6 s of an hour's term
    ns = namespace(template_of(root))
    assert ns is not None
    writer = FolderWriter()
    lease = Generation.of(ns, object_uri(root)).uri
    assert writer.create(lease, lease_body("holder:1:x", HELD)) is not None
    prefix = f"{version_prefix(template_of(root), object_uri(root))}{HELD}/"
    junk = [flipped(WEIGHTS[(n - 1) * PART : n * PART]) for n in range(1, COUNT)]
    # its patience on the test's clock (reading the junk takes none of it, however busy the
    # machine): every junk part is read before it gives up
    real_wait, bounds = VirtualWaits(pause=0.5).wrap(fill_module.wait_for), []

    def wait(*args: Any, **kwargs: Any) -> Any:
        step = kwargs["step"]

        def forged(token: str | None) -> int:  # one more junk part before every step
            made = len(list((root / prefix.removeprefix(f"file://{root}/")).glob("0*")))
            if made < len(junk):
                assert writer.create(f"{prefix}{made + 1:05d}", junk[made]) is not None
            return int(step(token))

        bounds.append(kwargs["trusted"])
        return real_wait(*args, **{**kwargs, "step": forged})

    monkeypatch.setattr(fill_module, "wait_for", wait)
    report = pull(tiny, tmp_path / "m0", template_of(root), env={TERM_VARIABLE: "3600"})
    all_verified([report], tmp_path)
    (outcome,) = report.files
    assert outcome.fill == "from origin", outcome
    assert any("without part hashes no part of it is progress" in w for w in outcome.warnings), (
        outcome.warnings
    )
    assert bounds and not any(bounds)  # no range trust: every wait bounded as above
    # the origin: the rest the junk did not cover, then (the whole hash failed) the file once
    assert cdn_bytes(tiny) == len(WEIGHTS) + len(WEIGHTS) - len(junk) * PART


def test_the_origin_rate_is_this_machines_own_measure_of_its_fetches() -> None:
    """What bounds a wait without part hashes: the bytes of this run's own fetches from the origin
    over their seconds, small fetches (latency, not rate) left out; None before one."""
    rate = OriginRate()
    assert rate.rate() is None
    rate.add(1000, 0.001)  # a config.json: no measure of the rate
    rate.add(8 << 20, 0.0)  # no time: none either
    assert rate.rate() is None
    rate.add(8 << 20, 2.0)
    rate.add(24 << 20, 2.0)
    assert rate.rate() == (32 << 20) / 4.0
