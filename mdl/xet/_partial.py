"""The partial file of one attempt at a Xet file: bytes written where their terms go, the sha256
following its contiguous start, the Xet file hash from every chunk's, and the resume record of
every chunk on disk (saved on the engines' rule, at most a small share of the time)."""

from __future__ import annotations

import bisect
import contextlib
import errno
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Protocol

from mdl.errors import IntegrityError, LocalFSError, MdlError, NoSpaceError
from mdl.progress import Progress
from mdl.sources.resolve import XetRef
from mdl.store.confined import open_file
from mdl.transfer.context import Ledger
from mdl.transfer.hasher import Hasher
from mdl.transfer.job import Landing, TransferJob
from mdl.transfer.resume import (
    WRITEBACK_EVERY,
    boot_id,
    discard_partial,
    job_root,
    part_error,
    record_due,
    save_threshold,
    start_writeback,
)
from mdl.xet._hashing import chunk_hash, file_hash, to_hex
from mdl.xet._plan import Resumed, resume
from mdl.xet._protocol import Reconstruction
from mdl.xet._reuse import Resumable, Written, save_state
from mdl.xet.failures import Suspect, Unsplittable, XetFallback

log = logging.getLogger("mdl.xet")

READ_BLOCK = 4 << 20  # bytes of a resumed run read back at once to check its chunks' hashes
# A resume record lists every chunk on disk (a 50 GB file's is ~50 MB): due by the engines' rule
# (1/50 of the file more on disk, or SAVE_EVERY seconds), but saving takes at most SAVE_SHARE of
# the time.
SAVE_EVERY = 1.0
SAVE_SHARE = 0.05


class Sink(Protocol):
    """Where a stream puts its chunks: the terms it writes and the runs of them on disk."""

    @property
    def terms(self) -> Sequence[int]: ...

    def runs(self) -> Iterator[tuple[int, Written]]: ...


