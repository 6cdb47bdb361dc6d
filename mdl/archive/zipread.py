"""Reading and judging a zip without trusting it: end records, ZIP64, central directory, local
headers, names, types, collisions, layout, bombs and path lengths, each refused as an ArchiveError
naming the entry (exit 2) before a byte is written. Not zipfile: it raises NotImplementedError,
UnicodeDecodeError and friends on hostile input, and guesses CP437 for the raw UTF-8 names Info-ZIP
writes. Its naming rule (``paths.name_problem``) is the one pack and get's job outputs
enforce too."""

from __future__ import annotations

import math
import os
import stat
import struct
import unicodedata
import zlib
from collections import namedtuple
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from itertools import pairwise
from pathlib import Path
from typing import BinaryIO

from mdl.errors import ArchiveError, IntegrityError, UsageError
from mdl.paths import MAX_SHOWN, name_problem, nearest_folder, shown, shown_name

MANIFEST_NAME = "mdl-manifest.json"  # inside the archive's top-level folder
STORED, DEFLATED = 0, 8
MAX_EXTRACT_VERSION = 63  # APPNOTE 6.3; anything newer needs features we do not have
MAX_CENTRAL_BYTES = 256 << 20
MAX_ENTRIES = 100_000
MAX_TOTAL_BYTES = 1 << 42  # 4 TiB: far above any checkpoint, far below "fill the disk"
DEFAULT_MAX_RATIO = 200.0  # real weights compress <= 1.5x, text ~10x; 1000:1 is a bomb
# below 1 MiB (an entry, or a whole archive) nothing can hurt, whatever the ratio
RATIO_FLOOR = 1 << 20
_DOS_DIRECTORY, _DOS_REPARSE_POINT = 0x10, 0x400  # low 16 bits of external_attr (MS-DOS attributes)
_STAGING_MARGIN = 64  # DEST/.mdl-unpack-<32 hex>/tree/ is longer than DEST/ by less than this
_FLAG_ENCRYPTED, _FLAG_PATCHED, _FLAG_STRONG = 0x1, 0x20, 0x40
_FLAG_UTF8, _FLAG_MASKED = 0x800, 0x2000
_FLAG_DESCRIPTOR = 0x8  # CRC-32 and sizes follow the data (the local header holds zeros)
_FLAG_WORDS = {
    _FLAG_DESCRIPTOR: "data descriptor flag (bit 3)",
    _FLAG_UTF8: "UTF-8 name flag (bit 11)",
    **dict.fromkeys((_FLAG_ENCRYPTED, _FLAG_STRONG, _FLAG_MASKED), "encryption flag"),
}
_EOCD = struct.Struct("<4sHHHHLLH")
_EOCD64_LOCATOR = struct.Struct("<4sLQL")
_EOCD64 = struct.Struct("<4sQHHLLQQQQ")
_CENTRAL = struct.Struct("<4sBBHHHHHLLLHHHHHLL")
_Central = namedtuple(
    "_Central",
    "signature made_by system version flags method time date crc csize usize name_len extra_len"
    " comment_len disk internal attr offset",
)
_LOCAL = struct.Struct("<4sHHHHHLLLHH")
_DESCRIPTOR_SIGNATURE = b"PK\x07\x08"
_EXTRA_ZIP64, _EXTRA_UNICODE_PATH = 0x0001, 0x7075


def shown_raw(raw: bytes) -> str:
    return repr(raw) if len(raw) <= MAX_SHOWN else repr(raw[:MAX_SHOWN])[:-1] + "…'"


def collision_key(name: str) -> str:
    """The key under which two names land on the same file on a case-insensitive, normalising
    filesystem.
    """
    return unicodedata.normalize("NFC", unicodedata.normalize("NFC", name).casefold())


def first_twin(names: Iterable[str]) -> tuple[str, str] | None:
    """The first two spellings (``top/Dir/a``, ``top/dir/b``) that a case-folding, normalising
    filesystem merges.
    """
    spelled: dict[str, str] = {}  # collision key of a path prefix → its first spelling
    for name in names:
        parts = name.strip("/").split("/")
        for depth in range(1, len(parts) + 1):
            prefix = "/".join(parts[:depth])
            if (first := spelled.setdefault(collision_key(prefix), prefix)) != prefix:
                return first, prefix
    return None


