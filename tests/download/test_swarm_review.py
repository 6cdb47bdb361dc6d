"""A hostile review of the swarm (issue 78): what a co-tenant, a failing store or an odd moment
does to it, against a real shared folder and moto, the machines being threads of this process as
in test_swarm_hostile.py."""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from download.test_swarm_hostile import FORGER, MACHINES, Fleet, said, swarm_bytes, trusting, twice
from runfixtures import HANG, transfer_job, wait_for
from s3server import S3, s3, s3_server  # noqa: F401
from servers import CdnServer, HubServer, make_data

from mdl import partsize
from mdl.buckets import _s3conditional as s3conditional
from mdl.buckets import names
from mdl.buckets.lease import lease_body
from mdl.buckets.registry import STORES
from mdl.download._parts import PartSet
from mdl.download._swarm import Swarm
from mdl.download.session import TERM_VARIABLE
from mdl.progress import NullProgress
from mdl.report import RunReport
from mdl.transfer import ranges
from mdl.transfer.context import JobContext, Ledger
from mdl.transfer.engine import Engine
from mdl.transfer.http import RetryPolicy, make_client
from mdl.transfer.job import EngineConfig
from mdl.transfer.ranges import Digests
from mdl.transfer.resume import seed
from mdl.wait import Wait

MiB = 1 << 20


