"""One command's run: streams, environment, logging and console; the one error translator; report rendering."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import typer

from mdl.cli import pipes
from mdl.cli.render.console import Console, color_enabled, emit_json, isatty, render_table, table_width
from mdl.cli.render.stream import EventStream, failed_to_start, run_summary, wants_events
from mdl.errors import InterruptedByUserError, MdlError, UsageError
from mdl.redact import safe_text
from mdl.units import human_size
from mdl.version import __version__

if TYPE_CHECKING:
    from mdl.cli.render.tally import Reporter
    from mdl.report import FileOutcome

log = logging.getLogger("mdl.cli")
T = TypeVar("T")


@dataclass
class Run:
    """One command's I/O: streams, environment, output mode, and the console (built once, passed around)."""

    json: bool = False
    quiet: bool = False
    verbose: bool = False
    no_progress: bool = False
    log_file: Path | None = None
    # --progress: auto (rich on a terminal, plain lines off it), rich, plain, json (events for programs), none
    progress: str | None = None
    environ: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    secrets: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        from mdl.catalog import default_log_file
        from mdl.cli.render.log import setup_logging

        self.started = time.monotonic()
        self.stdout, self.stderr = sys.stdout, sys.stderr
        # Never printed: the Hub token and anything like a credential in the environment (catalog headers expand
        # ``${VAR}`` from there).
        suspicious = ("TOKEN", "SECRET", "PASSWORD", "API_KEY", "APIKEY", "CREDENTIAL")
        found = [v for k, v in self.environ.items() if any(s in k.upper() for s in suspicious) and len(v) >= 6]
        self.secrets = (*found, *self.secrets)
        # --progress json: stderr is one event stream, shared by the progress display and the console
        json_events = (self.progress or "").lower() == "json"
        self.events = EventStream(self.stderr, secrets=self.secrets) if json_events else None
        self.console = Console(
            self.stderr, environ=self.environ, quiet=self.quiet, secrets=self.secrets, events=self.events
        )
        self.summary: dict[str, Any] | None = None  # the run's counts for the ``end`` event (render_report)
        chosen = self.log_file or (Path(self.environ["MDL_LOG_FILE"]) if self.environ.get("MDL_LOG_FILE") else None)
        target = chosen or default_log_file()
        if setup_logging(log_file=target, verbose=self.verbose, secrets=self.secrets) is None and chosen:
            self.console.warn(f"cannot write the log file {chosen}; going on without it")

    def reporter(self) -> Reporter:
        from mdl.cli.render.progress import choose_progress_mode, make_reporter

        mode = choose_progress_mode(
            quiet=self.quiet,
            no_progress=self.no_progress,
            json_output=self.json,
            stderr_isatty=isatty(self.stderr),
            environ=self.environ,
            requested=self.progress,
        )
        return make_reporter(mode, stream=self.stderr, environ=self.environ, secrets=self.secrets, events=self.events)

    def call(self, action: Callable[..., T], /, *args: Any, **options: Any) -> T:
        """``action`` (an api function) with this run's environment and its progress display open."""
        with self.reporter() as progress:
            return action(*args, **options, environ=self.environ, progress=progress)

    def emit(self, doc: Mapping[str, Any], *, ok: bool = True) -> None:
        """The one JSON document on stdout, with ``ok``; an absent value is ``null``, never ``""``."""
        emit_json(_nulled({"ok": ok, **doc}), stream=self.stdout, secrets=self.secrets)

    def line(self, text: str) -> None:
        """One line of data on stdout, made safe (a name may come from a server)."""
        self.stdout.write(safe_text(text, secrets=self.secrets) + "\n")

    def table(self, rows: list[dict[str, Any]], columns: list[tuple[str, str]]) -> None:
        """Data as an aligned table on stdout (-q too: it silences stderr, never the data)."""
        color = color_enabled(isatty=isatty(self.stdout), environ=self.environ)
        width = table_width(self.stdout, self.environ)
        render_table(rows, columns, stream=self.stdout, color=color, width=width)

    def fail(self, exc: MdlError) -> int:
        message = safe_text(exc.message, secrets=self.secrets)
        log.error("%s", message)
        if self.json:
            error_document(exc, self.stdout, secrets=self.secrets)
        self.console.error(exc.message, exc.hint, code=int(exc.exit_code), kind=exc.kind)
        return int(exc.exit_code)

    def file_error(self, outcome: FileOutcome) -> None:
        """A failed file or model, said once (as an ``error`` event unless the progress display said it)."""
        message, model = outcome.error or f"{outcome.label}: failed", outcome.model or None
        if self.events is None or (model, outcome.path) not in self.events.errors:
            self.console.error(message, outcome.hint, model=model, path=outcome.path, label=outcome.label)

    def finish(self, exit_code: int, *, seconds: float) -> None:
        if self.events is None:
            return
        summary = self.summary or run_summary((), seconds=seconds, text=None)
        self.events.end(exit_code=exit_code, summary={**summary, "seconds": round(seconds, 3)})


