"""``mdl.transfer.ranges``: a trusted hash for every range, against the real loopback CDN. A range
is checked as it lands; one that fails (a byte flipped on the wire) is fetched again alone — from
the same origin, or, for a mirror, left to the next source, the partial file kept; a resume keeps
the ranges that verify; and a range leaves (``reading``) only when its bytes, as read, verify."""

from __future__ import annotations

import hashlib
import itertools
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest
from hypothesis import given
from hypothesis import strategies as st
from runfixtures import transfer_job
from servers import CdnServer, make_data

from mdl.errors import IntegrityError
from mdl.progress import Progress
from mdl.transfer import ranges
from mdl.transfer.context import JobContext, Ledger
from mdl.transfer.engine import Engine
from mdl.transfer.http import RetryPolicy, make_client
from mdl.transfer.job import EngineConfig, TransferJob
from mdl.transfer.ranges import Digests, RangeCheck
from mdl.transfer.resume import seed
from mdl.wait import Wait

PART = 1 << 20
DATA = make_data(8 * PART + 12_345, seed=71)
SHA = hashlib.sha256(DATA).hexdigest()


def trust_of(data: bytes, part: int = PART) -> Digests:
    digests = [ranges.digest(data[s : s + part]) for s in range(0, len(data), part)]
    return Digests.fixed("lock", len(data), part, digests)


@pytest.fixture
def client() -> Iterator[httpx2.Client]:
    with make_client(timeout=60, pool_size=8) as c:
        yield c


def engine(client: httpx2.Client, *, retries: int = 1) -> Engine:
    config = EngineConfig(
        connections=4, retry=RetryPolicy(retries=retries, base=0.01, cap=0.05), split_threshold=1
    )
    return Engine(client, config, progress=Progress(), cancel=threading.Event())


def job_for(tmp_path: Path, url: str, **more: object) -> TransferJob:
    return transfer_job(tmp_path, url, DATA, **more)


TRUSTED = JobContext(
    ledger=Ledger(), trust=trust_of(DATA)
)  # beside each job of DATA: its lock's part hashes


def test_a_flipped_byte_costs_one_range_fetched_again_alone(
    cdn: CdnServer, client: httpx2.Client, tmp_path: Path
) -> None:
    url = cdn.add_file("/f.bin", DATA)
    cdn.flips.append([3 * PART + 17, 1])
    job = job_for(tmp_path, url)
    result = engine(client).fetch(job, TRUSTED)
    assert job.final_path.read_bytes() == DATA
    assert (result.trust, result.refetched) == ("lock", 1)
    sent = cdn.log.body_bytes(path_prefix="/f.bin")
    assert len(DATA) < sent <= len(DATA) + PART, "the model and one range, not the file twice"
    assert result.fetched == len(DATA) + PART, "the range fetched again counts"
    said = [cause for cause in job.retries.causes if "range" in cause]
    assert len(said) == 1 and "1 range(s) failed their lock hash" in said[0], said


def test_without_a_trust_nothing_is_checked_by_range(
    cdn: CdnServer, client: httpx2.Client, tmp_path: Path
) -> None:
    url = cdn.add_file("/f.bin", DATA)
    result = engine(client).fetch(transfer_job(tmp_path, url, DATA))
    assert (result.trust, result.refetched) == (None, 0)


def test_a_mirror_s_wrong_range_is_left_to_the_next_source_which_fetches_only_it(
    cdn: CdnServer, client: httpx2.Client, tmp_path: Path
) -> None:
    mirror = cdn.add_file("/mirror/f.bin", DATA)
    origin = cdn.add_file("/origin/f.bin", DATA)
    cdn.flips.append([5 * PART + 1, 10])  # the mirror keeps sending it wrong
    job = job_for(tmp_path, mirror, fallback=True, retry_on_mismatch=False)
    with pytest.raises(IntegrityError, match="failed their lock hash"):
        engine(client).fetch(job, TRUSTED)
    assert job.part_path.exists(), "the verified ranges are kept for the next source"
    cdn.flips.clear()
    result = engine(client).fetch(job._replace(url=origin, fallback=False), TRUSTED)
    assert job.final_path.read_bytes() == DATA
    assert cdn.log.body_bytes(path_prefix="/origin/f.bin") <= PART, (
        "the origin sent the range alone"
    )
    assert result.refetched == 0


