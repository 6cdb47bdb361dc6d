"""Xet-backed Hub files by chunk: hashes, xorbs, strict CAS replies, and the fetcher that copies
chunks on disk, fetches the rest and checks every byte (blake3, lz4: imported when first used)."""
