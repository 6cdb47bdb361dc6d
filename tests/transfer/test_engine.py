"""The download engine against the real loopback CDN/Hub: ranges, resume, verification, retries,
limits.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from clocks import PacedClock
from pytest_httpx2 import HTTPXMock
from runfixtures import HANG, transfer_job, wait_for
from servers import TOKEN, CdnServer, Fault, HubServer, git_blob_sha1, make_data

from mdl.errors import (
    ExitCode,
    IntegrityError,
    InterruptedByUserError,
    LocalFSError,
    NetworkError,
    NotFoundError,
)
from mdl.progress import Event, Progress
from mdl.transfer.engine import Engine
from mdl.transfer.failures import ExpiredURLError
from mdl.transfer.http import Credentials, RetryPolicy, make_client, origin
from mdl.transfer.job import EngineConfig, Identity, TransferJob
from mdl.transfer.scheduling import MiB, RateLimiter, plan_pieces

SMALL = 64 * 1024


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Recorder(Progress):
    """A thread-safe Progress that remembers what it was told."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.advanced: dict[str, int] = defaultdict(int)
        self.starts: list[tuple[str, int | None, int]] = []
        self.notes: list[str] = []
        self.names: list[tuple[str | None, str | None]] = []

    def emit(self, event: Event) -> None:
        with self.lock:
            if event.kind == "start":
                self.starts.append((event.key, event.total, event.completed))
                self.names.append((event.model, event.path))
            elif event.kind == "waiting":
                self.notes.append(f"{event.key}: {event.message}")
            elif event.kind == "advance":
                self.advanced[event.key] += event.nbytes
            elif event.kind == "note":
                self.notes.append(event.message)


@pytest.fixture
def client() -> Iterator[httpx2.Client]:
    # a safety net: no test here waits for it to fire
    with make_client(timeout=60, pool_size=32) as c:
        yield c


def make_engine(
    client: httpx2.Client,
    *,
    connections: int = 4,
    retries: int = 0,
    split_threshold: int = SMALL,
    checkpoint_interval: float = 1.0,
    progress: Recorder | None = None,
    **kwargs: Any,
) -> Engine:
    config = EngineConfig(
        connections=connections,
        retry=RetryPolicy(retries=retries, base=0.01, cap=0.05),
        split_threshold=split_threshold,
        checkpoint_interval=checkpoint_interval,
    )
    return Engine(
        client, config, progress=progress or Recorder(), cancel=threading.Event(), **kwargs
    )


def saved_state(job: TransferJob) -> dict[str, Any]:
    return json.loads(job.state_path.read_text())  # type: ignore[no-any-return]


def assert_claims_backed_by_data(job: TransferJob, data: bytes) -> int:
    """Every byte the resume record claims is on disk in the .part, and right; returns the bytes
    claimed.
    """
    part = job.part_path.read_bytes()
    claimed = 0
    for start, end, done in saved_state(job)["pieces"]:
        assert end is None or start + done <= end
        assert part[start : start + done] == data[start : start + done]
        claimed += done
    return claimed


def assert_finished(job: TransferJob, data: bytes) -> None:
    assert job.final_path.read_bytes() == data
    assert not job.part_path.exists()
    assert not job.state_path.exists()


def gets(server: CdnServer) -> list[Any]:
    return server.log.records(method="GET")


# -- whole downloads
# -------------------------------------------------------------------------------------


def test_single_stream_byte_exact(cdn: CdnServer, client: httpx2.Client, tmp_path: Path) -> None:
    data = make_data(300_001, seed=1)
    url = cdn.add_file("/f.bin", data)
    progress = Recorder()
    job = transfer_job(tmp_path, url, data)
    result = make_engine(client, split_threshold=32 * MiB, progress=progress).fetch(job)
    assert_finished(job, data)
    assert (result.size, result.sha256, result.resumed_from, result.fetched) == (
        len(data),
        sha256(data),
        0,
        len(data),
    )
    assert result.etag == f'"{hashlib.md5(data).hexdigest()}"'
    (request,) = gets(cdn)
    assert request.range is None
    assert request.status == 200
    assert progress.starts == [("m/f.bin", len(data), 0)]
    assert progress.advanced["m/f.bin"] == len(data)


@pytest.mark.slow
@pytest.mark.parametrize("connections", [4, 8])
def test_parallel_ranges_byte_exact(
    cdn: CdnServer, client: httpx2.Client, tmp_path: Path, connections: int
) -> None:
    data = make_data(9_000_003, seed=2)
    url = cdn.add_file("/f.bin", data)
    # The first answer's body is held until the second request has come: a stream whose thread
    # starts late on a busy machine still finds the other's answer running (else it may reuse its
    # finished connection), an event, not the answer's length.
    second = threading.Event()
    cdn.faults.add(Fault.stall(after_bytes=1, until=second, resume=True))
    cdn.faults.add(Fault.call(second.set, skip=1))
    job = transfer_job(tmp_path, url, data, git_oid=git_blob_sha1(data))
    result = make_engine(client, connections=connections).fetch(job)
    assert_finished(job, data)
    assert (result.sha256, result.git_oid) == (sha256(data), git_blob_sha1(data))
    pieces = plan_pieces(len(data), connections=connections, split_threshold=SMALL)
    assert len(pieces) == 2  # one piece per connection, but none under MIN_PIECE: 9 MB makes two
    # A hash checks the file: no 1-byte locate first; the first answer honoured its range, then
    # the others asked theirs (issue 86: a server ignoring Range sends the file once).
    ranged = gets(cdn)
    assert all(r.range != "bytes=0-0" for r in ranged)
    # One request per piece: each fits in a stream's first window, so nothing is left to steal.
    assert sorted(r.range for r in ranged) == sorted(f"bytes={p.start}-{p.end - 1}" for p in pieces)  # type: ignore[operator]
    assert all(r.status == 206 for r in ranged)
    assert sum(r.bytes_sent for r in ranged) == len(data)
    # Several streams really ran at once.
    assert len({r.connection for r in ranged}) > 1


