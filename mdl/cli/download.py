"""``mdl pull``, ``mdl verify`` and ``mdl clean``: the catalog's models onto this disk, checked, and tidied."""

from __future__ import annotations

import time
from typing import Annotated

import typer

from mdl.cli.options import (
    AllOpt,
    CatalogOpt,
    DestOpt,
    DryRunOpt,
    JsonOpt,
    LayoutOpt,
    LogFileOpt,
    NamesArg,
    NoProgressOpt,
    QuietOpt,
    VerboseOpt,
)
from mdl.cli.run import Run, guarded, load_catalog, render_report, select_models, settings_for


def pull_cmd(
    names: NamesArg = None,
    all_models: AllOpt = False,
    dest: DestOpt = None,
    layout: LayoutOpt = None,
    connections: Annotated[
        int | None, typer.Option("--connections", help="Parallel ranges per big file (1-64, default 8).")
    ] = None,
    jobs: Annotated[int | None, typer.Option("--jobs", help="Files in flight at once (default 4).")] = None,
    limit_rate: Annotated[str | None, typer.Option("--limit-rate", help="Cap total throughput, e.g. 50M.")] = None,
    no_verify: Annotated[
        bool, typer.Option("--no-verify", help="Do not fail on a hash mismatch (sizes are still checked).")
    ] = False,
    force: Annotated[bool, typer.Option("--force", help="Download again even if present.")] = False,
    stall_timeout: Annotated[
        float | None,
        typer.Option("--stall-timeout", help="Seconds without bytes before a stream is resumed (default 30)."),
    ] = None,
    lock_timeout: Annotated[
        float | None,
        typer.Option("--lock-timeout", help="Seconds to wait for another run's lock (default 3600)."),
    ] = None,
    dry_run: DryRunOpt = False,
    catalog: CatalogOpt = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
    no_progress: NoProgressOpt = False,
    log_file: LogFileOpt = None,
) -> None:
    """Download what is missing or changed; resume what was cut off; verify; skip what is already right."""
    run = Run(json=json_out, quiet=quiet, verbose=verbose, no_progress=no_progress, log_file=log_file)
    with guarded(run):
        from mdl.download import pull_models

        cat = load_catalog(run, catalog)
        settings = settings_for(
            run,
            cat,
            dest=dest,
            layout=layout,
            connections=connections,
            jobs=jobs,
            limit_rate=limit_rate,
            stall_timeout=stall_timeout,
            lock_timeout=lock_timeout,
            verify=not no_verify,
            force=force,
            dry_run=dry_run,
        )
        models = select_models(cat, names, all_models)
        started = time.monotonic()
        with run.reporter() as progress:
            report = pull_models(models, settings, progress=progress)
        render_report(run, report, verb="pulled", seconds=time.monotonic() - started)


def verify_cmd(
    names: NamesArg = None,
    all_models: AllOpt = False,
    dest: DestOpt = None,
    layout: LayoutOpt = None,
    catalog: CatalogOpt = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
    no_progress: NoProgressOpt = False,
    log_file: LogFileOpt = None,
) -> None:
    """Re-hash local files against the record and the catalog (offline)."""
    run = Run(json=json_out, quiet=quiet, verbose=verbose, no_progress=no_progress, log_file=log_file)
    with guarded(run):
        from mdl.store import verify_models

        cat = load_catalog(run, catalog)
        settings = settings_for(run, cat, dest=dest, layout=layout)
        started = time.monotonic()
        with run.reporter() as progress:
            report = verify_models(select_models(cat, names, all_models), settings, progress=progress)
        render_report(run, report, verb="verified", seconds=time.monotonic() - started)


def clean_cmd(
    dest: DestOpt = None,
    layout: LayoutOpt = None,
    dry_run: DryRunOpt = False,
    catalog: CatalogOpt = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
    no_progress: NoProgressOpt = False,
    log_file: LogFileOpt = None,
) -> None:
    """Remove stale partial downloads and their resume records (never one a running mdl is using)."""
    run = Run(json=json_out, quiet=quiet, verbose=verbose, no_progress=no_progress, log_file=log_file)
    with guarded(run):
        from mdl.store import clean
        from mdl.units import human_size

        cat = load_catalog(run, catalog, required=False)
        settings = settings_for(run, cat, dest=dest, layout=layout, dry_run=dry_run)
        cleaned = clean(settings)
        freed = sum(c.size for c in cleaned)
        if run.json:
            run.emit(
                {
                    "ok": True,
                    "dry_run": dry_run,
                    "freed": freed,
                    "files": [
                        {"path": str(c.path), "size": c.size, "source": c.label, "removed": c.removed} for c in cleaned
                    ],
                }
            )
            return
        for c in cleaned if not run.quiet else ():
            run.stdout.write(
                f"{'would remove' if dry_run else 'removed'}  {c.path}  ({human_size(c.size)})  {c.label}\n"
            )
        run.console.info(
            f"{'would free' if dry_run else 'freed'} {human_size(freed)} in {len(cleaned)} partial file(s)"
        )
