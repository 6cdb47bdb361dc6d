"""One command's run: its streams, environment, logging, console and display, and the skeleton every
command runs in (:func:`guarded`, :func:`invoke`): what ends it goes through the one translator
(mdl.cli.translate)."""

from __future__ import annotations

import contextlib
import logging
import mmap
import os
import re
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TextIO, TypeVar, cast, get_args

from mdl.cli.render.console import (
    Console,
    EventStream,
    color_enabled,
    isatty,
    no_color,
    render_table,
    run_summary,
    stderr_sink,
    table_width,
    unstamped,
)
from mdl.cli.stdout import (
    EXIT_STDOUT_CLOSED,
    StdoutWatch,
    emit_document,
    refuse_closed_stdout,
    silence_stdout,
    stdout_closed,
    unread_if_failing,
)
from mdl.cli.translate import error_document, reserve_memory, translate
from mdl.errors import CatalogWarning, ExitCode, MdlError
from mdl.progress import Progress
from mdl.redact import Secrets, shown_data
from mdl.setting import SETTING, SETTINGS
from mdl.version import __version__

if TYPE_CHECKING:
    from mdl.cli.render.progress import Reporter
    from mdl.report import FileOutcome

log = logging.getLogger("mdl.cli")
T = TypeVar("T")
# an environment variable whose name says credential: its value is hidden, used by mdl or not;
# one that names a file (HF_TOKEN_PATH, AWS_SHARED_CREDENTIALS_FILE) is shown: an error names it
_CREDENTIAL = re.compile(
    "^(?!.*_(?:PATH|FILE|DIR)$).*(?:TOKEN|SECRET|PASSWORD|API_?KEY|CREDENTIAL)"
)


class Exit(Exception):
    """A command's end with its exit code (:func:`guarded`'s; the Typer command turns it into
    Typer's, mdl.cli.plain returns it)."""

    def __init__(self, exit_code: int = 0) -> None:
        super().__init__(exit_code)
        self.exit_code = exit_code


