"""Entry point for ``python -m mdl`` and the ``mdl`` console script: signals first, then the CLI."""

from __future__ import annotations

import gc
import os
import signal
import sys
from types import FrameType


def _on_term(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # SIGTERM behaves like Ctrl-C: stop streams, keep partial data, exit 130


def main() -> None:
    """Install SIGTERM handling before the (slower) imports, run the CLI, and exit with its code."""
    try:
        if hasattr(signal, "SIGTERM"):
            signal.signal(signal.SIGTERM, _on_term)
        from mdl.cli import app, invoke
    except KeyboardInterrupt:
        sys.stderr.write("mdl: error: interrupted while starting\n")
        os._exit(130)
    try:
        code = invoke(app)  # every way it ends, as an exit code (mdl.cli.run.translate)
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


if __name__ == "__main__":
    main()
