"""One vocabulary for what is on disk, judged from a file's record and ``lstat`` alone (no hashing).

``show``, ``list``, ``resolve`` and ``pull --dry-run`` all read a file's state from here, so they never disagree:
a same-size file whose mtime changed since mdl verified it is ``modified?`` everywhere (only a re-hash can tell),
and ``pull --dry-run`` says ``check`` for it with the same words.
"""

from __future__ import annotations

from collections.abc import Iterable

from mdl.store.records import FileRecord

INSTALLED = "installed"  # recorded, same size and mtime as when mdl verified it
MODIFIED_MAYBE = "modified?"  # recorded, same size, but touched since it was verified: only a re-hash can tell
MODIFIED = "modified"  # recorded, but its size is not the size mdl verified
UNRECORDED = "unrecorded"  # present, but mdl never verified it (no record)
PARTIAL = "partial"  # a partial download is waiting to be resumed (or the snapshot entry is not linked)
MISSING = "missing"  # not on disk

FILE_STATES = (INSTALLED, MODIFIED_MAYBE, MODIFIED, UNRECORDED, PARTIAL, MISSING)

# Why a present file must be hashed again before it is trusted (``pull --dry-run``'s reason for ``check``).
RECHECK_REASON = {
    MODIFIED_MAYBE: "modified? (same size, but changed since it was verified): re-hash it",
    MODIFIED: "modified (its size changed since it was verified): re-hash it",
    UNRECORDED: "unrecorded (present, never verified by mdl): hash it",
}


def judge(entry: FileRecord | None, size: int | None, mtime_ns: int | None) -> str:
    """A present-or-absent file's state against its record: missing, unrecorded, modified, modified? or installed."""
    if size is None:
        return MISSING
    if entry is None:
        return UNRECORDED
    if size != entry.size:
        return MODIFIED
    if mtime_ns != entry.mtime_ns:
        return MODIFIED_MAYBE
    return INSTALLED


def model_state(states: Iterable[str], *, partials: bool) -> str:
    """A model's status from its files' states (the contract's installed | partial | missing).

    ``installed``: every file is there at the size mdl verified (``modified?`` files count, and are reported
    as ``unverified``); ``missing``: no file and no partial download; else ``partial``.
    """
    found = set(states)
    if found and found <= {INSTALLED, MODIFIED_MAYBE}:
        return INSTALLED
    if found - {MISSING} or partials:
        return PARTIAL
    return MISSING
