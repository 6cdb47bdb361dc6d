"""A Xet-backed Hub file fetched the way the Hub stores it: a read token from the Hub, the file's
reconstruction from the CAS, the chunks already on disk copied (each checked against its recorded
hash), the other xorb ranges fetched in parallel on the run's client with exactly the Range each
names, decoded, written into the partial, resumed by term. Every byte is verified twice before the
file is moved into place: the Xet file hash, from the hashes of the chunks as they were written, and
the sha256 as always. What the protocol cannot deliver raises ``XetFallback``: the plain resolve
path then fetches the file."""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from mdl import partsize
from mdl.errors import LocalFSError
from mdl.progress import Progress
from mdl.sources.resolve import XetRef
from mdl.store.filesystem import DirSyncs, stat_file
from mdl.transfer.context import JobContext, Ledger
from mdl.transfer.job import TransferJob, TransferResult
from mdl.transfer.ranges import fits
from mdl.transfer.resume import STATE_MAX, boot_id, discard_partial, finish_part, job_root, planted
from mdl.transfer.scheduling import RateLimiter
from mdl.xet import _ranges
from mdl.xet._cas import Cas
from mdl.xet._hashing import from_hex
from mdl.xet._partial import Partial
from mdl.xet._plan import Plan, plan_tasks
from mdl.xet._protocol import Reconstruction
from mdl.xet._reuse import Resumable, ReuseIndex, Written, load_state
from mdl.xet._streams import Gate, Streams, Wire
from mdl.xet.failures import Suspect, Unsplittable, XetFallback

log = logging.getLogger("mdl.xet")


