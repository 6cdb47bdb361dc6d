"""The one state vocabulary of a file on disk, judged from its record and ``lstat`` alone
(mdl.store.inventory builds the commands' views on it; a get's plan judges with it too)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mdl.store.records import FileRecord

INSTALLED = "installed"  # recorded, same size and mtime as when mdl verified it
# recorded, same size, but touched since it was verified: only a re-hash can tell
MODIFIED_MAYBE = "modified?"
MODIFIED = "modified"  # recorded, but its size is not the size mdl verified
UNRECORDED = "unrecorded"  # present, but mdl never verified it (no record)
# a partial download is waiting to be resumed (or the snapshot entry is not linked)
PARTIAL = "partial"
MISSING = "missing"  # not on disk
# recorded and intact, but not the version the lock pins (pull fetches the pinned one)
OUTDATED = "outdated"
# The mtime a record keeps for a file verify found wrong: no file has it, so pull and list re-check
# it, never trust it.
UNTRUSTED_MTIME = 0

# Why a present file must be hashed again before it is trusted (``pull --dry-run``'s reason for
# ``check``).
RECHECK_REASON = {
    MODIFIED_MAYBE: "modified? (same size, but changed since it was verified): re-hash it",
    MODIFIED: "modified (its size changed since it was verified): re-hash it",
    UNRECORDED: "unrecorded (present, never verified by mdl): hash it",
}


def judge(entry: FileRecord | None, size: int | None, mtime_ns: int | None) -> str:
    """A present-or-absent file's state against its record."""
    if size is None:
        return MISSING
    if entry is None:
        return UNRECORDED
    if size != entry.size:
        return MODIFIED
    return MODIFIED_MAYBE if mtime_ns != entry.mtime_ns else INSTALLED
