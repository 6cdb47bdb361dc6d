"""Verified files' records, queued per model and written in batches; each file's lock is released once it is on disk."""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING

from mdl.errors import MdlError
from mdl.store import DirSyncs, FileRecord, Store

if TYPE_CHECKING:
    from mdl.store import HeldLocks

log = logging.getLogger("mdl.pull")
RECORD_FLUSH_INTERVAL = 1.0  # seconds between writes of a model's record while its files complete

Commit = tuple[str | None, str | None]  # (revision, commit) a model's record is written with


class RecordQueue:
    """The file records of a run not yet written, and the file locks released only once they are."""

    def __init__(self, store: Store, *, keep: bool = True, dirs: DirSyncs | None = None) -> None:
        self.store = store
        self.keep = keep  # False for a one-off get: it keeps no record at all, only the files
        self.dirs = dirs or DirSyncs()  # folders of renamed files: made durable before a record names them
        self._lock = threading.Lock()
        self._pending: dict[str, list[tuple[FileRecord, HeldLocks | None]]] = {}
        self._pending_commit: dict[str, Commit] = {}
        self._last_flush: dict[str, float] = {}
        self._timers: dict[str, threading.Timer] = {}

    def add(self, model: str, commit: Commit, record: FileRecord, lock: HeldLocks | None) -> None:
        """Add a file to the model's record, writing it at most once a second (and at the end of the run).

        Rewriting the whole record per file is O(files²) and serialises the jobs on the record lock; a file
        whose entry was not written yet (kill -9) is only re-hashed by the next run, never trusted blindly.
        """
        if lock is not None:
            # The blob is in place and linked: free its shared lock now. Held until the batched record flush,
            # it would block this very run's other jobs on the same blob (identical files, two models on one
            # repo) and any hf_hub_download, with nothing left to flush it.
            lock.release_shared()
        if not self.keep:
            if lock is not None:
                lock.release()
            return
        with self._lock:
            self._pending.setdefault(model, []).append((record, lock))
            self._pending_commit[model] = commit
            due = time.monotonic() - self._last_flush.get(model, 0.0) >= RECORD_FLUSH_INTERVAL
            if not due and model not in self._timers:
                # Written within the interval even if no other file of the model completes: the file's lock
                # (which another run may be waiting on) goes with its record, not with the end of this run.
                timer = threading.Timer(RECORD_FLUSH_INTERVAL, self._flush_later, args=(model,))
                timer.daemon = True
                self._timers[model] = timer
                timer.start()
        if due:
            self.flush(model)

    def _flush_later(self, model: str) -> None:
        with self._lock:
            self._timers.pop(model, None)
        try:
            self.flush(model)
        except MdlError as exc:  # the files stay; the next run re-hashes them instead of trusting a record
            log.warning("%s: %s", model, exc.message)

    def flush(self, model: str | None = None) -> None:
        """Write the queued file records (of one model, or all) to the store."""
        with self._lock:
            if model is None:  # the run's last flush: nothing is left for a timer to write
                for timer in self._timers.values():
                    timer.cancel()
                self._timers.clear()
            models = [model] if model is not None else list(self._pending)
            batches = {m: (self._pending.pop(m, []), self._pending_commit.get(m, (None, None))) for m in models}
            for m in models:
                self._last_flush[m] = time.monotonic()
        # After taking the batch: every file in it was renamed (and its folder noted) before it was queued, so
        # its folder entry is on disk before the record that names it.
        self.dirs.flush()
        for m, (queued, commit) in batches.items():
            try:
                if queued:
                    records = tuple(record for record, _ in queued)
                    self.store.update_record(m, revision=commit[0], commit=commit[1], puts=records)
            finally:
                # Only now may a waiting run take these files: it will find them recorded, not re-fetch them.
                for _, lock in queued:
                    if lock is not None:
                        lock.release()
