"""``get``'s memory: the folder's record (``DIR/.mdl/get.json``) judged as pull judges its own (size
and mtime, ``states.judge``), so a no-op get reads no byte back and an offline get answers from
what it saved."""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from pathlib import Path

from mdl.errors import MdlError, NetworkError, UsageError
from mdl.paths import HfUri
from mdl.report import FileOutcome, failed, log_outcome
from mdl.sources.joboutput import UrlFile
from mdl.sources.oneoff import Parsed
from mdl.sources.resolve import RemoteFile
from mdl.store.layout import OnDisk, hub_source, parse_hub_source, selected
from mdl.store.records import FileRecord
from mdl.store.states import INSTALLED, judge
from mdl.store.store import Store

# A get's record is the store's record of model "" (keyed by file name).
ONE_OFF = ""
# said once per offline get that kept files from its record (a warning: it may be stale upstream)
OFFLINE_NOTE = (
    "HF_HUB_OFFLINE is set: files kept as this folder's record has them; nothing was checked"
    " upstream"
)
# (repo_type, repo, revision or None, path or None: the whole repo)
_Wanted = tuple[str, str, str | None, str | None]


def vouched(entry: FileRecord | None, found: os.stat_result | None) -> FileRecord | None:
    """``entry`` when, by it and ``found`` (the file's ``lstat``) alone, the file is the one a get
    verified there (same size and mtime); None otherwise. No byte is read."""
    if entry is None or found is None or not stat.S_ISREG(found.st_mode):
        return None
    return entry if judge(entry, found.st_size, found.st_mtime_ns) == INSTALLED else None


def recorded_repos(
    items: Sequence[Parsed], store: Store, *, include: Sequence[str], exclude: Sequence[str]
) -> list[Parsed]:
    """Offline, every whole repo among ``items`` → the files of it the folder's record holds
    (filtered as the Hub's listing would be); a repo no get saved here is exit 2."""
    from mdl.catalog.specs import ModelSpec

    record = store.read_record(ONE_OFF)
    entries = [] if record is None else sorted(record.files.values(), key=lambda e: e.path)
    found: list[Parsed] = []
    for item in items:
        if not isinstance(item, HfUri):
            found.append(item)
            continue
        wanted = (item.repo_type, item.repo, item.revision, None)
        spec = ModelSpec(
            item.given,
            repo=item.repo,
            repo_type=item.repo_type,
            include=tuple(include),
            exclude=tuple(exclude),
        )
        ours = [(e, path) for e in entries if (path := _of(e, wanted)) is not None]
        kept = selected(spec, ours, key=lambda one: one[1])
        if not kept:
            raise UsageError(
                f"{item.given}: HF_HUB_OFFLINE is set, and a whole repo needs the Hub to list its"
                f" files (no get saved it in {store.dest})",
                hint="unset HF_HUB_OFFLINE to fetch it",
            )
        for entry, path in kept:
            where = hub_source(item.repo, item.repo_type, item.revision, path)
            came = parse_hub_source(entry.source)
            commit = came.commit if came is not None and came.commit else item.revision or "main"
            ref = (item.repo_type, item.repo, commit, path)
            listed = RemoteFile("", entry.path, "", entry.size, entry.sha256, entry.git_oid)
            found.append(UrlFile(entry.path, None, entry.size, entry.sha256, where, ref, listed))
    return found


def offline_outcome(
    disk: OnDisk, item: UrlFile, name: str, target: Path, *, force: bool
) -> FileOutcome:
    """Offline, a Hub file saved as ``name``: kept (``skipped``, with ``OFFLINE_NOTE``) when the
    folder's record vouches for it as this file of that repo, else (or ``force``: fetch it again)
    failed as a file that must be fetched (exit 5, naming it). Logged."""
    assert item.hub is not None
    repo_type, repo, revision, path = item.hub
    entry = None if force else vouched(disk.entry, disk.final)
    outcome: FileOutcome
    if entry is not None and _of(entry, (repo_type, repo, revision, path)) is not None:
        outcome = FileOutcome(
            "",
            name,
            str(target),
            entry.size,
            entry.sha256,
            "skipped",
            reason="HF_HUB_OFFLINE is set: as this folder's record has it",
            source=item.where,
            warning=OFFLINE_NOTE,
            verified=entry.verified,
        )
    else:
        error: MdlError = NetworkError(
            f"{item.where}: HF_HUB_OFFLINE is set and the file must be fetched",
            hint="unset HF_HUB_OFFLINE",
        )
        outcome = failed("", name, error, dest=target, source=item.where)
    log_outcome(outcome)
    return outcome


def _of(entry: FileRecord, wanted: _Wanted) -> str | None:
    """The file's path in its repo when its record says it came from the repo (and file) wanted, at
    the revision wanted (default main): the one it was asked at, or its commit."""
    ref = parse_hub_source(entry.source)
    repo_type, repo, revision, path = wanted
    if ref is None or (ref.repo_type, ref.repo) != (repo_type, repo):
        return None
    if path is not None and ref.path != path:
        return None
    if (revision or "main") not in (entry.revision, ref.commit):
        return None
    return ref.path
