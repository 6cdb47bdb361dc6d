"""One command's run: streams, environment, logging and console; the one error translator; report rendering.
A closed stdout (``mdl list | head -1``) ends a command quietly with exit 141, as ``cat``, but a failing one's code."""

from __future__ import annotations

import contextlib
import errno
import logging
import mmap
import os
import select
import signal
import stat
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TextIO, TypeVar, cast, get_args

import typer

from mdl.cli.render.console import (
    Console,
    EventStream,
    emit_json,
    isatty,
    no_color,
    print_table,
    run_summary,
    stderr_sink,
    unstamped,
)
from mdl.errors import CatalogError, InterruptedByUserError, MdlError, OutOfMemoryError, UsageError
from mdl.redact import Secrets, safe_text, shown_data
from mdl.units import human_duration, human_size
from mdl.version import __version__

if TYPE_CHECKING:
    from mdl.cli.render.progress import Reporter
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
    progress: str | None = None
    environ: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    command: str = ""  # its name (``pull``): what an interruption says was kept

    def __post_init__(self) -> None:
        from mdl.catalog import default_log_file
        from mdl.cli.render.log import setup_logging

        self.started = time.monotonic()
        # --progress json: stderr is one event stream, shared by the progress display and the console; else off a
        # terminal each line says when and which run (stderr_sink)
        json_events = (self.progress or "").lower() == "json"
        self.stdout, self.stderr = sys.stdout, stderr_sink(sys.stderr, events=json_events)
        self.secrets = Secrets()  # the run's: what it learns (tokens, headers, signed URLs) is told here, sinks hide it
        # Never printed either: anything like a credential in the environment, used by mdl or not (a server may echo
        # one a wrapper script sent, and catalog headers expand ``${VAR}`` from it).
        suspicious = ("TOKEN", "SECRET", "PASSWORD", "API_KEY", "APIKEY", "CREDENTIAL")
        for key, value in self.environ.items():
            if any(word in key.upper() for word in suspicious):
                self.secrets.add(value)
        self.events = EventStream(self.stderr, secrets=self.secrets) if json_events else None
        self.console = self.events or Console(self.stderr, environ=self.environ, quiet=self.quiet, secrets=self.secrets)
        self.summary: dict[str, Any] | None = None  # the run's counts for the ``end`` event (render_report)
        chosen = self.log_file or (Path(self.environ["MDL_LOG_FILE"]) if self.environ.get("MDL_LOG_FILE") else None)
        target = chosen or default_log_file()
        if setup_logging(log_file=target, verbose=self.verbose, secrets=self.secrets) is None and chosen:
            self.console.warn(f"cannot write the log file {chosen}; going on without it")

    def reporter(self) -> Reporter:
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

    def emit(self, doc: Mapping[str, Any]) -> None:
        """The one JSON document on stdout, ``ok`` first; an absent value is ``null``, never ``""``."""
        emit_json(_nulled({"ok": True, **doc}), stream=self.stdout, secrets=self.secrets)

    def line(self, text: str) -> None:
        """One line of data on stdout (a path, names, hashes: never rewritten by the secrets, control characters
        escaped, a URL without its credentials)."""
        self.stdout.write(shown_data(text) + "\n")

    def table(self, rows: list[dict[str, Any]], columns: list[tuple[str, str]]) -> None:
        """Data as an aligned table on stdout (-q too: it silences stderr, never the data)."""
        print_table(rows, columns, stream=self.stdout, environ=self.environ)

    def file_error(self, outcome: FileOutcome) -> None:
        """A failed file or model, said once (as an ``error`` event unless the progress display said it)."""
        message, model = outcome.error or f"{outcome.label}: failed", outcome.model or None
        if self.events is None or (model, outcome.path) not in self.events.errors:
            self.console.error(message, hint=outcome.hint, model=model, path=outcome.path, label=outcome.label)


ProgressMode = Literal["rich", "plain", "json", "none"]
ProgressChoice = Literal["auto", "rich", "plain", "json", "none"]  # --progress (mdl.cli.options)