class Record:
    """What is on disk of each term, as a resume record claims it: the terms done, the runs kept
    of others, the runs streams wrote (``attach``), and how far the file's start is whole."""

    def __init__(self, rec: Reconstruction) -> None:
        self.offsets, self.size = rec.offsets, rec.size
        self.done: dict[int, Written] = {}
        self.kept: dict[int, list[Written]] = {}  # unfinished terms: their runs resumed from disk
        self.moving: dict[
            int, int
        ] = {}  # terms being written: bytes of each on disk from its start
        self.frontier = 0  # terms before this index are all done
        self.lock = threading.Lock()
        self.wrote = threading.Condition(self.lock)  # the sha256's frontier may have moved on
        self._sinks: list[Sink] = []  # streams that wrote chunks of unfinished terms
        self._told: Landing | None = None  # told each term on disk

    def adopt(self, resumed: Resumed, moving: dict[int, int]) -> None:
        """The chunks an earlier run left that are kept, and the terms' starts on disk."""
        with self.lock:
            self.done.update(resumed.done)
            self.kept.update(resumed.kept)
            self.moving.update(moving)
            self._advance()
            if (told := self._told) is not None:
                for index in resumed.done:
                    told.landed(*self._span(index))

    def finished(self, index: int, written: Written) -> None:
        """Term ``index`` is on disk, all of it."""
        with self.lock:
            self.done[index] = written
            self.moving.pop(index, None)
            self.kept.pop(index, None)
            self._advance()
            self.wrote.notify()
            if (told := self._told) is not None:
                told.landed(*self._span(index))

    def tell(self, landing: Landing | None) -> None:
        """``landing`` told of every term on disk, now and as each lands (under the lock: keep
        it quick); None: no more."""
        with self.lock:
            self._told = landing
            if landing is not None:
                for index in sorted(self.done):
                    landing.landed(*self._span(index))

    def sizes(self, start: int, end: int) -> list[int] | None:
        """The lengths of the chunks on disk that make up ``[start, end)`` exactly, if all are."""
        sizes: list[int] = []
        with self.lock:
            index = max(0, bisect.bisect_right(self.offsets, start) - 1)
            at = self.offsets[index] if self.offsets else 0
            while at < end and index < len(self.offsets) and index in self.done:
                for _, size in self.done[index].chunks:
                    if start <= at and at + size <= end:
                        sizes.append(size)
                    elif at < end and at + size > start:
                        return None  # a chunk across a bound
                    at += size
                index += 1
        return sizes if sum(sizes) == end - start else None

    def _span(self, index: int) -> tuple[int, int]:
        last = index + 1 == len(self.offsets)
        return self.offsets[index], self.size if last else self.offsets[index + 1]

    def moved(self, index: int, written: int) -> None:
        """Term ``index`` has ``written`` bytes on disk from its start."""
        with self.lock:
            if written:
                self.moving[index] = written
            else:
                self.moving.pop(index, None)
            if index == self.frontier:
                self.wrote.notify()

    def left(self, terms: Sequence[int]) -> list[int]:
        """The ``terms`` not done (what a retried stream writes, and counts, again)."""
        with self.lock:
            return [i for i in terms if i not in self.done]

    def attach(self, sink: Sink) -> None:
        with self.lock:
            self._sinks.append(sink)

    def detach(self, sink: Sink) -> None:
        """A stream that failed: what it wrote is no longer claimed."""
        with self.lock:  # (a record may have dropped it already: its terms were done)
            self._sinks = [other for other in self._sinks if other is not sink]

    def runs(self) -> list[Written]:
        """Every chunk on disk, in runs (a finished term is one), each only once its bytes are
        written."""
        with self.lock:
            runs = list(self.done.values())
            runs += [run for i, kept in self.kept.items() if i not in self.done for run in kept]
            self._sinks = [s for s in self._sinks if not all(i in self.done for i in s.terms)]
            runs += [run for sink in self._sinks for i, run in sink.runs() if i not in self.done]
        return runs

    def contiguous(self) -> int:
        """Bytes on disk from the file's start: the terms done, and what the next one has of its
        start (under lock).
        """
        if self.frontier >= len(self.offsets):
            return self.size
        return self.offsets[self.frontier] + self.moving.get(self.frontier, 0)

    def chunks(self) -> list[tuple[bytes, int]]:
        """Every chunk's hash and length, in the file's order (all terms done)."""
        return [chunk for i in range(len(self.offsets)) for chunk in self.done[i].chunks]

    def _advance(self) -> None:
        while self.frontier in self.done:
            self.frontier += 1


@dataclass
class _Saves:
    """When the next resume record is due (under the record's lock)."""

    every: int  # bytes written
    last: float = field(default_factory=time.monotonic)
    cost: float = 0.0  # seconds the last record took to write
    unsaved: int = 0  # bytes written since the last record

    def due(self, now: float) -> bool:
        """The engines' rule: bytes or seconds since the last (a stale read only delays a save)."""
        return record_due(self.unsaved, now - self.last, every=self.every, interval=SAVE_EVERY)

    def claim(self) -> bool:
        """Whether a record is due and costs no more than its share of the time: then it is the
        caller's to write."""
        now = time.monotonic()
        cheap = now - self.last >= self.cost / SAVE_SHARE
        if self.unsaved > 0 and cheap and self.due(now):
            self.last, self.unsaved = now, 0
            return True
        return False


