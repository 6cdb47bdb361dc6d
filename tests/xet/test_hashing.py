"""Xet hashes to the bit: the hex form of api.md, the Merkle reference vectors of xet-core, and
hf_xet as an oracle for whole files cut by the spec's chunker."""

from __future__ import annotations

import os
import random
import struct
import subprocess
import sys
from pathlib import Path

import blake3
import hf_xet
import pytest
from hypothesis import given
from hypothesis import strategies as st
from xet.chunking import MAX_CHUNK, MIN_CHUNK, chunk

from mdl.xet._hashing import (
    DATA_KEY,
    HASH_BYTES,
    INTERNAL_NODE_KEY,
    chunk_hash,
    file_hash,
    is_hash,
    merkle_root,
    to_hex,
)

ZEROS = "0" * 64


def from_hex(text: str) -> bytes:
    """The raw hash a Xet string stands for (the inverse of to_hex, as api.md reads it)."""
    assert is_hash(text)
    return struct.pack("<4Q", *(int(text[i : i + 16], 16) for i in range(0, 64, 16)))


# fmt: off
SPEC_DATA_KEY = [102, 151, 245, 119, 91, 149, 80, 222, 49, 53, 203, 172, 165, 151, 24, 28,
                 157, 228, 33, 16, 155, 235, 43, 88, 180, 208, 176, 75, 147, 173, 242, 41]
SPEC_INTERNAL_NODE_KEY = [1, 126, 197, 199, 165, 71, 41, 150, 253, 148, 102, 102, 180, 138, 2, 230,
                          93, 221, 83, 111, 55, 199, 109, 210, 248, 99, 82, 230, 74, 83, 113, 63]
# fmt: on


def test_the_keys_are_the_ones_hashing_md_lists() -> None:
    assert list(DATA_KEY) == SPEC_DATA_KEY
    assert list(INTERNAL_NODE_KEY) == SPEC_INTERNAL_NODE_KEY


def test_the_hex_form_prints_each_little_endian_word_as_a_number() -> None:
    # api.md's example: bytes 0..31 print as 0706050403020100 0f0e… (its text drops the "10" of the
    # third word: 62 characters there; each word is 16 digits).
    text = to_hex(bytes(range(32)))
    assert text == "07060504030201000f0e0d0c0b0a090817161514131211101f1e1d1c1b1a1918"
    assert from_hex(text) == bytes(range(32))
    assert text != bytes(range(32)).hex()


@given(st.binary(min_size=HASH_BYTES, max_size=HASH_BYTES))
def test_hex_round_trips(raw: bytes) -> None:
    text = to_hex(raw)
    assert is_hash(text)
    assert from_hex(text) == raw


@pytest.mark.parametrize(
    "text",
    [
        "",
        "0" * 63,
        "0" * 65,
        "A" * 64,
        "g" * 64,
        " " + "0" * 63,
        "0" * 64 + "\n",
        "０" * 64,
        "+" + "0" * 63,
    ],
)
def test_a_hash_is_only_64_lowercase_hex_characters(text: str) -> None:
    assert not is_hash(text)


@given(st.text(max_size=70))
def test_any_text_that_is_a_hash_round_trips(text: str) -> None:
    assert not is_hash(text) or to_hex(from_hex(text)) == text


@pytest.mark.parametrize("value", [None, 0, b"0" * 64, ["0" * 64]])
def test_is_hash_is_false_for_what_is_not_a_string(value: object) -> None:
    assert not is_hash(value)


