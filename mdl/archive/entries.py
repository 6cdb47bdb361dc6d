"""Judging an archive's entries before a byte is written: names, types, collisions, layout, bombs, path lengths."""

from __future__ import annotations

import math
import os
import stat
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import BinaryIO

from mdl.archive.names import collision_key, first_twin, name_problem
from mdl.archive.zipread import ZipEntry, ZipIndex, check_flags, check_local, read_local, shown
from mdl.errors import ArchiveError, UsageError

MAX_ENTRIES = 100_000
MAX_TOTAL_BYTES = 1 << 42  # 4 TiB: far above any checkpoint, far below "fill the disk"
DEFAULT_MAX_RATIO = 200.0  # real weights compress <= 1.5x, text ~10x; 1000:1 is a bomb
RATIO_FLOOR = 1 << 20  # below 1 MiB (an entry, or a whole archive) nothing can hurt, whatever the ratio
_DOS_DIRECTORY, _DOS_REPARSE_POINT = 0x10, 0x400  # low 16 bits of external_attr (MS-DOS attributes)
_STAGING_MARGIN = 64  # DEST/.mdl-unpack-XXXXXXXX/tree/ is longer than DEST/ by less than this


@dataclass(frozen=True)
class Entry:
    """An entry that passed every check: its name without a folder's trailing slash, and where its data starts."""

    zip: ZipEntry
    name: str
    is_dir: bool
    start: int = 0


def check_entry(zentry: ZipEntry) -> Entry:
    """Refuse one entry's unsafe name, type, flags, method or sizes; nothing has been written yet."""
    raw = zentry.name
    is_dir = raw.endswith("/")
    name = raw[:-1] if is_dir else raw
    problem = name_problem(name)
    if problem:
        raise ArchiveError(f"unsafe entry {shown(raw)}: {problem}")
    mode = zentry.external_attr >> 16
    kind = stat.S_IFMT(mode) if zentry.create_system == 3 else 0
    if kind == stat.S_IFLNK or zentry.external_attr & _DOS_REPARSE_POINT:
        raise ArchiveError(f"entry {shown(raw)} is a symlink; archives with links are refused")
    if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
        raise ArchiveError(f"entry {shown(raw)} is a device, FIFO or socket")
    if not is_dir and (kind == stat.S_IFDIR or zentry.external_attr & _DOS_DIRECTORY):
        raise ArchiveError(f"entry {shown(raw)} is marked as a folder but has no trailing slash")
    check_flags(zentry)
    if is_dir and zentry.file_size:
        raise ArchiveError(f"folder entry {shown(raw)} has {zentry.file_size} bytes of data")
    return Entry(zentry, name, is_dir)


def check_names(entries: list[Entry]) -> None:
    """Refuse duplicates, names that collide once case-folded and NFC-normalised, and file/folder clashes."""
    seen: dict[str, str] = {}
    folders: dict[str, str] = {}
    for entry in entries:
        key = collision_key(entry.name)
        if key in seen:
            raise ArchiveError(f"entries {shown(seen[key])} and {shown(entry.zip.name)} name the same file")
        seen[key] = entry.zip.name
        parts = entry.name.split("/")
        for depth in range(1, len(parts) + (1 if entry.is_dir else 0)):
            folders.setdefault(collision_key("/".join(parts[:depth])), entry.zip.name)
    for entry in entries:
        if not entry.is_dir and collision_key(entry.name) in folders:
            clash = folders[collision_key(entry.name)]
            raise ArchiveError(f"entry {shown(entry.name)} is a file but {shown(clash)} needs it to be a folder")
    twins = first_twin(entry.name for entry in entries)
    if twins is not None:  # top/Dir/a + top/dir/b: one folder on a case-insensitive or normalising filesystem
        raise ArchiveError(f"{shown(twins[0])} and {shown(twins[1])} differ only in case or Unicode form")


