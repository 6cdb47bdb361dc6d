"""The destination: per-model records, partial files, locks, free space and clean-up, all under ``<dest>/.mdl``."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mdl.errors import InterruptedByUserError, LocalFSError, LockTimeoutError, UnsafePathError

if TYPE_CHECKING:
    from filelock import BaseFileLock

log = logging.getLogger("mdl.store")

RECORD_VERSION = 1
_SAFE_CHARS = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class FileRecord:
    """What mdl fetched and verified for one file (no secrets: ``source`` is redacted)."""

    path: str
    size: int
    sha256: str
    mtime_ns: int
    source: str = ""
    git_oid: str | None = None
    etag: str | None = None
    commit: str | None = None
    fetched_at: str = ""


@dataclass(frozen=True)
class ModelRecord:
    """The per-model record that lets ``list``, ``verify`` and re-runs work offline."""

    name: str
    revision: str | None = None
    commit: str | None = None
    files: dict[str, FileRecord] = field(default_factory=dict)
    updated_at: str = ""

    def to_json(self) -> dict[str, Any]:
        """The record as stored on disk."""
        return {
            "version": RECORD_VERSION,
            "name": self.name,
            "revision": self.revision,
            "commit": self.commit,
            "updated_at": self.updated_at,
            "files": {path: asdict(rec) for path, rec in sorted(self.files.items())},
        }


@dataclass(frozen=True)
class PartialFile:
    """A partial download under ``.mdl/partial`` and what it belongs to."""

    part_path: Path
    state_path: Path
    size: int
    label: str
    mtime: float


def now_iso() -> str:
    """UTC time for records."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Store:
    """Paths and records of one destination root."""

    def __init__(self, dest: Path, *, state_dir: Path | None = None) -> None:
        self.dest = dest
        self.state_dir = state_dir or dest / ".mdl"
        self._record_cache: dict[str, tuple[tuple[int, int, int], ModelRecord]] = {}

    # -- paths -------------------------------------------------------------------------------------

    def model_dir(self, model: str) -> Path:
        """``<dest>/<model>``."""
        return self.dest / model

    def final_path(self, model: str, path: str) -> Path:
        """``<dest>/<model>/<path>``, refusing anything that would land outside the model folder."""
        base = self.model_dir(model)
        target = base.joinpath(*path.split("/"))
        if not os.path.normpath(target).startswith(os.path.normpath(base) + os.sep):
            raise UnsafePathError(f"{model}: path {path!r} would land outside {base}")
        return target

    def _key(self, model: str, path: str) -> str:
        digest = hashlib.sha1(f"{model}\0{path}".encode()).hexdigest()[:16]
        tail = _SAFE_CHARS.sub("_", path.rsplit("/", 1)[-1])[-60:]
        return f"{_SAFE_CHARS.sub('_', model)}-{digest}-{tail}"

    def part_paths(self, model: str, path: str) -> tuple[Path, Path]:
        """The ``.part`` file and its resume record for one destination file."""
        key = self._key(model, path)
        folder = self.state_dir / "partial"
        return folder / f"{key}.part", folder / f"{key}.part.json"

    def lock_path(self, model: str, path: str) -> Path:
        """The lock file guarding one destination file across processes."""
        return self.state_dir / "locks" / f"{self._key(model, path)}.lock"

    def record_path(self, model: str) -> Path:
        """``.mdl/records/<model>.json``."""
        return self.state_dir / "records" / f"{model}.json"

    def ensure_dirs(self) -> None:
        """Create the destination and its state folders."""
        try:
            for sub in ("partial", "locks", "records"):
                (self.state_dir / sub).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise LocalFSError(f"cannot create {self.state_dir}: {exc.strerror or exc}") from exc

    # -- locks -------------------------------------------------------------------------------------

    def acquire_file_lock(
        self,
        model: str,
        path: str,
        *,
        timeout: float,
        on_wait: Callable[[], None] | None = None,
        cancel: threading.Event | None = None,
        shared_lock: Path | None = None,
    ) -> HeldLocks:
        """Take the per-file lock (engine rule 11); call ``on_wait()`` once if another process holds it.

        Waiting polls in short steps so that Ctrl-C (``cancel``) is noticed while another run holds the lock.
        The lock is not tied to a thread: pull hands it over to be released once the file's record is written.
        ``shared_lock`` is a second lock taken after ours: the one huggingface_hub takes for a cache blob, so
        that mdl and ``hf_hub_download`` never write the same blob at once.
        """
        held = HeldLocks([])
        deadline = time.monotonic() + timeout
        waited = False

        def wait_note() -> None:  # once, however many of the locks we wait for
            nonlocal waited
            if not waited and on_wait is not None:
                on_wait()
            waited = True

        try:
            for where in (self.lock_path(model, path), *((shared_lock,) if shared_lock else ())):
                held.locks.append(_acquire(where, f"{model}/{path}", deadline, timeout, wait_note, cancel))
        except BaseException:
            held.release()
            raise
        return held

    @contextlib.contextmanager
    def file_lock(
        self,
        model: str,
        path: str,
        *,
        timeout: float,
        on_wait: Callable[[], None] | None = None,
        cancel: threading.Event | None = None,
    ) -> Iterator[None]:
        """Hold the per-file lock for a block (see ``acquire_file_lock``)."""
        lock = self.acquire_file_lock(model, path, timeout=timeout, on_wait=on_wait, cancel=cancel)
        try:
            yield
        finally:
            lock.release()

    @contextlib.contextmanager
    def _record_lock(self, model: str) -> Iterator[None]:
        from filelock import FileLock, Timeout

        try:
            with FileLock(self.state_dir / "locks" / f"{model}.record.lock", timeout=60):
                yield
        except Timeout:
            raise LockTimeoutError(f"{model}: could not lock its record within 60s (another mdl run?)") from None

    # -- records -----------------------------------------------------------------------------------

    def read_record(self, model: str) -> ModelRecord | None:
        """The model's record, or None if absent or unreadable (then files are re-checked, never trusted).

        Parsed records are cached by the file's (mtime, size, inode): planning many files of one model reads
        the record once, yet a record another run rewrote (atomically, so a new inode) is read again.
        """
        path = self.record_path(model)
        try:
            stat = path.stat()
        except FileNotFoundError:
            return None
        except OSError:
            stat = None
        key = (stat.st_mtime_ns, stat.st_size, stat.st_ino) if stat is not None else None
        cached = self._record_cache.get(model)
        if key is not None and cached is not None and cached[0] == key:
            return cached[1]
        record = self._parse_record(model, path)
        if key is not None and record is not None:
            self._record_cache[model] = (key, record)
        return record

    def _parse_record(self, model: str, path: Path) -> ModelRecord | None:
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            files = {
                p: FileRecord(**{k: v for k, v in rec.items() if k in FileRecord.__dataclass_fields__})
                for p, rec in raw.get("files", {}).items()
            }
            return ModelRecord(
                name=model,
                revision=raw.get("revision"),
                commit=raw.get("commit"),
                files=files,
                updated_at=raw.get("updated_at", ""),
            )
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError, AttributeError) as exc:
            log.warning("ignoring unreadable record %s: %s", path, exc)
            return None

    def update_record(
        self,
        model: str,
        *,
        revision: str | None,
        commit: str | None,
        put: FileRecord | None = None,
        puts: tuple[FileRecord, ...] = (),
        remove: tuple[str, ...] = (),
    ) -> ModelRecord:
        """Read-modify-write the model's record under its lock, atomically (other runs may be writing)."""
        self.ensure_dirs()
        with self._record_lock(model):
            current = self.read_record(model) or ModelRecord(name=model)
            files = dict(current.files)
            for path in remove:
                files.pop(path, None)
            for one in (*puts, *((put,) if put is not None else ())):
                files[one.path] = one
            record = ModelRecord(
                name=model,
                revision=revision if revision is not None else current.revision,
                commit=commit if commit is not None else current.commit,
                files=files,
                updated_at=now_iso(),
            )
            target = self.record_path(model)
            tmp = target.with_name(f"{target.name}.{os.getpid()}.tmp")
            try:
                tmp.write_text(json.dumps(record.to_json(), indent=1) + "\n", encoding="utf-8")
                tmp.replace(target)
            except OSError as exc:
                with contextlib.suppress(OSError):
                    tmp.unlink()
                raise LocalFSError(f"{model}: cannot write record {target}: {exc.strerror or exc}") from exc
            return record

    # -- space and clean-up ------------------------------------------------------------------------

    def free_bytes(self) -> int:
        """Free space on the destination's filesystem (the nearest existing parent)."""
        probe = self.dest
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
        return shutil.disk_usage(probe).free

    def partials(self) -> list[PartialFile]:
        """Every partial download and stray temp file under ``.mdl/partial``."""
        folder = self.state_dir / "partial"
        if not folder.is_dir():
            return []
        found: list[PartialFile] = []
        for entry in sorted(folder.iterdir()):
            if entry.name.endswith(".part.json") or entry.name.endswith(".tmp"):
                part = entry.with_name(entry.name.removesuffix(".tmp").removesuffix(".json"))
                if entry.name.endswith(".tmp") or not part.exists():
                    stat = entry.stat()
                    found.append(PartialFile(entry, entry, stat.st_size, _label_of(entry), stat.st_mtime))
                continue
            if entry.name.endswith(".part"):
                state = entry.with_name(entry.name + ".json")
                stat = entry.stat()
                found.append(PartialFile(entry, state, stat.st_blocks * 512, _label_of(state), stat.st_mtime))
        return found

    def remove_partial(self, partial: PartialFile) -> None:
        """Delete a partial file and its resume record, unless another run holds its lock."""
        for path in {partial.part_path, partial.state_path}:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


