"""Reading a zip without trusting it: end record, ZIP64, central directory, local headers, names and data.

Everything an entry claims is checked here and refused as an ArchiveError naming it (exit 2); nothing is
written. Python's zipfile is not used for reading: it raises NotImplementedError, UnicodeDecodeError and
friends on hostile input, and guesses CP437 for the raw UTF-8 names Info-ZIP writes.
"""

from __future__ import annotations

import struct
import zlib
from collections import namedtuple
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from mdl.errors import ArchiveError

STORED, DEFLATED = 0, 8
MAX_EXTRACT_VERSION = 63  # APPNOTE 6.3; anything newer needs features we do not have
MAX_CENTRAL_BYTES = 256 << 20
_FLAG_ENCRYPTED, _FLAG_DESCRIPTOR, _FLAG_PATCHED, _FLAG_STRONG = 0x1, 0x8, 0x20, 0x40
_FLAG_UTF8, _FLAG_MASKED = 0x800, 0x2000
_EOCD = struct.Struct("<4sHHHHLLH")
_EOCD64_LOCATOR = struct.Struct("<4sLQL")
_EOCD64 = struct.Struct("<4sQHHLLQQQQ")
_CENTRAL = struct.Struct("<4sBBHHHHHLLLHHHHHLL")
_Central = namedtuple(
    "_Central",
    "signature made_by system version flags method time date crc csize usize name_len extra_len comment_len disk"
    " internal attr offset",
)
_LOCAL = struct.Struct("<4sHHHHHLLLHH")
_EXTRA_ZIP64, _EXTRA_UNICODE_PATH = 0x0001, 0x7075
_MAX_SHOWN = 120


def shown(name: str) -> str:
    """``repr`` of an entry name, shortened so a message stays one readable line."""
    return repr(name if len(name) <= _MAX_SHOWN else name[:_MAX_SHOWN] + "…")


def shown_raw(raw: bytes) -> str:
    """``repr`` of an undecodable name's bytes, shortened like :func:`shown`."""
    return repr(raw) if len(raw) <= _MAX_SHOWN else repr(raw[:_MAX_SHOWN])[:-1] + "…'"


@dataclass(frozen=True)
class ZipEntry:
    """One central directory record, decoded and sanity-checked (offsets are absolute in the file)."""

    raw_name: bytes
    name: str  # as stored, a folder's trailing "/" included
    flags: int
    method: int
    version_needed: int
    crc: int
    compress_size: int
    file_size: int
    header_offset: int
    create_system: int
    external_attr: int


@dataclass(frozen=True)
class ZipIndex:
    """Every entry, and where the central directory starts (no entry's data may reach past it)."""

    entries: tuple[ZipEntry, ...]
    central_start: int


def _broken(why: str) -> ArchiveError:
    return ArchiveError(f"not a readable zip archive (truncated or corrupt): {why}")


def _read_at(fh: BinaryIO, offset: int, size: int) -> bytes:
    if offset < 0:
        raise _broken(f"a record would start before the beginning of the file ({offset})")
    fh.seek(offset)
    data = fh.read(size)
    if len(data) != size:
        raise _broken(f"{size} bytes at offset {offset} run past the end of the file")
    return data


def _extras(data: bytes, what: str) -> dict[int, bytes]:
    """The extra fields of a header by id (the first of each id wins, as in unzip)."""
    fields: dict[int, bytes] = {}
    pos = 0
    while pos + 4 <= len(data):
        kind, size = struct.unpack_from("<HH", data, pos)
        if pos + 4 + size > len(data):
            raise ArchiveError(f"entry {what} has a corrupt extra field")
        fields.setdefault(kind, data[pos + 4 : pos + 4 + size])
        pos += 4 + size
    return fields


def decode_name(raw: bytes, flags: int, unicode_path: bytes | None) -> str:
    """An entry's name as unzip, 7-Zip and bsdtar read it; ArchiveError if it declares UTF-8 but is not.

    Flag bit 11 means UTF-8. Otherwise Info-ZIP's Unicode Path field (0x7075) wins when its CRC-32 matches
    the header's name; otherwise a name that decodes as UTF-8 is UTF-8 (zip 3.0 writes raw UTF-8 without
    the flag), and anything else is CP437, the zip default.
    """
    if flags & _FLAG_UTF8:
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ArchiveError(f"entry {shown_raw(raw)} is marked UTF-8 but its name is not valid UTF-8") from None
    if unicode_path is not None and len(unicode_path) >= 5 and unicode_path[0] == 1:
        (crc,) = struct.unpack_from("<L", unicode_path, 1)
        if crc == zlib.crc32(raw):
            try:
                return unicode_path[5:].decode("utf-8")
            except UnicodeDecodeError:
                raise ArchiveError(f"entry {shown_raw(raw)} has a Unicode Path field that is not valid UTF-8") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("cp437")


