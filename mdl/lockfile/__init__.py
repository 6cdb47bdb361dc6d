"""``catalog.lock``: the resolved commit, files, sizes and sha256 of every catalog model, pinned so that every
machine pulls the same bytes without asking the Hub to list anything."""

from mdl.lockfile.io import ModelChange, diff_locks, dump_lock, exclusive, parse_lock, read_lock, write_lock
from mdl.lockfile.model import Lock, LockedFile, LockedModel, fingerprint, locked_from_resolved, resolved_from_locked

__all__ = [
    "Lock",
    "LockedFile",
    "LockedModel",
    "ModelChange",
    "diff_locks",
    "dump_lock",
    "exclusive",
    "fingerprint",
    "locked_from_resolved",
    "parse_lock",
    "read_lock",
    "resolved_from_locked",
    "write_lock",
]
