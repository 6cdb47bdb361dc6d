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
import logging

from mdl.transfer import small
from mdl.transfer._part import PartFetch
from mdl.transfer._shared import Shared
from mdl.transfer.context import JobContext, Ledger
from mdl.transfer.http import say_wait
from mdl.transfer.job import HashMismatch, TransferJob, TransferResult
from mdl.transfer.replies import probe
from mdl.transfer.resume import load_state

log = logging.getLogger("mdl.transfer")


class Paused(contextlib.AbstractContextManager["Paused"]):
    """A file's fetch paused after its head (``Engine.ahead``): its ``.part`` open, its range
    check serving what verified. A context manager: ``resume`` (through ``Engine.fetch``) gives the
    file, ``close`` ends it, its bytes kept to resume; one holder at a time."""

    def __init__(self, engine: Engine, fetch: PartFetch) -> None:
        # (the engine that paused it goes on with it; the bytes counted in its file's ledger)
        self.engine, self.ledger = engine, fetch.beside.ledger
        self._fetch: PartFetch | None = fetch

    def resume(self, job: TransferJob) -> TransferResult:
        """The rest of the file, by ``job`` (the file's job now: its source, its retries)."""
        fetch, self._fetch = self._fetch, None
        assert fetch is not None, "resumed once"
        return fetch.run(job)

    def close(self) -> None:
        """End it unless it was resumed: its bytes kept, its check ended."""
        fetch, self._fetch = self._fetch, None
        if fetch is not None:
            fetch.abandon()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def open(self) -> bool:
        return self._fetch is not None


class Engine(Shared):
    """What its streams share (client, knobs, display, Ctrl-C, rate cap, open answers), and the
    fetch of one file, many files at once across threads."""

    def abort(self) -> None:
        self.cancel.set()
        self.close()

    def ahead(self, job: TransferJob, beside: JobContext, end: int) -> Paused | None:
        """Head first: the file's bytes ``[0, end)`` fetched now, as any fetch's (retries, rate
        limit, progress, its range check told and found through ``beside.releases``), and its
        fetch paused there, for a ``fetch`` of the file to go on with; None when they did not all
        come (a ``fetch`` resumes on what did, as always)."""
        fetch = PartFetch(self, job, beside, load_state(job), self.dirs)
        return Paused(self, fetch) if fetch.ahead(end) else None

    def fetch(
        self,
        job: TransferJob,
        beside: JobContext | None = None,
        *,
        fresh: bool = False,
        paused: Paused | None = None,
    ) -> TransferResult:
        """Download (or resume) one file into place, verified; a bad hash is tried again from
        zero only when suspect. ``beside``: who hears the fetch, what it is handed; ``fresh``:
        nothing of it is on disk (then a small file takes one GET, ``small.fits``); ``paused``:
        its fetch paused after its head, gone on with when this engine paused it.
        """
        beside = beside or JobContext(ledger=Ledger())
        if fresh and small.fits(self, job, beside):
            return small.fetch(self, job, self.dirs, beside.ledger)
        if job.retry_on_mismatch:
            try:
                return self._fetch_once(job, beside, paused)
            except HashMismatch as exc:  # suspect: the transfer may be to blame
                log.warning("%s: %s mismatch, retrying once from zero", job.label, exc.kind)
                job.retries.add(f"{exc.kind} mismatch, fetched again from zero")
                self.progress.note(f"{job.label}: {exc.kind} mismatch, downloading again from zero")
        # the last try
        job = job._replace(retry_on_mismatch=False)
        return self._fetch_once(job, beside._replace(opening=None), paused)

    def _fetch_once(
        self, job: TransferJob, beside: JobContext, paused: Paused | None
    ) -> TransferResult:
        if paused is not None and paused.engine is self and paused.open:
            return paused.resume(job)
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
            # (its row: a failed fetch's finish ends it)
            announce=lambda _, line: say_wait(self.progress, job.label, line),
        )
        # else no ranges here (or a coded body): one stream, as before; from the whole file the
        # probe is reading (ranges ignored), if it is
        if found.opening is None and (found.size is None or not found.ranged):
            return job, beside
        identity = job.identity._replace(size=found.size, etag=job.identity.etag or found.validator)
        located = found.url if found.ranged else None
        job = job._replace(identity=identity, size_pinned=False, located=located)
        return job, beside._replace(opening=found.opening)
