"""A Xet stand-in for tests and benchmarks: content minted from the spec, and a CAS origin that
serves it.

Written from the Hub's protocol documents (hub-docs `docs/xet/`: chunking, hashing, xorb, api,
download-protocol, auth), independently of `mdl.xet`, so mdl's tests compare two implementations,
and `hf_xet` checks this one.

- Minting (pure, also used by benchmarks): `chunk` (gearhash content-defined chunking),
  `chunk_hash`, `merkle_root`, `file_hash`, `hash_hex`, `encode_chunk`; `XetStore.add(data, scheme)`
  chunks a file, dedupes its chunks against every xorb already stored (a global chunk index) and
  packs the new ones into new xorbs (at most 64 MiB / 8192 chunks each); it returns a `XetFile`
  (hash, sha256, size, terms).
- `CasServer`: a `LoopbackServer` answering `GET /v1|v2/reconstructions/{hash}` (Bearer CAS token)
  and serving xorb bytes at presigned URLs on the same origin
  (`/xorb/default/{hash}?X-Xet-Signature=…`), each URL granting exact byte ranges only. Knobs for
  faults: see the class docstring.
- `XetHubServer`: a `HubServer` whose LFS files are Xet-backed (tree `xetHash`, resolve `X-Xet-*` +
  `Link` headers, `GET /api/{type}s/{repo}/xet-read-token/{rev}`), with its own `CasServer`
  (`hub.cas`).
- `hf_download(hub, repo, files, home)`: huggingface_hub + hf_xet (the oracle) downloading from the
  stand-in, in a child process with its own HF_HOME.
- `python tests/xetserver.py FILE...` serves the files as successive commits from another process
  (benchmarks).

Usage::

    with XetHubServer() as hub:
        hub.add_repo("org/m", {"model.safetensors": make_data(4 << 20)}, scheme="lz4") xf =
        hub.xet_file("org/m", "model.safetensors")       # XetFile: hash, sha256, size, terms ...
        # a client downloads it hub.cas.xorb_bytes()                                 # body bytes
        served from xorb URLs hub.cas.corrupt(xf.terms[0].xorb, 3)                 # flip one byte
        of chunk 3 as served
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import itertools
import os
import re
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Self
from urllib.parse import quote, unquote, urlencode

import blake3
import lz4.frame
from servers import (
    TOKEN,
    CdnServer,
    Commit,
    Content,
    Exchange,
    Fault,
    HubServer,
    LoopbackServer,
    Repo,
    RepoType,
    RequestRecord,
    _Handler,
    _HTTPServer,
)

__all__ = [
    "DATA_KEY",
    "INTERNAL_NODE_KEY",
    "MAX_CHUNK",
    "MIN_CHUNK",
    "CasServer",
    "Scheme",
    "Term",
    "TokenGrant",
    "XetFile",
    "XetHubServer",
    "XetStore",
    "Xorb",
    "bearer",
    "bg4_split",
    "chunk",
    "chunk_hash",
    "decode_chunk",
    "encode_chunk",
    "file_hash",
    "hash_hex",
    "hex_hash",
    "hf_download",
    "merkle_root",
    "revise",
    "xet_hash",
]

# ----------------------------------------------------------------------------------------------------------
# Chunking (chunking.md: gearhash CDC, 8 KiB min, 128 KiB max, mask of the top 16 bits)
# ----------------------------------------------------------------------------------------------------------

MIN_CHUNK = 8 * 1024
MAX_CHUNK = 128 * 1024
_MASK = 0xFFFF_0000_0000_0000
# the gear hash at a byte depends only on the last 64 bytes (h << 1 per byte, 64-bit wrapping)
_WINDOW = 64

# rust-gearhash's DEFAULT_TABLE (the table chunking.md names).
_GEAR: tuple[int, ...] = (
    0xb088d3a9e840f559, 0x5652c7f739ed20d6, 0x45b28969898972ab, 0x6b0a89d5b68ec777, 0x368f573e8b7a31b7,
    0x1dc636dce936d94b, 0x207a4c4e5554d5b6, 0xa474b34628239acb, 0x3b06a83e1ca3b912, 0x90e78d6c2f02baf7,
    0xe1c92df7150d9a8a, 0x8e95053a1086d3ad, 0x5a2ef4f1b83a0722, 0xa50fac949f807fae, 0x0e7303eb80d8d681,
    0x99b07edc1570ad0f, 0x689d2fb555fd3076, 0x00005082119ea468, 0xc4b08306a88fcc28, 0x3eb0678af6374afd,
    0xf19f87ab86ad7436, 0xf2129fbfbe6bc736, 0x481149575c98a4ed, 0x0000010695477bc5, 0x1fba37801a9ceacc,
    0x3bf06fd663a49b6d, 0x99687e9782e3874b, 0x79a10673aa50d8e3, 0xe4accf9e6211f420, 0x2520e71f87579071,
    0x2bd5d3fd781a8a9b, 0x00de4dcddd11c873, 0xeaa9311c5a87392f, 0xdb748eb617bc40ff, 0xaf579a8df620bf6f,
    0x86a6e5da1b09c2b1, 0xcc2fc30ac322a12e, 0x355e2afec1f74267, 0x2d99c8f4c021a47b, 0xbade4b4a9404cfc3,
    0xf7b518721d707d69, 0x3286b6587bf32c20, 0x0000b68886af270c, 0xa115d6e4db8a9079, 0x484f7e9c97b2e199,
    0xccca7bb75713e301, 0xbf2584a62bb0f160, 0xade7e813625dbcc8, 0x000070940d87955a, 0x8ae69108139e626f,
    0xbd776ad72fde38a2, 0xfb6b001fc2fcc0cf, 0xc7a474b8e67bc427, 0xbaf6f11610eb5d58, 0x09cb1f5b6de770d1,
    0xb0b219e6977d4c47, 0x00ccbc386ea7ad4a, 0xcc849d0adf973f01, 0x73a3ef7d016af770, 0xc807d2d386bdbdfe,
    0x7f2ac9966c791730, 0xd037a86bc6c504da, 0xf3f17c661eaa609d, 0xaca626b04daae687, 0x755a99374f4a5b07,
    0x90837ee65b2caede, 0x6ee8ad93fd560785, 0x0000d9e11053edd8, 0x9e063bb2d21cdbd7, 0x07ab77f12a01d2b2,
    0xec550255e6641b44, 0x78fb94a8449c14c6, 0xc7510e1bc6c0f5f5, 0x0000320b36e4cae3, 0x827c33262c8b1a2d,
    0x14675f0b48ea4144, 0x267bd3a6498deceb, 0xf1916ff982f5035e, 0x86221b7ff434fb88, 0x9dbecee7386f49d8,
    0xea58f8cac80f8f4a, 0x008d198692fc64d8, 0x6d38704fbabf9a36, 0xe032cb07d1e7be4c, 0x228d21f6ad450890,
    0x635cb1bfc02589a5, 0x4620a1739ca2ce71, 0xa7e7dfe3aae5fb58, 0x0c10ca932b3c0deb, 0x2727fee884afed7b,
    0xa2df1c6df9e2ab1f, 0x4dcdd1ac0774f523, 0x000070ffad33e24e, 0xa2ace87bc5977816, 0x9892275ab4286049,
    0xc2861181ddf18959, 0xbb9972a042483e19, 0xef70cd3766513078, 0x00000513abfc9864, 0xc058b61858c94083,
    0x09e850859725e0de, 0x9197fb3bf83e7d94, 0x7e1e626d12b64bce, 0x520c54507f7b57d1, 0xbee1797174e22416,
    0x6fd9ac3222e95587, 0x0023957c9adfbf3e, 0xa01c7d7e234bbe15, 0xaba2c758b8a38cbb, 0x0d1fa0ceec3e2b30,
    0x0bb6a58b7e60b991, 0x4333dd5b9fa26635, 0xc2fd3b7d4001c1a3, 0xfb41802454731127, 0x65a56185a50d18cb,
    0xf67a02bd8784b54f, 0x696f11dd67e65063, 0x00002022fca814ab, 0x8cd6be912db9d852, 0x695189b6e9ae8a57,
    0xee9453b50ada0c28, 0xd8fc5ea91a78845e, 0xab86bf191a4aa767, 0x0000c6b5c86415e5, 0x267310178e08a22e,
    0xed2d101b078bca25, 0x3b41ed84b226a8fb, 0x13e622120f28dc06, 0xa315f5ebfb706d26, 0x8816c34e3301bace,
    0xe9395b9cbb71fdae, 0x002ce9202e721648, 0x4283db1d2bb3c91c, 0xd77d461ad2b1a6a5, 0xe2ec17e46eeb866b,
    0xb8e0be4039fbc47c, 0xdea160c4d5299d04, 0x7eec86c8d28c3634, 0x2119ad129f98a399, 0xa6ccf46b61a283ef,
    0x2c52cedef658c617, 0x2db4871169acdd83, 0x0000f0d6f39ecbe9, 0x3dd5d8c98d2f9489, 0x8a1872a22b01f584,
    0xf282a4c40e7b3cf2, 0x8020ec2ccb1ba196, 0x6693b6e09e59e313, 0x0000ce19cc7c83eb, 0x20cb5735f6479c3b,
    0x762ebf3759d75a5b, 0x207bfe823d693975, 0xd77dc112339cd9d5, 0x9ba7834284627d03, 0x217dc513e95f51e9,
    0xb27b1a29fc5e7816, 0x00d5cd9831bb662d, 0x71e39b806d75734c, 0x7e572af006fb1a23, 0xa2734f2f6ae91f85,
    0xbf82c6b5022cddf2, 0x5c3beac60761a0de, 0xcdc893bb47416998, 0x6d1085615c187e01, 0x77f8ae30ac277c5d,
    0x917c6b81122a2c91, 0x5b75b699add16967, 0x0000cf6ae79a069b, 0xf3c40afa60de1104, 0x2063127aa59167c3,
    0x621de62269d1894d, 0xd188ac1de62b4726, 0x107036e2154b673c, 0x0000b85f28553a1d, 0xf2ef4e4c18236f3d,
    0xd9d6de6611b9f602, 0xa1fc7955fb47911c, 0xeb85fd032f298dbd, 0xbe27502fb3befae1, 0xe3034251c4cd661e,
    0x441364d354071836, 0x0082b36c75f2983e, 0xb145910316fa66f0, 0x021c069c9847caf7, 0x2910dfc75a4b5221,
    0x735b353e1c57a8b5, 0xce44312ce98ed96c, 0xbc942e4506bdfa65, 0xf05086a71257941b, 0xfec3b215d351cead,
    0x00ae1055e0144202, 0xf54b40846f42e454, 0x00007fd9c8bcbcc8, 0xbfbd9ef317de9bfe, 0xa804302ff2854e12,
    0x39ce4957a5e5d8d4, 0xffb9e2a45637ba84, 0x55b9ad1d9ea0818b, 0x00008acbf319178a, 0x48e2bfc8d0fbfb38,
    0x8be39841e848b5e8, 0x0e2712160696a08b, 0xd51096e84b44242a, 0x1101ba176792e13a, 0xc22e770f4531689d,
    0x1689eff272bbc56c, 0x00a92a197f5650ec, 0xbc765990bda1784e, 0xc61441e392fcb8ae, 0x07e13a2ced31e4a0,
    0x92cbe984234e9d4d, 0x8f4ff572bb7d8ac5, 0x0b9670c00b963bd0, 0x62955a581a03eb01, 0x645f83e5ea000254,
    0x41fce516cd88f299, 0xbbda9748da7a98cf, 0x0000aab2fe4845fa, 0x19761b069bf56555, 0x8b8f5e8343b6ad56,
    0x3e5d1cfd144821d9, 0xec5c1e2ca2b0cd8f, 0xfaf7e0fea7fbb57f, 0x000000d3ba12961b, 0xda3f90178401b18e,
    0x70ff906de33a5feb, 0x0527d5a7c06970e7, 0x22d8e773607c13e9, 0xc9ab70df643c3bac, 0xeda4c6dc8abe12e3,
    0xecef1f410033e78a, 0x0024c2b274ac72cb, 0x06740d954fa900b4, 0x1d7a299b323d6304, 0xb3c37cb298cbead5,
    0xc986e3c76178739b, 0x9fabea364b46f58a, 0x6da214c5af85cc56, 0x17a43ed8b7a38f84, 0x6eccec511d9adbeb,
    0xf9cab30913335afb, 0x4a5e60c5f415eed2, 0x00006967503672b4, 0x9da51d121454bb87, 0x84321e13b9bbc816,
    0xfb3d6fb6ab2fdd8d, 0x60305eed8e160a8d, 0xcbbf4b14e9946ce8, 0x00004f63381b10c3, 0x07d5b7816fcc4e10,
    0xe5a536726a6a8155, 0x57afb23447a07fdd, 0x18f346f7abc9d394, 0x636dc655d61ad33d, 0xcc8bab4939f7f3f6,
    0x63c7a906c1dd187b,
)  # fmt: skip


def chunk(data: bytes | memoryview) -> list[tuple[int, int]]:
    """The spec's content-defined chunks of `data` as [start, end) spans (none for empty data).

    Same boundaries as testing every byte: the gear hash after a byte only depends on the 64 bytes
    up to it (older ones are shifted out: the spec's cut-point skipping rests on it), so every
    byte's hash is found at once (numpy, six shift-and-adds a block: a fourth of the CPU of a
    byte loop, which every minted file paid), then the spec's greedy walk over the candidates."""
    import numpy as np

    view = memoryview(data)
    n = len(view)
    found = _cut_candidates(np.frombuffer(view, dtype=np.uint8))
    spans: list[tuple[int, int]] = []
    start = 0
    while start < n:
        first_test = start + MIN_CHUNK - 1  # the index whose byte makes the chunk MIN_CHUNK long
        if first_test >= n:
            spans.append((start, n))
            break
        limit = min(n, start + MAX_CHUNK)
        at = int(np.searchsorted(found, first_test))
        cut = int(found[at]) + 1 if at < len(found) and found[at] < limit else limit
        spans.append((start, cut))
        start = cut
    return spans


