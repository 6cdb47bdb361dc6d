"""The one translator of what ended mdl to its exit code and its words (stderr, ``--json``, events),
by type: mdl's errors, Ctrl-C, memory, and Typer's parse errors."""

from __future__ import annotations

import errno
import logging
import mmap
import os
import sys
from collections.abc import Sequence
from itertools import pairwise
from typing import Any, Protocol, TextIO

from mdl.cli.render.console import EventStream, run_summary, stderr_sink
from mdl.cli.stdout import (
    EXIT_STDOUT_CLOSED,
    UNWRITABLE,
    emit_document,
    is_closed_stdout_error,
    silence_stdout,
    unread_if_failing,
)
from mdl.errors import (
    CatalogError,
    InterruptedByUserError,
    LocalFSError,
    MdlError,
    OutOfMemoryError,
    UsageError,
    causes,
    out_of_memory,
)
from mdl.redact import Secrets, safe_text
from mdl.setting import SETTING, parse_bool

log = logging.getLogger("mdl.cli")

# What a Ctrl-C (or SIGTERM) leaves behind, said after what was interrupted: each command's own
# (README "Exit codes").
KEPT_ON_INTERRUPT = {
    "pull": "what had arrived is kept, run again to resume",
    "get": "what had arrived is kept, run again to resume",
    "publish": "files already uploaded are kept, run again to send the rest",
    "pack": (
        "the unfinished archive was removed (with -o -, what was written to stdout is incomplete)"
    ),
    "unpack": (
        "the destination was left as it was (or, if the final swap had begun, entirely unpacked)"
    ),
    "lock": "catalog.lock was not changed",
}
# hf download's flags a command does not take: mdl's spelling, said below Typer's "No such option"
HF_SPELLINGS = {
    "--revision": "a Hub repo at a revision: mdl get hf://owner/name@REV (or get's --revision)",
    "--repo-type": "a dataset: mdl get hf://datasets/owner/name (or mdl get ... --repo-type)",
    "--local-dir": "a Hub repo into a folder: mdl get owner/name -d DIR",
    "--token": "mdl reads the token from HF_TOKEN (or the file `hf auth login` wrote)",
    "--cache-dir": "the Hugging Face cache is HF_HUB_CACHE, filled by --layout hf-cache",
    "--max-workers": "--connections N (parallel ranges per big file), --jobs N (files at once)",
}
# ... a catalog's model holds them (pull, add, lock, verify): said as the catalog spells them
_RESUME = "resuming is automatic: run the same command again (what had arrived is kept)"
_CONNECTIONS = "--connections N: parallel ranges per big file (as aria2c -x)"
_CATALOG_SPELLINGS = {
    "--revision": 'the model\'s: mdl add NAME hf://owner/name@REV, or revision = "REV" in'
    " [models.NAME]",
    "--repo-type": 'the model\'s: mdl add NAME hf://datasets/owner/name, or repo_type = "dataset"'
    " in [models.NAME]",
    "--include": "the model's: mdl add NAME hf://owner/name --include GLOB, or include = [...] in"
    " [models.NAME]",
}
# ... and curl's, wget's and aria2c's habits, as get spells them
_CURL_SPELLINGS = {
    "-O": "saving under the URL's own name is the default (-o FILE names it)",
    "-C": _RESUME,
    "-c": _RESUME,
    "--continue": _RESUME,
    "-L": "redirects are always followed",
    "-x": "aria2c's -x is --connections N; curl's -x (a proxy) is HTTPS_PROXY or HTTP_PROXY",
    "-s": "curl's -s (silent) is -q; aria2c's -s is --connections N",
    "--split": _CONNECTIONS,
    "-P": "-d DIR: the folder files are saved in",
    "--retry": "failures are retried on their own; --retry-max-time SECONDS bounds them",
}
_DEST_SPELLING = "the models' folder is --dest DIR (or [settings] dest in the catalog)"
_CATALOG_COMMANDS = frozenset({"pull", "add", "lock", "verify", "show"})
_DEST_COMMANDS = _CATALOG_COMMANDS - {"add"}  # (add takes no --dest)


