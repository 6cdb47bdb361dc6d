"""unpack's staging: a private folder beside the destination, and the swap that moves its tree into
place, all or nothing.

The swap leaves the target entirely old or entirely new, whatever happens.
``DEST/.mdl-unpack-<token>/`` holds ``tree/`` (the extraction), ``old/`` (what the swap moved aside)
and, during the swap, ``journal.json`` (each top-level name with the identity of the new entry and
of the original): with atomic renames it says how far a swap got. SIGINT/SIGTERM wait until the swap
is done or undone; after a kill -9 the next unpack into DEST (or ``mdl clean``) rolls it back, or
finishes a committed one. Originals are never deleted before the new tree is in place.

Provenance, not names: a staging is one this code made only if ``DEST/.mdl/unpack/<token>.json`` (a
regular file with one link, the running user's, read without following links) names it by its random
token and its folder's and lock's ``st_dev``/``st_ino``, and its journal carries the same token.
Anything else that looks like a staging (an archive cannot carry one: the name is reserved) is left
alone, and what a roll-back renames is matched by identity first."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import resource
import secrets
import shutil
import signal
import stat
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from mdl.archive.zipread import MAX_CENTRAL_BYTES
from mdl.errors import STOPS, LocalFSError, LockTimeoutError, MdlError, OutsideJSONError
from mdl.outsidejson import read_json
from mdl.paths import STAGING_PREFIX, TEMP_SUFFIX, name_problem, quoted, shown_name
from mdl.progress import Progress
from mdl.store import confined
from mdl.store.filelocks import flock_once
from mdl.wait import Wait

# folder descriptors kept open while extracting (an archive may hold 100,000 folders)
MAX_OPEN_FOLDERS = 64
NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | confined.NO_LINK
_DIR = os.O_RDONLY | os.O_DIRECTORY | confined.NO_LINK
RECORDS = Path(".mdl") / "unpack"  # under DEST: one record per staging, named after its token
_TOKEN = re.compile("[0-9a-f]{32}")
MAX_RECORD_BYTES = 4096
# ``unpack -``'s copy of stdin (``paths.temp_name("stdin.zip")``), locked while its unpack runs; one
# a kill left is removed by the next unpack or clean there once this old (never one just made,
# before its lock)
SPOOL = re.compile(rf"\.stdin\.zip\.[0-9a-f]{{16}}{re.escape(TEMP_SUFFIX)}")
SPOOL_AGE = 60.0
# the top-level names come from a central directory, twice its size at most
MAX_JOURNAL_BYTES = 2 * MAX_CENTRAL_BYTES
_LOCK, _JOURNAL, _TREE, _OLD = "lock", "journal.json", "tree", "old"
_SWAPPING, _COMMITTED = "swapping", "committed"
Identity = tuple[int, int]  # st_dev, st_ino


@contextlib.contextmanager
def deferred_signals() -> Iterator[None]:
    """Hold the signals that stop a command (Ctrl-C, SIGTERM, SIGHUP) for the duration of the
    block, then deliver them (main thread only; one ignored before stays ignored).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = {sig: signal.signal(sig, lambda signum, _: caught.append(signum)) for sig in STOPS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)
        for signum in caught:  # each as it would have been: KeyboardInterrupt, exit 130
            signal.raise_signal(signum)  # (one ignored is a no-op: the next is heard)


def _identity(found: os.stat_result) -> Identity:
    return found.st_dev, found.st_ino


def _lstat(name: str, dir_fd: int) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def _open_dir(name: str, dir_fd: int) -> int:
    return os.open(name, _DIR, dir_fd=dir_fd)


@dataclass(frozen=True)
class Top:
    """One top-level name a swap moves, with the identity of the new entry and of the original it
    moves aside.
    """

    name: str
    new: Identity
    old: Identity | None


def _pair(value: object) -> Identity:
    if (
        not isinstance(value, list)
        or len(value) != 2
        or not all(type(v) is int and v >= 0 for v in value)
    ):
        raise ValueError("malformed identity")
    return value[0], value[1]