def test_file_smaller_than_one_piece(cdn: CdnServer, client: httpx2.Client, tmp_path: Path) -> None:
    data = make_data(1_000_003, seed=3)
    url = cdn.add_file("/f.bin", data)
    job = transfer_job(tmp_path, url, data)
    make_engine(client, connections=8).fetch(job)
    assert_finished(job, data)
    (request,) = gets(cdn)
    assert request.range is None


def test_empty_file(cdn: CdnServer, client: httpx2.Client, tmp_path: Path) -> None:
    url = cdn.add_file("/f.bin", b"")
    job = transfer_job(tmp_path, url, size=0, sha=sha256(b""), git_oid=git_blob_sha1(b""))
    result = make_engine(client).fetch(job)
    assert_finished(job, b"")
    assert (result.size, result.sha256, result.git_oid) == (0, sha256(b""), git_blob_sha1(b""))


def test_empty_file_of_unknown_size(cdn: CdnServer, client: httpx2.Client, tmp_path: Path) -> None:
    url = cdn.add_file("/f.bin", b"")
    job = transfer_job(tmp_path, url, size=None)
    assert make_engine(client).fetch(job).size == 0
    assert_finished(job, b"")


def test_unknown_size(cdn: CdnServer, client: httpx2.Client, tmp_path: Path) -> None:
    data = make_data(200_003, seed=4)
    url = cdn.add_file("/f.bin", data)
    job = transfer_job(tmp_path, url, size=None, sha=sha256(data))
    result = make_engine(client, connections=8).fetch(job)
    assert result.size == len(data)
    assert_finished(job, data)


@pytest.mark.parametrize("size", [200_003, 9_000_003], ids=["one-stream", "split"])
def test_unknown_size_from_a_server_that_ignores_ranges_is_one_request(
    cdn: CdnServer, client: httpx2.Client, tmp_path: Path, size: int
) -> None:
    """The probe's ``bytes=0-`` answered 200 with the whole file is read on: not closed and asked
    for again (nor a first byte asked to learn that ranges are ignored, when the file splits)."""
    data = make_data(size, seed=41)
    url = cdn.add_file("/f.bin", data)
    cdn.ignore_ranges = True
    job = transfer_job(tmp_path, url, size=None, sha=sha256(data))
    assert make_engine(client, connections=4).fetch(job).size == len(data)
    assert_finished(job, data)
    assert [(r.range, r.status, r.bytes_sent) for r in gets(cdn)] == [("bytes=0-", 200, size)]


def test_final_path_replaces_an_old_file(
    cdn: CdnServer, client: httpx2.Client, tmp_path: Path
) -> None:
    data = make_data(5000, seed=5)
    url = cdn.add_file("/f.bin", data)
    job = transfer_job(tmp_path, url, size=len(data))
    job.final_path.parent.mkdir(parents=True)
    job.final_path.write_bytes(b"old contents")
    make_engine(client).fetch(job)
    assert_finished(job, data)


# -- verification
# ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("parallel", [False, True])
def test_wrong_sha256_fails_after_one_download(
    cdn: CdnServer, client: httpx2.Client, tmp_path: Path, parallel: bool
) -> None:
    data = make_data(9_000_003 if parallel else 100_003, seed=6)
    # an ETag ties the parallel ranges to one version: nothing suspect
    url = cdn.add_file("/f.bin", data)
    wrong = "0" * 64
    progress = Recorder()
    job = transfer_job(tmp_path, url, size=len(data), sha=wrong)
    with pytest.raises(IntegrityError) as info:
        make_engine(client, progress=progress).fetch(job)
    assert info.value.exit_code == ExitCode.INTEGRITY == 6
    assert wrong in info.value.message
    assert sha256(data) in info.value.message
    assert "m/f.bin" in info.value.message
    assert not job.part_path.exists()
    assert not job.state_path.exists()
    assert not job.final_path.exists()
    assert not job.final_path.parent.exists()
    # One download: a clean transfer that hashes wrong is a wrong file (or hash); a second one would
    # say so again.
    # parallel too: the hash spares the 1-byte locate
    assert cdn.log.body_bytes(method="GET") == len(data)
    assert job.retries.causes == ()
    if not parallel:
        (only,) = gets(cdn)
        assert only.range is None


def test_a_mismatch_after_a_resume_is_fetched_again_from_zero(
    cdn: CdnServer, client: httpx2.Client, tmp_path: Path
) -> None:
    good = make_data(400_003, seed=7)
    corrupt = bytearray(good)
    corrupt[50_000] ^= 0xFF
    # The first run keeps 300 KB of a corrupt copy that carries the same ETag as the good one (a bad
    # cache).
    url = cdn.add_file("/f.bin", bytes(corrupt), etag='"v1"')
    cdn.faults.add(Fault.reset(after_bytes=300_000))
    job = transfer_job(tmp_path, url, good)
    with pytest.raises(NetworkError):
        make_engine(client).fetch(job)
    cdn.add_file("/f.bin", good, etag='"v1"')
    cdn.log.clear()
    progress = Recorder()
    result = make_engine(client, progress=progress).fetch(job)
    assert_finished(job, good)
    assert result.sha256 == sha256(good)
    first, second = gets(cdn)
    assert first.range == "bytes=300000-400002" and second.range is None, (
        "the resumed bytes were suspect"
    )
    assert result.fetched == (len(good) - 300_000) + len(good), (
        "the refused try's bytes crossed the network too"
    )
    assert job.retries.causes == ("sha256 mismatch, fetched again from zero",)
    assert any("mismatch" in note for note in progress.notes)


