"""A part's exports loaded on first use (PEP 562), so a command imports only the modules it runs:
``from mdl.store import Store`` loads mdl.store.store, not the whole part."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Mapping
from types import ModuleType


class _LazyPart(ModuleType):
    """A part whose exported names come from their own submodules when first asked for."""

    _exports: dict[str, str]

    def __getattr__(self, name: str) -> object:
        # Called only for a name not bound yet.
        where = self.__dict__.get("_exports", {}).get(name)
        if where is None:
            # ``mdl.catalog.load`` after ``import mdl.catalog``: a submodule, as when the part
            # imported all of them
            return _submodule(self.__name__, name)
        value = _load(self.__name__, where, name)
        self.__dict__[name] = value
        return value

    def __dir__(self) -> list[str]:
        # what the part exports, loaded yet or not (completion, ``dir(mdl)``)
        return sorted({*self.__dict__, *self.__dict__.get("_exports", ())})

    def __setattr__(self, name: str, value: object) -> None:
        # The import system binds each submodule it loads on its package: a name the part exports
        # (mdl.store's ``prune``, a function) keeps meaning the export, never its module.
        where = self.__dict__.get("_exports", {}).get(name)
        if where is not None and isinstance(value, ModuleType):
            value = _load(self.__name__, where, name)
        super().__setattr__(name, value)


def _submodule(package: str, name: str) -> ModuleType:
    module = f"{package}.{name}"
    if name.startswith("__") or importlib.util.find_spec(module) is None:
        raise AttributeError(f"module {package!r} has no attribute {name!r}")
    __import__(module)
    return sys.modules[module]


def _load(package: str, where: str, name: str) -> object:
    submodule, _, original = where.partition(":")
    module = f"{package}.{submodule}"
    __import__(module)  # (not importlib.import_module: `python -X importtime` shows this one)
    return getattr(sys.modules[module], original or name)


def export_lazily(package: str, exports: Mapping[str, str]) -> None:
    """Make ``package`` (a part's ``__name__``) load each name of ``exports`` from its submodule on
    first use: ``exports`` maps a name to ``"submodule"``, or ``"submodule:original"`` for a name
    exported under another. The part's ``TYPE_CHECKING`` imports say the same for mypy
    (tests/test_architecture.py holds them equal).
    """
    module = sys.modules[package]
    module.__dict__["_exports"] = dict(exports)
    module.__class__ = _LazyPart
