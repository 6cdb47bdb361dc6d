"""The only Typer module: parse flags, build settings, call one core function, render; errors → exit codes."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from mdl import __version__
from mdl.errors import InterruptedByUserError, MdlError, UsageError

log = logging.getLogger("mdl.cli")

app = typer.Typer(
    name="mdl",
    help="Get model files onto the machines that need them — fast, resumable, verified — and pack checkpoints.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)

# -- shared options (the same spelling on every command) ----------------------------------------------
QuietOpt = Annotated[bool, typer.Option("-q", "--quiet", help="Print nothing but errors.")]
VerboseOpt = Annotated[bool, typer.Option("-v", "--verbose", help="Log DEBUG detail to the log file.")]
NoProgressOpt = Annotated[bool, typer.Option("--no-progress", help="No progress display.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print exactly one JSON document on stdout.")]
CatalogOpt = Annotated[
    Path | None,
    typer.Option("--catalog", help="Catalog file (default: $MDL_CATALOG, ./catalog.toml, user config)."),
]
DestOpt = Annotated[Path | None, typer.Option("--dest", help="Download root (default: $MDL_DEST, catalog, user data).")]
LogFileOpt = Annotated[
    Path | None, typer.Option("--log-file", help="Log file (default: $MDL_LOG_FILE or user log dir).")
]
NamesArg = Annotated[list[str] | None, typer.Argument(help="Model names from the catalog.", show_default=False)]
AllOpt = Annotated[bool, typer.Option("--all", help="Every model in the catalog.")]
DryRunOpt = Annotated[bool, typer.Option("--dry-run", help="Show what would happen; change nothing.")]
LayoutOpt = Annotated[
    str | None,
    typer.Option(
        "--layout",
        help="plain (model folders under dest) or hf-cache (Hub files in the Hugging Face cache). "
        "Default: $MDL_LAYOUT, catalog, plain.",
    ),
]


@dataclass
class Run:
    """One command's I/O: streams, environment, output mode, and the console (built once, passed around)."""

    json: bool = False
    quiet: bool = False
    verbose: bool = False
    no_progress: bool = False
    log_file: Path | None = None
    environ: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    secrets: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        from mdl.catalog import default_log_file
        from mdl.cli.render.progress import Console, setup_logging

        self.stdout = sys.stdout
        self.stderr = sys.stderr
        self.console = Console(self.stderr, environ=self.environ, quiet=self.quiet, secrets=self._secrets())
        chosen = self.log_file or (Path(self.environ["MDL_LOG_FILE"]) if self.environ.get("MDL_LOG_FILE") else None)
        target = chosen or default_log_file()
        if setup_logging(log_file=target, verbose=self.verbose, secrets=self._secrets()) is None and chosen:
            self.console.warn(f"cannot write the log file {chosen}; going on without it")

    def _secrets(self) -> tuple[str, ...]:
        """Values never to print: the Hub token and anything that looks like a credential in the environment
        (catalog headers expand ``${VAR}`` from there)."""
        suspicious = ("TOKEN", "SECRET", "PASSWORD", "API_KEY", "APIKEY", "CREDENTIAL")
        found = [v for k, v in self.environ.items() if any(s in k.upper() for s in suspicious) and len(v) >= 6]
        return (*found, *self.secrets)

    @contextlib.contextmanager
    def reporter(self) -> Iterator[Any]:
        """The progress display for this run (rich on a terminal, plain lines otherwise, none with -q)."""
        from mdl.cli.render.progress import choose_progress_mode, make_reporter

        mode = choose_progress_mode(
            quiet=self.quiet,
            no_progress=self.no_progress,
            json_output=self.json,
            stderr_isatty=_isatty(self.stderr),
            environ=self.environ,
        )
        reporter = make_reporter(mode, stream=self.stderr, environ=self.environ, secrets=self._secrets())
        try:
            yield reporter
        finally:
            reporter.close()

    def emit(self, doc: Mapping[str, Any]) -> None:
        """The one JSON document on stdout."""
        from mdl.cli.render.progress import emit_json

        emit_json(doc, stream=self.stdout)

    def table(self, rows: list[dict[str, Any]], columns: list[tuple[str, str]]) -> None:
        """Data as an aligned table on stdout (nothing with -q: it prints nothing but errors)."""
        from mdl.cli.render.progress import color_enabled, render_table

        if self.quiet:
            return
        color = color_enabled(isatty=_isatty(self.stdout), environ=self.environ)
        render_table(rows, columns, stream=self.stdout, color=color)

    def fail(self, exc: MdlError) -> NoReturn:
        """Report an error (stderr, and JSON on stdout when asked) and exit with its code."""
        from mdl.redact import redact_text

        message = redact_text(exc.message, secrets=self._secrets())
        log.error("%s", message)
        if self.json:
            self.emit({"ok": False, "error": {"code": int(exc.exit_code), "kind": exc.kind, "message": message}})
        self.console.error(exc.message, exc.hint)
        raise typer.Exit(int(exc.exit_code))