def choose_progress_mode(
    *,
    quiet: bool,
    no_progress: bool,
    json_output: bool,
    stderr_isatty: bool,
    environ: Mapping[str, str],
    requested: str | None = None,
) -> ProgressMode:
    """The display for ``--progress``: json even with -q or --no-progress (they silence people's output, not a
    program's), else they mean none; auto is rich on a terminal, plain lines off it or with TERM=dumb."""
    del json_output
    choice = (requested or "auto").lower()
    if choice not in get_args(ProgressChoice):
        raise ValueError(f"unknown progress mode {requested!r}")  # the option's choices keep users out of here
    if (quiet or no_progress) and choice != "json":
        return "none"
    if choice == "auto":
        return "plain" if not stderr_isatty or environ.get("TERM") == "dumb" else "rich"
    return cast(ProgressMode, choice)


def make_reporter(
    mode: ProgressMode,
    *,
    stream: TextIO,
    environ: Mapping[str, str],
    clock: Callable[[], float] = time.monotonic,
    wallclock: Callable[[], datetime] | None = None,
    interval: float = 5.0,
    secrets: Secrets | None = None,
    events: EventStream | None = None,
) -> Reporter:
    """The display for ``mode`` on ``stream`` (a context manager); ``json`` writes through ``events``, the run's own."""
    from mdl.cli.render.bars import RichReporter  # (rich itself only when a rich display is made)
    from mdl.cli.render.progress import JsonReporter, PlainReporter, Reporter

    if mode == "rich":  # (it draws on the terminal: never through the stamps of lines off one)
        return RichReporter(stream=unstamped(stream), no_color=no_color(environ), clock=clock, secrets=secrets)
    if mode == "plain":
        stamp = wallclock or (lambda: datetime.now(UTC))
        return PlainReporter(stream=stream, wallclock=stamp, interval=interval, clock=clock, secrets=secrets)
    if mode == "json":
        return JsonReporter(events or EventStream(stream, secrets=secrets, wallclock=wallclock), clock=clock)
    return Reporter()


STDOUT_FD = 1
EXIT_STDOUT_CLOSED = 128 + 13  # 128 + SIGPIPE: what a shell reports for `cat` killed by a closed pipe


class StdoutClosed(KeyboardInterrupt):
    """stdout's reader has gone; raised in the main thread to stop the work (handled like Ctrl-C, then exit 141)."""


def stdout_closed(fd: int = STDOUT_FD) -> bool:
    """Whether ``fd`` is a pipe (or socket) no one reads any more."""
    if not hasattr(select, "poll"):
        return False
    poller = select.poll()
    poller.register(fd, 0)  # no events asked: only POLLERR / POLLHUP / POLLNVAL are reported
    try:
        return any(mask & select.POLLERR for _, mask in poller.poll(0))
    except OSError:
        return False


def is_closed_stdout_error(exc: BaseException) -> bool:
    """Whether ``exc`` (or its cause) is a write that failed because stdout's reader has gone."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, StdoutClosed):
            return True
        if isinstance(current, OSError) and current.errno == errno.EPIPE:
            return stdout_closed()
        current = current.__cause__ or current.__context__
    return False


def silence_stdout() -> None:
    """Point fd 1 at /dev/null, so buffered output flushed at shutdown goes nowhere instead of failing."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
    except OSError:
        return
    try:
        os.dup2(devnull, STDOUT_FD)
    finally:
        os.close(devnull)


@contextlib.contextmanager
def unread_if_failing(*, failing: bool) -> Iterator[None]:
    """Output of a failing command that no one reads is dropped: its own exit code says more than 141."""
    try:
        yield
    except OSError as exc:
        if not failing or not is_closed_stdout_error(exc):
            raise
        silence_stdout()


def _is_pipe(fd: int) -> bool:
    try:
        return stat.S_ISFIFO(os.fstat(fd).st_mode)
    except OSError:
        return False


class Watch:
    """Whether a closed stdout may still interrupt the main thread (once, in the body), and did (reaching Click)."""

    armed = fired = False


WAKE_SIGNAL: int | None = getattr(signal, "SIGURG", None)  # POSIX only; elsewhere nothing is watched


def _on_wake(*_: object) -> None:
    if Watch.armed and stdout_closed():
        Watch.armed, Watch.fired = False, True
        raise StdoutClosed


