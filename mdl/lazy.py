"""The two public faces' names loaded on first use (PEP 562): ``import mdl`` or ``from mdl.api
import pull`` loads the command family that is asked for, not all of them. The parts are imported
by module and are not lazy."""

from __future__ import annotations

import sys
from collections.abc import Mapping


def load(where: str) -> object:
    """``"package.module:name"``'s object, its module imported now if it was not yet: the one way
    mdl defers an import (the faces' names, the stores by scheme)."""
    module, _, name = where.partition(":")
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
