"""``mdl lock``: pin the catalog's models in ``catalog.lock`` (``--upgrade`` moves them on,
``--check`` is for CI).
"""

from typing import TYPE_CHECKING, Annotated, Unpack

import typer

from mdl import api
from mdl.cli.options import AllOpt, NamesArg, command
from mdl.cli.run import Run
from mdl.errors import UsageError
from mdl.setting import Locking
from mdl.units import human_size, plural

if TYPE_CHECKING:
    from mdl.download.lockcheck import LockReport
    from mdl.lockfile.io import ModelChange
    from mdl.lockfile.model import LockedFile

SHOWN_FILES = 3  # changed files named on a model's line; the rest are counted


@command()
def lock_cmd(
    run: Run,
    names: NamesArg = None,
    all_models: AllOpt = False,
    upgrade: Annotated[
        bool,
        typer.Option(
            "--upgrade", help="Resolve again: branches and tags move to their current commits."
        ),
    ] = False,
    check: Annotated[
        bool,
        typer.Option(
            "--check",
            help=(
                "Change nothing: exit 2 if the lock is missing or stale, 4 if a version it pins"
                " is not published to the catalog's bucket, 6 if a pinned signature does not"
                " cover what it pins (for CI)."
            ),
        ),
    ] = False,
    **where: Unpack[Locking],
) -> int:
    """Pin commits, files, sizes and sha256 in catalog.lock beside the catalog (all models when
    none is named).
    """
    if upgrade and check:
        raise UsageError("--check changes nothing; it cannot go with --upgrade")
    with run.reporter() as progress:
        report = api.lock(
            *(names or ()),
            all=all_models,
            upgrade=upgrade,
            check=check,
            **where,
            environ=run.environ,
            progress=progress,
            secrets=run.secrets,
        )
    for warning in report.warnings:
        run.console.warn(warning)
    if run.json:
        run.emit(report.to_json())
    elif check:
        say_check(run, report)
    else:
        say_changes(run, report, upgrade=upgrade)
    return report.exit_code


def say_check(run: Run, report: "LockReport") -> None:
    """--check says one line: missing or stale (exit 2), or fresh; and a line per model whose
    version is not published to the catalog's bucket (exit 4), or whose pinned signature does not
    verify or cover its files (exit 6)."""
    for failure in report.failures:
        run.console.error(failure.error or f"{failure.label}: failed", hint=failure.hint)
    if report.missing:
        run.console.error(
            f"{report.path} does not exist", hint="run mdl lock, and commit the file it writes"
        )
    elif report.stale:
        stale = ", ".join(report.stale)
        run.console.error(f"{report.path.name} is stale for: {stale} (run mdl lock)")
    elif not report.failures:
        run.console.info(f"{report.path.name} is up to date")


def say_changes(run: Run, report: "LockReport", *, upgrade: bool) -> None:
    """A line per model that changed (every model with --upgrade) on stdout; failures and a summary
    on stderr."""
    run.line(*(change_line(c) for c in report.changes if upgrade or c.status != "unchanged"))
    for failure in report.failures:
        run.console.error(failure.error or f"{failure.label}: failed", hint=failure.hint)
    run.console.info(_lock_line(report))
    if report.parts_changed:
        hashed = f", {report.hashed} hashed here now" if report.hashed else ""
        run.console.info(
            f"wrote {report.parts_path} (part hashes of {plural(report.parts, 'file')}{hashed})"
        )
    if report.not_here and not report.failures:
        run.console.info(
            f"no part hashes for {plural(report.not_here, 'file')}: not here to read"
            " (pull them, then run mdl lock again)"
        )


def _lock_line(report: "LockReport") -> str:
    """What became of the lock file: left as it was, written, or already up to date."""
    if report.failures:
        return (
            f"{report.path} was left as it was: every model must resolve for the lock to be written"
        )
    locked = sum(1 for c in report.changes if c.status != "removed")
    resolved = len(report.resolved)
    models = f"{plural(locked, 'model')}, {resolved} resolved, {locked - resolved} kept as locked"
    if report.changed:
        return f"wrote {report.path} ({models})"
    return f"{report.path} is up to date ({models})"


def change_line(change: "ModelChange") -> str:
    """``tiny: f191985 -> 8c3e2aa; +1 file, -0, ~1 changed (model.bin 1.2 MiB -> 1.3 MiB)`` (a model
    of several repos: ``org/a f191985 → 8c3e2aa, org/b …``), or ``tiny: unchanged``."""
    if change.status == "unchanged":
        return f"{change.name}: unchanged"
    if change.status == "removed":
        return f"{change.name}: dropped (no longer in the catalog)"
    if change.status == "added":
        size = human_size(sum(f.size for f in change.added))
        at = f" at {change.new_commit[:7]}" if change.new_commit else ""
        return f"{change.name}: locked{at} ({plural(len(change.added), 'file')}, {size})"
    counts = (
        f"+{plural(len(change.added), 'file')}, -{len(change.removed)}, ~{len(change.changed)}"
        " changed"
    )
    if change.repinned:
        counts += f", {len(change.repinned)} re-pinned"
    shown = files_shown(change)
    return f"{change.name}: {commits_moved(change)}{counts}" + (f" ({shown})" if shown else "")


def commits_moved(change: "ModelChange") -> str:
    """``f191985 → 8c3e2aa; `` (a model of several repos: each repo's move), or nothing."""
    if change.old_commit != change.new_commit:
        return f"{(change.old_commit or '-')[:7]} → {(change.new_commit or '-')[:7]}; "
    if not change.repos:
        return ""
    moved = (f"{r.repo} {r.old_commit[:7]} → {r.new_commit[:7]}" for r in change.repos)
    return ", ".join(moved) + "; "


def files_shown(change: "ModelChange") -> str:
    """The changed and re-pinned files a line names (the first few; the rest counted)."""
    shown = [f"{new.path} {_bytes_moved(old, new)}" for old, new in change.changed]
    shown += [
        new.path if change.repos else f"{new.path} {_commit(old)} → {_commit(new)}"
        for old, new in change.repinned
    ]
    if len(shown) > SHOWN_FILES:
        shown[SHOWN_FILES:] = [f"and {len(shown) - SHOWN_FILES} more"]
    return ", ".join(shown)


def _bytes_moved(old: "LockedFile", new: "LockedFile") -> str:
    """``1.14 MiB → 1.24 MiB``; when the sizes read the same, the sha256 that moved (rebuilt
    bytes, same size).
    """
    if (was := human_size(old.size)) != (now := human_size(new.size)):
        return f"{was} → {now}"
    return f"{now}, sha256 {old.sha256[:8]} → {new.sha256[:8]}"


def _commit(f: "LockedFile") -> str:
    """The short commit a Hub file is pinned to (its source for a direct URL)."""
    ref = f.hub
    return ref.commit[:7] if ref is not None and ref.commit else f.source