@contextlib.contextmanager
def stop_when_stdout_closes() -> Iterator[None]:
    """While the body runs, a reader leaving stdout (a pipe) raises :class:`StdoutClosed` (a Ctrl-C: every cleanup runs)
    in the main thread: a watcher thread polls fd 1 and signals it (SIGURG; every failed write sends SIGPIPE)."""
    wake_signal, main_ident = WAKE_SIGNAL, threading.get_ident()
    main = threading.current_thread() is threading.main_thread()
    if not main or wake_signal is None or not hasattr(select, "poll") or not _is_pipe(STDOUT_FD):
        yield
        return
    wake_read, wake_write = os.pipe()
    previous = signal.signal(wake_signal, _on_wake)

    def watch() -> None:
        poller = select.poll()
        poller.register(STDOUT_FD, 0)
        poller.register(wake_read, select.POLLIN)
        while True:
            events = dict(poller.poll())  # (a signal's EINTR is retried by Python: PEP 475)
            if events.get(wake_read):
                return
            if events.get(STDOUT_FD, 0) & select.POLLERR:
                log.info("stdout was closed by its reader; stopping")
                signal.pthread_kill(main_ident, wake_signal)
                return
            if events.get(STDOUT_FD, 0) & (select.POLLHUP | select.POLLNVAL):
                return  # not a reader that left: nothing to stop for

    watcher = threading.Thread(target=watch, name="mdl-stdout-watch", daemon=True)
    Watch.armed = True
    watcher.start()
    try:
        yield
    finally:
        Watch.armed = False  # from here on a late wake-up does nothing; a failed write is the error
        try:
            os.write(wake_write, b"x")
            watcher.join()
        finally:
            signal.signal(wake_signal, previous)
            os.close(wake_read)
            os.close(wake_write)


def failed_to_start(stream: TextIO, *, message: str, exit_code: int, kind: str = "usage") -> None:
    """The whole stream of a run whose command line did not parse: ``begin``, the ``error`` and ``end``."""
    events = EventStream(stream)
    events.error(message, code=exit_code, kind=kind)
    events.end(exit_code=exit_code, summary=run_summary((), seconds=0.0, text=None))


def wants_events(argv: Sequence[str]) -> bool:
    """Whether a command line (not parsed) asks for ``--progress json``."""
    args = list(argv)
    if "--" in args:
        del args[args.index("--") :]  # what follows are arguments, not options
    return "--progress=json" in args or ("--progress", "json") in pairwise(args)


def _nulled(doc: Any) -> Any:
    if isinstance(doc, str):
        return doc or None
    if isinstance(doc, Mapping):
        return {key: _nulled(value) for key, value in doc.items()}
    if isinstance(doc, list | tuple):
        return [_nulled(value) for value in doc]
    return doc


def error_document(exc: MdlError, stream: Any, *, secrets: Secrets | None = None) -> None:
    """The ``--json`` document of a run that failed; no one reading it is no reason to hide the error."""
    error = {"code": int(exc.exit_code), "kind": exc.kind, "message": exc.message, "hint": exc.hint}
    if isinstance(exc, CatalogError):  # each problem of the catalog apart (the message holds them all, on one line)
        error["problems"] = list(exc.problems)
    with unread_if_failing(failing=True):  # no one reads the JSON: the error still goes to stderr
        emit_json(_nulled({"ok": False, "error": error}), stream=stream, secrets=secrets)


class Reserve:
    """Address space held back (mapped, never touched: no memory used) while a command runs, let go when memory runs
    out so that the translator has room to say so (a process at its ``ulimit -v`` cannot even build a message)."""

    block: mmap.mmap | None = None

    @classmethod
    def hold(cls, size: int = 16 << 20) -> None:
        if cls.block is None:
            with contextlib.suppress(OSError, ValueError):
                cls.block = mmap.mmap(-1, size)

    @classmethod
    def release(cls) -> None:
        if cls.block is not None:
            cls.block.close()
            cls.block = None


def _no_thread(exc: BaseException) -> bool:
    """Python's only word for a thread the system refused (no memory for its stack, or too many): a RuntimeError."""
    return isinstance(exc, RuntimeError) and str(exc) == "can't start new thread"


# What a Ctrl-C (or SIGTERM) leaves behind, said after what was interrupted: each command's own (README "Exit codes").
KEPT_ON_INTERRUPT = {
    "pull": "partial downloads were kept, run again to resume",
    "get": "partial downloads were kept, run again to resume",
    "publish": "files already uploaded are kept, run again to send the rest",
    "pack": "the unfinished archive was removed (with -o -, what was written to stdout is incomplete)",
    "unpack": "the destination was left as it was (or, if the final swap had begun, entirely unpacked)",
    "lock": "catalog.lock was not changed",
}


