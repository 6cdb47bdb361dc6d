"""A zip writer for output that cannot be rewound (``mdl pack -o -`` into a pipe).

zipfile marks every entry of a non-seekable stream with a data descriptor (flag bit 3), and streaming
readers (Java's ZipInputStream: "only DEFLATED entries can have EXT descriptor") cannot read a *stored*
entry whose size is not in its local header. The streamed pack hashes every file first, so stored entries
get size and CRC-32 in the local header and no descriptor; deflated ones keep the descriptor. Sizes of
4 GiB and more get ZIP64 fields; an entry that only *starts* past 4 GiB stays ZIP32 (its offset goes in the
central directory), since Java reads an 8-byte descriptor only for big entries. stream-zip makes such
entries ZIP64, which is why it is not used (bench/README-pack.md).
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from typing import IO

from mdl.errors import IntegrityError, MdlError

_MARK = 0xFFFFFFFF  # "see the ZIP64 extra field"
ZIP64_FROM = 0xFFFFFFFF  # sizes and offsets from here on need ZIP64 fields (lowered in tests)
_FILE_ATTR, _FOLDER_ATTR = 0o100644 << 16, 0o040755 << 16 | 0x10  # and the MS-DOS directory bit, as zip -r
_DESCRIPTOR, _UTF8 = 0x08, 0x800
# The fields a local header and a central record share: version needed, flags, method, time, date, CRC-32,
# compressed and uncompressed size, name and extra lengths.
_COMMON = struct.Struct("<HHHHHLLLHH")


def _mark(value: int) -> int:
    return _MARK if value >= ZIP64_FROM else value


class StreamZipWriter:
    """Writes entries strictly in order (:meth:`start`, :meth:`write`, :meth:`end`), never seeking, keeping the
    size and sha256 of everything written; :meth:`close` writes the central directory."""

    def __init__(self, out: IO[bytes], date_time: tuple[int, int, int, int, int, int]) -> None:
        year, month, day, hour, minute, second = date_time
        self._stamp = (hour << 11 | minute << 5 | second // 2, (year - 1980) << 9 | month << 5 | day)
        self._out = out
        self._central: list[bytes] = []
        self.size = 0
        self.digest = hashlib.sha256()

    def _raw(self, data: bytes | memoryview) -> None:
        if data:
            self._out.write(data)
            self.digest.update(data)
            self.size += len(data)

    def _record(
        self, prefix: bytes, version: int, crc: int, sizes: tuple[int, int], extra: bytes, tail: bytes
    ) -> bytes:
        common = _COMMON.pack(
            version, self._flags, self._method, *self._stamp, crc, *sizes, len(self._name), len(extra)
        )
        return prefix + common + tail + self._name + extra

    def start(self, name: str, *, size: int, crc: int | None, deflate: bool, attr: int = _FILE_ATTR) -> None:
        """Begin an entry of ``size`` bytes; a stored one needs its ``crc`` now, for its local header."""
        self._shown, self._name, self._size, self._expected = name, name.encode("utf-8"), size, crc
        self._offset, self._attr, self._method = self.size, attr, 8 if deflate else 0
        self._flags = (0 if self._name.isascii() else _UTF8) | (_DESCRIPTOR if deflate else 0)
        self._crc = self._count = self._compressed = 0
        self._squeezer = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -15) if deflate else None
        if deflate:
            # zlib's deflateBound: the most deflate can grow incompressible data. Only then ZIP64, because Java
            # reads an 8-byte descriptor only when the real sizes need it, whatever the local header says.
            self._zip64 = size + (size >> 12) + (size >> 14) + (size >> 25) + 13 >= ZIP64_FROM
        elif crc is None:
            raise MdlError(f"internal: stored entry '{name}' needs its CRC-32 before it is written")
        else:
            self._zip64 = size >= ZIP64_FROM
        known = (0, 0) if deflate else (size, size)
        extra = struct.pack("<HHQQ", 1, 16, *known) if self._zip64 else b""
        self._version = 45 if self._zip64 else 20
        sizes = (_MARK, _MARK) if self._zip64 else known
        self._raw(self._record(b"PK\x03\x04", self._version, crc or 0, sizes, extra, b""))

    def write(self, data: bytes | memoryview, /) -> int:
        self._crc = zlib.crc32(data, self._crc)
        self._count += len(data)
        self._emit(self._squeezer.compress(data) if self._squeezer is not None else data)
        return len(data)

    def _emit(self, data: bytes | memoryview) -> None:
        self._compressed += len(data)
        self._raw(data)

    def end(self) -> None:
        """Finish the current entry: check it against what was announced, write its descriptor if deflated."""
        if self._count != self._size or self._expected not in (None, self._crc):
            raise IntegrityError(f"'{self._shown}' changed between hashing and packing; is the run still writing?")
        if self._squeezer is not None:
            self._emit(self._squeezer.flush())
            if not self._zip64 and self._compressed >= _MARK:
                raise MdlError(f"internal: '{self._shown}' deflated to more than 4 GiB without ZIP64")
            layout = "<4sLQQ" if self._zip64 else "<4sLLL"
            self._raw(struct.pack(layout, b"PK\x07\x08", self._crc, self._compressed, self._count))
        values = (self._count, self._compressed, self._offset)
        extra = b"".join(struct.pack("<Q", v) for v in values if v >= ZIP64_FROM)
        version = self._version
        if extra:
            extra, version = struct.pack("<HH", 1, len(extra)) + extra, 45
        usize, csize, offset = map(_mark, values)
        tail = struct.pack("<HHHLL", 0, 0, 0, self._attr, offset)  # comment length, disk, internal attributes
        self._central.append(
            self._record(b"PK\x01\x02" + bytes([version, 3]), version, self._crc, (csize, usize), extra, tail)
        )

    def add_folder(self, name: str) -> None:
        """An empty folder's entry (``name`` ends with "/"): stored, no data."""
        self.start(name, size=0, crc=0, deflate=False, attr=_FOLDER_ATTR)
        self.end()

    def close(self) -> None:
        """The central directory and end records (ZIP64 ones when counts or offsets need them)."""
        start = self.size
        for record in self._central:
            self._raw(record)
        size, count = self.size - start, len(self._central)
        if count >= 0xFFFF or start >= ZIP64_FROM or size >= ZIP64_FROM:
            where = self.size
            self._raw(struct.pack("<4sQHHLLQQQQ", b"PK\x06\x06", 44, 45, 45, 0, 0, count, count, size, start))
            self._raw(struct.pack("<4sLQL", b"PK\x06\x07", 0, where, 1))
        count16 = min(count, 0xFFFF)
        self._raw(struct.pack("<4sHHHHLLH", b"PK\x05\x06", 0, 0, count16, count16, _mark(size), _mark(start), 0))