_BLOCK = 1 << 20  # bytes hashed at once (8 bytes of hash each)


def _cut_candidates(raw: Any) -> Any:
    """The index of every byte after which the gear hash has none of the mask's bits set."""
    import numpy as np

    gear, mask, found = np.array(_GEAR, dtype=np.uint64), np.uint64(_MASK), []
    for at in range(0, len(raw), _BLOCK):
        lead = min(at, _WINDOW - 1)  # the bytes before the block that its first hashes hold
        h = gear[raw[at - lead : at + _BLOCK]]
        for shift in (1, 2, 4, 8, 16, 32):  # h[i] = sum(gear[b[i-k]] << k for k < 64), mod 2**64
            h[shift:] += h[:-shift] << np.uint64(shift)
        found.append(np.flatnonzero((h[lead:] & mask) == 0) + at)
    return np.concatenate(found) if found else np.zeros(0, dtype=np.intp)


# ----------------------------------------------------------------------------------------------------------
# Hashing (hashing.md, api.md "Converting Hashes to Strings")
# ----------------------------------------------------------------------------------------------------------

DATA_KEY = bytes(
    [102, 151, 245, 119, 91, 149, 80, 222, 49, 53, 203, 172, 165, 151, 24, 28,
     157, 228, 33, 16, 155, 235, 43, 88, 180, 208, 176, 75, 147, 173, 242, 41]
)  # fmt: skip
INTERNAL_NODE_KEY = bytes(
    [1, 126, 197, 199, 165, 71, 41, 150, 253, 148, 102, 102, 180, 138, 2, 230,
     93, 221, 83, 111, 55, 199, 109, 210, 248, 99, 82, 230, 74, 83, 113, 63]
)  # fmt: skip
_ZERO_KEY = bytes(32)
_MEAN_BRANCHING = 4


def hash_hex(raw: bytes) -> str:
    """The Xet string form of a 32-byte hash: each 8-byte little-endian word printed as one
    16-digit number.
    """
    if len(raw) != 32:
        raise ValueError(f"a Xet hash is 32 bytes, not {len(raw)}")
    return "".join(raw[i : i + 8][::-1].hex() for i in range(0, 32, 8))


def hex_hash(text: str) -> bytes:
    """The raw 32 bytes behind a Xet hash string (inverse of `hash_hex`)."""
    if not re.fullmatch(r"[0-9a-f]{64}", text):
        raise ValueError(f"not a Xet hash string: {text!r}")
    raw = bytes.fromhex(text)
    return b"".join(raw[i : i + 8][::-1] for i in range(0, 32, 8))


def chunk_hash(data: bytes | memoryview) -> bytes:
    """A chunk's hash: blake3 keyed with DATA_KEY (raw bytes)."""
    return blake3.blake3(bytes(data), key=DATA_KEY).digest()


def _node_hash(children: Sequence[tuple[bytes, int]]) -> tuple[bytes, int]:
    text = "".join(f"{hash_hex(h)} : {size}\n" for h, size in children)
    return blake3.blake3(text.encode(), key=INTERNAL_NODE_KEY).digest(), sum(
        size for _, size in children
    )


