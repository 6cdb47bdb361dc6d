"""Xorb ranges (hub-docs docs/xet/xorb.md): chunks back to back, each an 8-byte header and its
stored, LZ4 or byte-grouped LZ4 bytes, decoded with every length checked and no decompression larger
than a chunk can be."""

from __future__ import annotations

import struct

# an uncompressed chunk is never larger (xorb.md, chunking.md's MAX_CHUNK_SIZE)
MAX_CHUNK = 128 * 1024
HEADER_BYTES = 8
STORED, LZ4, GROUPED_LZ4 = 0, 1, 2  # the compression schemes xorb.md defines
# version u8 + compressed length u24 LE, then scheme u8 + uncompressed length u24 LE: two u32 LE
# words.
_HEADER = struct.Struct("<II")


class XorbError(ValueError):
    """The bytes are not what a xorb range must be."""


class UnknownFormat(XorbError):
    """A chunk header names a version or compression scheme this reader does not know (a newer
    format).
    """


def _inflate(index: int, payload: memoryview, length: int) -> bytes:
    """One LZ4 frame that must decode to exactly ``length`` bytes; never more than that is
    decompressed.
    """
    from lz4.frame import LZ4FrameDecompressor

    decompressor = LZ4FrameDecompressor()
    try:
        raw: bytes = decompressor.decompress(payload, max_length=length)
        if not decompressor.eof and not decompressor.needs_input:
            # The output stopped at `length`: what is left must be the frame's end, not more data.
            raw += decompressor.decompress(b"", max_length=1)
    except RuntimeError as exc:  # lz4's one error type for a malformed frame
        raise XorbError(f"chunk {index}: bad LZ4 frame ({exc})") from None
    if len(raw) > length or (not decompressor.eof and not decompressor.needs_input):
        raise XorbError(f"chunk {index}: decodes to more than the {length} bytes its header says")
    if not decompressor.eof:
        raise XorbError(f"chunk {index}: LZ4 frame cut short")
    if decompressor.unused_data:
        raise XorbError(f"chunk {index}: {len(decompressor.unused_data)} bytes after its LZ4 frame")
    if len(raw) != length:
        raise XorbError(f"chunk {index}: decodes to {len(raw)} bytes, its header says {length}")
    return raw


def _ungroup(grouped: bytes) -> bytes:
    """Undo byte grouping by 4: group i holds bytes i, i+4, i+8, … and the first ``len % 4``
    groups one more.
    """
    size = len(grouped)
    out = bytearray(size)
    whole, extra = divmod(size, 4)
    start = 0
    for i in range(4):
        end = start + whole + (i < extra)
        out[i::4] = grouped[start:end]
        start = end
    return bytes(out)


def chunk_size(data: bytes | bytearray | memoryview, at: int) -> int | None:
    """Bytes the chunk whose header starts at ``at`` takes, its header included; None while the
    header is cut short (a stream's reader asks before it has the whole chunk)."""
    if len(data) - at < HEADER_BYTES:
        return None
    first: int = _HEADER.unpack_from(data, at)[0]  # version u8, then the compressed length u24
    return HEADER_BYTES + (first >> 8)


def decode_chunks(data: bytes | memoryview, count: int) -> list[bytes]:
    """Exactly ``count`` chunks back to back that consume ``data`` exactly, decoded; XorbError
    (UnknownFormat for a header version other than 0 or a scheme other than 0/1/2) says which chunk
    of the range and what is wrong."""
    view = memoryview(data)
    size = len(view)
    chunks: list[bytes] = []
    at = 0
    for index in range(count):
        if size - at < HEADER_BYTES:
            raise XorbError(
                f"chunk {index}: cut short in its header ({size - at} of {HEADER_BYTES} bytes)"
            )
        first, second = _HEADER.unpack_from(view, at)
        version, packed, scheme, length = first & 0xFF, first >> 8, second & 0xFF, second >> 8
        if version != 0:
            raise UnknownFormat(f"chunk {index}: unknown chunk header version {version}")
        if scheme not in (STORED, LZ4, GROUPED_LZ4):
            raise UnknownFormat(f"chunk {index}: unknown compression scheme {scheme}")
        if length > MAX_CHUNK:
            raise XorbError(
                f"chunk {index}: header says {length} bytes, more than a chunk's {MAX_CHUNK}"
            )
        at += HEADER_BYTES
        if packed > size - at:
            raise XorbError(f"chunk {index}: cut short ({size - at} of {packed} bytes)")
        payload = view[at : at + packed]
        at += packed
        if scheme == STORED:
            if packed != length:
                raise XorbError(
                    f"chunk {index}: stored with {packed} bytes, its header says {length}"
                )
            chunks.append(bytes(payload))
        elif scheme == LZ4:
            chunks.append(_inflate(index, payload, length))
        else:
            chunks.append(_ungroup(_inflate(index, payload, length)))
    if at != size:
        raise XorbError(f"{size - at} bytes after the last of {count} chunks")
    return chunks
