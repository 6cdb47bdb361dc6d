"""The suite's assert rewriting done once, not once per xdist worker.

pytest rewrites the asserts of every test module it imports (for its messages) and caches the result
in ``__pycache__``; in a fresh clone, or under ``PYTHONDONTWRITEBYTECODE=1``, nothing is cached, and
each worker rewrote all of them as it collected: about 25 of its 34 CPU-seconds of collection
(measured on 2 cores), before its first test. Each worker now rewrites its share (every n-th module)
first and writes pytest's own cached form, which the other workers read as they collect. A module
two workers reach at once is rewritten twice, as before: the cache is written atomically, by hash.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

TESTS = Path(__file__).resolve().parent


def rewrite_my_share(config: pytest.Config) -> int:
    """Under xdist, in a worker: rewrite and cache this worker's share of the test modules (those
    not cached yet); how many it rewrote. Nothing outside a worker, or with ``--assert=plain``."""
    worker: dict[str, Any] | None = getattr(config, "workerinput", None)
    if worker is None or config.getoption("assertmode") != "rewrite":
        return 0
    try:  # pytest's own cache (not an API): a pytest that moved it loses the sharing, nothing else
        from _pytest.assertion.rewrite import (
            PYC_TAIL,
            _read_pyc,
            _rewrite_test,
            _write_pyc,
            assertstate_key,
            get_cache_dir,
        )
    except ImportError:
        return 0
    state = config.stash[assertstate_key]
    modules = [m for m in _modules() if _asked(config, m)]
    share = modules[int(worker["workerid"].removeprefix("gw")) :: int(worker["workercount"])]
    rewritten = 0
    for module in share:
        cache = get_cache_dir(module)
        pyc = cache / (module.name[:-3] + PYC_TAIL)
        if _read_pyc(module, pyc) is not None:
            continue
        cache.mkdir(parents=True, exist_ok=True)
        source_hash, code = _rewrite_test(module, config)
        _write_pyc(state, code, source_hash, pyc)
        rewritten += 1
    return rewritten


def _modules() -> list[Path]:
    return sorted([*TESTS.rglob("test_*.py"), *TESTS.rglob("conftest.py")])


def _asked(config: pytest.Config, module: Path) -> bool:
    """Whether the run collects ``module``: under one of the paths it was given (``tests`` when
    none), or a conftest.py above one of them."""
    here = config.invocation_params.dir
    for arg in config.args:
        path = (here / arg.split("::")[0]).resolve()
        if path == module or path in module.parents:
            return True
        if module.name == "conftest.py" and module.parent in (path, *path.parents):
            return True
    return False