def spelling_of(option: str | None, command: str | None) -> str | None:
    """How mdl spells a habit another tool spells ``option``, for ``command`` (its name), or
    None."""
    if not option:
        return None
    if option in ("-d", "--local-dir") and command in _CATALOG_COMMANDS:
        return _DEST_SPELLING if command in _DEST_COMMANDS else None
    if command in _CATALOG_COMMANDS and option in _CATALOG_SPELLINGS:
        return _CATALOG_SPELLINGS[option]
    if command == "get" and option in _CURL_SPELLINGS:
        return _CURL_SPELLINGS[option]
    return HF_SPELLINGS.get(option)


# a local path refused to this user: no permission, or a read-only filesystem
DENIED = (errno.EACCES, errno.EPERM, errno.EROFS)
_MEMORY_HINT = "free memory or raise the process's limit, or ask for less at once (fewer models)"


class Told(Protocol):
    """What the translator uses of a command's run (mdl.cli.run.Run, which imports this module)."""

    command: str
    environ: dict[str, str]
    reserve: mmap.mmap | None

    def tell(self, error: MdlError) -> int: ...


def reserve_memory(size: int = 16 << 20) -> mmap.mmap | None:
    """Address space held back (mapped, never touched: no memory used) while a command runs, let go
    when memory runs out so that the translator has room to say so (a process at its ``ulimit -v``
    cannot even build a message)."""
    try:
        return mmap.mmap(-1, size)
    except (OSError, ValueError):
        return None


def translate(exc: BaseException, run: Told | None = None) -> int:
    """The one translator of what ended mdl to its exit code, said on stderr, in ``--json`` and
    as events.
    """
    if run is not None and run.reserve is not None:
        # the command is over: its room is the translator's, before anything here allocates
        run.reserve.close()
    if is_closed_stdout_error(exc):
        log.info("stdout was closed by its reader; exit %d", EXIT_STDOUT_CLOSED)
        silence_stdout()
        return EXIT_STDOUT_CLOSED
    error = _as_error(exc, run)
    if run is not None:
        return run.tell(_with_what_was_kept(error, command=run.command))
    return _tell_without_run(exc, error)


def _as_error(exc: BaseException, run: Told | None) -> MdlError:
    """What ended mdl as one of its errors, by type."""
    if isinstance(exc, MdlError):
        return exc
    if isinstance(exc, (KeyboardInterrupt, *_typer("Abort"))):  # Typer's word for Ctrl-C
        return InterruptedByUserError("interrupted")
    if _out_of_memory(exc):
        return _memory_error(exc)
    local = _local_error(exc) if isinstance(exc, OSError) else None
    if local is not None:
        return local
    # a parse error (Typer's public base of Click's): its usage, exit 2
    if isinstance(exc, _typer("TyperException")):
        # a usage error's command
        ctx = getattr(exc, "ctx", None)
        context = getattr(ctx, "command_path", None) or "mdl"
        command = getattr(getattr(ctx, "command", None), "name", None)
        spelt = spelling_of(getattr(exc, "option_name", None), command)
        return UsageError(exc.format_message(), hint=spelt or f"see {context} --help")
    return _internal_error(exc, run)


def _local_error(exc: OSError) -> LocalFSError | None:
    """An OSError no part said as its own that is about this machine's files: exit 7, the path
    named; None for any other."""
    where = f"{exc.filename}: " if exc.filename else ""
    if exc.errno in DENIED:
        # a path this user may not read, enter or write (a stat of a catalog, an output under
        # another user's folder)
        return LocalFSError(
            f"{where}{(exc.strerror or 'permission denied').lower()}",
            hint="check the permissions of that path and of the folders above it"
            f" (mdl runs as user {os.geteuid()})",
        )
    if exc.errno in UNWRITABLE:  # a write (stdout's data to a full disk): no bug
        full = exc.errno != errno.EIO
        return LocalFSError(
            f"{where}{(exc.strerror or 'write failed').lower()}",
            hint="free space on the disk mdl writes to (stdout's file's too)" if full else None,
        )
    return None


def _typer(name: str) -> tuple[type[Any], ...]:
    """Typer's exception class ``name`` when Typer is loaded (none of its exceptions is raised
    where it is not: mdl.cli.plain runs without it)."""
    typer = sys.modules.get("typer")
    return (getattr(typer, name),) if typer is not None else ()