# seconds another unpack's swap into the same folder is waited for: a swap is renames, so one
# held longer is a process stopped there
SWAP_WAIT, SWAP_POLL = 60.0, 0.05


def _hold(dest_fd: int, dest: Path) -> None:
    """DEST's flock, taken within ``SWAP_WAIT`` (exit 7 naming DEST after it); a Ctrl-C is
    heard while it waits."""
    wait = Wait.within(SWAP_WAIT)
    while not flock_once(dest_fd):
        if not wait.pause(SWAP_POLL):
            raise LockTimeoutError(
                f"{shown_name(dest)}: another unpack is swapping files into it (waited"
                f" {SWAP_WAIT:g}s)",
                hint="check that process",
            )


class Staging:
    """The private folder beside the destination, locked while in use and recorded under
    ``DEST/.mdl/unpack/``; its tree is made never through a link, and everything in it is reached
    from its own descriptor."""

    def __init__(self, dest: Path) -> None:
        self.dest, self.token = dest, secrets.token_hex(16)
        self.path = dest / f"{STAGING_PREFIX}{self.token}"
        self.record = dest / RECORDS / f"{self.token}.json"
        self._dest_fd = self._fd = self._lock = self._root = -1
        # the tree's folders, least recently used first
        self._fds: OrderedDict[str, int] = OrderedDict()
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        # A small share of what the process may open (`ulimit -n`), never fewer than the two in use
        # at once.
        self._max_open = max(2, min(MAX_OPEN_FOLDERS, soft // 8 if soft > 0 else MAX_OPEN_FOLDERS))
        made = False
        try:
            # the user's: may be a link
            self._dest_fd = os.open(dest, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            os.mkdir(self.path.name, 0o700, dir_fd=self._dest_fd)
            made = True
            self._fd = _open_dir(self.path.name, self._dest_fd)
            self._lock = os.open(
                _LOCK, os.O_RDWR | os.O_CREAT | os.O_EXCL | confined.NO_LINK, 0o600, dir_fd=self._fd
            )
            fcntl.flock(self._lock, fcntl.LOCK_EX)
            for sub in (_TREE, _OLD):
                os.mkdir(sub, 0o700, dir_fd=self._fd)
            self._root = _open_dir(_TREE, self._fd)
            ids = {"folder": _identity(os.fstat(self._fd)), "lock": _identity(os.fstat(self._lock))}
            doc = {
                "version": 1,
                "token": self.token,
                **{key: list(value) for key, value in ids.items()},
            }
            # The record comes last: recover() acts only on a staging a record names, and its lock
            # is held by now.
            confined.write_atomic(dest, self.record, json.dumps(doc).encode())
        except BaseException:
            self._close_fds()
            if made:
                shutil.rmtree(self.path.name, ignore_errors=True, dir_fd=self._dest_fd)
            self._close_own()
            raise

    def folder(self, name: str) -> int:
        """A descriptor for folder ``name`` (relative), created 0755 as needed; valid until the
        next call.
        """
        if not name:
            return self._root
        if name in self._fds:
            self._fds.move_to_end(name)
            return self._fds[name]
        parent, _, base = name.rpartition("/")
        parent_fd = self.folder(parent)
        # made earlier for a sibling; O_NOFOLLOW below refuses a non-folder
        with contextlib.suppress(FileExistsError):
            os.mkdir(base, 0o755, dir_fd=parent_fd)
        self._fds[name] = fd = os.open(base, _DIR, dir_fd=parent_fd)
        while len(self._fds) > self._max_open:
            os.close(self._fds.popitem(last=False)[1])  # never the one just opened, nor its parent
        return fd

    def swap(self, names: list[str], *, check: Callable[[], object] | None = None) -> None:
        """Move each of ``names`` from the tree into DEST, what was there into old/; all or
        nothing; ``check`` first, once DEST is held (what it raises ends the swap before a move).
        """
        # DEST's own flock (no lock file in DEST): two unpacks into one folder swap in turns,
        # never onto each other; taken before signals wait, so a Ctrl-C is heard while it waits
        _hold(self._dest_fd, self.dest)
        try:
            with deferred_signals():
                if check is not None:
                    check()
                self._moved(names)
        finally:
            fcntl.flock(self._dest_fd, fcntl.LOCK_UN)

    def _moved(self, names: list[str]) -> None:
        """The swap's moves, DEST held and signals waiting: all or nothing."""
        old = _open_dir(_OLD, self._fd)
        try:
            tops = []
            for name in names:
                new = os.stat(name, dir_fd=self._root, follow_symlinks=False)
                there = _lstat(name, self._dest_fd)
                tops.append(Top(name, _identity(new), None if there is None else _identity(there)))
            try:
                _write_journal(self._fd, self.token, tops, _SWAPPING)
            except OSError as exc:
                raise LocalFSError(
                    f"cannot write the swap journal in {shown_name(self.path)}: {exc.strerror}"
                ) from exc
            moving = ""
            try:
                for top in tops:
                    moving = top.name
                    if top.old is not None:  # a link moves itself, never its target
                        os.rename(top.name, top.name, src_dir_fd=self._dest_fd, dst_dir_fd=old)
                    os.rename(top.name, top.name, src_dir_fd=self._root, dst_dir_fd=self._dest_fd)
                os.fsync(self._dest_fd)
                _write_journal(self._fd, self.token, tops, _COMMITTED)
            except BaseException as exc:
                try:
                    kept = _roll_back(self._dest_fd, self._fd, tops)
                except OSError as undo:
                    kept = [f"{shown_name(moving)} ({undo.strerror})"]
                if kept:
                    raise LocalFSError(
                        f"cannot undo a partial move into {shown_name(self.dest)}"
                        f" ({', '.join(kept)}); the originals are kept in"
                        f" {shown_name(self.path)} and the next mdl unpack into"
                        f" {shown_name(self.dest)} restores them"
                    ) from exc
                if isinstance(exc, OSError):
                    raise LocalFSError(
                        f"cannot move {quoted(moving)} into {quoted(self.dest)}: {exc.strerror}"
                    ) from exc
                raise
        finally:
            os.close(old)

    def _close_fds(self) -> None:
        for fd in (*self._fds.values(), self._root):
            if fd >= 0:
                os.close(fd)
        self._fds.clear()
        self._root = -1

    def _close_own(self) -> None:
        for fd in (self._lock, self._fd, self._dest_fd):
            if fd >= 0:
                os.close(fd)
        self._lock = self._fd = self._dest_fd = -1

    def close(self) -> None:
        """Remove the staging folder and its record unless it still holds originals a swap could
        not put back.
        """
        try:
            self._close_fds()
            # an unreadable journal: keep what it may guard
            with contextlib.suppress(OSError, ValueError):
                if (found := _read_journal(self._fd, self.token)) is None or found[0] == _COMMITTED:
                    _discard(self.dest, self._dest_fd, self._fd, self.token)
        finally:
            self._close_own()


def _write_journal(staging_fd: int, token: str, tops: list[Top], state: str) -> None:
    """The journal, replaced atomically (``os.replace``) from a fresh file: never written through
    a link.
    """
    doc = {"version": 2, "token": token, "state": state, "tops": [asdict(top) for top in tops]}
    temp = f"{_JOURNAL}.{secrets.token_hex(8)}.tmp"
    with os.fdopen(os.open(temp, NEW_FILE, 0o600, dir_fd=staging_fd), "wb") as fh:
        fh.write(json.dumps(doc, allow_nan=False).encode())
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(temp, _JOURNAL, src_dir_fd=staging_fd, dst_dir_fd=staging_fd)
    os.fsync(staging_fd)


def _read_journal(staging_fd: int, token: str) -> tuple[str, list[Top]] | None:
    """The journal's state and names; None when absent; ValueError when it is not this staging's
    or is not trusted.
    """
    # a file mdl made (confined.not_own, by lstat and fstat of one inode), else OSError; never
    # through a link
    try:
        with os.fdopen(confined.open_entry(staging_fd, Path(_JOURNAL), os.O_RDONLY), "rb") as fh:
            data = fh.read(MAX_JOURNAL_BYTES + 1)
    except FileNotFoundError:
        return None
    try:
        doc = read_json(data, source=f"its {_JOURNAL}", limit=MAX_JOURNAL_BYTES)
    except OutsideJSONError as exc:
        raise ValueError(exc.message) from None

    if not isinstance(doc, dict) or not secrets.compare_digest(str(doc.get("token")), token):
        raise ValueError("its journal is not this staging's own (no matching token)")
    state, listed = doc.get("state"), doc.get("tops")
    if state not in (_SWAPPING, _COMMITTED) or not isinstance(listed, list):
        raise ValueError("malformed journal")
    return state, [_journal_top(item) for item in listed]


def _journal_top(item: object) -> Top:
    """One top-level name of a journal; ValueError when it is malformed or not a safe name."""
    if not isinstance(item, dict) or not _safe_top_name(item.get("name")):
        raise ValueError("the journal names an unsafe entry")
    old = item.get("old")
    return Top(item["name"], _pair(item.get("new")), None if old is None else _pair(old))


def _safe_top_name(name: object) -> bool:
    """Whether a journal's name is one plain name an archive could hold at its top."""
    return isinstance(name, str) and "/" not in name and not name_problem(name)


def _roll_back(dest_fd: int, staging_fd: int, tops: list[Top]) -> list[str]:
    """Put DEST back as it was, from whatever point the swap reached; safe to run again after a
    crash. Only entries whose identity the journal recorded are moved, and an original never onto
    something new in its place: the names that could not be restored (kept in old/) are returned."""
    tree, old = _open_dir(_TREE, staging_fd), _open_dir(_OLD, staging_fd)
    kept: list[str] = []
    try:
        for top in reversed(tops):
            here = _lstat(top.name, dest_fd)
            if here is not None and _identity(here) == top.new and _lstat(top.name, tree) is None:
                os.rename(top.name, top.name, src_dir_fd=dest_fd, dst_dir_fd=tree)
                here = None
            if top.old is not None and (aside := _lstat(top.name, old)) is not None:
                if here is None and _identity(aside) == top.old:
                    os.rename(top.name, top.name, src_dir_fd=old, dst_dir_fd=dest_fd)
                else:
                    kept.append(top.name)
        os.fsync(dest_fd)
        if not kept:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(_JOURNAL, dir_fd=staging_fd)
    finally:
        os.close(tree)
        os.close(old)
    return kept


def _discard(dest: Path, dest_fd: int, staging_fd: int, token: str) -> None:
    """Remove the staging (if the name still holds the folder ``staging_fd`` is), then its
    record.
    """
    name = f"{STAGING_PREFIX}{token}"
    found = _lstat(name, dest_fd)
    if (
        found is not None
        and stat.S_ISDIR(found.st_mode)
        and _identity(found) == _identity(os.fstat(staging_fd))
    ):
        # by descriptors, never following a link
        shutil.rmtree(name, ignore_errors=True, dir_fd=dest_fd)
    _forget(dest, token)


def _forget(dest: Path, token: str) -> None:
    """Remove a staging's record, and mdl's folders it leaves empty (DEST ends as the archive
    made it).
    """
    confined.unlink(dest, dest / RECORDS / f"{token}.json")
    for folder in (dest / RECORDS, dest / RECORDS.parent):
        confined.rmdir_empty(dest, folder)


def _staging_size(staging_fd: int) -> int:
    """The bytes of the regular files in a staging, never following a link."""
    size = 0
    for _, _, files, root_fd in os.fwalk(".", dir_fd=staging_fd):
        for file in files:
            if (found := _lstat(file, root_fd)) is not None and stat.S_ISREG(found.st_mode):
                size += found.st_size
    return size


def recover(dest: Path, progress: Progress, *, dry_run: bool = False) -> list[tuple[Path, int]]:
    """Roll back (or finish) the swaps killed unpacks left in ``dest`` and remove their staging
    folders (``dry_run``: only name them), never one a running unpack holds; each folder handled,
    with the bytes it held. Only stagings a record under ``dest/.mdl/unpack/`` names are touched; a
    lookalike is named in a note and left alone."""
    try:
        dest_fd = os.open(dest, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return []
    handled: list[tuple[Path, int]] = []
    try:
        try:
            records = confined.entries(dest, dest / RECORDS)
        except (OSError, MdlError) as exc:
            progress.note(f"leaving unpack's staging folders in {shown_name(dest)} alone: {exc}")
            return []
        named = set()
        for name, _ in records:
            if name.endswith(".json") and _TOKEN.fullmatch(token := name.removesuffix(".json")):
                named.add(f"{STAGING_PREFIX}{token}")
                if (
                    found := _recover_staging(dest, dest_fd, token, progress, dry_run=dry_run)
                ) is not None:
                    handled.append(found)
        for name in sorted(os.listdir(dest_fd)):  # noqa: PTH208 (a descriptor: no Path for it)
            if name.startswith(STAGING_PREFIX) and name not in named:
                progress.note(
                    f"leaving {shown_name(dest / name)} alone: it looks like unpack's staging, but"
                    " no unpack recorded it"
                )
    finally:
        os.close(dest_fd)
    return handled


def stale_spools(dest: Path, *, dry_run: bool = False) -> list[tuple[Path, int]]:
    """The copies of stdin killed ``unpack -`` runs left in ``dest`` (``SPOOL``: this user's
    regular files, no running unpack's lock on them, older than ``SPOOL_AGE``), removed unless
    ``dry_run``; each with its size."""
    try:  # (a link to a folder is one: as ``recover`` opens it)
        dest_fd = os.open(dest, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return []
    found: list[tuple[Path, int]] = []
    try:
        for name in sorted(os.listdir(dest_fd)):  # noqa: PTH208 (a descriptor: no Path for it)
            if SPOOL.fullmatch(name) and (size := _stale_spool(dest_fd, name, dry_run)) is not None:
                found.append((dest / name, size))
    finally:
        os.close(dest_fd)
    return found


def _stale_spool(dest_fd: int, name: str, dry_run: bool) -> int | None:
    """The size of spool ``name`` if it is stale (then removed unless ``dry_run``), else None."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NONBLOCK | confined.NO_LINK, dir_fd=dest_fd)
    except OSError:
        return None
    try:
        held = os.fstat(fd)
        if not stat.S_ISREG(held.st_mode) or held.st_uid != os.getuid():
            return None
        if time.time() - held.st_mtime < SPOOL_AGE:
            return None
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # BlockingIOError: a running unpack's
        now = _lstat(name, dest_fd)
        if not dry_run and now is not None and _identity(now) == _identity(held):
            os.unlink(name, dir_fd=dest_fd)
        return held.st_size
    except OSError:
        return None
    finally:
        os.close(fd)


def _recover_staging(
    dest: Path, dest_fd: int, token: str, progress: Progress, *, dry_run: bool
) -> tuple[Path, int] | None:
    """Finish one recorded staging (or only measure it: ``dry_run``) if its record, folder and lock
    are mdl's and no running unpack holds it; the folder handled with its size, or None."""
    record, staging = dest / RECORDS / f"{token}.json", dest / f"{STAGING_PREFIX}{token}"
    with contextlib.ExitStack() as closing:
        try:
            data = confined.read_bytes(dest, record, limit=MAX_RECORD_BYTES)
            doc = read_json(data, source=str(record), limit=MAX_RECORD_BYTES)
            if not isinstance(doc, dict) or doc.get("token") != token:
                raise ValueError(f"{shown_name(record)} is not a staging's record")
            folder_id, lock_id = _pair(doc.get("folder")), _pair(doc.get("lock"))
            try:
                staging_fd = _open_dir(staging.name, dest_fd)
            # the staging was removed, its record not yet: the record goes too
            except FileNotFoundError:
                if not dry_run:
                    _forget(dest, token)
                return None
            closing.callback(os.close, staging_fd)
            if _identity(os.fstat(staging_fd)) != folder_id:
                raise ValueError(f"{shown_name(staging)} is not the folder its record names")
            try:  # a file mdl made, or OSError
                lock = confined.open_entry(staging_fd, staging / _LOCK, os.O_RDWR)
            except FileNotFoundError:  # the record names it: a discard went as far as it (a kill)
                return _discarded(dest, dest_fd, staging_fd, token, dry_run=dry_run)
            closing.callback(os.close, lock)
            if _identity(os.fstat(lock)) != lock_id:
                raise ValueError(f"{shown_name(staging)}'s lock is not the one its record names")
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except (FileNotFoundError, BlockingIOError):
            return None  # a running unpack owns it, or is removing it right now
        except (OSError, ValueError, MdlError) as exc:
            progress.note(f"leaving {shown_name(staging)} alone: {exc}")
            return None
        try:
            journal = _read_journal(staging_fd, token)
        except (OSError, ValueError) as exc:
            progress.note(
                f"leaving {shown_name(staging)} alone: its journal cannot be trusted ({exc})"
            )
            return None
        size = _staging_size(staging_fd)
        if not dry_run and not _recover_one(dest, dest_fd, staging_fd, token, journal, progress):
            return None
        return staging, size


def _discarded(
    dest: Path, dest_fd: int, staging_fd: int, token: str, *, dry_run: bool
) -> tuple[Path, int]:
    """A recorded staging whose lock is gone: only a discard removes it (the record was written
    after it), and one stopped there (a kill -9 in its ``rmtree``) leaves the rest, moved-aside
    originals of a swap that was done: the discard finished (or only measured: ``dry_run``). A
    journal still saying a swap is under way is no discard's: ValueError (left alone)."""
    journal = _read_journal(staging_fd, token)
    if journal is not None and journal[0] == _SWAPPING:
        raise ValueError("its lock is gone, and its journal says a swap is under way")
    staging, size = dest / f"{STAGING_PREFIX}{token}", _staging_size(staging_fd)
    if not dry_run:
        _discard(dest, dest_fd, staging_fd, token)
    return staging, size


def _recover_one(
    dest: Path,
    dest_fd: int,
    staging_fd: int,
    token: str,
    journal: tuple[str, list[Top]] | None,
    progress: Progress,
) -> bool:
    """Roll back a swap the journal says was under way (a committed one is done), then remove the
    staging and its record; False when an original cannot be put back (then both stay, and the note
    says why)."""
    staging = dest / f"{STAGING_PREFIX}{token}"
    if journal is not None and journal[0] == _SWAPPING:
        try:
            # as a swap takes it: never while another unpack swaps into DEST
            fcntl.flock(dest_fd, fcntl.LOCK_EX)
            try:
                kept = _roll_back(dest_fd, staging_fd, journal[1])
            finally:
                fcntl.flock(dest_fd, fcntl.LOCK_UN)
        except OSError as exc:
            raise LocalFSError(
                f"cannot restore what an interrupted unpack moved aside in {shown_name(staging)}:"
                f" {exc.strerror}"
            ) from exc
        if kept:
            progress.note(
                f"leaving {shown_name(staging)} alone: {', '.join(kept)} in {shown_name(dest)} are"
                " not what the unpack left there"
            )
            return False
        progress.note(
            f"restored {', '.join(t.name for t in journal[1])} in {shown_name(dest)}: an earlier"
            " unpack was interrupted"
        )
    _discard(dest, dest_fd, staging_fd, token)
    return True
