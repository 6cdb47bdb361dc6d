"""The one part size: the bytes a file is cut into to be checked and shared.

A lock's part hashes (``catalog.lock.parts``), a fleet's parts in a mirror (``names.Part``) and a
Xet file's windows are cut at ``part_size``, so a peer's part is one range a lock's hash checks.
It is on the wire (a lock records it, a part set's name says it): every mdl must cut a file alike.
A fleet's parts are copied into the final object as its S3 parts, so S3's bounds hold for it too:
every part but the last at least 5 MiB (``PART``), 10,000 parts at most (``MOST_PARTS``)."""

from __future__ import annotations

MiB = 1 << 20
PART = 16 * MiB  # bytes per part at least (a module constant: tests lower it, for all at once)
MOST_PARTS = 9_000  # parts per file at most (S3's 10,000, with room): a bigger file, bigger parts


def part_size(size: int, *, most: int | None = None) -> int:
    """The bytes per part of a ``size``-byte file (the last part shorter): ``PART``, or, for a file
    that would have more than ``most`` parts (``MOST_PARTS``), the least whole MiB that cuts it
    into ``most``."""
    return PART if (need := -(-size // (most or MOST_PARTS))) <= PART else -(-need // MiB) * MiB
