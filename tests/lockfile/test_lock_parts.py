"""``catalog.lock.parts``: written deterministically, read back exactly, and read strictly: any
text at all is entries or one CatalogError naming the file, never another exception; a link, a
FIFO or a file past the bound is refused unread; an entry is a range trust only for the very
bytes (sha256 and size) the lock pins."""

from __future__ import annotations

import binascii
import hashlib
import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mdl import partsize
from mdl.errors import CatalogError
from mdl.lockfile import parts as lockparts
from mdl.lockfile.parts import (
    PartHashes,
    dump_parts,
    hashed,
    kept,
    parse_parts,
    parts_beside,
    read_parts,
    trust_for,
    write_parts,
)
from mdl.transfer import ranges

SHA = "ab" * 32


@st.composite
def entries(draw: st.DrawFn) -> dict[str, PartHashes]:
    found: dict[str, PartHashes] = {}
    for sha256 in draw(st.lists(st.binary(min_size=32, max_size=32), max_size=4, unique=True)):
        part = draw(st.integers(1, 1 << 40))
        size = draw(st.integers(1, part * 20))
        count = -(-size // part)
        digests = draw(
            st.lists(st.binary(min_size=32, max_size=32), min_size=count, max_size=count)
        )
        found[sha256.hex()] = PartHashes(size, part, tuple(digests))
    return found


@given(entries())
def test_what_is_written_reads_back_exactly_and_writes_the_same_text(
    found: dict[str, PartHashes],
) -> None:
    text = dump_parts(found)
    assert parse_parts(text) == found
    assert dump_parts(parse_parts(text)) == text
    assert text == dump_parts(dict(reversed(found.items()))), "sorted: one text per content"


@given(st.text(max_size=400))
def test_any_text_is_entries_or_one_catalog_error(text: str) -> None:
    try:
        parse_parts(text, source="x.parts")
    except CatalogError as exc:
        assert exc.message.startswith("x.parts: ")


@given(entries(), st.integers(0, 2000), st.characters())
def test_any_edit_of_a_written_file_is_entries_or_one_catalog_error(
    found: dict[str, PartHashes], at: int, char: str
) -> None:
    text = dump_parts(found)
    at %= len(text)
    try:
        parse_parts(text[:at] + char + text[at + 1 :], source="x.parts")
    except CatalogError as exc:
        assert exc.message.startswith("x.parts: ")


def _doc(line: str, version: str = "1") -> str:
    return f"version = {version}\n[files]\n{line}\n"


GOOD = binascii.b2a_base64(b"\1" * 64, newline=False).decode()


@pytest.mark.parametrize(
    ("text", "says"),
    [
        (_doc(f'{SHA} = {{ size = 20, part = 10, blake3 = "{GOOD}" }}', "2"), "version 2 is newer"),
        (_doc(f'{SHA} = {{ size = 20, part = 10, blake3 = "{GOOD}" }}', '"1"'), "version: must"),
        ("files = {}\n", "version: must be 1"),
        ("version = 1\nmodel = []\n", "model: not a key"),
        (_doc(f'{SHA.upper()} = {{ size = 20, part = 10, blake3 = "{GOOD}" }}'), "not a sha256"),
        (_doc(f'{SHA} = {{ size = 20, part = 10, blake3 = "{GOOD}", x = 1 }}'), "exactly"),
        (_doc(f'{SHA} = {{ size = true, part = 10, blake3 = "{GOOD}" }}'), ".size: must"),
        (_doc(f'{SHA} = {{ size = 20, part = 0, blake3 = "{GOOD}" }}'), ".part: must"),
        (_doc(f'{SHA} = {{ size = 21, part = 10, blake3 = "{GOOD}" }}'), "base64 of 3 digests"),
        (_doc(f'{SHA} = {{ size = 20, part = 10, blake3 = "{GOOD[:-2]}!!" }}'), "base64 of 2"),
        (_doc(f"{SHA} = {{ size = 20, part = 10, blake3 = 1 }}"), ".blake3: must be base64"),
        (_doc(f'{SHA} = {{ size = 90000, part = 1, blake3 = "" }}'), "more than the 9000"),
        (_doc(f'{SHA} = {{ size = 20, part = 10, blake3 = "{GOOD}" }}\n{SHA} = 1'), "invalid TOML"),
        ("version = 1\nfiles = 3\n", "files: must be a table"),
    ],
)
def test_each_field_is_checked(text: str, says: str) -> None:
    with pytest.raises(CatalogError, match=r"^x\.parts: ") as caught:
        parse_parts(text, source="x.parts")
    assert says in caught.value.message


def test_read_refuses_a_link_a_fifo_and_a_file_past_the_bound(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = parts_beside(tmp_path / "catalog.lock")
    assert path.name == "catalog.lock.parts"
    assert read_parts(path) == {}, "no file: no part hashes"
    real = tmp_path / "real"
    real.write_text(dump_parts({SHA: PartHashes(20, 10, (b"\1" * 32, b"\2" * 32))}))
    path.symlink_to(real)
    with pytest.raises(CatalogError, match=r"catalog\.lock\.parts: cannot read it"):
        read_parts(path)
    path.unlink()
    os.mkfifo(path)
    with pytest.raises(CatalogError, match="not a regular file"):
        read_parts(path)
    path.unlink()
    path.write_bytes(real.read_bytes())
    assert read_parts(path)[SHA].size == 20
    monkeypatch.setattr(lockparts, "MAX_PARTS_BYTES", 50)
    with pytest.raises(CatalogError, match="more than"):
        read_parts(path)


def test_written_atomically_only_when_its_text_changes(tmp_path: Path) -> None:
    path = tmp_path / "catalog.lock.parts"
    assert write_parts(path, {}) is False and not path.exists(), "nothing to say: no file"
    one = {SHA: PartHashes(20, 10, (b"\1" * 32, b"\2" * 32))}
    assert write_parts(path, one) is True
    mtime = path.stat().st_mtime_ns
    assert write_parts(path, one) is False and path.stat().st_mtime_ns == mtime
    assert write_parts(path, {}) is True and read_parts(path) == {}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["catalog.lock.parts"], "no temp left"


def test_an_entry_is_a_trust_only_for_its_own_sha256_and_size() -> None:
    data = os.urandom(25)
    digests = tuple(ranges.digest(data[s : s + 10]) for s in range(0, 25, 10))
    found = {SHA: PartHashes(25, 10, digests)}
    trust = trust_for(found, SHA, 25)
    assert trust is not None and trust.kind == "lock"
    assert list(trust.spans) == [(0, 10), (10, 20), (20, 25)]
    assert trust.holds(2, memoryview(data[20:])) and not trust.holds(2, memoryview(b"x" * 5))
    assert trust_for(found, "cd" * 32, 25) is None, "another file's bytes"
    assert trust_for(found, SHA, 26) is None, "another size: not these bytes"
    assert kept(found, {SHA: 25, "cd" * 32: 3}) == found
    assert kept(found, {SHA: 26}) == {} and kept(found, {}) == {}


def test_hashed_gives_the_part_hashes_and_the_sha256_from_one_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(partsize, "PART", 1 << 20)
    data = os.urandom(3 * (1 << 20) + 7)
    path = tmp_path / "f"
    path.write_bytes(data)
    fd = os.open(path, os.O_RDONLY)
    try:
        found, sha256 = hashed(fd, len(data))
        with pytest.raises(OSError, match="ends before"):
            hashed(fd, len(data) + 1)
    finally:
        os.close(fd)
    assert sha256 == hashlib.sha256(data).hexdigest()
    assert (found.size, found.part, len(found.digests)) == (len(data), 1 << 20, 4)
    assert found.digests[3] == ranges.digest(data[3 << 20 :])
