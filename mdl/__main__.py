"""Entry point for ``python -m mdl`` and the ``mdl`` console script: signals first, then the CLI."""

from __future__ import annotations

import gc
import json
import os
import signal
import sys
from collections.abc import Callable
from types import FrameType
from typing import Any


def _on_term(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # SIGTERM behaves like Ctrl-C: stop streams, keep partial data, exit 130


def main() -> None:
    """Install SIGTERM handling before the (slower) imports, run the CLI, and exit with its code."""
    try:
        if hasattr(signal, "SIGTERM"):
            signal.signal(signal.SIGTERM, _on_term)
        from mdl.cli import app
    except KeyboardInterrupt:
        sys.stderr.write("mdl: error: interrupted while starting\n")
        os._exit(130)
    try:
        code = _finish_stdout(_run(app))
        # The work is done and stdout flushed: what is left is the interpreter's teardown, whose full garbage
        # collections walk every object the imports made (~50k: Typer, pydantic, httpx2) several times, about
        # 0.1 s of a short command such as `mdl get` of a small file. Frozen objects are skipped by them; atexit
        # handlers (log file, locks) and thread joins still run, and nothing of ours waits for a cycle's __del__.
        gc.freeze()
        sys.exit(code)
    except SystemExit as exc:
        if exc.code == 130:
            # A Ctrl-C that landed inside an import can leave Python re-raising SIGINT at exit (so callers
            # would see -2, not 130): flush what we have and leave with the documented code.
            import logging

            for stream in (sys.stdout, sys.stderr):
                try:
                    stream.flush()
                except (OSError, ValueError):
                    pass
            logging.shutdown()
            os._exit(130)
        raise


def _finish_stdout(code: int) -> int:
    """Flush stdout before exiting: a reader that left makes it exit 141, quietly, not an error at shutdown."""
    from mdl.cli import pipes

    if code == 130 and pipes.interrupted_by_closed_stdout():
        pipes.silence_stdout()  # the closed stdout's interruption got past the translator: same ending
        return pipes.EXIT_STDOUT_CLOSED
    try:
        pipes.flush_stdout()
    except OSError as exc:
        if not pipes.is_closed_stdout_error(exc):
            raise
        pipes.silence_stdout()
        return code or pipes.EXIT_STDOUT_CLOSED
    return code


def _run(app: Callable[..., Any]) -> int:
    """Run the Typer app without its own exit handling, so parse errors can honour ``--json`` too."""
    from mdl.cli import pipes

    try:
        result = app(standalone_mode=False, prog_name="mdl")  # "mdl" under python -m too: _MDL_COMPLETE
    except SystemExit as exc:
        # Click ends output it writes itself (--help, --version) that meets a closed pipe with exit 1.
        if exc.code == 1 and pipes.stdout_closed():
            pipes.silence_stdout()
            return pipes.EXIT_STDOUT_CLOSED
        raise
    except Exception as exc:
        show = getattr(exc, "show", None)
        code = getattr(exc, "exit_code", None)
        if type(exc).__name__ == "Abort":
            sys.stderr.write("mdl: error: interrupted\n")
            return 130
        if not callable(show) or not isinstance(code, int):
            raise
        if "--json" in sys.argv[1:]:
            formatter = getattr(exc, "format_message", None)
            message = formatter() if callable(formatter) else str(exc)
            context = getattr(getattr(exc, "ctx", None), "command_path", None) or "mdl"
            hint = f"see {context} --help"
            doc = {"ok": False, "error": {"code": code, "kind": "usage", "message": message, "hint": hint}}
            try:
                sys.stdout.write(json.dumps(doc) + "\n")
                sys.stdout.flush()
            except OSError as closed:
                if not pipes.is_closed_stdout_error(closed):
                    raise
                pipes.silence_stdout()  # no one reads the JSON; the usage error still goes to stderr
        from mdl.cli.render.stream import failed_to_start, wants_events

        if wants_events(sys.argv[1:]):  # --progress json: stderr stays a pure stream, begin to end
            formatter = getattr(exc, "format_message", None)
            failed_to_start(sys.stderr, message=formatter() if callable(formatter) else str(exc), exit_code=code)
        else:
            show()
        return code
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    main()
