"""Entry point for ``python -m mdl`` and the ``mdl`` console script: signals first, then the CLI."""

from __future__ import annotations

import gc

if __name__ == "__main__":  # the CLI (`python -m mdl`; the console script: mdl/_start.py)
    # the cyclic collector off from the first import on (mdl.lazy.loading turns it back on)
    gc.disable()

import contextlib
import logging
import mmap
import os
import signal
import sys
import warnings
from collections.abc import Iterator, Sequence
from importlib.machinery import ExtensionFileLoader, ModuleSpec
from types import ModuleType
from typing import Any

from mdl.errors import STOPS, imports_ran_short, out_of_memory
from mdl.lazy import freeze_loaded, loading


def main() -> None:
    """Install SIGTERM handling before the (slower) imports, run the CLI, and exit with its code."""
    # Address space held back (never touched) until memory runs out: room to say so under a limit
    # (RLIMIT_AS) reached while importing, or by the translator itself.
    reserve = None
    _standard_descriptors_held()
    try:
        reserve = mmap.mmap(-1, 2 << 20)
        # SIGTERM and SIGHUP behave like Ctrl-C (KeyboardInterrupt): stop streams, keep partial
        # data, exit 130. One the parent ignored stays ignored (`nohup mdl pull &`). Ctrl-C too,
        # from the console script's handler while this module loaded (mdl/_start.py).
        for stop in STOPS:
            if signal.getsignal(stop) is not signal.SIG_IGN:
                signal.signal(stop, signal.default_int_handler)
        freeze_loaded()  # (the process is the CLI's: what its imports make is frozen)
        with Watch().loading(), loading():
            # a plain get, pull or verify line runs without Typer (mdl.cli.plain); others: Typer's
            from mdl.cli.plain import recognised, run_plainly
            from mdl.cli.render.console import lenient
            from mdl.cli.run import invoke
            from mdl.cli.swallowed import interrupts_kept

            sys.stderr = lenient(sys.stderr)  # (a full log's disk never stops the work)

            plain = recognised(sys.argv[1:], os.environ)
            if plain is not None:
                _first_request_early(plain)
            if plain is None:
                from mdl.cli.app import app
    except KeyboardInterrupt:
        sys.stderr.write("mdl: error: interrupted while starting\n")
        os._exit(130)
    except Exception as exc:  # memory ran out before the translator is there; else raised
        _exit_if_out_of_memory(exc, reserve)
        raise
    try:
        # every way it ends, as an exit code (mdl.cli.translate, the one translator)
        with interrupts_kept():
            code = invoke(app) if plain is None else run_plainly(plain)
        # Teardown's full collections would walk the ~50k objects the imports made (0.1 s of a small
        # `mdl get`); frozen ones are skipped, while atexit handlers and thread joins still run.
        gc.freeze()
        sys.exit(code)
    except KeyboardInterrupt:  # past the translator: a Ctrl-C as it ended (or one sent again)
        sys.stderr.write("mdl: error: interrupted\n")
        _exit_interrupted()
    except SystemExit as exc:
        if exc.code == 130:
            _exit_interrupted()
        raise
    except Exception as exc:  # memory ran out in the translator itself; else raised
        _exit_if_out_of_memory(exc, reserve)
        raise


def _first_request_early(plain: dict[str, Any]) -> None:
    """A plain get's or pull's first request sent while the download's modules load (a Hub's
    planned in mdl.download.earlyhub); a verify (a readiness probe) loads none of it."""
    if plain["command"] not in ("get", "pull"):
        return
    if plain["command"] == "get" and not plain["sources"][0].startswith("hf://"):
        from mdl.transfer.early import send_early

        where = plain.get("output"), plain.get("directory")
        send_early(plain["sources"], *where, sha256=plain.get("sha256"))
        return
    from mdl.download.earlyhub import planned_get, planned_pull
    from mdl.transfer.early import begin

    if plain["command"] == "get":
        where = plain.get("output"), plain.get("directory")
        begin(planned_get(plain["sources"], *where, os.environ, sha256=plain.get("sha256")))
    else:
        all_models, dest = bool(plain.get("all_models")), plain.get("dest")
        names, catalog = plain["names"], plain.get("catalog")
        begin(planned_pull(names, catalog, os.environ, all_models=all_models, dest=dest))


