"""Issue 37, class B: unpack compares every field of a local header (what streaming readers such as
Java's ``ZipInputStream`` or ``bsdtar`` believe) with the central directory, and a data descriptor's
values too. Any disagreement is exit 2 naming the entry and the field in words, before a byte is
written."""

from __future__ import annotations

import io
import os
import struct
import tempfile
import zipfile
import zlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from profiles import examples

from mdl.archive.unpack import unpack_archive
from mdl.errors import ArchiveError, ExitCode
from mdl.progress import NullProgress

PROPERTY = settings(
    max_examples=examples(80), deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
ENTRIES = {"pkg/weights.bin": os.urandom(3000), "pkg/notes.txt": b"hello local headers\n" * 50}

# A local header field: its offset, its width, and how a refusal names it.
FIELDS = {
    "flags": (6, 2, "flag"),
    "method": (8, 2, "compression method"),
    "time": (10, 2, "modification time"),
    "date": (12, 2, "modification time"),
    "crc": (14, 4, "CRC-32"),
    "csize": (18, 4, "compressed size"),
    "usize": (22, 4, "uncompressed size"),
}
DESCRIPTOR = {
    "crc": (4, "CRC-32"),
    "csize": (8, "compressed size"),
    "usize": (12, "uncompressed size"),
}


class Unseekable(io.RawIOBase):
    """A pipe as zipfile sees it: every entry then gets a data descriptor (flag bit 3)."""

    def __init__(self) -> None:
        self.data = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, b: bytes) -> int:  # type: ignore[override]
        self.data += b
        return len(b)


def build(*, descriptor: bool) -> tuple[bytes, dict[str, int]]:
    """A zip of ENTRIES (the text deflated), and where each entry's local header starts."""
    sink: io.BytesIO | Unseekable = Unseekable() if descriptor else io.BytesIO()
    with zipfile.ZipFile(sink, "w") as zf:  # type: ignore[arg-type]
        for name, data in ENTRIES.items():
            method = zipfile.ZIP_DEFLATED if name.endswith(".txt") else zipfile.ZIP_STORED
            zf.writestr(zipfile.ZipInfo(name, (2024, 5, 6, 7, 8, 10)), data, compress_type=method)
    raw = bytes(sink.data if isinstance(sink, Unseekable) else sink.getvalue())
    with zipfile.ZipFile(io.BytesIO(raw)) as zf:
        return raw, {info.filename: info.header_offset for info in zf.infolist()}


def unpack_bytes(raw: bytes) -> tuple[ArchiveError | None, Path]:
    folder = Path(tempfile.mkdtemp())
    (folder / "a.zip").write_bytes(raw)
    try:
        unpack_archive(
            Path("a.zip"), dest=Path("dest"), force=False, progress=NullProgress(), cwd=folder
        )
    except ArchiveError as exc:
        return exc, folder / "dest"
    return None, folder / "dest"


def test_the_unmutated_archives_unpack() -> None:
    for descriptor in (False, True):
        raw, _ = build(descriptor=descriptor)
        error, dest = unpack_bytes(raw)
        assert error is None
        assert {name: (dest / name).read_bytes() for name in ENTRIES} == ENTRIES


@PROPERTY
@given(
    descriptor=st.booleans(),
    entry=st.sampled_from(sorted(ENTRIES)),
    field=st.sampled_from(sorted(FIELDS)),
    value=st.integers(min_value=0, max_value=0xFFFFFFFF),
)
def test_any_local_header_field_that_disagrees_is_refused(
    descriptor: bool, entry: str, field: str, value: int
) -> None:
    raw, offsets = build(descriptor=descriptor)
    offset, width, words = FIELDS[field]
    at = offsets[entry] + offset
    value %= 1 << (8 * width)
    old = int.from_bytes(raw[at : at + width], "little")
    if value == old:
        value ^= 1
    mutated = raw[:at] + value.to_bytes(width, "little") + raw[at + width :]
    agrees = False
    # zeros there: zero or the central value agree
    if descriptor and field in ("crc", "csize", "usize"):
        with zipfile.ZipFile(io.BytesIO(raw)) as zf:
            info = zf.getinfo(entry)
        agrees = value in (
            0,
            {"crc": info.CRC, "csize": info.compress_size, "usize": info.file_size}[field],
        )
    error, dest = unpack_bytes(mutated)
    if agrees:
        assert error is None
        return
    assert error is not None, f"{field}={value:#x} in {entry}'s local header was not refused"
    assert error.exit_code == ExitCode.USAGE
    assert repr(entry) in error.message and words in error.message, error.message
    assert not dest.exists()


