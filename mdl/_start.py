"""The ``mdl`` console script's entry: from its first line a Ctrl-C while the CLI loads is one line
and exit 130, never a traceback out of an import; ``mdl/__main__.py`` takes Ctrl-C over once its own
handling is in place. (Only the interpreter's own start, before any of mdl's code, is Python's.)"""

import gc
import os
import signal


def main() -> None:
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:  # (one ignored stays so)
        signal.signal(signal.SIGINT, _interrupted)
    gc.disable()  # the collector off while the CLI loads (mdl.lazy.loading turns it back on)
    from mdl.__main__ import main as run

    run()


def _interrupted(*_: object) -> None:
    os.write(2, b"mdl: error: interrupted while starting\n")
    os._exit(130)
