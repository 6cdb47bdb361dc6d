"""The destination: per-model records, partial files, locks, free space and clean-up, all under ``<dest>/.mdl``."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from mdl.errors import LocalFSError, UnsafePathError
from mdl.store import filesystem
from mdl.store.locks import HeldLocks, acquire_locks, record_lock
from mdl.store.records import FileRecord, ModelRecord, merge_record, parse_record

_SAFE_CHARS = re.compile(r"[^A-Za-z0-9._-]+")
_KEY_MODEL_CHARS = 100


def key_prefix(model: str) -> str:
    """The start of every partial and lock file name of ``model`` under ``.mdl/``."""
    return _SAFE_CHARS.sub("_", model)[:_KEY_MODEL_CHARS]


@dataclass(frozen=True)
class PartialFile:
    """A partial download under ``.mdl/partial`` and what it belongs to."""

    part_path: Path
    state_path: Path
    size: int
    label: str
    mtime: float


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
        # The digest tells files apart; the readable parts are cut so a key plus ".part.json.tmp" fits NAME_MAX.
        return f"{key_prefix(model)}-{digest}-{tail}"

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
        paths = (self.lock_path(model, path), *((shared_lock,) if shared_lock else ()))
        return acquire_locks(paths, label=f"{model}/{path}", timeout=timeout, on_wait=on_wait, cancel=cancel)

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
        record = parse_record(model, path)
        if key is not None and record is not None:
            self._record_cache[model] = (key, record)
        return record

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
        with record_lock(self.state_dir / "locks" / f"{model}.record.lock", model=model):
            current = self.read_record(model) or ModelRecord(name=model)
            record = merge_record(
                current,
                revision=revision,
                commit=commit,
                puts=(*puts, *((put,) if put is not None else ())),
                remove=remove,
            )
            target = self.record_path(model)
            try:
                filesystem.write_text_atomic(target, json.dumps(record.to_json(), indent=1) + "\n")
            except OSError as exc:
                raise LocalFSError(f"{model}: cannot write record {target}: {exc.strerror or exc}") from exc
            return record

    # -- space and clean-up ------------------------------------------------------------------------

    def free_bytes(self) -> int:
        """Free space on the destination's filesystem (the nearest existing parent)."""
        return filesystem.free_bytes(self.dest)

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


def _label_of(state_path: Path) -> str:
    try:
        source = json.loads(state_path.read_text(encoding="utf-8")).get("source", "")
    except (OSError, ValueError, AttributeError):
        source = ""
    return str(source) or state_path.name
