"""The record stage's last write (``RecordQueue.close``) never returns while a batch the writer
thread took is unwritten: a pull's end means its verified files are recorded (the next run, a
``verify`` or a loader must not find them unrecorded), however long a write waits on its record's
lock (another run holds it; a slow network file system)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from runfixtures import HANG

from mdl.background import JOIN
from mdl.store.filelocks import HeldLocks
from mdl.store.filesystem import DirSyncs
from mdl.store.recordqueue import RecordQueue
from mdl.store.records import FileRecord
from mdl.store.store import Store

pytestmark = pytest.mark.realtime  # waits out the background helper's join bound


class SlowStore(Store):
    """A real store whose record writes wait until the test lets them go (as one waits on a record
    lock another run holds)."""

    def __init__(self, dest: Path) -> None:
        super().__init__(dest)
        self.entered, self.go = threading.Event(), threading.Event()

    def update_record(self, model: str, **kwargs: object) -> None:  # type: ignore[override]
        self.entered.set()
        assert self.go.wait(HANG)
        super().update_record(model, **kwargs)  # type: ignore[arg-type]


def test_the_last_write_waits_for_a_write_in_flight(tmp_path: Path) -> None:
    store = SlowStore(tmp_path / "dest")
    queue = RecordQueue(store, dirs=DirSyncs(), interval=0.01)
    queue.add("m", FileRecord(path="f.bin", size=3, sha256="ab" * 32, mtime_ns=1), HeldLocks([]))
    assert store.entered.wait(HANG), "the writer thread took the batch"
    closed = threading.Thread(target=queue.close)
    closed.start()
    closed.join(JOIN + 2)  # past the helper's bound: a close that gave up on the write is back
    assert closed.is_alive(), "close returned while the batch it must write was unwritten"
    store.go.set()
    closed.join(HANG)
    assert not closed.is_alive()
    record = store.read_record("m")
    assert record is not None and "f.bin" in record.files