# xet-core merklehash/src/aggregated_hashes.rs test_correctness: (leaves, node hash, file hash with
# the zero salt).
A = "cfc5d07f6f03c29bbf424132963fe08d19a37d5757aaf520bf08119f05cd56d6"
B = "c3e67584b5c4fc2a89837ec39e40f2c8a6bb0b2987ac94cd4b31e5fbdd210a72"
C = "0d2beb91b9196929a5ddec9f6e306924ddf4a24268e3e59fd8464738d525af37"
D = "adf8773496a9b7319b2e50dc98093f344053b17d8ad37100b9c07d9805988784"
E = "4ac202caf347fc1e9c874b1ef6a1c5e619141eb775a6f43f0f0124ccd0060d9e"
F = "b3b28636f65c149ea52eb1f94669466f70f033b54cea792824c696ba6ef3c389"
G = "0e2c1a002aae913d2c0fc8ddfa4e9e14b7b311b3b0d458726d5d9f6a6318013c"
EIGHT = [(ZEROS, 0), (A, 100), (B, 200), (C, 300), (D, 400), (E, 500), (F, 600), (G, 700)]
REFERENCE = [
    ([], ZEROS, ZEROS),
    ([(ZEROS, 0)], ZEROS, "638a6bc391964a85939d48f008e8bdbae6a7975e7ca2d87a3ce2492f4e4d8a4c"),
    ([(A, 100)], A, "8e16257caa3fe079d484d872a8975264b2ff683b0d6db9028cc7c0f968a45661"),
    (
        [(A, 100), (B, 200), (C, 300)],
        "71ec1275fca074724e2dd666921b3277c7cee603e4d025bcab2d4050015be2bc",
        "54e55dccc6653c612bdb5576c5d3cb34bb31bc4e100248abccf4c908b3ef7715",
    ),
    (
        [(A, 100)] * 4,
        "89f2ada89ff8c96763c6b25010e6dd76a4c05b1466207633ea559acf2093211b",
        "2cdba690d0e09563596e0cda626d43eb4c96ef1e994fe72d9b2f5a83cfcd36dd",
    ),
    (
        [(A, 100), (B, 200), (A, 100), (B, 200), (C, 300), (D, 400)],
        "52c826f99507aa05d0b45e9837fa1709e0485425cfbcb1e80db3905cf98b3ee9",
        "91d21684db364c8883ab8209fa5eb2e781cf07f37e1fa43e731c30839afe422f",
    ),
    (
        [(ZEROS, 0), (A, 100), (ZEROS, 0), (A, 100), (ZEROS, 0)],
        "f36c6a6374a567efd36ed087aeb680b57e3af4e0b5b8e7be2593df4cb647a2de",
        "ab2f46d31855e1133b3b5b70e78f841394a648710a208923b221c1a8a0572a1f",
    ),
    (
        [(C, 300), (D, 400), (E, 500), (E, 500), (E, 500)],
        "2c1fd1eca47e284512fcb40fcf45a1874939f9b91c774d46aeba5d004d9d263d",
        "0799ba7ee2c3fed173a8e8d832cd13970ddc16070ffbc8aa6dcd77476f66dc73",
    ),
    (
        EIGHT,
        "f62abe77e3fb9c954fe52b0028027ddc90c064c45951a4fd2211d87e5c0011db",
        "d1b068be5bbdb38992269e8efe61f601881e39f7a7585fd76883cc6ea5c23b44",
    ),
    (
        EIGHT * 8,  # three levels
        "6554007c9b5d0a5e7918f79596a1b68815c1407535585435f5735db761f21b88",
        "a8640ab81d48854e00078e12b1ea8be5d90be0ffb5f73a15b7009981d093ddd8",
    ),
    (
        [(A, 100)] * 32,
        "0a0123c1617921883b7e13902095fcb86676e77c49120c33b233003b0af0e0a6",
        "53af4711fd1d5e5bdc7f931b6be932314d8d673cb16ad2482f6f5222eaf9e63d",
    ),
]


@pytest.mark.parametrize(
    ("leaves", "node", "file"), REFERENCE, ids=[f"{len(r[0])}-leaves" for r in REFERENCE]
)
def test_merkle_root_and_file_hash_match_xet_core_reference(
    leaves: list[tuple[str, int]], node: str, file: str
) -> None:
    pairs = [(from_hex(text), size) for text, size in leaves]
    assert to_hex(merkle_root(pairs)) == node
    assert to_hex(file_hash(pairs)) == file


def test_chunk_hash_is_blake3_keyed_with_data_key() -> None:
    data = os.urandom(1000)
    assert chunk_hash(data) == blake3.blake3(data, key=DATA_KEY).digest()
    assert chunk_hash(memoryview(data)[10:20]) == chunk_hash(data[10:20])
    assert chunk_hash(data) != blake3.blake3(data).digest()


def _mixed(seed: int, size: int) -> bytes:
    """Random runs, repeats and zeros (zeros never cut, so chunks are forced at MAX_CHUNK there)."""
    rng = random.Random(seed)
    parts: list[bytes] = []
    while sum(map(len, parts)) < size:
        kind = rng.randrange(3)
        length = rng.randrange(1, 3 * MAX_CHUNK)
        if kind == 0:
            parts.append(rng.randbytes(length))
        elif kind == 1 and parts:
            parts.append(parts[rng.randrange(len(parts))][:length])
        else:
            parts.append(bytes(length))
    return b"".join(parts)[:size]


@pytest.mark.parametrize(
    ("seed", "size"),
    [
        (1, 3 * 1024 * 1024 + 17),
        (2, MIN_CHUNK - 1),
        (3, MIN_CHUNK),
        (4, MAX_CHUNK + 1),
        (5, 1),
        (6, 0),
    ],
)
def test_file_hash_agrees_with_hf_xet(tmp_path: Path, seed: int, size: int) -> None:
    data = _mixed(seed, size)
    path = tmp_path / "file.bin"
    path.write_bytes(data)
    chunks = [(chunk_hash(data[start:end]), end - start) for start, end in chunk(data)]
    [info] = hf_xet.hash_files([str(path)])
    assert info.file_size == size
    assert to_hex(file_hash(chunks)) == info.hash
    if size > 2 * MAX_CHUNK:
        assert len(chunks) > 9  # more than one node: the cut rule is exercised


def test_importing_mdl_xet_loads_neither_blake3_nor_lz4() -> None:
    """They are imported when a Xet file is fetched, so `import mdl.xet` (and every command that
    never fetches one) stays light."""
    code = (
        "import sys, mdl.xet; print(sorted(m for m in ('blake3', 'lz4', 'lz4.frame') if m in"
        " sys.modules))"
    )
    shown = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=os.environ
    )
    assert shown.stdout.strip() == "[]"
