"""The file's hashes over its contiguous prefix: offered from memory at the frontier, else read back
from the ``.part`` by a thread of its own (``following``); and the whole file's checks at the end.
Both engines use it (the plain-HTTP streams, Xet's terms)."""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from mdl.errors import LocalFSError
from mdl.transfer.job import HashMismatch, TransferJob
from mdl.transfer.scheduling import MiB

if TYPE_CHECKING:
    from _hashlib import HASH as Hash  # (the type hashlib's constructors return)

    from mdl.signing.statement import (
        SignedFile,  # (a signed pull's: made by what checks signatures)
    )

HASH_BLOCK = 8 * MiB  # the hashing thread is woken when a piece completes or fills a block this big
# bytes read back per step, so a stream at the frontier never waits long for the lock
READ_BACK = 1 * MiB
# the hashes' state kept every this many bytes: bytes claimed no more (a take-back, a dropped piece)
# are hashed again from the last mark before them, not from the file's first byte
MARK_EVERY = 64 * MiB


class Hasher:
    """Hashes of the file's contiguous prefix: offered from memory at the frontier, else read
    back (``catch_up``).
    """

    def __init__(
        self, fd: int, size: int | None, *, git: bool, signed: SignedFile | None = None
    ) -> None:
        self.fd, self.size, self.git, self.signed = fd, size, git, signed
        self.lock = threading.Lock()
        self._buffer: bytearray | None = None
        self.read_back = 0  # bytes hashed from the file, not from memory (every attempt's)
        # bumped by unclaim: a catch-up begun before it stops instead of hashing old bytes
        self.epoch = 0
        self._marks: list[tuple[int, Hash, Hash | None]] = []
        self._rewind(0)

    def _rewind(self, start: int) -> None:
        """The hashes as they were at the last mark at or before ``start`` (at byte 0: new)."""
        marks = [mark for mark in self._marks if mark[0] <= start]  # (none at byte 0)
        if marks:
            self.position, sha256, sha1 = marks[-1]
            self.sha256, self.sha1 = sha256.copy(), None if sha1 is None else sha1.copy()
        else:
            self.position, self.sha256 = 0, hashlib.sha256()
            self.sha1 = (
                hashlib.sha1(b"blob %d\0" % self.size)
                if self.git and self.size is not None
                else None
            )
            self.check = self.signed.check_apart() if self.signed is not None else None
        # (a signed check apart keeps no marks: it cannot be copied, it starts over)
        self._marks = marks
        self._next_mark = self.position + MARK_EVERY if self.check is None else math.inf

    def unclaim(self, start: int) -> None:
        """The bytes from ``start`` on are claimed no more (a take-back): hashed past it, it goes
        back to its last mark before ``start``; a catch-up under way stops (its limit may lie past
        ``start``)."""
        with self.lock:
            self.epoch += 1
            if self.position > start:
                self._rewind(start)

    def _update(self, data: memoryview) -> None:
        self.sha256.update(data)
        if self.sha1 is not None:
            self.sha1.update(data)
        if self.check is not None:
            self.check.update(data)
        self.position += len(data)
        if self.position >= self._next_mark:
            self._marks.append(
                (self.position, self.sha256.copy(), None if self.sha1 is None else self.sha1.copy())
            )
            self._next_mark = self.position + MARK_EVERY

    def offer(self, offset: int, data: bytes | memoryview) -> None:
        # Looked at without the lock first (the frontier's stream or the read-back holds it while
        # it hashes); a position read as it moves leaves the bytes to the read-back.
        if not offset <= self.position < offset + len(data):
            return
        with self.lock:
            if offset <= self.position < offset + len(data):
                self._update(memoryview(data)[self.position - offset :])

    def catch_up(self, limit: int, *, epoch: int | None = None) -> None:
        """Hash bytes [position, limit) from the file; stops if unclaimed since ``epoch`` (``limit``
        may be stale).
        """
        epoch = self.epoch if epoch is None else epoch
        while True:
            with self.lock:
                if self.position >= limit or self.epoch != epoch:
                    return
                if self._buffer is None:
                    self._buffer = bytearray(min(READ_BACK, max(1, limit - self.position)))
                view = memoryview(self._buffer)[: limit - self.position]
                if (got := os.preadv(self.fd, [view], self.position)) <= 0:
                    raise LocalFSError(f"could not read back {self.position} bytes while hashing")
                self._update(view[:got])
                self.read_back += got

    @contextlib.contextmanager
    def following(
        self,
        lock: threading.Condition,
        contiguous: Callable[[], int],
        *,
        name: str,
        each: Callable[[], None] | None = None,
    ) -> Iterator[None]:
        """A thread hashing the prefix as it grows (writers notify ``lock`` when it may have, and
        ``contiguous`` is read under it), read back where no stream offered it from memory; ``each``
        called at every turn (at least every half second); a failure is raised at the end."""
        done = threading.Event()

        def follow() -> None:
            while True:
                with lock:
                    if contiguous() <= self.position and not done.is_set():
                        lock.wait(0.5)
                    target = contiguous()
                    # read with the frontier: an unclaim is made under the same lock
                    epoch = self.epoch
                if target > self.position:
                    self.catch_up(target, epoch=epoch)
                elif done.is_set():
                    return
                if each is not None:
                    each()

        from concurrent.futures import ThreadPoolExecutor  # (not before the first download)

        with ThreadPoolExecutor(1, thread_name_prefix=name) as pool:
            running = pool.submit(follow)
            try:
                yield
            finally:
                done.set()
                with lock:
                    lock.notify_all()  # it may be waiting for more
        running.result()

    def mismatch(self, job: TransferJob, size: int) -> HashMismatch | None:
        """Why the bytes hashed are not ``job``'s file (size, sha256, git blob id, a signature's
        digests), or None; with ``--no-verify`` (not ``job.verify``) too: its caller keeps them."""
        ident = job.identity
        if ident.size is not None and job.size_pinned and size != ident.size:
            return HashMismatch("size", f"{ident.size} bytes", f"{size} bytes")
        if ident.sha256 and (got := self.sha256.hexdigest()) != ident.sha256:
            return HashMismatch("sha256", ident.sha256, got)
        if (
            ident.git_oid
            and self.sha1 is not None
            and (got := self.sha1.hexdigest()) != ident.git_oid
        ):
            return HashMismatch("git blob id", ident.git_oid, got)
        if self.check is not None and (bad := self.check.mismatch()) is not None:
            return HashMismatch(*bad)
        return None