def _next_cut(level: Sequence[tuple[bytes, int]], start: int) -> int:
    """Where the node starting at `start` ends: after the first child at offset >= 2 whose hash's
    last 64-bit word is 0 mod 4, after at most 2*4+1 children, or at the end."""
    remaining = len(level) - start
    if remaining <= 2:
        return len(level)
    end = start + min(2 * _MEAN_BRANCHING + 1, remaining)
    for i in range(start + 2, end):
        if int.from_bytes(level[i][0][24:32], "little") % _MEAN_BRANCHING == 0:
            return i + 1
    return end


def merkle_root(chunks: Sequence[tuple[bytes, int]]) -> bytes:
    """The aggregated node hash (the xorb hash of these chunks): 32 zero bytes when empty, the
    hash itself for one.
    """
    level = list(chunks)
    if not level:
        return _ZERO_KEY
    while len(level) > 1:
        nxt: list[tuple[bytes, int]] = []
        i = 0
        while i < len(level):
            cut = _next_cut(level, i)
            nxt.append(_node_hash(level[i:cut]))
            i = cut
        level = nxt
    return level[0][0]


def file_hash(chunks: Sequence[tuple[bytes, int]]) -> bytes:
    """A file's hash: blake3(merkle root, key = 32 zero bytes); 32 zero bytes for an empty file."""
    if not chunks:
        return _ZERO_KEY
    return blake3.blake3(merkle_root(chunks), key=_ZERO_KEY).digest()


def xet_hash(data: bytes | memoryview) -> str:
    """The Xet file hash string of `data` (chunked and hashed from the spec)."""
    view = memoryview(data)
    return hash_hex(file_hash([(chunk_hash(view[s:e]), e - s) for s, e in chunk(view)]))


# ----------------------------------------------------------------------------------------------------------
# Merkle hash subtrees (xet-core merklehash/merkle_hash_subtree.rs, as `GET /v2/file-chunk-hashes`
# sends them): a run of chunks partly aggregated, with the unstable nodes kept per level
# ----------------------------------------------------------------------------------------------------------

Hump = tuple[list[list[tuple[bytes, int]]], list[list[tuple[bytes, int]]]]  # lefts, rights by level


def _cuts(nodes: Sequence[tuple[bytes, int]]) -> list[int]:
    return [i for i, (h, _) in enumerate(nodes) if int.from_bytes(h[24:32], "little") % 4 == 0]


def _stable_triples(cuts: Sequence[int]) -> list[tuple[int, int, int]]:
    """Three natural cuts in a row, 3 to 7 nodes apart: the middle one's group bound is stable."""
    return [t for t in zip(cuts, cuts[1:], cuts[2:]) if 2 < t[1] - t[0] < 8 and 2 < t[2] - t[1] < 8]


def _promote(
    nodes: list[tuple[bytes, int]], at_start: bool, at_end: bool
) -> tuple[int, list[tuple[bytes, int]], int]:
    """(prefix length, the merged groups of the stable middle, suffix length)."""
    if len(nodes) <= 1:
        return len(nodes), [], 0
    if at_start:
        lo = 0
    else:
        triples = _stable_triples(_cuts(nodes)) if len(nodes) >= 3 else []
        if not triples:
            return len(nodes), [], 0
        lo = triples[0][1] + 1
    if at_end:
        hi = len(nodes)
    else:
        rest = nodes[lo:]
        triples = _stable_triples(_cuts(rest)) if len(rest) >= 3 else []
        if not triples:
            return len(nodes), [], 0
        hi = lo + triples[-1][1] + 1
    if lo >= hi:
        return len(nodes), [], 0
    middle, groups, i = nodes[lo:hi], [], 0
    while i < len(middle):
        j = i + _next_cut(middle[i:], 0)
        groups.append(_node_hash(middle[i:j]))
        i = j
    return lo, groups, len(nodes) - hi


def hump(chunks: Sequence[tuple[bytes, int]], at_start: bool, at_end: bool) -> Hump:
    """xet-core's `MerkleHashSubtree::from_chunks`: per level the nodes left unmerged on each side."""
    lefts: list[list[tuple[bytes, int]]] = []
    rights: list[list[tuple[bytes, int]]] = []
    level = list(chunks)
    while True:
        lo, up, hi = _promote(level, at_start and not any(lefts), at_end and not any(rights))
        lefts.append(level[:lo])
        rights.append(level[len(level) - hi :])
        if len(up) == 1:
            lefts.append(up)
            rights.append([])
        if len(up) <= 1:
            return lefts, rights
        level = up


def hump_json(h: Hump, at_start: bool, at_end: bool) -> dict[str, Any] | None:
    """serde's human-readable form of a `MerkleHashSubtree`; None when it holds no node."""
    lefts, rights = h
    nodes = [n for level in lefts for n in level] + [n for level in reversed(rights) for n in level]
    if not nodes:
        return None
    return {
        "nodes": [{"hash": hash_hex(raw), "size": size} for raw, size in nodes],
        "levels": [[len(left), len(right)] for left, right in zip(lefts, rights, strict=True)],
        "at_start": at_start,
        "at_end": at_end,
    }


def _stable_size(size: int) -> bool:
    """A chunk length only a cut at its content could give (xet-core `is_stable_chunk_size`)."""
    return 2 * MIN_CHUNK <= size < MAX_CHUNK - MIN_CHUNK


def chunk_hashes_answer(xf: XetFile, dirty: Sequence[tuple[int, int]]) -> dict[str, Any]:
    """The CAS's `file-chunk-hashes` answer for the `dirty` byte ranges (`[start, end)`, sorted):
    windows of whole chunks around them, each closed after two stable-size clean chunks in a row
    (xet-core `ChunkWindowBuilder`), and the N + 1 summaries of the gaps."""
    windows: list[list[int]] = []
    summaries: list[dict[str, Any] | None] = []
    gap: list[tuple[bytes, int]] = []
    first_gap, open_window, last_clean = True, False, None
    at = 0
    for text, (_, _, size) in zip(xf.chunk_hashes, xf.chunks, strict=True):
        start, at = at, at + size
        dirty_here = any(at > lo and start < hi for lo, hi in dirty)
        if not open_window and not dirty_here:
            gap.append((hex_hash(text), size))
            continue
        if not open_window:
            summaries.append(hump_json(hump(gap, first_gap, False), first_gap, False))
            gap, open_window, last_clean = [], True, None
            windows.append([start, at])
            continue
        windows[-1][1] = at
        if dirty_here:
            last_clean = None
            continue
        stable = last_clean is not None and _stable_size(last_clean) and _stable_size(size)
        last_clean = size
        if stable:
            open_window, first_gap = False, False
    summaries.append(hump_json(hump(gap, first_gap, True), first_gap, True))
    return {
        "totalChunks": len(xf.chunks),
        "fileSize": xf.size,
        "windows": [{"dirtyByteRange": w} for w in windows],
        "hashRanges": summaries,
        "gapVerification": [],
    }


# ----------------------------------------------------------------------------------------------------------
# Chunk serialization (xorb.md): 8-byte header + payload; 0 = stored, 1 = LZ4 frame, 2 = byte
# grouping 4 + LZ4
# ----------------------------------------------------------------------------------------------------------

Scheme = Literal["none", "lz4", "bg4", "mixed"]
"""How a file's new chunks are compressed: all stored, all LZ4, all byte-grouped + LZ4, or cycling through the
three (the file's i-th new chunk gets scheme i % 3). The chosen scheme is always used, even when it makes a chunk
bigger (random test data), so every scheme is on the wire."""

_SCHEME_CODES: dict[str, int] = {"none": 0, "lz4": 1, "bg4": 2}


def bg4_split(data: bytes) -> bytes:
    """Byte grouping 4: bytes 0,4,8,… then 1,5,9,… then 2,… then 3,… (a short tail spreads over
    the first groups).
    """
    return b"".join(data[g::4] for g in range(4))