def test_a_resume_keeps_the_ranges_that_verify_and_fetches_a_damaged_one_again(
    cdn: CdnServer, client: httpx2.Client, tmp_path: Path
) -> None:
    """An earlier run's record claims the first five ranges; a byte of the first was damaged on
    disk while no mdl ran: it alone is fetched again, the other four are kept."""
    url = cdn.add_file("/f.bin", DATA)
    job = job_for(tmp_path, url)
    job.part_path.parent.mkdir(parents=True)
    kept = bytearray(DATA[: 5 * PART])
    kept[100] ^= 1
    job.part_path.write_bytes(kept + bytes(len(DATA) - len(kept)))
    seed(job, [(0, 5 * PART)])
    result = engine(client).fetch(job, TRUSTED)
    assert job.final_path.read_bytes() == DATA
    assert (result.resumed_from, result.refetched) == (5 * PART, 1)
    again = cdn.log.body_bytes(path_prefix="/f.bin")
    assert again == len(DATA) - 4 * PART, "the four kept ranges that verify are not fetched again"


def test_a_range_leaves_only_verified_and_never_once_taken_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A range leaves once it verified, as the bytes the check hashed (read once more, never
    hashed again), and only while none of them was taken back: a take-back before the read, or
    during it (the epoch compared after), gives nothing; the check is found through the releases
    while its fetch runs, and only then."""
    path = tmp_path / "f.part"
    path.write_bytes(DATA)
    fd = os.open(path, os.O_RDWR)
    cancel, releases = threading.Event(), ranges.Releases()
    try:
        with RangeCheck(trust_of(DATA), fd, path, releases) as check, releases.holding(check):
            check.landed(0, 2 * PART)
            assert check.settle(cancel) == []
            shared = releases.share(path)
            assert shared is check
            check.unshare()
            with check.reading(10, PART + 10, Wait(cancel=cancel)) as got:
                assert got is not None and bytes(got) == DATA[10 : PART + 10]
            with check.reading(2 * PART - 1, 2 * PART + 1, Wait(cancel=cancel)) as got:
                assert got is None, "a range that did not land is not read"
            read = ranges._read_into

            def taken_back_meanwhile(fd: int, view: memoryview, offset: int) -> memoryview:
                check.taken_back(PART + 5, PART + 6)  # (the engine, as the bytes are read)
                return read(fd, view, offset)

            with monkeypatch.context() as m:
                m.setattr(ranges, "_read_into", taken_back_meanwhile)
                with check.reading(PART, PART + 10, Wait(cancel=cancel)) as got:
                    assert got is None, "bytes taken back as they were read never leave"
            with check.reading(PART, PART + 10, Wait(cancel=cancel)) as got:
                assert got is None, "a range taken back leaves only once it verified again"
            check.landed(PART, 2 * PART)
            assert check.settle(cancel) == []
            with check.reading(PART, PART + 10, Wait(cancel=cancel)) as got:
                assert got is not None and bytes(got) == DATA[PART : PART + 10]
        assert releases.share(path) is None
    finally:
        os.close(fd)


SPANS = st.lists(st.tuples(st.integers(0, 50), st.integers(0, 50)), max_size=12)


@given(SPANS, st.integers(0, 50), st.integers(0, 50))
def test_ranges_merged_and_cut_are_the_set_of_bytes(
    spans: list[tuple[int, int]], start: int, end: int
) -> None:
    spans = [(a, b) for a, b in spans if a < b]
    have = {i for a, b in spans for i in range(a, b)}
    joined = ranges.merged(spans)
    assert {i for a, b in joined for i in range(a, b)} == have
    assert all(b < c for (_, b), (c, _) in itertools.pairwise(joined))
    cut = ranges.without(joined, start, end)
    assert {i for a, b in cut for i in range(a, b)} == have - set(range(start, end))


def test_touching_finds_the_spans_sharing_a_byte() -> None:
    spans = Digests.fixed("lock", 10, 3, [b""] * 4).spans
    assert list(ranges.touching(spans, 0, 1)) == [0]
    assert list(ranges.touching(spans, 2, 4)) == [0, 1]
    assert list(ranges.touching(spans, 3, 10)) == [1, 2, 3]
    assert list(ranges.touching(spans, 9, 10)) == [3]


def test_a_file_whose_every_range_fails_is_not_fetched_again_by_range(
    cdn: CdnServer, client: httpx2.Client, tmp_path: Path
) -> None:
    """Every range wrong (the file changed upstream, or a wrong trust): past ``refetch_limit``
    nothing is fetched again by range; the whole file's hash decides (here: refused, once)."""
    url = cdn.add_file("/f.bin", DATA)
    cdn.flips.extend([start + 5, 100] for start in range(0, len(DATA), PART))
    job = job_for(tmp_path, url)
    with pytest.raises(IntegrityError):
        engine(client).fetch(job, TRUSTED)
    assert cdn.log.body_bytes(path_prefix="/f.bin") <= len(DATA), "the file once, no more"
    said = [c for c in job.retries.causes if "not fetched again by range" in c]
    assert len(said) == 1 and "9 of 9 ranges" in said[0], job.retries.causes


