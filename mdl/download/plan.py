"""Decide, before any I/O, what to do with each file: skip, download, resume, repair, or re-check."""

from __future__ import annotations

import os
from dataclasses import dataclass
from enum import StrEnum

from mdl.sources import RemoteFile
from mdl.store import INSTALLED, MISSING, RECHECK_REASON, UNRECORDED, FileRecord, judge
from mdl.units import human_size


class Action(StrEnum):
    """What pull will do with one file (``--dry-run`` prints exactly this)."""

    SKIP = "skip"  # present, recorded, unchanged since verified
    DOWNLOAD = "download"  # absent (or changed upstream): fetch from zero
    RESUME = "resume"  # a partial download of the same content exists
    REPAIR = "repair"  # present but not what it should be: fetch again
    CHECK = "check"  # present but changed since verified (or never recorded): re-hash, then skip or repair


@dataclass(frozen=True)
class LocalState:
    """What is on disk for one file, read with ``lstat`` (no hashing)."""

    size: int | None  # None: the final file is absent
    mtime_ns: int | None
    partial_bytes: int  # bytes in a partial download, 0 if none

    @classmethod
    def of(cls, stat: os.stat_result | None, *, partial_bytes: int) -> LocalState:
        """From an ``lstat`` result (None when absent); a symlink or folder counts as absent-and-wrong."""
        if stat is None:
            return cls(None, None, partial_bytes)
        return cls(stat.st_size, stat.st_mtime_ns, partial_bytes)


@dataclass(frozen=True)
class Decision:
    """An action and the reason for it, for ``--dry-run`` and the log."""

    action: Action
    reason: str


def same_content(record: FileRecord, remote: RemoteFile, *, unnamed: bool = True) -> bool:
    """Whether a recorded file is the version upstream has now, by the strongest key both know.

    ``unnamed``: what a file no key tells apart (no hash, no validator on both sides, one size) counts as. Pull
    keeps it; a one-off get fetches it again, as ``wget -N`` does when the server sends no Last-Modified.
    """
    if remote.size is not None and record.size != remote.size:
        return False
    if remote.sha256:
        return record.sha256 == remote.sha256
    if remote.git_oid:
        return record.git_oid == remote.git_oid
    if remote.etag and record.etag:
        return record.etag == remote.etag
    return unnamed


UNNAMED = "the server names no version to compare with the one fetched before"
# The reason of a present file fetched again because of --force: people read "re-downloaded", JSON "downloaded".
FORCED = "--force"


def decide(
    remote: RemoteFile, record: FileRecord | None, local: LocalState, *, force: bool, unnamed: bool = True
) -> Decision:
    """Skip, download, resume or repair: decided before any I/O, from the file's state as ``show`` names it
    (mdl.store.inventory).

    ``unnamed``: see ``same_content`` (False for one-off gets).
    """
    state = judge(record, local.size, local.mtime_ns)
    if state == MISSING:  # --force changes nothing here: a partial of the same content is resumed
        if local.partial_bytes > 0:
            return Decision(Action.RESUME, f"{human_size(local.partial_bytes)} already downloaded")
        return Decision(Action.DOWNLOAD, "missing" if record is not None else "not downloaded yet")
    if force:  # replaced, never called a repair: nothing says it was wrong
        return Decision(Action.DOWNLOAD, FORCED)
    if record is None:  # state is UNRECORDED
        if remote.sha256 or remote.git_oid:
            return Decision(Action.CHECK, RECHECK_REASON[UNRECORDED])
        # Not known to be wrong, so not a repair: fetched again because nothing can vouch for it.
        return Decision(Action.DOWNLOAD, "unrecorded (present, never verified by mdl) and no hash to check it against")
    if not same_content(record, remote, unnamed=unnamed):
        return Decision(Action.DOWNLOAD, UNNAMED if same_content(record, remote) else "changed upstream")
    if state == INSTALLED:
        return Decision(Action.SKIP, "up to date")
    return Decision(Action.CHECK, RECHECK_REASON[state])