def translate(exc: BaseException, run: Run | None = None) -> int:
    """The one translator of what ended mdl to its exit code, said on stderr, in ``--json`` and as events."""
    if is_closed_stdout_error(exc):
        log.info("stdout was closed by its reader; exit %d", EXIT_STDOUT_CLOSED)
        silence_stdout()
        return EXIT_STDOUT_CLOSED
    show, code = getattr(exc, "show", None), getattr(exc, "exit_code", None)
    error: MdlError
    if isinstance(exc, MdlError):
        error = exc
    elif isinstance(exc, KeyboardInterrupt) or type(exc).__name__ == "Abort":  # Click's word for Ctrl-C
        error = InterruptedByUserError("interrupted")
    elif isinstance(exc, MemoryError) or _no_thread(exc):  # a local resource ran out, as a full disk: exit 7
        Reserve.release()  # room to say so; and the traceback's frames hold what filled memory: let them go too
        chain: list[BaseException] = []
        current: BaseException | None = exc
        while current is not None and current not in chain:
            chain.append(current)
            current.__traceback__, current = None, current.__context__
        error = OutOfMemoryError(
            "out of memory" if isinstance(exc, MemoryError) else "out of memory: cannot start a thread",
            hint="free memory or raise the process's limit, or ask for less at once (fewer models)",
        )
    elif callable(show) and isinstance(code, int):  # Click's parse errors: its usage text, and its exit code
        formatter = getattr(exc, "format_message", None)
        context = getattr(getattr(exc, "ctx", None), "command_path", None) or "mdl"
        error = UsageError(formatter() if callable(formatter) else str(exc), hint=f"see {context} --help")
    else:
        log.error("internal error", exc_info=exc)
        if (run.environ if run else os.environ).get("MDL_DEBUG", "") not in ("", "0"):
            raise exc
        error = MdlError(f"internal error: {type(exc).__name__}: {exc}", hint="run with MDL_DEBUG=1 for a traceback")
    if isinstance(error, InterruptedByUserError) and run is not None and (kept := KEPT_ON_INTERRUPT.get(run.command)):
        error = InterruptedByUserError(f"{error.message}; {kept}", hint=error.hint)
    code = int(error.exit_code)
    if run is not None:
        log.error("%s", safe_text(error.message, secrets=run.secrets))
        if run.json:
            error_document(error, run.stdout, secrets=run.secrets)
        run.console.error(error.message, hint=error.hint, code=code, kind=error.kind)
        return code
    argv = sys.argv[1:]
    if "--json" in argv:
        error_document(error, sys.stdout)
    if wants_events(argv):
        failed_to_start(sys.stderr, message=error.message, exit_code=code, kind=error.kind)
    elif callable(show):
        show(file=stderr_sink(sys.stderr))
    else:
        hint = f"  hint: {safe_text(error.hint)}\n" if error.hint else ""  # the one redaction, as at every sink
        stderr_sink(sys.stderr).write(f"mdl: error: {safe_text(error.message)}\n{hint}")
    return code


def logged_argv(argv: Sequence[str]) -> list[str]:
    """The command line as the log keeps it, written before any option is parsed: a credential header's value
    (``-H 'X-Api-Key: …'``, ``--header=Cookie: …``) is masked, whatever its length (URLs are redacted at the sink)."""
    shown: list[str] = []
    header_next = False
    for arg in argv:
        prefix = "" if header_next else next((p for p in ("--header=", "-H") if arg.startswith(p) and arg != p), None)
        if arg in ("-H", "--header"):
            shown.append(arg)
            header_next = True
            continue
        header_next = False
        if prefix is None:
            shown.append(arg)
            continue
        from mdl.catalog import is_secret_header  # here: `mdl --help` loads nothing below the CLI (test_startup)

        name, colon, value = arg[len(prefix) :].partition(":")
        secret = colon and value.strip() and is_secret_header(name.strip())
        shown.append(f"{prefix}{name}: ***" if secret else arg)
    return shown


