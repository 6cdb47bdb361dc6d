"""A part's exports loaded on first use (PEP 562): ``from mdl.store import Store`` imports the store's module alone,
not every module the part has, so a command pays only for what it touches (``mdl get`` of one URL, ``mdl list``).

A part's ``__init__`` names its exports three times, and tests/cli/test_startup.py checks that they agree: under
``TYPE_CHECKING`` as imports (for mypy and readers), in ``__all__``, and in the table given to ``lazy_exports``.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(
    package: str, modules: Mapping[str, tuple[str, ...]]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for ``package``, whose exports live in its submodules:
    ``{"store": ("Store",)}`` means ``package.Store`` is ``package.store.Store``, imported when first asked for."""
    home = {name: f"{package}.{module}" for module, names in modules.items() for name in names}

    def __getattr__(name: str) -> Any:
        module = home.get(name)
        if module is None:
            # `import mdl.catalog; mdl.catalog.load` worked while the package imported its modules: still does.
            if name.startswith("_") or importlib.util.find_spec(f"{package}.{name}") is None:
                raise AttributeError(f"module {package!r} has no attribute {name!r}")
            __import__(f"{package}.{name}")  # which also binds it on the package
            return sys.modules[f"{package}.{name}"]
        __import__(module)  # not importlib.import_module, which `python -X importtime` does not see
        value = getattr(sys.modules[module], name)
        setattr(sys.modules[package], name, value)  # later lookups find it without this function
        return value

    def __dir__() -> list[str]:
        return sorted({*vars(sys.modules[package]), *home})

    return __getattr__, __dir__
