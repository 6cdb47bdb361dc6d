"""Stage two of a pull: each resolved file -> where it goes and what to do with it, decided from the
disk (no hashing) before any byte moves; the space check."""

# (annotations here are evaluated, not postponed: typing compiles each string annotation of a
# NamedTuple's fields at every start)
import logging
import os
import stat as st
from collections.abc import Sequence
from enum import StrEnum
from pathlib import Path
from typing import NamedTuple

from mdl.download.session import PullSession, label_of
from mdl.errors import MdlError, NetworkError, NoSpaceError, UnsafePathError
from mdl.paths import path_clash, shown_path
from mdl.redact import record_text
from mdl.report import FileOutcome, failed
from mdl.sources.resolve import RemoteFile, ResolvedModel
from mdl.store.layout import NOTHING, Layout, OnDisk, Placement
from mdl.store.records import FileRecord
from mdl.store.states import INSTALLED, MISSING, RECHECK_REASON, judge
from mdl.store.store import Store
from mdl.transfer.job import Identity
from mdl.transfer.resume import saved_progress
from mdl.units import human_size

log = logging.getLogger("mdl.pull")


class Action(StrEnum):
    """What pull will do with one file (``--dry-run`` prints exactly this)."""

    SKIP = "skip"  # present, recorded, unchanged since verified
    DOWNLOAD = "download"  # absent (or changed upstream): fetch from zero
    RESUME = "resume"  # a partial download of the same content exists
    REPAIR = "repair"  # present but not what it should be: fetch again
    # present but changed since verified (or never recorded): re-hash, then skip or repair
    CHECK = "check"


class LocalState(NamedTuple):
    """What is on disk for one file, read with ``lstat``."""

    size: int | None  # None: the final file is absent
    mtime_ns: int | None
    partial_bytes: int  # bytes in a partial download, 0 if none

    @classmethod
    def of(cls, stat: os.stat_result | None, *, partial_bytes: int) -> "LocalState":
        # a symlink or folder counts as absent-and-wrong
        if stat is None or not st.S_ISREG(stat.st_mode):
            return cls(None, None, partial_bytes)
        return cls(stat.st_size, stat.st_mtime_ns, partial_bytes)


class Decision(NamedTuple):
    """What to do with a file, and why."""

    action: Action
    reason: str


def same_content(record: FileRecord, remote: RemoteFile, *, unnamed: bool = True) -> bool:
    """Whether a recorded file is the version upstream has now, by the strongest key both know;
    ``unnamed``: what a file no key tells apart counts as (pull keeps it; a get fetches it again, as
    ``wget -N`` without Last-Modified). Without a hash, a file is known by its source too: a
    validator or length of another URL (nginx's ETag is only mtime and size) says nothing of the
    file fetched before, so another source is another file (wget's way)."""
    if remote.size is not None and record.size != remote.size:
        return False
    if (
        remote.signed is not None
        and remote.signed.recorded is not None
        and record.signed != remote.signed.recorded
    ):
        # held to other digests than these (or to none): hashed again as the signature says
        return False
    if remote.sha256:
        return record.sha256 == remote.sha256
    if remote.git_oid:
        return record.git_oid == remote.git_oid
    if not same_source(record, remote):
        return False
    return record.etag == remote.etag if remote.etag and record.etag else unnamed


def same_source(record: FileRecord, remote: RemoteFile) -> bool:
    """Whether the file was recorded from the source it comes from now (as records keep it: without
    secrets); a record that names none (written before sources counted) is of no known source, so
    never the same."""
    return bool(record.source) and record.source in (remote.source, record_text(remote.source))


UNNAMED = "the server names no version to compare with the one fetched before"
# a partial download of another version than the one upstream names now
CHANGED = "the file changed upstream"
NEW_SOURCE = "another source than the one it was fetched from"
# The reason of a present file fetched again because of --force: people read "re-downloaded", JSON
# "downloaded".
FORCED = "--force"


def decide(
    remote: RemoteFile,
    record: FileRecord | None,
    local: LocalState,
    *,
    force: bool,
    unnamed: bool = True,
) -> Decision:
    """What to do, from the file's state as ``show`` names it (``unnamed``: see same_content)."""
    state = judge(record, local.size, local.mtime_ns)
    if state == MISSING:  # --force changes nothing here: a partial of the same content is resumed
        return _absent(record, local)
    if force:  # replaced, never called a repair: nothing says it was wrong
        return Decision(Action.DOWNLOAD, FORCED)
    again = _fetched_again(remote, record, unnamed=unnamed)
    if again is not None:
        return again
    if state == INSTALLED:
        return Decision(Action.SKIP, "up to date")
    return Decision(Action.CHECK, RECHECK_REASON[state])


