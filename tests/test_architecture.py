"""The house layout must not rot: parts as subpackages, imports one way, no cycles, parts used
through their face.

The rules are about imports and layering, not line counts (a count shapes code to fit it, not to
read well)."""

from __future__ import annotations

import ast
import itertools
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "mdl"
# The parts, lowest first: a part may import from the ones before it, never from the ones after it.
# Top-level modules (errors, redact, units, paths, progress, report, partsize) are the shared
# vocabulary below every part.
PARTS = (
    "signing",
    "buckets",
    "catalog",
    "store",
    "transfer",
    "sources",
    "xet",
    "lockfile",
    "download",
    "endpoint",
    "upload",
    "archive",
    "cli",
)
LAYERS = (*PARTS[:-1], "api", "cli")


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


@cache  # (each module parsed once a worker, not once a test: ~1.5 CPU-s a test)
def _imports(path: Path) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """Every ``import`` in a module (function-level ones too): (module, names imported from it)."""
    own = _module_name(path)
    package = own if path.name == "__init__.py" else own.rpartition(".")[0]
    found: list[tuple[str, tuple[str, ...]]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.extend((alias.name, ()) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.append((base, tuple(alias.name for alias in node.names)))
    return tuple(found)


def _part(module: str) -> str | None:
    """The part a module belongs to (``mdl.store.layout`` → ``store``), ``api`` for mdl.api, None
    for the rest.
    """
    pieces = module.split(".")
    if len(pieces) >= 2 and pieces[0] == "mdl" and pieces[1] in (*PARTS, "api"):
        return pieces[1]
    return None


def _edges() -> dict[str, set[str]]:
    """Module → the mdl modules it imports (a submodule named in ``from pkg import mod`` counts
    as that module).
    """
    modules = _modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for target, names in _imports(path):
            if not target.startswith("mdl"):
                continue
            for imported in names or [""]:
                full = f"{target}.{imported}" if imported else target
                graph[name].add(full if full in modules else target)
            # Importing mdl.a.b runs mdl.a's __init__ first, unless we are inside mdl.a already.
            pieces = target.split(".")
            for i in range(2, len(pieces)):
                parent = ".".join(pieces[:i])
                if parent in modules and not name.startswith(parent + ".") and name != parent:
                    graph[name].add(parent)
        graph[name].discard(name)
    return graph


@pytest.mark.slow
def test_no_import_cycles() -> None:
    graph = _edges()
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append([*trail[trail.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt, [*trail, nxt])
        state[node] = 2

    for start in sorted(graph):
        if start not in state:
            visit(start, [start])
    assert cycles == []


@pytest.mark.slow
def test_parts_import_one_way() -> None:
    """cli → api → archive/upload/download → lockfile → xet → sources → transfer → store →
    catalog; never back up.
    """
    rank = {part: i for i, part in enumerate(LAYERS)}
    wrong = sorted(
        f"{name} imports {target}"
        for name, targets in _edges().items()
        for target in targets
        if (src := _part(name)) and (dst := _part(target)) and src != dst and rank[dst] > rank[src]
    )
    assert wrong == []


@pytest.mark.slow
def test_top_level_modules_import_no_part() -> None:
    """errors, redact, units, paths, progress, report: the vocabulary every part shares, below
    all of them.
    """
    wrong = sorted(
        f"{name} imports {target}"
        for name, targets in _edges().items()
        if name.count(".") == 1 and _part(name) is None and name != "mdl.__main__"
        for target in targets
        if _part(target) is not None and not (name == "mdl" and target == "mdl.api")
    )
    assert wrong == []


@pytest.mark.slow
def test_main_is_imported_by_nothing() -> None:
    """But the console script's entry (mdl/_start.py: its Ctrl-C handling while main loads)."""
    importers = (name for name, targets in _edges().items() if "mdl.__main__" in targets)
    assert sorted(importers) == ["mdl._start"]


@pytest.mark.slow
def test_no_part_reaches_into_another_parts_private_modules() -> None:
    """Parts import each other by module (``from mdl.store.store import Store``); a module whose name
    starts with ``_`` is its part's own, and so is a name that does: nobody else imports them. The
    API is used through its face, ``mdl.api``.
    """
    modules = _modules()
    wrong = []
    for name, path in modules.items():
        for target, names in _imports(path):
            src, dst = _part(name), _part(target)
            if dst is None or dst == src:
                continue
            if any(piece.startswith("_") for piece in target.split(".")[2:]):
                wrong.append(f"{name} imports {target}")
            wrong.extend(f"{name} imports {target}.{n}" for n in names if n.startswith("_"))
            if dst == "api" and target != "mdl.api":
                wrong.append(f"{name} imports {target} (use mdl.api)")
    assert sorted(wrong) == []


@pytest.mark.parametrize("part", PARTS)
def test_each_part_says_what_it_does_and_only_that(part: str) -> None:
    """A part's ``__init__`` is its two-line description: its modules are imported by name, so an
    export is spelled once, where it is defined."""
    tree = ast.parse((PACKAGE / part / "__init__.py").read_text(encoding="utf-8"))
    doc = ast.get_docstring(tree)
    assert doc, f"mdl/{part}/__init__.py has no docstring"
    assert len(doc.strip().splitlines()) <= 2, f"mdl/{part}: say what the part does in two lines"
    assert len(tree.body) == 1, f"mdl/{part}/__init__.py holds more than its docstring"


def test_every_part_is_a_layer() -> None:
    """Every subpackage of mdl is ranked (a new part must say where it stands), and every ranked
    part exists.
    """
    found = sorted(p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists())
    assert found == sorted(LAYERS)


@pytest.mark.slow
def test_the_checks_see_real_imports() -> None:
    """Guard against a vacuous pass: the graph must hold the edges we know are there."""
    graph = _edges()
    assert "mdl.errors" in graph["mdl.transfer.http"]
    assert any(_part(t) == "store" for t in graph["mdl.download.resolve"])
    assert len(list(itertools.chain.from_iterable(graph.values()))) > 100


def test_only_the_two_public_faces_are_lazy() -> None:
    """``export_lazily`` serves ``mdl`` and ``mdl.api``, nothing else."""
    users = sorted(
        _module_name(path)
        for path in _modules().values()
        if "export_lazily(" in path.read_text(encoding="utf-8") and path.name != "lazy.py"
    )
    assert users == ["mdl", "mdl.api"]


def test_the_api_face_exports_what_mypy_sees() -> None:
    """``mdl.api`` loads each name from the module its ``TYPE_CHECKING`` import names, under the same
    name, and exports exactly ``__all__``; each name loads. ``mdl`` exports its names from it.
    """
    import importlib

    import mdl

    tree = ast.parse((PACKAGE / "api" / "__init__.py").read_text(encoding="utf-8"))
    package = importlib.import_module("mdl.api")
    table = package.__dict__["_exports"]
    seen = {
        alias.name: node.module.rsplit(".", 1)[1]
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("mdl.api.")
        for alias in node.names
    }
    assert table == seen
    assert sorted(table) == sorted(package.__all__)
    for name in package.__all__:
        loaded = importlib.import_module(f"mdl.api.{table[name]}")
        assert getattr(package, name) is getattr(loaded, name)
    for name in set(mdl.__all__) & set(table):
        assert getattr(mdl, name) is getattr(package, name)


def test_an_export_named_as_a_module_stays_the_export() -> None:
    """``mdl.api.get`` is the function, however its module (``mdl.api._get``) was reached: a face's
    modules are private, so no export shares a module's name."""
    import subprocess
    import sys

    faces = [PACKAGE, PACKAGE / "api"]
    modules = {path.stem for face in faces for path in face.glob("*.py")}
    import mdl.api

    assert modules & set(mdl.api.__all__) == set()
    # nor a part's: ``mdl.<part>`` would be the package once a module of the part is imported
    parts = {path.name for path in PACKAGE.iterdir() if (path / "__init__.py").exists()}
    assert parts & set(mdl.api.__all__) == set()
    probe = (
        "import mdl.api._get, mdl.api as a, types; "
        "assert not isinstance(a.get, types.ModuleType), a.get; "
        "from mdl.api import get; assert callable(get) and get.__name__ == 'get'"
    )
    subprocess.run([sys.executable, "-c", probe], check=True, cwd=ROOT, timeout=60)