@dataclass(frozen=True)
class Entry:
    """One central directory record, decoded; ``start``: where its data begins, once its local
    header is read.
    """

    raw_name: bytes
    stored: str  # the name as stored, a folder's trailing "/" included
    name: str  # without it
    is_dir: bool
    flags: int
    method: int
    version_needed: int
    crc: int
    compress_size: int
    file_size: int
    header_offset: int
    create_system: int
    external_attr: int
    start: int = 0
    # the DOS date and time as stored, date << 16 | time (compared with the local header's)
    modified: int = 0


# What an archive that is no zip starts with (its magic bytes, at their offset), and its tool.
_OTHER_FORMATS = (
    (0, b"\x1f\x8b", "gzip file (a .tar.gz or .tgz?)", "tar -xzf FILE"),
    (0, b"BZh", "bzip2 file (a .tar.bz2?)", "tar -xjf FILE"),
    (0, b"\xfd7zXZ\x00", "xz file (a .tar.xz?)", "tar -xJf FILE"),
    (0, b"\x28\xb5\x2f\xfd", "zstd file (a .tar.zst?)", "tar --zstd -xf FILE"),
    (0, b"7z\xbc\xaf\x27\x1c", "7-Zip archive", "7z x FILE"),
    (0, b"Rar!\x1a\x07", "RAR archive", "unrar x FILE"),
    (257, b"ustar", "tar archive", "tar -xf FILE"),
)


def another_format(fh: BinaryIO) -> ArchiveError | None:
    """The error of an archive in a format mdl does not read, named by its magic bytes (None:
    none known): unpack reads zip archives only, as pack writes them."""
    for offset, magic, name, line in _OTHER_FORMATS:
        fh.seek(offset)
        if fh.read(len(magic)) == magic:
            return ArchiveError(
                f"this is a {name}, not a zip archive: mdl unpack reads zip archives only"
                " (as mdl pack writes them)",
                hint=f"unpack it with: {line}",
            )
    return None


def _broken(why: str) -> ArchiveError:
    return ArchiveError(f"not a readable zip archive (truncated or corrupt): {why}")


def _read_at(fh: BinaryIO, offset: int, size: int, what: str = "a record") -> bytes:
    """``size`` bytes at ``offset``, both as the archive states them: refused, naming ``what``,
    unless they lie within the file (a huge offset must not reach seek)."""
    if not 0 <= offset <= (end := fh.seek(0, 2)) - size:
        raise _broken(
            f"{what} ({size} bytes at offset {offset}) lies outside the file ({end} bytes)"
        )
    fh.seek(offset)
    if len(data := fh.read(size)) != size:
        raise _broken(f"{what} ({size} bytes at offset {offset}) runs past the end of the file")
    return data


def _extras(data: bytes, what: str) -> dict[int, bytes]:
    fields: dict[int, bytes] = {}
    pos = 0
    while pos + 4 <= len(data):
        kind, size = struct.unpack_from("<HH", data, pos)
        if pos + 4 + size > len(data):
            raise ArchiveError(f"entry {what} has a corrupt extra field")
        # the first of each id wins, as in unzip
        fields.setdefault(kind, data[pos + 4 : pos + 4 + size])
        pos += 4 + size
    return fields


def decode_name(raw: bytes, flags: int, unicode_path: bytes | None) -> str:
    """An entry's name as unzip, 7-Zip and bsdtar read it: UTF-8 when flag bit 11 says so
    (ArchiveError if it is not), else Info-ZIP's Unicode Path field (0x7075) when its CRC-32 matches
    the name, else UTF-8 when it decodes (zip 3.0 writes raw UTF-8 without the flag), else CP437,
    the zip default."""
    if flags & _FLAG_UTF8:
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ArchiveError(
                f"entry {shown_raw(raw)} is marked UTF-8 but its name is not valid UTF-8"
            ) from None
    if (
        unicode_path
        and unicode_path[:1] == b"\x01"
        and unicode_path[1:5] == struct.pack("<L", zlib.crc32(raw))
    ):
        try:
            return unicode_path[5:].decode("utf-8")
        except UnicodeDecodeError:
            raise ArchiveError(
                f"entry {shown_raw(raw)} has a Unicode Path field that is not valid UTF-8"
            ) from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("cp437")