def _isatty(stream: Any) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty()) if callable(isatty) else False


@contextlib.contextmanager
def guarded(run: Run) -> Iterator[None]:
    """The one translator: MdlError → its exit code, Ctrl-C → 130, anything else → 1 (traceback with MDL_DEBUG)."""
    started = time.monotonic()
    log.info("mdl %s: %s", __version__, " ".join(sys.argv[1:]))
    try:
        yield
    except typer.Exit:
        raise
    except MdlError as exc:
        run.fail(exc)
    except KeyboardInterrupt:
        run.fail(InterruptedByUserError("interrupted; partial downloads were kept, run again to resume"))
    except Exception as exc:  # the translator: a bug must still end in one line and exit 1
        log.exception("internal error")
        if run.environ.get("MDL_DEBUG", "") not in ("", "0"):
            raise
        error = MdlError(f"internal error: {type(exc).__name__}: {exc}", hint="run with MDL_DEBUG=1 for a traceback")
        run.fail(error)
    finally:
        log.info("done in %.1fs", time.monotonic() - started)


# -- catalog and settings -----------------------------------------------------------------------------


def _load_catalog(run: Run, flag: Path | None, *, required: bool = True) -> Any:
    from mdl.catalog import Catalog, find_catalog, load_catalog, user_config_dir

    path = find_catalog(flag=flag, environ=run.environ, cwd=Path.cwd(), config_dir=user_config_dir())
    if path is None:
        if required:
            raise UsageError(
                "no catalog found: pass --catalog, set MDL_CATALOG, or put catalog.toml in this folder "
                f"or in {user_config_dir() / 'mdl'}"
            )
        return Catalog()
    return load_catalog(path)


def _settings(run: Run, catalog: Any, *, dest: Path | None, **flags: Any) -> Any:
    from mdl.catalog import build_settings, resolve_dest

    s = catalog.settings
    where = catalog.path.parent if catalog.path is not None else None
    return build_settings(
        environ=run.environ,
        dest=resolve_dest(flag=dest, environ=run.environ, catalog_dest=s.dest, catalog_dir=where),
        catalog_endpoint=s.endpoint,
        catalog_connections=s.connections,
        catalog_jobs=s.jobs,
        catalog_limit_rate=s.limit_rate,
        catalog_stall_timeout=s.stall_timeout,
        catalog_lock_timeout=s.lock_timeout,
        catalog_retries=s.retries,
        catalog_layout=s.layout,
        catalog_mirrors=s.mirrors,
        **flags,
    )


def _select(catalog: Any, names: list[str] | None, all_models: bool) -> list[Any]:
    if names and all_models:
        raise UsageError("name models or pass --all, not both")
    models: list[Any] = catalog.select(names or [], all_models=all_models)
    return models


# -- commands -----------------------------------------------------------------------------------------


def _version_callback(value: bool) -> None:
    if value:
        sys.stdout.write(f"mdl {__version__}\n")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", help="Print the version and exit.", callback=_version_callback, is_eager=True),
    ] = False,
) -> None:
    """mdl: pull, verify and pack model files."""


@app.command("list")
def list_cmd(
    status: Annotated[str | None, typer.Option("--status", help="installed | partial | missing")] = None,
    tag: Annotated[str | None, typer.Option("--tag", help="Only models with this tag.")] = None,
    dest: DestOpt = None,
    layout: LayoutOpt = None,
    catalog: CatalogOpt = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
    no_progress: NoProgressOpt = False,
    log_file: LogFileOpt = None,
) -> None:
    """The catalog with each model's local status (offline)."""
    run = Run(json=json_out, quiet=quiet, verbose=verbose, no_progress=no_progress, log_file=log_file)
    with guarded(run):
        from mdl.store import Layout, list_models

        if status is not None and status not in ("installed", "partial", "missing"):
            raise UsageError(f"--status: expected installed, partial or missing, got {status!r}")
        cat = _load_catalog(run, catalog)
        settings = _settings(run, cat, dest=dest, layout=layout)
        models = list_models(cat, Layout(settings), status=status, tag=tag)
        if run.json:
            run.emit({"models": [m.list_json() for m in models], "dest": str(settings.dest)})
            return
        from mdl.units import human_size

        rows = [{**m.list_json(), "size": human_size(m.size) if m.size is not None else "-"} for m in models]
        run.table(
            rows,
            [
                ("name", "NAME"),
                ("status", "STATUS"),
                ("files", "FILES"),
                ("size", "SIZE"),
                ("description", "DESCRIPTION"),
            ],
        )