def test_git_blob_sha1_is_verified(cdn: CdnServer, client: httpx2.Client, tmp_path: Path) -> None:
    data = b'{"model_type": "bert"}\n' * 100
    url = cdn.add_file("/f.bin", data)
    job = transfer_job(tmp_path, url, size=len(data), git_oid=git_blob_sha1(data))
    assert make_engine(client).fetch(job).git_oid == git_blob_sha1(data)
    assert_finished(job, data)


def test_wrong_git_blob_sha1_fails(cdn: CdnServer, client: httpx2.Client, tmp_path: Path) -> None:
    data = b"vocab\n" * 1000
    url = cdn.add_file("/f.bin", data)
    wrong = "1" * 40
    job = transfer_job(tmp_path, url, size=len(data), git_oid=wrong)
    with pytest.raises(IntegrityError, match="git blob id mismatch") as info:
        make_engine(client).fetch(job)
    assert wrong in info.value.message
    assert git_blob_sha1(data) in info.value.message
    assert not job.final_path.exists()
    assert not job.part_path.exists()


def test_no_verify_skips_the_hash_but_not_the_size(
    cdn: CdnServer, client: httpx2.Client, tmp_path: Path
) -> None:
    data = make_data(10_000, seed=8)
    url = cdn.add_file("/f.bin", data)
    job = transfer_job(tmp_path, url, size=len(data), sha="0" * 64, verify=False)
    result = make_engine(client).fetch(job)
    assert result.sha256 == sha256(data)  # still computed, for the record
    assert_finished(job, data)


def test_server_file_bigger_than_expected_is_a_size_mismatch(
    cdn: CdnServer, client: httpx2.Client, tmp_path: Path
) -> None:
    data = make_data(100_000, seed=9)
    url = cdn.add_file("/f.bin", data)
    job = transfer_job(tmp_path, url, size=len(data) - 10)
    with pytest.raises(IntegrityError, match="size"):
        make_engine(client).fetch(job)
    assert not job.final_path.exists()


def test_server_file_smaller_than_expected_is_a_size_mismatch(
    cdn: CdnServer, client: httpx2.Client, tmp_path: Path
) -> None:
    data = make_data(100_000, seed=10)
    url = cdn.add_file("/f.bin", data)
    job = transfer_job(tmp_path, url, size=len(data) + 10)
    with pytest.raises(IntegrityError, match="size"):
        make_engine(client, retries=2).fetch(job)
    assert not job.final_path.exists()


def test_parallel_size_disagreement_is_a_size_mismatch(
    cdn: CdnServer, client: httpx2.Client, tmp_path: Path
) -> None:
    data = make_data(9_000_003, seed=11)
    url = cdn.add_file("/f.bin", data)
    job = transfer_job(tmp_path, url, size=len(data) + 1)
    with pytest.raises(IntegrityError, match="size") as info:
        make_engine(client).fetch(job)
    assert info.value.exit_code == ExitCode.INTEGRITY
    assert "9000004" in info.value.message and "9000003" in info.value.message
    assert not job.final_path.exists()


# -- resume
# ----------------------------------------------------------------------------------------------


def test_resume_single_stream_asks_for_the_rest_with_if_range(
    cdn: CdnServer, client: httpx2.Client, tmp_path: Path
) -> None:
    data = make_data(500_003, seed=12)
    url = cdn.add_file("/f.bin", data)
    etag = f'"{hashlib.md5(data).hexdigest()}"'
    cut = 123_457
    cdn.faults.add(Fault.reset(after_bytes=cut))
    job = transfer_job(tmp_path, url, data)
    with pytest.raises(NetworkError) as info:
        make_engine(client, retries=0).fetch(job)
    assert info.value.exit_code == ExitCode.NETWORK
    assert not job.final_path.exists()
    state = saved_state(job)
    assert state["validator"] == etag
    assert state["identity"] == {
        "size": len(data),
        "sha256": sha256(data),
        "git_oid": None,
        "etag": None,
    }
    assert state["pieces"] == [[0, len(data), cut]]
    assert assert_claims_backed_by_data(job, data) == cut

    cdn.log.clear()
    progress = Recorder()
    result = make_engine(client, progress=progress).fetch(job)
    assert_finished(job, data)
    (request,) = gets(cdn)
    assert request.range == f"bytes={cut}-{len(data) - 1}"
    assert request.if_range == etag
    assert request.status == 206
    assert request.bytes_sent == len(data) - cut
    assert (result.resumed_from, result.fetched) == (cut, len(data) - cut)
    assert progress.starts == [("m/f.bin", len(data), cut)]