def read_index(fh: BinaryIO, *, max_entries: int) -> tuple[list[Entry], int]:
    """Every entry of the central directory, and where it starts; refuse what is corrupt, split
    or too many.
    """
    count, cd_size, cd_offset, cd_end = _end_record(fh)
    if count > max_entries:
        raise ArchiveError(f"the archive has {count} entries (limit {max_entries})")
    cd_start = cd_end - cd_size
    # bytes prepended to the archive (a stub); offsets are relative to the zip
    base = cd_start - cd_offset
    if cd_start < 0 or base < 0:
        raise _broken("the central directory does not fit in the file")
    if cd_size > MAX_CENTRAL_BYTES:
        raise ArchiveError(f"the central directory is {cd_size} bytes (limit {MAX_CENTRAL_BYTES})")
    data = _read_at(fh, cd_start, cd_size)
    entries: list[Entry] = []
    pos = 0
    while pos < len(data):
        if len(entries) >= count:
            raise _broken("the central directory holds more records than the end record counts")
        entry, pos = _central_record(data, pos, base)
        entries.append(entry)
    if len(entries) != count:
        raise _broken(
            f"the end record counts {count} entries but the central directory has {len(entries)}"
        )
    return entries, cd_start


def _end_record(fh: BinaryIO) -> tuple[int, int, int, int]:
    """The entry count, the central directory's size and offset, and where it ends (the first end
    record after it): from the ZIP64 end record when there is one."""
    if (size := fh.seek(0, 2)) < _EOCD.size:
        raise another_format(fh) or _broken(f"{size} bytes is too short for a zip")
    tail_start = max(0, size - _EOCD.size - 0xFFFF)
    tail = _read_at(fh, tail_start, size - tail_start)
    # the last with room for a whole record
    if (pos := tail.rfind(b"PK\x05\x06", 0, len(tail) - _EOCD.size + 4)) < 0:
        raise another_format(fh) or _broken("no end of central directory record")
    _, disk, cd_disk, count_here, count, cd_size, cd_offset, _ = _EOCD.unpack_from(tail, pos)
    cd_end = tail_start + pos
    if (zip64 := _zip64_end_record(fh, cd_end)) is not None:
        cd_end, (disk, cd_disk, count_here, count, cd_size, cd_offset) = zip64
    if disk != 0 or cd_disk != 0 or count_here != count:
        raise ArchiveError("split or spanned archives are not supported")
    return count, cd_size, cd_offset, cd_end


def _zip64_end_record(fh: BinaryIO, cd_end: int) -> tuple[int, tuple[int, ...]] | None:
    """Where the central directory ends and the ZIP64 end record's disks, counts, size and offset,
    when its locator sits before the end record ``cd_end`` points at; else None."""
    if cd_end < _EOCD64_LOCATOR.size:
        return None
    locator = _read_at(fh, cd_end - _EOCD64_LOCATOR.size, _EOCD64_LOCATOR.size)
    if not locator.startswith(b"PK\x06\x07"):
        return None
    if _EOCD64_LOCATOR.unpack(locator)[3] > 1:
        raise ArchiveError("split or spanned archives are not supported")
    cd_end -= _EOCD64_LOCATOR.size + _EOCD64.size
    record = _read_at(fh, cd_end, _EOCD64.size)
    if not record.startswith(b"PK\x06\x06"):
        raise _broken("the ZIP64 end record is missing")
    return cd_end, _EOCD64.unpack(record)[4:]


def _central_record(data: bytes, pos: int, base: int) -> tuple[Entry, int]:
    """The central directory record at ``pos`` in ``data``, decoded, and where the next begins."""
    if pos + _CENTRAL.size > len(data) or data[pos : pos + 4] != b"PK\x01\x02":
        raise _broken(f"bad central directory record at offset {pos}")
    rec = _Central._make(_CENTRAL.unpack_from(data, pos))
    start = pos + _CENTRAL.size
    if (end := start + rec.name_len + rec.extra_len + rec.comment_len) > len(data):
        raise _broken(f"central directory record at offset {pos} runs past its end")
    raw = data[start : start + rec.name_len]
    extras = _extras(
        data[start + rec.name_len : start + rec.name_len + rec.extra_len], shown_raw(raw)
    )
    name = decode_name(raw, rec.flags, extras.get(_EXTRA_UNICODE_PATH))
    usize, csize, offset, disk = _zip64_values(extras.get(_EXTRA_ZIP64), rec, name)
    if disk != 0:
        raise ArchiveError(
            f"entry {shown(name)} is on another disk: split archives are not supported"
        )
    return Entry(
        raw,
        name,
        name.removesuffix("/"),
        name.endswith("/"),
        rec.flags,
        rec.method,
        rec.version & 0xFF,
        rec.crc,
        csize,
        usize,
        base + offset,
        rec.system,
        rec.attr,
        modified=rec.date << 16 | rec.time,
    ), end


