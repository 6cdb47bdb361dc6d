"""A small file of known size and hash in one GET: its body read into memory (never more than
its size and one byte), hashed there, written to its ``.part``, synced and renamed into place.
No pieces, no resume record, no hashing thread: for a file this small a resume saves less than
the record costs (engine rule 18), and an interrupted one is fetched again whole.

``fits`` is the one place that says which files take this route; every other file goes through
``PartFetch``. The checks are the same: the size, the sha256 and the git blob id; an answer that
is not the whole file, or names another size, is refused as there."""

from __future__ import annotations

import os

import httpx2

from mdl.errors import InterruptedByUserError, LocalFSError, NetworkError, disk_error
from mdl.store.confined import open_file
from mdl.store.filesystem import DirSyncs
from mdl.transfer._headers import is_encoded
from mdl.transfer._shared import Shared, retryable
from mdl.transfer.body import promised, read_body
from mdl.transfer.context import JobContext, Ledger
from mdl.transfer.failures import ExpiredURLError, RetryableError
from mdl.transfer.hasher import Hasher
from mdl.transfer.http import Tries, error_for_status, follow, say_wait
from mdl.transfer.job import HashMismatch, TransferJob, TransferResult
from mdl.transfer.replies import validators
from mdl.transfer.resume import discard_partial, finish_part, job_root
from mdl.writes import write_all

# Below this many bytes a file is one GET held in memory (a thread's worth at most per worker).
SMALL = 1 << 20


def fits(shared: Shared, job: TransferJob, beside: JobContext) -> bool:
    """Whether ``job`` takes the small route: a size pinned under ``SMALL`` and a hash to check
    it, nothing beside the fetch that hears its ranges (a range trust, a listener, a swarm, a
    loader, a probe's open answer), no rate cap to share and no signature's own check."""
    ident = job.identity
    return (
        ident.size is not None
        and ident.size < SMALL
        and job.size_pinned
        and job.verify
        and ident.has_hash
        and job.signed is None
        and shared.limiter is None
        and beside.bare
    )


def fetch(
    shared: Shared, job: TransferJob, dirs: DirSyncs | None, ledger: Ledger
) -> TransferResult:
    """The file in place, verified; a failed try (a reset, a 5xx, an expired signed target) is
    asked again from the job's URL within the retry budget. A bad size or hash is exit 6 and
    leaves nothing behind (a fresh single answer: nothing a second try would do otherwise)."""
    label, size = job.label, job.identity.size
    assert size is not None  # (``fits``)
    shared.progress.start(label, label=label, total=size, model=job.model, path=job.path)
    tries = Tries(
        shared.config.retry,
        label,
        wait=shared.cancel.wait,
        on_retry=job.retries.add,
        announce=lambda _, line: say_wait(shared.progress, label, line),
        # its size came from an answer (the Hub's listing, a probe): a refusal now is a link down
        quick_unreachable=False,
    )
    while True:
        if shared.cancel.is_set():
            raise InterruptedByUserError(f"{label}: interrupted")
        try:
            body, etag = _get(shared, job, size, ledger)
            break
        except ExpiredURLError as exc:  # the resolve URL signs a fresh target: one try spent
            if not job.renewable:
                raise
            again = RetryableError(exc.message, answered=True)
            again.status, again.server_text = exc.status, exc.server_text  # (said if it ends)
            tries.failed(again)
        except (RetryableError, httpx2.TransportError, httpx2.StreamClosed) as exc:
            if shared.cancel.is_set():
                raise InterruptedByUserError(f"{label}: interrupted") from exc
            err = retryable(exc, what=label, url=job.url)
            tries.failed(err, lost=err is not exc)
    sha256, git_oid = _verified(job, body)
    _place(job, body, dirs)
    shared.progress.advance(label, size)
    return TransferResult(
        size=size, sha256=sha256, git_oid=git_oid, etag=etag, resumed_from=0, fetched=ledger.fetched
    )


def _get(shared: Shared, job: TransferJob, size: int, ledger: Ledger) -> tuple[bytes, str | None]:
    """The whole file's bytes from one answer, and its validator. A body longer than ``size`` is
    refused at its ``size + 1``-th byte: never more is read."""
    label = job.label
    with follow(
        shared.client, job.url, credentials=job.credentials, what=label, saved_as=job.path
    ) as resp:
        if resp.status_code != 200:  # (no Range was asked: a 206 is no answer to this request)
            raise error_for_status(resp, what=label, credentials=job.credentials)
        encoded = is_encoded(resp, what=label)
        span = promised(resp, what=label)
        if span.ranged:
            raise NetworkError(
                f"{label}: the server sent {span.shown} when the whole file was asked"
            )
        if span.total is not None and span.total != size:
            raise HashMismatch("size", f"{size} bytes", f"{span.total} bytes (server)").error(label)
        body = bytearray()
        for chunk in ledger.counting(job, read_body(resp, span, encoded=encoded, what=label)):
            body += chunk
            if len(body) > size:
                raise HashMismatch("size", f"{size} bytes", f"more than {size} bytes").error(label)
        etag, modified = validators(resp)
    return bytes(body), etag or modified


def _verified(job: TransferJob, body: bytes) -> tuple[str, str | None]:
    """(sha256, git blob id) of ``body``, each the one expected (``Hasher.mismatch``)."""
    hasher = Hasher(-1, len(body), git=job.identity.git_oid is not None)
    hasher.offer(0, body)
    if (bad := hasher.mismatch(job, len(body))) is not None:
        raise bad.error(job.label)
    return hasher.sha256.hexdigest(), None if hasher.sha1 is None else hasher.sha1.hexdigest()


def _place(job: TransferJob, body: bytes, dirs: DirSyncs | None) -> None:
    """``body`` written to the ``.part`` (opened below the root, no link followed), synced, and
    renamed into place; on any failure the ``.part`` is removed (nothing to resume on)."""
    # What an older run left under these names (a partial no record resumes, the record of
    # another version, a link or a FIFO put there) goes first, as ``load_state`` discards it; a
    # folder there is refused (exit 7, named).
    discard_partial(job)
    try:
        fd = open_file(job_root(job), job.part_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        try:
            write_all(fd, body)
            os.fdatasync(fd)
            written = os.fstat(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        discard_partial(job)
        raise disk_error(
            exc,
            full=f"{job.label}: no space left on device while writing {job.part_path}",
            other=f"{job.label}: {exc.strerror or exc} ({job.part_path})",
        ) from exc
    except LocalFSError as exc:  # (a folder on the way that is not mdl's own)
        raise LocalFSError(f"{job.label}: cannot write {job.part_path}: {exc.message}") from exc
    finish_part(job, dirs, record=False, written=written)