@app.command("show")
def show_cmd(
    name: Annotated[str, typer.Argument(help="Model name.")],
    dest: DestOpt = None,
    layout: LayoutOpt = None,
    catalog: CatalogOpt = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
    no_progress: NoProgressOpt = False,
    log_file: LogFileOpt = None,
) -> None:
    """One model: its files, sources, sizes, hashes and local state (offline)."""
    run = Run(json=json_out, quiet=quiet, verbose=verbose, no_progress=no_progress, log_file=log_file)
    with guarded(run):
        from mdl.store import Layout, model_status

        cat = _load_catalog(run, catalog)
        settings = _settings(run, cat, dest=dest, layout=layout)
        status = model_status(cat.get(name), Layout(settings))
        doc = status.show_json()
        if run.json:
            run.emit({"models": [doc]})
            return
        if run.quiet:
            return
        out = run.stdout
        for key in ("name", "description", "repo", "revision", "commit", "status"):
            if doc.get(key):
                out.write(f"{key + ':':13}{doc[key]}\n")
        out.write(f"{'dest:':13}{Path(settings.dest) / name}\n")
        if not doc["files"]:
            out.write("files:       (not pulled yet: run `mdl resolve " + name + "` to list them)\n")
            return
        out.write("\n")
        from mdl.units import human_size

        rows = [{**f, "size": human_size(f["size"]), "sha256": (f["sha256"] or "-")[:16]} for f in doc["files"]]
        run.table(
            rows,
            [("path", "PATH"), ("state", "STATE"), ("size", "SIZE"), ("sha256", "SHA256"), ("url", "SOURCE")],
        )


@app.command("resolve")
def resolve_cmd(
    names: NamesArg = None,
    all_models: AllOpt = False,
    follow: Annotated[bool, typer.Option("--follow", help="Show the CDN URL the Hub redirects to.")] = False,
    dest: DestOpt = None,
    layout: LayoutOpt = None,
    catalog: CatalogOpt = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
    no_progress: NoProgressOpt = False,
    log_file: LogFileOpt = None,
) -> None:
    """The concrete files and direct URLs, sizes, sha256 and commit of models (network)."""
    run = Run(json=json_out, quiet=quiet, verbose=verbose, no_progress=no_progress, log_file=log_file)
    with guarded(run):
        from mdl.download import resolve_models
        from mdl.errors import worst_exit_code

        cat = _load_catalog(run, catalog)
        settings = _settings(run, cat, dest=dest, layout=layout)
        with run.reporter() as progress:
            docs, failures = resolve_models(_select(cat, names, all_models), settings, follow=follow, progress=progress)
        code = worst_exit_code([f.exit_code for f in failures])
        if run.json:
            doc: dict[str, Any] = {"models": docs}
            if failures:
                doc["ok"] = False
                doc["errors"] = [f.to_json() for f in failures]
            run.emit(doc)
        else:
            from mdl.units import human_size

            for model in docs if not run.quiet else ():
                run.stdout.write(
                    f"{model['name']}  revision={model['revision'] or '-'}  commit={model['commit'] or '-'}\n"
                )
                rows = [{**f, "size": human_size(f["size"]), "sha256": f["sha256"] or "-"} for f in model["files"]]
                run.table(rows, [("path", "PATH"), ("size", "SIZE"), ("sha256", "SHA256"), ("url", "URL")])
        for failure in failures:
            run.console.error(failure.error or "failed")
        if code:
            raise typer.Exit(code)