def _zip64_values(field: bytes | None, rec: _Central, name: str) -> list[int]:
    """Sizes, offset and disk, those marked 0xFFFFFFFF (0xFFFF for the disk) replaced by their
    ZIP64 extra values.
    """
    values, pos = [rec.usize, rec.csize, rec.offset, rec.disk], 0
    for i, (marker, width) in enumerate([(0xFFFFFFFF, 8)] * 3 + [(0xFFFF, 4)]):
        if values[i] == marker:
            if field is None or pos + width > len(field):
                raise ArchiveError(f"entry {shown(name)} lacks the ZIP64 sizes its header promises")
            values[i] = int.from_bytes(field[pos : pos + width], "little")
            pos += width
    return values


def check_entry(entry: Entry) -> None:
    """Refuse one entry's unsafe name or type, and what this reader cannot do safely."""
    raw, attr, flags = entry.stored, entry.external_attr, entry.flags
    v, is_dir = entry.version_needed, entry.is_dir
    if problem := name_problem(entry.name, room=0):  # written under its own name, no temp
        raise ArchiveError(f"unsafe entry {shown(raw)}: {problem}")
    kind = stat.S_IFMT(attr >> 16) if entry.create_system == 3 else 0
    marked_dir = kind == stat.S_IFDIR or attr & _DOS_DIRECTORY
    method, size, csize = entry.method, entry.file_size, entry.compress_size
    refused = (
        (
            kind == stat.S_IFLNK or attr & _DOS_REPARSE_POINT,
            "is a symlink; archives with links are refused",
        ),
        (kind not in (0, stat.S_IFREG, stat.S_IFDIR), "is a device, FIFO or socket"),
        (not is_dir and marked_dir, "is marked as a folder but has no trailing slash"),
        (flags & (_FLAG_ENCRYPTED | _FLAG_STRONG | _FLAG_MASKED), "is encrypted"),
        (flags & _FLAG_PATCHED, "holds patched data (flag bit 5), which is not supported"),
        (
            v > MAX_EXTRACT_VERSION,
            f"needs zip version {v // 10}.{v % 10} to extract (supported: up to 6.3)",
        ),
        (
            method not in (STORED, DEFLATED),
            f"uses compression method {method}; only stored and deflate",
        ),
        (method == STORED and csize != size, f"is stored but declares {size} bytes in {csize}"),
    )
    if (why := next((reason for bad, reason in refused if bad), None)) is not None:
        raise ArchiveError(f"entry {shown(raw)} {why}")
    if is_dir and size:
        raise ArchiveError(f"folder entry {shown(raw)} has {size} bytes of data")


def check_names(entries: list[Entry]) -> None:
    """Refuse duplicates, names that collide once case-folded and NFC-normalised, and file/folder
    clashes.
    """
    seen: dict[str, str] = {}
    folders: dict[str, str] = {}
    for entry in entries:
        if (key := collision_key(entry.name)) in seen:
            raise ArchiveError(
                f"entries {shown(seen[key])} and {shown(entry.stored)} name the same file"
            )
        seen[key] = entry.stored
        parts = entry.name.split("/")
        for depth in range(1, len(parts) + (1 if entry.is_dir else 0)):
            folders.setdefault(collision_key("/".join(parts[:depth])), entry.stored)
    for entry in entries:
        if not entry.is_dir and (clash := folders.get(collision_key(entry.name))) is not None:
            raise ArchiveError(
                f"entry {shown(entry.name)} is a file but {shown(clash)} needs it to be a folder"
            )
    # top/Dir/a + top/dir/b: one folder on a case-insensitive or normalising filesystem
    if (twins := first_twin(entry.name for entry in entries)) is not None:
        raise ArchiveError(
            f"{shown(twins[0])} and {shown(twins[1])} differ only in case or Unicode form"
        )


