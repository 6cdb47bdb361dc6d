"""The house's limits, held every round (issue 69): no function above radon's cyclomatic
complexity 15, no class over 300 lines, no module over 800 lines. Counted by bench/house.py, the
figures' one counter; ruff's C901/PLR0912/PLR0915 (pyproject.toml) hold the linter's side in
tests/test_style.py::test_ruff_is_clean.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


@functools.cache
def _house() -> ModuleType:
    spec = importlib.util.spec_from_file_location("_house", ROOT / "bench" / "house.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@functools.cache
def _mdl() -> Any:
    """mdl/'s figures, read once for both tests (radon's pass over mdl/ is most of their cost)."""
    return _house().figures(ROOT / "mdl")


def test_mdl_is_within_the_limits() -> None:
    culprits = _house().over_limits(ROOT / "mdl", measured=_mdl())
    assert culprits == [], "over the house's limits:\n" + "\n".join(culprits)


def test_each_limit_names_its_culprit(tmp_path: Path) -> None:
    """A function one branch over, a class a line over and a module a line over are each named
    with their figure; the ones at the limit are not."""
    house = _house()
    branches = "".join(f"    if x == {i}:\n        return {i}\n" for i in range(13))
    at_limit = f"def at_limit(x):\n{branches}    return -1 if x else 0\n"  # 1 + 13 + 1
    over = f"def over(x):\n{branches}    return -1 if x or x else 0\n"  # a boolean operator more
    body = "".join(f"    a{i} = {i}\n" for i in range(299))
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "code.py").write_text(
        at_limit + over + f"class Fits:\n{body}\n\nclass Big:\n{body}    b = 0\n"
    )
    (package / "long.py").write_text("x = 0\n" * 801)
    (package / "fits.py").write_text("x = 0\n" * 800)
    assert house.over_limits(package) == [
        "function pkg.code:over: complexity 16 (limit 15)",
        "class pkg.code:Big: 301 lines (limit 300)",
        "module pkg.long: 801 lines (limit 800)",
    ]


def test_mdl_keeps_room_to_change() -> None:
    """Issue 89's room: no function at complexity 14-15, no class within 20 lines of its limit, no
    module within 50 (the next change to the engine's core must not first remove lines)."""
    culprits = _house().over_limits(ROOT / "mdl", limits=(13, 280, 750), measured=_mdl())
    assert culprits == [], "at the edge of the house's limits:\n" + "\n".join(culprits)
