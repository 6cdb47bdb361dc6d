"""Xet-backed Hub files by chunk: hashes, xorbs, strict CAS replies, and the fetcher that copies
chunks on disk, fetches the rest and checks every byte (blake3, lz4: imported when first used)."""

from typing import TYPE_CHECKING

from mdl.lazy import export_lazily

if TYPE_CHECKING:
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

export_lazily(
    __name__,
    {
        "XetFallback": "failures",
        "XetSource": "fetch",
        "HASH_BYTES": "hashing",
        "chunk_hash": "hashing",
        "file_hash": "hashing",
        "from_hex": "hashing",
        "is_hash": "hashing",
        "merkle_root": "hashing",
        "to_hex": "hashing",
        "Fetch": "protocol",
        "Reconstruction": "protocol",
        "ReplyError": "protocol",
        "Term": "protocol",
        "XetToken": "protocol",
        "parse_reconstruction": "protocol",
        "parse_token": "protocol",
        "token_from_headers": "protocol",
        "xet_from_headers": "protocol",
        "MAX_CHUNK": "xorb",
        "UnknownFormat": "xorb",
        "XorbError": "xorb",
        "decode_chunks": "xorb",
    },
)
