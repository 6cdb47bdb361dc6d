"""One file over HTTP into a ``.part`` and its resume record: parallel ranges, retries, stalls;
verified, moved.

The engine probes and retries a bad hash; its collaborators do the rest: ``part.PartFetch`` (one
try at one file: open, run, verify, finish or keep), ``part.Restarts`` (its streams, started over
when ranges are ignored or the file changes), ``stream.PieceStream`` (one piece's requests, each
answer checked), ``stream.BodyCopy`` (an answer's body onto the disk) and ``shared.Shared`` (what
every stream of one engine shares).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from pathlib import Path

from mdl.errors import MdlError
from mdl.store.filesystem import DirSyncs
from mdl.transfer import small
from mdl.transfer._part import PartFetch
from mdl.transfer._shared import Shared
from mdl.transfer.context import JobContext
from mdl.transfer.job import HashMismatch, TransferJob, TransferResult
from mdl.transfer.replies import probe
from mdl.transfer.resume import load_state

log = logging.getLogger("mdl.transfer")


@dataclasses.dataclass(eq=False)
class Engine(Shared):
    """What its streams share (client, knobs, display, Ctrl-C, rate cap, open answers), and the
    fetch of one file, many files at once across threads."""

    # folders to fsync before a record names their files (None: fsync at each finish)
    dirs: DirSyncs | None = dataclasses.field(default=None, kw_only=True)
    # fetches paused after their head (``ahead``), by ``.part``: ``fetch`` goes on with them
    _paused: dict[Path, PartFetch] = dataclasses.field(default_factory=dict, init=False)

    def abort(self) -> None:
        self.cancel.set()
        self.close()

    def ahead(self, job: TransferJob, beside: JobContext, end: int) -> bool:
        """Head first: the file's bytes ``[0, end)`` fetched now, as any fetch's (retries, rate
        limit, progress, its range check told and found through ``beside.releases``), and its
        fetch paused there: the next ``fetch`` of ``job`` goes on with the rest; False when they
        did not all come (``fetch`` resumes on what did, as always)."""
        paused = PartFetch(self, job, beside, load_state(job), self.dirs)
        if not paused.ahead(end):
            return False
        with self._open_lock:
            self._paused[job.part_path] = paused
        return True

    def drop_paused(self, part: Path | None = None) -> None:
        """Every fetch still paused after its head ended, or that of ``part`` (its ``.part``):
        its bytes kept to resume."""
        with self._open_lock:
            if part is None:
                paused, self._paused = list(self._paused.values()), {}
            else:
                paused = [p] if (p := self._paused.pop(part, None)) is not None else []
        for fetch in paused:
            fetch.abandon()

    def fetch(
        self, job: TransferJob, beside: JobContext | None = None, *, fresh: bool = False
    ) -> TransferResult:
        """Download (or resume) one file into place, verified; a bad hash is tried again from
        zero only when suspect. ``beside``: who hears the fetch, what it is handed; ``fresh``:
        nothing of it is on disk (then a small file takes one GET, ``small.fits``).
        """
        beside = beside or JobContext()
        if fresh and small.fits(self, job, beside):
            return small.fetch(self, job, self.dirs)
        thrown = 0  # bytes of a first try whose hash did not match: fetched, so counted
        if job.retry_on_mismatch:
            try:
                return self._fetch_once(job, beside)
            except HashMismatch as exc:  # suspect: the transfer may be to blame
                log.warning("%s: %s mismatch, retrying once from zero", job.label, exc.kind)
                job.retries.add(f"{exc.kind} mismatch, fetched again from zero")
                self.progress.note(f"{job.label}: {exc.kind} mismatch, downloading again from zero")
                thrown = exc.fetched
        try:
            # the last try
            job = dataclasses.replace(job, retry_on_mismatch=False)
            result = self._fetch_once(job, dataclasses.replace(beside, opening=None))
        except MdlError as exc:
            exc.fetched += thrown
            raise
        return dataclasses.replace(result, fetched=result.fetched + thrown)

    def _fetch_once(self, job: TransferJob, beside: JobContext) -> TransferResult:
        with self._open_lock:
            paused = self._paused.pop(job.part_path, None)
        if paused is not None:
            return paused.run(job)
        loaded = load_state(job)
        # its first request learns the size
        if loaded is None and job.identity.size is None and beside.opening is None:
            job, beside = self._probed(job, beside)
        # a probe's answer this download did not take is closed after
        with beside.opening or contextlib.nullcontext():
            return PartFetch(self, job, beside, loaded, self.dirs).run()

    def _probed(self, job: TransferJob, beside: JobContext) -> tuple[TransferJob, JobContext]:
        """``job`` with the size, version and final URL its first request found, and that
        request's unread answer (unchanged when the server answers no ranges, or a coded body)."""
        found = self.config.retry.run(
            lambda: probe(
                self.client,
                job.url,
                credentials=job.credentials,
                what=job.label,
                carry=True,
                saved_as=job.path,
            ),
            what=job.label,
            wait=self.cancel.wait,
            on_retry=job.retries.add,
        )
        # else no ranges here (or a coded body): one stream, as before
        if found.size is None or not found.ranged:
            return job, beside
        identity = dataclasses.replace(
            job.identity, size=found.size, etag=job.identity.etag or found.validator
        )
        job = dataclasses.replace(job, identity=identity, size_pinned=False, located=found.url)
        return job, dataclasses.replace(beside, opening=found.opening)