def _absent(record: FileRecord | None, local: LocalState) -> Decision:
    """A file not where it goes: resumed from a partial download of the same content, else
    downloaded."""
    if local.partial_bytes > 0:
        return Decision(Action.RESUME, f"{human_size(local.partial_bytes)} already downloaded")
    return Decision(Action.DOWNLOAD, "missing" if record is not None else "not downloaded yet")


def _fetched_again(
    remote: RemoteFile, record: FileRecord | None, *, unnamed: bool
) -> Decision | None:
    """Why a file found in place is downloaded again without a look at its bytes, or None: it is
    kept, or checked (unrecorded, with a hash)."""
    hashed = bool(remote.sha256 or remote.git_oid)
    if record is None:
        if hashed:
            return None
        # Not known to be wrong, so not a repair: fetched again because nothing can vouch for it.
        return Decision(
            Action.DOWNLOAD,
            "unrecorded (present, never verified by mdl) and no hash to check it against",
        )
    if same_content(record, remote, unnamed=unnamed):
        return None
    if not (hashed or same_source(record, remote)):
        return Decision(Action.DOWNLOAD, NEW_SOURCE)
    return Decision(
        Action.DOWNLOAD, UNNAMED if same_content(record, remote) else "changed upstream"
    )


class InPlace(NamedTuple):
    """A workflow's rules for a file found where it goes, as data: ``look`` decides by them,
    ``done_outcome`` words.
    """

    unnamed: bool  # a recorded file no key tells apart is kept (see same_content)
    kept: str | None  # why a file found in place was kept (None: the decision's own reason)
    # the word for a file that was there and is fetched anew (None: the action's own)
    replaced: str | None


PULL = InPlace(unnamed=True, kept=None, replaced=None)
# get (a one-off file: no model) into a folder the user owns: kept only for the version the server
# names (wget -N)
GET = InPlace(unnamed=False, kept="already there, unchanged upstream", replaced="replaced")


def policy_of(remote: RemoteFile) -> InPlace:
    return PULL if remote.model else GET


class PlannedFile(NamedTuple):
    """A file to fetch, with its decision and where it goes."""

    remote: RemoteFile
    decision: Decision
    partial_bytes: int
    placement: Placement
    # a FIFO, socket or device where the file goes: replaced, and said so
    warning: str | None = None
    # what the plan's one look found (``Layout.look``): its record's entry, what was where the file
    # goes (replaced, or kept), its partial; the fetch looks once more under the file's lock
    disk: OnDisk = NOTHING


def plan_models(
    session: PullSession, resolved: Sequence[ResolvedModel]
) -> tuple[list[PlannedFile], list[FileOutcome]]:
    """Plan every file (probing direct URLs without a sha256); a model that cannot be saved fails
    whole.
    """
    plans: list[PlannedFile] = []
    failures: list[FileOutcome] = []
    force, offline = session.settings.force, session.settings.offline
    fine: set[Path] = set()  # the folders files go to, each looked at once
    for model in resolved:
        planned: list[PlannedFile] = []
        try:  # a model refused whole, before any byte: half a model is no use
            clash = path_clash(remote.path for remote in model.files)
            if clash is not None:
                file, child = clash
                raise UnsafePathError(
                    f"{model.name}: {file!r} is a file and also the folder of {child!r}; both"
                    " cannot be saved"
                )
            for remote in model.files:
                try:
                    if not offline and not remote.hub and not remote.sha256:
                        # its size and validator say whether it changed upstream
                        remote = session.probe(remote)
                    planned.append(plan_file(session.layout, remote, force=force, offline=offline))
                except MdlError as exc:
                    failures.append(failed(remote.model, remote.path, exc))
            for plan in planned:
                if plan.decision.action is not Action.SKIP:
                    plan.placement.check_writable(label=label_of(plan.remote), fine=fine)
        except MdlError as exc:
            log.error("%s", exc.message)
            failures.append(failed(model.name, None, exc, dest=session.store.model_dir(model.name)))
            continue
        plans.extend(planned)
    return plans, failures