# A local file header as stored (sizes from its ZIP64 field when marked), and where its data starts.
_Local = namedtuple(
    "_Local", "version flags method time date crc csize usize raw_name extras start"
)


def _read_local(fh: BinaryIO, entry: Entry) -> _Local:
    """The local header of ``entry``, its sizes taken from its ZIP64 field where they are marked
    0xFFFFFFFF.
    """
    what = f"the local header of entry {shown(entry.stored)}"
    if not (header := _read_at(fh, entry.header_offset, _LOCAL.size, what)).startswith(
        b"PK\x03\x04"
    ):
        raise ArchiveError(f"entry {shown(entry.stored)} has no local header: truncated or corrupt")
    _, version, flags, method, time, date, crc, csize, usize, name_len, extra_len = _LOCAL.unpack(
        header
    )
    raw = _read_at(fh, entry.header_offset + _LOCAL.size, name_len, what)
    extras = _extras(
        _read_at(fh, entry.header_offset + _LOCAL.size + name_len, extra_len, what),
        shown(entry.stored),
    )
    start = entry.header_offset + _LOCAL.size + name_len + extra_len
    zip64, pos = extras.get(_EXTRA_ZIP64, b""), 0
    sizes = [usize, csize]  # in this order in the field (APPNOTE 4.5.3)
    for i, value in enumerate(sizes):
        if value == 0xFFFFFFFF and pos + 8 <= len(zip64):
            sizes[i] = int.from_bytes(zip64[pos : pos + 8], "little")
            pos += 8
    return _Local(version, flags, method, time, date, crc, sizes[1], sizes[0], raw, extras, start)


def _values(crc: int, csize: int, usize: int) -> list[tuple[str, int]]:
    return [("CRC-32", crc), ("compressed size", csize), ("uncompressed size", usize)]


def _shown_value(what: str, value: int) -> str:
    """A header field's value as people read it: a CRC in hex, a DOS time as a date, a method by
    its name.
    """
    if what == "CRC-32":
        return f"{value:#010x}"
    if what == "modification time":
        date, time = value >> 16, value & 0xFFFF
        day = f"{1980 + (date >> 9):04}-{(date >> 5) & 15:02}-{date & 31:02}"
        return f"{day} {time >> 11:02}:{(time >> 5) & 63:02}:{(time & 31) * 2:02}"
    if what == "compression method":
        return {STORED: "stored", DEFLATED: "deflate"}.get(value, str(value))
    return str(value)


def _differing(
    where: str, said: list[tuple[str, int]], central: list[tuple[str, int]]
) -> str | None:
    """The first field ``said`` (by the local header or the data descriptor) otherwise than
    ``central``, in words.
    """
    for (what, value), (_, wanted) in zip(said, central, strict=True):
        if value != wanted:
            shown_said, shown_wanted = _shown_value(what, value), _shown_value(what, wanted)
            return (
                f"has another {what} in its {where} ({shown_said}) than in the central directory"
                f" ({shown_wanted})"
            )
    return None


def _disagreement(entry: Entry, local: _Local) -> str | None:
    """What ``local`` (the header streaming readers believe) says otherwise than the central
    directory, in words. The version needed may differ (zipfile raises the central one to 4.5 for an
    entry past 4 GiB), within limits."""
    if local.raw_name != entry.raw_name:
        return f"is named {shown_raw(local.raw_name)} in its local header: refused as spoofed"
    if (differ := local.flags ^ entry.flags) != 0:
        bit = differ & -differ  # the lowest bit that differs
        words = _FLAG_WORDS.get(bit, f"general-purpose flag bit {bit.bit_length() - 1}")
        return f"has another {words} in its local header than in the central directory"
    if (
        decode_name(local.raw_name, local.flags, local.extras.get(_EXTRA_UNICODE_PATH))
        != entry.stored
    ):
        return "has another name (its Unicode Path field) in its local header: refused as spoofed"
    values = [local.crc, local.csize, local.usize]
    wanted = [entry.crc, entry.compress_size, entry.file_size]
    # then zeros here, the values in the data descriptor (some writers: both)
    if entry.flags & _FLAG_DESCRIPTOR:
        values = [value or expected for value, expected in zip(values, wanted, strict=True)]
    said = [
        ("compression method", local.method),
        ("modification time", local.date << 16 | local.time),
    ]
    central = [("compression method", entry.method), ("modification time", entry.modified)]
    said, central = said + _values(*values), central + _values(*wanted)
    if (why := _differing("local header", said, central)) is not None:
        return why
    if (version := local.version & 0xFF) > MAX_EXTRACT_VERSION:
        return f"needs zip version {version // 10}.{version % 10} to extract, says its local header"
    return None


