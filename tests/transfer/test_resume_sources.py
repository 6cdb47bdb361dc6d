"""A partial fetched from one source resumed from another (issue 59 F): bytes known by a pinned hash
are the same bytes wherever they come from, so the first source's validator (its ETag, its date)
never condemns them at the second; the final hash still guards. Without a hash, a validator counts
only for the source it came from, as before."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest
from runfixtures import transfer_job
from servers import CdnServer, Fault, HubServer, make_data

from mdl.catalog.load import parse_catalog
from mdl.catalog.settings import build_settings
from mdl.download.puller import pull_models
from mdl.errors import IntegrityError, NetworkError
from mdl.progress import NullProgress
from mdl.setting import Overrides
from mdl.transfer.engine import Engine
from mdl.transfer.http import RetryPolicy, make_client
from mdl.transfer.job import EngineConfig, TransferJob

DATA = make_data(500_003, seed=59)
CUT = 123_457
# the second source's object: another store, another ETag, another date, the same bytes
MIRROR_ETAG = '"bucket-object-1"'


@pytest.fixture
def client() -> Iterator[httpx2.Client]:
    with make_client(timeout=60, pool_size=8) as c:  # a safety net: no test waits for it
        yield c


@pytest.fixture
def second() -> Iterator[CdnServer]:
    server = CdnServer().start()
    try:
        yield server
    finally:
        server.stop()
    assert not server.errors, server.errors


def engine(client: httpx2.Client, *, split_threshold: int = 1 << 30) -> Engine:
    config = EngineConfig(
        connections=4,
        retry=RetryPolicy(retries=0, base=0.01, cap=0.05),
        split_threshold=split_threshold,
    )
    return Engine(client, config, progress=NullProgress(), cancel=threading.Event())


def cut_from_the_first(cdn: CdnServer, client: httpx2.Client, tmp_path: Path) -> TransferJob:
    """A download of DATA (known by its sha256, as a Hub file is) cut after CUT bytes."""
    url = cdn.add_file("/w.bin", DATA)
    cdn.faults.add(Fault.reset(after_bytes=CUT))
    job = transfer_job(tmp_path, url, DATA)
    with pytest.raises(NetworkError):
        engine(client).fetch(job)
    assert job.part_path.stat().st_size > 0 and job.state_path.exists()
    return job


def as_mirror(job: TransferJob, url: str) -> TransferJob:
    """The job as a pull sends it to a mirror: another URL, a mismatch left for the next source."""
    return job._replace(url=url, retry_on_mismatch=False)


def test_a_partial_from_one_source_is_resumed_from_another_with_the_same_hash(
    cdn: CdnServer, second: CdnServer, client: httpx2.Client, tmp_path: Path
) -> None:
    job = cut_from_the_first(cdn, client, tmp_path)
    url = second.add_file("/tiny/w.bin", DATA, etag=MIRROR_ETAG, last_modified=1_800_000_000)
    result = engine(client).fetch(as_mirror(job, url))
    assert job.final_path.read_bytes() == DATA
    assert not job.part_path.exists() and not job.state_path.exists()
    (request,) = second.log.records(method="GET")
    # only the bytes still missing, and no other source's validator to refuse them by
    assert request.range == f"bytes={CUT}-{len(DATA) - 1}"
    assert request.if_range != f'"{hashlib.md5(DATA).hexdigest()}"'
    assert request.status == 206
    assert request.bytes_sent == len(DATA) - CUT
    assert (result.resumed_from, result.fetched, result.discarded) == (CUT, len(DATA) - CUT, None)
    assert result.verified and result.sha256 == hashlib.sha256(DATA).hexdigest()


def test_parallel_ranges_resume_from_another_source_with_the_same_hash(
    cdn: CdnServer, second: CdnServer, client: httpx2.Client, tmp_path: Path
) -> None:
    job = cut_from_the_first(cdn, client, tmp_path)
    url = second.add_file("/tiny/w.bin", DATA, etag=MIRROR_ETAG, last_modified=1_800_000_000)
    result = engine(client, split_threshold=64 * 1024).fetch(as_mirror(job, url))
    assert job.final_path.read_bytes() == DATA
    asked = second.log.records(method="GET")
    assert asked and all(r.status == 206 for r in asked)
    # nothing before the cut came again
    assert sum(r.bytes_sent for r in asked) == len(DATA) - CUT
    assert result.resumed_from == CUT


def test_wrong_bytes_at_the_second_source_never_end_in_the_file(
    cdn: CdnServer, second: CdnServer, client: httpx2.Client, tmp_path: Path
) -> None:
    job = cut_from_the_first(cdn, client, tmp_path)
    bad = bytearray(DATA)
    bad[-7] ^= 0xFF  # past the cut: the resumed tail is what differs
    url = second.add_file("/tiny/w.bin", bytes(bad), etag=MIRROR_ETAG)
    # a mirror: refused, nothing kept, the next source's turn
    with pytest.raises(IntegrityError):
        engine(client).fetch(as_mirror(job, url))
    assert not job.final_path.exists()
    assert not job.part_path.exists() and not job.state_path.exists()
    result = engine(client).fetch(job)  # the origin: the whole file, verified
    assert job.final_path.read_bytes() == DATA
    assert result.verified and result.resumed_from == 0


def test_wrong_bytes_at_another_origin_are_fetched_again_whole_then_refused(
    cdn: CdnServer, second: CdnServer, client: httpx2.Client, tmp_path: Path
) -> None:
    job = cut_from_the_first(cdn, client, tmp_path)
    bad = bytearray(DATA)
    bad[-7] ^= 0xFF
    url = second.add_file("/w.bin", bytes(bad), etag=MIRROR_ETAG)
    # a source that may be to blame only for the splice is asked again from zero, then refused
    with pytest.raises(IntegrityError):
        engine(client).fetch(job._replace(url=url))
    asked = second.log.records(method="GET")
    assert [r.range for r in asked] == [f"bytes={CUT}-{len(DATA) - 1}", None]
    assert not job.final_path.exists() and not job.part_path.exists()


def test_without_a_hash_the_first_sources_validator_still_decides(
    cdn: CdnServer, second: CdnServer, client: httpx2.Client, tmp_path: Path
) -> None:
    url = cdn.add_file("/w.bin", DATA)
    cdn.faults.add(Fault.reset(after_bytes=CUT))
    job = transfer_job(tmp_path, url, size=len(DATA))  # no hash: the validators are all there is
    with pytest.raises(NetworkError):
        engine(client).fetch(job)
    other = second.add_file("/tiny/w.bin", DATA, etag=MIRROR_ETAG)
    result = engine(client).fetch(job._replace(url=other))
    assert job.final_path.read_bytes() == DATA
    (request,) = second.log.records(method="GET")
    assert request.if_range == f'"{hashlib.md5(DATA).hexdigest()}"'
    assert request.status == 200  # another version to this server: the whole file, nothing spliced
    assert result.resumed_from == 0


# -- a pull: the CDN cut, the next run reads the fleet's mirror (a killed lease holder's case)
# --------


def test_a_pull_resumes_the_cdns_partial_from_the_mirror(
    hub: HubServer, second: CdnServer, tmp_path: Path
) -> None:
    weights = make_data(1_300_003, seed=60)  # LFS, known by its sha256; over 1 MiB: resumable
    hub.add_repo("org/tiny", {"model.safetensors": weights})
    hub.cdn.faults.add(Fault.reset(after_bytes=100_000))
    dest = tmp_path / "models"
    environ = {"HF_ENDPOINT": hub.url, "MDL_RETRIES": "0", "MDL_LOG_FILE": str(tmp_path / "log")}
    (spec,) = parse_catalog('[models.tiny]\nrepo = "org/tiny"\n').models
    first = pull_models(
        [spec], build_settings(Overrides(), environ=environ, dest=dest), progress=NullProgress()
    )
    assert not first.ok
    second.add_file("/tiny/model.safetensors", weights, etag=MIRROR_ETAG)
    mirrors = Overrides(mirrors=[second.url + "/{model}/{path}"])
    hub.cdn.log.clear()
    report = pull_models(
        [spec], build_settings(mirrors, environ=environ, dest=dest), progress=NullProgress()
    )
    assert report.ok, report.files
    assert (dest / "tiny" / "model.safetensors").read_bytes() == weights
    (request,) = second.log.records(method="GET")
    assert request.range == f"bytes=100000-{len(weights) - 1}"
    assert request.status == 206
    assert not hub.cdn.log.records(method="GET")
    (outcome,) = report.files
    assert outcome.action == "resumed" and outcome.verified
    assert outcome.mirror is not None and outcome.mirror.startswith(second.url)


def test_bytes_kept_survive_a_mirror_that_fails_and_the_origin_continues_them(
    hub: HubServer, second: CdnServer, tmp_path: Path
) -> None:
    weights = make_data(1_300_003, seed=62)  # over 1 MiB: resumable
    hub.add_repo("org/tiny", {"model.safetensors": weights})
    hub.cdn.faults.add(Fault.reset(after_bytes=100_000))
    dest = tmp_path / "models"
    environ = {"HF_ENDPOINT": hub.url, "MDL_RETRIES": "0", "MDL_LOG_FILE": str(tmp_path / "log")}
    (spec,) = parse_catalog('[models.tiny]\nrepo = "org/tiny"\n').models
    first = pull_models(
        [spec], build_settings(Overrides(), environ=environ, dest=dest), progress=NullProgress()
    )
    assert not first.ok
    # the mirror has the object but cuts every answer before its first byte
    second.add_file("/tiny/model.safetensors", weights, etag=MIRROR_ETAG)
    second.faults.add(Fault.reset(after_bytes=0, times=None))
    hub.cdn.log.clear()
    mirrors = Overrides(mirrors=[second.url + "/{model}/{path}"])
    report = pull_models(
        [spec], build_settings(mirrors, environ=environ, dest=dest), progress=NullProgress()
    )
    assert report.ok, report.files
    assert (dest / "tiny" / "model.safetensors").read_bytes() == weights
    (outcome,) = report.files
    assert outcome.mirror is None and outcome.verified
    # the origin was asked only for what no run had yet
    (request,) = hub.cdn.log.records(method="GET")
    assert request.range == f"bytes=100000-{len(weights) - 1}"


@pytest.mark.slow
def test_without_verifying_a_mirrors_failure_leaves_nothing_to_splice(
    hub: HubServer, second: CdnServer, tmp_path: Path
) -> None:
    weights = make_data(300_003, seed=63)
    hub.add_repo("org/tiny", {"model.safetensors": weights})
    hub.cdn.faults.add(Fault.reset(after_bytes=100_000))
    dest = tmp_path / "models"
    environ = {"HF_ENDPOINT": hub.url, "MDL_RETRIES": "0", "MDL_LOG_FILE": str(tmp_path / "log")}
    (spec,) = parse_catalog('[models.tiny]\nrepo = "org/tiny"\n').models
    pull_models(
        [spec], build_settings(Overrides(), environ=environ, dest=dest), progress=NullProgress()
    )
    second.add_file("/tiny/model.safetensors", weights, etag=MIRROR_ETAG)
    second.faults.add(Fault.reset(after_bytes=0, times=None))
    hub.cdn.log.clear()
    flags = Overrides(mirrors=[second.url + "/{model}/{path}"], verify=False)
    report = pull_models(
        [spec], build_settings(flags, environ=environ, dest=dest), progress=NullProgress()
    )
    assert report.ok, report.files
    assert (dest / "tiny" / "model.safetensors").read_bytes() == weights
    (request,) = hub.cdn.log.records(method="GET")
    assert request.range in (None, f"bytes=0-{len(weights) - 1}")  # from the start
