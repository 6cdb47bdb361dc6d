"""Entry point for ``python -m mdl`` and the ``mdl`` console script: signals first, then the CLI."""

from __future__ import annotations

import contextlib
import gc
import mmap
import os
import signal
import sys

from mdl.errors import out_of_memory


def main() -> None:
    """Install SIGTERM handling before the (slower) imports, run the CLI, and exit with its code."""
    # Address space held back (never touched) until memory runs out: room to say so under a limit
    # (RLIMIT_AS) reached while importing, or by the translator itself.
    reserve = None
    try:
        reserve = mmap.mmap(-1, 2 << 20)
        # SIGTERM behaves like Ctrl-C (KeyboardInterrupt): stop streams, keep partial data, exit
        # 130.
        signal.signal(signal.SIGTERM, signal.default_int_handler)
        from mdl.cli.app import app
        from mdl.cli.run import invoke
    except KeyboardInterrupt:
        sys.stderr.write("mdl: error: interrupted while starting\n")
        os._exit(130)
    except Exception as exc:  # memory ran out before the translator is there; else raised
        _exit_if_out_of_memory(exc, reserve)
        raise
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
    except Exception as exc:  # memory ran out in the translator itself; else raised
        _exit_if_out_of_memory(exc, reserve)
        raise


def _exit_if_out_of_memory(exc: BaseException, reserve: mmap.mmap | None) -> None:
    """Exit 7 "out of memory" as the translator says it, with no room to run it, when ``exc`` is
    memory running out; no teardown (freeing what the imports made needs memory too)."""
    if reserve is not None:
        reserve.close()
    if out_of_memory(exc):
        os.write(
            2, b"mdl: error: out of memory\n  hint: free memory or raise the process's limit\n"
        )
        os._exit(7)


if __name__ == "__main__":
    main()
