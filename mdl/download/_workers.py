"""The workers of a fetch: how many take files at once, in which lane (one stream per file, or
parallel ranges), and which file each takes next; the small lane grows while its files wait."""

from __future__ import annotations

import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING

from mdl.catalog.settings import Settings
from mdl.download._owned import MANY_JOBS
from mdl.download._plan import PlannedFile
from mdl.download.session import PullSession
from mdl.errors import INTERRUPTED, InterruptedByUserError
from mdl.report import FileOutcome
from mdl.transfer.connection import own_connections
from mdl.transfer.scheduling import SPLIT_THRESHOLD

if TYPE_CHECKING:  # (a pull that serves loaders: a plain get never loads it)
    from mdl.download.demand import Demand


class Crew:
    """The workers of one fetch: each takes file after file from the queue until none is left (no
    hand-off per file); the small lane grows while its files wait (see WorkQueue)."""

    small_pool: ThreadPoolExecutor  # the small lane's threads, while ``run`` runs

    def __init__(
        self,
        session: PullSession,
        todo: dict[int, PlannedFile],
        *,
        work: Callable[[PlannedFile], FileOutcome],
    ) -> None:
        self.session, self.work = session, work
        self.small_jobs, self.big_jobs = job_counts(session.settings, list(todo.values()))
        # (a serving pull as many files at once as a pull: where each connection's rate is the
        # bound, one file at a time takes jobs times as long; Demand orders which comes first)
        jobs_set = session.settings.jobs_set
        self.queue = WorkQueue(
            todo,
            split=not jobs_set,
            small_workers=self.small_jobs,
            grow=not jobs_set,
            demand=session.demand,
        )
        self.results: dict[int, FileOutcome] = {}
        self.workers: list[Future[None]] = []

    def run(self) -> dict[int, FileOutcome]:
        """Every file's outcome, once every worker is done; Ctrl-C cancels them all."""
        with (
            ThreadPoolExecutor(max_workers=self.small_jobs, thread_name_prefix="file") as small,
            ThreadPoolExecutor(max_workers=self.big_jobs, thread_name_prefix="big") as big,
        ):
            self.small_pool = small
            # From the first worker on: a Ctrl-C while the next one starts (slow on a busy machine)
            # must cancel the first, or leaving the pools waits for it (in a lock wait: up to
            # --lock-timeout).
            try:
                self._start(big)
                self._wait()
            except KeyboardInterrupt:
                self.session.owned.abort()  # the workers take no more files once ``cancel`` is set
                for pool in (small, big):
                    pool.shutdown(wait=True, cancel_futures=True)
                raise InterruptedByUserError(INTERRUPTED) from None
        return self.results

    def _start(self, big_pool: ThreadPoolExecutor) -> None:
        queue = self.queue
        for _ in range(min(queue.small_workers, queue.count(SMALL))):
            self._add_small()
        for _ in range(min(self.big_jobs, queue.count(BIG))):
            self.workers.append(big_pool.submit(self._drain, BIG))

    def _add_small(self) -> None:
        self.workers.append(self.small_pool.submit(self._drain, SMALL))

    def _wait(self) -> None:
        done = 0
        while done < len(self.workers):  # the list grows while small files wait (see WorkQueue)
            try:
                # short: Ctrl-C is heard (a blocking wait swallows it)
                self.workers[done].result(timeout=0.2)
                done += 1
            except TimeoutError:
                for _ in range(self.queue.unstick(time.monotonic())):
                    self._add_small()

    def _drain(self, lane: str) -> None:
        # a small-file worker asks on connections of its own; a big file's streams, each in a
        # thread of its own, on the run's pool
        with own_connections() if lane == SMALL else contextlib.nullcontext():
            self._take_files(lane)

    def _take_files(self, lane: str) -> None:
        cancel, queue = self.session.cancel, self.queue
        while not cancel.is_set():
            taken = queue.take(lane)
            if taken is None:
                return
            index, plan = taken
            began, cpu = time.monotonic(), time.thread_time()
            try:
                self.results[index] = self.work(plan)
            finally:
                queue.done(index)
            # A small file's time says what it waits on (a bulk file's is the bandwidth's); none
            # after Ctrl-C.
            if lane == SMALL and _size(plan) < BULK and not cancel.is_set():
                spent = time.thread_time() - cpu
                waited = time.monotonic() - began - spent
                # before this worker ends: the main thread waits
                for _ in range(queue.more_workers(waited=waited, worked=spent)):
                    self._add_small()