class Run:
    """One command's I/O: streams, environment, output mode, and the console (built once, passed
    around).
    """

    def __init__(
        self,
        *,
        json: bool = False,
        quiet: bool = False,
        verbose: bool = False,
        no_progress: bool = False,
        log_file: Path | None = None,
        progress: str | None = None,
        environ: dict[str, str] | None = None,
        command: str = "",
        headers: Sequence[str] = (),
        logged: bool = True,
    ) -> None:
        self.json = json
        self.quiet = quiet
        self.verbose = verbose
        self.no_progress = no_progress
        self.log_file = log_file
        self.progress = progress
        self.environ = dict(os.environ) if environ is None else environ
        self.command = command  # its name (``pull``): what an interruption says was kept
        # its -H lines as Click parsed them: what the logged command line masks
        self.headers = headers
        # False: no log file but one --log-file names (a readiness probe: not a line per call,
        # and a read-only container)
        self.logged = logged
        # what the parts said as warnings (the catalog's: said_as_warnings), for the JSON document
        self.warnings: list[str] = []
        self.reserve: mmap.mmap | None = None  # room to say memory ran out (guarded)
        self.watch = StdoutWatch()  # on stdout's reader (guarded)
        self._start()

    def _start(self) -> None:
        from mdl.catalog.settings import default_log_file
        from mdl.cli.render.log import setup_logging

        self.started = time.monotonic()
        # --progress json: stderr is one event stream, shared by the progress display and the
        # console; else off a terminal each line says when and which run (stderr_sink)
        json_events = (self.progress or "").lower() == "json"
        self.stdout, self.stderr = sys.stdout, stderr_sink(sys.stderr, events=json_events)
        # The run's secrets: what it learns (tokens, headers, signed URLs) is told here, sinks hide
        # it. Never printed either: anything like a credential in the environment, used by mdl or
        # not (a server may echo one a wrapper script sent, and catalog headers expand ``${VAR}``
        # from it).
        self.secrets = Secrets(v for k, v in self.environ.items() if _CREDENTIAL.search(k.upper()))
        self.events = EventStream(self.stderr, secrets=self.secrets) if json_events else None
        self.console = self.events or Console(
            self.stderr, environ=self.environ, quiet=self.quiet, secrets=self.secrets
        )
        # the run's counts for the ``end`` event (cli.summary)
        self.summary: dict[str, Any] | None = None
        chosen = self.chosen_log_file()
        target = chosen or (default_log_file() if self.logged else None)
        if (
            setup_logging(log_file=target, verbose=self.verbose, secrets=self.secrets) is None
            and chosen
        ):
            self.console.warn(f"cannot write the log file {chosen}; going on without it")

    def chosen_log_file(self) -> Path | None:
        """The log file the user named: --log-file, else (a command that logs) $MDL_LOG_FILE."""
        named = self.environ.get(SETTING["log_file"].env) if self.logged else None
        return self.log_file or (Path(named) if named else None)

    def reporter(self) -> Reporter | Silent:
        mode = choose_progress_mode(
            quiet=self.quiet,
            no_progress=self.no_progress,
            stderr_isatty=isatty(self.stderr),
            environ=self.environ,
            requested=self.progress,
        )
        return make_reporter(
            mode,
            quiet=self.quiet,
            stream=self.stderr,
            environ=self.environ,
            secrets=self.secrets,
            events=self.events,
        )

    def emit(self, doc: Mapping[str, Any]) -> None:
        """The one JSON document on stdout, ``ok`` first; an absent value is ``null``, never
        ``""``; the run's own warnings (``warnings``) added to its ``warnings``.
        """
        if self.warnings:
            doc = {**doc, "warnings": [*doc.get("warnings", ()), *self.warnings]}
        emit_document({"ok": True, **doc}, stream=self.stdout, secrets=self.secrets)

    def line(self, *texts: str) -> None:
        """Each text a line of data on stdout (a path, names, hashes: never rewritten by the
        secrets, control characters escaped, a URL without its credentials). Flushed: in a log that
        takes stdout and stderr (``>>log 2>&1``) the lines stand where they were said, not after the
        summary."""
        self.stdout.writelines(shown_data(text) + "\n" for text in texts)
        self.stdout.flush()

    def table(self, rows: list[dict[str, Any]], columns: list[tuple[str, str]]) -> None:
        """Data as an aligned table on stdout (-q too: it silences stderr, never the data)."""
        color = color_enabled(isatty=isatty(self.stdout), environ=self.environ)
        render_table(
            rows,
            columns,
            stream=self.stdout,
            color=color,
            width=table_width(self.stdout, self.environ),
        )
        self.stdout.flush()

    def tell(self, error: MdlError) -> int:
        """What ended the command, said once: in the log, the ``--json`` document and on stderr;
        its exit code.
        """
        code = int(error.exit_code)
        log.error("%s", error.message)  # (the log redacts it, as every sink)
        if self.json:
            error_document(error, self.stdout, secrets=self.secrets, warnings=self.warnings)
        self.console.error(error.message, hint=error.hint, code=code, kind=error.kind)
        return code

    def file_error(self, outcome: FileOutcome) -> None:
        """A failed file or model, said once (as an ``error`` event unless the progress display
        said it); ranges a loader read before its hash refused them (``serve --pull``) are news
        the display never said: their event names them, ``released_wrong`` as in ``--json``."""
        message, model = outcome.error or f"{outcome.label}: failed", outcome.model or None
        wrong = outcome.to_json().get("released_wrong")
        if self.events is None or wrong or (model, outcome.path) not in self.events.errors:
            extra = {"released_wrong": wrong} if wrong else {}
            self.console.error(
                message,
                hint=outcome.hint,
                model=model,
                path=outcome.path,
                label=outcome.label,
                **extra,
            )


ProgressMode = Literal["rich", "plain", "json", "none"]
ProgressChoice = Literal["auto", "rich", "plain", "json", "none"]  # --progress (mdl.cli.options)


def choose_progress_mode(
    *,
    quiet: bool,
    no_progress: bool,
    stderr_isatty: bool,
    environ: Mapping[str, str],
    requested: str | None = None,
) -> ProgressMode:
    """The display for ``--progress``: json even with -q or --no-progress (they silence people's
    output, not a program's), else they mean none; auto is rich on a terminal, plain lines off it or
    with TERM=dumb."""
    choice = (requested or "auto").lower()
    if choice not in get_args(ProgressChoice):
        # the option's choices keep users out of here
        raise ValueError(f"unknown progress mode {requested!r}")
    if (quiet or no_progress) and choice != "json":
        return "none"
    if choice == "auto":
        return "plain" if not stderr_isatty or environ.get("TERM") == "dumb" else "rich"
    return cast(ProgressMode, choice)


