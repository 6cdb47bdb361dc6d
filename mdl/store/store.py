"""The destination under ``<dest>/.mdl``: its paths, records read and written under their lock,
partials, free space.
"""

# (annotations here are evaluated, not postponed: typing compiles each string annotation of a
# NamedTuple's fields at every start)
import hashlib
import os
import re
import shutil
import stat
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple, TypeVar

from mdl.errors import LocalFSError, MdlError, UnsafePathError
from mdl.folderwalk import open_dir
from mdl.outsidejson import read_json
from mdl.store import confined
from mdl.store.filelocks import HeldLocks, acquire_locks, try_lock
from mdl.store.records import (
    RECORD_MAX,
    FileRecord,
    ModelRecord,
    SignatureRecord,
    earlier_key,
    now_iso,
    parse_record,
    record_json,
    record_of,
    unchanged,
)
from mdl.wait import Wait

if TYPE_CHECKING:
    from mdl.store.expected import ExpectedFile

_T = TypeVar("_T")
_SAFE_CHARS = re.compile(r"[^A-Za-z0-9._-]+")
# mdl's own names under .mdl/partial: "<key>.part", "<key>.part.json", a fill's "<key>.lease" (its
# lease generation's token), and their temp files
# (pid-tagged or not)
_OWN_PARTIAL = (
    r"[A-Za-z0-9._-]*-[0-9a-f]{16}-[A-Za-z0-9._-]*"
    r"(?:\.part(?:\.json)?|\.hash|\.signed|\.lease)(?:\.[0-9]+\.[0-9a-f]{8})?(?:\.tmp)?"
)
# what one-off gets wrote into this folder (beside records/: never a model's record)
GET_RECORD = "get.json"
# seconds; a record is rewritten in milliseconds, so a longer wait means a stuck run
RECORD_LOCK_TIMEOUT = 60


def key_prefix(model: str) -> str:
    """The start of every partial and lock file name of ``model`` under ``.mdl/``. Never "-" (``rm
    *`` and other tools would read such a name as options): one that would start with it — a one-off
    get's (model "") or a model named "-x" — gets "_" in front; every other model's names are as
    they were, so its partials stay resumable."""
    prefix = _SAFE_CHARS.sub("_", model)[:100]
    return prefix if prefix[:1] not in ("", "-") else f"_{prefix}"


def key_pattern(model: str, suffix: str) -> re.Pattern[str]:
    """The names of ``model``'s ``.suffix`` files under ``.mdl/`` ("<model>-<16 hex>-<file>"): the
    digest matched too, so model "foo" never takes "foo-bar"'s."""
    return re.compile(re.escape(key_prefix(model)) + r"-[0-9a-f]{16}-.*\." + suffix, re.DOTALL)


class PartialFile(NamedTuple):
    """A partial download under ``.mdl/partial`` and what it belongs to."""

    part_path: Path
    state_path: Path
    size: int
    label: str
    # (st_dev, st_ino) of ``part_path`` when listed: only that one is removed
    identity: tuple[int, int] | None = None


class Leftovers:
    """What runs leave under a destination's ``.mdl`` besides its records: partial downloads,
    orphan resume records and stray temp files, listed and removed by ``clean``, and the per-file
    locks it takes only when no run holds them (a ``Store`` is one: ``dest``, ``state_dir``)."""

    dest: Path
    state_dir: Path

    def partials(self) -> list[PartialFile]:
        """Partial downloads, orphan resume records and stray temp files: regular files with
        mdl's names only.
        """
        folder = self.state_dir / "partial"
        listed = confined.entries(self.dest, folder)
        names = {name for name, found in listed if stat.S_ISREG(found.st_mode)}
        found: list[PartialFile] = []
        for name, info in listed:
            if name not in names or not re.fullmatch(_OWN_PARTIAL, name):
                continue
            entry, ident = folder / name, (info.st_dev, info.st_ino)
            if name.endswith(".part"):
                state = entry.with_name(name + ".json")
                found.append(
                    PartialFile(entry, state, info.st_blocks * 512, self._label_of(state), ident)
                )
            elif name.endswith(".tmp") or name.removesuffix(".json") not in names:
                found.append(PartialFile(entry, entry, info.st_size, self._label_of(entry), ident))
        return found

    def remove_partial(self, partial: PartialFile) -> bool:
        """Delete a partial file and its resume record (the entries, never a link's target); the
        partial only if it is still the file listed (``identity``), else both stay (False)."""
        paths = {partial.part_path, partial.state_path}
        if (listed := partial.identity) is not None:
            removal = confined.unlink_checked(
                self.dest, partial.part_path, lambda now: (now.st_dev, now.st_ino) == listed
            )
            if not removal.removed and removal.found is not None:
                return False
            paths.discard(partial.part_path)  # whatever has its name now is not the file listed
        for path in paths:
            confined.unlink(self.dest, path)
        return True

    def try_file_lock(self, key: str) -> HeldLocks | None:
        """The lock of the store key ``key`` if no run holds it now (clean-up never waits)."""
        return try_lock(self.dest, self.state_dir / "locks" / f"{key}.lock")

    def _label_of(self, state_path: Path) -> str:
        try:
            data = confined.read_bytes(self.dest, state_path, limit=1 << 20)
            doc = read_json(data, source=str(state_path), limit=1 << 20)
        # not one mdl made, or too big: named by its name
        except (OSError, MdlError):
            doc = None
        source = doc.get("source", "") if isinstance(doc, dict) else ""
        return str(source) or state_path.name