def plan_file(layout: Layout, file: RemoteFile, *, force: bool, offline: bool) -> PlannedFile:
    """Where the file goes in ``layout`` and what to do with it, the disk looked at once."""
    return planned(file, *placed(layout, file, offline=offline), force=force)


def placed(layout: Layout, file: RemoteFile, *, offline: bool) -> tuple[Placement, OnDisk]:
    """Where the file goes in ``layout``, and what is on disk for it there (``Layout.look``): the
    one look a plan takes."""
    try:
        placement = layout.place(
            file.model,
            file.path,
            source=file.source,
            sha256=file.sha256,
            git_oid=file.git_oid,
            revision=file.revision,
            xet=file.xet.hash if file.xet is not None else None,
        )
    except UnsafePathError:  # a link on the way: refused alike, offline too
        raise
    except MdlError:
        if offline:  # never pulled: where it would go is only known upstream
            raise offline_error(file) from None
        raise
    return placement, layout.look(
        placement, file.model, file.path, sha256=file.sha256, git_oid=file.git_oid
    )


def planned(remote: RemoteFile, placement: Placement, disk: OnDisk, *, force: bool) -> PlannedFile:
    """What to do with the file, decided from ``disk`` as it was looked at (the plan's look, and
    the fetch's under the file's lock)."""
    # A partial mdl did not make (a hard link, another user's) is never resumed: the engine sets it
    # aside.
    partial, same = saved_progress(disk.state, identity_of(remote)) if disk.state else (0, True)
    local = LocalState.of(disk.final, partial_bytes=partial if same else 0)
    decision = decide(remote, disk.entry, local, force=force, unnamed=policy_of(remote).unnamed)
    if not same and local.size is None and partial:
        # a partial of another version (the file absent: ``_absent``): its bytes are thrown away,
        # as the outcome says (its ``partial_bytes``)
        decision = Decision(Action.DOWNLOAD, CHANGED)
    elif not same:
        partial = 0
    # a FIFO, socket or device where the file goes is never opened: the atomic rename replaces it
    warning = (
        f"{shown_path(disk.odd[0])} is {disk.odd[1]}, not a file; it is replaced"
        if disk.odd
        else None
    )
    if warning is not None and force and decision.action is Action.DOWNLOAD:
        # get --force: what was there is replaced, as a file is
        decision = Decision(Action.DOWNLOAD, FORCED)
    return PlannedFile(remote, decision, partial, placement, warning, disk)


def check_space(plans: Sequence[PlannedFile]) -> None:
    """Refuse before transferring when the known sizes do not fit (per destination)."""
    needed: dict[Store, int] = {}
    for plan in plans:
        action = plan.decision.action
        if action in (Action.DOWNLOAD, Action.REPAIR, Action.RESUME):
            # a resume writes the rest over the blocks its partial holds, counted or not
            kept = max(plan.partial_bytes, plan.disk.held) if action is Action.RESUME else 0
            needed[plan.placement.store] = needed.get(plan.placement.store, 0) + max(
                0, (plan.remote.size or 0) - kept
            )
    for store, total in needed.items():
        store.ensure_dirs()
        free = store.free_bytes()
        if total > free:
            raise NoSpaceError(
                f"not enough space in {store.dest}: {human_size(total)} still to download,"
                f" {human_size(free)} free"
            )


def recorded(store: Store, remote: RemoteFile) -> FileRecord | None:
    """The record of the file, for the content upstream names now when mdl has it (another commit's,
    in the Hugging Face cache: its blob is still there, judged as any recorded file)."""
    return store.entry(remote.model, remote.path, sha256=remote.sha256, git_oid=remote.git_oid)


def identity_of(remote: RemoteFile) -> Identity:
    """What a partial download must match to be resumed (a Hub file is known by its hashes, not a
    CDN ETag).
    """
    return Identity(
        remote.size, remote.sha256, remote.git_oid, remote.etag if not remote.hub else None
    )


def offline_error(remote: RemoteFile) -> MdlError:
    """A file to fetch while HF_HUB_OFFLINE is set: named as the model's file, or (``get``) by
    its source.
    """
    at = f" (revision {remote.revision})" if remote.revision not in (None, "main") else ""
    return NetworkError(
        f"{label_of(remote) if remote.model else remote.source or remote.path}:"
        f" HF_HUB_OFFLINE is set and the file must be fetched{at}",
        hint="unset HF_HUB_OFFLINE",
    )
