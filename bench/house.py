"""The house in figures: every figure of issue 60's "Measure it" table that code can count.

    python bench/house.py [ROOT] [--worst N] [--json FILE]   (ROOT: the package, default mdl/)

What each figure counts (ROOT's *.py files; "docstring" means any statement that is only a string,
as /tmp/stmts.py counts):
- statements: ``ast.stmt`` nodes, docstrings left out. Format-independent.
- tokens per statement: the ``tokenize`` tokens of the code, over the statements. Left out:
  COMMENT, NL, NEWLINE, INDENT, DEDENT, ENDMARKER and every token of a docstring. So brackets,
  commas, dots and each string literal count once each; layout and comments do not.
- complexity: radon's cyclomatic complexity of every function, method and closure (classes
  themselves are not counted); median, mean and the share of rank B (radon: A 1-5, B 6-10,
  C 11-20, D 21-30, E 31-40, F 41+); how many are above 15 (the limit) and above 10; and how many
  span more than 60 lines (signature and docstring included).
- ``__init__`` lines: every ``__init__.py`` under ROOT but the two public faces (``ROOT/__init__.py``
  and ``ROOT/api/__init__.py``), whose lines are given apart.
- spellings per internal export: for each name a part's ``__init__`` exports (its ``__all__``, and
  the names it imports from the package), how often that ``__init__`` spells it: an import, a string
  (``__all__``, a lazy table's key), a use or a ``def``; the mean over all exports.
- classes over 300 lines, modules over 800 lines: by line span / line count.
- the limits tests/test_house_limits.py holds (:func:`over_limits`): no function above complexity
  15, no class over 300 lines, no module over 800 lines.
- import graph: each module → the package modules it imports (function-level and ``TYPE_CHECKING``
  imports too; ``from pkg import mod`` is an edge to ``pkg.mod``; importing ``pkg.a.b`` also runs
  ``pkg.a``), as tests/test_architecture.py builds it. Up-arrows: edges from a part to a part
  later in that test's ``LAYERS`` (top-level modules stand below every part); cycles: groups of
  modules, and of parts, that import each other.
Also: code lines (the lines statements span, less docstrings, comments and blank lines) and lines
over 100 columns.
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import io
import json
import statistics
import sys
import tokenize
from collections.abc import Iterable
from pathlib import Path
from typing import Any

WIDTH = 100
BIG_MODULE = 800
BIG_CLASS = 300
MOST_COMPLEX = 15  # the limit a function is held to (tests/test_house_limits.py)
COMPLEX = 10  # the tail the figures count
LONG_FUNCTION = 60  # lines
LAYOUT = {
    tokenize.COMMENT,
    tokenize.NL,
    tokenize.NEWLINE,
    tokenize.INDENT,
    tokenize.DEDENT,
    tokenize.ENDMARKER,
}
RANKS = (("A", 5), ("B", 10), ("C", 20), ("D", 30), ("E", 40), ("F", 10**9))


def is_docstring(node: ast.AST) -> bool:
    """A statement that is only a string (a docstring, or a string left as a comment)."""
    return (
        isinstance(node, ast.Expr)
        and isinstance(node.value, ast.Constant)
        and isinstance(node.value.value, str)
    )


def docstrings(tree: ast.Module) -> list[ast.stmt]:
    return [n for n in ast.walk(tree) if isinstance(n, ast.stmt) and is_docstring(n)]


def statements(tree: ast.Module) -> int:
    return sum(1 for n in ast.walk(tree) if isinstance(n, ast.stmt) and not is_docstring(n))


def code_tokens(source: str, tree: ast.Module) -> int:
    """The tokens of the code: no layout, comments or docstrings."""
    spans = [
        ((d.lineno, d.col_offset), (d.end_lineno or d.lineno, d.end_col_offset or 0))
        for d in docstrings(tree)
    ]
    count = 0
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type not in LAYOUT and not any(a <= token.start < b for a, b in spans):
            count += 1
    return count


def code_lines(source: str, tree: ast.Module) -> int:
    """Lines a statement spans, less docstrings, comment lines and blank lines."""
    text = source.splitlines()
    spanned: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.stmt):
            spanned.update(range(node.lineno, (node.end_lineno or node.lineno) + 1))
    for doc in docstrings(tree):
        spanned -= set(range(doc.lineno, (doc.end_lineno or doc.lineno) + 1))
    return sum(
        1 for n in spanned if text[n - 1].strip() and not text[n - 1].strip().startswith("#")
    )


def classes(name: str, tree: ast.Module) -> list[tuple[str, int]]:
    """(``module:Class``, lines) of each class."""
    return [
        (f"{name}:{node.name}", (node.end_lineno or node.lineno) - node.lineno + 1)
        for node in ast.walk(tree)
        if isinstance(node, ast.ClassDef)
    ]


def big_classes(name: str, tree: ast.Module) -> list[tuple[str, int]]:
    """(``module:Class``, lines) of each class longer than BIG_CLASS lines."""
    return [(where, length) for where, length in classes(name, tree) if length > BIG_CLASS]


def functions(module: str, source: str) -> list[tuple[int, str, int]]:
    """(cyclomatic complexity, name, lines spanned) of every function, method and closure, by
    radon."""
    try:
        from radon.complexity import cc_visit  # type: ignore[import-untyped]
    except ImportError:
        raise SystemExit("house: the complexity figures need radon (pip install radon)") from None

    found: list[tuple[int, str, int]] = []

    def visit(block: Any, owner: str) -> None:
        if hasattr(block, "closures"):  # a function or method (a class has none)
            span = block.endline - block.lineno + 1
            found.append((block.complexity, f"{module}:{owner}{block.name}", span))
            for inner in block.closures:
                visit(inner, f"{owner}{block.name}.")

    for block in cc_visit(source):
        visit(block, f"{block.classname}." if getattr(block, "classname", None) else "")
    return found


Figures = list[tuple[str, list[tuple[int, str, int]], list[tuple[str, int]], int]]


def figures(root: Path) -> Figures:
    """Per module under ROOT: its name, its functions (:func:`functions`), its classes' lengths and
    its lines: what :func:`over_limits` holds to the limits (radon's pass is the cost: read once)."""
    root = root.resolve()
    found: Figures = []
    for path in sorted(root.rglob("*.py")):
        source = path.read_text(encoding="utf-8")
        name = module_name(root, path)
        tree = ast.parse(source)
        found.append((name, functions(name, source), classes(name, tree), len(source.splitlines())))
    return found


def over_limits(
    root: Path, limits: tuple[int, int, int] | None = None, measured: Figures | None = None
) -> list[str]:
    """Each function above complexity MOST_COMPLEX, class over BIG_CLASS lines and module over
    BIG_MODULE lines under ROOT (or other LIMITS, in that order), named with its figure
    (tests/test_house_limits.py holds none). MEASURED: :func:`figures` of ROOT, if already read."""
    most_complex, big_class, big_module = limits or (MOST_COMPLEX, BIG_CLASS, BIG_MODULE)
    culprits: list[str] = []
    for name, funcs, lengths, lines in figures(root) if measured is None else measured:
        culprits += [
            f"function {where}: complexity {c} (limit {most_complex})"
            for c, where, _ in funcs
            if c > most_complex
        ]
        culprits += [
            f"class {where}: {length} lines (limit {big_class})"
            for where, length in lengths
            if length > big_class
        ]
        if lines > big_module:
            culprits += [f"module {name}: {lines} lines (limit {big_module})"]
    return culprits


def rank(complexity: int) -> str:
    return next(letter for letter, top in RANKS if complexity <= top)


def spellings(tree: ast.Module, modules: set[str]) -> dict[str, int]:
    """Each name a part's ``__init__`` exports → how many times the ``__init__`` spells it."""
    exported: set[str] = set()
    for node in ast.walk(tree):
        named = [getattr(target, "id", "") for target in getattr(node, "targets", [])]
        if isinstance(node, ast.Assign) and "__all__" in named:
            exported.update(ast.literal_eval(node.value))
        elif isinstance(node, ast.ImportFrom) and node.module in modules:
            exported.update(alias.asname or alias.name for alias in node.names)
    exported.discard("export_lazily")  # mdl.lazy's, the table's loader
    spelled = dict.fromkeys(exported, 0)
    # a lazy table's values name modules ("prune": "prune"), not the export
    values = {id(v) for n in ast.walk(tree) if isinstance(n, ast.Dict) for v in n.values}
    for node in ast.walk(tree):
        if id(node) in values:
            continue
        if isinstance(node, ast.alias):
            name = node.asname or node.name.split(".")[0]
        elif isinstance(node, ast.Name):
            name = node.id
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            name = node.name
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            name = node.value
        else:
            continue
        if name in spelled:
            spelled[name] += 1
    return spelled


def module_name(root: Path, path: Path) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(name: str, is_package: bool, tree: ast.Module, modules: set[str]) -> set[str]:
    """The package modules ``name`` imports, as tests/test_architecture.py's ``_edges`` finds them."""
    here = name if is_package else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [(alias.name, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = here.split(".")[: len(here.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            full = [f"{base}.{alias.name}" for alias in node.names]
            targets = [(base, target if target in modules else base) for target in full]
        else:
            continue
        for base, target in targets:
            found.add(target)
            # importing pkg.a.b runs pkg.a first, unless we are inside it already
            pieces = base.split(".")
            parents = (".".join(pieces[:i]) for i in range(2, len(pieces)))
            found.update(p for p in parents if name != p and not name.startswith(p + "."))
    return (found & modules) - {name}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10 * len(graph)))
    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def layers(root: Path) -> tuple[str, ...]:
    """The parts, lowest first: ``LAYERS`` of the test beside ROOT (else of this tree)."""
    for tests in (root.parent / "tests", Path(__file__).resolve().parent.parent / "tests"):
        path = tests / "test_architecture.py"
        if path.exists():
            spec = importlib.util.spec_from_file_location("_house_architecture", path)
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            return tuple(module.LAYERS)
    raise SystemExit("house: no tests/test_architecture.py to read the layer order from")


def graph_figures(root: Path, trees: dict[str, tuple[Path, ast.Module]]) -> dict[str, Any]:
    order = {part: i for i, part in enumerate(layers(root))}
    top = root.name
    modules = set(trees)
    graph = {
        name: imports(name, path.name == "__init__.py", tree, modules)
        for name, (path, tree) in trees.items()
    }

    def part(module: str) -> str | None:
        """A module's part; "" for a top-level module (below every part); None for the package
        itself and its ``__main__``, which stand above everything."""
        pieces = module.split(".")
        if len(pieces) > 2 or (len(pieces) == 2 and pieces[1] in order):
            return pieces[1]
        return "" if len(pieces) == 2 and pieces[1] != "__main__" else None

    def level(p: str) -> int:
        return order.get(p, -1)

    up = sorted(
        f"{src} -> {dst}"
        for src, targets in graph.items()
        for dst in targets
        if (a := part(src)) is not None and (b := part(dst)) is not None and a != b
        if level(b) > level(a) and not (src == top and dst == f"{top}.api")
    )
    parts: dict[str, set[str]] = {}
    for src, targets in graph.items():
        for dst in targets:
            a, b = part(src), part(dst)
            if a and b and a != b:
                parts.setdefault(a, set()).add(b)
    return {
        "up_arrows": up,
        "module_cycles": cycles(graph),
        "part_cycles": cycles(parts),
        "edges": sum(len(t) for t in graph.values()),
        "unranked_parts": sorted(
            {p for m in graph if (p := part(m)) and p not in order}  # a part the test does not rank
        ),
    }


def measure(root: Path) -> dict[str, Any]:
    root = root.resolve()
    faces = {root / "__init__.py", root / "api" / "__init__.py"}
    trees: dict[str, tuple[Path, ast.Module]] = {}
    stmts = tokens = code = long = nonblank = 0
    big_modules: list[str] = []
    classes: list[str] = []
    found: list[tuple[int, str, int]] = []
    init_lines: dict[str, int] = {}
    face_lines: dict[str, int] = {}
    for path in sorted(root.rglob("*.py")):
        source = path.read_text(encoding="utf-8")
        tree = ast.parse(source)
        name = module_name(root, path)
        trees[name] = (path, tree)
        lines = source.splitlines()
        stmts += statements(tree)
        tokens += code_tokens(source, tree)
        code += code_lines(source, tree)
        nonblank += sum(1 for line in lines if line.strip())
        long += sum(1 for line in lines if len(line) > WIDTH)
        if len(lines) > BIG_MODULE:
            big_modules.append(f"{name} ({len(lines)})")
        classes += [f"{where} ({length})" for where, length in big_classes(name, tree)]
        found += functions(name, source)
        if path.name == "__init__.py":
            (face_lines if path in faces else init_lines)[str(path.relative_to(root.parent))] = len(
                lines
            )
    spelled: dict[str, int] = {}
    for path in sorted(root.glob("*/__init__.py")):
        if path not in faces:
            part = path.parent.name
            for name, n in spellings(trees[module_name(root, path)][1], set(trees)).items():
                spelled[f"{part}.{name}"] = n
    values = [c for c, _, _ in found]
    return {
        "root": str(root),
        "statements": stmts,
        "tokens": tokens,
        "tokens_per_statement": tokens / stmts,
        "code_lines": code,
        "lines_over_width": long,
        "nonblank_lines": nonblank,
        "functions": len(values),
        "complexity_median": statistics.median(values),
        "complexity_mean": statistics.mean(values),
        "ranks": {letter: sum(1 for c in values if rank(c) == letter) for letter, _ in RANKS},
        "rank_b_share": sum(1 for c in values if rank(c) == "B") / len(values),
        "complexity_max": max(values),
        "over_limit": sum(1 for c in values if c > MOST_COMPLEX),
        "over_complex": sum(1 for c in values if c > COMPLEX),
        "long_functions": sorted(
            (f"{where} ({span})" for _, where, span in found if span > LONG_FUNCTION)
        ),
        "worst": sorted(((c, where) for c, where, _ in found), reverse=True),
        "part_init_lines": sum(init_lines.values()),
        "part_init_files": init_lines,
        "face_init_lines": face_lines,
        "internal_exports": len(spelled),
        "export_spellings": sum(spelled.values()),
        "spellings_per_export": sum(spelled.values()) / len(spelled) if spelled else None,
        "spellings": spelled,
        "big_classes": classes,
        "big_modules": big_modules,
        **graph_figures(root, trees),
    }


def said(items: Iterable[str]) -> str:
    listed = [item if len(item) < 200 else f"{item[:200]}…" for item in items]
    return f"{len(listed)}" + (f"  ({'; '.join(listed)})" if listed else "")


def report(f: dict[str, Any], worst: int) -> None:
    ranks = " ".join(f"{letter}={n}" for letter, n in f["ranks"].items())
    per = f["spellings_per_export"]
    lines = [
        f"house of {f['root']}",
        f"AST statements (docstrings out): {f['statements']}",
        f"tokens per statement: {f['tokens_per_statement']:.2f} ({f['tokens']} tokens)",
        f"complexity of {f['functions']} functions: median {f['complexity_median']:g},"
        f" mean {f['complexity_mean']:.2f}; rank B {100 * f['rank_b_share']:.1f} % ({ranks})",
        f"max complexity {f['complexity_max']}; functions above {MOST_COMPLEX}: {f['over_limit']};"
        f" above {COMPLEX}: {f['over_complex']}",
        f"functions over {LONG_FUNCTION} lines: {said(f['long_functions'])}",
        f"lines of part __init__.py files: {f['part_init_lines']} in {len(f['part_init_files'])}"
        f" files; the faces: "
        + ", ".join(f"{path} {n}" for path, n in f["face_init_lines"].items()),
        f"internal exports: {f['internal_exports']}, spelled {f['export_spellings']} times in their"
        f" part's __init__: "
        + (f"{per:.2f} per export" if per is not None else "none exported (each name: its def)"),
        f"classes over {BIG_CLASS} lines: {said(f['big_classes'])}",
        f"modules over {BIG_MODULE} lines: {said(f['big_modules'])}",
        f"import graph ({f['edges']} edges): up-arrows {said(f['up_arrows'])}; cycles between"
        f" modules {said(' '.join(c) for c in f['module_cycles'])}, between parts"
        f" {said(' '.join(c) for c in f['part_cycles'])}",
        f"code lines (ast): {f['code_lines']}; lines over {WIDTH} columns: {f['lines_over_width']}"
        f" of {f['nonblank_lines']}",
    ]
    if f["unranked_parts"]:
        lines.append(f"parts tests/test_architecture.py does not rank: {f['unranked_parts']}")
    lines += [f"  {c:3} {name}" for c, name in f["worst"][:worst]]
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", nargs="?", default="mdl", type=Path)
    parser.add_argument("--worst", type=int, default=10, help="list the N most complex functions")
    parser.add_argument("--json", type=Path, help="write every figure to this file ('-': stdout)")
    args = parser.parse_args()
    figures = measure(args.root)
    if args.json is None:
        report(figures, args.worst)
    elif str(args.json) == "-":
        json.dump(figures, sys.stdout, indent=1)
    else:
        args.json.write_text(json.dumps(figures, indent=1))
        report(figures, args.worst)


if __name__ == "__main__":
    main()