def test_resume_parallel_fetches_only_the_missing_ranges(
    cdn: CdnServer, client: httpx2.Client, tmp_path: Path
) -> None:
    data = make_data(9_000_003, seed=13)
    url = cdn.add_file("/f.bin", data)
    # per stream: every range is still in flight when one of them is cut
    cdn.throttle_bps = 4_000_000
    # the first range to arrive (a hash checks it: no locate)
    cdn.faults.add(Fault.reset(after_bytes=300_000))
    job = transfer_job(tmp_path, url, data)
    with pytest.raises(NetworkError):
        make_engine(client, retries=0).fetch(job)
    claimed = assert_claims_backed_by_data(job, data)
    pieces = saved_state(job)["pieces"]
    assert len(pieces) == 2
    assert 0 < claimed < len(data)
    assert not job.final_path.exists()

    cdn.throttle_bps = None
    cdn.log.clear()
    result = make_engine(client).fetch(job)
    assert_finished(job, data)
    ranged = gets(cdn)  # no locate: the record's validator guards the ranges, the hash the result
    expected = {f"bytes={s + d}-{e - 1}" for s, e, d in pieces if s + d < e}
    assert {r.range for r in ranged} == expected
    assert len(ranged) == len(expected)
    assert all(r.if_range == f'"{hashlib.md5(data).hexdigest()}"' for r in ranged)
    assert sum(r.bytes_sent for r in ranged) == len(data) - claimed
    assert result.resumed_from == claimed


def test_resume_record_claiming_more_than_the_part_is_clamped(
    cdn: CdnServer, client: httpx2.Client, tmp_path: Path
) -> None:
    data = make_data(400_000, seed=14)
    url = cdn.add_file("/f.bin", data)
    cdn.faults.add(Fault.reset(after_bytes=300_000))
    job = transfer_job(tmp_path, url, data)
    with pytest.raises(NetworkError):
        make_engine(client).fetch(job)
    assert saved_state(job)["pieces"] == [[0, len(data), 300_000]]
    with job.part_path.open("r+b") as fh:  # a crash lost the tail of what the record claims
        fh.truncate(100_000)
    cdn.log.clear()
    make_engine(client).fetch(job)
    assert_finished(job, data)
    (request,) = gets(cdn)
    assert request.range == f"bytes=100000-{len(data) - 1}"


def test_unreadable_resume_record_starts_over(
    cdn: CdnServer, client: httpx2.Client, tmp_path: Path
) -> None:
    data = make_data(50_000, seed=15)
    url = cdn.add_file("/f.bin", data)
    job = transfer_job(tmp_path, url, size=len(data))
    job.part_path.parent.mkdir(parents=True)
    job.part_path.write_bytes(b"\xff" * 20_000)
    job.state_path.write_text("{not json")
    make_engine(client).fetch(job)
    assert_finished(job, data)
    (request,) = gets(cdn)
    assert request.range is None


def test_changed_identity_discards_the_old_partial(
    cdn: CdnServer, client: httpx2.Client, tmp_path: Path
) -> None:
    old = make_data(300_000, seed=16)
    new = make_data(300_000, seed=17)
    url = cdn.add_file("/f.bin", old)
    cdn.faults.add(Fault.reset(after_bytes=200_000))
    with pytest.raises(NetworkError):
        make_engine(client).fetch(transfer_job(tmp_path, url, old))
    cdn.add_file("/f.bin", new)
    cdn.log.clear()
    job = transfer_job(tmp_path, url, new)
    result = make_engine(client).fetch(job)
    assert_finished(job, new)
    assert result.resumed_from == 0
    (request,) = gets(cdn)
    assert request.range is None
    assert request.bytes_sent == len(new)


def test_changed_file_behind_the_same_identity_is_refetched_whole(
    cdn: CdnServer, client: httpx2.Client, tmp_path: Path
) -> None:
    # The identity only knows the size; If-Range with the old ETag makes the server send the new
    # file whole.
    old = make_data(300_000, seed=18)
    new = make_data(300_000, seed=19)
    url = cdn.add_file("/f.bin", old)
    cdn.faults.add(Fault.reset(after_bytes=200_000))
    job = transfer_job(tmp_path, url, size=len(old))
    with pytest.raises(NetworkError):
        make_engine(client).fetch(job)
    cdn.add_file("/f.bin", new)
    cdn.log.clear()
    make_engine(client).fetch(job)
    assert_finished(job, new)
    (request,) = gets(cdn)
    assert request.if_range == f'"{hashlib.md5(old).hexdigest()}"'
    assert request.status == 200


def test_changed_file_behind_the_same_identity_parallel_is_never_spliced(
    cdn: CdnServer, client: httpx2.Client, tmp_path: Path
) -> None:
    old = make_data(9_000_003, seed=20)
    new = make_data(9_000_003, seed=21)
    url = cdn.add_file("/f.bin", old)
    cdn.throttle_bps = 4_000_000
    cdn.faults.add(Fault.reset(after_bytes=300_000, skip=1))
    job = transfer_job(tmp_path, url, size=len(old))
    with pytest.raises(NetworkError):
        make_engine(client).fetch(job)
    cdn.throttle_bps = None
    cdn.add_file("/f.bin", new)
    make_engine(client).fetch(job)
    assert job.final_path.read_bytes() == new


def test_server_ignoring_ranges_on_resume_restarts_from_zero(
    cdn: CdnServer, client: httpx2.Client, tmp_path: Path
) -> None:
    data = make_data(300_000, seed=22)
    url = cdn.add_file("/f.bin", data)
    cdn.faults.add(Fault.reset(after_bytes=100_000))
    job = transfer_job(tmp_path, url, data)
    with pytest.raises(NetworkError):
        make_engine(client).fetch(job)
    cdn.ignore_ranges = True
    cdn.log.clear()
    progress = Recorder()
    make_engine(client, progress=progress).fetch(job)
    assert_finished(job, data)
    (request,) = gets(cdn)
    assert request.range == f"bytes=100000-{len(data) - 1}"
    assert request.status == 200
    # Progress was rewound: what it saw adds up to the file once; the resume it announced is said to
    # be none.
    assert progress.starts[0][2] + progress.advanced["m/f.bin"] == len(data)
    assert progress.notes == ["m/f.bin: server ignored the range; fetching 293 KiB from the start"]


