"""BG4 un-grouping (issue 53): numpy's strided copies give exactly what the format's definition
gives, for every length, with the pure-Python definition as the fallback; numpy is imported only
when a byte-grouped chunk is decoded."""

from __future__ import annotations

import itertools
import subprocess
import sys
import threading
from collections.abc import Iterator
from importlib.util import find_spec
from pathlib import Path

import lz4.frame
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from profiles import examples

from mdl.xet import _xorb as xorb
from mdl.xet._streams import _Chunks
from mdl.xet._xorb import XorbError, decode_chunks

ROOT = Path(__file__).resolve().parents[2]


def group(data: bytes, groups: int = 4) -> bytes:
    """Byte grouping as xorb.md defines it: bytes 0, g, 2g… then 1, g+1… (g = 4 in the format)."""
    return b"".join(data[i::groups] for i in range(groups))


def chunk(data: bytes, scheme: int) -> bytes:
    """One chunk as a xorb holds it: the 8-byte header, then its bytes."""
    body = {0: data, 1: lz4.frame.compress(data), 2: lz4.frame.compress(group(data))}[scheme]
    return (
        (len(body) << 8).to_bytes(4, "little")
        + (scheme | len(data) << 8).to_bytes(4, "little")
        + body
    )


needs_numpy = pytest.mark.skipif(find_spec("numpy") is None, reason="numpy is not installed")


@pytest.fixture
def numpy_on() -> Iterator[None]:
    pytest.importorskip("numpy")
    xorb.use_numpy(True)
    assert xorb.numpy_version() is not None
    yield
    xorb.use_numpy(True)


@pytest.fixture
def numpy_off() -> Iterator[None]:
    xorb.use_numpy(False)
    yield
    xorb.use_numpy(True)


def test_the_reference_inverts_the_formats_example() -> None:
    assert group(b"ABCDabcd12") == b"Aa1Bb2CcDd"
    assert xorb.ungroup_reference(b"Aa1Bb2CcDd") == b"ABCDabcd12"


@needs_numpy
@given(st.binary(max_size=4100), st.integers(1, 9))
@settings(max_examples=examples(400))
def test_numpy_ungrouping_equals_the_reference(data: bytes, groups: int) -> None:
    assert xorb.numpy_version() is not None
    grouped = group(data, groups)
    expected = xorb.ungroup_reference(grouped, groups)
    assert expected == data
    assert xorb.ungroup(grouped, groups) == expected
    assert xorb.ungroup(bytearray(grouped), groups) == expected


