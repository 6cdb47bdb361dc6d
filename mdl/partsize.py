"""The one part size: the bytes a file is cut into to be checked and shared.

A lock's part hashes (``catalog.lock.parts``), a fleet's parts in a mirror (``names.Part``) and a
Xet file's windows are cut at ``part_size``, so a peer's part is one range a lock's hash checks.
It is on the wire (a lock records it, a part set's name says it): every mdl must cut a file alike.
A lock keeps the size it was written at (its ranges are its recorded spans, whatever this mdl would
cut), and a fleet cuts a locked file at it (``cut_at``): a lock an earlier mdl wrote (``PART``)
keeps every version of a fleet cutting the file alike. A part grows from ``PART`` only by doubling,
so ``PART``-byte windows (Xet's) end at every part's end. A fleet's parts are copied into the
final object as its S3 parts, so S3's bounds hold for it too: every part but the last at least
5 MiB (``PART``), 10,000 parts at most (``MOST_PARTS``). A range is held whole to be checked: a
part is at most what a check holds (``MOST_PART``, ``mdl.transfer.ranges.MAX_SPAN``, the same in
every mdl since 0.9), but for a file that would have more than ``MOST_PARTS`` of them."""

from __future__ import annotations

MiB = 1 << 20
PART = 16 * MiB  # bytes per part at least (a module constant: tests lower it, for all at once)
# bytes per part at most, but for a file over MOST_PART × MOST_PARTS (~281 GiB): a range that a
# check holds (``ranges.MAX_SPAN``; a lock of bigger ones is checked whole, by every mdl)
MOST_PART = 32 * MiB
MOST_PARTS = 9_000  # parts per file at most (S3's 10,000, with room): a bigger file, bigger parts
# a part doubles while the file has more than this many: fewer requests per GB as files grow (a
# fleet of 64 machines reading a 140 GB file from a bucket at 2 GB/s each asks ~3,800 GET/s of
# 32 MiB parts, within S3's 5,500 per prefix; ~7,600 of 16 MiB), as Dragonfly sizes pieces
SHARE = 512


def part_size(size: int, *, most: int | None = None, top: int | None = None) -> int:
    """The bytes per part of a ``size``-byte file (the last part shorter): ``PART``, doubled while
    the file has more than ``SHARE`` parts and the double is at most ``top`` (``MOST_PART``); or,
    for a file that would have more than ``most`` parts (``MOST_PARTS``), the least whole MiB
    that cuts it into ``most``. Files up to ``PART`` × ``SHARE`` (8 GiB) keep ``PART``."""
    part, top = PART, top or MOST_PART
    while part * SHARE < size and part * 2 <= top:
        part *= 2
    return part if (need := -(-size // (most or MOST_PARTS))) <= part else -(-need // MiB) * MiB


def cut_at(size: int, locked: int | None = None) -> int:
    """The bytes per part a fleet cuts a ``size``-byte file in: ``locked``, the part size its lock
    records, when it is one an mdl writes (``PART`` to ``MOST_PART``: a lock an earlier mdl wrote
    keeps its parts, every version of the fleet cutting the file alike, each part one range the
    lock checks); else ``part_size``."""
    return locked if locked is not None and PART <= locked <= MOST_PART else part_size(size)