@contextlib.contextmanager
def guarded(run: Run, *, output_only: bool = False) -> Iterator[None]:
    """Every way a command ends becomes ``typer.Exit`` with its code (:func:`translate`), the events' ``end`` last."""
    log.info("mdl %s: %s", __version__, " ".join(logged_argv(sys.argv[1:])))
    Reserve.hold()
    code = 1  # what an exception that gets past the translator (MDL_DEBUG) ends with
    try:
        try:
            with stop_when_stdout_closes() if output_only else contextlib.nullcontext():
                yield
            run.stdout.flush()  # a closed pipe is found here, not at interpreter shutdown
            code = 0
        except typer.Exit as exc:
            code = int(exc.exit_code or 0)
            if code:  # a failure's own code says more than 141 ("no one read the output")
                with unread_if_failing(failing=True):
                    run.stdout.flush()
            raise
        except (Exception, KeyboardInterrupt) as exc:  # noqa: BLE001 - translated (a bug: logged, exit 1)
            code = translate(exc, run)
            raise typer.Exit(code) from None
    finally:
        seconds = time.monotonic() - run.started
        if run.events is not None:  # the last event: the run's counts (render_report's, else none) and its seconds
            summary = run.summary or run_summary((), seconds=seconds, text=None)
            run.events.end(exit_code=code, summary={**summary, "seconds": round(seconds, 3)})
        log.info("done in %.1fs", seconds)


def invoke(app: Any) -> int:
    """Run the Typer app, what ends it outside a command translated too; a reader of stdout that left: 141."""
    try:
        result = app(standalone_mode=False, prog_name="mdl")  # "mdl" under python -m too: _MDL_COMPLETE
        code = result if isinstance(result, int) else 0
    except SystemExit as exc:
        # Click ends output it writes itself (--help, --version) that meets a closed pipe with exit 1.
        if exc.code != 1 or not stdout_closed():
            raise
        code = EXIT_STDOUT_CLOSED
    except (Exception, KeyboardInterrupt) as exc:  # noqa: BLE001 - translated (a bug: logged, exit 1)
        code = translate(exc)
    if code == 130 and Watch.fired:
        code = EXIT_STDOUT_CLOSED  # the closed stdout's interruption got past the command: same ending
    if code == EXIT_STDOUT_CLOSED:
        silence_stdout()
        return code
    flushed = False
    with unread_if_failing(failing=True):  # a reader that left is found at the last flush: silenced
        sys.stdout.flush()
        flushed = True
    return code if flushed else (code or EXIT_STDOUT_CLOSED)


def render_report(run: Run, report: Any, *, verb: str, rows_shown: bool = False) -> int:
    """A report: JSON or the data on stdout; each warning and failure once and a summary line on stderr; its code."""
    with unread_if_failing(failing=bool(report.exit_code)):
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
    # the one place a failure is shown (progress displays stay silent); a refusing Hub repo once, not once a file
    from mdl.report import once_per_repo  # (as model_folders: not for --help)

    for f, more in once_per_repo(report.files) if run.events is None else [(f, 0) for f in report.files if f.failing]:
        told = f"{f.error or f.label + ': failed'} (and {_plural(more, 'more file')} of {f.hub_repo})"
        run.file_error(replace(f, error=told) if more else f)
    seconds = time.monotonic() - run.started
    summary = None if report.dry_run else summary_line(report.files, verb=verb, seconds=seconds)
    run.summary = run_summary(report.files, seconds=seconds, text=summary)
    if summary is not None:
        log.info("%s", summary)
        # Not for one failure alone (its error line says it all, as curl's one message), nor to events (``end`` has it)
        if (len(report.files) != 1 or _ok(report.files)) and run.events is None:
            run.console.info(summary)
    return int(report.exit_code)


# Short reasons for the summary line, by error kind (mdl/errors.py); the error line above says it in full.
_KIND_WORDS = {
    "usage": "refused",
    "catalog": "catalog error",
    "unsafe_path": "unsafe path",
    "job_output": "bad job output",
    "auth": "not authorised",
    "not_found": "not found",
    "network": "network error",
    "hub_reply": "bad reply from the Hub",
    "token_leak": "token refused",
    "web_page": "a web page, not the file",
    "integrity": "integrity error",
    "filesystem": "local filesystem error",
    "no_space": "no space",
    "out_of_memory": "out of memory",
    "lock_timeout": "lock timeout",
    "interrupted": "interrupted",
    "internal": "internal error",
}
_MAX_NAMED = 5  # problem models named on the summary line; the rest are counted


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _units(outcomes: Iterable[FileOutcome]) -> dict[str, list[FileOutcome]]:
    """Outcomes by model, in the report's order; a ``get`` file (no model) is a unit of its own."""
    units: dict[str, list[FileOutcome]] = {}
    for index, f in enumerate(outcomes):
        units.setdefault(f.model or f"\0{index}", []).append(f)
    return units