class Partial:
    """The ``.part`` of one attempt, open: where streams and copies write, what is hashed and
    recorded."""

    def __init__(
        self,
        job: TransferJob,
        rec: Reconstruction,
        *,
        ref: XetRef,
        progress: Progress,
        ledger: Ledger,
    ) -> None:
        # (``ledger``: the file's: what comes over the wire, what is copied)
        self.job, self.rec, self.ref, self.progress, self.ledger = job, rec, ref, progress, ledger
        self.root = job_root(job)
        self.offsets = rec.offsets
        self.record = Record(rec)
        self.resumed = self.reused = 0
        self._saves = _Saves(save_threshold(rec.size))
        self._save_lock = threading.Lock()  # one record written at a time
        self._nudged = time.monotonic()
        try:
            self.fd = open_file(self.root, job.part_path, os.O_RDWR | os.O_CREAT)
        except OSError as exc:
            raise LocalFSError(
                f"{job.label}: cannot write {job.part_path}: {exc.strerror}"
            ) from exc
        self.hasher = Hasher(self.fd, rec.size, git=False, signed=job.signed)

    @contextlib.contextmanager
    def writing(self, *, fresh: bool) -> Iterator[None]:
        """The file sized (``fresh``: emptied first) while the attempt writes it, closed after; a
        disk's failure said as one, what is on disk recorded when the attempt is stopped."""
        job = self.job
        try:
            if fresh:
                os.ftruncate(self.fd, 0)
            os.ftruncate(self.fd, self.rec.size)
            yield
        except OSError as exc:
            error = part_error(job, exc)
            if isinstance(error, NoSpaceError):  # kept for the resume, as any partial is
                with contextlib.suppress(OSError, MdlError):
                    self.save(durable=True)
            raise error from exc
        except (Suspect, IntegrityError, Unsplittable):
            raise
        except XetFallback:  # the plain path starts over: no Xet partial is left for it to misread
            # (its progress is replaced when the plain path starts the file again)
            discard_partial(job)
            raise
        except BaseException:
            with contextlib.suppress(OSError, MdlError):
                self.save(durable=True)  # what is on disk, for the next run
            raise
        finally:
            self.hasher.close()
            os.close(self.fd)

    def check_record(self, record: Sequence[Written]) -> Resumed:
        """The chunks an earlier run recorded that still lie on disk as recorded
        (``plan.resume``)."""
        resumed = resume(self.rec, record, partial(checked_runs, self.fd))
        self.resumed = resumed.resumed
        return resumed

    # --- writing
    # ----------------------------------------------------------------------------------------------

    def write(self, offset: int, parts: Sequence[bytes | memoryview]) -> None:
        """``parts`` at ``offset``: hashed from memory when at the sha256's frontier, counted."""
        total = sum(len(p) for p in parts)
        done = os.pwritev(self.fd, parts, offset)
        if done != total:  # a regular file writes all of it or fails; a short write is a full disk
            raise OSError(errno.ENOSPC, "short write")
        at = offset
        # hashed from memory when at the frontier of the sha256, else read back later
        for part in parts:
            self.hasher.offer(at, part)
            at += len(part)
        self.progress.advance(self.job.label, total)
        # a stale read races harmlessly
        now = time.monotonic()
        if now - self._nudged >= WRITEBACK_EVERY:
            self._nudged = now
            start_writeback(self.fd)

    def claimable(self, size: int) -> None:
        """``size`` bytes written are now the record's to claim (their chunks are in a run): only
        now do they count toward the next save, or a save could take the count and miss them."""
        with self.record.lock:
            self._saves.unsaved += size
        self.checkpoint()

    def copied(self, size: int) -> None:
        """``size`` bytes more were copied from files already here."""
        with self.record.lock:
            self.reused += size
        self.ledger.add("reused", size)

    def finished(self, index: int, written: Written) -> None:
        """Term ``index`` is on disk, all of it: in the record, saved when one is due."""
        self.record.finished(index, written)
        self.checkpoint()

    def uncount(self, size: int) -> None:
        """Bytes written that a failed stream's retry writes again: no longer progress."""
        self.progress.advance(self.job.label, -size)

    def corrupt(self, why: str) -> IntegrityError:
        """The Xet storage served bytes that are not this file: the partial goes."""
        discard_partial(self.job)
        return IntegrityError(
            f"{self.job.label}: {why}",
            hint=(
                "the Xet storage served bytes that are not this file; the partial file was removed"
            ),
        )

    # --- the resume record
    # -------------------------------------------------------------------------------------

    def checkpoint(self) -> None:
        """A cheap resume record, when one is due, written by the thread that finds it due."""
        if not self._saves.due(time.monotonic()):
            return  # the common case, without the lock every stream takes
        with self.record.lock:
            due = self._saves.claim()
        if due:
            self.save(durable=False)

    def save(self, *, durable: bool) -> None:
        """The resume record: every chunk on disk. A durable record is written after the bytes it
        claims are flushed; a cheap one names this boot (a crash of the machine may lose their
        pages, and a later boot drops it)."""
        with self._save_lock:
            if not (runs := self.record.runs()):
                return
            began = time.monotonic()
            if durable:
                os.fdatasync(self.fd)
            boot = None if durable else boot_id()
            state = Resumable(self.ref.hash, self.rec.size, boot, tuple(runs))
            save_state(self.root, self.job.state_path, state, source=self.job.source)
            self._saves.cost = time.monotonic() - began

    # --- hashing and verification
    # ------------------------------------------------------------------------------

    def hashing(self) -> contextlib.AbstractContextManager[None]:
        """A thread hashing the file's contiguous start as it grows (read back where no stream
        offered it from memory): the sha256 keeps pace with the streams instead of reading the whole
        file after the last byte; its end is waited for (``finish`` and the record's last save come
        after its last read)."""
        label = self.job.label
        return self.hasher.following(
            self.record.wrote, self.record.contiguous, name=f"xet-hash:{label}", each=self._quiet
        )

    def _quiet(self) -> None:
        try:  # streams that went quiet leave a record due by time: saved here, not by them
            self.checkpoint()
        # a record not saved costs only a later resume its bytes
        except (OSError, MdlError) as exc:
            log.info("%s: could not save the resume record (%s)", self.job.label, exc)

    def finish(self, refused: Callable[[str], object] | None = None) -> None:
        """Every byte hashed and checked, then flushed: the Xet file hash from every chunk's hash,
        the sha256 (and a signature's digests) from the bytes on disk; ``refused`` hears why when
        one refuses the file (ranges that left early are then not proved)."""
        self.hasher.catch_up(self.rec.size)
        bad = self._refusal()
        if bad is not None:
            if refused is not None:
                refused(f"its {bad[0]} refused the file")
            raise self._mismatch(*bad)
        os.fdatasync(self.fd)

    def _refusal(self) -> tuple[str, str, str] | None:
        """(kind, expected, got) of the first whole-file hash the bytes fail, if any."""
        if (got := to_hex(file_hash(self.record.chunks()))) != self.ref.hash:
            return "Xet file hash", self.ref.hash, got
        expected, sha256 = self.job.identity.sha256, self.hasher.sha256.hexdigest()
        if self.job.verify and expected and sha256 != expected:
            return "sha256", expected, sha256
        if self.hasher.check is not None:
            return self.hasher.check.mismatch()
        return None

    def _mismatch(self, kind: str, expected: str, actual: str) -> Exception:
        if self.resumed or self.reused:
            return Suspect(f"{kind} mismatch")
        if kind == "sha256":  # every chunk is its Xet hash's: that hash names other bytes
            self.job.retries.warn(
                f"{self.job.label}: its Xet hash {self.ref.hash} names other bytes than its pinned"
                " sha256 (the Hub, a proxy or catalog.lock named it): fetching it over plain HTTP"
            )
            return XetFallback("its Xet hash names other bytes than its pinned sha256")
        return self.corrupt(f"{kind} mismatch: expected {expected}, got {actual}")


def checked_runs(fd: int, run: Written) -> Iterator[Written]:
    """The parts of ``run`` whose chunks still hash on disk (``fd``) as recorded (read a few MiB at
    a time)."""
    good: list[tuple[bytes, int]] = []
    begin = begin_at = 0
    index, at, k = run.start, run.offset, 0
    while k < len(run.chunks):
        j, size = k, 0
        while j < len(run.chunks) and (j == k or size + run.chunks[j][1] <= READ_BLOCK):
            size += run.chunks[j][1]
            j += 1
        data = os.pread(fd, size, at)
        view, pos = memoryview(data), 0
        for digest, n in run.chunks[k:j]:
            if pos + n <= len(data) and chunk_hash(view[pos : pos + n]) == digest:
                if not good:
                    begin, begin_at = index, at
                good.append((digest, n))
            elif good:
                yield Written(run.xorb, begin, begin + len(good), begin_at, tuple(good))
                good = []
            index, at, pos = index + 1, at + n, pos + n
        k = j
    if good:
        yield Written(run.xorb, begin, begin + len(good), begin_at, tuple(good))