def _bg4_join(grouped: bytes) -> bytes:
    n = len(grouped)
    sizes = [(n - g + 3) // 4 for g in range(4)]
    out = bytearray(n)
    pos = 0
    for g, size in enumerate(sizes):
        out[g::4] = grouped[pos : pos + size]
        pos += size
    return bytes(out)


def encode_chunk(data: bytes, scheme: int) -> bytes:
    """One serialized chunk: header (version 0, compressed size u24 LE, scheme, uncompressed size
    u24 LE) + payload.
    """
    if scheme == 0:
        payload = data
    elif scheme == 1:
        payload = lz4.frame.compress(data)
    elif scheme == 2:
        payload = lz4.frame.compress(bg4_split(data))
    else:
        raise ValueError(f"unknown compression scheme {scheme}")
    header = (
        b"\x00"
        + len(payload).to_bytes(3, "little")
        + bytes([scheme])
        + len(data).to_bytes(3, "little")
    )
    return header + payload


def decode_chunk(blob: bytes) -> bytes:
    """The data of one serialized chunk (the stand-in's own reader, for its tests)."""
    size, scheme = int.from_bytes(blob[1:4], "little"), blob[4]
    payload = blob[8 : 8 + size]
    if scheme == 0:
        return payload
    data = lz4.frame.decompress(payload)
    return _bg4_join(data) if scheme == 2 else data


# ----------------------------------------------------------------------------------------------------------
# Minting: files -> chunks -> xorbs, with a global chunk index for deduplication
# ----------------------------------------------------------------------------------------------------------

MAX_XORB_BYTES = 64 * 1024 * 1024
MAX_XORB_CHUNKS = 8192


@dataclass(frozen=True)
class Term:
    """One reconstruction term: chunks [start, end) of `xorb`, `length` bytes once decoded, at
    `offset` in the file.
    """

    xorb: str
    start: int
    end: int
    length: int
    offset: int


@dataclass(frozen=True)
class Xorb:
    """A serialized xorb: chunks back to back (no footer: the download protocol only reads chunk
    ranges).
    """

    hash: str
    data: bytes
    offsets: tuple[int, ...]  # where each chunk's header starts, then len(data): len == chunks + 1
    chunk_hashes: tuple[bytes, ...]
    sizes: tuple[int, ...]  # decoded chunk sizes
    schemes: tuple[int, ...]  # 0 stored, 1 LZ4, 2 BG4 + LZ4

    @property
    def chunks(self) -> int:
        """How many chunks it holds."""
        return len(self.sizes)

    def byte_range(self, start: int, end: int) -> tuple[int, int]:
        """The serialized bytes of chunks [start, end) as (first, last) inclusive, as in a
        `Range` header.
        """
        return self.offsets[start], self.offsets[end] - 1

    def chunk_bytes(self, start: int, end: int) -> bytes:
        """The serialized chunks [start, end), exactly what a range fetch returns."""
        return self.data[self.offsets[start] : self.offsets[end]]


@dataclass(frozen=True)
class XetFile:
    """A minted file: its Xet hash, sha256, size, its terms, and where each of its chunks lives."""

    hash: str
    sha256: str
    size: int
    terms: tuple[Term, ...]
    # per file chunk: (xorb hash, index in the xorb, length)
    chunks: tuple[tuple[str, int, int], ...]
    chunk_hashes: tuple[str, ...]  # per file chunk, Xet string form

    @property
    def xorbs(self) -> list[str]:
        """The xorbs its terms use, in first-use order."""
        return list(dict.fromkeys(t.xorb for t in self.terms))


def _terms(chunks: Sequence[tuple[str, int, int]], offset: int = 0) -> tuple[Term, ...]:
    """Group consecutive chunks of the same xorb into terms."""
    terms: list[Term] = []
    for xorb, index, length in chunks:
        last = terms[-1] if terms else None
        if last is not None and last.xorb == xorb and last.end == index:
            terms[-1] = Term(xorb, last.start, index + 1, last.length + length, last.offset)
        else:
            terms.append(Term(xorb, index, index + 1, length, offset))
        offset += length
    return tuple(terms)


class _Pending:
    def __init__(self) -> None:
        self.hashes: list[bytes] = []
        self.sizes: list[int] = []
        self.schemes: list[int] = []
        self.blobs: list[bytes] = []
        self.nbytes = 0


class XetStore:
    """Every xorb and file minted so far, with the global chunk index that deduplicates new files
    against them.

    `add(data)` chunks `data`; chunks already stored (in any xorb, or earlier in the same file) are
    referenced where they are, new ones go to new xorbs (at most `max_xorb_bytes` serialized /
    `max_xorb_chunks` chunks). So revision B of a file that changes some chunks reconstructs from
    A's xorbs plus new ones. Thread-safe.
    """

    def __init__(
        self, *, max_xorb_bytes: int = MAX_XORB_BYTES, max_xorb_chunks: int = MAX_XORB_CHUNKS
    ) -> None:
        self.max_xorb_bytes = max_xorb_bytes
        self.max_xorb_chunks = max_xorb_chunks
        self.xorbs: dict[str, Xorb] = {}
        self.files: dict[str, XetFile] = {}
        self._index: dict[bytes, tuple[str, int]] = {}
        self._lock = threading.Lock()

    def add(
        self,
        data: bytes | memoryview | Path,
        scheme: Scheme = "none",
        *,
        spans: Sequence[tuple[int, int]] | None = None,
    ) -> XetFile:
        """Mint a file (`spans`: precomputed `chunk(data)`, e.g. cached by a benchmark); returns
        it.
        """
        if isinstance(data, Path):
            data = data.read_bytes()
        view = memoryview(data)
        spans = chunk(view) if spans is None else spans
        with self._lock:
            return self._add(view, scheme, spans)

    def _add(self, view: memoryview, scheme: Scheme, spans: Sequence[tuple[int, int]]) -> XetFile:
        pending: list[_Pending] = []
        # chunk hash -> (pending xorb, index) for this file's new chunks
        local: dict[bytes, tuple[int, int]] = {}
        # (stored xorb hash | pending number, index, length)
        placed: list[tuple[str | int, int, int]] = []
        hashes: list[tuple[bytes, int]] = []
        new = 0
        for start, end in spans:
            piece = view[start:end]
            h = chunk_hash(piece)
            hashes.append((h, end - start))
            where: tuple[str | int, int] | None = self._index.get(h) or local.get(h)
            if where is None:
                code = _SCHEME_CODES[scheme] if scheme != "mixed" else new % 3
                new += 1
                blob = encode_chunk(bytes(piece), code)
                cur = pending[-1] if pending else None
                if (
                    cur is None
                    or len(cur.sizes) >= self.max_xorb_chunks
                    or cur.nbytes + len(blob) > self.max_xorb_bytes
                ):
                    cur = _Pending()
                    pending.append(cur)
                where = (len(pending) - 1, len(cur.sizes))
                local[h] = (where[0], where[1])
                cur.hashes.append(h)
                cur.sizes.append(end - start)
                cur.schemes.append(code)
                cur.blobs.append(blob)
                cur.nbytes += len(blob)
            placed.append((where[0], where[1], end - start))
        names: list[str] = []
        for p in pending:
            name = hash_hex(merkle_root(list(zip(p.hashes, p.sizes, strict=True))))
            offsets = list(itertools.accumulate((len(b) for b in p.blobs), initial=0))
            self.xorbs[name] = Xorb(
                name,
                b"".join(p.blobs),
                tuple(offsets),
                tuple(p.hashes),
                tuple(p.sizes),
                tuple(p.schemes),
            )
            for i, h in enumerate(p.hashes):
                self._index.setdefault(h, (name, i))
            names.append(name)
        chunks = tuple((x if isinstance(x, str) else names[x], i, n) for x, i, n in placed)
        xf = XetFile(
            hash=hash_hex(file_hash(hashes)),
            sha256=hashlib.sha256(view).hexdigest(),
            size=len(view),
            terms=_terms(chunks),
            chunks=chunks,
            chunk_hashes=tuple(hash_hex(h) for h, _ in hashes),
        )
        self.files.setdefault(xf.hash, xf)
        return self.files[xf.hash]

    def file(self, file_hash: str) -> XetFile:
        """A minted file by its Xet hash (KeyError if unknown)."""
        return self.files[file_hash]

    def reconstruct(self, xf: XetFile) -> bytes:
        """The file's bytes rebuilt from the stored xorbs (the stand-in's own check)."""
        out = bytearray()
        for xorb, index, _ in xf.chunks:
            x = self.xorbs[xorb]
            out += decode_chunk(x.data[x.offsets[index] : x.offsets[index + 1]])
        return bytes(out)

    def xorb_bytes(self, xf: XetFile) -> int:
        """Serialized bytes of every chunk range its terms name, each xorb range counted once (what
        a client without any cache must download)."""
        total = 0
        for xorb, ranges in _merged_ranges(xf.terms).items():
            x = self.xorbs[xorb]
            total += sum(x.offsets[e] - x.offsets[s] for s, e in ranges)
        return total

    def new_bytes(self, xf: XetFile, old: XetFile) -> int:
        """Serialized bytes of the chunks of `xf` that `old` does not have (an ideal upgrade's
        download).
        """
        have = {(x, i) for x, i, _ in old.chunks}
        total = 0
        for x, i, _ in dict.fromkeys(xf.chunks):
            if (x, i) not in have:
                xo = self.xorbs[x]
                total += xo.offsets[i + 1] - xo.offsets[i]
        return total


def revise(data: bytes, places: int) -> bytes:
    """A new revision of `data`: one byte changed at `places` evenly spaced offsets, so about
    `places` chunks (sometimes a neighbour too) change and the rest deduplicate (e.g. 12 places in 8
    MiB: ~10 % of its chunks)."""
    out = bytearray(data)
    step = len(data) // places
    for k in range(places):
        out[k * step + step // 2] ^= 0x5D
    return bytes(out)


def _merged_ranges(terms: Iterable[Term]) -> dict[str, list[tuple[int, int]]]:
    """Per xorb, the chunk ranges the terms need, overlapping or adjacent ones merged, in order."""
    per: dict[str, list[tuple[int, int]]] = {}
    for t in terms:
        per.setdefault(t.xorb, []).append((t.start, t.end))
    merged: dict[str, list[tuple[int, int]]] = {}
    for xorb, ranges in per.items():
        out: list[tuple[int, int]] = []
        for s, e in sorted(ranges):
            if out and s <= out[-1][1]:
                out[-1] = (out[-1][0], max(out[-1][1], e))
            else:
                out.append((s, e))
        merged[xorb] = out
    return merged


# ----------------------------------------------------------------------------------------------------------
# CAS origin
# ----------------------------------------------------------------------------------------------------------


def bearer(record: RequestRecord) -> str | None:
    """The token of a logged request's `Authorization: Bearer …` header, if any."""
    auth = record.authorization
    if not auth:
        return None
    scheme, _, token = auth.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


@dataclass
class TokenGrant:
    """A CAS access token the stand-in issued: valid until `expires` (unix seconds) for the files in
    `files` (Xet hashes; None = any file), issued for `scope` (e.g. "model/org/name@<commit>")."""

    token: str
    expires: float
    files: frozenset[str] | None = None
    scope: str = ""


_XORB_PREFIX = "/xorb/default/"
_RANGE_RE = re.compile(r"bytes=(\d+)-(\d+)")


class CasServer(LoopbackServer):
    """The Xet CAS stand-in: reconstructions (v1, v2) and xorb bytes at presigned URLs, on one
    loopback origin.

    Routes:
    - `GET /v1/reconstructions/{hash}`, `GET /v2/reconstructions/{hash}`: `Authorization: Bearer
      <CAS token>` (401 when missing, unknown or expired; 403 when the token does not cover the
      file); 400 for a malformed hash, 404 for an unknown one; an optional `Range: bytes=a-b` (416
      when a >= size). v1 answers `fetch_info` with one URL per merged (overlapping or adjacent)
      chunk range of each xorb; v2 answers `xorbs` with `v2_ranges_per_url` ranges per URL entry (1
      by default). Byte ranges are inclusive in both.
    - `GET /xorb/default/{hash}?X-Xet-Ranges=…&X-Xet-Expires=…&gen=…&X-Xet-Signature=…`: the
      signature covers path, granted ranges, expiry and generation. 403 when it is missing, wrong or
      expired, when the URL is used up, when `Range` is absent or not exactly one granted
      `bytes=a-b`; else 206 with `Content-Range`.

    Knobs (plain attributes and methods, safe to change while serving):
    - `v2_status`: None serves v2; 404 or 501 answers that instead (a client then uses v1).
    - `v2_ranges_per_url`: how many ranges one v2 URL entry grants.
    - `fail_reconstructions(status, times=…)`: the next `times` (None: every) reconstruction
      requests fail.
    - `corrupt(xorb, chunk, at=…, only_from=…)`: flip one byte of a chunk's payload as served
      (stored, LZ4 or BG4 chunk); `only_from`: only in the copy sent to requests whose Range starts
      at that byte.
    - `url_lifetime` (seconds a presigned URL lives), `url_uses` (None: unlimited; 1: a URL works
      once), `expire_urls()` or `Fault.expire_urls(path_prefix="/xorb/", skip=N)` (every URL issued
      so far stops working): a client must ask the reconstruction again.
    - `reject_auth_on_xorbs` (True): a xorb request carrying an `Authorization` header gets 400, as
      S3 answers a presigned URL sent with a second credential (so a client leaking its CAS token
      there fails loudly).
    - `patch(xorb, offset, data)`: serve other bytes there (e.g. a chunk header with version 1 or
      scheme 3).
    - `rewrite(version, reply) -> dict | bytes`: a hook that changes (or replaces with raw bytes)
      each successful reconstruction reply before it is sent, for malformed-reply tests with real,
      working URLs.
    - `stall_xorbs(after_bytes, seconds=…)`: xorb bodies go silent after that many bytes.
    - `GET /v2/file-chunk-hashes/{hash}` (`X-Range-Dirty: bytes=a-b,…`): `chunk_hashes_answer`;
      `chunk_hashes_status` (404, 501…) answers that instead, `rewrite_chunk_hashes(answer)` changes
      (or replaces with raw bytes) each answer (a lying CAS); `chunk_hashes_asked` lists the dirty
      ranges of each request (`[start, end)`).
    - `token_lifetime` (seconds, for tokens issued from now on), `expire_tokens()`.
    - `down`: None, "503" (every request answers 503) or "reset" (connections are reset, no answer);
      `refuse_connections()` / `accept_connections()`: the port refuses connections, then listens
      again.
    The `log` records every request; `bearer(record)` gives its token, `xorb_bytes()` the xorb body
    bytes.
    """

    name = "cas"

    def __init__(
        self,
        store: XetStore | None = None,
        *,
        host_alias: str = "127.0.0.1",
        throttle_bps: float | None = None,
    ) -> None:
        super().__init__(host_alias=host_alias, throttle_bps=throttle_bps)
        self.store = store if store is not None else XetStore()
        self.tokens: dict[str, TokenGrant] = {}
        self.token_lifetime = 3600.0
        self.v2_status: int | None = None
        self.v2_ranges_per_url = 1
        self.url_lifetime = 3600.0
        self.url_uses: int | None = None
        self.reject_auth_on_xorbs = True
        self.rewrite: Callable[[int, dict[str, Any]], object] | None = None
        self.chunk_hashes_status: int | None = None
        self.rewrite_chunk_hashes: Callable[[dict[str, Any]], object] | None = None
        self.chunk_hashes_asked: list[list[tuple[int, int]]] = []
        self.down: Literal["503", "reset"] | None = None
        self.generation = 1
        self._secret = os.urandom(16)
        self._uses: dict[str, int] = {}
        # xorb hash -> the bytes served (corrupted copies included)
        self._served: dict[str, Content] = {}
        # (xorb, first byte asked) -> the bytes served then
        self._ranged: dict[tuple[str, int | None], Content] = {}

    # -- tokens and URLs
    # ------------------------------------------------------------------------------------

    def issue_token(
        self, *, files: Iterable[str] | None = None, lifetime: float | None = None, scope: str = ""
    ) -> TokenGrant:
        """A new CAS token for `files` (None: any), living `lifetime` seconds (default
        `token_lifetime`).
        """
        grant = TokenGrant(
            token="xet_" + secrets.token_urlsafe(24),
            expires=time.time() + (self.token_lifetime if lifetime is None else lifetime),
            files=frozenset(files) if files is not None else None,
            scope=scope,
        )
        with self._lock:
            self.tokens[grant.token] = grant
        return grant

    def expire_tokens(self) -> None:
        """Every token issued so far expires now (the next CAS request with one gets 401)."""
        with self._lock:
            for grant in self.tokens.values():
                grant.expires = min(grant.expires, time.time() - 1)

    def presign(
        self, xorb: str, ranges: Sequence[tuple[int, int]], *, lifetime: float | None = None
    ) -> str:
        """A presigned URL for `xorb` granting exactly these inclusive byte ranges."""
        path = _XORB_PREFIX + xorb
        expires = int(time.time() + (self.url_lifetime if lifetime is None else lifetime))
        granted = ",".join(f"{a}-{b}" for a, b in ranges)
        gen = self.generation
        query = {"X-Xet-Ranges": granted, "X-Xet-Expires": expires, "gen": gen}
        query["X-Xet-Signature"] = self._signature(path, granted, str(expires), str(gen))
        return f"{self.url}{path}?{urlencode(query)}"

    def expire_urls(self) -> None:
        """Every presigned URL issued so far stops working (403)."""
        with self._lock:
            self.generation += 1

    def _apply_side_effect(self, fault: Fault, ex: Exchange) -> None:
        if fault.kind == "expire":
            self.expire_urls()
        super()._apply_side_effect(fault, ex)

    def _signature(self, path: str, granted: str, expires: str, gen: str) -> str:
        msg = f"{path}\n{granted}\n{expires}\n{gen}".encode()
        return hmac.new(self._secret, msg, hashlib.sha256).hexdigest()

    # -- faults
    # ---------------------------------------------------------------------------------------------

    def fail_reconstructions(
        self, status: int = 503, *, times: int | None = 1, version: int | None = None, **kw: Any
    ) -> Fault:
        """The next `times` reconstruction requests (of `version`, or both) answer `status`;
        returns the fault.
        """
        prefix = f"/v{version}/reconstructions/" if version else "/v"
        return self.faults.add(Fault.http_error(status, path_prefix=prefix, times=times, **kw))

    def stall_xorbs(
        self, after_bytes: int = 0, seconds: float | None = None, *, times: int | None = 1
    ) -> Fault:
        """The next `times` xorb bodies stop after `after_bytes` for `seconds` (None: until
        stop), then close.
        """
        return self.faults.add(
            Fault.stall(after_bytes, seconds, path_prefix=_XORB_PREFIX, times=times)
        )

    def patch(self, xorb: str, offset: int, data: bytes, *, only_from: int | None = None) -> None:
        """Serve `xorb` with `data` written over its bytes at `offset` (e.g. a chunk header's
        version byte at `offsets[i]`, its scheme at `offsets[i] + 4`); `only_from`: only to requests
        whose Range starts at that byte of the xorb (one piece's copy of a chunk, not another's).
        The stored xorb stays as minted."""
        with self._lock:
            key = (xorb, only_from)
            served = bytearray((self._ranged.get(key) or self._content(xorb)).read())
            if offset < 0 or offset + len(data) > len(served):
                raise ValueError(
                    f"{xorb} has {len(served)} bytes: cannot patch {len(data)} at {offset}"
                )
            served[offset : offset + len(data)] = data
            if only_from is None:
                self._served[xorb] = Content(bytes(served))
            else:
                self._ranged[key] = Content(bytes(served))

    def corrupt(
        self, xorb: str, chunk: int, *, at: int | None = None, only_from: int | None = None
    ) -> int:
        """Serve `xorb` with one byte of chunk `chunk`'s payload flipped (`at`: offset in the
        payload, default the middle, which is literal data even in an LZ4 frame of random data;
        `only_from`: as for `patch`); returns the flipped byte's offset in the xorb. The stored xorb
        (and every hash) stays as minted."""
        x = self.store.xorbs[xorb]
        head, end = x.offsets[chunk] + 8, x.offsets[chunk + 1]
        pos = head + ((end - head) // 2 if at is None else at)
        if not head <= pos < end:
            raise ValueError(f"chunk {chunk} of {xorb} has {end - head} payload bytes, not {at}")
        with self._lock:
            flipped = (self._ranged.get((xorb, only_from)) or self._content(xorb)).read()[
                pos
            ] ^ 0xFF
        self.patch(xorb, pos, bytes([flipped]), only_from=only_from)
        return pos

    def heal(self) -> None:
        """Serve every xorb as minted again (undo `patch` and `corrupt`)."""
        with self._lock:
            self._served.clear()
            self._ranged.clear()

    def _content(self, xorb: str) -> Content:
        content = self._served.get(xorb)
        if content is None:
            content = self._served[xorb] = Content(self.store.xorbs[xorb].data)
        return content

    def refuse_connections(self) -> None:
        """Close the listening socket (and every open connection): connecting to `url` is refused
        until `accept_connections()`. The port stays this server's as far as the tests go."""
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        self._httpd.server_close()

    def accept_connections(self) -> None:
        """Listen again on the same port after `refuse_connections()`."""
        port = self.port
        self._httpd = _HTTPServer(("127.0.0.1", port), _Handler)
        self._httpd.owner = self
        self.start()

    # -- the log
    # ---------------------------------------------------------------------------------------------

    def xorb_records(self) -> list[RequestRecord]:
        """The logged xorb fetches."""
        return self.log.records(path_prefix=_XORB_PREFIX)

    def xorb_bytes(self) -> int:
        """Body bytes sent from xorb URLs so far."""
        return self.log.body_bytes(path_prefix=_XORB_PREFIX)

    def reconstruction_records(self, version: int | None = None) -> list[RequestRecord]:
        """The logged reconstruction requests (of one version, or both)."""
        return [
            r
            for r in self.log.records()
            if re.fullmatch(rf"/v{version or '[12]'}/reconstructions/.*", r.url_path) is not None
        ]

    # -- routing
    # --------------------------------------------------------------------------------------------

    def route(self, ex: Exchange) -> None:
        """Reconstructions and xorb ranges."""
        if self.down == "503":
            ex.send_json({"error": "service unavailable"}, status=503)
            return
        if self.down == "reset":
            self.log.append(ex.record)
            ex.abort(rst=True)
            return
        if ex.path == "/_stats":  # for a client in another process (benchmarks): the log's totals
            records = [r for r in self.log.records() if r.url_path != "/_stats"]
            if ex.query.get("clear") == "1":
                self.log.clear()
            xorbs = [r for r in records if r.url_path.startswith(_XORB_PREFIX)]
            totals = {"xorb_requests": len(xorbs), "xorb_bytes": sum(r.bytes_sent for r in xorbs)}
            ex.send_json({"requests": len(records), **totals})
            return
        segs = ex.path.split("/")[1:]
        if len(segs) == 3 and segs[0] in ("v1", "v2"):
            self._api(ex, segs)
        elif ex.path.startswith(_XORB_PREFIX) and "/" not in ex.path[len(_XORB_PREFIX) :]:
            self._xorb(ex, unquote(ex.path[len(_XORB_PREFIX) :]))
        else:
            ex.send_json({"error": "not found"}, status=404)

    def _grant(self, ex: Exchange) -> TokenGrant | None:
        auth = ex.headers.get("Authorization") or ""
        scheme, _, token = auth.partition(" ")
        grant = self.tokens.get(token.strip()) if scheme.lower() == "bearer" else None
        if grant is None or grant.expires <= time.time():
            ex.send_json({"error": "invalid or expired token"}, status=401)
            return None
        return grant

    def _reconstruction(self, ex: Exchange, version: int, file_id: str) -> None:
        if version == 2 and self.v2_status is not None:
            ex.send_json({"error": "not available"}, status=self.v2_status)
            return
        grant = self._grant(ex)
        if grant is None:
            return
        if not re.fullmatch(r"[0-9a-f]{64}", file_id):
            ex.send_json({"error": "malformed file id"}, status=400)
            return
        xf = self.store.files.get(file_id)
        if xf is None:
            ex.send_json({"error": "file not found"}, status=404)
            return
        if grant.files is not None and file_id not in grant.files:
            ex.send_json({"error": "token does not cover this file"}, status=403)
            return
        chunks, offset = list(xf.chunks), 0
        range_header = ex.headers.get("Range")
        if range_header is not None:
            m = re.fullmatch(r"bytes=(\d+)-(\d*)", range_header.strip())
            if m is None:
                ex.send_json({"error": "malformed range"}, status=400)
                return
            first, last = int(m[1]), int(m[2]) if m[2] else xf.size - 1
            if first >= xf.size or last < first:
                ex.send_json({"error": "range not satisfiable"}, status=416)
                return
            chunks, offset = _chunks_for(xf, first, last)
        terms = _terms(chunks)
        body: dict[str, Any] = {
            "offset_into_first_range": offset,
            "terms": [
                {
                    "hash": t.xorb,
                    "unpacked_length": t.length,
                    "range": {"start": t.start, "end": t.end},
                }
                for t in terms
            ],
        }
        merged = _merged_ranges(terms)
        if version == 1:
            body["fetch_info"] = {
                xorb: [self._fetch_v1(xorb, s, e) for s, e in ranges]
                for xorb, ranges in merged.items()
            }
        else:
            per = max(1, self.v2_ranges_per_url)
            body["xorbs"] = {
                xorb: [
                    self._fetch_v2(xorb, ranges[i : i + per]) for i in range(0, len(ranges), per)
                ]
                for xorb, ranges in merged.items()
            }
        if self.rewrite is not None:
            reply = self.rewrite(version, body)
            if isinstance(reply, bytes):
                ex.send_bytes(200, reply, content_type="application/json")
            else:
                ex.send_json(reply)
            return
        ex.send_json(body)

    def _api(self, ex: Exchange, segs: list[str]) -> None:
        """`/v{1,2}/reconstructions/{hash}`, `/v2/file-chunk-hashes/{hash}`."""
        if segs[1] == "reconstructions":
            self._reconstruction(ex, int(segs[0][1]), unquote(segs[2]))
        elif segs[:2] == ["v2", "file-chunk-hashes"]:
            self._chunk_hashes(ex, unquote(segs[2]))
        else:
            ex.send_json({"error": "not found"}, status=404)

    def _chunk_hashes(self, ex: Exchange, file_id: str) -> None:
        """api.md `GET /v2/file-chunk-hashes/{file_id}` with `X-Range-Dirty: bytes=a-b,c-d`."""
        if self.chunk_hashes_status is not None:
            ex.send_json({"error": "not available"}, status=self.chunk_hashes_status)
            return
        grant = self._grant(ex)
        if grant is None:
            return
        xf = self.store.files.get(file_id) if re.fullmatch(r"[0-9a-f]{64}", file_id) else None
        if xf is None or (grant.files is not None and file_id not in grant.files):
            ex.send_json({"error": "file not found"}, status=404)
            return
        dirty = _dirty(ex.headers.get("X-Range-Dirty") or "", xf.size)
        if not dirty:
            ex.send_json({"error": "malformed or empty X-Range-Dirty"}, status=400)
            return
        self.chunk_hashes_asked.append(dirty)
        body = chunk_hashes_answer(xf, dirty)
        reply = body if self.rewrite_chunk_hashes is None else self.rewrite_chunk_hashes(body)
        if isinstance(reply, bytes):
            ex.send_bytes(200, reply, content_type="application/json")
        else:
            ex.send_json(reply)

    def _fetch_v1(self, xorb: str, start: int, end: int) -> dict[str, Any]:
        first, last = self.store.xorbs[xorb].byte_range(start, end)
        return {
            "range": {"start": start, "end": end},
            "url": self.presign(xorb, [(first, last)]),
            "url_range": {"start": first, "end": last},
        }

    def _fetch_v2(self, xorb: str, ranges: Sequence[tuple[int, int]]) -> dict[str, Any]:
        x = self.store.xorbs[xorb]
        spans = [x.byte_range(s, e) for s, e in ranges]
        return {
            "url": self.presign(xorb, spans),
            "ranges": [
                {"chunks": {"start": s, "end": e}, "bytes": {"start": a, "end": b}}
                for (s, e), (a, b) in zip(ranges, spans, strict=True)
            ],
        }

    def _denied(self, ex: Exchange, message: str) -> None:
        body = (
            '<?xml version="1.0"'
            f' encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code><Message>{message}'
        )
        body += "</Message></Error>\n"
        ex.send_bytes(403, body.encode(), content_type="application/xml")

    def _xorb(self, ex: Exchange, xorb: str) -> None:
        q = ex.query
        sig, granted, expires, gen = (
            q.get(k, "") for k in ("X-Xet-Signature", "X-Xet-Ranges", "X-Xet-Expires", "gen")
        )
        path = _XORB_PREFIX + xorb
        if not sig or not hmac.compare_digest(sig, self._signature(path, granted, expires, gen)):
            self._denied(ex, "The request signature does not match")
            return
        if (
            not expires.isdigit()
            or int(expires) < time.time()
            or not gen.isdigit()
            or int(gen) < self.generation
        ):
            self._denied(ex, "Request has expired")
            return
        if self.reject_auth_on_xorbs and ex.headers.get("Authorization") is not None:
            body = (
                "<Error><Code>InvalidArgument</Code><Message>Only one auth mechanism"
                " allowed</Message></Error>\n"
            )
            ex.send_bytes(400, body.encode(), content_type="application/xml")
            return
        range_header = (ex.headers.get("Range") or "").strip()
        m = _RANGE_RE.fullmatch(range_header)
        allowed = {tuple(int(v) for v in r.split("-")) for r in granted.split(",") if r}
        if m is None or (int(m[1]), int(m[2])) not in allowed:
            self._denied(ex, f"Range {range_header or '(none)'} is not one this URL grants")
            return
        x = self.store.xorbs.get(xorb)
        if x is None:
            ex.send_bytes(404, b"not found\n")
            return
        if int(m[2]) >= len(x.data):
            ex.send_bytes(416, b"", {"Content-Range": f"bytes */{len(x.data)}"})
            return
        with self._lock:
            used = self._uses.get(sig, 0)
            if self.url_uses is not None and used >= self.url_uses:
                used = -1
            else:
                self._uses[sig] = used + 1
        if used < 0:
            self._denied(ex, "Request has expired")
            return
        ex.send_content(self._ranged.get((xorb, int(m[1]))) or self._content(xorb), etag=None)


def _dirty(header: str, size: int) -> list[tuple[int, int]]:
    """`X-Range-Dirty: bytes=a-b,c-d` (inclusive) as sorted `[start, end)` clamped to the file."""
    found = re.fullmatch(r"bytes=(\d+-\d+(?:,\d+-\d+)*)", header.strip())
    pairs = [tuple(map(int, p.split("-"))) for p in found[1].split(",")] if found else []
    return sorted((a, min(b + 1, size)) for a, b in pairs if a <= b and a < size)


def _chunks_for(xf: XetFile, first: int, last: int) -> tuple[list[tuple[str, int, int]], int]:
    """The file's chunks that hold bytes first..last (inclusive), and the offset of `first` in
    the first one.
    """
    out: list[tuple[str, int, int]] = []
    pos = 0
    offset = 0
    for placed in xf.chunks:
        length = placed[2]
        if pos + length > first and pos <= last:
            if not out:
                offset = first - pos
            out.append(placed)
        pos += length
    return out, offset


# ----------------------------------------------------------------------------------------------------------
# Hub with Xet-backed LFS files
# ----------------------------------------------------------------------------------------------------------

_API_TYPES: dict[str, RepoType] = {"models": "model", "datasets": "dataset", "spaces": "space"}


class XetHubServer(HubServer):
    """A `HubServer` whose LFS files are Xet-backed (repos added with `xet=True`, the default), with
    its own `CasServer` (`hub.cas`, sharing `hub.cas.store`) unless one is given.

    For a Xet-backed file: the tree / paths-info entry has `xetHash`; resolve HEAD/GET still
    redirect to the CDN (the plain path keeps working) and add `X-Xet-Hash`, `X-Xet-Refresh-Route`
    and `Link: <…/xet-read-token/ {commit}>; rel="xet-auth", <{cas}/v1/reconstructions/{hash}>;
    rel="xet-reconstruction-info"`. `GET /api/{type}s/{repo}/xet-read-token/{rev}` follows the
    repo's file-access rules (401 bad token, gated / private as for resolve, 404 unknown repo or
    revision) and answers `{accessToken, exp, casUrl}` plus the `X-Xet-Access-Token`,
    `X-Xet-Token-Expiration`, `X-Xet-Cas-Url` headers; the token covers the Xet files of that commit
    only.
    """

    def __init__(
        self,
        cdn: CdnServer | None = None,
        cas: CasServer | None = None,
        *,
        valid_tokens: Iterable[str] = (TOKEN,),
        page_size: int = 1000,
        host_alias: str = "127.0.0.1",
    ) -> None:
        super().__init__(cdn, valid_tokens=valid_tokens, page_size=page_size, host_alias=host_alias)
        self._owns_cas = cas is None
        self.cas = cas if cas is not None else CasServer(host_alias=host_alias)
        # Xet repos -> their scheme
        self._xet_repos: dict[tuple[str, str], Scheme | Mapping[str, Scheme]] = {}
        self._xet: dict[str, dict[str, XetFile]] = {}  # commit sha -> {path: XetFile}
        self._minted: dict[tuple[str, str], XetFile] = {}  # (sha256, scheme) -> XetFile
        # path -> the Xet hash each answer naming its Xet hash (resolve headers, tree entries) gives
        # in turn, the last from then on (None: its own): a Hub or proxy naming another file's
        self.xet_lies: dict[str, list[str | None]] = {}

    @property
    def store(self) -> XetStore:
        """The CAS's store: every minted file and xorb."""
        return self.cas.store

    def start(self) -> Self:
        """Start the Hub, its CDN and its CAS (those it owns)."""
        if self._owns_cas:
            self.cas.start()
        return super().start()

    def stop(self) -> None:
        """Stop the Hub, its CDN and its CAS (those it owns)."""
        super().stop()
        if self._owns_cas:
            self.cas.stop()

    # -- building repos
    # -------------------------------------------------------------------------------------

    def add_repo(
        self,
        repo_id: str,
        files: Mapping[str, bytes | bytearray | memoryview | Path | Content],
        *,
        repo_type: RepoType = "model",
        xet: bool = True,
        scheme: Scheme | Mapping[str, Scheme] = "none",
        **kwargs: Any,
    ) -> Repo:
        """`HubServer.add_repo`, plus: `xet` makes its LFS files Xet-backed (now and in later
        commits), minted with `scheme`: one for every file, or one per path ("none" for paths not
        named). Later commits mint their new files the same way unless they say otherwise."""
        if xet:
            self._xet_repos[(repo_type, repo_id)] = scheme
        return super().add_repo(repo_id, files, repo_type=repo_type, **kwargs)

    def commit(
        self,
        repo_id: str,
        changes: Mapping[str, bytes | bytearray | memoryview | Path | Content | None],
        *,
        repo_type: RepoType = "model",
        branch: str = "main",
        title: str = "Update files",
        scheme: Scheme | Mapping[str, Scheme] | None = None,
    ) -> str:
        """`HubServer.commit`, minting the changed LFS files of a Xet repo (with `scheme`,
        default the repo's).
        """
        parent = self.repo(repo_id, repo_type).branches.get(branch)
        sha = super().commit(repo_id, changes, repo_type=repo_type, branch=branch, title=title)
        setting = self._xet_repos.get((repo_type, repo_id))
        if setting is None:
            return sha
        chosen = scheme if scheme is not None else setting
        previous = self._xet.get(parent, {}) if parent is not None else {}
        minted: dict[str, XetFile] = {}
        for path, hub_file in self.repo(repo_id, repo_type).commits[sha].files.items():
            if not hub_file.lfs:
                continue
            if path not in changes and path in previous:
                minted[path] = previous[path]
                continue
            choice: Scheme = chosen if isinstance(chosen, str) else chosen.get(path, "none")
            key = (hub_file.sha256, choice)
            xf = self._minted.get(key)
            if xf is None:
                xf = self._minted[key] = self.store.add(hub_file.content.read(), choice)
            minted[path] = xf
        self._xet[sha] = minted
        return sha

    def xet_file(
        self, repo_id: str, path: str, revision: str = "main", *, repo_type: RepoType = "model"
    ) -> XetFile:
        """The minted Xet file behind `path` at `revision` (KeyError if it is not Xet-backed)."""
        commit = self.repo(repo_id, repo_type).resolve_revision(revision)
        if commit is None:
            raise KeyError(revision)
        return self._xet[commit.sha][path]

    def token_url(
        self, repo_id: str, revision: str = "main", *, repo_type: RepoType = "model"
    ) -> str:
        """The xet-read-token URL of a revision (as the Hub links it: by commit sha)."""
        commit = self.repo(repo_id, repo_type).resolve_revision(revision)
        sha = commit.sha if commit is not None else revision
        return f"{self.url}/api/{repo_type}s/{repo_id}/xet-read-token/{sha}"

    # -- answers
    # --------------------------------------------------------------------------------------------

    def lfs_headers(self, repo: Repo, commit: Commit, path: str) -> dict[str, str]:
        """The Xet headers of a Xet-backed file's resolve answer."""
        xf = self._xet.get(commit.sha, {}).get(path)
        if xf is None:
            return {}
        token_url = f"{self.url}/api/{repo.repo_type}s/{repo.repo_id}/xet-read-token/{commit.sha}"
        return {
            "X-Xet-Hash": self._named(path, xf),
            "X-Xet-Refresh-Route": token_url,
            "Link": (
                f'<{token_url}>; rel="xet-auth", '
                f'<{self.cas.url}/v1/reconstructions/{xf.hash}>; rel="xet-reconstruction-info"'
            ),
        }

    def _entry(self, commit: Commit, path: str, *, expand: bool) -> dict[str, Any]:  # type: ignore[override]
        entry = HubServer._entry(commit, path, expand=expand)
        xf = self._xet.get(commit.sha, {}).get(path)
        if xf is not None:
            entry["xetHash"] = self._named(path, xf)
        return entry

    def _named(self, path: str, xf: XetFile) -> str:
        """The Xet hash this answer names for ``path`` (``xet_lies``)."""
        lies = self.xet_lies.get(path)
        if not lies:
            return xf.hash
        named = lies.pop(0) if len(lies) > 1 else lies[0]
        return named or xf.hash

    def route(self, ex: Exchange) -> None:
        """The xet-read-token route, then the Hub's."""
        segs = ex.path.split("/")[1:]
        if (
            len(segs) >= 4
            and segs[0] == "api"
            and segs[1] in _API_TYPES
            and "xet-read-token" in segs[3:5]
        ):
            self._send_xet_token(ex, _API_TYPES[segs[1]], segs[2:])
            return
        super().route(ex)

    def _send_xet_token(self, ex: Exchange, repo_type: RepoType, segs: list[str]) -> None:
        decoded = [unquote(s) for s in segs]
        repo_id, i = self._find_repo(repo_type, decoded, "xet-read-token")
        repo = self._check_access(
            ex, self.repos.get((repo_type, repo_id)), repo_id, file_access=True
        )
        if repo is None:
            return
        commit, revision, tail = self._split_revision(repo, segs[i + 1 :])
        if commit is None or tail:
            self._error(ex, 404, "RevisionNotFound", f"Invalid rev id: {quote(revision)}")
            return
        files = {xf.hash for xf in self._xet.get(commit.sha, {}).values()}
        grant = self.cas.issue_token(files=files, scope=f"{repo_type}/{repo_id}@{commit.sha}")
        exp = int(grant.expires)
        headers = {
            "X-Xet-Access-Token": grant.token,
            "X-Xet-Token-Expiration": str(exp),
            "X-Xet-Cas-Url": self.cas.url,
        }
        ex.send_json(
            {"accessToken": grant.token, "exp": exp, "casUrl": self.cas.url}, headers=headers
        )


# ----------------------------------------------------------------------------------------------------------
# hf_xet, the oracle: huggingface_hub's download in a child process with its own HF_HOME
# ----------------------------------------------------------------------------------------------------------

_HF_SCRIPT = """
import json, sys
from huggingface_hub import hf_hub_download
args = json.loads(sys.argv[1])
paths = [hf_hub_download(args["repo"], f, revision=args["revision"], repo_type=args["repo_type"],
         endpoint=args["endpoint"], token=args["token"], cache_dir=args["cache_dir"]) for f in args["files"]]
print(json.dumps(paths))
"""


def hf_download(
    hub: HubServer,
    repo_id: str,
    files: Sequence[str],
    home: Path,
    *,
    revision: str = "main",
    repo_type: RepoType = "model",
    token: str | None = TOKEN,
    timeout: float = 120,
    env: Mapping[str, str] | None = None,
) -> list[Path]:
    """Download `files` with huggingface_hub's `hf_hub_download` (so with `hf_xet` for Xet-backed
    files) in a child process whose HF_HOME is `home`; returns the local paths. Raises
    `subprocess.CalledProcessError` (with the child's stderr) when it fails."""
    import json
    import subprocess
    import sys

    child_env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_"))}
    child_env.update(
        HF_HOME=str(home), HF_HUB_DISABLE_TELEMETRY="1", HF_HUB_DISABLE_PROGRESS_BARS="1"
    )
    child_env.update(env or {})
    args = {
        "repo": repo_id,
        "files": list(files),
        "revision": revision,
        "repo_type": repo_type,
        "endpoint": hub.url,
        "token": token,
        "cache_dir": str(home / "hub"),
    }
    done = subprocess.run(
        [sys.executable, "-c", _HF_SCRIPT, json.dumps(args)],
        env=child_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode:
        raise subprocess.CalledProcessError(
            done.returncode, "hf_hub_download", done.stdout, done.stderr
        )
    return [Path(p) for p in json.loads(done.stdout.strip().splitlines()[-1])]


def main(argv: list[str] | None = None) -> None:
    """Serve a Xet Hub + CAS from another process (benchmarks: no shared GIL): each FILE is one
    commit of PATH.

    `python tests/xetserver.py [--repo org/bench] [--path model.safetensors] [--scheme
    none|lz4|bg4|mixed] [--throttle BYTES_PER_SEC] FILE...` prints one JSON line once ready: hub and
    CAS URLs, the Hub token, the commits (oldest first) and per file its Xet hash, sha256, size,
    xorb bytes and new bytes over the previous file. `GET {cas}/_stats[?clear=1]` reports (and
    clears) the CAS log's totals. Stops on SIGINT/SIGTERM.
    """
    import argparse
    import json
    import signal
    import sys

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--repo", default="org/bench")
    parser.add_argument("--path", default="model.safetensors")
    parser.add_argument("--scheme", default="none", choices=["none", "lz4", "bg4", "mixed"])
    parser.add_argument(
        "--throttle", type=float, default=None, help="bytes/s per xorb response stream"
    )
    args = parser.parse_args(argv)
    hub = XetHubServer()
    hub.cas.throttle_bps = args.throttle
    revisions: list[str] = []
    minted: list[XetFile] = []
    for i, file in enumerate(args.files):
        content = Content(file.resolve())
        if i == 0:
            hub.add_repo(args.repo, {args.path: content}, scheme=args.scheme)
        else:
            hub.replace_file(args.repo, args.path, content)
        revisions.append(hub.repo(args.repo).sha)
        minted.append(hub.xet_file(args.repo, args.path))
    files = [
        {
            "hash": xf.hash,
            "sha256": xf.sha256,
            "size": xf.size,
            "xorb_bytes": hub.store.xorb_bytes(xf),
            "new_bytes": hub.store.new_bytes(xf, minted[i - 1]) if i else hub.store.xorb_bytes(xf),
        }
        for i, xf in enumerate(minted)
    ]
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    with hub, contextlib.suppress(KeyboardInterrupt):
        info = {
            "hub": hub.url,
            "cas": hub.cas.url,
            "token": TOKEN,
            "repo": args.repo,
            "path": args.path,
        }
        sys.stdout.write(json.dumps({**info, "revisions": revisions, "files": files}) + "\n")
        sys.stdout.flush()
        done.wait()


if __name__ == "__main__":
    main()