def _ok(unit: Sequence[FileOutcome]) -> bool:
    return all(f.exit_code == 0 and f.action != "failed" for f in unit)


def _files_part(files: Sequence[FileOutcome]) -> str:
    """``17 files: 16 downloaded, 1 skipped``: each action in people's words, most first."""
    ranked = sorted(Counter(f.shown_action for f in files).items(), key=lambda item: (-item[1], item[0]))
    return f"{_plural(len(files), 'file')}: {', '.join(f'{n} {word}' for word, n in ranked)}"


def _problem_detail(unit: Sequence[FileOutcome]) -> str:
    """``badname (not found)``, failed as a whole (model or file), or ``badsha (6 files: 5 downloaded, 1 failed)``."""
    name = unit[0].model or unit[0].path or "?"
    files = [f for f in unit if f.path is not None]
    if unit[0].model and files:
        return f"{name} ({_files_part(files)})"
    reasons = dict.fromkeys(_KIND_WORDS.get(f.kind or "", "") for f in unit if f.action == "failed")
    said = ", ".join(r for r in reasons if r)
    return f"{name} ({said})" if said else name


def summary_line(outcomes: Sequence[FileOutcome], *, verb: str, seconds: float) -> str:
    """The one summary line of a pull, verify or get: ``pulled 2 models (17 files: 16 downloaded, 1 skipped); 1 model
    failed: badname (not found); 1.6 MiB in 3.2s``."""
    units = list(_units(outcomes).values())
    one_off = all(not f.model for f in outcomes) and bool(outcomes)
    noun = "file" if one_off else "model"
    done = [u for u in units if _ok(u)]
    if not units:
        text = f"{verb} 0 models: nothing to do"
    elif one_off:
        flat = [f for u in done for f in u]
        text = f"{verb} {_files_part(flat)}" if flat else f"{verb} 0 files"
    else:
        files = [f for u in done for f in u if f.path is not None]
        text = f"{verb} {_plural(len(done), noun)}" + (f" ({_files_part(files)})" if files else "")
    problems: dict[str, list[Sequence[FileOutcome]]] = {}
    for unit in [u for u in units if not _ok(u)]:  # by what went wrong: failed, or another action's word (missing)
        word = (
            "failed" if any(f.action == "failed" for f in unit) else next(f.shown_action for f in unit if f.exit_code)
        )
        problems.setdefault(word, []).append(unit)
    for word, bad in problems.items():
        named = ", ".join(_problem_detail(u) for u in bad[:_MAX_NAMED])
        more = f" and {len(bad) - _MAX_NAMED} more" if len(bad) > _MAX_NAMED else ""
        text += f"; {_plural(len(bad), noun)} {word}: {named}{more}"
    fetched = sum(f.fetched for f in outcomes)
    if fetched:
        text += f"; {human_size(fetched)} in {human_duration(seconds)}"
    return text


def model_folders(outcomes: Sequence[FileOutcome]) -> list[str]:
    """The folder of each model that is all here (each of its folders if several), in order: ``pull``'s stdout."""
    from mdl.report import folder  # with its paths and redaction: ~7 ms that --help and list need not pay

    folders: list[str] = []
    for unit in _units(outcomes).values():
        files = [f for f in unit if f.path is not None and f.dest is not None]
        if unit[0].model and files and _ok(unit):
            folders.extend(str(folder(f) or Path(str(f.dest)).parent) for f in files)
    return list(dict.fromkeys(folders))


def fetched_paths(outcomes: Sequence[FileOutcome]) -> list[str]:
    """Each file ``get`` has (fetched, or skipped as the same file), in order, and once the folder of a whole repo
    that is all there (as ``hf download`` prints it), in place of its files: its stdout."""
    broken = {f.within for f in outcomes if f.within is not None and not _ok([f])}
    paths = [f.within or f.dest for f in outcomes if f.dest is not None and _ok([f]) and f.within not in broken]
    return list(dict.fromkeys(p for p in paths if p is not None))
