"""The house in figures: code lines by ast, long lines, big modules and classes, and complexity.

Usage: python bench/house.py [ROOT] [--worst N]   (ROOT defaults to mdl/; complexity needs radon:
``pip install radon``). Code lines are the lines a statement spans, without docstrings, comments
and blank lines, so the figure follows the code, not its comments; it does follow the formatter.
"""

from __future__ import annotations

import argparse
import ast
import json
import statistics
import subprocess
import sys
from collections import Counter
from pathlib import Path

WIDTH = 100
BIG_MODULE = 800
BIG_CLASS = 300


def docstring_lines(tree: ast.Module) -> set[int]:
    """The line numbers of every module, class and function docstring."""
    lines: set[int] = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        first = node.body[0] if node.body else None
        is_text = isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
        if is_text and isinstance(first.value.value, str):  # type: ignore[union-attr]
            lines.update(range(first.lineno, (first.end_lineno or first.lineno) + 1))  # type: ignore[union-attr]
    return lines


def code_lines(source: str) -> int:
    """Lines a statement spans, less docstrings, comment lines and blank lines."""
    tree = ast.parse(source)
    text = source.splitlines()
    spanned: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.stmt):
            spanned.update(range(node.lineno, (node.end_lineno or node.lineno) + 1))
    kept = spanned - docstring_lines(tree)
    return sum(1 for n in kept if text[n - 1].strip() and not text[n - 1].strip().startswith("#"))


def big_classes(path: Path, tree: ast.Module) -> list[str]:
    """``path:Class (lines)`` for each class longer than BIG_CLASS lines."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            length = (node.end_lineno or node.lineno) - node.lineno + 1
            if length > BIG_CLASS:
                found.append(f"{path}:{node.name} ({length})")
    return found


def complexities(root: Path) -> list[tuple[int, str]]:
    """(cyclomatic complexity, name) of every function and method, by radon."""
    try:
        out = subprocess.run(
            [sys.executable, "-m", "radon", "cc", "-j", str(root)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return []
    found: list[tuple[int, str]] = []

    def visit(block: dict[str, object], path: str) -> None:
        if block["type"] in ("function", "method"):
            owner = f"{block['classname']}." if block.get("classname") else ""
            found.append((int(str(block["complexity"])), f"{path}:{owner}{block['name']}"))
        for inner in block.get("closures", []) or []:  # type: ignore[attr-defined]
            visit(inner, path)

    for path, blocks in json.loads(out).items():
        for block in blocks:
            visit(block, path)
    return found


def rank(complexity: int) -> str:
    """radon's letter for a complexity: A 1-5, B 6-10, C 11-20, D 21-30, E 31-40, F 41+."""
    for letter, top in (("A", 5), ("B", 10), ("C", 20), ("D", 30), ("E", 40)):
        if complexity <= top:
            return letter
    return "F"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", nargs="?", default="mdl", type=Path)
    parser.add_argument("--worst", type=int, default=10, help="list the N most complex functions")
    args = parser.parse_args()
    code = long = nonblank = 0
    big_modules: list[str] = []
    classes: list[str] = []
    for path in sorted(args.root.rglob("*.py")):
        source = path.read_text(encoding="utf-8")
        lines = source.splitlines()
        code += code_lines(source)
        nonblank += sum(1 for line in lines if line.strip())
        long += sum(1 for line in lines if len(line) > WIDTH)
        if len(lines) > BIG_MODULE:
            big_modules.append(f"{path} ({len(lines)})")
        classes += big_classes(path, ast.parse(source))
    print(f"code lines (ast): {code}")
    print(f"lines over {WIDTH} columns: {long} of {nonblank} ({100 * long / nonblank:.1f} %)")
    print(f"modules over {BIG_MODULE} lines: {len(big_modules)} {big_modules}")
    print(f"classes over {BIG_CLASS} lines: {len(classes)} {classes}")
    found = complexities(args.root)
    if not found:
        print("complexity: radon is not installed (pip install radon)")
        return
    counts = Counter(rank(c) for c, _ in found)
    mean = statistics.mean(c for c, _ in found)
    over = sum(1 for c, _ in found if c > 20)
    ranks = " ".join(f"{letter}={counts.get(letter, 0)}" for letter in "ABCDEF")
    print(f"functions: {len(found)}, mean complexity {mean:.2f}, {ranks}, over 20: {over}")
    for complexity, name in sorted(found, reverse=True)[: args.worst]:
        print(f"  {complexity:3} {name}")


if __name__ == "__main__":
    main()