@app.command("pull")
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

        cat = _load_catalog(run, catalog)
        settings = _settings(
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
        models = _select(cat, names, all_models)
        started = time.monotonic()
        with run.reporter() as progress:
            report = pull_models(models, settings, progress=progress)
        _render_report(run, report, verb="pulled", seconds=time.monotonic() - started)


def _render_report(run: Run, report: Any, *, verb: str, seconds: float) -> None:
    from mdl.units import human_duration, human_size

    if run.json:
        run.emit(report.to_json())
    elif report.dry_run:
        rows = [{**f.to_json(), "size": human_size(f.size)} for f in report.files]
        run.table(
            rows,
            [("action", "ACTION"), ("model", "MODEL"), ("path", "PATH"), ("size", "SIZE"), ("reason", "WHY")],
        )
    elif verb == "verified":
        rows = [f.to_json() for f in report.files if f.action != "failed"]
        if rows:
            run.table(rows, [("action", "RESULT"), ("model", "MODEL"), ("path", "PATH"), ("sha256", "SHA256")])
    for f in report.files:
        if f.action == "failed":
            run.console.error(f.error or f"{f.model}/{f.path}: failed")
    if not report.dry_run:
        counts: dict[str, int] = {}
        for f in report.files:
            counts[f.action] = counts.get(f.action, 0) + 1
        fetched = sum(f.fetched for f in report.files)
        parts = [f"{n} {action}" for action, n in sorted(counts.items())]
        summary = f"{verb} {len(report.files)} file(s): {', '.join(parts) or 'nothing to do'}"
        if fetched:
            summary += f"; {human_size(fetched)} in {human_duration(seconds)}"
        log.info("%s", summary)
        run.console.info(summary)
    if report.exit_code:
        raise typer.Exit(report.exit_code)


@app.command("verify")
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

        cat = _load_catalog(run, catalog)
        settings = _settings(run, cat, dest=dest, layout=layout)
        started = time.monotonic()
        with run.reporter() as progress:
            report = verify_models(_select(cat, names, all_models), settings, progress=progress)
        _render_report(run, report, verb="verified", seconds=time.monotonic() - started)


@app.command("clean")
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

        cat = _load_catalog(run, catalog, required=False)
        settings = _settings(run, cat, dest=dest, layout=layout, dry_run=dry_run)
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


@app.command("get")
def get_cmd(
    sources: Annotated[
        list[str],
        typer.Argument(
            help="https:// URLs, hf://[datasets/|spaces/]owner/name[@rev]/path, or job-output JSON ('-' = stdin)."
        ),
    ],
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Save the (single) file here.")] = None,
    directory: Annotated[
        Path | None, typer.Option("-d", "--dir", help="Save files into this folder (default: current).")
    ] = None,
    sha256: Annotated[str | None, typer.Option("--sha256", help="Expected sha256 of the (single) file.")] = None,
    connections: Annotated[
        int | None, typer.Option("--connections", help="Parallel ranges per big file (1-64, default 8).")
    ] = None,
    limit_rate: Annotated[str | None, typer.Option("--limit-rate", help="Cap total throughput, e.g. 50M.")] = None,
    catalog: CatalogOpt = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
    no_progress: NoProgressOpt = False,
    log_file: LogFileOpt = None,
) -> None:
    """Fetch one-off sources: URLs, hf:// files, serverless job outputs (base64 or presigned URLs)."""
    run = Run(json=json_out, quiet=quiet, verbose=verbose, no_progress=no_progress, log_file=log_file)
    with guarded(run):
        from mdl.download import get_sources

        if output is not None and directory is not None:
            raise UsageError("use -o FILE or -d DIR, not both")
        if output is not None and str(output) == "-":
            raise UsageError("-o -: mdl get writes files, not stdout; use curl for that")
        if sources.count("-") > 1:
            raise UsageError("'-' (stdin) can be given only once")
        cat = _load_catalog(run, catalog, required=False)
        folder = (directory or Path.cwd()).absolute()
        settings = _settings(run, cat, dest=folder, connections=connections, limit_rate=limit_rate)
        started = time.monotonic()
        with run.reporter() as progress:
            report = get_sources(
                sources,
                settings,
                output=output.absolute() if output is not None else None,
                directory=folder,
                sha256=sha256,
                progress=progress,
                read_text=_read_source,
            )
        _render_report(run, report, verb="fetched", seconds=time.monotonic() - started)


def _read_source(source: str) -> str:
    if source == "-":
        return sys.stdin.read()
    try:
        return Path(source).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"{source}: no such file (expected a URL, an hf:// URI or a job-output JSON file)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{source}: cannot read it: {exc}") from None


