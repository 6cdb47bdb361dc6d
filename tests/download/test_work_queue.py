"""Which file a pull's worker takes next: bulk files and small ones overlap instead of taking
turns.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from servers import Fault, HubServer, make_data

from mdl.catalog.load import parse_catalog
from mdl.catalog.settings import build_settings
from mdl.download._plan import Action, Decision, PlannedFile
from mdl.download._workers import BIG, BULK, FIRST_WORKERS, SMALL, STUCK, WorkQueue
from mdl.download.puller import pull_models
from mdl.progress import NullProgress
from mdl.setting import Overrides
from mdl.sources.resolve import RemoteFile
from mdl.store.layout import Placement
from mdl.store.store import Store
from mdl.transfer.scheduling import SPLIT_THRESHOLD


def queue(
    tmp_path: Path,
    sizes: list[int | None],
    *,
    split: bool = True,
    small_workers: int,
    grow: bool = False,
) -> WorkQueue:
    """A queue of files ``f00``, ``f01``, ... of these sizes, in listing order (None: a size no
    one said).
    """
    store, todo = Store(tmp_path), {}
    for i, size in enumerate(sizes):
        final = store.final_path("m", f"f{i:02d}")
        remote = RemoteFile("m", f"f{i:02d}", f"http://127.0.0.1:1/f{i:02d}", size=size)
        todo[i] = PlannedFile(
            remote, Decision(Action.DOWNLOAD, "missing"), 0, Placement(final, final, store)
        )
    return WorkQueue(todo, split=split, small_workers=small_workers, grow=grow)


def take(work: WorkQueue, lane: str) -> int | None:
    taken = work.take(lane)
    return None if taken is None else taken[0]


def drain(work: WorkQueue, lane: str) -> list[int]:
    taken = []
    while (index := take(work, lane)) is not None:
        taken.append(index)
        work.done(index)
    return taken


def test_bulk_files_hold_at_most_half_the_small_lane_while_small_ones_wait(tmp_path: Path) -> None:
    # listing order: small, bulk, small, bulk, bulk, small, unknown
    work = queue(tmp_path, [10, 2 * BULK, 20, 5 * BULK, 3 * BULK, 30, None], small_workers=4)
    # the largest bulk files, then small ones in order
    assert [take(work, SMALL) for _ in range(4)] == [3, 4, 0, 2]
    work.done(3)  # a bulk file is done: a worker may take the next one
    assert take(work, SMALL) == 1
    assert drain(work, SMALL) == [5, 6]
    assert take(work, BIG) is None


def test_bulk_files_are_taken_when_no_small_one_is_left(tmp_path: Path) -> None:
    work = queue(tmp_path, [BULK, 4 * BULK, 2 * BULK], small_workers=2)
    assert [take(work, SMALL) for _ in range(3)] == [1, 2, 0]
    assert take(work, SMALL) is None


def test_big_files_have_their_lane_largest_first_unless_jobs_is_set(tmp_path: Path) -> None:
    sizes: list[int | None] = [5, SPLIT_THRESHOLD, 2 * BULK, 2 * SPLIT_THRESHOLD]
    split = queue(tmp_path, sizes, small_workers=16)
    assert (split.count(BIG), split.count(SMALL)) == (2, 2)
    assert drain(split, BIG) == [3, 1]
    assert drain(split, SMALL) == [2, 0]
    # --jobs 1: one worker for every file
    one_lane = queue(tmp_path, sizes, split=False, small_workers=1)
    assert one_lane.count(BIG) == 0
    assert drain(one_lane, SMALL) == [3, 1, 2, 0]


@pytest.mark.slow
def test_shards_and_small_files_are_in_flight_together(hub: HubServer, tmp_path: Path) -> None:
    """A repo listing its small files before its shards: the shards do not wait behind them (nor
    the other way).
    """
    small = {f"a/{i:02d}.json": make_data(500 + i, seed=i) for i in range(12)}
    shards = {f"b/{i:02d}.safetensors": make_data(BULK + i, seed=100 + i) for i in range(6)}
    hub.add_repo("org/mixed", {**small, **shards})
    hub.faults.add(
        Fault.stall(seconds=0.2, resume=True, times=None, path_prefix="/org/mixed/resolve/")
    )
    settings = build_settings(
        environ={"HF_ENDPOINT": hub.url}, dest=tmp_path / "d", flags=Overrides(jobs=4)
    )
    report = pull_models(
        parse_catalog('[models.m]\nrepo = "org/mixed"\n').models, settings, progress=NullProgress()
    )
    assert {f.action for f in report.files} == {"downloaded"}
    for path, data in {**small, **shards}.items():
        assert (tmp_path / "d" / "m" / path).read_bytes() == data
    resolves = sorted(
        (r for r in hub.log.records(method="GET") if "/resolve/" in r.url_path),
        key=lambda r: r.time,
    )
    kinds = ["shard" if r.url_path.endswith(".safetensors") else "small" for r in resolves]
    # In listing order, all 12 small files would be asked for before the first shard.
    assert kinds.index("shard") < len(kinds) - 1 - kinds[::-1].index("small"), kinds
    assert kinds.index("small") < len(kinds) - 1 - kinds[::-1].index("shard"), kinds


def test_the_small_lane_grows_only_while_its_files_wait_on_more_than_the_cpu(
    tmp_path: Path,
) -> None:
    work = queue(tmp_path, [100] * 40, small_workers=16, grow=True)
    assert work.small_workers == FIRST_WORKERS
    # Four workers sharing the CPU each wait about three times their work: more threads would only
    # queue for it.
    assert work.more_workers(waited=0.006, worked=0.002) == 0
    # A 50 ms round trip per file: enough workers to cover it, up to the lane's most.
    assert work.more_workers(waited=0.5, worked=0.002) == 16 - FIRST_WORKERS
    assert work.small_workers == 16
    assert work.more_workers(waited=0.5, worked=0.002) == 0


def test_the_small_lane_grows_by_the_median_wait_not_the_slowest(tmp_path: Path) -> None:
    work = queue(tmp_path, [100] * 100, small_workers=64, grow=True)
    assert work.more_workers(waited=0.002, worked=0.002) == 0  # its work's time again: 1
    # waits of 1 and 41 times the work: the median, 21, says 22 workers (the slower alone: 42)
    assert work.more_workers(waited=0.082, worked=0.002) == 22 - FIRST_WORKERS
    assert work.more_workers(waited=0.002, worked=0.002) == 0  # 1, 1, 41: 1


def test_the_small_lane_never_grows_past_the_files_left_nor_with_jobs_set(tmp_path: Path) -> None:
    work = queue(tmp_path, [100] * 6, small_workers=16, grow=True)
    assert [take(work, SMALL) for _ in range(4)] == [0, 1, 2, 3]
    assert work.more_workers(waited=1.0, worked=0.001) == 2  # two files left for two more workers
    # --jobs 3: three workers, whatever the files wait on
    fixed = queue(tmp_path, [100] * 40, small_workers=3)
    assert fixed.small_workers == 3
    assert fixed.more_workers(waited=1.0, worked=0.001) == 0


def test_files_stuck_in_flight_get_workers_for_the_files_behind_them(tmp_path: Path) -> None:
    work = queue(tmp_path, [100] * 10, small_workers=16, grow=True)
    assert [take(work, SMALL) for _ in range(FIRST_WORKERS)] == [0, 1, 2, 3]
    work.done(0)
    assert work.unstick(time.monotonic()) == 0  # just started: nothing is stuck yet
    # three files held (a slow server): three more workers
    assert work.unstick(time.monotonic() + STUCK + 1) == 3
    assert work.small_workers == FIRST_WORKERS + 3
    assert work.unstick(time.monotonic() + STUCK + 2) == 0  # the same three: made up for once


def test_bulk_files_in_flight_are_never_stuck(tmp_path: Path) -> None:
    """A bulk file takes long because of its bytes, not a round trip: one in flight past ``STUCK``
    adds no worker (it grew the small lane to its most at 0 ms, where more threads only queue for
    the interpreter)."""
    work = queue(tmp_path, [8 * BULK, 4 * BULK, 100, 100], small_workers=8, grow=True)
    assert [take(work, SMALL), take(work, SMALL)] == [0, 1]  # the two bulk files, largest first
    assert work.unstick(time.monotonic() + STUCK + 1) == 0
    assert take(work, SMALL) == 2  # a small one in flight that long does get one
    assert work.unstick(time.monotonic() + STUCK + 1) == 1
