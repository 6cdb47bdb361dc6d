"""``mdl unpack``: reject hostile archives before writing a byte, extract privately, verify, then rename."""

from __future__ import annotations

import errno
import hashlib
import itertools
import json
import os
import re
import shutil
import stat
import struct
import tempfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from mdl.archive.names import MANIFEST_NAME, collision_key, name_problem
from mdl.errors import ArchiveError, IntegrityError, LocalFSError, NoSpaceError, UsageError
from mdl.progress import Progress

MAX_ENTRIES = 100_000
MAX_TOTAL_BYTES = 1 << 42  # 4 TiB: far above any checkpoint, far below "fill the disk"
MAX_RATIO = 200  # real weights compress <= 1.5x, text ~10x; a 1000:1 entry is a bomb
RATIO_FLOOR = 1 << 20  # tiny files may compress absurdly well and cannot hurt anyone
MAX_MANIFEST_BYTES = 64 << 20
CHUNK_SIZE = 1 << 20
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
_LOCAL_HEADER = struct.Struct("<4s22sHH")  # signature, fixed fields, name length, extra length
_DOS_DIRECTORY, _DOS_REPARSE_POINT = 0x10, 0x400  # low 16 bits of external_attr (MS-DOS attributes)


@dataclass(frozen=True)
class UnpackedFile:
    """One extracted file, its path relative to the destination as named in the archive."""

    path: str
    size: int
    sha256: str

    def to_json(self) -> dict[str, Any]:
        """The JSON shape of one file."""
        return {"path": self.path, "size": self.size, "sha256": self.sha256}


@dataclass(frozen=True)
class UnpackResult:
    """What ``mdl unpack`` extracted, where, and whether a manifest vouched for it."""

    dest: str
    files: tuple[UnpackedFile, ...]
    manifest: bool = False
    checkpoint: str | None = None
    top_level: tuple[str, ...] = ()
    replaced: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """``{"dest", "files": [...]}`` plus manifest, checkpoint, top_level and replaced."""
        return {
            "dest": self.dest,
            "files": [f.to_json() for f in self.files],
            "manifest": self.manifest,
            "checkpoint": self.checkpoint,
            "top_level": list(self.top_level),
            "replaced": list(self.replaced),
        }


@dataclass(frozen=True)
class _Entry:
    info: zipfile.ZipInfo
    name: str  # without a folder's trailing slash
    is_dir: bool


def _check_entry(info: zipfile.ZipInfo) -> _Entry:
    """Refuse one entry's unsafe name, type, method or sizes; nothing has been written yet."""
    raw = info.orig_filename  # zipfile's .filename is cut at a NUL; judge what is really there
    is_dir = raw.endswith("/")
    name = raw[:-1] if is_dir else raw
    problem = name_problem(name)
    if problem:
        raise ArchiveError(f"unsafe entry {raw!r}: {problem}")
    mode = info.external_attr >> 16
    kind = stat.S_IFMT(mode) if info.create_system == 3 else 0
    if kind == stat.S_IFLNK or info.external_attr & _DOS_REPARSE_POINT:
        raise ArchiveError(f"entry {raw!r} is a symlink; archives with links are refused")
    if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
        raise ArchiveError(f"entry {raw!r} is a device, FIFO or socket")
    if not is_dir and (kind == stat.S_IFDIR or info.external_attr & _DOS_DIRECTORY):
        raise ArchiveError(f"entry {raw!r} is marked as a folder but has no trailing slash")
    if info.flag_bits & 0x1:
        raise ArchiveError(f"entry {raw!r} is encrypted")
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise ArchiveError(f"entry {raw!r} uses compression method {info.compress_type}; only stored and deflate")
    if is_dir and info.file_size:
        raise ArchiveError(f"folder entry {raw!r} has {info.file_size} bytes of data")
    if info.compress_type == zipfile.ZIP_STORED and info.compress_size != info.file_size:
        raise ArchiveError(f"entry {raw!r} is stored but declares {info.file_size} bytes in {info.compress_size}")
    if info.file_size >= RATIO_FLOOR and info.file_size > MAX_RATIO * max(info.compress_size, 1):
        raise ArchiveError(
            f"entry {raw!r} would expand {info.compress_size} bytes to {info.file_size} "
            f"(more than {MAX_RATIO}:1): refused as a zip bomb"
        )
    return _Entry(info, name, is_dir)