def _nulled(doc: Any) -> Any:
    if isinstance(doc, str):
        return doc or None
    if isinstance(doc, Mapping):
        return {key: _nulled(value) for key, value in doc.items()}
    if isinstance(doc, list | tuple):
        return [_nulled(value) for value in doc]
    return doc


def error_document(exc: MdlError, stream: Any, *, secrets: tuple[str, ...] = ()) -> None:
    """The ``--json`` document of a run that failed; no one reading it is no reason to hide the error."""
    error = {"code": int(exc.exit_code), "kind": exc.kind, "message": exc.message, "hint": exc.hint}
    with pipes.unread_if_failing(failing=True):  # no one reads the JSON: the error still goes to stderr
        emit_json(_nulled({"ok": False, "error": error}), stream=stream, secrets=secrets)


def translate(exc: BaseException, run: Run | None = None) -> int:
    """The one translator of what ended mdl to its exit code, said on stderr, in ``--json`` and as events."""
    if pipes.is_closed_stdout_error(exc):
        log.info("stdout was closed by its reader; exit %d", pipes.EXIT_STDOUT_CLOSED)
        pipes.silence_stdout()
        return pipes.EXIT_STDOUT_CLOSED
    show, code = getattr(exc, "show", None), getattr(exc, "exit_code", None)
    error: MdlError
    if isinstance(exc, MdlError):
        error = exc
    elif isinstance(exc, KeyboardInterrupt) or type(exc).__name__ == "Abort":  # Click's word for Ctrl-C
        kept = "; partial downloads were kept, run again to resume" if run is not None else ""
        error = InterruptedByUserError(f"interrupted{kept}")
    elif callable(show) and isinstance(code, int):  # Click's parse errors: its usage text, and its exit code
        formatter = getattr(exc, "format_message", None)
        context = getattr(getattr(exc, "ctx", None), "command_path", None) or "mdl"
        error = UsageError(formatter() if callable(formatter) else str(exc), hint=f"see {context} --help")
    else:
        log.error("internal error", exc_info=exc)
        if (run.environ if run else os.environ).get("MDL_DEBUG", "") not in ("", "0"):
            raise exc
        error = MdlError(f"internal error: {type(exc).__name__}: {exc}", hint="run with MDL_DEBUG=1 for a traceback")
    if run is not None:
        return run.fail(error)
    argv, code = sys.argv[1:], int(error.exit_code)
    if "--json" in argv:
        error_document(error, sys.stdout)
    if wants_events(argv):
        failed_to_start(sys.stderr, message=error.message, exit_code=code, kind=error.kind)
    elif callable(show):
        show()
    else:
        sys.stderr.write(f"mdl: error: {error.message}\n")
    return code