def _exit_interrupted() -> None:
    """Exit 130, what is buffered said: a Ctrl-C inside an import can leave Python re-raising
    SIGINT at exit (-2, not 130)."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    logging.shutdown()
    os._exit(130)


def _standard_descriptors_held() -> None:
    """stdin, stdout and stderr closed at start (``mdl pull >&-``) opened on /dev/null: else the
    next file mdl opens takes the number, and what goes to stdout or stderr goes into it. Each then
    reads and takes as /dev/null does (Python left it None)."""
    for fd, name in enumerate(("stdin", "stdout", "stderr")):
        try:
            os.fstat(fd)
        except OSError:  # (the lowest free number: this one, the ones below are open)
            os.open(os.devnull, os.O_RDWR)
            if fd == 1:  # a command whose output is stdout's data refuses to run (exit 2)
                from mdl.cli import stdout

                stdout.closed_at_start = True
        if getattr(sys, name) is None:
            mode = "r" if fd == 0 else "w"
            setattr(sys, name, open(fd, mode, encoding="utf-8", closefd=False))  # noqa: SIM115


class Watch(logging.Handler):
    """Memory running out in an import, however a library took it, never heard beyond mdl's two
    lines. For the process's life: an import that failed for memory is noted, even one a library
    caught and went on without (random's ``_sha512``); the root logger has this handler, so that a
    library logging as it loads (hashlib logs each hash it lacks, with a traceback) never has
    logging set stderr up for it (``basicConfig``), which would then print every record of mdl's
    too. A record goes where logging would have sent it (its last resort, when no logger on its
    way has a handler) unless memory ran out: then it is noise, and mdl says what happened."""

    def __init__(self) -> None:
        super().__init__()
        self.short = False  # an import failed for memory
        # The first finder: the others' finds and the shared libraries' loads are watched (where
        # memory fails an import). Not a wrapper of __import__: a frame more per nested import
        # made Python 3.11 map and unmap a 16 KiB frame chunk ~800 times a start (~10 ms CPU).
        sys.meta_path.insert(0, self)
        logging.root.addHandler(self)

    def noted(self, exc: BaseException) -> None:
        if not self.short and out_of_memory(exc):
            self.short = True
            imports_ran_short()

    def find_spec(
        self, name: str, path: Sequence[str] | None = None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        """The spec the next finders find, a shared library's loader watched."""
        for finder in sys.meta_path[sys.meta_path.index(self) + 1 :]:
            find = getattr(finder, "find_spec", None)
            if find is None:
                continue  # (a finder of the old protocol: the import system asks it itself)
            try:
                spec: ModuleSpec | None = find(name, path, target)
            except BaseException as exc:
                self.noted(exc)
                raise
            if spec is not None:
                if isinstance(spec.loader, ExtensionFileLoader):
                    spec.loader = _Watched(spec.loader, self)  # type: ignore[assignment]
                return spec
        return None

    def emit(self, record: logging.LogRecord) -> None:
        logger: logging.Logger | None = logging.getLogger(record.name)
        while logger is not None and logger is not logging.root:
            if logger.handlers:
                return  # handled on its way: logging's last resort is not used
            logger = logger.parent if logger.propagate else None
        last = logging.lastResort
        if not self.short and last is not None and record.levelno >= last.level:
            last.handle(record)

    @contextlib.contextmanager
    def loading(self) -> Iterator[None]:
        """mdl's modules loading: what is warned is held until they are loaded, and an import
        that failed for memory, even one caught, ends the start (a module may lack a part)."""
        warned: list[tuple[Any, ...]] = []
        shown, warnings.showwarning = warnings.showwarning, lambda *w: warned.append(w)
        try:
            yield
        finally:
            warnings.showwarning = shown
        if self.short:
            raise MemoryError("an import ran out of memory")
        for warning in warned:
            warnings.showwarning(*warning)


class _Watched:
    """A shared library's loader whose failure (no room to map it) ``watch`` notes."""

    def __init__(self, loader: ExtensionFileLoader, watch: Watch) -> None:
        self._loader, self._watch = loader, watch

    def create_module(self, spec: ModuleSpec) -> ModuleType | None:
        try:
            return self._loader.create_module(spec)
        except BaseException as exc:
            self._watch.noted(exc)
            raise

    def exec_module(self, module: ModuleType) -> None:
        try:
            self._loader.exec_module(module)
        except BaseException as exc:
            self._watch.noted(exc)
            raise

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loader, name)


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
