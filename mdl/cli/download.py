"""``mdl pull``, ``mdl verify``, ``mdl clean`` and ``mdl prune``: the catalog's models onto this
disk, checked, and tidied."""

import re
import shlex
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar, Unpack, cast

import typer

from mdl import api
from mdl.cli.options import AllOpt, DryRunOpt, NamesArg, command
from mdl.cli.plain import pull_files, verify_files
from mdl.cli.run import Run
from mdl.errors import UsageError
from mdl.setting import Pinned, Places, Pulling
from mdl.units import human_size

if TYPE_CHECKING:
    from mdl.store.prune import PrunedPath, PruneReport
    from mdl.upload.mirrorprune import MirrorPruneReport

_Pruned = TypeVar("_Pruned", "PruneReport", "MirrorPruneReport")


@command()
def pull_cmd(
    run: Run,
    names: NamesArg = None,
    all_models: AllOpt = False,
    no_verify: Annotated[
        bool,
        typer.Option(
            "--no-verify", help="Do not fail on a hash mismatch (sizes are still checked)."
        ),
    ] = False,
    force: Annotated[bool, typer.Option("--force", help="Download again even if present.")] = False,
    unsigned: Annotated[
        bool,
        typer.Option(
            "--unsigned",
            help="The release machine's new version, which no lock pins and no signature covers"
            " yet: fetch what upstream has now (not what catalog.lock pins) to publish it (and"
            " sign it: publish --sign); its files are held to their hashes, a signed model stays"
            " partial.",
        ),
    ] = False,
    dry_run: DryRunOpt = False,
    **where: Unpack[Pulling],
) -> int:
    """Download what is missing or changed; resume what was cut off; verify; skip what is already
    right.

    With catalog.lock beside the catalog, each model it pins is fetched at its locked commit and
    checked against its locked sha256, without asking the Hub to list anything."""
    return pull_files(
        run,
        names,
        all_models=all_models,
        no_verify=no_verify,
        force=force,
        unsigned=unsigned,
        dry_run=dry_run,
        **where,
    )


# (a probe, --quick, prints nothing on stdout: its answer is its exit code, a closed stdout too)
@command(
    output_only=lambda options: not options["quick"], logged=lambda options: not options["quick"]
)
def verify_cmd(
    run: Run,
    names: NamesArg = None,
    all_models: AllOpt = False,
    quick: Annotated[
        bool,
        typer.Option(
            "--quick",
            help=(
                "Read no byte: each file is ready when it has the size and mtime it had when mdl"
                " verified it, at the sha256 pinned (a readiness probe; with --locked for a"
                " deploy). It says one line on stderr and writes no log unless --log-file names"
                " one; --json for each file."
            ),
        ),
    ] = False,
    **where: Unpack[Pinned],
) -> int:
    """Re-hash local files against the record and the catalog, or catalog.lock where it pins them
    (offline); with --quick, judge them by their records and sizes alone.
    """
    return verify_files(run, names, all_models=all_models, quick=quick, **where)


@command()
def clean_cmd(run: Run, dry_run: DryRunOpt = False, **where: Unpack[Places]) -> None:
    """Remove stale partial downloads and their resume records (never one a running mdl is
    using).
    """
    report = api.clean(dry_run=dry_run, **where, environ=run.environ)
    if run.json:
        run.emit(report.to_json())
        return
    removed, freed = ("would remove", "would free") if dry_run else ("removed", "freed")
    run.line(*(f"{removed}  {c.path}  ({human_size(c.size)})  {c.label}" for c in report.files))
    run.console.info(f"{freed} {human_size(report.freed)} in {len(report.files)} partial file(s)")


def days(value: str | None) -> float | None:
    """--keep-days: a number of days (``7``, ``0.5``), else exit 2 naming the option."""
    if value is None:
        return None
    if not re.fullmatch(r"[0-9]{1,5}(\.[0-9]{1,6})?", value.strip()):
        raise typer.BadParameter(f"expected a number of days, such as 7 or 0.5, got {value!r}")
    return float(value)


def count_of_versions(value: str | None) -> int | None:
    """--keep-versions: a whole number of versions (``2``, ``0``), else exit 2 naming the option."""
    if value is None:
        return None
    if not re.fullmatch(r"[0-9]{1,5}", value.strip()) or int(value) > 10_000:
        raise typer.BadParameter(f"expected a number of versions from 0 to 10000, got {value!r}")
    return int(value)


