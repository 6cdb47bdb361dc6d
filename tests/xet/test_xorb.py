"""Xorb chunk decoding (xorb.md): every scheme round-trips, every header field and every length is
checked, and a decompression bomb stops at one chunk's size."""

from __future__ import annotations

import random
import struct
import tracemalloc

import lz4.frame
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from profiles import examples

from mdl.xet._xorb import MAX_CHUNK, UnknownFormat, XorbError, decode_chunks


def header(packed: int, length: int, *, scheme: int, version: int = 0) -> bytes:
    """version u8, compressed length u24 LE, scheme u8, uncompressed length u24 LE."""
    return struct.pack("<BI", version, packed)[:4] + struct.pack("<BI", scheme, length)[:4]


def group(data: bytes) -> bytes:
    """Byte grouping by 4 as xorb.md describes it: bytes 0, 4, 8… then 1, 5, 9… then 2… then 3…"""
    return b"".join(data[i::4] for i in range(4))


def encode(data: bytes, scheme: int) -> bytes:
    """One chunk as a xorb holds it."""
    body = {0: data, 1: lz4.frame.compress(data), 2: lz4.frame.compress(group(data))}[scheme]
    return header(len(body), len(data), scheme=scheme) + body


def sample(size: int, seed: int = 0) -> bytes:
    """Half random, half structured (floats-like), so LZ4 has work to do."""
    rng = random.Random(seed)
    return rng.randbytes(size // 2) + bytes(rng.randrange(4) for _ in range(size - size // 2))


def test_header_layout_is_the_one_xorb_md_draws() -> None:
    assert header(0x030201, 0x060504, scheme=2, version=0) == bytes([0, 1, 2, 3, 2, 4, 5, 6])


def test_grouping_follows_xorb_md_example() -> None:
    assert group(b"ABCDabcd12") == b"Aa1Bb2CcDd"


@pytest.mark.parametrize("scheme", [0, 1, 2])
@pytest.mark.parametrize("size", [0, 1, 2, 3, 4, 5, 7, 1000, 65_537, MAX_CHUNK - 1, MAX_CHUNK])
def test_each_scheme_round_trips(scheme: int, size: int) -> None:
    data = sample(size, seed=size)
    assert decode_chunks(encode(data, scheme), 1) == [data]


def test_a_range_of_mixed_chunks_decodes_in_order_from_a_memoryview() -> None:
    chunks = [sample(size, seed=i) for i, size in enumerate([100, 64_000, 3, MAX_CHUNK, 9_999])]
    wire = b"".join(encode(data, i % 3) for i, data in enumerate(chunks))
    view = memoryview(b"xx" + wire + b"yy")[2:-2]
    assert decode_chunks(view, len(chunks)) == chunks
    assert decode_chunks(b"", 0) == []


@pytest.mark.parametrize("version", [1, 2, 255])
def test_an_unknown_header_version_is_unknown_format(version: int) -> None:
    wire = encode(b"data", 0)
    with pytest.raises(UnknownFormat, match=f"chunk 0: unknown chunk header version {version}"):
        decode_chunks(bytes([version]) + wire[1:], 1)


@pytest.mark.parametrize("scheme", [3, 4, 255])
def test_an_unknown_scheme_is_unknown_format_naming_the_chunk(scheme: int) -> None:
    wire = encode(b"first", 0) + header(4, 4, scheme=scheme) + b"data"
    with pytest.raises(UnknownFormat, match=f"chunk 1: unknown compression scheme {scheme}"):
        decode_chunks(wire, 2)


def test_unknown_format_is_a_xorb_error() -> None:
    assert issubclass(UnknownFormat, XorbError) and issubclass(XorbError, ValueError)


@pytest.mark.parametrize("scheme", [0, 1, 2])
def test_an_uncompressed_length_above_a_chunk_is_refused(scheme: int) -> None:
    data = bytes(MAX_CHUNK + 1)
    body = encode(data, scheme)[8:]
    with pytest.raises(XorbError, match=f"header says {MAX_CHUNK + 1} bytes, more than a chunk"):
        decode_chunks(header(len(body), len(data), scheme=scheme) + body, 1)


@pytest.mark.parametrize("scheme", [1, 2])
@pytest.mark.parametrize(
    ("claimed", "message"), [(999, "more than the 999 bytes"), (1001, "decodes to 1000 bytes")]
)
def test_a_decoded_length_other_than_the_header_says_is_refused(
    scheme: int, claimed: int, message: str
) -> None:
    body = encode(sample(1000), scheme)[8:]
    with pytest.raises(XorbError, match=f"chunk 0: .*{message}"):
        decode_chunks(header(len(body), claimed, scheme=scheme) + body, 1)


def test_a_stored_chunk_whose_lengths_differ_is_refused() -> None:
    with pytest.raises(XorbError, match="chunk 0: stored with 4 bytes, its header says 5"):
        decode_chunks(header(4, 5, scheme=0) + b"data", 1)


@pytest.mark.parametrize("scheme", [0, 1, 2])
def test_a_compressed_length_past_the_data_is_cut_short(scheme: int) -> None:
    wire = encode(sample(500), scheme)
    for cut in (1, 7, 8, 9, len(wire) - 1):
        with pytest.raises(XorbError, match="chunk 0: cut short"):
            decode_chunks(wire[:cut], 1)


def test_fewer_chunks_than_asked_for_is_cut_short_naming_the_missing_one() -> None:
    wire = encode(b"one", 0) + encode(b"two", 1)
    with pytest.raises(XorbError, match=r"chunk 2: cut short in its header \(0 of 8 bytes\)"):
        decode_chunks(wire, 3)


def test_data_after_the_last_chunk_is_refused() -> None:
    wire = encode(b"one", 0) + encode(b"two", 2)
    with pytest.raises(XorbError, match="3 bytes after the last of 2 chunks"):
        decode_chunks(wire + b"xyz", 2)
    with pytest.raises(XorbError, match="bytes after the last of 1 chunks"):
        decode_chunks(wire, 1)


def test_a_compressed_length_short_of_the_frame_is_refused() -> None:
    wire = encode(sample(2000), 1)
    packed = len(wire) - 8
    with pytest.raises(XorbError, match="chunk 0: LZ4 frame cut short"):
        decode_chunks(header(packed - 4, 2000, scheme=1) + wire[8:-4], 1)


def test_bytes_after_the_lz4_frame_inside_a_chunk_are_refused() -> None:
    body = lz4.frame.compress(b"payload") + b"junk"
    with pytest.raises(XorbError, match="chunk 0: 4 bytes after its LZ4 frame"):
        decode_chunks(header(len(body), 7, scheme=1) + body, 1)


@pytest.mark.parametrize("scheme", [1, 2])
def test_a_body_that_is_not_lz4_is_refused(scheme: int) -> None:
    with pytest.raises(XorbError, match="chunk 0: bad LZ4 frame"):
        decode_chunks(header(16, 16, scheme=scheme) + b"not an lz4 frame", 1)


@pytest.mark.parametrize("scheme", [1, 2])
def test_a_decompression_bomb_stops_at_one_chunk(scheme: int) -> None:
    bomb = lz4.frame.compress(bytes(256 * 1024 * 1024))  # 1 MiB on the wire, 256 MiB if inflated
    tracemalloc.start()
    try:
        with pytest.raises(XorbError, match=f"more than the {MAX_CHUNK} bytes"):
            decode_chunks(header(len(bomb), MAX_CHUNK, scheme=scheme) + bomb, 1)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 * 1024 * 1024


# -- properties: whatever the bytes, a XorbError or the right chunks, never another exception
# -------------------

SCHEMES = st.sampled_from([0, 1, 2])
CHUNK = st.binary(max_size=3000) | st.builds(
    lambda n, b: bytes([b]) * n, st.integers(0, MAX_CHUNK), st.integers(0, 3)
)


@given(st.binary(max_size=200), st.integers(0, 4))
def test_arbitrary_bytes_give_chunks_or_a_xorb_error(data: bytes, count: int) -> None:
    try:
        chunks = decode_chunks(data, count)
    except XorbError:
        return
    assert len(chunks) == count
    assert all(len(chunk) <= MAX_CHUNK for chunk in chunks)


@given(st.lists(st.tuples(CHUNK, SCHEMES), max_size=5))
@settings(max_examples=examples(60))
def test_encoded_chunks_round_trip(chunks: list[tuple[bytes, int]]) -> None:
    wire = b"".join(encode(data, scheme) for data, scheme in chunks)
    assert decode_chunks(wire, len(chunks)) == [data for data, _ in chunks]


@given(
    st.tuples(CHUNK, SCHEMES),
    st.integers(0, 255),
    st.integers(0, 2**24 - 1),
    st.integers(0, 255),
    st.integers(0, 2**24 - 1),
    st.sets(st.sampled_from(["version", "packed", "scheme", "length"])),
)
@settings(max_examples=examples(300))
def test_any_header_gives_the_right_chunk_or_a_xorb_error(
    chunk: tuple[bytes, int], version: int, packed: int, scheme: int, length: int, changed: set[str]
) -> None:
    data, original = chunk
    body = encode(data, original)[8:]
    fields = {"version": 0, "packed": len(body), "scheme": original, "length": len(data)}
    drawn = {"version": version, "packed": packed, "scheme": scheme, "length": length}
    fields.update({key: drawn[key] for key in changed})
    wire = (
        header(
            fields["packed"], fields["length"], scheme=fields["scheme"], version=fields["version"]
        )
        + body
    )
    try:
        decoded = decode_chunks(wire, 1)
    except UnknownFormat:
        assert fields["version"] != 0 or fields["scheme"] > 2
        return
    except XorbError:
        return
    assert fields["version"] == 0 and fields["scheme"] <= 2
    assert decoded == [data] or len(decoded[0]) == fields["length"]


@given(st.lists(st.tuples(CHUNK, SCHEMES), min_size=1, max_size=3), st.data())
@settings(max_examples=examples(60))
def test_cut_or_padded_ranges_are_xorb_errors(
    chunks: list[tuple[bytes, int]], data: st.DataObject
) -> None:
    wire = b"".join(encode(chunk, scheme) for chunk, scheme in chunks)
    cut = data.draw(st.integers(0, len(wire) - 1))
    with pytest.raises(XorbError):
        decode_chunks(wire[:cut], len(chunks))
    with pytest.raises(XorbError):
        decode_chunks(wire + data.draw(st.binary(min_size=1, max_size=9)), len(chunks))
