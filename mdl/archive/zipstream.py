"""A zip writer for output that cannot be rewound (``mdl pack -o -`` into a pipe).

zipfile marks every entry of a non-seekable stream with a data descriptor (flag bit 3), and streaming
readers (Java's ZipInputStream: "only DEFLATED entries can have EXT descriptor", Node's unzipper) cannot
read a *stored* entry whose size is not in its local header. The streamed pack hashes every file first,
so it knows each size and CRC-32: stored entries get them in the local header and no descriptor.
Deflated entries (whose compressed size is only known afterwards) keep the descriptor, which every
streaming reader handles. Sizes of 4 GiB and more get ZIP64 fields; an entry that only *starts* past 4 GiB
stays ZIP32 (its offset goes in the central directory), since Java reads an 8-byte descriptor only for big
entries. That is why this is not the stream-zip package: it makes such entries ZIP64 (bench/README-pack.md).
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable
from typing import Protocol

from mdl.errors import IntegrityError, MdlError

_MARK = 0xFFFFFFFF  # "see the ZIP64 extra field"
ZIP64_FROM = 0xFFFFFFFF  # sizes and offsets from here on need ZIP64 fields (lowered in tests)
_UNIX_FILE_ATTR = 0o100644 << 16
_UNIX_FOLDER_ATTR = 0o040755 << 16 | 0x10  # and the MS-DOS directory bit, as zip -r writes it
_FLAG_DESCRIPTOR, _FLAG_UTF8 = 0x08, 0x800


class Output(Protocol):
    """Where archive bytes go, in order."""

    def write(self, data: bytes | memoryview, /) -> int: ...


class EntrySink:
    """What an entry's body writes into: counts bytes, computes CRC-32, deflates when asked."""

    def __init__(self, writer: StreamZipWriter, deflate: bool) -> None:
        self._writer = writer
        self._squeezer = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -15) if deflate else None
        self.crc = 0
        self.size = 0
        self.compressed = 0

    def write(self, data: bytes | memoryview, /) -> int:
        """Take uncompressed bytes."""
        self.crc = zlib.crc32(data, self.crc)
        count = memoryview(data).nbytes
        self.size += count
        self._emit(self._squeezer.compress(data) if self._squeezer is not None else data)
        return count

    def finish(self) -> None:
        """Flush the deflate stream."""
        if self._squeezer is not None:
            self._emit(self._squeezer.flush())

    def _emit(self, data: bytes | memoryview) -> None:
        if data:
            self.compressed += memoryview(data).nbytes
            self._writer.raw(data)


def _dos(date_time: tuple[int, int, int, int, int, int]) -> tuple[int, int]:
    year, month, day, hour, minute, second = date_time
    return hour << 11 | minute << 5 | second // 2, (year - 1980) << 9 | month << 5 | day


