"""Moving an extracted tree into place so the target is entirely old or entirely new, whatever happens.

``DEST/.mdl-unpack-XXXX/`` holds ``tree/`` (the extraction), ``old/`` (what the swap moved aside) and, during the
swap, ``journal.json`` (the top-level names, and which existed): with atomic renames it says how far a swap got.
SIGINT/SIGTERM wait until the swap is done or undone; after a kill -9 the next unpack into DEST rolls it back (or
finishes a committed one). Originals are never deleted before the new tree is in place."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import stat
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

from mdl.archive.names import name_problem
from mdl.errors import LocalFSError
from mdl.progress import Progress
from mdl.store import fsync_dir

PREFIX = ".mdl-unpack-"
_LOCK, _JOURNAL, _TREE, _OLD = "lock", "journal.json", "tree", "old"
_SWAPPING, _COMMITTED = "swapping", "committed"


@contextlib.contextmanager
def deferred_signals() -> Iterator[None]:
    """Hold SIGINT and SIGTERM for the duration of the block, then deliver them (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = {
        sig: signal.signal(sig, lambda signum, _: caught.append(signum)) for sig in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)
        if caught:
            signal.raise_signal(caught[0])  # now handled as it would have been: KeyboardInterrupt, exit 130


class Staging:
    """The private folder beside the destination, locked for as long as this process uses it."""

    def __init__(self, dest: Path) -> None:
        self.dest = dest
        self.path = Path(tempfile.mkdtemp(prefix=PREFIX, dir=dest))
        self.tree = self.path / _TREE  # where the archive is extracted
        self._lock = -1
        try:
            self._lock = os.open(self.path / _LOCK, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            fcntl.flock(self._lock, fcntl.LOCK_EX)
            self.tree.mkdir()
            (self.path / _OLD).mkdir()
        except BaseException:
            shutil.rmtree(self.path, ignore_errors=True)
            if self._lock >= 0:
                os.close(self._lock)
            raise

    def swap(self, tops: list[str]) -> None:
        """Move each of ``tops`` from the tree into DEST, what was there into old/; all or nothing."""
        with deferred_signals(), contextlib.ExitStack() as closing:
            # DEST's own flock (no lock file in DEST): two unpacks into one folder swap in turns, never onto each other.
            held = os.open(self.dest, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            closing.callback(os.close, held)
            fcntl.flock(held, fcntl.LOCK_EX)
            present = frozenset(t for t in tops if os.path.lexists(self.dest / t))  # moved aside into old/
            try:
                _write_journal(self.path, tops, present, _SWAPPING)
            except OSError as exc:
                raise LocalFSError(f"cannot write the swap journal in {self.path}: {exc.strerror}") from exc
            moving = ""
            try:
                for top in tops:
                    moving = top
                    if top in present:
                        (self.dest / top).rename(self.path / _OLD / top)  # a link moves itself, never its target
                    (self.path / _TREE / top).rename(self.dest / top)
                fsync_dir(self.dest)
                _write_journal(self.path, tops, present, _COMMITTED)
            except BaseException as exc:
                try:
                    _roll_back(self.path, self.dest, tops, present)
                except OSError as undo:
                    raise LocalFSError(
                        f"cannot undo a partial move into {self.dest} ({undo.strerror}); the originals are kept in "
                        f"{self.path} and the next mdl unpack into {self.dest} restores them"
                    ) from exc
                if isinstance(exc, OSError):
                    raise LocalFSError(f"cannot move '{moving}' into {self.dest}: {exc.strerror}") from exc
                raise

    def close(self) -> None:
        """Remove the staging folder unless it still holds originals a swap could not put back; unlock."""
        try:
            with contextlib.suppress(OSError, ValueError):  # an unreadable journal: keep what it may guard
                if (found := _read_journal(self.path)) is None or found[2] == _COMMITTED:
                    shutil.rmtree(self.path, ignore_errors=True)
        finally:
            os.close(self._lock)


def _write_journal(staging: Path, tops: list[str], present: frozenset[str], state: str) -> None:
    doc = {"version": 1, "state": state, "tops": tops, "present": sorted(present)}
    temp = staging / (_JOURNAL + ".tmp")
    with temp.open("w", encoding="utf-8") as fh:
        json.dump(doc, fh, allow_nan=False)
        fh.flush()
        os.fsync(fh.fileno())
    temp.replace(staging / _JOURNAL)
    fsync_dir(staging)


def _read_journal(staging: Path) -> tuple[list[str], frozenset[str], str] | None:
    """The journal's top-level names, those that were present, and its state; None when absent; ValueError when it
    cannot be trusted."""
    try:
        raw = (staging / _JOURNAL).read_bytes()
    except FileNotFoundError:
        return None
    doc = json.loads(raw)
    tops, present, state = doc.get("tops"), doc.get("present"), doc.get("state")
    if not isinstance(tops, list) or not isinstance(present, list) or state not in (_SWAPPING, _COMMITTED):
        raise ValueError("malformed journal")
    if any(not isinstance(t, str) or "/" in t or name_problem(t) for t in tops) or not set(present) <= set(tops):
        raise ValueError("journal names an unsafe or unknown entry")
    return tops, frozenset(present), state


def _roll_back(staging: Path, dest: Path, tops: list[str], present: frozenset[str]) -> None:
    """Put DEST back as it was, from whatever point the swap reached; safe to run again after a crash."""
    for top in reversed(tops):
        new_in_place = not os.path.lexists(staging / _TREE / top)
        if new_in_place and os.path.lexists(dest / top):
            (dest / top).rename(staging / _TREE / top)
        if top in present and os.path.lexists(staging / _OLD / top):
            (staging / _OLD / top).rename(dest / top)
    fsync_dir(dest)
    (staging / _JOURNAL).unlink(missing_ok=True)


def recover(dest: Path, progress: Progress, *, dry_run: bool = False) -> list[tuple[Path, int]]:
    """Roll back (or finish) the swaps killed unpacks left in ``dest`` and remove their staging folders (``dry_run``:
    only name them), never one a running unpack holds; each folder handled, with the bytes it held."""
    try:
        names = [p.name for p in dest.iterdir() if p.name.startswith(PREFIX)]
    except OSError:
        return []
    handled: list[tuple[Path, int]] = []
    for name in sorted(names):
        staging = dest / name
        try:
            lock = os.open(staging / _LOCK, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            continue  # not ours, or being created right now
        try:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # a running unpack owns it
            size = 0
            for root, _, files in os.walk(staging):  # the regular files' bytes, never following a link
                for file in files:
                    with contextlib.suppress(OSError):
                        found = (Path(root) / file).lstat()
                        size += found.st_size if stat.S_ISREG(found.st_mode) else 0
            handled.append((staging, size))
            if not dry_run:
                _recover_one(staging, dest, progress)
        finally:
            os.close(lock)
    return handled


def _recover_one(staging: Path, dest: Path, progress: Progress) -> None:
    try:
        found = _read_journal(staging)
    except (OSError, ValueError) as exc:
        progress.note(f"leaving {staging} alone: its journal cannot be read ({exc})")
        return
    if found is not None:
        tops, present, state = found
        if state == _SWAPPING:
            try:
                _roll_back(staging, dest, tops, present)
            except OSError as exc:
                raise LocalFSError(
                    f"cannot restore what an interrupted unpack moved aside in {staging}: {exc.strerror}"
                ) from exc
            progress.note(f"restored {', '.join(tops)} in {dest}: an earlier unpack was interrupted mid-swap")
    shutil.rmtree(staging, ignore_errors=True)
