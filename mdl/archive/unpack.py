"""``mdl unpack``: reject hostile archives before writing a byte, extract privately, verify, then swap into place.

The swap leaves the target entirely old or entirely new, whatever happens. ``DEST/.mdl-unpack-XXXX/`` holds ``tree/``
(the extraction), ``old/`` (what the swap moved aside) and, during the swap, ``journal.json`` (the top-level names,
and which existed): with atomic renames it says how far a swap got. SIGINT/SIGTERM wait until the swap is done or
undone; after a kill -9 the next unpack into DEST rolls it back (or finishes a committed one). Originals are never
deleted before the new tree is in place."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import resource
import shutil
import signal
import stat
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, BinaryIO

from mdl.archive import zipread
from mdl.archive.zipread import DEFAULT_MAX_RATIO, MANIFEST_NAME, Entry, name_problem
from mdl.errors import ArchiveError, IntegrityError, LocalFSError, NoSpaceError, UsageError
from mdl.paths import SHA256_HEX, shown, temp_name
from mdl.progress import ArchiveProgress, Progress
from mdl.store import fsync_dir, kind_of, not_a_file, stat_file

MAX_MANIFEST_BYTES = 64 << 20
CHUNK_SIZE = 1 << 20
MAX_OPEN_FOLDERS = 64  # folder descriptors kept open while extracting (an archive may hold 100,000 folders)
STDIN, PIPE_HINT = "stdin", "mdl pack RUN -o - | mdl unpack - -d DIR"
_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
PREFIX = ".mdl-unpack-"
_LOCK, _JOURNAL, _TREE, _OLD = "lock", "journal.json", "tree", "old"
_SWAPPING, _COMMITTED = "swapping", "committed"
_DEFERRED_SIGNALS = (signal.SIGINT, signal.SIGTERM)  # held while a swap runs, delivered after


@contextlib.contextmanager
def deferred_signals() -> Iterator[None]:
    """Hold SIGINT and SIGTERM for the duration of the block, then deliver them (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = {sig: signal.signal(sig, lambda signum, _: caught.append(signum)) for sig in _DEFERRED_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)
        if caught:
            signal.raise_signal(caught[0])  # now handled as it would have been: KeyboardInterrupt, exit 130


class Staging:
    """The private folder beside the destination, locked while in use; its tree is made never through a link."""

    def __init__(self, dest: Path) -> None:
        self.dest = dest
        self.path = Path(tempfile.mkdtemp(prefix=PREFIX, dir=dest))
        self._lock = -1
        self._fds: OrderedDict[str, int] = OrderedDict()  # the tree's folders, least recently used first
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        # A small share of what the process may open (`ulimit -n`), never fewer than the two in use at once.
        self._max_open = max(2, min(MAX_OPEN_FOLDERS, soft // 8 if soft > 0 else MAX_OPEN_FOLDERS))
        try:
            # Locked before it has its name: another unpack's recover() takes an unlocked staging for abandoned.
            fresh = self.path / f"{_LOCK}.new"
            self._lock = os.open(fresh, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            fcntl.flock(self._lock, fcntl.LOCK_EX)
            fresh.replace(self.path / _LOCK)
            (self.path / _TREE).mkdir()
            (self.path / _OLD).mkdir()
            self._root = os.open(self.path / _TREE, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except BaseException:
            shutil.rmtree(self.path, ignore_errors=True)
            if self._lock >= 0:
                os.close(self._lock)
            raise

    def folder(self, name: str) -> int:
        """A descriptor for folder ``name`` (relative), created 0755 as needed; valid until the next call."""
        if not name:
            return self._root
        if name in self._fds:
            self._fds.move_to_end(name)
            return self._fds[name]
        parent, _, base = name.rpartition("/")
        parent_fd = self.folder(parent)
        with contextlib.suppress(FileExistsError):  # made earlier for a sibling; O_NOFOLLOW below refuses a non-folder
            os.mkdir(base, 0o755, dir_fd=parent_fd)
        fd = os.open(base, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent_fd)
        self._fds[name] = fd
        while len(self._fds) > self._max_open:
            os.close(self._fds.popitem(last=False)[1])  # never the one just opened, nor its parent
        return fd

    def extract(
        self, fh: BinaryIO, entries: list[Entry], hashes: dict[str, str], progress: Progress
    ) -> list[UnpackedFile]:
        """Write every entry into the tree, verifying size, CRC and the manifest's sha256 (``hashes``)."""
        done: list[UnpackedFile] = []
        for entry in entries:
            if entry.is_dir:
                self.folder(entry.name)
                continue
            progress.start(entry.name, label=entry.name, total=entry.file_size, path=entry.name)
            digest = hashlib.sha256()
            parent, _, base = entry.name.rpartition("/")
            with os.fdopen(os.open(base, _NEW_FILE, 0o644, dir_fd=self.folder(parent)), "wb") as dst:
                for chunk in zipread.read_data(fh, entry, CHUNK_SIZE):
                    digest.update(chunk)
                    dst.write(chunk)
                    progress.advance(entry.name, len(chunk))
                dst.flush()
                os.fsync(dst.fileno())  # the renames into place must not expose files a power cut would empty
            progress.finish(entry.name, ok=True)
            if hashes.get(entry.name) not in (None, digest.hexdigest()):
                raise IntegrityError(f"entry {shown(entry.name)} does not match the sha256 in the manifest")
            done.append(UnpackedFile(entry.name, entry.file_size, digest.hexdigest()))
        return done

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
            for fd in (*self._fds.values(), self._root):
                os.close(fd)
            with contextlib.suppress(OSError, ValueError):  # an unreadable journal: keep what it may guard
                if (found := _read_journal(self.path)) is None or found[2] == _COMMITTED:
                    shutil.rmtree(self.path, ignore_errors=True)
        finally:
            os.close(self._lock)


def _write_journal(staging: Path, tops: list[str], present: frozenset[str], state: str) -> None:
    temp = staging / (_JOURNAL + ".tmp")
    with temp.open("w", encoding="utf-8") as fh:
        json.dump({"version": 1, "state": state, "tops": tops, "present": sorted(present)}, fh, allow_nan=False)
        fh.flush()
        os.fsync(fh.fileno())
    temp.replace(staging / _JOURNAL)
    fsync_dir(staging)


def _read_journal(staging: Path) -> tuple[list[str], frozenset[str], str] | None:
    """The journal's names, those present, and its state; None when absent; ValueError when it cannot be trusted."""
    try:
        doc = json.loads((staging / _JOURNAL).read_bytes())
    except FileNotFoundError:
        return None
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
        stagings = sorted(p for p in dest.iterdir() if p.name.startswith(PREFIX))
    except OSError:
        return []
    handled: list[tuple[Path, int]] = []
    for staging in stagings:
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


@dataclass(frozen=True)
class UnpackedFile:
    """One extracted file, its path relative to the destination as named in the archive."""

    path: str
    size: int
    sha256: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class UnpackResult:
    """What ``mdl unpack`` extracted, where, and whether a manifest vouched for it."""

    dest: str
    files: tuple[UnpackedFile, ...]
    folders: tuple[str, ...] = ()  # the archive's folder entries ("a/b/"), made even when empty
    manifest: bool = False
    checkpoint: str | None = None
    top_level: tuple[str, ...] = ()
    replaced: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:  # the fields in order, the tuples as lists
        doc = asdict(self)
        return doc | {key: list(doc[key]) for key in ("files", "folders", "top_level", "replaced")}


def _read_manifest(fh: BinaryIO, entries: list[Entry]) -> tuple[dict[str, str], str | None] | None:
    """The mdl manifest of a single-folder archive, checked against the entries, or None when absent."""
    if len(tops := {e.name.split("/", 1)[0] for e in entries}) != 1:
        return None
    top = next(iter(tops))
    if (entry := next((e for e in entries if e.name == f"{top}/{MANIFEST_NAME}" and not e.is_dir), None)) is None:
        return None
    if entry.file_size > MAX_MANIFEST_BYTES:
        raise ArchiveError(f"{shown(entry.name)} is too large to be a manifest")
    try:
        doc = json.loads(b"".join(zipread.read_data(fh, entry, CHUNK_SIZE)))
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise ArchiveError(f"{shown(entry.name)} is not valid JSON: {str(exc)[:200]}") from None
    listed: dict[str, tuple[int, str]] = {}
    files = doc.get("files") if isinstance(doc, dict) else None
    if not isinstance(files, list):
        raise ArchiveError(f"{shown(entry.name)} has no files list")
    for item in files:
        ok = isinstance(item, dict) and isinstance(item.get("path"), str) and type(item.get("size")) is int
        if not ok or not SHA256_HEX.fullmatch(str(item.get("sha256"))) or f"{top}/{item['path']}" in listed:
            raise ArchiveError(f"{shown(entry.name)} has a malformed or duplicate file record: {repr(item)[:200]}")
        listed[f"{top}/{item['path']}"] = (item["size"], item["sha256"])
    present = {e.name: e for e in entries if not e.is_dir and e is not entry}
    for name in present:
        if name not in listed:
            raise ArchiveError(f"entry {shown(name)} is not listed in the manifest")
    for name, (size, _) in listed.items():
        if name not in present:
            raise IntegrityError(f"the manifest lists {shown(name)} but the archive has no such entry")
        if present[name].file_size != size:
            raise IntegrityError(
                f"entry {shown(name)} declares {present[name].file_size} bytes, the manifest says {size}"
            )
    checkpoint = doc.get("checkpoint")
    return {name: sha for name, (_, sha) in listed.items()}, checkpoint if isinstance(checkpoint, str) else None


def unpack_archive(
    archive: Path,
    *,
    dest: Path | None,
    force: bool,
    progress: Progress,
    cwd: Path,
    max_ratio: float = DEFAULT_MAX_RATIO,
) -> UnpackResult:
    """Validate every entry, extract into a private temp folder, verify, then swap into ``dest``."""
    dest_dir = cwd / dest if dest is not None else cwd
    if not isinstance(progress, ArchiveProgress):  # every entry's bar names the archive (model=) for programs
        progress = ArchiveProgress(progress, archive.name)
    try:
        fd = os.open(cwd / archive, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)  # a FIFO must not hang us
    except FileNotFoundError as exc:
        raise UsageError(f"archive not found: {archive}") from exc
    except OSError as exc:
        raise LocalFSError(f"cannot read {archive}: {exc.strerror}") from exc
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise UsageError(f"{archive} is not a regular file")
    with os.fdopen(fd, "rb") as fh:
        try:
            return _unpack(fh, dest_dir, force=force, progress=progress, max_ratio=max_ratio)
        except OSError as exc:  # reading the archive, or looking at the destination
            raise LocalFSError(f"{exc.filename or archive}: {exc.strerror}") from exc


def _unpack(fh: BinaryIO, dest_dir: Path, *, force: bool, progress: Progress, max_ratio: float) -> UnpackResult:
    if (kind := not_a_file(dest_dir)) not in (None, "a folder"):
        raise LocalFSError(f"{dest_dir} is {kind}, not a folder: cannot unpack into it")
    if dest_dir.is_dir():
        recover(dest_dir, progress)  # an earlier unpack killed mid-swap: put its originals back first
    entries, central_start = zipread.read_index(fh, max_entries=zipread.MAX_ENTRIES)
    for entry in entries:
        zipread.check_entry(entry)
    zipread.check_names(entries)
    entries = zipread.check_layout(fh, entries, central_start)
    total = zipread.check_limits(entries, max_ratio)
    zipread.check_lengths(entries, dest_dir)
    manifest = _read_manifest(fh, entries)
    tops = list(dict.fromkeys(e.name.split("/", 1)[0] for e in entries))
    try:
        dest_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LocalFSError(f"cannot create {dest_dir}: {exc.strerror}") from exc
    occupied: list[str] = []  # top-level names already there: refused unless --force (an empty folder is fine)
    for top in tops:
        target = dest_dir / top
        st = stat_file(target)
        if st is None or (stat.S_ISDIR(st.st_mode) and not any(target.iterdir())):
            continue
        kind = kind_of(st)  # from lstat: a FIFO or device is never opened; --force moves it aside like a file
        if kind not in (None, "a folder") and not force:
            raise LocalFSError(f"{target} is {kind}, not a file or folder", hint="use --force to replace it")
        if not force:
            what = "a symlink" if stat.S_ISLNK(st.st_mode) else "not empty" if stat.S_ISDIR(st.st_mode) else "a file"
            raise UsageError(f"'{target}' already exists and is {what}", hint="use --force to replace it")
        occupied.append(top)
    if shutil.disk_usage(dest_dir).free < total + (1 << 20):
        raise NoSpaceError(f"not enough space in {dest_dir} for {total} bytes")

    progress.begin(total_bytes=total, files=sum(not e.is_dir for e in entries))
    try:
        staging = Staging(dest_dir)
    except OSError as exc:
        raise LocalFSError(f"cannot create a temporary folder in {dest_dir}: {exc.strerror}") from exc
    try:
        try:
            files = staging.extract(fh, entries, manifest[0] if manifest else {}, progress)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise NoSpaceError(f"no space left in {dest_dir} while extracting") from exc
            raise LocalFSError(f"cannot extract into {dest_dir}: {exc.strerror}") from exc
        staging.swap(tops)
    finally:
        staging.close()
    return UnpackResult(
        dest=str(dest_dir),
        files=tuple(files),
        manifest=manifest is not None,
        checkpoint=manifest[1] if manifest else None,
        top_level=tuple(tops),
        replaced=tuple(occupied),
        folders=tuple(e.name + "/" for e in entries if e.is_dir),
    )


def unpack_stream(
    stream: BinaryIO,
    *,
    dest: Path | None,
    force: bool,
    progress: Progress,
    cwd: Path,
    max_ratio: float = DEFAULT_MAX_RATIO,
) -> UnpackResult:
    """``mdl unpack -``: a zip's index is at its end, so the stream is spooled to a hidden file on the destination's
    filesystem (in DIR, else its nearest existing folder: none is created before the archive is known to be good),
    unpacked as :func:`unpack_archive` does a file, and removed whatever happens. A terminal is refused (exit 2)."""
    with contextlib.suppress(AttributeError, ValueError):  # a closed or odd stream: reading it says what is wrong
        if stream.isatty():
            raise UsageError("reading an archive from stdin needs a pipe", hint=PIPE_HINT)
    spool = zipread.nearest_folder(cwd / dest if dest is not None else cwd) / temp_name("stdin.zip")
    named = ArchiveProgress(progress, None)
    try:
        fd = os.open(spool, _NEW_FILE, 0o600)
    except OSError as exc:
        raise LocalFSError(f"cannot spool stdin into {spool.parent}: {exc.strerror}") from exc
    try:
        named.begin(total_bytes=None, files=1)
        named.start(STDIN, label="reading stdin", total=None)
        try:
            with os.fdopen(fd, "wb") as out:
                while chunk := stream.read(CHUNK_SIZE):
                    out.write(chunk)
                    named.advance(STDIN, len(chunk))
                size = out.tell()
        except OSError as exc:
            named.finish(STDIN, ok=False, message=str(exc.strerror or exc))
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise NoSpaceError(f"no space left in {spool.parent} while reading the archive from stdin") from exc
            raise LocalFSError(f"cannot spool stdin into {spool.parent}: {exc.strerror or exc}") from exc
        named.finish(STDIN, ok=True)
        if size == 0:
            raise UsageError("stdin is empty: expected a zip archive", hint=PIPE_HINT)
        try:
            return unpack_archive(spool, dest=dest, force=force, progress=named, cwd=cwd, max_ratio=max_ratio)
        except ArchiveError as exc:
            exc.message = f"{STDIN}: {exc.message}"
            exc.args = (exc.message,)
            raise
    finally:
        spool.unlink(missing_ok=True)