def test_a_wrong_trust_costs_no_refetch_when_the_file_verifies(
    cdn: CdnServer, client: httpx2.Client, tmp_path: Path
) -> None:
    url = cdn.add_file("/f.bin", DATA)
    other = make_data(len(DATA), seed=72)  # part hashes of other bytes, the sha256 of these
    job = transfer_job(tmp_path, url, DATA)
    result = engine(client).fetch(job, JobContext(ledger=Ledger(), trust=trust_of(other)))
    assert job.final_path.read_bytes() == DATA and result.refetched == 0
    assert cdn.log.body_bytes(path_prefix="/f.bin") == len(DATA)
    assert any("not fetched again by range" in c for c in job.retries.causes)


def test_a_take_back_undoes_the_landings_told_before_it(tmp_path: Path) -> None:
    """Told before the checker runs (so in one batch): a range's bytes landed, then part of them
    taken back: the range is not checked until they land again, and what lands then is checked."""
    path = tmp_path / "f.part"
    path.write_bytes(DATA)
    fd = os.open(path, os.O_RDWR)
    cancel = threading.Event()
    check = RangeCheck(trust_of(DATA), fd, path, ranges.Releases())
    try:
        check.landed(0, PART // 2)
        check.landed(PART // 2, PART)
        check.landed(PART, 2 * PART)
        check.taken_back(0, PART // 2)
        with check:
            assert check.settle(cancel) == []
            assert check.verified_spans() == [(PART, 2 * PART)], "range 0 waits for its bytes"
            os.pwrite(fd, b"\xff" * 16, 0)  # other bytes land there
            check.landed(0, PART // 2)
            assert check.settle(cancel) == [(0, PART)]
    finally:
        os.close(fd)


class Raising(Digests):
    def holds(self, index: int, data: memoryview) -> bool:
        if index == 0:
            raise RuntimeError("a trust that fails to check")
        return super().holds(index, data)


def test_a_check_that_raises_refuses_its_range_and_the_checker_goes_on(tmp_path: Path) -> None:
    path = tmp_path / "f.part"
    path.write_bytes(DATA)
    fd = os.open(path, os.O_RDWR)
    base = trust_of(DATA)
    cancel = threading.Event()
    try:
        with RangeCheck(
            Raising(base.kind, base.spans, base.digests), fd, path, ranges.Releases()
        ) as check:
            check.landed(0, len(DATA))
            assert check.settle(cancel) == [(0, PART)]
            assert check.verified_spans() == [(PART, len(DATA))]
    finally:
        os.close(fd)


def test_ranges_bigger_than_the_budget_are_not_checked_by_range(
    cdn: CdnServer, client: httpx2.Client, tmp_path: Path
) -> None:
    """A model signature's 1 GB shards: no check could hold one within the memory budget; the
    file is checked whole, as before, and no range is read back."""
    whole = Digests(
        "signature",
        ((0, ranges.MAX_SPAN + 1), (ranges.MAX_SPAN + 1, 2 * ranges.MAX_SPAN)),
        (b"", b""),
        "sha256",
    )
    assert not ranges.fits(whole) and ranges.fits(trust_of(DATA))
    url = cdn.add_file("/f.bin", DATA)
    result = engine(client).fetch(
        transfer_job(tmp_path, url, DATA), JobContext(ledger=Ledger(), trust=whole)
    )
    assert result.trust is None


def test_a_range_being_read_outlives_the_fetch_s_descriptor(tmp_path: Path) -> None:
    """The fetch ends (its check exits, its descriptor closes) while an answer still holds the
    check: the check reads through a descriptor of its own, open while anyone holds it."""
    path = tmp_path / "f.part"
    path.write_bytes(DATA)
    fd = os.open(path, os.O_RDWR)
    cancel = threading.Event()
    with RangeCheck(trust_of(DATA), fd, path, ranges.Releases()) as check:
        check.landed(0, len(DATA))
        assert check.settle(cancel) == []
        assert check.share()  # (an answer's, taken while the fetch runs)
    os.close(fd)
    with check.reading(PART - 10, PART + 10, Wait(cancel=cancel)) as got:
        assert got is not None and bytes(got) == DATA[PART - 10 : PART + 10]
    check.unshare()  # the last share: the check's descriptor closes, nothing more is read
    assert not check.share()
    with check.reading(PART - 10, PART + 10, Wait(cancel=cancel)) as got:
        assert got is None


def test_a_read_with_no_room_by_its_deadline_gets_nothing(tmp_path: Path) -> None:
    """The read budget is held (slow readers): a read waits for room no longer than its
    deadline."""
    releases = ranges.Releases()
    releases.reads = ranges._Budget(2 * PART)
    path = tmp_path / "f.part"
    path.write_bytes(DATA)
    fd = os.open(path, os.O_RDWR)
    cancel = threading.Event()
    try:
        with RangeCheck(trust_of(DATA), fd, path, releases) as check:
            check.landed(0, len(DATA))
            assert check.settle(cancel) == []
            with check.reading(0, 2 * PART, Wait(cancel=cancel)) as held:
                assert held is not None  # the whole budget
                with check.reading(len(DATA) - 5, len(DATA), Wait(0.0, cancel)) as got:
                    assert got is None
    finally:
        os.close(fd)


def test_a_refuted_check_lets_nothing_more_leave_and_tells_the_ranges_that_left(
    tmp_path: Path,
) -> None:
    """The whole file's hash refused the bytes the check verified: the ranges read before are
    kept by the pull's releases (another pull's know none), a read under way when it is refuted
    counts, and nothing leaves from then on."""
    path = tmp_path / "f.part"
    path.write_bytes(DATA)
    fd = os.open(path, os.O_RDWR)
    cancel, releases = threading.Event(), ranges.Releases()
    try:
        with RangeCheck(trust_of(DATA), fd, path, releases, label="m/f") as check:
            check.landed(0, len(DATA))
            assert check.settle(cancel) == []
            with check.reading(10, 20, Wait(cancel=cancel)) as got:
                assert got is not None
            with check.reading(4 * PART, 4 * PART + 1, Wait(cancel=cancel)) as got:
                assert got is not None  # being sent as the file is refused
                assert releases.wrong(path) == ()
                releases.refuted(check, "its sha256 refused the file")
            with check.reading(10, 20, Wait(cancel=cancel)) as got:
                assert got is None, "nothing leaves once the file is refused"
        assert releases.wrong(path) == ((0, PART), (4 * PART, 5 * PART))
        assert ranges.Releases().wrong(path) == (), "another pull's releases: none of its own"
    finally:
        os.close(fd)


def test_a_refuted_check_that_let_nothing_leave_tells_nothing(tmp_path: Path) -> None:
    path = tmp_path / "f.part"
    path.write_bytes(DATA)
    fd = os.open(path, os.O_RDWR)
    releases = ranges.Releases()
    try:
        with RangeCheck(trust_of(DATA), fd, path, releases) as check:
            check.landed(0, len(DATA))
            assert check.settle(threading.Event()) == []
            releases.refuted(check, "its sha256 refused the file")
            assert check.refuted
        assert releases.wrong(path) == ()
    finally:
        os.close(fd)


class Counting(Digests):
    """A trust that counts the bytes it hashes."""

    hashed: list[int]

    def holds(self, index: int, data: memoryview) -> bool:
        self.hashed.append(len(data))
        return super().holds(index, data)


def test_a_verified_range_is_hashed_once_however_often_it_is_read(tmp_path: Path) -> None:
    """The bytes hashed for serving are the ones the fetch's check hashed as they landed: a range
    read many times, in reads far smaller than it (a FUSE view's 128 KiB, a loader's 8 MiB), is
    never hashed again, and each read costs the asked bytes only (before issue 77 a 1 MiB read of
    a 16 MiB range read and hashed 16 MiB)."""
    base = trust_of(DATA)
    counted = Counting(base.kind, base.spans, base.digests)
    object.__setattr__(counted, "hashed", [])
    path = tmp_path / "f.part"
    path.write_bytes(DATA)
    fd = os.open(path, os.O_RDWR)
    cancel = threading.Event()
    try:
        with RangeCheck(counted, fd, path, ranges.Releases()) as check:
            check.landed(0, len(DATA))
            assert check.settle(cancel) == []
            assert sum(counted.hashed) == len(DATA)
            for start in range(0, len(DATA), 128 << 10):
                end = min(start + (128 << 10), len(DATA))
                with check.reading(start, end, Wait(cancel=cancel)) as got:
                    assert got is not None and len(got) == end - start
                    assert bytes(got) == DATA[start:end]
            assert sum(counted.hashed) == len(DATA), "no byte hashed twice"
    finally:
        os.close(fd)


def test_ranges_landed_proved_are_verified_without_being_read_back_once(tmp_path: Path) -> None:
    """A swarm's part from another machine was checked whole before it was written: landed
    ``proved``, the ranges wholly inside it verify without being read back and hashed again (and
    are told on as verified); a range it only touches is read back; a proved range taken back
    before its check is checked for real once bytes land there again, and a wrong one is caught."""
    base = trust_of(DATA)
    counted = Counting(base.kind, base.spans, base.digests)
    object.__setattr__(counted, "hashed", [])
    path = tmp_path / "f.part"
    path.write_bytes(b"\0" * len(DATA))  # (nothing of it on disk: a read-back would fail)
    fd = os.open(path, os.O_RDWR)
    told: list[tuple[int, int]] = []

    class Then:
        def landed(self, start: int, end: int, *, proved: bool = False) -> None:
            told.append((start, end))

        def taken_back(self, start: int, end: int) -> None:
            pass

    cancel = threading.Event()
    try:
        with RangeCheck(counted, fd, path, ranges.Releases(), then=Then()) as check:
            check.landed(0, 2 * PART, proved=True)
            assert check.settle(cancel) == []
            assert counted.hashed == [] and told == [(0, PART), (PART, 2 * PART)]
            assert check.verified_spans() == [(0, 2 * PART)]
            # a span that covers range 3 only in part: that range is read back (zeros: refused)
            check.landed(2 * PART, 3 * PART + 10, proved=True)
            check.landed(3 * PART + 10, 4 * PART)
            assert check.settle(cancel) == [(3 * PART, 4 * PART)]
            assert counted.hashed == [PART], "range 3 read back; range 2, proved, not"
            # proved, then taken back before it was checked: checked for real when it lands again
            check.taken_back(4 * PART, 5 * PART)
            check.landed(4 * PART, 5 * PART, proved=True)
            check.taken_back(4 * PART, 5 * PART)
            check.landed(4 * PART, 5 * PART)
            assert check.settle(cancel) == [(3 * PART, 4 * PART), (4 * PART, 5 * PART)]
    finally:
        os.close(fd)


def test_a_range_checked_again_is_only_what_its_last_check_said(tmp_path: Path) -> None:
    """A range refused, whose bytes land again right (no take-back between), is verified and no
    longer bad; one verified whose bytes land again wrong is bad and no longer verified."""
    path = tmp_path / "f.part"
    path.write_bytes(b"\0" * PART + DATA[PART:])
    fd = os.open(path, os.O_RDWR)
    cancel = threading.Event()
    try:
        with RangeCheck(trust_of(DATA), fd, path, ranges.Releases()) as check:
            check.landed(0, 2 * PART)
            assert check.settle(cancel) == [(0, PART)]
            os.pwrite(fd, DATA[:PART], 0)
            check.landed(0, PART)
            assert check.settle(cancel) == [] and check.verified_spans() == [(0, 2 * PART)]
            os.pwrite(fd, b"\0" * 8, PART)
            check.landed(PART, 2 * PART)
            assert check.settle(cancel) == [(PART, 2 * PART)]
            assert check.verified_spans() == [(0, PART)]
    finally:
        os.close(fd)


def kept_check(path: Path, releases: ranges.Releases) -> RangeCheck:
    """A fetch's check of ``path`` (DATA), its file verified whole and kept past the fetch."""
    path.write_bytes(DATA)
    fd = os.open(path, os.O_RDONLY)
    try:
        with RangeCheck(trust_of(DATA), fd, path, releases) as check, releases.holding(check):
            check.landed(0, len(DATA))
            assert check.settle(threading.Event()) == []
            releases.keep(check, SHA)
    finally:
        os.close(fd)
    return check


def test_a_check_kept_past_its_fetch_serves_till_let_go_then_closes(tmp_path: Path) -> None:
    """``Releases.keep`` (issue 90): a fetch's check, its file verified whole, serves its ranges
    past the fetch's end (till the file's record is written); KEPT at most (the oldest let go),
    one a new fetch of the file replaces, and ``forget`` lets every one go, each descriptor then
    closed (``share`` says so)."""
    cancel, releases = threading.Event(), ranges.Releases()
    kept: list[tuple[Path, RangeCheck]] = []
    for n in range(ranges.KEPT + 1):
        path = tmp_path / f"{n}.part"
        kept.append((path, kept_check(path, releases)))
    assert releases.share(kept[0][0], SHA) is None and not kept[0][1].share(), "the oldest let go"
    path, check = kept[-1]
    assert releases.share(path, SHA) is check  # its fetch over, its file not recorded yet
    with check.reading(10, PART + 10, Wait(cancel=cancel)) as got:
        assert got is not None and bytes(got) == DATA[10 : PART + 10]
    check.unshare()
    fd = os.open(path, os.O_RDONLY)
    try:  # the file fetched again: the kept check gives way to the new fetch's
        with RangeCheck(trust_of(DATA), fd, path, releases) as again, releases.holding(again):
            assert not check.share() and releases.share(path) is again
            again.unshare()
    finally:
        os.close(fd)
    releases.forget()
    assert [p for p, c in kept if releases.share(p, SHA) is not None or c.share()] == []


def test_a_kept_check_of_a_file_written_since_it_verified_serves_nothing(tmp_path: Path) -> None:
    """A kept check reads through its own descriptor, not the installed file's path: once another
    program writes into the file (its size or mtime moved: the store's own test says ``modified?``),
    its ranges no longer leave that way, and it is let go."""
    releases, path = ranges.Releases(), tmp_path / "m.part"
    check = kept_check(path, releases)
    assert releases.share(path, SHA) is check  # untouched: it serves
    check.unshare()
    with open(path, "r+b") as other:  # a co-tenant's write in place, one byte, same size
        other.seek(100)
        other.write(b"E")
    os.utime(path, ns=(0, 12345))  # (a different mtime, whatever the clock's grain)
    assert releases.share(path, SHA) is None
    assert not check.share(), "let go: its descriptor closed"


def test_a_kept_check_serves_only_the_version_it_verified(tmp_path: Path) -> None:
    """A ``.part``'s path names the model and the file, not the version: once a fetch is over,
    another process may fetch another version at that path. A kept check serves a read only of
    the sha256 it verified whole as, never another version's (nor one that says none)."""
    releases, path = ranges.Releases(), tmp_path / "m.part"
    check = kept_check(path, releases)
    path.unlink()
    path.write_bytes(bytes(reversed(DATA)))  # the next version, fetched at the same path
    assert releases.share(path, hashlib.sha256(path.read_bytes()).hexdigest()) is None
    assert releases.share(path) is None
    assert not check.share(), "let go: its descriptor closed"