def test_server_ignoring_a_parallel_resume_says_so_once(
    cdn: CdnServer, client: httpx2.Client, tmp_path: Path
) -> None:
    data = make_data(9_000_003, seed=25)
    url = cdn.add_file("/f.bin", data)
    cdn.throttle_bps = 4_000_000
    cdn.faults.add(Fault.reset(after_bytes=300_000, skip=1))
    job = transfer_job(tmp_path, url, data)
    with pytest.raises(NetworkError):
        make_engine(client).fetch(job)
    cdn.throttle_bps = None
    cdn.ignore_ranges = True
    progress = Recorder()
    make_engine(client, progress=progress).fetch(job)
    assert_finished(job, data)
    assert progress.starts[0][2] > 0, "a resume was announced"
    assert progress.notes == ["m/f.bin: server ignored the range; fetching 8.58 MiB from the start"]


@pytest.mark.parametrize("hashed", [True, False])
def test_server_ignoring_ranges_reads_its_first_whole_answer_as_the_one_stream(
    cdn: CdnServer, client: httpx2.Client, tmp_path: Path, hashed: bool
) -> None:
    """A CDN that ignores Range (nginx ``max_ranges 0``) answered every range with the whole file,
    then mdl asked for it again as one stream: 1.83x the file sent (issue 86, E), said only in the
    log. Now the first whole answer is read on as the one stream (no request after it), the others
    closed, and it is said."""
    data = make_data(24 * MiB + 3, seed=23)
    url = cdn.add_file("/f.bin", data)
    cdn.ignore_ranges = True
    job = (
        transfer_job(tmp_path, url, data) if hashed else transfer_job(tmp_path, url, size=len(data))
    )
    progress = Recorder()
    make_engine(client, connections=8, progress=progress).fetch(job)
    assert_finished(job, data)
    asked = gets(cdn)
    # hashed: no locate, one range asked first (the others wait for its answer); else the locate
    # (it fixes the validator before ranges go in parallel): the whole file came, and was read on
    first = "bytes=0-4259839" if hashed else "bytes=0-0"
    assert [(r.range, r.status, r.bytes_sent) for r in asked] == [(first, 200, len(data))]
    assert sum(r.bytes_sent for r in asked) <= 1.05 * len(data)
    assert progress.notes == ["m/f.bin: the server ignores ranges; fetched as one stream"]


def test_full_body_answer_to_one_range_falls_back_to_one_stream(
    cdn: CdnServer, client: httpx2.Client, tmp_path: Path
) -> None:
    data = make_data(9_000_003, seed=24)
    url = cdn.add_file("/f.bin", data)
    # one range passes (no locate: a hash checks it), then a plain 200: read on as the one stream
    cdn.faults.add(Fault.full_body(skip=1))
    job = transfer_job(tmp_path, url, data, git_oid=git_blob_sha1(data))
    make_engine(client, connections=4).fetch(job)
    assert_finished(job, data)
    (whole,) = [r for r in gets(cdn) if r.fault == "full_body"]
    assert whole.bytes_sent == len(data) and whole.complete
    assert gets(cdn)[-1].range is not None, "no request after the whole answer"


def test_wrong_offset_in_206_is_refused(httpx2_mock: HTTPXMock, tmp_path: Path) -> None:
    data = make_data(1000, seed=25)
    # hashed: the resume repeats no bytes
    job = transfer_job(tmp_path, "https://files.example/f.bin", data)
    job.part_path.parent.mkdir(parents=True)
    job.part_path.write_bytes(data[:500] + b"\0" * 500)
    job.state_path.write_text(
        json.dumps(
            {
                "version": 1,
                "source": job.url,
                "identity": {
                    "size": 1000,
                    "sha256": job.identity.sha256,
                    "git_oid": None,
                    "etag": None,
                },
                # without any validator a partial is never resumed (could be another version)
                "validator": '"v1"',
                "pieces": [[0, 1000, 500]],
            }
        )
    )
    httpx2_mock.add_response(
        url=job.url,
        match_headers={"Range": "bytes=500-999"},
        status_code=206,
        headers={"Content-Range": "bytes 0-999/1000"},
        content=data,
    )
    with (
        # httpx2_mock answers for httpx2's own transport (mdl's own carries the deadlines, not
        # needed here).
        make_client(timeout=5, pool_size=2, transport=httpx2.HTTPTransport()) as client,
        pytest.raises(NetworkError, match="asked for bytes from 500, server sent from 0"),
    ):
        make_engine(client, retries=3).fetch(job)
    assert job.part_path.read_bytes()[500:] == b"\0" * 500
    assert saved_state(job)["pieces"] == [[0, 1000, 500]]


def test_complete_partial_is_finished_without_a_request(
    cdn: CdnServer, client: httpx2.Client, tmp_path: Path
) -> None:
    # A crash after the last byte but before the rename: the next run only verifies and moves it.
    data = make_data(300_000, seed=40)
    url = cdn.add_file("/f.bin", data)
    cdn.faults.add(Fault.reset(after_bytes=100_000))
    job = transfer_job(tmp_path, url, data)
    with pytest.raises(NetworkError):
        make_engine(client).fetch(job)
    job.part_path.write_bytes(data)
    job.state_path.write_text(
        json.dumps({**saved_state(job), "pieces": [[0, len(data), len(data)]]})
    )
    cdn.log.clear()
    result = make_engine(client).fetch(job)
    assert_finished(job, data)
    assert cdn.log.records() == []
    assert (result.resumed_from, result.fetched) == (len(data), 0)


