"""The suite's scratch in memory: ``tmp_path``, ``tempfile`` and every child's temporary files under one
folder of this run's on ``/dev/shm`` (a tmpfs) when it has room, else where the caller's ``TMPDIR`` says.

Why: a run writes some 21 GB (bodies of 33 MiB per example, servers' objects, archives), all of it
deleted soon after. On the disk, its writeback and the fsyncs mdl makes (as it must) cost a run of
the whole suite ~40 CPU-s of system time and waits: `.ci/run` took 8:44 of pytest with its scratch
on the disk, 7:56 with it here, every test passing both ways; tests/transfer alone 85 s against 51.
Nothing mdl does is told apart by the filesystem under it here: the tests of a full disk or a
read-only one mount a small tmpfs of their own.

A caller's own ``TMPDIR`` (or pytest's ``PYTEST_DEBUG_TEMPROOT``) is kept, and so is the folder of a
run that failed (its failed tests' folders are there: pytest keeps those alone), which the run
names at its end.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from pathlib import Path

SHM = "/dev/shm"
# free room it needs: a run's live scratch peaks at ~1 GB (each passing test's folder is removed
# as it ends: `tmp_path_retention_policy = "failed"`); and the memory, of which the workers take
# ~1.5 GB each (tests/conftest.py: one per 2 GiB)
ROOM, MEMORY_AT_LEAST = 4 << 30, 16 << 30
OWNER = (
    "owner.pid"  # in a run's folder: the pid of the run that made it (tests/scratch.py's _sweep)
)


def in_memory() -> str | None:
    """This run's folder on ``SHM``, made and set as ``TMPDIR`` for this process and every
    process it starts; None where it is not used (a caller's choice, no room, a worker: it has
    its controller's)."""
    chosen = {"TMPDIR", "PYTEST_DEBUG_TEMPROOT", "PYTEST_XDIST_WORKER"} & os.environ.keys()
    if chosen:
        return None
    if os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") < MEMORY_AT_LEAST:
        return None
    try:
        room = shutil.disk_usage(SHM).free
        noexec = os.statvfs(SHM).f_flag & os.ST_NOEXEC
    except OSError:
        return None
    if room < ROOM or noexec:  # (tests run scripts they write: a noexec mount cannot hold them)
        return None
    _sweep()
    folder = tempfile.mkdtemp(prefix="mdl-tests-", dir=SHM)
    Path(folder, OWNER).write_text(str(os.getpid()))
    # as /tmp is: the tests acting as another user (``nobody``) make their folders in it
    os.chmod(folder, 0o1777)
    os.environ["TMPDIR"] = tempfile.tempdir = folder
    return folder


def done(folder: str | None, *, failed: bool) -> str | None:
    """Removes this run's folder unless tests failed (an interrupted run's too); then returns it,
    to be named (it holds the folders of the tests that failed)."""
    if folder is None:
        return None
    if not failed:
        shutil.rmtree(folder, ignore_errors=True)
        return None
    return folder


def _sweep() -> None:
    """The folders of runs that ended without removing theirs (killed: a CI's timeout, a kill -9),
    removed: each names the process that made it, and one whose process is gone is stale (a run
    beside this one is alive: its folder stays)."""
    for folder in Path(SHM).glob("mdl-tests-*"):
        try:
            os.kill(int((folder / OWNER).read_text()), 0)
        except PermissionError:  # another user's live process
            continue
        except FileNotFoundError:  # no owner written: killed as it began, or beginning now
            with contextlib.suppress(OSError):
                if time.time() - folder.stat().st_mtime > 60:
                    shutil.rmtree(folder, ignore_errors=True)
        except (OSError, ValueError):  # its process is gone
            shutil.rmtree(folder, ignore_errors=True)