def _check_names(entries: list[_Entry]) -> None:
    """Refuse duplicates, names that collide once case-folded and NFC-normalised, and file/folder clashes."""
    seen: dict[str, str] = {}
    folders: dict[str, str] = {}
    for entry in entries:
        key = collision_key(entry.name)
        if key in seen:
            raise ArchiveError(f"entries {seen[key]!r} and {entry.info.orig_filename!r} name the same file")
        seen[key] = entry.info.orig_filename
        parts = entry.name.split("/")
        for depth in range(1, len(parts) + (1 if entry.is_dir else 0)):
            folders.setdefault(collision_key("/".join(parts[:depth])), entry.info.orig_filename)
    for entry in entries:
        if not entry.is_dir and collision_key(entry.name) in folders:
            clash = folders[collision_key(entry.name)]
            raise ArchiveError(f"entry {entry.name!r} is a file but {clash!r} needs it to be a folder")


def _check_layout(fh: IO[bytes], entries: list[_Entry], central_dir: int) -> None:
    """Refuse entries whose data overlap (quoted-overlap bombs) or run past the central directory."""
    spans: list[tuple[int, int, str]] = []
    for entry in entries:
        fh.seek(entry.info.header_offset)
        header = fh.read(_LOCAL_HEADER.size)
        if len(header) < _LOCAL_HEADER.size or not header.startswith(b"PK\x03\x04"):
            raise ArchiveError(f"entry {entry.info.orig_filename!r} has no local header: truncated or corrupt")
        _, _, name_len, extra_len = _LOCAL_HEADER.unpack(header)
        data_end = entry.info.header_offset + _LOCAL_HEADER.size + name_len + extra_len + entry.info.compress_size
        spans.append((entry.info.header_offset, data_end, entry.info.orig_filename))
    spans.sort()
    for (_, end, name), (start, _, following) in itertools.pairwise(spans):
        if end > start:
            raise ArchiveError(f"entries {name!r} and {following!r} overlap: refused as a zip bomb")
    if spans and spans[-1][1] > central_dir:
        raise ArchiveError(f"entry {spans[-1][2]!r} runs past the end of its data: truncated or corrupt")


def _read_manifest(archive: zipfile.ZipFile, entries: list[_Entry]) -> tuple[dict[str, str], str | None] | None:
    """The mdl manifest of a single-folder archive, checked against the entries, or None when absent."""
    tops = {e.name.split("/", 1)[0] for e in entries}
    if len(tops) != 1:
        return None
    top = next(iter(tops))
    entry = next((e for e in entries if e.name == f"{top}/{MANIFEST_NAME}" and not e.is_dir), None)
    if entry is None:
        return None
    if entry.info.file_size > MAX_MANIFEST_BYTES:
        raise ArchiveError(f"{entry.name!r} is too large to be a manifest")
    try:
        with archive.open(entry.info) as src:
            doc = json.loads(src.read(MAX_MANIFEST_BYTES + 1))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ArchiveError(f"{entry.name!r} is not valid JSON: {exc}") from exc
    except zipfile.BadZipFile as exc:
        raise _bad_zip(exc, entry.name) from exc
    listed: dict[str, tuple[int, str]] = {}
    files = doc.get("files") if isinstance(doc, dict) else None
    if not isinstance(files, list):
        raise ArchiveError(f"{entry.name!r} has no files list")
    for item in files:
        ok = isinstance(item, dict) and isinstance(item.get("path"), str) and isinstance(item.get("size"), int)
        if not ok or not _SHA256_HEX.fullmatch(str(item.get("sha256"))) or item["path"] in listed:
            raise ArchiveError(f"{entry.name!r} has a malformed or duplicate file record: {item!r}")
        listed[f"{top}/{item['path']}"] = (item["size"], item["sha256"])
    present = {e.name: e for e in entries if not e.is_dir and e is not entry}
    for name in present:
        if name not in listed:
            raise ArchiveError(f"entry {name!r} is not listed in the manifest")
    for name, (size, _) in listed.items():
        if name not in present:
            raise IntegrityError(f"the manifest lists {name!r} but the archive has no such entry")
        if present[name].info.file_size != size:
            raise IntegrityError(
                f"entry {name!r} declares {present[name].info.file_size} bytes, the manifest says {size}"
            )
    checkpoint = doc.get("checkpoint")
    return {name: sha for name, (_, sha) in listed.items()}, checkpoint if isinstance(checkpoint, str) else None


