"""What a verified signature says, held to bytes: shards cut as the bytes pass, any split of the
stream, a short or long file, and a statement whose shards do not tile its file refused."""

from __future__ import annotations

import hashlib
import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mdl.errors import IntegrityError
from mdl.signing.statement import SignedManifest, manifest_from_items


def sharded(data: bytes, size: int, path: str = "w.bin") -> SignedManifest:
    starts = range(0, max(len(data), 1), size)
    items = [
        (
            f"{path}:{s}:{min(s + size, len(data))}",
            f"sha256-sharded-{size}",
            hashlib.sha256(data[s : s + size]).digest(),
        )
        for s in starts
    ]
    return manifest_from_items(items, method="shards", algorithm="sha256", shard_size=float(size))


@given(
    data=st.binary(max_size=3000),
    size=st.integers(1, 700),
    cuts=st.lists(st.integers(0, 3000), max_size=6),
)
def test_shards_hold_the_file_however_its_bytes_arrive(
    data: bytes, size: int, cuts: list[int]
) -> None:
    signed = sharded(data, size).files["w.bin"]
    check = signed.check()
    edges = sorted({0, len(data), *(c for c in cuts if c <= len(data))})
    for start, end in itertools.pairwise(edges):
        check.update(data[start:end])
    assert check.mismatch() is None


@given(
    data=st.binary(min_size=1, max_size=2000), size=st.integers(1, 500), flip=st.integers(0, 1999)
)
def test_any_changed_byte_is_caught(data: bytes, size: int, flip: int) -> None:
    signed = sharded(data, size).files["w.bin"]
    changed = bytearray(data)
    changed[flip % len(data)] ^= 0x01
    check = signed.check()
    check.update(bytes(changed))
    assert check.mismatch() is not None


@pytest.mark.parametrize("length", [0, 999, 1001])
def test_a_short_or_long_file_is_caught(length: int) -> None:
    signed = sharded(b"x" * 1000, 300).files["w.bin"]
    check = signed.check()
    check.update(b"x" * length)
    assert check.mismatch() is not None


def test_shards_that_do_not_tile_the_file_are_refused() -> None:
    digest = hashlib.sha256(b"").digest()
    name = "sha256-sharded-10"
    for items in (
        [("a:0:10", name, digest), ("a:11:20", name, digest)],  # a gap
        [("a:0:5", name, digest), ("a:5:10", name, digest)],  # not shard-sized
        [("a:0:10", name, digest), ("a:10:10", name, digest)],  # an empty tail
    ):
        with pytest.raises(IntegrityError, match="do not cover it"):
            manifest_from_items(items, method="shards", algorithm="sha256", shard_size=10)
    with pytest.raises(IntegrityError, match="mixes digest algorithms"):
        manifest_from_items([("a", "blake3", digest)], method="files", algorithm="sha256")
    with pytest.raises(IntegrityError, match="names 'a' twice"):
        manifest_from_items(
            [("a", "sha256", digest), ("a", "sha256", digest)], method="files", algorithm="sha256"
        )


@pytest.mark.parametrize("algorithm", ["blake2", "blake3", "sha256"])
def test_whole_file_digests_of_each_algorithm(algorithm: str) -> None:
    from blake3 import blake3

    data = b"model bytes" * 1000
    value = {
        "blake2": hashlib.blake2b(data),
        "blake3": blake3(data),
        "sha256": hashlib.sha256(data),
    }[algorithm]
    item = {"blake2": "blake2b", "blake3": "blake3", "sha256": "sha256"}[algorithm]
    signed = manifest_from_items(
        [("w", item, value.digest())], method="files", algorithm=algorithm
    ).files["w"]
    assert (signed.sha256 is not None) == (algorithm == "sha256")
    check = signed.check()
    check.update(data)
    assert check.mismatch() is None


def test_what_a_signature_covers_for_a_lock() -> None:
    """The one rule lock, lock --upgrade and lock --check hold pinned files to: named with the
    pinned sha256 (sharded: the shards' size too), or left out by the signer."""
    a, b = b"first file", b"second"
    files = manifest_from_items(
        [("a.bin", "sha256", hashlib.sha256(a).digest())],
        method="files",
        algorithm="sha256",
        ignore_paths=("notes",),
    )
    assert files.covers("a.bin", len(a), hashlib.sha256(a).hexdigest())
    assert not files.covers("a.bin", len(a), hashlib.sha256(b).hexdigest())
    assert not files.covers("b.bin", len(b), hashlib.sha256(b).hexdigest())
    # its signer left them out: not the model's
    assert files.covers("notes/x.txt", 3, hashlib.sha256(b"abc").hexdigest())
    assert files.covers(".gitattributes", 3, hashlib.sha256(b"abc").hexdigest())
    shards = sharded(a, 4, path="a.bin")
    # no whole-file sha256 to compare without the bytes: named, and the size the shards tile
    assert shards.covers("a.bin", len(a), hashlib.sha256(b).hexdigest())
    assert not shards.covers("a.bin", len(a) + 1, hashlib.sha256(a).hexdigest())
    assert not shards.covers("b.bin", len(b), hashlib.sha256(b).hexdigest())
