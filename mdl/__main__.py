"""Entry point for ``python -m mdl`` and the ``mdl`` console script: signals first, then the CLI."""

from __future__ import annotations

import contextlib
import gc
import os
import signal
import sys


def main() -> None:
    """Install SIGTERM handling before the (slower) imports, run the CLI, and exit with its code."""
    try:
        # SIGTERM behaves like Ctrl-C (KeyboardInterrupt): stop streams, keep partial data, exit
        # 130.
        signal.signal(signal.SIGTERM, signal.default_int_handler)
        from mdl.cli import app, invoke
    except KeyboardInterrupt:
        sys.stderr.write("mdl: error: interrupted while starting\n")
        os._exit(130)
    try:
        # every way it ends, as an exit code (mdl.cli.translate, the one translator)
        code = invoke(app)
        # Teardown's full collections would walk the ~50k objects the imports made (0.1 s of a small
        # `mdl get`); frozen ones are skipped, while atexit handlers and thread joins still run.
        gc.freeze()
        sys.exit(code)
    except SystemExit as exc:
        if exc.code == 130:
            # A Ctrl-C inside an import can leave Python re-raising SIGINT at exit (-2, not 130):
            # leave with 130.
            import logging

            for stream in (sys.stdout, sys.stderr):
                with contextlib.suppress(OSError, ValueError):
                    stream.flush()
            logging.shutdown()
            os._exit(130)
        raise


if __name__ == "__main__":
    main()