def _bad_zip(exc: Exception, name: str) -> ArchiveError | IntegrityError:
    """zipfile's complaint about one entry as ours: a CRC mismatch is corrupt data (exit 6)."""
    if "CRC" in str(exc):
        return IntegrityError(f"entry {name!r} is corrupt: its CRC-32 does not match")
    return ArchiveError(f"entry {name!r} is unreadable: {exc}")


class _Tree:
    """Creates folders and files inside the private temp folder, never through a link."""

    def __init__(self, root: Path) -> None:
        self._fds = {"": os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)}

    def folder(self, name: str) -> int:
        """A descriptor for folder ``name`` (relative), created 0755 as needed."""
        if name in self._fds:
            return self._fds[name]
        parent, _, base = name.rpartition("/")
        parent_fd = self.folder(parent)
        try:
            os.mkdir(base, 0o755, dir_fd=parent_fd)
        except FileExistsError:
            pass  # made earlier for a sibling; O_NOFOLLOW below still refuses anything but a folder
        self._fds[name] = os.open(base, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent_fd)
        return self._fds[name]

    def create(self, name: str) -> int:
        """A new file ``name`` (0644), failing if anything already exists there."""
        parent, _, base = name.rpartition("/")
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        return os.open(base, flags, 0o644, dir_fd=self.folder(parent))

    def close(self) -> None:
        """Close every folder descriptor."""
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()


def _extract(
    archive: zipfile.ZipFile, entries: list[_Entry], tree: _Tree, hashes: dict[str, str] | None, progress: Progress
) -> list[UnpackedFile]:
    """Write every entry into the temp tree, verifying CRC, declared size and manifest sha256."""
    done: list[UnpackedFile] = []
    for entry in entries:
        if entry.is_dir:
            tree.folder(entry.name)
            continue
        size = entry.info.file_size
        progress.start(entry.name, label=entry.name, total=size)
        digest = hashlib.sha256()
        written = 0
        try:
            with archive.open(entry.info) as src, os.fdopen(tree.create(entry.name), "wb") as dst:
                while chunk := src.read(CHUNK_SIZE):
                    written += len(chunk)
                    if written > size:  # zipfile stops at the declared size; never trust that alone
                        raise ArchiveError(f"entry {entry.name!r} is larger than its declared {size} bytes")
                    digest.update(chunk)
                    dst.write(chunk)
                    progress.advance(entry.name, len(chunk))
                dst.flush()
                os.fsync(dst.fileno())  # the renames into place must not expose files a power cut would empty
        except zipfile.BadZipFile as exc:
            raise _bad_zip(exc, entry.name) from exc
        except (zlib.error, EOFError) as exc:
            raise ArchiveError(f"entry {entry.name!r} has a broken deflate stream: {exc}") from exc
        if written != size:
            raise ArchiveError(f"entry {entry.name!r} holds {written} bytes but declares {size}")
        sha = digest.hexdigest()
        if hashes is not None and hashes.get(entry.name) not in (None, sha):
            raise IntegrityError(f"entry {entry.name!r} does not match the sha256 in the manifest")
        progress.finish(entry.name, ok=True)
        done.append(UnpackedFile(entry.name, size, sha))
    return done


def _refuse_occupied(dest: Path, tops: list[str], force: bool) -> list[str]:
    """Top-level names already present in ``dest``; refused unless ``force`` (an empty folder is fine)."""
    occupied: list[str] = []
    for top in tops:
        target = dest / top
        try:
            st = target.lstat()
        except FileNotFoundError:
            continue
        if stat.S_ISDIR(st.st_mode) and not any(target.iterdir()):
            continue
        if not force:
            what = "a symlink" if stat.S_ISLNK(st.st_mode) else "not empty" if stat.S_ISDIR(st.st_mode) else "a file"
            raise UsageError(f"'{target}' already exists and is {what}", hint="use --force to replace it")
        occupied.append(top)
    return occupied