# fetched as parallel ranges: its streams, not more files, keep the link busy
def is_big(plan: PlannedFile) -> bool:
    return (plan.remote.size or 0) >= SPLIT_THRESHOLD  # an unknown size: one stream


def job_counts(settings: Settings, todo: Sequence[PlannedFile]) -> tuple[int, int]:
    """Files in flight, (small, big): ``--jobs`` for all, else up to MANY_JOBS latency-bound
    small ones, jobs big.
    """
    if settings.jobs_set:
        return settings.jobs, 1
    small = sum(1 for plan in todo if not is_big(plan))
    return max(1, min(MANY_JOBS, small)), max(1, settings.jobs)


# the two lanes of workers: one stream per file, and parallel ranges (is_big)
SMALL, BIG = "small", "big"
# a file this big takes longer to move than to ask for on most links: bandwidth-bound, not
# latency-bound
BULK = 1 << 20
# small-lane workers at first without --jobs (more while its files wait on round trips) ...
FIRST_WORKERS = 4
# ... once their files wait twice as long as sharing the CPU among them would make them, ...
GROW_AFTER = 2.0
STUCK = 0.5  # ... or for each file in flight this many seconds
JUDGED = 8  # the small files whose waits say how many workers the lane needs


class WorkQueue:
    """The files still to start, taken by workers that loop until none is left. The small lane's
    bulk files (``BULK`` and more), largest first, hold at most half its workers while latency-bound
    ones wait, so bytes and round trips overlap instead of taking turns (a repo lists its shards
    together: fetched in that order, 16 streams share the bandwidth while the small files wait, then
    16 small files wait on round trips while the bandwidth idles). ``grow``: the small lane starts
    with a few workers and gets more while its files wait on something other than this process's CPU
    (round trips, a slow server, the disk), up to ``small_workers``: on a near server more threads
    would only queue for the interpreter (the GIL) and spend CPU handing it over."""

    def __init__(
        self,
        todo: dict[int, PlannedFile],
        *,
        split: bool,
        small_workers: int,
        grow: bool = False,
        demand: Demand | None = None,
    ) -> None:
        self._lock = threading.Lock()
        self._demand = demand
        big, bulk, small = _lanes(todo, split=split, loader_order=demand is not None)
        self._big, self._bulk, self._small = deque(big), deque(bulk), deque(small)
        self._bulk_busy: set[int] = set()  # the bulk files being fetched
        # the small (latency-bound) files being fetched: since when
        self._since: dict[int, float] = {}
        self._stuck: set[int] = set()  # those of them a worker was added for
        self.most = small_workers
        self.small_workers = min(small_workers, FIRST_WORKERS) if grow else small_workers
        # the last small files' waits, each over its own work
        self._waits: deque[float] = deque(maxlen=JUDGED)

    def count(self, lane: str) -> int:
        return len(self._big) if lane == BIG else len(self._bulk) + len(self._small)

    def take(self, lane: str) -> tuple[int, PlannedFile] | None:
        """The next file for a worker of ``lane``, or None: the lane is done."""
        with self._lock:
            wanted = self._wanted(lane)
            if wanted is not None:
                return wanted
            if lane == BIG:
                return self._big.popleft() if self._big else None
            if self._bulk and (
                len(self._bulk_busy) < max(1, self.small_workers // 2) or not self._small
            ):
                taken = self._bulk.popleft()
                self._bulk_busy.add(taken[0])
            elif self._small:
                taken = self._small.popleft()
                # latency-bound: how long it waits says more workers help
                self._since[taken[0]] = time.monotonic()
            else:
                return None
            return taken

    def _wanted(self, lane: str) -> tuple[int, PlannedFile] | None:
        """The first file of ``lane`` a loader waits on, taken out of its queue (None: none)."""
        if self._demand is None:
            return None
        queues = (self._big,) if lane == BIG else (self._bulk, self._small)
        for model, path in self._demand.wanted():
            for queue in queues:
                for item in queue:
                    if (item[1].remote.model, item[1].remote.path) == (model, path):
                        queue.remove(item)
                        self._demand.started(model, path)
                        if queue is self._bulk:
                            self._bulk_busy.add(item[0])
                        return item
        return None

    def done(self, index: int) -> None:
        with self._lock:
            self._bulk_busy.discard(index)
            self._since.pop(index, None)

    def more_workers(self, *, waited: float, worked: float) -> int:
        """Workers to add to the small lane after one of its small files waited and worked this
        long. A few workers that only share the CPU each wait a few times their work; a file that
        waits far longer waits on a round trip (or a disk) that more workers overlap: as many as
        keep the CPU busy through it (Little's law: the wait over the work, plus one). Judged by the
        median of the last few files: one slow answer decides nothing."""
        with self._lock:
            self._waits.append(waited / worked if worked > 0 else float(self.most))
            if not self._bulk and not self._small:
                return 0  # no file left to take (_grow adds none): a run of one file ends here
            ratio = _median(self._waits)
            return self._grow(int(ratio) + 1) if ratio > GROW_AFTER * FIRST_WORKERS else 0

    def unstick(self, now: float) -> int:
        """Workers to add for the small lane's files in flight longer than ``STUCK`` (a slow server,
        a stall): each waits on something no CPU of ours can hurry, and the files after it need not
        wait behind it."""
        with self._lock:
            stuck = {
                index for index, since in self._since.items() if now - since > STUCK
            } - self._stuck
            self._stuck |= stuck  # each is made up for once
            return self._grow(self.small_workers + len(stuck))

    def _grow(self, target: int) -> int:
        """Raise the small lane's workers to ``target`` (at most its most, never more than files
        are left).
        """
        target = min(self.most, target, self.small_workers + len(self._bulk) + len(self._small))
        added, self.small_workers = (
            max(0, target - self.small_workers),
            max(self.small_workers, target),
        )
        return added


def _median(values: deque[float]) -> float:
    """The median of a few numbers (``statistics`` loads fractions and decimal: ~9 ms on a worker,
    holding the import lock the other workers' first files may need)."""
    ordered, mid = sorted(values), len(values) // 2
    return ordered[mid] if len(values) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def _size(plan: PlannedFile) -> int:
    return plan.remote.size or 0  # an unknown size: as a small file's


def _lanes(
    todo: dict[int, PlannedFile], *, split: bool, loader_order: bool = False
) -> tuple[list[tuple[int, PlannedFile]], ...]:
    """(big, bulk, small): the files fetched as parallel ranges (when ``split``) and the small
    lane's bulk ones, largest first (stable: listing order after), or in the order loaders read
    them (``loader_order``); the small ones in listing order."""
    largest = sorted(todo.items(), key=lambda item: -_size(item[1]))
    if loader_order:
        from mdl.download.demand import natural_key  # (see TYPE_CHECKING above)

        largest.sort(key=lambda item: natural_key(item[1].remote.model, item[1].remote.path))
    ranged = {index for index, plan in todo.items() if split and is_big(plan)}
    return (
        [item for item in largest if item[0] in ranged],
        [item for item in largest if item[0] not in ranged and _size(item[1]) >= BULK],
        [item for item in todo.items() if _size(item[1]) < BULK],
    )