@app.command("pack")
def pack_cmd(
    run_dir: Annotated[Path, typer.Argument(help="The training run folder.")],
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Archive path ('-' = stdout).")] = None,
    checkpoint: Annotated[
        str | None, typer.Option("--checkpoint", help="NAME, latest, best or step:N (default: the run's own files).")
    ] = None,
    profile: Annotated[str, typer.Option("--profile", help="deploy (no training state) or full.")] = "deploy",
    with_logs: Annotated[bool, typer.Option("--with-logs", help="Add the run's logs under logs/.")] = False,
    include: Annotated[
        list[str] | None, typer.Option("--include", help="Only files matching GLOB (repeatable).")
    ] = None,
    exclude: Annotated[
        list[str] | None, typer.Option("--exclude", help="Leave out files matching GLOB (repeatable).")
    ] = None,
    compress: Annotated[
        str, typer.Option("--compress", help="auto (store weights, deflate text), none or deflate.")
    ] = "auto",
    dry_run: DryRunOpt = False,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
    no_progress: NoProgressOpt = False,
    log_file: LogFileOpt = None,
) -> None:
    """Zip a trained model or one checkpoint for deployment: the right files, safely, deterministically."""
    run = Run(json=json_out, quiet=quiet, verbose=verbose, no_progress=no_progress, log_file=log_file)
    with guarded(run):
        from mdl.archive import PackOptions, pack_run

        if profile not in ("deploy", "full"):
            raise UsageError(f"--profile: expected deploy or full, got {profile!r}")
        if compress not in ("auto", "none", "deflate"):
            raise UsageError(f"--compress: expected auto, none or deflate, got {compress!r}")
        to_stdout = output is not None and str(output) == "-"
        if to_stdout and json_out:
            raise UsageError("-o - writes the archive to stdout; it cannot be combined with --json")
        epoch = run.environ.get("SOURCE_DATE_EPOCH")
        try:
            source_date_epoch = int(epoch) if epoch else None
        except ValueError:
            raise UsageError(f"SOURCE_DATE_EPOCH: expected a whole number of seconds, got {epoch!r}") from None
        options = PackOptions(
            run_dir=run_dir,
            output=output,
            checkpoint=checkpoint,
            profile=profile,
            with_logs=with_logs,
            includes=tuple(include or ()),
            excludes=tuple(exclude or ()),
            compress=compress,
            dry_run=dry_run,
            source_date_epoch=source_date_epoch,
            cwd=Path.cwd(),
        )
        with run.reporter() as progress:
            result = pack_run(options, progress=progress, stdout=sys.stdout.buffer if to_stdout else None)
        doc = result.to_json()
        if run.json:
            run.emit(doc)
            return
        from mdl.units import human_size

        if not to_stdout:
            rows = [{**f, "size": human_size(f["size"])} for f in doc["files"]]
            run.table(rows, [("path", "PATH"), ("role", "ROLE"), ("size", "SIZE")])
        for skipped in doc.get("skipped") or ():
            run.console.info(f"skipped {skipped.get('checkpoint')}: {skipped.get('reason')}")
        chosen = f"checkpoint {doc['checkpoint']} ({doc['reason']})" if doc.get("checkpoint") else doc.get("reason", "")
        verb = "would write" if dry_run else "wrote"
        run.console.info(
            f"{verb} {doc['archive']} ({human_size(doc.get('size'))}, {len(doc['files'])} files); {chosen}"
        )


@app.command("unpack")
def unpack_cmd(
    archive: Annotated[Path, typer.Argument(help="The zip archive.")],
    directory: Annotated[
        Path | None, typer.Option("-d", "--dir", help="Extract into this folder (default: current).")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace what the archive's top-level entries name.")] = False,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
    no_progress: NoProgressOpt = False,
    log_file: LogFileOpt = None,
) -> None:
    """Extract an archive safely (hostile names refused before a byte is written) and verify its manifest."""
    run = Run(json=json_out, quiet=quiet, verbose=verbose, no_progress=no_progress, log_file=log_file)
    with guarded(run):
        from mdl.archive import unpack_archive

        with run.reporter() as progress:
            result = unpack_archive(archive, dest=directory, force=force, progress=progress, cwd=Path.cwd())
        doc = result.to_json()
        if run.json:
            run.emit(doc)
            return
        for f in doc["files"] if not run.quiet else ():
            run.stdout.write(f"{f['path']}\n")
        run.console.info(f"extracted {len(doc['files'])} files into {doc['dest']}")