def _end_records(fh: BinaryIO) -> tuple[int, int, int, int]:
    """(entry count, central directory size, its offset as recorded, where it ends in the file)."""
    size = fh.seek(0, 2)
    if size < _EOCD.size:
        raise _broken(f"{size} bytes is too short for a zip")
    tail_start = max(0, size - _EOCD.size - 0xFFFF)
    tail = _read_at(fh, tail_start, size - tail_start)
    pos = tail.rfind(b"PK\x05\x06")
    while pos >= 0 and pos + _EOCD.size > len(tail):
        pos = tail.rfind(b"PK\x05\x06", 0, pos)
    if pos < 0:
        raise _broken("no end of central directory record")
    _, disk, cd_disk, count_here, count, cd_size, cd_offset, _ = _EOCD.unpack_from(tail, pos)
    eocd_at = tail_start + pos
    if eocd_at >= _EOCD64_LOCATOR.size:
        locator = _read_at(fh, eocd_at - _EOCD64_LOCATOR.size, _EOCD64_LOCATOR.size)
        if locator.startswith(b"PK\x06\x07"):
            _, _, _, disks = _EOCD64_LOCATOR.unpack(locator)
            if disks > 1:
                raise ArchiveError("split or spanned archives are not supported")
            record_at = eocd_at - _EOCD64_LOCATOR.size - _EOCD64.size
            record = _read_at(fh, record_at, _EOCD64.size)
            if not record.startswith(b"PK\x06\x06"):
                raise _broken("the ZIP64 end record is missing")
            _, _, _, _, disk, cd_disk, count_here, count, cd_size, cd_offset = _EOCD64.unpack(record)
            return _check_counts(disk, cd_disk, count_here, count), cd_size, cd_offset, record_at
    return _check_counts(disk, cd_disk, count_here, count), cd_size, cd_offset, eocd_at


def _check_counts(disk: int, cd_disk: int, count_here: int, count: int) -> int:
    if disk != 0 or cd_disk != 0 or count_here != count:
        raise ArchiveError("split or spanned archives are not supported")
    return count


def read_index(fh: BinaryIO, *, max_entries: int) -> ZipIndex:
    """Parse the central directory; refuse what is corrupt, split, or has more than ``max_entries`` entries."""
    count, cd_size, cd_offset, cd_end = _end_records(fh)
    if count > max_entries:
        raise ArchiveError(f"the archive has {count} entries (limit {max_entries})")
    cd_start = cd_end - cd_size
    base = cd_start - cd_offset  # bytes prepended to the archive (a stub); offsets are relative to the zip
    if cd_start < 0 or base < 0:
        raise _broken("the central directory does not fit in the file")
    if cd_size > MAX_CENTRAL_BYTES:
        raise ArchiveError(f"the central directory is {cd_size} bytes (limit {MAX_CENTRAL_BYTES})")
    data = _read_at(fh, cd_start, cd_size)
    entries: list[ZipEntry] = []
    pos = 0
    while pos < len(data):
        if len(entries) >= count:
            raise _broken("the central directory holds more records than the end record counts")
        entry, pos = _central_record(data, pos, base)
        entries.append(entry)
    if len(entries) != count:
        raise _broken(f"the end record counts {count} entries but the central directory has {len(entries)}")
    return ZipIndex(tuple(entries), cd_start)


def _central_record(data: bytes, pos: int, base: int) -> tuple[ZipEntry, int]:
    if pos + _CENTRAL.size > len(data) or data[pos : pos + 4] != b"PK\x01\x02":
        raise _broken(f"bad central directory record at offset {pos}")
    rec = _Central._make(_CENTRAL.unpack_from(data, pos))
    start = pos + _CENTRAL.size
    end = start + rec.name_len + rec.extra_len + rec.comment_len
    if end > len(data):
        raise _broken(f"central directory record at offset {pos} runs past its end")
    raw = data[start : start + rec.name_len]
    extras = _extras(data[start + rec.name_len : start + rec.name_len + rec.extra_len], shown_raw(raw))
    name = decode_name(raw, rec.flags, extras.get(_EXTRA_UNICODE_PATH))
    usize, csize, offset, disk = _zip64_values(extras.get(_EXTRA_ZIP64), rec, name)
    if disk != 0:
        raise ArchiveError(f"entry {shown(name)} is on another disk: split archives are not supported")
    version = rec.version & 0xFF
    entry = ZipEntry(
        raw, name, rec.flags, rec.method, version, rec.crc, csize, usize, base + offset, rec.system, rec.attr
    )
    return entry, end