def check_layout(fh: BinaryIO, entries: list[Entry], index: ZipIndex) -> list[Entry]:
    """Each entry with its data offset; refuse overlapping data (quoted-overlap bombs) or data past its end."""
    locals_ = [read_local(fh, entry.zip) for entry in entries]
    spans: list[tuple[int, int, str]] = []
    for entry, local in zip(entries, locals_, strict=True):
        end = local.data_start + entry.zip.compress_size
        if end > index.central_start:
            raise ArchiveError(f"entry {shown(entry.zip.name)} runs past the end of its data: truncated or corrupt")
        spans.append((entry.zip.header_offset, end, entry.zip.name))
    spans.sort()
    for (_, end, name), (start, _, following) in pairwise(spans):
        if end > start:
            raise ArchiveError(f"entries {shown(name)} and {shown(following)} overlap: refused as a zip bomb")
    for entry, local in zip(entries, locals_, strict=True):
        check_local(entry.zip, local)
    return [Entry(e.zip, e.name, e.is_dir, local.data_start) for e, local in zip(entries, locals_, strict=True)]


def _ratio_hint(ratio: float) -> str:
    return f"if you trust this archive, allow it with --max-ratio {math.ceil(ratio) + 1} (max_ratio= in Python)"


def check_limits(entries: list[Entry], max_ratio: float) -> int:
    """The declared total; refuse a per-entry or whole-archive expansion beyond ``max_ratio``:1 and huge totals."""
    if not max_ratio > 0:
        raise UsageError(f"--max-ratio (max_ratio=) must be a positive number or inf, got {max_ratio!r}")
    total = packed = 0
    for entry in entries:
        size, csize = entry.zip.file_size, entry.zip.compress_size
        total += size
        packed += csize
        if size >= RATIO_FLOOR and size > max_ratio * max(csize, 1):
            ratio = size / max(csize, 1)
            raise ArchiveError(
                f"entry {shown(entry.zip.name)} would expand {csize} bytes to {size} "
                f"({ratio:.0f}:1, limit {max_ratio:g}:1): refused as a zip bomb",
                hint=_ratio_hint(ratio),
            )
    if total >= RATIO_FLOOR and total > max_ratio * max(packed, 1):
        ratio = total / max(packed, 1)
        raise ArchiveError(
            f"the archive's {len(entries)} entries would expand {packed} bytes to {total} "
            f"({ratio:.0f}:1 in total, limit {max_ratio:g}:1): refused as a zip bomb",
            hint=_ratio_hint(ratio),
        )
    if total > MAX_TOTAL_BYTES:
        raise ArchiveError(f"the archive would expand to {total} bytes (limit {MAX_TOTAL_BYTES})")
    return total


def nearest_folder(path: Path) -> Path:
    """``path`` if it is a folder, else its nearest ancestor that is."""
    while not path.is_dir() and path != path.parent:
        path = path.parent
    return path


def check_lengths(entries: list[Entry], dest: Path) -> None:
    """Refuse names whose components exceed the destination file system's NAME_MAX, or whose path gets too long."""
    where = nearest_folder(dest)
    try:
        name_max = os.pathconf(where, "PC_NAME_MAX")
        path_max = os.pathconf(where, "PC_PATH_MAX")
    except (OSError, ValueError):
        name_max, path_max = 255, 4096
    prefix = len(os.fsencode(dest.absolute())) + 1
    limit = path_max - 1 - _STAGING_MARGIN  # PATH_MAX counts the final NUL
    for entry in entries:
        encoded = entry.name.encode("utf-8")
        longest = max(len(part) for part in encoded.split(b"/"))
        if longest > name_max:
            raise ArchiveError(f"entry {shown(entry.zip.name)} has a component of {longest} bytes (limit {name_max})")
        if prefix + len(encoded) > limit:
            raise ArchiveError(
                f"entry {shown(entry.zip.name)} would make a path of {prefix + len(encoded)} bytes in {dest} "
                f"(limit {limit})"
            )