def _out_of_memory(exc: BaseException) -> bool:
    """Whether a local resource ran out, as a full disk: exit 7 (a thread the system refused has
    only a RuntimeError's words)."""
    refused_thread = isinstance(exc, RuntimeError) and str(exc) == "can't start new thread"
    return out_of_memory(exc) or refused_thread


def _memory_error(exc: BaseException) -> OutOfMemoryError:
    """Out of memory, said with the room the reserve left (:func:`translate` let it go)."""
    # the traceback's frames hold what filled memory: let them go too
    for held in causes(exc):
        held.__traceback__ = None
    message = "out of memory"
    if not out_of_memory(exc):  # a thread the system refused
        message += ": cannot start a thread"
    return OutOfMemoryError(message, hint=_MEMORY_HINT)


def _internal_error(exc: BaseException, run: Told | None) -> MdlError:
    """A bug: logged with its traceback, raised again with MDL_DEBUG, else exit 1."""
    log.error("internal error", exc_info=exc)
    if parse_bool((run.environ if run else os.environ).get(SETTING["debug"].env, "")):
        raise exc
    return MdlError(
        f"internal error: {type(exc).__name__}: {exc}", hint="run with MDL_DEBUG=1 for a traceback"
    )


def _with_what_was_kept(error: MdlError, *, command: str) -> MdlError:
    """An interruption's message with what ``command`` kept (``KEPT_ON_INTERRUPT``)."""
    kept = KEPT_ON_INTERRUPT.get(command)
    if not isinstance(error, InterruptedByUserError) or kept is None:
        return error
    return InterruptedByUserError(f"{error.message}; {kept}", hint=error.hint)


def _tell_without_run(exc: BaseException, error: MdlError) -> int:
    """A failure before any run (its command line did not parse), said as the command line asked:
    the ``--json`` document, the event stream, else Typer's usage or ``mdl: error:`` on stderr."""
    code = int(error.exit_code)
    argv = sys.argv[1:]
    if "--json" in argv:
        error_document(error, sys.stdout)
    if wants_events(argv):
        failed_to_start(sys.stderr, error)
        return code
    # Typer's own usage text (its ClickException, not exported, has show)
    show = getattr(exc, "show", None)
    if isinstance(exc, _typer("TyperException")) and callable(show):
        show(file=stderr_sink(sys.stderr))
        if error.hint is not None and not error.hint.startswith("see "):  # mdl's spelling last
            stderr_sink(sys.stderr).write(f"  hint: {error.hint}\n")
        return code
    # the one redaction, as at every sink
    hint = f"  hint: {safe_text(error.hint)}\n" if error.hint else ""
    stderr_sink(sys.stderr).write(f"mdl: error: {safe_text(error.message)}\n{hint}")
    return code


def error_document(
    exc: MdlError, stream: Any, *, secrets: Secrets | None = None, warnings: Sequence[str] = ()
) -> None:
    """The ``--json`` document of a run that failed (with what it warned of, ``warnings``); no one
    reading it is no reason to hide the error.
    """
    error = {"code": int(exc.exit_code), "kind": exc.kind, "message": exc.message, "hint": exc.hint}
    # each problem of the catalog apart (the message holds them all, on one line)
    if isinstance(exc, CatalogError):
        error["problems"] = list(exc.problems)
    with unread_if_failing(failing=True):  # no one reads the JSON: the error still goes to stderr
        said = {"warnings": list(warnings)} if warnings else {}
        emit_document({"ok": False, "error": error, **said}, stream=stream, secrets=secrets)


def failed_to_start(stream: TextIO, error: MdlError) -> None:
    """The whole stream of a run whose command line did not parse: ``begin``, the ``error`` (its
    hint too, as ``--json`` and stderr say it) and ``end``."""
    code = int(error.exit_code)
    events = EventStream(stream)
    events.error(error.message, hint=error.hint, code=code, kind=error.kind)
    events.end(exit_code=code, summary=run_summary((), seconds=0.0, text=None))


def wants_events(argv: Sequence[str]) -> bool:
    """Whether a command line (not parsed) asks for ``--progress json``."""
    # what follows "--" are arguments, not options
    args = list(argv)[: argv.index("--")] if "--" in argv else argv
    return "--progress=json" in args or ("--progress", "json") in pairwise(args)
