"""What a one-off ``mdl get`` keeps in a folder's ``.mdl/``: the record of the files it wrote, nothing else.

The record (``.mdl/get.json``, the store's record of model ``""``, keyed by file name) holds what was written
(size, mtime, sha256) and what the server said of it (its length and validator: a strong ETag, else
Last-Modified), its source redacted. With it a second ``get`` of an unchanged file is a no-op, as with
``wget -N``: the file on disk is still the one mdl wrote, and the server names the same version.

Lock files go with their release (``mdl.store.filelocks``). What is left are the state folders: get removes those
that are empty, never a tree (``rmdir`` fails on a folder that is not empty, so nothing another run keeps
there is lost). A run that needs a folder again (a ``pull --dest D`` beside the get) creates it anew: every
write under ``.mdl`` walks its folders afresh (``mdl.store.confined``).
"""

from __future__ import annotations

import dataclasses
import os
import stat as st
from pathlib import Path

from mdl.report import FileOutcome
from mdl.store import FileRecord, Store, hash_file, rmdir_empty

ONE_OFF = ""  # the model name of get's files: their record is the folder's .mdl/get.json
UNCHANGED = "already there, unchanged upstream"
_SUBFOLDERS = ("partial", "locks", "records")


def tidy_after(store: Store) -> None:
    """Remove the empty state folders under ``<dest>/.mdl`` (deepest first), and ``.mdl`` itself if empty."""
    for sub in _SUBFOLDERS:
        rmdir_empty(store.dest, store.state_dir / sub)
    rmdir_empty(store.dest, store.state_dir)


def written_by_get(target: Path) -> FileRecord | None:
    """The record of the file at ``target`` when it is the one a get wrote there (its recorded size and mtime,
    or else its recorded sha256), else None: a file mdl did not write, or one changed since, is the user's."""
    entry = _entry(target)
    if entry is None:
        return None
    try:
        found = os.lstat(target)
    except OSError:
        return None
    if not st.S_ISREG(found.st_mode) or found.st_size != entry.size:
        return None
    if found.st_mtime_ns == entry.mtime_ns:
        return entry
    try:
        return entry if hash_file(target)[1] == entry.sha256 else None
    except OSError:
        return None


def _entry(target: Path) -> FileRecord | None:
    record = Store(target.parent.absolute()).read_record(ONE_OFF)
    return record.files.get(target.name) if record is not None else None


def in_gets_words(outcome: FileOutcome, *, present: bool) -> FileOutcome:
    """A file that was there and is fetched anew (--force, or a new version upstream) was "replaced"; one kept
    was unchanged upstream."""
    if present and outcome.action == "downloaded":
        return dataclasses.replace(outcome, word="replaced")
    if present and outcome.action == "skipped":
        return dataclasses.replace(outcome, reason=UNCHANGED)
    return outcome