def test_corrupt_resumed_bytes_are_caught_and_fetched_again(
    cdn: CdnServer, client: httpx2.Client, tmp_path: Path
) -> None:
    data = make_data(300_000, seed=41)
    url = cdn.add_file("/f.bin", data)
    cdn.faults.add(Fault.reset(after_bytes=200_000))
    job = transfer_job(tmp_path, url, data)
    with pytest.raises(NetworkError):
        make_engine(client).fetch(job)
    with job.part_path.open("r+b") as fh:  # bit rot in the part already downloaded
        fh.seek(1234)
        fh.write(b"\x00\x00")
    cdn.log.clear()
    make_engine(client).fetch(job)
    assert_finished(job, data)
    first, second = gets(cdn)
    assert first.range == f"bytes=200000-{len(data) - 1}"
    assert second.range is None
    assert second.bytes_sent == len(data)


# -- the resume record
# -----------------------------------------------------------------------------------


@pytest.mark.slow
def test_record_never_claims_more_than_is_on_disk(
    cdn: CdnServer, client: httpx2.Client, tmp_path: Path
) -> None:
    data = make_data(9_000_003, seed=26)
    url = cdn.add_file("/f.bin", data)
    cdn.throttle_bps = 6_000_000
    # the first answer holds after 3 MB until the test has read three records mid-way (an event,
    # not the machine's speed), then sends the rest
    release = threading.Event()
    cdn.faults.add(Fault.stall(after_bytes=3_000_000, resume=True, until=release))
    job = transfer_job(tmp_path, url, data)
    engine = make_engine(client, checkpoint_interval=0.05)
    outcome: list[object] = []
    thread = threading.Thread(target=lambda: outcome.append(engine.fetch(job)))
    thread.start()
    snapshots = 0
    try:
        while thread.is_alive():
            try:
                state = json.loads(job.state_path.read_text())
                part = job.part_path.read_bytes()
            except (FileNotFoundError, ValueError):
                time.sleep(0.01)
                continue
            for start, _end, done in state["pieces"]:
                assert part[start : start + done] == data[start : start + done]
            snapshots += state["pieces"] != [[s, e, 0] for s, e, _ in state["pieces"]]
            if snapshots >= 3:
                release.set()
            time.sleep(0.02)
    finally:
        release.set()
        thread.join()
    assert snapshots >= 3
    assert outcome and job.final_path.read_bytes() == data


def test_frequent_checkpoints_from_many_streams(
    cdn: CdnServer, client: httpx2.Client, tmp_path: Path
) -> None:
    data = make_data(13_000_003, seed=27)
    url = cdn.add_file("/f.bin", data)
    job = transfer_job(tmp_path, url, size=len(data))
    make_engine(client, connections=8, checkpoint_interval=0.0).fetch(job)
    assert_finished(job, data)


# -- identity and the final path
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mine", "theirs", "same"),
    [
        (Identity(10, "a" * 64, None, None), Identity(10, "a" * 64, None, '"x"'), True),
        (Identity(10, "a" * 64, None, None), Identity(10, "b" * 64, None, None), False),
        (Identity(10, None, None, None), Identity(11, None, None, None), False),
        (Identity(10, None, "1" * 40, None), Identity(10, None, "1" * 40, None), True),
        (Identity(10, None, "1" * 40, None), Identity(10, None, "2" * 40, None), False),
        (Identity(10, None, None, '"e1"'), Identity(10, None, None, '"e1"'), True),
        (Identity(10, None, None, '"e1"'), Identity(10, None, None, '"e2"'), False),
        (Identity(10, None, None, None), Identity(10, None, None, '"e"'), True),
        (Identity(10, "a" * 64, None, None), Identity(10, None, None, None), False),
        (Identity(None, None, None, None), Identity(None, None, None, None), False),
        (Identity(None, "a" * 64, None, None), Identity(10, "a" * 64, None, None), True),
    ],
)
def test_identity_matches(mine: Identity, theirs: Identity, same: bool) -> None:
    assert mine.matches(theirs) is same
    assert theirs.matches(mine) is same


def test_final_path_symlink_is_replaced_not_followed(
    cdn: CdnServer, client: httpx2.Client, tmp_path: Path
) -> None:
    data = make_data(5000, seed=42)
    url = cdn.add_file("/f.bin", data)
    job = transfer_job(tmp_path, url, size=len(data))
    outside = tmp_path / "outside.txt"
    outside.write_bytes(b"keep me")
    job.final_path.parent.mkdir(parents=True)
    job.final_path.symlink_to(outside)
    make_engine(client).fetch(job)
    assert not job.final_path.is_symlink()
    assert_finished(job, data)
    assert outside.read_bytes() == b"keep me"


def test_final_path_taken_by_a_folder(
    cdn: CdnServer, client: httpx2.Client, tmp_path: Path
) -> None:
    data = make_data(5000, seed=43)
    url = cdn.add_file("/f.bin", data)
    job = transfer_job(tmp_path, url, size=len(data))
    job.final_path.mkdir(parents=True)
    with pytest.raises(LocalFSError, match="is a folder") as info:
        make_engine(client).fetch(job)
    assert info.value.exit_code == ExitCode.LOCAL


# -- retries, stalls, errors
# -----------------------------------------------------------------------------