def _move_into_place(staging: Path, dest: Path, tops: list[str], occupied: list[str]) -> None:
    """Rename each top-level entry into ``dest``, moving replaced ones aside; undo everything on failure."""
    aside = staging / ".replaced"
    aside.mkdir()
    undo: list[tuple[Path, Path]] = []
    try:
        for top in tops:
            if top in occupied:
                # rename() moves a link itself, never what it points to.
                (dest / top).rename(aside / top)
                undo.append((aside / top, dest / top))
            elif (dest / top).is_dir():
                (dest / top).rmdir()  # empty (checked); rename over it would also do, but not for a file
            (staging / "tree" / top).rename(dest / top)
            undo.append((dest / top, staging / "tree" / top))
    except OSError as exc:
        for moved, back in reversed(undo):
            moved.rename(back)
        raise LocalFSError(f"cannot move '{top}' into {dest}: {exc.strerror}") from exc


def unpack_archive(archive: Path, *, dest: Path | None, force: bool, progress: Progress, cwd: Path) -> UnpackResult:
    """Validate every entry, extract into a private temp folder, verify, then rename into ``dest``."""
    source = cwd / archive
    dest_dir = cwd / dest if dest is not None else cwd
    try:
        fh = source.open("rb")
    except FileNotFoundError as exc:
        raise UsageError(f"archive not found: {archive}") from exc
    except OSError as exc:
        raise LocalFSError(f"cannot read {archive}: {exc.strerror}") from exc
    with fh:
        try:
            zipped = zipfile.ZipFile(fh)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError) as exc:
            raise ArchiveError(f"{archive} is not a readable zip archive (truncated or corrupt): {exc}") from exc
        with zipped:
            return _unpack(zipped, fh, dest_dir, force=force, progress=progress)


def _unpack(
    archive: zipfile.ZipFile, fh: IO[bytes], dest_dir: Path, *, force: bool, progress: Progress
) -> UnpackResult:
    infos = archive.infolist()
    if len(infos) > MAX_ENTRIES:
        raise ArchiveError(f"the archive has {len(infos)} entries (limit {MAX_ENTRIES})")
    entries = [_check_entry(info) for info in infos]
    _check_names(entries)
    _check_layout(fh, entries, archive.start_dir)
    total = sum(e.info.file_size for e in entries)
    if total > MAX_TOTAL_BYTES:
        raise ArchiveError(f"the archive would expand to {total} bytes (limit {MAX_TOTAL_BYTES})")
    manifest = _read_manifest(archive, entries)
    tops = list(dict.fromkeys(e.name.split("/", 1)[0] for e in entries))
    try:
        dest_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LocalFSError(f"cannot create {dest_dir}: {exc.strerror}") from exc
    occupied = _refuse_occupied(dest_dir, tops, force)
    usage = os.statvfs(dest_dir)
    if usage.f_bavail * usage.f_frsize < total + (1 << 20):
        raise NoSpaceError(f"not enough space in {dest_dir} for {total} bytes")

    progress.begin(total_bytes=total, files=sum(not e.is_dir for e in entries))
    try:
        staging = Path(tempfile.mkdtemp(prefix=".mdl-unpack-", dir=dest_dir))
    except OSError as exc:
        raise LocalFSError(f"cannot create a temporary folder in {dest_dir}: {exc.strerror}") from exc
    try:
        (staging / "tree").mkdir()
        tree = _Tree(staging / "tree")
        try:
            files = _extract(archive, entries, tree, manifest[0] if manifest else None, progress)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise NoSpaceError(f"no space left in {dest_dir} while extracting") from exc
            raise LocalFSError(f"cannot extract into {dest_dir}: {exc.strerror}") from exc
        finally:
            tree.close()
        _move_into_place(staging, dest_dir, tops, occupied)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return UnpackResult(
        dest=str(dest_dir),
        files=tuple(files),
        manifest=manifest is not None,
        checkpoint=manifest[1] if manifest else None,
        top_level=tuple(tops),
        replaced=tuple(occupied),
    )
