"""Keep a big download's bytes moving to the disk while it runs, and its resume record current, off the streams.

Without this the kernel writes dirty pages late and the final ``fsync`` waits for most of the file; and a
stream that saved the record itself stalled for the ``fdatasync`` that must come first (a record never claims
unwritten data).
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cache
from typing import Any

from mdl.transfer.resume import DownloadState

log = logging.getLogger("mdl.transfer")

WRITEBACK_EVERY = 0.1  # seconds between nudges to the kernel to start writing what arrived
SAVE_BYTES = 32 * 1024 * 1024  # a record is saved once this much more is on disk, however soon (kill -9 loses less)
SYNC_FILE_RANGE_WRITE = 2  # <linux/fs.h>: start writeback of dirty pages, do not wait for it


@cache
def _sync_file_range() -> Callable[..., Any] | None:
    """libc's sync_file_range (Linux only; Python's os module does not wrap it), or None."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes  # only big downloads get here: kept off start-up
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        call = libc.sync_file_range
    except (OSError, AttributeError):
        return None
    call.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    call.restype = ctypes.c_int
    return call


def start_writeback(fd: int) -> None:
    """Ask the kernel to start writing the file's dirty pages now (asynchronously); a no-op where unsupported."""
    call = _sync_file_range()
    if call is not None:
        call(fd, 0, 0, SYNC_FILE_RANGE_WRITE)  # a failure only means the final fsync has more to do


@contextmanager
def keeping(state: DownloadState, fd: int, *, checkpoint: float, on_failure: Callable[[], None]) -> Iterator[None]:
    """While the body runs: start writeback every tenth of a second, and save the resume record every ``checkpoint``
    or as soon as ``SAVE_BYTES`` more are on disk (a fast download loses at most that much to a kill -9).

    A failed save (the disk is full, the folder went away) stops the file's streams through ``on_failure`` and
    is raised here, in the caller's thread, once they have ended.
    """
    done = threading.Event()
    failure: list[BaseException] = []

    def keep() -> None:
        try:
            while not done.wait(WRITEBACK_EVERY):
                start_writeback(fd)
                on_disk = state.on_disk()
                due = time.monotonic() - state.last_save >= checkpoint or on_disk - state.saved_bytes >= SAVE_BYTES
                if due and on_disk > state.saved_bytes:
                    state.save(fd)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread below
            failure.append(exc)
            with contextlib.suppress(Exception):
                on_failure()

    state.background = True
    keeper = threading.Thread(target=keep, name="keep", daemon=True)
    keeper.start()
    try:
        yield
    finally:
        done.set()
        keeper.join()
        state.background = False
    if failure:
        raise failure[0]