@pytest.mark.slow
def test_retry_on_503_honours_retry_after(
    cdn: CdnServer, client: httpx2.Client, tmp_path: Path
) -> None:
    data = make_data(20_000, seed=28)
    url = cdn.add_file("/f.bin", data)
    cdn.faults.add(Fault.http_error(503, retry_after=1))
    job = transfer_job(tmp_path, url, data)
    make_engine(client, retries=2).fetch(job)
    assert_finished(job, data)
    first, second = gets(cdn)
    assert first.status == 503
    assert second.status == 200
    assert second.time - first.time >= 0.9


def test_retries_run_out(cdn: CdnServer, client: httpx2.Client, tmp_path: Path) -> None:
    data = make_data(20_000, seed=29)
    url = cdn.add_file("/f.bin", data)
    cdn.faults.add(Fault.http_error(502, times=None))
    job = transfer_job(tmp_path, url, size=len(data))
    with pytest.raises(NetworkError, match="gave up after 3 tries") as info:
        make_engine(client, retries=2).fetch(job)
    assert info.value.exit_code == ExitCode.NETWORK
    assert len(gets(cdn)) == 3
    # Nothing arrived: no debris is left behind.
    assert not job.part_path.exists()
    assert not job.state_path.exists()


def test_reset_mid_body_keeps_what_arrived(
    cdn: CdnServer, client: httpx2.Client, tmp_path: Path
) -> None:
    data = make_data(600_000, seed=30)
    url = cdn.add_file("/f.bin", data)
    cdn.faults.add(Fault.reset(after_bytes=250_000))
    job = transfer_job(tmp_path, url, data)
    result = make_engine(client, retries=2).fetch(job)
    assert_finished(job, data)
    first, second = gets(cdn)
    assert first.range is None
    assert second.range == f"bytes=250000-{len(data) - 1}"
    assert second.bytes_sent == len(data) - 250_000
    assert result.fetched == len(data)


def test_reset_in_one_range_retries_only_that_range(
    cdn: CdnServer, client: httpx2.Client, tmp_path: Path
) -> None:
    data = make_data(9_000_003, seed=31)
    url = cdn.add_file("/f.bin", data)
    # the first range to arrive (a hash checks it: no locate)
    cdn.faults.add(Fault.reset(after_bytes=1_000_000))
    job = transfer_job(tmp_path, url, data)
    make_engine(client, retries=2).fetch(job)
    assert_finished(job, data)
    requests = gets(cdn)
    assert len(requests) == 2 + 1  # a request per piece, and the cut one's retry
    cut = next(r for r in requests if r.fault == "reset")
    start = int(cut.range.removeprefix("bytes=").split("-")[0])
    # The other ranges may still be running when the retry starts: find it by its range, not its
    # position.
    later = requests[requests.index(cut) + 1 :]
    assert [r for r in later if r.range.startswith(f"bytes={start + 1_000_000}-")]
    assert sum(r.bytes_sent for r in requests) == len(data)


@pytest.mark.slow
def test_stall_is_resumed_without_spending_a_retry(cdn: CdnServer, tmp_path: Path) -> None:
    data = make_data(300_000, seed=32)
    url = cdn.add_file("/f.bin", data)
    cdn.faults.add(Fault.stall(after_bytes=100_000))  # silent until the server stops
    job = transfer_job(tmp_path, url, data)
    # the stall is endless: only this timeout can end it
    with make_client(timeout=3, pool_size=4) as client:
        make_engine(client, retries=0).fetch(job)
    assert_finished(job, data)
    first, second = gets(cdn)
    assert first.fault == "stall"
    assert second.range == f"bytes=100000-{len(data) - 1}"


@pytest.mark.parametrize(
    ("status", "cls", "code"), [(404, NotFoundError, 4), (410, NotFoundError, 4)]
)
def test_not_found_is_not_retried(
    cdn: CdnServer,
    client: httpx2.Client,
    tmp_path: Path,
    status: int,
    cls: type[Exception],
    code: int,
) -> None:
    url = cdn.add_file("/f.bin", b"x" * 100)
    cdn.faults.add(Fault.http_error(status, times=None))
    job = transfer_job(tmp_path, url, size=100)
    with pytest.raises(cls) as info:
        make_engine(client, retries=5).fetch(job)
    assert info.value.exit_code == code  # type: ignore[attr-defined]
    assert len(gets(cdn)) == 1
    assert not job.part_path.exists()
    assert not job.final_path.exists()


def test_cdn_403_on_a_fixed_link_is_an_expired_url(
    cdn: CdnServer, client: httpx2.Client, tmp_path: Path
) -> None:
    url = cdn.add_file("/f.bin", b"x" * 100, signed=True)
    cdn.expire_signed_urls()
    job = transfer_job(tmp_path, url, size=100)
    with pytest.raises(ExpiredURLError) as info:
        make_engine(client, retries=3).fetch(job)
    assert info.value.exit_code == ExitCode.AUTH
    assert "Request has expired" in info.value.message
    assert "X-Amz-Signature" not in info.value.message


def test_expired_signed_urls_are_resolved_again_at_the_hub(
    hub: HubServer, client: httpx2.Client, tmp_path: Path
) -> None:
    data = make_data(9_000_003, seed=33)
    hub.add_repo("org/m", {"model.safetensors": data}, gated="auto")
    url = hub.file_url("org/m", "model.safetensors")
    # after the first range, the URLs expire: later ones get a 403
    hub.cdn.faults.add(Fault.expire_urls(skip=1))
    creds = Credentials(hub_origin=origin(hub.url), token=TOKEN)
    job = transfer_job(tmp_path, url, data, credentials=creds)
    make_engine(client, retries=3).fetch(job._replace(renewable=True))
    assert_finished(job, data)
    assert any(r.status == 403 for r in hub.cdn.log.records())
    assert len(hub.log.records()) >= 2  # resolved again
    assert all(r.authorization == f"Bearer {TOKEN}" for r in hub.log.records())
    assert all(r.authorization is None for r in hub.cdn.log.records())


