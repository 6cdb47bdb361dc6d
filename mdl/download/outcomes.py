"""What a run reports for each planned file: the JSON contract's words for what was done (or would be)."""

from __future__ import annotations

from mdl.download.plan import FORCED, Action
from mdl.download.planner import PlannedFile
from mdl.report import FileOutcome

# What each action is called once done (the JSON contract's words). A present file replaced because of
# --force is "downloaded" with reason "--force" there, and "re-downloaded" for people; "repaired" is only ever
# a present file that was hashed and found wrong.
DONE_WORD = {
    Action.SKIP: "skipped",
    Action.DOWNLOAD: "downloaded",
    Action.RESUME: "resumed",
    Action.REPAIR: "repaired",
    Action.CHECK: "skipped",
}


def done_outcome(
    plan: PlannedFile,
    action: Action,
    *,
    size: int | None,
    sha256: str | None,
    fetched: int = 0,
    mirror: str | None = None,
    seconds: float | None = None,
    retries: tuple[str, ...] = (),
) -> FileOutcome:
    """A file's outcome once ``action`` was carried out (it may differ from the planned one)."""
    return FileOutcome(
        model=plan.remote.model,
        path=plan.remote.path,
        dest=str(plan.placement.shown),
        size=size,
        sha256=sha256,
        action=DONE_WORD[action],
        reason=plan.decision.reason,
        word="re-downloaded" if action is Action.DOWNLOAD and plan.decision.reason == FORCED else None,
        fetched=fetched,
        mirror=mirror,
        source=mirror or plan.remote.source,
        seconds=seconds,
        retries=retries,
        warning=plan.warning,
    )


def dry_run_outcome(plan: PlannedFile) -> FileOutcome:
    """``--dry-run``: what would be done to the file, and why."""
    return FileOutcome(
        model=plan.remote.model,
        path=plan.remote.path,
        dest=str(plan.placement.shown),
        size=plan.remote.size,
        sha256=plan.remote.sha256,
        action=plan.decision.action.value,
        reason=plan.decision.reason,
        warning=plan.warning,
    )