@PROPERTY
@given(entry=st.sampled_from(sorted(ENTRIES)), version=st.integers(min_value=0, max_value=0xFFFF))
def test_the_version_needed_may_differ_within_what_unpack_reads(entry: str, version: int) -> None:
    """zipfile raises the central directory's version to 4.5 for an entry past 4 GiB, so versions
    may differ; a local header asking for more than 6.3 is refused as the central directory's would
    be."""
    raw, offsets = build(descriptor=False)
    at = offsets[entry] + 4
    error, dest = unpack_bytes(raw[:at] + struct.pack("<H", version) + raw[at + 2 :])
    if version & 0xFF > 63:
        assert error is not None and "version" in error.message and repr(entry) in error.message
        assert not dest.exists()
    else:
        assert error is None and (dest / entry).read_bytes() == ENTRIES[entry]


@PROPERTY
@given(
    entry=st.sampled_from(sorted(ENTRIES)),
    field=st.sampled_from(sorted(DESCRIPTOR)),
    value=st.integers(min_value=0, max_value=0xFFFFFFFF),
)
def test_a_data_descriptor_that_disagrees_is_refused(entry: str, field: str, value: int) -> None:
    raw, offsets = build(descriptor=True)
    with zipfile.ZipFile(io.BytesIO(raw)) as zf:
        info = zf.getinfo(entry)
    name_len, extra_len = struct.unpack_from("<HH", raw, offsets[entry] + 26)
    start = offsets[entry] + 30 + name_len + extra_len + info.compress_size
    assert raw[start : start + 4] == b"PK\x07\x08"
    offset, words = DESCRIPTOR[field]
    old = int.from_bytes(raw[start + offset : start + offset + 4], "little")
    if value == old:
        value ^= 1
    mutated = raw[: start + offset] + value.to_bytes(4, "little") + raw[start + offset + 4 :]
    error, dest = unpack_bytes(mutated)
    assert error is not None and error.exit_code == ExitCode.USAGE
    assert (
        repr(entry) in error.message
        and "data descriptor" in error.message
        and words in error.message
    )
    assert not dest.exists()


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("crc", 0xDEADBEEF, "has another CRC-32 in its local header"),
        ("csize", 7, "has another compressed size in its local header"),
        ("usize", 7, "has another uncompressed size in its local header"),
        ("flags", 0x8, "has another data descriptor flag (bit 3) in its local header"),
        ("flags", 0x800, "has another UTF-8 name flag (bit 11) in its local header"),
    ],
)
def test_each_field_is_named_in_words(field: str, value: int, words: str) -> None:
    raw, offsets = build(descriptor=False)
    offset, width, _ = FIELDS[field]
    at = offsets["pkg/weights.bin"] + offset
    old = int.from_bytes(raw[at : at + width], "little")
    new = old ^ value if field == "flags" else value
    error, _ = unpack_bytes(raw[:at] + new.to_bytes(width, "little") + raw[at + width :])
    assert error is not None and f"entry 'pkg/weights.bin' {words}" in error.message


def test_a_local_unicode_path_field_naming_another_file_is_refused() -> None:
    """The raw names agree, but a local Info-ZIP Unicode Path field (0x7075) tells streaming
    readers another name.
    """
    name = b"pkg/nice.txt"
    body = b"\x01" + struct.pack("<L", zlib.crc32(name)) + b"pkg/evil.txt"
    extra = struct.pack("<HH", 0x7075, len(body)) + body
    data = b"x"
    fields = (20, 0, 0, 0, 0x21, zlib.crc32(data), 1, 1, len(name))
    local = struct.pack("<4sHHHHHLLLHH", b"PK\x03\x04", *fields, len(extra)) + name + extra + data
    central = struct.pack(
        "<4sBBHHHHHLLLHHHHHLL", b"PK\x01\x02", 20, 3, *fields, 0, 0, 0, 0, 0o100644 << 16, 0
    )
    central += name
    end = struct.pack("<4sHHHHLLH", b"PK\x05\x06", 0, 0, 1, 1, len(central), len(local), 0)
    error, dest = unpack_bytes(local + central + end)
    assert (
        error is not None and "Unicode Path" in error.message and "'pkg/nice.txt'" in error.message
    )
    assert not dest.exists()
