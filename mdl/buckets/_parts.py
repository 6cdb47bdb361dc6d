"""How an S3 object is cut into parts: the part size of an upload (``publish``), and the layout a
store reports of a multipart object.

An upload's part size is not the one part size (``mdl.partsize``: a lock's parts, a fleet's parts,
Xet's windows), though the same for files up to 8 GiB: those are on the wire (a lock records its
part size, a part set's name says it) and every mdl must cut a file alike, while nothing reads an
upload's parts back as ranges (a store's layout is read as it says: ``part_layout``), so an
upload's may change alone (bigger parts on a fast link, S3's 5 MiB in a test)."""

from __future__ import annotations

import math

MiB = 1024 * 1024
# S3 wants ≥ 5 MiB parts; 16 MiB keeps the request count low at real round-trip times
MIN_PART = 16 * MiB
S3_MAX_PARTS = 10_000  # parts a multipart object can have
MAX_PARTS = 9_000  # parts per upload of ours: leave room


def upload_part_size(size: int, *, minimum: int = MIN_PART) -> int:
    """The part size for a ``size``-byte upload: at least ``minimum``, in whole MiB, and few
    enough parts for S3's limit."""
    return max(minimum, math.ceil(size / MAX_PARTS / MiB) * MiB)


def part_layout(size: int, *, first: object, count: object) -> list[int] | None:
    """The part sizes of a ``size``-byte object of ``count`` parts, the first ``first`` bytes (as
    the store said): S3's clients cut every part but the last at one size. None when the reply
    cannot be such a layout."""
    if (
        not isinstance(first, int)
        or not isinstance(count, int)
        or not 0 < count <= S3_MAX_PARTS
        or first < 1
    ):
        return None
    last = size - first * (count - 1)
    return [first] * (count - 1) + [last] if 0 < last <= first else None