@contextlib.contextmanager
def guarded(run: Run, *, output_only: bool = False) -> Iterator[None]:
    """Every way a command ends becomes ``typer.Exit`` with its code (:func:`translate`), said by ``--progress
    json``'s last event; ``output_only`` commands stop as soon as stdout's reader goes."""
    log.info("mdl %s: %s", __version__, " ".join(sys.argv[1:]))
    code = 1  # what an exception that gets past the translator (MDL_DEBUG) ends with
    try:
        try:
            with pipes.stop_when_stdout_closes() if output_only else contextlib.nullcontext():
                yield
            run.stdout.flush()  # a closed pipe is found here, not at interpreter shutdown
            code = 0
        except typer.Exit as exc:
            code = int(exc.exit_code or 0)
            if code:  # a failure's own code says more than 141 ("no one read the output")
                with pipes.unread_if_failing(failing=True):
                    run.stdout.flush()
            raise
        except (Exception, KeyboardInterrupt) as exc:  # noqa: BLE001 - translated (a bug: logged, exit 1)
            code = translate(exc, run)
            raise typer.Exit(code) from None
    finally:
        seconds = time.monotonic() - run.started
        run.finish(code, seconds=seconds)
        log.info("done in %.1fs", seconds)


def invoke(app: Any) -> int:
    """Run the Typer app, what ends it outside a command translated too; a reader of stdout that left: 141."""
    try:
        result = app(standalone_mode=False, prog_name="mdl")  # "mdl" under python -m too: _MDL_COMPLETE
        code = result if isinstance(result, int) else 0
    except SystemExit as exc:
        # Click ends output it writes itself (--help, --version) that meets a closed pipe with exit 1.
        if exc.code != 1 or not pipes.stdout_closed():
            raise
        code = pipes.EXIT_STDOUT_CLOSED
    except (Exception, KeyboardInterrupt) as exc:  # noqa: BLE001 - translated (a bug: logged, exit 1)
        code = translate(exc)
    if code == 130 and pipes.Watch.fired:
        code = pipes.EXIT_STDOUT_CLOSED  # the closed stdout's interruption got past the command: same ending
    if code == pipes.EXIT_STDOUT_CLOSED:
        pipes.silence_stdout()
        return code
    with pipes.unread_if_failing(failing=True):  # a reader that left is found at the last flush: silenced
        sys.stdout.flush()
        return code
    return code or pipes.EXIT_STDOUT_CLOSED


def render_report(run: Run, report: Any, *, verb: str, rows_shown: bool = False) -> int:
    """A report: JSON or the data on stdout; each warning and failure once and a summary line on stderr; its code."""
    from mdl.cli.render.summary import fetched_paths, model_folders, says_it_all, summary_line

    with pipes.unread_if_failing(failing=bool(report.exit_code)):
        if run.json:
            run.emit(report.to_json())
        elif report.dry_run:
            rows = [{**f.to_json(), "size": human_size(f.size)} for f in report.files]
            columns = [("action", "ACTION"), ("model", "MODEL"), ("path", "PATH"), ("size", "SIZE"), ("reason", "WHY")]
            run.table(rows, columns)
        elif verb == "verified" and not rows_shown:
            rows = [f.to_json() for f in report.files if not f.failing]
            if rows:
                run.table(rows, [("action", "RESULT"), ("model", "MODEL"), ("path", "PATH"), ("sha256", "SHA256")])
        elif verb in ("pulled", "fetched"):  # `DIR=$(mdl pull tiny)`, `P=$(mdl get URL)`: the data is where
            for where in model_folders(report.files) if verb == "pulled" else fetched_paths(report.files):
                run.line(where)
    # once per model (a kept model's files share its warning), in the order they happened
    for warning in dict.fromkeys(w for f in report.files for w in f.warnings):
        run.console.warn(warning)
    for f in report.files:
        if f.failing:  # the one place a failure is shown: progress displays stay silent
            run.file_error(f)
    seconds = time.monotonic() - run.started
    summary = None if report.dry_run else summary_line(report.files, verb=verb, seconds=seconds)
    run.summary = run_summary(report.files, seconds=seconds, text=summary)
    if summary is not None:
        log.info("%s", summary)
        if not says_it_all(report.files) and run.events is None:  # the ``end`` event carries it as its text
            run.console.info(summary)
    return int(report.exit_code)