def test_hub_token_never_reaches_the_cdn_in_parallel(
    hub: HubServer, client: httpx2.Client, tmp_path: Path
) -> None:
    data = make_data(9_000_003, seed=34)
    hub.add_repo("org/m", {"model.safetensors": data}, private=True)
    creds = Credentials(hub_origin=origin(hub.url), token=TOKEN)
    job = transfer_job(
        tmp_path,
        hub.file_url("org/m", "model.safetensors"),
        size=len(data),
        sha=sha256(data),
        credentials=creds,
    )
    make_engine(client, connections=8).fetch(job)
    assert_finished(job, data)
    # No locate (a hash checks the file): each stream asks its range at the Hub, with the token,
    # until the first redirected answer names the CDN URL; then every request goes there, without
    # it.
    hub_requests = hub.log.records()
    pieces = plan_pieces(len(data), connections=8, split_threshold=SMALL)
    assert 1 <= len(hub_requests) <= len(pieces)
    assert all(
        r.authorization == f"Bearer {TOKEN}" and r.range != "bytes=0-0" for r in hub_requests
    )
    cdn_requests = hub.cdn.log.records()
    assert len(cdn_requests) >= len(pieces)
    assert all(r.authorization is None for r in cdn_requests)


# -- rate limit and interruption
# -------------------------------------------------------------------------


@pytest.mark.slow
def test_limit_rate_really_limits(cdn: CdnServer, client: httpx2.Client, tmp_path: Path) -> None:
    """Every byte of the four streams paced by the one limiter: on a clock only its waits move
    (tests/clocks.py), so the time the transfer took is the limiter's alone, not the machine's."""
    data = make_data(2_000_000, seed=35)
    url = cdn.add_file("/f.bin", data)
    job = transfer_job(tmp_path, url, data)
    clock = PacedClock()
    engine = make_engine(client, connections=4, limiter=clock.pacing(1_000_000))
    started = clock()
    engine.fetch(job)
    elapsed = clock() - started
    assert_finished(job, data)
    assert elapsed >= 1.5  # 2 MB at 1 MB/s, less the first burst (a slow machine only adds to it)


@pytest.mark.slow
def test_abort_stops_quickly_and_keeps_the_partial(
    cdn: CdnServer, client: httpx2.Client, tmp_path: Path
) -> None:
    data = make_data(2_000_000, seed=36)
    url = cdn.add_file("/f.bin", data)
    cdn.throttle_bps = 256_000
    job = transfer_job(tmp_path, url, data)
    engine = make_engine(client)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            engine.fetch(job)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    # the whole takes ~8 s or more
    wait_for(lambda: cdn.log.body_bytes() >= 300_000, what="bytes on their way")
    engine.abort()
    thread.join(HANG)
    assert not thread.is_alive()
    (error,) = errors  # stopped by the abort: the throttled transfer had seconds to go
    assert isinstance(error, InterruptedByUserError)
    assert error.exit_code == ExitCode.INTERRUPTED == 130
    assert not job.final_path.exists()
    kept = assert_claims_backed_by_data(job, data)
    assert kept > 0

    cdn.throttle_bps = None
    cdn.log.clear()
    make_engine(client).fetch(job)
    assert_finished(job, data)
    (request,) = gets(cdn)
    assert request.range == f"bytes={kept}-{len(data) - 1}"


def test_cancel_during_rate_limit_wait(
    cdn: CdnServer, client: httpx2.Client, tmp_path: Path
) -> None:
    data = make_data(2_000_000, seed=37)
    url = cdn.add_file("/f.bin", data)
    job = transfer_job(tmp_path, url, size=len(data))
    recorder = Recorder()
    engine = make_engine(client, limiter=RateLimiter(200_000), progress=recorder)

    # not a fixed delay: a loaded machine may not have a byte yet
    def cancel_once_bytes_arrived() -> None:
        deadline = time.monotonic() + HANG
        while sum(recorder.advanced.values()) == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.1)
        engine.cancel.set()

    threading.Thread(target=cancel_once_bytes_arrived, daemon=True).start()
    # (not cancelled, the capped fetch would end in about 10 s)
    with pytest.raises(InterruptedByUserError):
        engine.fetch(job)
    assert job.state_path.exists()
    assert not job.final_path.exists()


def test_partial_without_any_validator_is_never_resumed(
    cdn: CdnServer, client: httpx2.Client, tmp_path: Path
) -> None:
    """No hash, no ETag, no Last-Modified: a same-size replacement could not be detected, so a
    resume would risk a splice."""
    old = make_data(300_000, seed=40)
    new = make_data(300_000, seed=41)
    url = cdn.add_file("/blind.bin", old, etag="", dated=False)
    cdn.faults.add(Fault.reset(after_bytes=200_000))
    job = transfer_job(tmp_path, url, size=len(old))
    with pytest.raises(NetworkError):
        make_engine(client).fetch(job)
    cdn.add_file("/blind.bin", new, etag="", dated=False)
    cdn.log.clear()
    make_engine(client).fetch(job)
    assert_finished(job, new)
    (request,) = gets(cdn)
    assert request.range is None, "a blind partial must be fetched again from zero"
