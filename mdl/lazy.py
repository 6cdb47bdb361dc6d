"""The two public faces' names loaded on first use (PEP 562): ``import mdl`` or ``from mdl.api
import pull`` loads the command family that is asked for, not all of them. The parts are imported
by module and are not lazy. And how a start loads what it needs: without the cyclic collector
walking each new object (``loading``), and a transfer's modules while its first request is out
(``import_ahead``)."""

from __future__ import annotations

import contextlib
import gc
import sys
import threading
from collections.abc import Callable, Iterator, Mapping

_loading = threading.Lock()
# blocks now loading, whether the collector ran before the first, whether this process is the CLI's
_depth = [0, True, False]


def load(where: str) -> object:
    """``"package.module:name"``'s object, its module imported now if it was not yet: the one way
    mdl defers an import (the faces' names, the stores by scheme)."""
    module, _, name = where.partition(":")
    with loading():
        __import__(module)  # (not importlib.import_module: `python -X importtime` shows this one)
    return getattr(sys.modules[module], name)


def export_lazily(package: str, exports: Mapping[str, str]) -> None:
    """Make ``package`` (a face's ``__name__``) load each name of ``exports`` from the submodule
    it maps to on first use. The face's ``TYPE_CHECKING`` imports say the same for mypy
    (tests/test_architecture.py holds them equal)."""
    module = sys.modules[package]
    table = dict(exports)

    def __getattr__(name: str) -> object:
        where = table.get(name)
        if where is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = load(f"{package}.{where}:{name}")
        setattr(module, name, value)
        return value

    def __dir__() -> list[str]:  # what the face exports, loaded yet or not
        return sorted({*vars(module), *table})

    vars(module).update(__getattr__=__getattr__, __dir__=__dir__, _exports=table)


def freeze_loaded() -> None:
    """This process is mdl's CLI: what each ``loading`` block made is frozen after it, now too
    (``gc.freeze``: never walked again). Never in a library caller's process, whose garbage would
    be kept for ever."""
    with _loading:
        _depth[2] = True
        gc.freeze()


@contextlib.contextmanager
def loading() -> Iterator[None]:
    """Modules imported in the block with the cyclic collector off: its passes over a start's
    ~50k new objects, none of them garbage, are ~5 % of a small `mdl get`. Blocks nest, on any
    thread: the collector is back on when the last ends (in the CLI, which turns it off before its
    first import, always); in the CLI (``freeze_loaded``) what they made is frozen first, else one
    pass walks it then.
    """
    with _loading:
        if _depth[0] == 0:
            _depth[1] = gc.isenabled() or _depth[2]
            gc.disable()
        _depth[0] += 1
    try:
        yield
    finally:
        with _loading:
            _depth[0] -= 1
            if _depth[2]:
                gc.freeze()
            if _depth[0] == 0 and _depth[1]:
                gc.enable()


def import_ahead(*modules: str) -> Callable[[], None]:
    """Import ``modules`` (those not loaded yet) on a background thread while the caller's first
    request is out, and return the wait the caller makes before it uses them: no module is then
    imported by two threads at once. The wait is bounded by the imports themselves; whatever an
    import raises is the caller's own import's to raise again, on its own thread."""
    missing = [name for name in modules if name not in sys.modules]
    if not missing:
        return lambda: None
    from mdl.background import Background

    def work(stop: threading.Event) -> None:
        with loading(), contextlib.suppress(BaseException):
            for name in missing:
                __import__(name)

    return Background("mdl-import-ahead", work, join=None).start().stop