@pytest.fixture
def folder_fleet(
    hub: HubServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> Iterator[Fleet]:
    """A fleet on a shared folder: 1 MiB parts, 13 of them, the pulls trusting the part hashes."""
    caplog.set_level(logging.INFO)
    monkeypatch.setenv("MDL_LOG_FILE", str(tmp_path / "mdl.log"))
    part, data = MiB, make_data(12 * MiB + 5, seed=787)
    root = tmp_path / "shared"
    root.mkdir()
    template = f"file://{root}/{{model}}/{{path}}"
    writer = STORES["file"].writer(endpoint=None, secrets=None)
    monkeypatch.setattr(partsize, "PART", part)
    hub.add_repo("org/tiny", {"model.safetensors": data})
    made = Fleet(hub, data, part, template, writer)
    trusting(monkeypatch, made)
    yield made


def test_a_file_where_the_claims_folder_goes_sends_no_machine_to_the_origin_for_the_file(
    folder_fleet: Fleet, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """One file a co-tenant writes at the folder of the version's claims (a public name): every
    take fails (the store cannot make the folder), and each part is "fetched unclaimed"."""
    fleet = folder_fleet
    claims = Path(fleet.claim(1).uri.removeprefix("file://")).parent.parent
    claims.parent.mkdir(parents=True)
    claims.write_bytes(b"junk")
    fleet.hub.cdn.throttle_bps = 8 * MiB
    reports = fleet.run(tmp_path)
    print([r.files[0] for r in reports], said(caplog, "not claimed")[:2])
    assert fleet.origin_bytes() <= len(fleet.data) + 2 * fleet.part + twice(reports), (
        fleet.origin_bytes()
    )


def run_with(
    fleet: Fleet,
    tmp_path: Path,
    meanwhile: Callable[[], None] | None = None,
    env: dict[str, str] | None = None,
) -> list[RunReport]:
    """``MACHINES`` pulls at once (``meanwhile`` run once they began); each ends with the file."""
    cancel = threading.Event()
    with ThreadPoolExecutor(MACHINES) as pool:
        runs = [pool.submit(fleet.pull, tmp_path / f"m{i}", env, cancel) for i in range(MACHINES)]
        try:
            if meanwhile is not None:
                meanwhile()
            reports = [run.result(timeout=HANG) for run in runs]
        finally:
            cancel.set()
    for i, report in enumerate(reports):
        assert report.exit_code == 0, report.files
        assert (tmp_path / f"m{i}" / "tiny" / "model.safetensors").read_bytes() == fleet.data
        left = list((tmp_path / f"m{i}").rglob("*.lease"))
        assert not left, f"a run that ended left its claims' token: {left}"
    renewing = [t.name for t in threading.enumerate() if t.name == "mdl-lease-renew"]
    assert not renewing, f"{len(renewing)} claims still renewed after every run ended"
    return reports


def test_parts_that_cannot_be_published_keep_no_machine_waiting_on_their_claims(
    folder_fleet: Fleet, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A file a co-tenant writes at the folder of the version's parts: no part can be published
    there, so none will ever appear; a machine whose publish failed must not keep its claims
    (renewed) while the others wait on them a term and then fetch them all again. Released, each
    claim times its part (claimed to given up), and the others wait on a claim twice that at
    most: a wait of a whole term happens only to a machine that timed no part for a term. The
    term (30 s) is far past what a part takes here however busy the machine (a 3 s term was
    not: a machine starved of CPU at the start held its claims that long while still fetching)."""
    fleet = folder_fleet
    prefix = Path(fleet.first.prefix.removeprefix("file://").rstrip("/"))
    prefix.parent.mkdir(parents=True)
    prefix.write_bytes(b"junk")
    fleet.hub.cdn.throttle_bps = 8 * MiB
    run_with(fleet, tmp_path, env={TERM_VARIABLE: "30"})
    waited = said(caplog, "claimed by another machine for over")
    assert not [w for w in waited if "for over 30 s" in w], waited


def junk_mid_swarm(fleet: Fleet, tmp_path: Path) -> list[RunReport]:
    """The fleet's run, junk written at the final object's name once a part is published."""
    fleet.hub.cdn.throttle_bps = 4 * MiB

    def junk() -> None:
        wait_for(
            lambda: any(fleet.writer.head(fleet.part_uri(n)) for n in range(1, fleet.count + 1)),
            what="a part published",
        )
        assert fleet.writer.create(fleet.object, b"junk") is not None

    return run_with(fleet, tmp_path, junk)


def test_junk_at_the_objects_name_mid_swarm_sends_no_machine_to_the_origin_for_the_rest(
    folder_fleet: Fleet, tmp_path: Path
) -> None:
    """Once a part is published, a co-tenant writes junk at the final object's name: the swarm
    ends at every machine (SwarmEnded), the object is read (refused), then the origin."""
    fleet = folder_fleet
    reports = junk_mid_swarm(fleet, tmp_path)
    spent = swarm_bytes(fleet, reports)
    assert spent <= len(fleet.data) + 2 * fleet.part + twice(reports), (
        spent,
        [r.files[0] for r in reports],
    )


def test_a_forged_live_claim_on_every_part_costs_a_term_not_the_file_per_machine(
    folder_fleet: Fleet, tmp_path: Path
) -> None:
    """Forged claims (never published) on every part before the fleet starts: they lapse in a
    term (3 s here) and each part is taken over by one machine; the origin sends the file and a
    part or two more, not the file once per machine."""
    fleet = folder_fleet
    for number in range(1, fleet.count + 1):
        made = fleet.writer.create(fleet.claim(number).uri, lease_body("mallory:1:x", FORGER))
        assert made is not None
    fleet.hub.cdn.throttle_bps = 8 * MiB
    reports = run_with(fleet, tmp_path, env={TERM_VARIABLE: "3"})
    spent = swarm_bytes(fleet, reports)
    assert spent <= len(fleet.data) + 2 * fleet.part + twice(reports), (
        spent,
        [r.files[0] for r in reports],
    )


@pytest.fixture
def s3_fleet(
    s3: S3,  # noqa: F811 (the fixture)
    hub: HubServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> Iterator[Fleet]:
    """A fleet on moto: 5 MiB parts (S3 copies parts of 5 MiB at least), 4 of them."""
    caplog.set_level(logging.INFO)
    monkeypatch.setenv("MDL_LOG_FILE", str(tmp_path / "mdl.log"))
    s3.client().create_bucket(Bucket="fleet")
    part, data = 5 * MiB, make_data(15 * MiB + 5, seed=788)
    writer = STORES["s3"].writer(endpoint=s3.endpoint, secrets=None)
    monkeypatch.setattr(partsize, "PART", part)
    hub.add_repo("org/tiny", {"model.safetensors": data})
    made = Fleet(hub, data, part, "s3://fleet/hub/{model}/{path}", writer)
    trusting(monkeypatch, made)
    yield made


def test_the_mirror_going_down_mid_swarm_fails_no_machines_fetch(
    s3_fleet: Fleet,
    s3: S3,  # noqa: F811 (the fixture)
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Once a part is published, the bucket answers every request 503 SlowDown: the origin is
    still there, so every machine ends with the file (the mirror failing never fails the
    fetch)."""
    fleet = s3_fleet
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")  # the store's failure is heard at once
    monkeypatch.setattr(s3conditional, "SMALL_RETRIES", 0)
    fleet.hub.cdn.throttle_bps = 8 * MiB

    def down() -> None:
        wait_for(
            lambda: any(fleet.writer.head(fleet.part_uri(n)) for n in range(1, fleet.count + 1)),
            what="a part published",
        )
        s3.cutter.slowdown = 1 << 30

    run_with(fleet, tmp_path, down, env={TERM_VARIABLE: "3"})


def test_a_resumed_record_cut_otherwise_with_as_many_pieces_as_parts_is_fetched(
    cdn: CdnServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A ``.part`` whose record an earlier run cut otherwise (a plan, its steals, a follower's
    seed) into as many pieces as the file has parts: the swarm's fetch resumes on it, or runs
    without the swarm; it never fails on it."""
    monkeypatch.setattr(partsize, "PART", MiB)
    data = make_data(3 * MiB - 7, seed=789)
    job = transfer_job(tmp_path / "machine", cdn.add_file("/f.bin", data), data)
    job.part_path.parent.mkdir(parents=True)
    job.part_path.write_bytes(data)  # its bytes are right: only the record's cut is odd
    half = MiB // 2
    seed(job, [(half, MiB), (3 * half, 2 * MiB)])  # pieces from 0, half, 3 half: three
    writer = STORES["file"].writer(endpoint=None, secrets=None)
    folder = f"file://{tmp_path}/mirror/"
    parts = PartSet.of(writer, folder + names.NAMESPACE, folder + "m/f.bin", job)
    assert parts is not None and parts.count == 3
    trust = Digests.fixed(
        "lock", len(data), MiB, [ranges.digest(data[s : s + MiB]) for s in range(0, len(data), MiB)]
    )
    swarm = Swarm(
        parts,
        trust,
        job,
        holder="here:1:x",
        token="ab" * 16,
        wait=Wait(),
        there=lambda: None,
        readers=ThreadPoolExecutor(2),  # (idle once the test is done)
        term=3600,
    )
    config = EngineConfig(connections=4, retry=RetryPolicy(retries=0, base=0.01, cap=0.05))
    with make_client(pool_size=4) as client, swarm:
        engine = Engine(client, config, progress=NullProgress(), cancel=threading.Event())
        result = engine.fetch(job, JobContext(ledger=Ledger(), trust=trust, swarm=swarm))
    assert result.sha256 == hashlib.sha256(data).hexdigest()
    assert job.final_path.read_bytes() == data


def test_the_parts_each_machine_says_it_fetched_from_the_origin_are_what_the_origin_sent(
    folder_fleet: Fleet, tmp_path: Path
) -> None:
    """``origin_parts`` (``--json``, the summary) of every machine add up to the origin's bytes
    (give or take the short last part of each), however the swarm ended."""
    fleet = folder_fleet
    reports = junk_mid_swarm(fleet, tmp_path)
    said_parts = sum(r.files[0].origin_parts for r in reports)
    assert abs(said_parts * fleet.part - fleet.origin_bytes()) <= MACHINES * fleet.part, (
        said_parts,
        fleet.origin_bytes() / fleet.part,
    )