def _descriptor_values(tail: bytes, *, signed: bool, width: int) -> list[tuple[str, int]] | None:
    """CRC-32 and sizes of a data descriptor at the start of ``tail`` in one form, or None if it
    is not in it.
    """
    start = 4 if signed else 0
    if len(tail) < start + 4 + 2 * width or (signed and not tail.startswith(_DESCRIPTOR_SIGNATURE)):
        return None
    return _values(*struct.unpack_from("<LQQ" if width == 8 else "<LLL", tail, start))


def _check_descriptor(fh: BinaryIO, entry: Entry, local: _Local, limit: int) -> None:
    """Refuse a data descriptor (after the data, before ``limit``) that disagrees with the central
    directory. Its signature is optional and its sizes 4 or 8 bytes (ZIP64), so each form is tried;
    the error reads the likeliest."""
    data_end = local.start + entry.compress_size
    tail = _read_at(fh, data_end, min(24, max(0, limit - data_end)))
    central = _values(entry.crc, entry.compress_size, entry.file_size)
    forms = [(signed, width) for signed in (True, False) for width in (4, 8)]
    if any(
        _descriptor_values(tail, signed=signed, width=width) == central for signed, width in forms
    ):
        return
    likeliest = (tail.startswith(_DESCRIPTOR_SIGNATURE), 8 if _EXTRA_ZIP64 in local.extras else 4)
    said = _descriptor_values(tail, signed=likeliest[0], width=likeliest[1])
    why = (
        "its data descriptor is missing or cut short"
        if said is None
        else _differing("data descriptor", said, central)
    )
    raise ArchiveError(f"entry {shown(entry.stored)} {why}")


def check_layout(fh: BinaryIO, entries: list[Entry], central_start: int) -> list[Entry]:
    """Each entry with its data offset; refuse overlapping data (quoted-overlap bombs), data past
    its end, and a local header (what streaming readers believe) or data descriptor that tells
    another story than the central directory in any field: name, flags, method, time, CRC-32 and
    sizes (exit 2 naming the entry and the field)."""
    locals_ = [_read_local(fh, entry) for entry in entries]
    spans: list[tuple[int, int, str]] = []
    for entry, local in zip(entries, locals_, strict=True):
        if (end := local.start + entry.compress_size) > central_start:
            raise ArchiveError(
                f"entry {shown(entry.stored)} runs past the end of its data: truncated or corrupt"
            )
        spans.append((entry.header_offset, end, entry.stored))
    spans.sort()
    for (_, end, name), (start, _, following) in pairwise(spans):
        if end > start:
            raise ArchiveError(
                f"entries {shown(name)} and {shown(following)} overlap: refused as a zip bomb"
            )
    after = {
        start: following
        for (start, _, _), (following, _, _) in pairwise([*spans, (central_start, 0, "")])
    }
    for entry, local in zip(entries, locals_, strict=True):
        if (why := _disagreement(entry, local)) is not None:
            raise ArchiveError(f"entry {shown(entry.stored)} {why}")
        if entry.flags & _FLAG_DESCRIPTOR:  # between its data and whatever follows it
            _check_descriptor(fh, entry, local, after[entry.header_offset])
    return [replace(e, start=local.start) for e, local in zip(entries, locals_, strict=True)]


