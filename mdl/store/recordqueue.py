"""The record stage of a run: verified files' records written in batches, their file locks
released only then.
"""

from __future__ import annotations

import logging
import threading

from mdl.background import Background, every
from mdl.errors import MdlError
from mdl.store.filelocks import HeldLocks
from mdl.store.filesystem import DirSyncs
from mdl.store.records import FileRecord
from mdl.store.store import Store

log = logging.getLogger("mdl.pull")
RECORD_FLUSH_INTERVAL = 1.0  # seconds between writes of the records while files complete
# ... while loaders wait on them (mdl serve --pull): a file is served once its record says verified
SERVED_FLUSH_INTERVAL = 0.1


class RecordQueue:
    """The verified files' records not yet written, with their file locks: written at most once a
    second (per file it would be O(files²)) and the locks released only then, so a waiting run finds
    those files done. A file whose entry was not written yet (kill -9) is only re-hashed by the next
    run, never trusted blindly."""

    def __init__(
        self, store: Store, *, dirs: DirSyncs, interval: float = RECORD_FLUSH_INTERVAL
    ) -> None:
        self.store = store
        self.interval = interval
        self.dirs = dirs  # folders of renamed files: made durable before a record names them
        self._lock = threading.Lock()
        # held through a whole flush: the last one (``close``) waits for one in flight, never
        # returns while a batch it took is unwritten (bounded: each write waits on its record's
        # lock for RECORD_LOCK_TIMEOUT at most; an interruptible wait, as Ctrl-C needs)
        self._flushing = threading.Lock()
        self._pending: dict[str, list[tuple[FileRecord, HeldLocks]]] = {}
        self._writer = Background("records", every(interval, self._write)).start()

    def add(self, model: str, record: FileRecord, lock: HeldLocks) -> None:
        # The blob is in place and linked: free its shared lock now, or it would block this run's
        # other jobs on the same blob (identical files, two models on one repo) and any
        # hf_hub_download until the flush.
        lock.release(keep=1)
        with self._lock:
            self._pending.setdefault(model, []).append((record, lock))

    def _write(self) -> None:
        try:
            self.flush()
        # the files stay; the next run re-hashes them instead of trusting a record
        except MdlError as exc:
            log.warning("%s", exc.message)

    def close(self) -> None:
        """The run's last write (nothing is left for the writer thread)."""
        self._writer.stop()
        self.flush()

    def flush(self) -> None:
        with self._flushing:
            self._flush()

    def _flush(self) -> None:
        with self._lock:
            batches, self._pending = self._pending, {}
        # Every file in the batch was renamed (and its folder noted) before it was queued: its
        # folder entry goes to disk before the record that names it.
        self.dirs.flush()
        for model, queued in batches.items():
            try:  # its revision and commit: written before the first byte moved (puller._expect)
                self.store.update_record(
                    model, revision=None, commit=None, puts=tuple(r for r, _ in queued)
                )
            finally:
                # Only now may a waiting run take these files: it will find them recorded, not
                # re-fetch them.
                for _, lock in queued:
                    lock.release()