@dataclass(eq=False, repr=False, kw_only=True)
class XetSource(Cas):
    """What one run's Xet fetches share: the CAS (its client and read tokens by repo and revision),
    the streams' wire and the chunks on disk.
    """

    progress: Progress
    streams: Callable[[int], int]  # as many streams as the plain path would open for a file
    dirs: DirSyncs
    recorded: Callable[[str], list[str]]  # a model's installed Xet files (their Xet hashes)
    # whether this machine verified whole the job's pinned bytes (sha256, size) as a file of this
    # Xet hash (its record pairs them): only then may the Xet hash release ranges early
    bound: Callable[[TransferJob, str], bool]
    # --limit-rate: the run's one budget, shared with the plain engine's streams
    limiter: RateLimiter | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        self.wire = Wire(self, self.limiter, Gate(max(1, len(os.sched_getaffinity(0)))))
        self._indexes: dict[tuple[Path, str], ReuseIndex] = {}
        self._index_lock = threading.Lock()

    def fetch(
        self, job: TransferJob, ref: XetRef, beside: JobContext | None = None
    ) -> TransferResult:
        """The file into ``job.final_path``, verified; XetFallback when the plain path must fetch
        it. The bytes of every attempt (those of one cut short came over the network all the same)
        are counted in ``beside``'s ledger.
        """
        return self._fetch(job, ref, beside or JobContext(ledger=Ledger()))

    def _fetch(self, job: TransferJob, ref: XetRef, beside: JobContext) -> TransferResult:
        """:meth:`fetch`'s attempts: resumed, unsplit, then whole without reuse."""
        if not (size := job.identity.size):
            raise XetFallback("its size is not known")
        if (found := stat_file(job.part_path)) is not None and planted(job, found):
            discard_partial(job)
        # an earlier run's partial download over plain HTTP: resumed there, not thrown away
        if (loaded := load_state(job_root(job), job.state_path, STATE_MAX)) == "plain":
            raise XetFallback("a partial download over plain HTTP is waiting to be resumed")
        rec = self.reconstruction(ref, job.label, size=size)
        if rec.size != size:
            raise XetFallback(f"its reconstruction is {rec.size} bytes, the listing says {size}")
        kept = loaded.terms if isinstance(loaded, Resumable) and _usable(loaded, ref, size) else ()
        try:
            try:
                return self._attempt(job, beside, ref, rec, kept)
            except Unsplittable as exc:
                log.info("%s: %s; fetching its xorb ranges whole", job.label, exc)
                discard_partial(job)
                return self._attempt(job, beside, ref, rec, (), split=False)
        except Suspect as exc:
            log.warning(
                "%s: %s after reusing bytes on disk; fetching it again whole", job.label, exc
            )
            job.retries.add(f"{exc}, fetched again whole")
            discard_partial(job)
            del rec
            fresh = self.reconstruction(ref, job.label, size=size)
            return self._attempt(job, beside, ref, fresh, (), split=False, reuse=False)

    def index_for(self, job: TransferJob) -> ReuseIndex:
        """The chunks of the model's Xet files on disk (read once per run and model; files this
        run writes join).
        """
        root, model = job_root(job), job.model or ""
        with self._index_lock:
            index = self._indexes.get((root, model))
            if index is None:
                recorded = self.recorded(model) if model else []
                index = ReuseIndex.of(root, _state_dir(job), recorded)
                self._indexes[(root, model)] = index
            return index

    def _attempt(
        self,
        job: TransferJob,
        beside: JobContext,
        ref: XetRef,
        rec: Reconstruction,
        kept: Sequence[Written],
        *,
        split: bool = True,
        reuse: bool = True,
    ) -> TransferResult:
        """One attempt at one file: resume, copy, fetch, verify, move into place."""
        partial = Partial(job, rec, ref=ref, progress=self.progress, ledger=beside.ledger)
        with partial.writing(fresh=not kept):
            resumed = partial.check_record(kept)
            find = self.index_for(job).find if reuse else None
            want = self.streams(rec.size)
            plan = plan_tasks(rec, resumed, find=find, streams=want, split=split)
            partial.record.adopt(resumed, plan.moving)
            _say_resumed(job.label, plan)
            self.progress.start(
                job.label,
                label=job.label,
                total=rec.size,
                completed=partial.resumed,
                model=job.model,
                path=job.path,
            )
            release = self._release(job, beside, ref, partial)
            with release.running() if release else contextlib.nullcontext(), partial.hashing():
                if plan.tasks:
                    streams = max(1, min(want, len(plan.tasks)))
                    Streams(self.wire, partial, plan).run(plan.tasks, streams)
                partial.finish(release.refute if release is not None else None)
                written = os.fstat(partial.fd)
        self._install(job, ref, partial, written)
        return TransferResult(
            size=rec.size,
            sha256=partial.hasher.sha256.hexdigest(),
            git_oid=None,
            etag=None,
            resumed_from=partial.resumed,
            fetched=beside.ledger.fetched,
            reused=partial.reused,
            xet=ref.hash,
            trust=release.check.trust.kind if release and release.check is not None else None,
        )

    def _release(
        self, job: TransferJob, beside: JobContext, ref: XetRef, partial: Partial
    ) -> _ranges.Release | None:
        """The file's ranges to check as their terms land, so its verified ranges may leave before
        it is whole (found through ``JobContext.releases``), each against a root bound to the
        pinned bytes: the job's trust (the part hashes beside the lock, a signature's shards)
        when it has one; else the Xet hash, only when this machine verified it whole with the
        pinned sha256 (``bound``: a Hub's word alone, its HEAD, listing or a lock copied from
        them, releases nothing early).
        None for a file of one range, or when no loader reads this run's files as they come."""
        if not beside.in_order or beside.releases is None or partial.rec.size <= partsize.PART:
            return None
        trust = beside.trust if beside.trust is not None and fits(beside.trust) else None
        if trust is None and not self.bound(job, ref.hash):
            log.info(
                "%s: its Xet hash is not bound to its pinned sha256: released whole", job.label
            )
            return None
        return _ranges.Release(
            functools.partial(self.chunk_hashes, ref, job.label),
            size=partial.rec.size,
            xet_hash=from_hex(ref.hash),
            fd=partial.fd,
            part_path=job.part_path,
            record=partial.record,
            label=job.label,
            trust=trust,
            releases=beside.releases,
        )

    def _install(
        self, job: TransferJob, ref: XetRef, partial: Partial, written: os.stat_result
    ) -> None:
        """The file moved into place (``written``: the partial checked, ``finish_part``), its terms
        recorded beside it (a later pull copies them)."""
        try:
            finish_part(job, self.dirs, record=True, written=written)
        except OSError as exc:
            raise LocalFSError(
                f"{job.label}: cannot move it into place at {job.final_path}: {exc.strerror}"
            ) from exc
        terms = [partial.record.done[i] for i in range(len(partial.offsets))]
        # found again through the model's record (a one-off get's file is found by none: none kept)
        index = self.index_for(job)
        index.wrote(_state_dir(job), job.final_path, terms, xet_hash=ref.hash, kept=bool(job.model))


def _say_resumed(label: str, plan: Plan) -> None:
    for i, runs in plan.kept.items():
        gaps = len(plan.spans[i]) - len(runs)
        log.debug("%s: term %d resumed in %d runs, %d spans to fetch", label, i, len(runs), gaps)


def _state_dir(job: TransferJob) -> Path:
    return job.part_path.parent.parent  # <dest>/.mdl/partial/x.part → <dest>/.mdl


def _usable(loaded: Resumable, ref: XetRef, size: int) -> bool:
    """Whether an earlier run's record is of this file, saved durable or in this boot (else its
    pages may be lost).
    """
    return (
        loaded.xet_hash == ref.hash
        and loaded.size == size
        and (loaded.boot is None or loaded.boot == boot_id())
    )
