"""House rules that must not rot: lint, a core free of typer/rich, and lazy heavy imports (strict
types: ``mypy mdl``, a step of its own beside pytest in the README's command).
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.slow
def test_core_imports_neither_typer_nor_rich() -> None:
    offenders = {
        str(path.relative_to(ROOT)): sorted(_imports(path) & {"typer", "rich", "click"})
        for path in sorted((ROOT / "mdl").rglob("*.py"))
        if (ROOT / "mdl" / "cli") not in path.parents
    }
    # the API's opt-in display (mdl.ProgressBars): rich, loaded only when a caller makes one
    assert offenders.pop("mdl/api/_bars.py", []) in ([], ["rich"])
    assert {name: bad for name, bad in offenders.items() if bad} == {}


@pytest.mark.slow
def test_nothing_imports_click_directly() -> None:
    assert [p.name for p in (ROOT / "mdl").rglob("*.py") if "click" in _imports(p)] == []


def test_cli_import_is_light() -> None:
    """`mdl --help` and `mdl list` stay fast: no huggingface_hub, httpx2 or rich.progress at
    import.
    """
    code = (
        "import sys, mdl.cli.app, mdl.store.inventory, mdl.cli.render.progress;heavy = [m for m in"
        " ('huggingface_hub', 'httpx2', 'rich.progress', 'rich') if m in"
        " sys.modules];print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def _tool(name: str) -> str:
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if found is None:
        pytest.skip(f"{name} is not installed (pip install '.[test]')")
    return found


# ruff is the gate's (`python -m pytest -q`), not the inner loop's (-m "not slow": run ruff on what
# you touched); mypy is a step of its own beside pytest in the README's command (what .ci/run runs).
@pytest.mark.slow
def test_ruff_is_clean() -> None:
    for check in (["check"], ["format", "--check"]):
        result = subprocess.run(
            [_tool("ruff"), *check, "mdl", "tests", "bench"],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        assert result.returncode == 0, result.stdout + result.stderr
