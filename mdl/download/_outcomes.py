"""What a run reports of each planned file once it is done (or, ``--dry-run``, would be): the
words of its action, and get's rule for a file already where it goes."""

from __future__ import annotations

import contextlib
import stat as st
from pathlib import Path

from mdl.download._plan import FORCED, Action, PlannedFile, policy_of
from mdl.errors import UsageError
from mdl.report import FileOutcome, log_outcome
from mdl.store.filesystem import hash_file
from mdl.store.records import FileRecord
from mdl.transfer.job import TransferResult
from mdl.units import human_size

# a file get finds in place with the bytes asked for: kept, whoever wrote it
SAME_BYTES = "already there, same bytes"

# What each action is called once done (the JSON's words): a file replaced because of --force is
# "downloaded" with reason "--force" ("re-downloaded" for people); "repaired" is only a present file
# that was hashed and found wrong.
DONE_WORD = {
    Action.SKIP: "skipped",
    Action.DOWNLOAD: "downloaded",
    Action.RESUME: "resumed",
    Action.REPAIR: "repaired",
    Action.CHECK: "skipped",
}


# what a file no transfer brought says of its transfer
_NOTHING = TransferResult(size=0, sha256="", git_oid=None, etag=None, resumed_from=0, fetched=0)


def done_outcome(
    plan: PlannedFile,
    action: Action,
    *,
    size: int | None,
    sha256: str | None,
    result: TransferResult | None = None,
    verified: bool | None = None,
    reason: str | None = None,
) -> FileOutcome:
    """The file's outcome once ``action`` (it may differ from the planned one) was done; ``result``:
    its transfer; ``reason``: what the transfer made of the plan's (a resume that was not one)."""
    remote = plan.remote
    word, reason = _words(plan, action, reason or plan.decision.reason)
    done = result if result is not None else _NOTHING
    return FileOutcome(
        remote.model,
        remote.path,
        str(plan.placement.shown),
        size,
        sha256,
        DONE_WORD[action],
        reason=reason,
        word=word,
        fetched=done.fetched,
        mirror=done.mirror,
        reused=done.reused,
        source=done.mirror or remote.source,
        warning=plan.warning,
        verified=done.verified if result is not None else verified,
        waited=done.waited,
        fill=done.fill,
        streamed=done.streamed,
        published=done.published,
        origin_parts=done.parts_here,
        peer_parts=done.parts_peers,
        duplicated=done.duplicated,
        not_swarmed=done.unswarmed,
        range_trust=done.trust,
        ranges_refetched=done.refetched,
    )


def _words(plan: PlannedFile, action: Action, reason: str) -> tuple[str | None, str]:
    """What people read instead of the action (None: the action), and the reason, by the
    workflow's rules for a file that was there (``InPlace``)."""
    word = "re-downloaded" if action is Action.DOWNLOAD and reason == FORCED else None
    policy = policy_of(plan.remote)
    if plan.disk.final is not None and action is Action.DOWNLOAD and policy.replaced is not None:
        word = policy.replaced
    if plan.disk.final is not None and DONE_WORD[action] == "skipped" and policy.kept is not None:
        reason = policy.kept
    return word, reason


def dry_run_outcome(plan: PlannedFile) -> FileOutcome:
    return done_outcome(
        plan, plan.decision.action, size=plan.remote.size, sha256=plan.remote.sha256
    )._replace(action=plan.decision.action.value, word=None, source=None)


def kept_in_place(
    target: Path,
    path: str,
    *,
    sha256: str | None,
    git_oid: str | None = None,
    where: str,
    ours: bool = False,
) -> FileOutcome | None:
    """get's rule for a file already where it would be saved (without --force), as ``unpack`` and
    aria2c refuse to overwrite: its outcome (``SAME_BYTES``, logged) when it has the bytes asked
    for; None when it is the one a get wrote (``ours``: then ``look`` decides from its record, as
    wget -N does); else the UsageError refusing it."""
    if sha256 or git_oid:
        with contextlib.suppress(OSError):  # unreadable counts as different
            size, have_sha, have_oid = hash_file(target, git=git_oid is not None and not sha256)
            if (have_sha == sha256) if sha256 else (have_oid == git_oid):
                # hashed now, and the hash it was held to matched: verified
                kept = FileOutcome(
                    "",
                    path,
                    str(target),
                    size,
                    sha256,
                    "skipped",
                    reason=SAME_BYTES,
                    source=where,
                    verified=True,
                )
                log_outcome(kept)
                return kept
    if ours:
        return None
    if sha256 or git_oid:
        raise UsageError(
            f"{target}: already exists and differs from {where}", hint="--force to replace it"
        )
    raise UsageError(
        f"{target}: already exists, and with no sha256 for {where} mdl cannot tell whether it is"
        " the same file",
        hint="--force to replace it, or --sha256 HEX to keep it when it matches",
    )


def still_verified(path: Path, entry: FileRecord | None) -> bool:
    """The file at ``path`` is the one its record verified: same size and mtime, or (touched
    since) same sha256.
    """
    if entry is None:
        return False
    try:
        found = path.lstat()
        if not st.S_ISREG(found.st_mode) or found.st_size != entry.size:
            return False
        return found.st_mtime_ns == entry.mtime_ns or hash_file(path)[1] == entry.sha256
    except OSError:
        return False


def resume_reason(plan: PlannedFile, result: TransferResult) -> str | None:
    """What became of a resume, in words that are true once it is done (None: not one): the bytes
    it went on from, or why the kept ones of a planned one were thrown away (a server that ignores
    Range answers 200 with the whole file)."""
    if result.resumed_from > 0:  # (a Xet fetch finds what it kept only as it starts)
        return f"{human_size(result.resumed_from)} already downloaded"
    if not plan.partial_bytes:
        return None
    # (bytes of another version: the plan's reason says why they were not resumed)
    planned = plan.decision.reason if plan.decision.action is not Action.RESUME else None
    return (
        f"{result.discarded or planned or 'the partial download could not be resumed'}; the"
        f" {human_size(plan.partial_bytes)} kept were discarded and the file downloaded again"
    )