@pytest.mark.parametrize(
    "size", [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 65_537, xorb.MAX_CHUNK - 3, xorb.MAX_CHUNK]
)
def test_every_length_mod_4_decodes_with_and_without_numpy(size: int) -> None:
    data = bytes((i * 7 + i // 5) % 251 for i in range(size))
    wire = chunk(data, 2)
    for on in (True, False):
        xorb.use_numpy(on)
        try:
            assert decode_chunks(wire, 1) == [data]
        finally:
            xorb.use_numpy(True)


def test_without_numpy_the_reference_decodes(numpy_off: None) -> None:
    data = bytes(range(256)) * 40 + b"xyz"
    assert xorb.numpy_version() is None
    assert decode_chunks(chunk(data, 2) + chunk(data, 1), 2) == [data, data]


def test_threads_decoding_at_once_each_get_their_own_chunks(numpy_on: None) -> None:
    """The streams decode side by side with the GIL released: no output is shared."""
    sources = [bytes((i * k) % 256 for i in range(70_001 + k)) for k in range(1, 9)]
    wires = [chunk(data, 2) for data in sources]
    results: dict[int, list[bytes]] = {}
    start = threading.Barrier(len(wires))

    def decode(k: int) -> None:
        start.wait()
        got: list[bytes] = []
        for _ in range(20):
            got += [bytes(c) for c in decode_chunks(wires[k], 1)]
        results[k] = got

    threads = [threading.Thread(target=decode, args=(k,)) for k in range(len(wires))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert all(results[k] == [sources[k]] * 20 for k in range(len(wires)))


def _imported_after(code: str) -> set[str]:
    """The top-level modules a fresh interpreter has loaded after ``code`` (from this tree) and
    the numpy import it may have started."""
    probe = (
        f"import sys\n{code}\nfrom mdl.xet import _xorb as xorb\n"
        "if xorb._np_loader is not None: xorb._np_loader.join()\n"
        "print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return set(out.stdout.split())


@pytest.mark.slow
@needs_numpy
def test_numpy_is_imported_only_for_a_byte_grouped_chunk() -> None:
    plain = chunk(b"weights" * 100, 1).hex()
    grouped = chunk(b"weights" * 100, 2).hex()
    decode = (
        "from mdl.xet import _xorb as xorb\nfrom mdl.xet._xorb import decode_chunks\nxorb.PYTHON_FIRST = {}\n"
        "for _ in range(3): print(decode_chunks(bytes.fromhex({!r}), 1))"
    )
    assert "numpy" not in _imported_after("import mdl.xet._streams, mdl.xet.fetch")
    assert "numpy" not in _imported_after(decode.format(0, plain))
    # a small file's BG4 chunks are un-grouped in Python: numpy's import would cost more
    assert "numpy" not in _imported_after(decode.format(64 << 20, grouped))
    assert "numpy" in _imported_after(decode.format(700, grouped))


@needs_numpy
def test_chunks_decoded_while_numpy_loads_are_ungrouped_in_python(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The BG4 chunk past PYTHON_FIRST starts numpy's import and does not wait for it."""
    monkeypatch.setattr(xorb, "PYTHON_FIRST", 0)
    data = bytes(range(251)) * 9
    started = threading.Event()
    finish = threading.Event()

    def slow_import() -> None:
        started.set()
        finish.wait(timeout=60)
        xorb._np = __import__("numpy")

    xorb.use_numpy(False)
    xorb._np, xorb._np_loader = None, None
    real = xorb._load_numpy
    xorb._load_numpy = slow_import  # type: ignore[assignment]
    try:
        assert decode_chunks(chunk(data, 2), 1) == [data]
        assert started.wait(timeout=60)
        assert decode_chunks(chunk(data, 2), 1) == [data]  # numpy still loading
        assert xorb._numpy() is None
        finish.set()
        assert xorb._numpy(wait=True) is not None
        assert decode_chunks(chunk(data, 2), 1) == [data]
    finally:
        finish.set()
        xorb._load_numpy = real  # type: ignore[method-assign]
        xorb.use_numpy(True)


@given(
    st.lists(st.tuples(st.binary(max_size=3000), st.sampled_from([0, 1, 2])), max_size=6),
    st.lists(st.integers(0, 20_000), max_size=8),
)
@settings(max_examples=examples(200))
def test_a_range_fed_in_any_blocks_gives_its_chunks(
    chunks: list[tuple[bytes, int]], cuts: list[int]
) -> None:
    """A stream's blocks cut chunks anywhere: whole chunks of a block are decoded from it, a cut
    one is held until the block that finishes it."""
    wire = b"".join(chunk(data, scheme) for data, scheme in chunks)
    edges = sorted({0, len(wire), *(c for c in cuts if c < len(wire))})
    feeder, got = _Chunks(len(chunks)), []
    for lo, hi in itertools.pairwise(edges):
        got += [bytes(c) for c in feeder.feed(memoryview(wire)[lo:hi])]
    feeder.close()
    assert got == [data for data, _ in chunks]
    with pytest.raises(XorbError):
        extra = _Chunks(len(chunks))
        for lo, hi in itertools.pairwise(edges):
            list(extra.feed(wire[lo:hi]))
        list(extra.feed(b"\0"))
        extra.close()