class HeldLocks:
    """File locks held together, released together (in reverse order)."""

    def __init__(self, locks: list[BaseFileLock]) -> None:
        self.locks = locks

    def release_shared(self) -> None:
        """Release all but our own per-file lock (the blob lock shared with huggingface_hub)."""
        while len(self.locks) > 1:
            self.locks.pop().release()

    def release(self) -> None:
        """Release every lock held."""
        while self.locks:
            self.locks.pop().release()


def _acquire(
    where: Path,
    label: str,
    deadline: float,
    timeout: float,
    on_wait: Callable[[], None],
    cancel: threading.Event | None,
) -> BaseFileLock:
    from filelock import FileLock, Timeout

    try:
        where.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LocalFSError(f"cannot create {where.parent}: {exc.strerror or exc}") from exc
    lock = FileLock(where, thread_local=False)
    waited = False
    while True:
        try:
            lock.acquire(timeout=0 if not waited else min(0.5, max(0.0, deadline - time.monotonic())))
            return lock
        except Timeout:
            if cancel is not None and cancel.is_set():
                raise InterruptedByUserError(f"{label}: interrupted while waiting for a lock") from None
            if waited and time.monotonic() >= deadline:
                raise LockTimeoutError(
                    f"{label}: another mdl run holds the lock {where} (waited {timeout:g}s)",
                    hint="raise --lock-timeout, or check for a stuck mdl process",
                ) from None
            if not waited:
                on_wait()
            waited = True


