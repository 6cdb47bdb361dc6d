"""Xorb ranges (hub-docs docs/xet/xorb.md): chunks back to back, each an 8-byte header and its
stored, LZ4 or byte-grouped LZ4 bytes, decoded with every length checked and no decompression larger
than a chunk can be."""

from __future__ import annotations

import importlib
import struct
import threading
from typing import Any

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


# each thread's LZ4 decompression context, kept between chunks once one ends cleanly: a fresh one
# allocates (and the kernel zeroes) its block buffers on every chunk
_lz4 = threading.local()


def _inflate(index: int, payload: memoryview, length: int) -> bytes:
    """One LZ4 frame that must decode to exactly ``length`` bytes; never more than that is
    decompressed. The buffer goes to lz4 as it is (no copy) and lz4 releases the GIL."""
    from lz4.frame import create_decompression_context, decompress_chunk

    context = getattr(_lz4, "context", None) or create_decompression_context()
    _lz4.context = None  # back only after a clean frame: an error may leave it mid-frame
    try:
        raw, used, eof = decompress_chunk(context, payload, max_length=length)
        if not eof and used < len(payload):
            # The output stopped at `length`: what is left must be the frame's end, not more data.
            more, extra, eof = decompress_chunk(context, payload[used:], max_length=1)
            if more:
                raise XorbError(
                    f"chunk {index}: decodes to more than the {length} bytes its header says"
                )
            used += extra
    except RuntimeError as exc:  # lz4's one error type for a malformed frame
        raise XorbError(f"chunk {index}: bad LZ4 frame ({exc})") from None
    if not eof:
        raise XorbError(f"chunk {index}: LZ4 frame cut short")
    if used < len(payload):
        raise XorbError(f"chunk {index}: {len(payload) - used} bytes after its LZ4 frame")
    if len(raw) != length:
        raise XorbError(f"chunk {index}: decodes to {len(raw)} bytes, its header says {length}")
    _lz4.context = context
    return raw  # type: ignore[no-any-return]  # lz4's stubs leave it untyped


GROUPS = 4  # byte grouping's group count (xorb.md: BG4)
# a decoded chunk: a BG4 one is a read-only view of the array it was un-grouped into (no copy)
Chunk = bytes | memoryview

# numpy, loaded on a thread of its own once a process has un-grouped PYTHON_FIRST bytes of BG4
# chunks in Python: None not yet there, False not installed (or turned off). Its import costs
# about 0.1 CPU-s, more than un-grouping those bytes in Python (about 0.07 s): a file smaller than
# that never waits for it, and chunks decoded while it loads are un-grouped in Python.
PYTHON_FIRST = 64 << 20
_python_bytes = 0  # BG4 bytes un-grouped in Python so far (counted loosely: a hint, not a tally)
_np: Any = None
_np_loader: threading.Thread | None = None
_np_lock = threading.Lock()


def _load_numpy() -> None:
    global _np
    try:
        numpy = importlib.import_module("numpy")  # typed Any here: its stubs are optional
    except ImportError:
        _np = False
    else:
        _np = numpy


def _numpy(*, wait: bool = False) -> Any:
    """numpy if it is loaded, else None (its import started on a thread once PYTHON_FIRST bytes
    were un-grouped in Python; with ``wait``, started now and finished first)."""
    global _np_loader
    if _np is None and (wait or _python_bytes >= PYTHON_FIRST):
        with _np_lock:
            if _np_loader is None:
                # not a daemon: the interpreter's exit waits for an import under way
                _np_loader = threading.Thread(target=_load_numpy, name="mdl-numpy")
                _np_loader.start()
        if wait:
            _np_loader.join()
    return _np or None


def use_numpy(on: bool) -> None:
    """Whether BG4 chunks are un-grouped by numpy when it is installed; on: loaded now (benches and
    tests compare the two ways)."""
    global _np, _np_loader
    with _np_lock:
        _np, _np_loader = (None, None) if on else (False, None)
    if on:
        _numpy(wait=True)


def numpy_version() -> str | None:
    """The numpy that un-groups BG4 chunks, if any (waits for its import)."""
    np = _numpy(wait=True)
    return None if np is None else str(np.__version__)


def ungroup_reference(grouped: bytes | bytearray, groups: int = GROUPS) -> bytearray:
    """Byte grouping undone by its definition: group i holds bytes i, i+groups, i+2*groups, … and
    the first ``len % groups`` groups one more. One core at about 1 GB/s, holding the GIL."""
    out = bytearray(len(grouped))
    for i, start, end in _groups(len(grouped), groups):
        out[i::groups] = grouped[start:end]
    return out


def _groups(size: int, groups: int) -> list[tuple[int, int, int]]:
    """Each group's index and span in the grouped bytes: the first ``size % groups`` one longer."""
    whole, extra = divmod(size, groups)
    spans, start = [], 0
    for i in range(groups):
        end = start + whole + (i < extra)
        spans.append((i, start, end))
        start = end
    return spans


def ungroup(grouped: bytes | bytearray, groups: int = GROUPS) -> memoryview:
    """``ungroup_reference``, read-only, by numpy's strided copies where numpy is installed: they
    release the GIL, so the streams un-group on every core at once (about 3x one core's
    pure-Python speed), into memory that is not zeroed first."""
    global _python_bytes
    if (np := _numpy()) is None:
        _python_bytes += len(grouped)
        return memoryview(ungroup_reference(grouped, groups)).toreadonly()
    out = np.empty(len(grouped), np.uint8)
    src = np.frombuffer(grouped, np.uint8)
    for i, start, end in _groups(len(grouped), groups):
        out[i::groups] = src[start:end]
    return memoryview(out).toreadonly()


def chunk_size(data: bytes | bytearray | memoryview, at: int) -> int | None:
    """Bytes the chunk whose header starts at ``at`` takes, its header included; None while the
    header is cut short (a stream's reader asks before it has the whole chunk)."""
    if len(data) - at < HEADER_BYTES:
        return None
    first: int = _HEADER.unpack_from(data, at)[0]  # version u8, then the compressed length u24
    return HEADER_BYTES + (first >> 8)


def decode_chunks(data: bytes | memoryview, count: int) -> list[Chunk]:
    """Exactly ``count`` chunks back to back that consume ``data`` exactly, decoded; XorbError
    (UnknownFormat for a header version other than 0 or a scheme other than 0/1/2) says which chunk
    of the range and what is wrong."""
    view = memoryview(data)
    size = len(view)
    chunks: list[Chunk] = []
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
            chunks.append(ungroup(_inflate(index, payload, length)))
    if at != size:
        raise XorbError(f"{size - at} bytes after the last of {count} chunks")
    return chunks