def check_limits(entries: list[Entry], max_ratio: float) -> int:
    """The declared total; refuse a per-entry or whole-archive expansion beyond ``max_ratio``:1
    and huge totals.
    """
    if not max_ratio > 0:
        raise UsageError(
            f"--max-ratio (max_ratio=) must be a positive number or inf, got {max_ratio!r}"
        )
    sizes = [(e.file_size, e.compress_size, f"entry {shown(e.stored)}", "") for e in entries]
    total, packed = sum(s[0] for s in sizes), sum(s[1] for s in sizes)
    for size, csize, what, of in [
        *sizes,
        (total, packed, f"the archive's {len(entries)} entries", " in total"),
    ]:
        if size >= RATIO_FLOOR and size > max_ratio * max(csize, 1):
            ratio = size / max(csize, 1)
            raise ArchiveError(
                f"{what} would expand {csize} bytes to {size} ({ratio:.0f}:1{of}, limit"
                f" {max_ratio:g}:1): refused as a zip bomb",
                hint=(
                    f"if you trust this archive, allow it with --max-ratio {math.ceil(ratio) + 1} "
                    "(max_ratio= in Python)"
                ),
            )
    if total > MAX_TOTAL_BYTES:
        raise ArchiveError(f"the archive would expand to {total} bytes (limit {MAX_TOTAL_BYTES})")
    return total


def check_lengths(entries: list[Entry], dest: Path) -> None:
    """Refuse names whose components exceed the destination file system's NAME_MAX, or whose path
    gets too long.
    """
    where = nearest_folder(dest)
    try:
        name_max, path_max = os.pathconf(where, "PC_NAME_MAX"), os.pathconf(where, "PC_PATH_MAX")
    except (OSError, ValueError):
        name_max, path_max = 255, 4096
    prefix = len(os.fsencode(dest.absolute())) + 1
    limit = path_max - 1 - _STAGING_MARGIN  # PATH_MAX counts the final NUL
    for entry in entries:
        encoded = entry.name.encode("utf-8")
        if (longest := max(len(part) for part in encoded.split(b"/"))) > name_max:
            raise ArchiveError(
                f"entry {shown(entry.stored)} has a component of {longest} bytes (limit {name_max})"
            )
        if prefix + len(encoded) > limit:
            raise ArchiveError(
                f"entry {shown(entry.stored)} would make a path of {prefix + len(encoded)} bytes in"
                f" {shown_name(dest)} (limit {limit})"
            )


def read_data(fh: BinaryIO, entry: Entry, chunk: int) -> Iterator[bytes]:
    """A file entry's bytes in pieces of at most ``chunk`` whatever its deflate stream claims,
    stopping before one more than it declares; its size and CRC-32 checked at the end."""
    what, size = shown(entry.stored), entry.file_size
    crc = written = 0
    fh.seek(entry.start)
    read = _inflated if entry.method == DEFLATED else _stored
    for out in read(fh, entry.compress_size, chunk, what):
        if written + len(out) > size:
            raise ArchiveError(f"entry {what} is larger than its declared {size} bytes")
        written += len(out)
        crc = zlib.crc32(out, crc)
        yield out
    if written != size:
        raise ArchiveError(f"entry {what} holds {written} bytes but declares {size}")
    if crc != entry.crc:
        raise IntegrityError(f"entry {what} is corrupt: its CRC-32 does not match")


def _read_some(fh: BinaryIO, size: int, what: str) -> bytes:
    """Up to ``size`` bytes of an entry's data (more than none)."""
    if not (data := fh.read(size)):
        raise ArchiveError(f"entry {what} is truncated: its data runs past the end of the file")
    return data


def _stored(fh: BinaryIO, remaining: int, chunk: int, what: str) -> Iterator[bytes]:
    """A stored entry's ``remaining`` bytes, in pieces of at most ``chunk``."""
    while remaining:
        data = _read_some(fh, min(chunk, remaining), what)
        remaining -= len(data)
        yield data


def _inflated(fh: BinaryIO, remaining: int, chunk: int, what: str) -> Iterator[bytes]:
    """A deflated entry's ``remaining`` bytes inflated, in pieces of at most ``chunk``; bytes after
    the end of the deflate stream are never read as data."""
    inflater = zlib.decompressobj(-15)
    while not inflater.eof:
        if inflater.unconsumed_tail:
            data = inflater.unconsumed_tail
        elif remaining:
            data = _read_some(fh, min(chunk, remaining), what)
            remaining -= len(data)
        else:
            # input used up: drain what the inflater still holds, then it must have ended
            data = b""
        try:
            out = inflater.decompress(data, chunk)
        except zlib.error as exc:
            raise ArchiveError(f"entry {what} has a broken deflate stream: {exc}") from None
        if not data and not out and not inflater.eof:
            raise ArchiveError(f"entry {what} has a broken deflate stream: it ends early")
        if out:
            yield out
