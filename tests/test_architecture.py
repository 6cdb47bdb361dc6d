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
# Top-level modules (errors, redact, units, paths, progress, report) are the shared vocabulary below
# every part.
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


def _imports(path: Path) -> list[tuple[str, list[str]]]:
    """Every ``import`` in a module (function-level ones too): (module, names imported from it)."""
    own = _module_name(path)
    package = own if path.name == "__init__.py" else own.rpartition(".")[0]
    found: list[tuple[str, list[str]]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.extend((alias.name, []) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.append((base, [alias.name for alias in node.names]))
    return found


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


def test_main_is_imported_by_nothing() -> None:
    assert sorted(name for name, targets in _edges().items() if "mdl.__main__" in targets) == []


def test_other_parts_are_used_through_their_package() -> None:
    """A part's ``__init__`` exports what others may use; nobody reaches into another part's
    modules or privates.
    """
    modules = _modules()
    wrong = []
    for name, path in modules.items():
        for target, names in _imports(path):
            src, dst = _part(name), _part(target)
            if dst is None or dst == src or dst == "api":
                continue
            if target != f"mdl.{dst}":
                wrong.append(f"{name} imports {target} (use mdl.{dst})")
            wrong.extend(f"{name} imports {target}.{n}" for n in names if n.startswith("_"))
    assert sorted(wrong) == []


@pytest.mark.parametrize("part", PARTS)
def test_each_part_says_what_it_does_and_what_it_exports(part: str) -> None:
    tree = ast.parse((PACKAGE / part / "__init__.py").read_text(encoding="utf-8"))
    doc = ast.get_docstring(tree)
    assert doc, f"mdl/{part}/__init__.py has no docstring"
    assert len(doc.strip().splitlines()) <= 2, f"mdl/{part}: say what the part does in two lines"
    exported = [
        n
        for n in tree.body
        if isinstance(n, ast.Assign) and any(getattr(t, "id", "") == "__all__" for t in n.targets)
    ]
    assert exported or part == "cli", f"mdl/{part}/__init__.py has no __all__"


def test_every_part_is_a_layer() -> None:
    """Every subpackage of mdl is ranked (a new part must say where it stands), and every ranked
    part exists.
    """
    found = sorted(p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists())
    assert found == sorted(LAYERS)


def test_the_checks_see_real_imports() -> None:
    """Guard against a vacuous pass: the graph must hold the edges we know are there."""
    graph = _edges()
    assert "mdl.errors" in graph["mdl.transfer.http"]
    assert any(_part(t) == "store" for t in graph["mdl.download.resolve"])
    assert len(list(itertools.chain.from_iterable(graph.values()))) > 100


@pytest.mark.parametrize("part", PARTS[:-1])
def test_a_lazy_part_exports_what_mypy_sees(part: str) -> None:
    """A part exported lazily (mdl/lazy.py) loads each name from the module its ``TYPE_CHECKING``
    import names, under the same name, and exports exactly ``__all__``; each name loads.
    """
    import importlib

    tree = ast.parse((PACKAGE / part / "__init__.py").read_text(encoding="utf-8"))
    package = importlib.import_module(f"mdl.{part}")
    table = package.__dict__.get("_exports")
    if table is None:
        pytest.skip(f"mdl.{part} imports its exports eagerly")
    seen = {
        alias.asname or alias.name: (
            node.module.rsplit(".", 1)[1]
            if alias.asname is None or alias.asname == alias.name
            else f"{node.module.rsplit('.', 1)[1]}:{alias.name}"
        )
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("mdl.")
        for alias in node.names
        if node.module != "mdl.lazy"
    }
    assert table == seen
    assert sorted(table) == sorted(package.__all__)
    for name in package.__all__:
        assert getattr(package, name) is getattr(
            importlib.import_module(f"mdl.{part}.{table[name].partition(':')[0]}"),
            table[name].partition(":")[2] or name,
        )


def test_an_export_named_as_its_module_stays_the_export() -> None:
    """mdl.store exports ``prune`` (a function) from mdl.store.prune: importing that module, however
    it is reached, leaves the part's ``prune`` the function.
    """
    import subprocess
    import sys

    probe = (
        "import mdl.store.prune, mdl.store as s, types; "
        "assert not isinstance(s.prune, types.ModuleType), s.prune; "
        "from mdl.store import prune; assert callable(prune) and prune.__name__ == 'prune'"
    )
    subprocess.run([sys.executable, "-c", probe], check=True, cwd=ROOT, timeout=60)