class Store(Leftovers):
    """Paths and records of one destination root."""

    def __init__(
        self, dest: Path, *, state_dir: Path | None = None, keeps_revisions: bool = False
    ) -> None:
        self.dest = dest
        self.state_dir = state_dir or dest / ".mdl"
        # the Hugging Face cache: a file replaced by another commit's stays on disk, so its record
        # stays (earlier)
        self.keeps_revisions = keeps_revisions
        self._record_cache: dict[str, tuple[tuple[int, int, int], ModelRecord]] = {}
        # held while this run's write of a record is not cached yet, and while one is parsed: the
        # workers looking at their files wait for it rather than each parse the same record
        self._record_mutex = threading.Lock()

    def model_dir(self, model: str) -> Path:
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
        # The digest tells files apart; the readable parts are cut so a key plus ".part.json.tmp"
        # fits NAME_MAX.
        return f"{key_prefix(model)}-{digest}-{tail}"

    def part_paths(self, model: str, path: str) -> tuple[Path, Path]:
        """The ``.part`` file and its resume record for one destination file."""
        key = self._key(model, path)
        folder = self.state_dir / "partial"
        return folder / f"{key}.part", folder / f"{key}.part.json"

    def staged_path(self, model: str, path: str) -> Path:
        """Where a model's signature waits, fetched, until it verifies (then it is moved into
        place).
        """
        return self.state_dir / "partial" / f"{self._key(model, path)}.signed"

    def lock_path(self, model: str, path: str) -> Path:
        """The lock file guarding one destination file across processes."""
        return self.state_dir / "locks" / f"{self._key(model, path)}.lock"

    def record_path(self, model: str) -> Path:
        """``.mdl/records/<model>.json``; for one-off gets (model ``""``) ``.mdl/get.json``,
        keyed by file name.
        """
        return (
            self.state_dir / "records" / f"{model}.json" if model else self.state_dir / GET_RECORD
        )

    def ensure_dirs(self) -> None:
        """Create the destination and its state folders; a link on the way is refused."""
        try:
            for sub in ("partial", "locks", "records"):
                os.close(open_dir(self.dest, self.state_dir / sub))
        except OSError as exc:
            raise LocalFSError(f"cannot create {self.state_dir}: {exc.strerror or exc}") from exc

    def acquire_file_lock(
        self,
        model: str,
        path: str,
        wait: Wait,
        *,
        on_wait: Callable[[str], None] | None = None,
        shared_lock: Path | None = None,
    ) -> HeldLocks:
        """Take the per-file lock (not tied to a thread: pull releases it once the record is
        written), then ``shared_lock``, huggingface_hub's lock of a cache blob; ``on_wait(holder)``
        once if another run holds one."""
        paths = (self.lock_path(model, path), *((shared_lock,) if shared_lock else ()))
        label = f"{model}/{path}" if model else path
        return acquire_locks(self.dest, paths, label=label, wait=wait, on_wait=on_wait)

    def read_record(self, model: str) -> ModelRecord | None:
        """The model's record, or None if absent or unreadable (then files are re-checked, never
        trusted). Cached by (mtime, size, inode): a record another run rewrote (atomically: a new
        inode) is read again."""
        known, found = self._cached_record(model)
        if known:
            return found
        with self._record_mutex:
            known, found = self._cached_record(model)  # written or parsed meanwhile elsewhere
            if known:
                return found
            path = self.record_path(model)
            try:
                stat = path.stat()
            except FileNotFoundError:
                return None
            except OSError:
                stat = None
            record = parse_record(
                model, path, read=lambda p: confined.read_bytes(self.dest, p, limit=RECORD_MAX)
            )
            if stat is not None and record is not None:
                self._record_cache[model] = (_stat_key(stat), record)
            return record

    def entry(
        self, model: str, path: str, *, sha256: str | None, git_oid: str | None
    ) -> FileRecord | None:
        """The record of the file at ``path`` for the content named (``ModelRecord.entry_for``);
        None: no record of it."""
        record = self.read_record(model)
        return record.entry_for(path, sha256=sha256, git_oid=git_oid) if record else None

    def _cached_record(self, model: str) -> tuple[bool, ModelRecord | None]:
        """(True, the record) while the file is the one cached (None: there is no file), else
        (False, None)."""
        try:
            key = _stat_key(self.record_path(model).stat())
        except FileNotFoundError:
            return True, None
        except OSError:
            return False, None
        cached = self._record_cache.get(model)
        return (True, cached[1]) if cached is not None and cached[0] == key else (False, None)

    def update_record(
        self,
        model: str,
        *,
        revision: str | None,
        commit: str | None,
        put: FileRecord | None = None,
        puts: tuple[FileRecord, ...] = (),
        remove: tuple[str, ...] = (),
        expected: "dict[str, ExpectedFile] | None" = None,
        catalog: str | None = None,
        signature: SignatureRecord | None = None,
        forget: tuple[str, ...] = (),
        signed_files: dict[str, str] | None = None,
    ) -> ModelRecord:
        """Read-modify-write the model's record under its lock, atomically (other runs may be
        writing); ``forget``: keys of ``earlier`` (files of other commits) to drop."""
        with self._record_locked(model):
            current = self.read_record(model) or ModelRecord(name=model)
            files, earlier = _merged(
                current,
                (*puts, *((put,) if put is not None else ())),
                remove=remove,
                forget=forget,
                keeps_revisions=self.keeps_revisions,
            )
            # a revision, commit, expected set or catalog of None keeps the old one
            record = ModelRecord(
                name=model,
                revision=_or_old(revision, current.revision),
                commit=_or_old(commit, current.commit),
                files=files,
                updated_at=now_iso(),
                expected=_or_old(expected, current.expected),
                catalog=_or_old(catalog, current.catalog),
                signature=_or_old(signature, current.signature),
                earlier=earlier,
                signed_files=_or_old(signed_files, current.signed_files),
            )
            self._write_record(model, record, current)
            return record

    def _write_record(self, model: str, record: ModelRecord, current: ModelRecord) -> None:
        """Write ``record`` (the model's, read as ``current``) atomically, under the record's lock,
        and cache it as a read will find it (no other run writes it meanwhile). A pull writes it
        every second and each look at a file reads it: parsed again, a record of N files would cost
        O(N) per write. The entries kept from ``current`` are taken as they are; the new ones
        checked as a read would."""
        target, doc = self.record_path(model), record.to_json()
        try:
            stored: ModelRecord | None = record_of(model, doc, known=unchanged(record, current))
        except ValueError:  # unreadable as written: the next read says so
            stored = None
        with self._record_mutex:
            self._record_cache.pop(model, None)
            try:
                confined.write_atomic(self.dest, target, (record_json(record, doc) + "\n").encode())
                if stored is not None:
                    self._record_cache[model] = (_stat_key(target.stat()), stored)
            except OSError as exc:
                raise LocalFSError(
                    f"{model or 'get'}: cannot write record {target}: {exc.strerror or exc}"
                ) from exc

    def drop_from_record(
        self,
        model: str,
        paths: tuple[str, ...],
        *,
        whole: bool = False,
        forget: tuple[str, ...] = (),
    ) -> None:
        """Take ``paths`` (and ``forget``: keys of ``earlier``) out of the model's record
        (``whole``: remove the record, unless it names other files)."""
        with self._record_locked(model):
            if (current := self.read_record(model)) is None:
                return
            if whole and set(current.files) <= set(paths) and set(current.earlier) <= set(forget):
                try:
                    confined.unlink(self.dest, self.record_path(model))
                except OSError as exc:
                    raise LocalFSError(
                        f"{model}: cannot remove its record: {exc.strerror or exc}"
                    ) from exc
                return
        if paths or forget:
            self.update_record(model, revision=None, commit=None, remove=paths, forget=forget)

    def _record_locked(self, model: str) -> HeldLocks:
        # The one-off record's lock: ".get", a name no catalog model can have (none starts with
        # ".").
        lock = self.state_dir / "locks" / f"{model or '.get'}.record.lock"
        label = f"{model or 'get'}: its record"
        return acquire_locks(self.dest, [lock], label=label, wait=Wait.within(RECORD_LOCK_TIMEOUT))

    def free_bytes(self) -> int:
        """Free space where the destination is (or would be): the nearest existing parent's
        filesystem.
        """
        probe = self.dest
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
        return shutil.disk_usage(probe).free


def _or_old(new: _T | None, old: _T | None) -> _T | None:
    return old if new is None else new


def _stat_key(found: os.stat_result) -> tuple[int, int, int]:
    """A record file's version: a rewrite (atomic: a new inode) changes it."""
    return (found.st_mtime_ns, found.st_size, found.st_ino)


def _merged(
    current: ModelRecord,
    puts: tuple[FileRecord, ...],
    *,
    remove: tuple[str, ...],
    forget: tuple[str, ...],
    keeps_revisions: bool,
) -> tuple[dict[str, FileRecord], dict[str, FileRecord]]:
    """The record's files and earlier files once ``puts`` replace theirs and ``remove`` and
    ``forget`` (keys of ``earlier``) go."""
    files = {path: one for path, one in current.files.items() if path not in remove}
    earlier = {key: one for key, one in current.earlier.items() if key not in forget}
    for one in puts:
        old = files.get(one.path)
        if (
            keeps_revisions
            and old is not None
            and old.commit != one.commit
            and (moved := earlier_key(old))
        ):
            earlier[moved] = old._replace(path=moved)  # still on disk in its own snapshot
        earlier.pop(earlier_key(one) or "", None)  # current again
        files[one.path] = one
    return files, earlier
