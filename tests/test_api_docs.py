"""docs/python-api.md cannot drift from the API: its table shows each public function's signature
exactly as ``inspect.signature`` has it (every keyword, in order, with its default), and names every
public function (issue 59 H: ``fill_mirror=`` and ``xet=`` had gone missing from ``pull``)."""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

import pytest

import mdl

PYTHON_API_MD = (Path(__file__).parents[1] / "docs" / "python-api.md").read_text(encoding="utf-8")
# `name(params)` in the first cell of a row of the table
SIGNATURE = re.compile(r"`([a-z_]+)\(([^`]*)\)`")


def documented() -> dict[str, str]:
    """Each signature the table shows: the function's name → its parameters as written."""
    shown: dict[str, str] = {}
    for line in PYTHON_API_MD.splitlines():
        if line.startswith("| `"):
            first = line.split(" | ")[0]
            shown.update(SIGNATURE.findall(first))
    return shown


def public_functions() -> list[str]:
    return sorted(name for name in mdl.__all__ if inspect.isfunction(getattr(mdl, name)))


def as_documented(params: str) -> list[tuple[str, str, object]]:
    """``(name, kind, default)`` of each parameter of a documented signature."""
    tree = ast.parse(f"def f({params}): pass").body[0]
    assert isinstance(tree, ast.FunctionDef)
    args = tree.args
    found: list[tuple[str, str, object]] = []
    positional = args.posonlyargs + args.args
    padded = [None] * (len(positional) - len(args.defaults)) + list(args.defaults)
    for arg, default in zip(positional, padded, strict=True):
        found.append((arg.arg, "POSITIONAL_OR_KEYWORD", _value(default)))
    if args.vararg is not None:
        found.append((args.vararg.arg, "VAR_POSITIONAL", inspect.Parameter.empty))
    for arg, default in zip(args.kwonlyargs, args.kw_defaults, strict=True):
        found.append((arg.arg, "KEYWORD_ONLY", _value(default)))
    return found


def _value(node: ast.expr | None) -> object:
    return inspect.Parameter.empty if node is None else ast.literal_eval(node)


def as_defined(name: str) -> list[tuple[str, str, object]]:
    return [
        (p.name, p.kind.name, p.default)
        for p in inspect.signature(getattr(mdl, name)).parameters.values()
    ]


def test_the_table_shows_every_public_function() -> None:
    assert set(documented()) == set(public_functions())


@pytest.mark.parametrize("name", public_functions())
def test_each_signature_is_shown_as_it_is(name: str) -> None:
    assert as_documented(documented()[name]) == as_defined(name)