def _label_of(state_path: Path) -> str:
    try:
        source = json.loads(state_path.read_text(encoding="utf-8")).get("source", "")
    except (OSError, ValueError, AttributeError):
        source = ""
    return str(source) or state_path.name


def stat_file(path: Path) -> os.stat_result | None:
    """``lstat`` of a destination file, or None if absent; a symlink or folder there is not ours."""
    try:
        return path.lstat()
    except FileNotFoundError:
        return None
    except NotADirectoryError:
        return None


def fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (POSIX: the directory entry is data too)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def hash_file(path: Path, *, git: bool = False, block: int = 8 * 1024 * 1024) -> tuple[int, str, str | None]:
    """(size, sha256, git blob sha1 if asked) of a local file, read once."""
    sha = hashlib.sha256()
    with path.open("rb", buffering=0) as handle:
        size = os.fstat(handle.fileno()).st_size
        sha1 = hashlib.sha1(b"blob %d\0" % size) if git else None
        buffer = bytearray(block)
        view = memoryview(buffer)
        total = 0
        while True:
            got = handle.readinto(buffer)
            if not got:
                break
            sha.update(view[:got])
            if sha1 is not None:
                sha1.update(view[:got])
            total += got
    return total, sha.hexdigest(), sha1.hexdigest() if sha1 is not None else None