def _zip64_values(field: bytes | None, rec: _Central, name: str) -> list[int]:
    """Sizes, offset and disk, those marked 0xFFFFFFFF (0xFFFF for the disk) replaced by their ZIP64 extra values."""
    values = [rec.usize, rec.csize, rec.offset, rec.disk]
    wanted = [v == 0xFFFFFFFF for v in values[:3]] + [rec.disk == 0xFFFF]
    pos = 0
    for i, needed in enumerate(wanted):
        if not needed:
            continue
        width = 4 if i == 3 else 8
        if field is None or pos + width > len(field):
            raise ArchiveError(f"entry {shown(name)} lacks the ZIP64 sizes its header promises")
        values[i] = int.from_bytes(field[pos : pos + width], "little")
        pos += width
    return values


def check_flags(entry: ZipEntry) -> None:
    """Refuse what this reader cannot do safely: encryption, patched data, new versions, other methods."""
    what = shown(entry.name)
    if entry.flags & (_FLAG_ENCRYPTED | _FLAG_STRONG | _FLAG_MASKED):
        raise ArchiveError(f"entry {what} is encrypted")
    if entry.flags & _FLAG_PATCHED:
        raise ArchiveError(f"entry {what} holds patched data (flag bit 5), which is not supported")
    if entry.version_needed > MAX_EXTRACT_VERSION:
        version = f"{entry.version_needed // 10}.{entry.version_needed % 10}"
        raise ArchiveError(f"entry {what} needs zip version {version} to extract (supported: up to 6.3)")
    if entry.method not in (STORED, DEFLATED):
        raise ArchiveError(f"entry {what} uses compression method {entry.method}; only stored and deflate")
    if entry.method == STORED and entry.compress_size != entry.file_size:
        raise ArchiveError(f"entry {what} is stored but declares {entry.file_size} bytes in {entry.compress_size}")


@dataclass(frozen=True)
class LocalHeader:
    """What an entry's local header says: readers that stream a zip believe this, not the central directory."""

    raw_name: bytes
    flags: int
    method: int
    data_start: int


def read_local(fh: BinaryIO, entry: ZipEntry) -> LocalHeader:
    """An entry's local header, and so where its data begins."""
    fh.seek(entry.header_offset)
    header = fh.read(_LOCAL.size)
    if len(header) < _LOCAL.size or not header.startswith(b"PK\x03\x04"):
        raise ArchiveError(f"entry {shown(entry.name)} has no local header: truncated or corrupt")
    _, _, flags, method, _, _, _, _, _, name_len, extra_len = _LOCAL.unpack(header)
    raw = _read_at(fh, entry.header_offset + _LOCAL.size, name_len)
    return LocalHeader(raw, flags, method, entry.header_offset + _LOCAL.size + name_len + extra_len)


def check_local(entry: ZipEntry, local: LocalHeader) -> None:
    """Refuse a local header that tells another story than the central directory (a spoofing trick)."""
    what = shown(entry.name)
    if local.raw_name != entry.raw_name:
        raise ArchiveError(f"entry {what} is named {shown_raw(local.raw_name)} in its local header: refused as spoofed")
    if local.flags & (_FLAG_ENCRYPTED | _FLAG_STRONG | _FLAG_MASKED | _FLAG_PATCHED) or local.method != entry.method:
        raise ArchiveError(f"entry {what}: its local header disagrees with the central directory")


def iter_data(fh: BinaryIO, entry: ZipEntry, start: int, chunk: int) -> Iterator[bytes]:
    """An entry's uncompressed bytes in pieces of at most ``chunk``, whatever its deflate stream claims."""
    what = shown(entry.name)
    remaining = entry.compress_size
    fh.seek(start)
    inflater = zlib.decompressobj(-15) if entry.method == DEFLATED else None
    while True:
        if inflater is not None and inflater.unconsumed_tail:
            data = inflater.unconsumed_tail
        elif remaining:
            data = fh.read(min(chunk, remaining))
            if not data:
                raise ArchiveError(f"entry {what} is truncated: its data runs past the end of the file")
            remaining -= len(data)
        elif inflater is None or inflater.eof:
            return
        else:
            data = b""  # input used up: drain what the inflater still holds, then it must have ended
        if inflater is None:
            yield data
            continue
        try:
            out = inflater.decompress(data, chunk)
        except zlib.error as exc:
            raise ArchiveError(f"entry {what} has a broken deflate stream: {exc}") from None
        if out:
            yield out
        if inflater.eof:
            return  # bytes after the end of the stream are never read as data
        if not data and not out:
            raise ArchiveError(f"entry {what} has a broken deflate stream: it ends early")
