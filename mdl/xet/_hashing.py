"""Xet hashes (hub-docs docs/xet/hashing.md, api.md): chunk hashes, the aggregated Merkle tree, file
hashes, and the string form that prints each 8-byte little-endian word of a hash as one number."""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import TypeGuard

from blake3 import blake3  # (this module loads with a Xet fetch: mdl.xet.fetch)

from mdl.paths import SHA256_HEX

HASH_BYTES = 32
# The blake3 keys hashing.md gives as byte lists (DATA_KEY [102, 151, …], INTERNAL_NODE_KEY [1, 126,
# …]), in hex.
DATA_KEY = bytes.fromhex("6697f5775b9550de3135cbaca597181c9de421109beb2b58b4d0b04b93adf229")
INTERNAL_NODE_KEY = bytes.fromhex(
    "017ec5c7a5472996fd946666b48a02e65ddd536f37c76dd2f86352e64a53713f"
)
_ZEROS = bytes(HASH_BYTES)
# A node takes 2 to 2*4+1 children (xet-core merklehash/src/aggregated_hashes.rs, mean branching
# factor 4).
_BRANCHING = 4
_MOST_CHILDREN = 2 * _BRANCHING + 1
_WORDS = struct.Struct("<4Q")
_HEX_FORM = "{:016x}{:016x}{:016x}{:016x}".format


def chunk_hash(data: bytes | memoryview) -> bytes:
    """The hash of one chunk's bytes: blake3 keyed with DATA_KEY."""
    return blake3(data, key=DATA_KEY).digest()


def to_hex(raw: bytes) -> str:
    """The Xet string form of a raw hash: each 8-byte little-endian word as a 16-digit hex
    number, in order.
    """
    return _HEX_FORM(*_WORDS.unpack(raw))


def from_hex(text: str) -> bytes:
    """The raw hash behind a Xet string form (``is_hash``): the inverse of ``to_hex``."""
    return _WORDS.pack(*(int(text[i : i + 16], 16) for i in range(0, 64, 16)))


def is_hash(text: object) -> TypeGuard[str]:
    """Whether ``text`` is a hash in the Xet string form (64 lowercase hex characters)."""
    return isinstance(text, str) and SHA256_HEX.fullmatch(text) is not None


def cut(level: Sequence[tuple[bytes, int]], start: int) -> int:
    """Where the node that starts at ``start`` ends: after the first child from the third on whose
    hash's last 64-bit little-endian word is 0 mod 4, after at most 9 children, and never leaving a
    single child behind."""
    if (left := len(level) - start) <= 2:
        return len(level)
    end = start + min(left, _MOST_CHILDREN)
    for i in range(start + 2, end):
        # The last word is bytes 24..31 little-endian: its value mod 4 is its lowest byte's, byte
        # 24, mod 4.
        if level[i][0][24] % _BRANCHING == 0:
            return i + 1
    return end


def node(children: Sequence[tuple[bytes, int]]) -> tuple[bytes, int]:
    """The node over ``children`` (hash, length): blake3 keyed with INTERNAL_NODE_KEY of each
    child's ``"{hex} : {length}\n"``, and their total length."""
    text = "".join([f"{to_hex(raw)} : {size}\n" for raw, size in children])
    return blake3(text.encode(), key=INTERNAL_NODE_KEY).digest(), sum(s for _, s in children)


def merkle_root(chunks: Sequence[tuple[bytes, int]]) -> bytes:
    """The aggregated node hash of (chunk hash, length) pairs: a xorb's hash, and the root under a
    file's hash. No chunks give 32 zero bytes; one chunk gives its own hash."""
    if not chunks:
        return _ZEROS
    level = list(chunks)
    while len(level) > 1:
        level = grouped(level)
    return level[0][0]


def grouped(level: Sequence[tuple[bytes, int]]) -> list[tuple[bytes, int]]:
    """The nodes one level up: ``level`` cut into groups (``cut``), each group a ``node``."""
    above: list[tuple[bytes, int]] = []
    start = 0
    while start < len(level):
        end = cut(level, start)
        above.append(node(level[start:end]))
        start = end
    return above


def file_hash(chunks: Sequence[tuple[bytes, int]]) -> bytes:
    """A file's Xet hash: its chunks' Merkle root hashed again with blake3 keyed by 32 zero bytes
    (empty: zeros).
    """
    return salted(merkle_root(chunks)) if chunks else _ZEROS


def salted(root: bytes) -> bytes:
    """The file hash over a (non-empty) file's Merkle root: blake3 keyed by 32 zero bytes."""
    return blake3(root, key=_ZEROS).digest()
