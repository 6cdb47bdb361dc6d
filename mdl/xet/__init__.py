"""Xet-backed Hub files by chunk: hashes, xorbs, strict CAS replies, and the fetcher that copies
chunks on disk, fetches the rest and checks every byte (blake3, lz4: imported when first used)."""

from mdl.xet.failures import XetFallback
from mdl.xet.fetch import XetSource
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