def make_reporter(
    mode: ProgressMode,
    *,
    quiet: bool = False,
    stream: TextIO,
    environ: Mapping[str, str],
    clock: Callable[[], float] = time.monotonic,
    wallclock: Callable[[], datetime] | None = None,
    interval: float = 5.0,
    secrets: Secrets | None = None,
    events: EventStream | None = None,
) -> Reporter | Silent:
    """The display for ``mode`` on ``stream`` (a context manager); ``json`` writes through
    ``events``, the run's own; ``none`` says the run's waits unless ``quiet``.
    """
    if mode == "none" and quiet:
        return Silent()
    from mdl.cli.render.progress import JsonReporter, PlainReporter, RunWaits

    if mode == "rich":  # (it draws on the terminal: never through the stamps of lines off one)
        from mdl.cli.render.bars import RichReporter  # (with rich: the display is made now)

        return RichReporter(
            stream=unstamped(stream), no_color=no_color(environ), clock=clock, secrets=secrets
        )
    if mode == "plain" or (mode == "none" and not quiet):
        plain = PlainReporter if mode == "plain" else RunWaits
        return plain(
            stream=stream, wallclock=wallclock, interval=interval, clock=clock, secrets=secrets
        )
    return JsonReporter(
        events or EventStream(stream, secrets=secrets, wallclock=wallclock), clock=clock
    )


class Silent(Progress, contextlib.AbstractContextManager["Silent"]):
    """``-q`` (no display, no waits said): each event is dropped where it is made, so nothing is
    counted and no event takes a lock (workers emit one per chunk); no display's module is loaded
    for it."""

    def close(self) -> None:
        """Nothing to stop."""

    def __exit__(self, *_: object) -> None:
        self.close()


def logged_argv(argv: Sequence[str], *, headers: Sequence[str] = ()) -> list[str]:
    """The command line as the log keeps it: each value Click parsed as a header (``headers``)
    masked where it ends an argument, however it was spelled (``-H V``, ``-HV``, ``-qH V``,
    ``-qvHV``, ``--header=V``), when it is a credential (``X-Api-Key: ***``, whatever its length) or
    no ``Name: value`` line at all (``***``); URLs are redacted at the sink. Masked from what was
    parsed, never by reading the spellings again: the parser decides what is a header."""
    # here: `mdl --help` loads nothing below the CLI (test_startup)
    from mdl.catalog.headers import is_secret_header

    masks: dict[str, str] = {}
    for line in headers:
        name, colon, _ = line.partition(":")
        if line and (not colon or is_secret_header(name.strip())):
            masks[line] = f"{name}: ***" if colon else "***"
    longest = sorted(masks, key=len, reverse=True)
    shown: list[str] = []
    for arg in argv:
        ending = next((line for line in longest if arg.endswith(line)), None)
        shown.append(arg if ending is None else arg[: len(arg) - len(ending)] + masks[ending])
    return shown


@contextlib.contextmanager
def guarded(run: Run, *, output_only: bool = False) -> Iterator[None]:
    """Every way a command ends becomes :class:`Exit` with its code (:func:`translate`), the
    events' ``end`` last.
    """
    log.info("mdl %s: %s", __version__, " ".join(logged_argv(sys.argv[1:], headers=run.headers)))
    run.reserve = reserve_memory()
    code = 1  # what an exception that gets past the translator (MDL_DEBUG) ends with
    try:
        try:
            check_process_settings(run.environ)
            if output_only:
                refuse_closed_stdout(run.command or "mdl")
            with (
                said_as_warnings(run),
                run.watch.stop_when_closed() if output_only else contextlib.nullcontext(),
            ):
                yield
            run.stdout.flush()  # a closed pipe is found here, not at interpreter shutdown
            code = 0
        except Exit as exc:
            code = int(exc.exit_code or 0)
            # the work stopped for the reader that left, as for a Ctrl-C: 141
            if code == 130 and run.watch.fired:
                log.info("stdout was closed by its reader; exit %d", EXIT_STDOUT_CLOSED)
                code = EXIT_STDOUT_CLOSED
                raise Exit(code) from None
            if code:  # a failure's own code says more than 141 ("no one read the output")
                with unread_if_failing(failing=True):
                    run.stdout.flush()
            raise
        except (Exception, KeyboardInterrupt) as exc:  # noqa: BLE001 - translated (a bug: logged, exit 1)
            code = translate(exc, run)
            raise Exit(code) from None
    finally:
        seconds = time.monotonic() - run.started
        # the last event: the run's counts and seconds (cli.summary's, the summary line's own;
        # else none, and the command's)
        if run.events is not None:
            summary = run.summary or run_summary((), seconds=seconds, text=None)
            run.events.end(exit_code=code, summary=summary)
        log.info("done in %.1fs", seconds)