class StreamZipWriter:
    """Writes entries strictly in order, never seeking; :meth:`close` writes the central directory."""

    def __init__(self, out: Output) -> None:
        self._out = out
        self._offset = 0
        self._central: list[bytes] = []

    def raw(self, data: bytes | memoryview) -> None:
        """Append bytes to the archive."""
        self._out.write(data)
        self._offset += memoryview(data).nbytes

    def add(
        self,
        name: str,
        *,
        size: int,
        crc: int | None,
        deflate: bool,
        date_time: tuple[int, int, int, int, int, int],
        body: Callable[[EntrySink], None],
        attr: int = _UNIX_FILE_ATTR,
    ) -> None:
        """One file entry whose ``body`` writes exactly ``size`` bytes; stored entries need their ``crc`` now."""
        encoded = name.encode("utf-8")
        flags = 0 if encoded.isascii() else _FLAG_UTF8
        offset = self._offset
        dostime, dosdate = _dos(date_time)
        if deflate:
            # zlib's deflateBound: the most deflate can grow incompressible data. Only then ZIP64, because Java
            # reads an 8-byte descriptor only when the real sizes need it, whatever the local header says.
            zip64 = size + (size >> 12) + (size >> 14) + (size >> 25) + 13 >= ZIP64_FROM
            flags |= _FLAG_DESCRIPTOR
            local_crc, local_sizes = 0, (_MARK, _MARK) if zip64 else (0, 0)
            local_extra = struct.pack("<HHQQ", 1, 16, 0, 0) if zip64 else b""
            method = 8
        else:
            if crc is None:
                raise MdlError(f"internal: stored entry '{name}' needs its CRC-32 before it is written")
            zip64 = size >= ZIP64_FROM
            local_crc, local_sizes = crc, (_MARK, _MARK) if zip64 else (size, size)
            local_extra = struct.pack("<HHQQ", 1, 16, size, size) if zip64 else b""
            method = 0
        version = 45 if zip64 else 20
        self.raw(
            struct.pack(
                "<4sHHHHHLLLHH",
                b"PK\x03\x04",
                version,
                flags,
                method,
                dostime,
                dosdate,
                local_crc,
                local_sizes[1],
                local_sizes[0],
                len(encoded),
                len(local_extra),
            )
            + encoded
            + local_extra
        )
        sink = EntrySink(self, deflate)
        body(sink)
        sink.finish()
        if sink.size != size or (crc is not None and sink.crc != crc):
            raise IntegrityError(f"'{name}' changed between hashing and packing; is the run still writing?")
        if deflate:
            if zip64:
                self.raw(struct.pack("<4sLQQ", b"PK\x07\x08", sink.crc, sink.compressed, size))
            elif sink.compressed >= _MARK:
                raise MdlError(f"internal: '{name}' deflated to more than 4 GiB without ZIP64")
            else:
                self.raw(struct.pack("<4sLLL", b"PK\x07\x08", sink.crc, sink.compressed, size))
        record = self._central_record(encoded, flags, method, dostime, dosdate, sink, offset, version, attr)
        self._central.append(record)

    def add_folder(self, name: str, *, date_time: tuple[int, int, int, int, int, int]) -> None:
        """An empty folder's entry (``name`` ends with "/"): stored, no data."""
        self.add(name, size=0, crc=0, deflate=False, date_time=date_time, body=lambda _: None, attr=_UNIX_FOLDER_ATTR)

    @staticmethod
    def _central_record(
        encoded: bytes,
        flags: int,
        method: int,
        dostime: int,
        dosdate: int,
        sink: EntrySink,
        offset: int,
        version: int,
        attr: int,
    ) -> bytes:
        values = [sink.size, sink.compressed, offset]
        big = [v >= ZIP64_FROM for v in values]
        extra = b"".join(struct.pack("<Q", v) for v, over in zip(values, big, strict=True) if over)
        if extra:
            extra = struct.pack("<HH", 1, len(extra)) + extra
            version = 45
        shown = [_MARK if over else v for v, over in zip(values, big, strict=True)]
        return (
            struct.pack(
                "<4sBBHHHHHLLLHHHHHLL",
                b"PK\x01\x02",
                version,
                3,
                version,
                flags,
                method,
                dostime,
                dosdate,
                sink.crc,
                shown[1],
                shown[0],
                len(encoded),
                len(extra),
                0,
                0,
                0,
                attr,
                shown[2],
            )
            + encoded
            + extra
        )

    def close(self) -> None:
        """The central directory and end records (ZIP64 ones when counts or offsets need them)."""
        start = self._offset
        for record in self._central:
            self.raw(record)
        size = self._offset - start
        count = len(self._central)
        if count >= 0xFFFF or start >= ZIP64_FROM or size >= ZIP64_FROM:
            where = self._offset
            self.raw(struct.pack("<4sQHHLLQQQQ", b"PK\x06\x06", 44, 45, 45, 0, 0, count, count, size, start))
            self.raw(struct.pack("<4sLQL", b"PK\x06\x07", 0, where, 1))
        self.raw(
            struct.pack(
                "<4sHHHHLLH",
                b"PK\x05\x06",
                0,
                0,
                min(count, 0xFFFF),
                min(count, 0xFFFF),
                _MARK if size >= ZIP64_FROM else size,
                _MARK if start >= ZIP64_FROM else start,
                0,
            )
        )