@command()
def prune_cmd(
    run: Run,
    dry_run: DryRunOpt = False,
    mirror: Annotated[
        str | None,
        typer.Option(
            "--mirror",
            metavar="URL",
            help=(
                "Prune this mirror instead (a template in a bucket, shared folder or registry, as"
                " in [settings].mirrors): remove the objects mdl wrote under the catalog's models"
                " that none of them names by its catalog.lock, and expired leases; never an"
                " object mdl did not write, a live lease or the object it guards."
            ),
            show_default=False,
        ),
    ] = None,
    keep_days: Annotated[
        str | None,
        typer.Option(
            "--keep-days",
            metavar="N",
            help="With --mirror: keep unnamed objects written less than N days ago (default 7).",
            callback=days,
        ),
    ] = None,
    keep_versions: Annotated[
        str | None,
        typer.Option(
            "--keep-versions",
            metavar="N",
            help=(
                "With --mirror: also keep the newest N published versions of each model (their"
                " manifests in the mirror; default 2, 0: only the locks')."
            ),
            callback=count_of_versions,
        ),
    ] = None,
    locks: Annotated[
        list[Path] | None,
        typer.Option(
            "--lock",
            metavar="FILE",
            help=(
                "With --mirror: also keep what this lock pins (a version a node may still deploy"
                " or roll back to); repeatable."
            ),
        ),
    ] = None,
    all_models: Annotated[
        bool,
        typer.Option(
            "--all-models",
            help=(
                "With --mirror: also remove what mdl wrote under models this catalog does not"
                " name (another catalog's, or ones taken out of it); only this catalog's otherwise."
            ),
        ),
    ] = False,
    **where: Unpack[Places],
) -> int:
    """Remove from the destination what the catalog no longer names: removed models' files and
    records, files a model no longer has (and, in the Hugging Face cache, their snapshots and blobs
    no other snapshot uses). Only what mdl recorded: files it did not write (or found in place), or
    that changed since, stay; so do models another catalog pulled (see --catalog), and a model
    another run is pulling is skipped. With --mirror, the mirror instead of the destination."""
    if mirror is None:
        given = {
            "--keep-days": keep_days is not None,
            "--keep-versions": keep_versions is not None,
            "--lock": bool(locks),
            "--all-models": all_models,
        }
        if flag := next((flag for flag, on in given.items() if on), None):
            raise UsageError(f"{flag} is for a mirror: give --mirror URL")
        return render_prune(
            run, api.prune(dry_run=dry_run, **where, environ=run.environ), say_pruned
        )
    if where.get("dest") is not None or where.get("layout") is not None:
        raise UsageError("--mirror prunes a mirror, not a destination: drop --dest and --layout")
    report = api.prune_mirror(
        mirror,
        catalog=where.get("catalog"),
        keep_days=cast(float | None, keep_days),
        keep_versions=cast(int | None, keep_versions),
        locks=locks or (),
        all_models=all_models,
        dry_run=dry_run,
        environ=run.environ,
        secrets=run.secrets,
    )
    return render_prune(run, report, say_mirror_pruned)


def say_mirror_pruned(run: Run, report: "MirrorPruneReport") -> None:
    """The objects removed on stdout; the kept ones with -v (a dry run: those that go next), and
    the summary, on stderr."""
    removed, freed = ("would remove", "would free") if report.dry_run else ("removed", "freed")
    run.line(*(f"{removed}  {e.uri}  ({human_size(e.size)})  {e.reason}" for e in report.removed))
    _say_kept(run, report)
    why = Counter(e.reason for e in report.kept)
    kept = ", ".join(f"{n} {reason}" for reason, n in why.most_common())
    run.console.info(
        f"{freed} {human_size(report.freed)} in {len(report.removed)} object(s) of"
        f" {report.mirror}; kept {len(report.kept)}{f' ({kept})' if kept else ''}"
    )


def _say_kept(run: Run, report: "MirrorPruneReport") -> None:
    """Each kept object and what each kept version costs, with -v; a dry run says what goes
    next."""
    for e in report.kept:
        later = report.later(e)
        if run.verbose or (later and report.dry_run):
            run.console.info(f"kept {e.uri}: {e.reason}{f'; {later}' if later else ''}")
    if run.verbose or report.dry_run:
        for version in report.to_json()["versions"]:
            run.console.info(version_line(version))


def version_line(version: dict[str, Any]) -> str:
    """One kept version as the dry run says it: model, where from, commit, files, bytes, and the
    bytes only it holds."""
    commit = f" (commit {version['commit'][:7]})" if version["commit"] else ""
    return (
        f"kept version of {version['model']} from {version['from']}{commit}:"
        f" {version['files']} file(s), {human_size(version['bytes'])},"
        f" {human_size(version['only_bytes'])} only it holds"
    )


def _size_freed(removed: "PrunedPath") -> str:
    """A removed file's size, and whether removing it freed it (another hard link keeps the
    bytes).
    """
    return (
        f"{human_size(removed.size)}, another hard link keeps it"
        if removed.linked
        else human_size(removed.size)
    )


def render_prune(
    run: Run, report: _Pruned, say: Callable[[Run, _Pruned], None], *, emit: bool = True
) -> int:
    """Each removed path (a mirror's object) on stdout (as clean's), kept ones with -v, warnings,
    and the summary (``say``'s) on stderr; with --json the report as the document (``emit``: it is
    not part of another one)."""
    for warning in report.warnings:
        run.console.warn(warning)
    if run.json and emit:
        run.emit(report.to_json())
    elif not run.json:
        say(run, report)
    for error in report.errors:
        run.console.error(error.message, hint=error.hint)
    return report.exit_code


def say_pruned(run: Run, report: "PruneReport") -> None:
    """The paths removed on stdout; the kept ones with -v, and the summary, on stderr."""
    removed, freed = ("would remove", "would free") if report.dry_run else ("removed", "freed")
    run.line(
        *(f"{removed}  {r.path}  ({_size_freed(r)})  {r.model}: {r.reason}" for r in report.removed)
    )
    if run.verbose:
        for k in report.kept:
            run.console.info(f"kept {k.path}: {k.reason}")
    kept = kept_words(report, listed=run.verbose)
    run.console.info(f"{freed} {human_size(report.freed)} in {len(report.removed)} path(s){kept}")


def kept_words(report: "PruneReport", *, listed: bool) -> str:
    """``; kept 3 path(s) mdl did not write``, and the models another catalog pulled, with how to
    prune them."""
    others = sum(1 for k in report.kept if k.catalog is not None)
    paths = len(report.kept) - others
    said = f"; kept {paths} path(s) mdl did not write{'' if listed else ' (-v lists them)'}"
    kept = said if paths else ""
    if others:
        prune_with = " or ".join(f"--catalog {shlex.quote(c)}" for c in report.other_catalogs)
        kept += (
            f"; kept {others} model(s) pulled with another catalog (prune them with {prune_with})"
        )
    return kept