def ran(
    run: Run,
    body: Callable[..., int | None],
    options: Mapping[str, Any],
    *,
    output_only: bool = False,
) -> int:
    """The exit code of command ``body`` given ``run`` and its ``options``, run under
    :func:`guarded`."""
    try:
        with guarded(run, output_only=output_only):
            code = body(run, **options)
            if code:
                raise Exit(code)
    except Exit as exc:
        return int(exc.exit_code)
    return 0


@contextlib.contextmanager
def said_as_warnings(run: Run) -> Iterator[None]:
    """What the parts say through the :mod:`warnings` module (a catalog read but not whole: a
    ``[settings]`` key this build does not know) said as every warning is, each once a run: a
    ``mdl: warning:`` line (an event with ``--progress json``), a log line and one of the ``--json``
    document's ``warnings``. A library's own (huggingface_hub's FutureWarning when the user's
    environment has ``HF_HUB_ENABLE_HF_TRANSFER``, which mdl does not read) goes to the log only:
    raw on stderr it would break ``--progress json``'s one document a line, and it speaks of
    settings that are not mdl's."""

    def show(
        message: Warning | str,
        category: type[Warning],
        filename: str,
        lineno: int,
        file: TextIO | None = None,
        line: str | None = None,
    ) -> None:
        if not issubclass(category, CatalogWarning):
            log.info("%s (%s, %s:%d)", message, category.__name__, filename, lineno)
            return
        if str(message) in run.warnings:  # said already (the catalog read twice, two ways)
            return
        log.warning("%s", message)
        run.console.warn(str(message))
        run.warnings.append(str(message))

    with warnings.catch_warnings():
        warnings.simplefilter("default", CatalogWarning)  # once a run: a catalog read twice
        warnings.showwarning = show
        yield


def check_process_settings(environ: Mapping[str, str]) -> None:
    """The process's own switches (mdl.setting, ``run=False``) by the one boolean rule: a wrong
    value is exit 2 naming it when a command starts, not a surprise when an internal error comes."""
    from mdl.catalog.settings import (
        switch_from_env,  # here: `mdl --help` loads nothing below the CLI
    )

    for setting in SETTINGS:
        if not setting.run and setting.kind == "switch":
            switch_from_env(setting, environ)


def invoke(app: Any) -> int:
    """Run the Typer app, what ends it outside a command translated too; a reader of stdout that
    left: 141.
    """
    try:
        # "mdl" under python -m too: _MDL_COMPLETE
        result = app(standalone_mode=False, prog_name="mdl")
        code = result if isinstance(result, int) else 0
    except SystemExit as exc:
        # Click ends output it writes itself (--help, --version) that meets a closed pipe with exit
        # 1.
        if exc.code != 1 or not stdout_closed():
            raise
        code = EXIT_STDOUT_CLOSED
    except (Exception, KeyboardInterrupt) as exc:  # noqa: BLE001 - translated (a bug: logged, exit 1)
        code = translate(exc)
    return ended(code)


def ended(code: int) -> int:
    """The exit code of a run that ended with ``code``: 141 when stdout's reader left, stdout
    flushed (silenced when no one reads it)."""
    if code == ExitCode.INTERRUPTED and stdout_closed():
        # The watch's stop (a KeyboardInterrupt) that reached Typer past the command's own guard (a
        # busy machine runs its handler late), which Typer turns into 130 unsaid: the reader left,
        # as for cat, 141.
        code = EXIT_STDOUT_CLOSED
    if code == EXIT_STDOUT_CLOSED:
        silence_stdout()
        return code
    try:
        # a failing command's data no one reads, or stdout cannot take: dropped, its code says more
        with unread_if_failing(failing=code != 0):
            sys.stdout.flush()
    except OSError as exc:  # the data of a command that did its work is lost (`--version >F`)
        closed = stdout_closed()  # (asked before the silencing puts /dev/null there)
        silence_stdout()
        return EXIT_STDOUT_CLOSED if closed else translate(exc)
    return code
