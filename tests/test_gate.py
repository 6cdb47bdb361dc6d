"""The gate's own shape: the files the project starts first are the ones xdist hands out first."""

from __future__ import annotations

import gc
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from conftest import FIRST, pytest_collection_modifyitems
from runfixtures import HANG

ROOT = Path(__file__).resolve().parent.parent


class Worker:
    """What xdist's scheduler asks of a worker: run these tests (by index), or stop."""

    def __init__(self, name: str) -> None:
        self.gateway = SimpleNamespace(id=name)
        self.shutting_down = False
        self.sent: list[int] = []

    def send_runtest_some(self, indices: list[int]) -> None:
        self.sent.extend(indices)

    def shutdown(self) -> None:
        self.shutting_down = True


def _addopts() -> list[str]:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    return shlex.split(pyproject["tool"]["pytest"]["ini_options"]["addopts"])


def test_the_files_started_first_are_there() -> None:
    """tests/conftest.py's ``FIRST``: a file renamed or gone would silently start last again."""
    assert [name for name in FIRST if not (ROOT / name).is_file()] == []


def test_the_files_started_first_are_the_ones_the_workers_get_first(
    pytestconfig: pytest.Config,
) -> None:
    """The README's command (pyproject's addopts: ``--dist loadfile``) hands the files out in the
    order tests/conftest.py gives them, ``FIRST`` at the head: xdist's scheduler, fed every test
    file of the suite with the files of ``FIRST`` holding the fewest tests (xdist ≥ 3.5 re-sorts
    by test count unless told not to: they would start last)."""
    from xdist.scheduler import LoadFileScheduling

    args = _addopts()
    assert args[args.index("--dist") + 1] == "loadfile"
    assert "--no-loadscope-reorder" in args
    # this run read the same addopts (a command line may not turn the reorder back on)
    assert pytestconfig.option.loadscopereorder is False
    files = sorted(str(path.relative_to(ROOT)) for path in (ROOT / "tests").rglob("test_*.py"))
    items: list[Any] = [
        SimpleNamespace(nodeid=f"{name}::test_{n}")
        for name in files
        for n in range(1 if name in FIRST else 50)
    ]
    pytest_collection_modifyitems(items)
    collection = [item.nodeid for item in items]
    config: Any = SimpleNamespace(
        option=SimpleNamespace(loadscopereorder=pytestconfig.option.loadscopereorder),
        getvalue=lambda name: ["popen"] * 3,
    )
    scheduler = LoadFileScheduling(config)
    workers = [Worker(f"gw{n}") for n in range(3)]
    for worker in workers:
        scheduler.add_node(worker)
        scheduler.add_node_collection(worker, collection)
    scheduler.schedule()
    handed = {collection[index].split("::")[0] for worker in workers for index in worker.sent}
    # each worker is handed two files to start with: the first six of FIRST, nothing else
    assert handed == set(FIRST[:6])
    queued = list(scheduler.workqueue)
    assert queued[: len(FIRST) - 6] == list(FIRST[6:])


def test_ci_runs_exactly_the_readme_test_command() -> None:
    """README's test command (mypy beside pytest) is the line .ci/run ends with (pip quiet there)."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    tests = readme[readme.index("## Tests") :]
    command = tests[tests.index("```sh\n") + 6 :].split("\n", 1)[0]
    assert "mypy mdl" in command and "python -m pytest -q" in command
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").rstrip().splitlines()[-1]
    assert ci == command.replace("pip install ", "pip install -q ")


def test_the_gate_runs_a_tenth_of_each_property_and_the_soak_run_all() -> None:
    from hypothesis import settings
    from profiles import examples

    names = ("gate", "soak", "dev")
    loaded = next(name for name in names if settings.default == settings.get_profile(name))
    try:
        runs = {}
        for name in names:
            settings.load_profile(name)
            runs[name] = [examples(most) for most in (5, 40, 300, 1000)]
    finally:
        settings.load_profile(loaded)
    assert runs == {"gate": [5, 10, 30, 100], "soak": [5, 40, 300, 1000], "dev": [5, 10, 10, 10]}
    assert (
        settings.get_profile("gate").max_examples * 10 == settings.get_profile("soak").max_examples
    )


def test_the_suite_and_the_interpreters_it_starts_write_bytecode_caches() -> None:
    """Whatever the caller's environment says (``PYTHONDONTWRITEBYTECODE=1`` in CI images): with the
    install's ``--no-compile``, an interpreter that may not write the caches compiles all it imports
    from source, every time (conftest)."""
    child = subprocess.run(
        [sys.executable, "-c", "import sys; print(sys.dont_write_bytecode)"],
        capture_output=True,
        text=True,
        timeout=HANG,
    )
    assert (sys.dont_write_bytecode, child.stdout.strip()) == (False, "False"), child.stderr


def test_what_the_worker_collected_is_out_of_the_cyclic_collectors_walks(
    request: pytest.FixtureRequest,
) -> None:
    """Collecting made at least an object per test, all alive to the worker's end: frozen
    (conftest), so no full collection walks them again."""
    assert gc.get_freeze_count() >= len(request.session.items) > 0
