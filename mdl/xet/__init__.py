"""Xet-backed Hub files by chunk: hashes, xorb decoding, strict CAS replies, and the fetcher that
copies chunks on disk, fetches the rest and verifies every byte (blake3, lz4 loaded when used)."""

from mdl.xet.fetch import XetFallback, XetSource
from mdl.xet.hashing import (
    HASH_BYTES,
    chunk_hash,
    file_hash,
    from_hex,
    is_hash,
    merkle_root,
    to_hex,
)
from mdl.xet.protocol import (
    Fetch,
    Reconstruction,
    ReplyError,
    Term,
    XetToken,
    parse_reconstruction,
    parse_token,
    token_from_headers,
    xet_from_headers,
)
from mdl.xet.xorb import MAX_CHUNK, UnknownFormat, XorbError, decode_chunks

__all__ = [
    "HASH_BYTES",
    "MAX_CHUNK",
    "Fetch",
    "Reconstruction",
    "ReplyError",
    "Term",
    "UnknownFormat",
    "XetFallback",
    "XetSource",
    "XetToken",
    "XorbError",
    "chunk_hash",
    "decode_chunks",
    "file_hash",
    "from_hex",
    "is_hash",
    "merkle_root",
    "parse_reconstruction",
    "parse_token",
    "to_hex",
    "token_from_headers",
    "xet_from_headers",
]
