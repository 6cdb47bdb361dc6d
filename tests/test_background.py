"""The one way to run background work: the work hears its stop, a stop joins it, a failure is
said in one line."""

from __future__ import annotations

import ast
import logging
import threading
from pathlib import Path

import pytest

from mdl.background import JOIN, Background, every


def test_the_work_runs_until_stopped_and_stop_joins_it() -> None:
    ran = threading.Event()
    seen: list[bool] = []

    def work(stop: threading.Event) -> None:
        ran.set()
        seen.append(stop.wait(60))  # True only when told to stop

    helper = Background("t-work", work).start()
    assert ran.wait(30)
    assert helper.alive
    helper.stop()
    assert not helper.alive
    assert seen == [True]


def test_every_repeats_until_the_shared_stop() -> None:
    calls = threading.Semaphore(0)
    shared = threading.Event()
    with Background("t-every", every(0.001, calls.release), stop=shared) as helper:
        for _ in range(3):
            assert calls.acquire(timeout=30)
        assert helper.stopping is shared
    assert shared.is_set()
    assert not helper.alive


def test_a_failure_is_one_line_and_the_caller_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    def work(stop: threading.Event) -> None:
        raise ValueError("boom at part 3")

    with caplog.at_level(logging.WARNING, logger="mdl.background"), Background("t-fail", work):
        pass
    lines = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert [r.getMessage() for r in lines] == ["background work t-fail failed: boom at part 3"]
    assert lines[0].exc_info is None


def test_a_stop_from_the_work_itself_does_not_join_itself() -> None:
    done = threading.Event()

    def work(stop: threading.Event) -> None:
        helper.stop()
        done.set()

    helper = Background("t-self", work)
    helper.start()
    assert done.wait(30)
    helper.stop()
    assert helper.stopping.is_set()


# the one thread that is not background work: a numpy import the interpreter's exit must wait for
# (a daemon killed inside an import leaves the module half made for the exit's handlers)
NOT_BACKGROUND = {"mdl/xet/_xorb.py"}
RAW = {"Thread", "Timer"}  # threading's: a thread (or a thread that waits, then runs) of one's own
POOLS = {"ThreadPoolExecutor", "ProcessPoolExecutor", "ThreadPool", "Pool"}


def _name(node: ast.expr) -> str | None:
    return node.id if isinstance(node, ast.Name) else getattr(node, "attr", None)


def raw_threads(tree: ast.Module) -> list[int]:
    """The lines that start a thread of their own: threading.Thread or Timer (used, subclassed or
    imported by name), or the _thread module."""
    return [
        node.lineno
        for node in ast.walk(tree)
        if (isinstance(node, ast.Attribute) and node.attr in RAW)
        or (
            (isinstance(node, ast.ImportFrom) and node.module == "threading")
            and any(a.name in RAW for a in node.names)
        )
        or (isinstance(node, ast.ImportFrom) and node.module == "_thread")
        or (isinstance(node, ast.Import) and any(a.name == "_thread" for a in node.names))
    ]


def kept_pools(tree: ast.Module, pools: set[str]) -> list[int]:
    """The lines that make a pool (``pools``: the executors and their subclasses) that outlives
    the call making it: one not made in a ``with``, nor a local shut down in a ``finally`` of
    the function that made it (an attribute, a global, a pool handed on)."""
    scoped: set[int] = set()  # id() of the calls that are
    for node in ast.walk(tree):
        if isinstance(node, ast.With):
            scoped.update(id(item.context_expr) for item in node.items)
        if isinstance(node, ast.FunctionDef):
            shut = {
                call.func.value.id
                for block in ast.walk(node)
                if isinstance(block, ast.Try)
                for statement in block.finalbody
                for call in ast.walk(statement)
                if isinstance(call, ast.Call)
                and isinstance(call.func, ast.Attribute)
                and call.func.attr == "shutdown"
                and isinstance(call.func.value, ast.Name)
            }
            scoped.update(
                id(made.value)
                for made in ast.walk(node)
                if isinstance(made, ast.Assign)
                and len(made.targets) == 1
                and isinstance(made.targets[0], ast.Name)
                and made.targets[0].id in shut
            )
    return [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and _name(node.func) in pools and id(node) not in scoped
    ]


def _trees() -> dict[str, ast.Module]:
    root = Path(__file__).resolve().parent.parent
    return {
        path.relative_to(root).as_posix(): ast.parse(path.read_text(encoding="utf-8"))
        for path in sorted((root / "mdl").rglob("*.py"))
    }


def _pools(trees: dict[str, ast.Module]) -> set[str]:
    """The executors and mdl's subclasses of them (a class whose instance is a pool)."""
    return POOLS | {
        node.name
        for tree in trees.values()
        for node in ast.walk(tree)
        if isinstance(node, ast.ClassDef) and any(_name(base) in POOLS for base in node.bases)
    }


def test_no_thread_is_started_but_through_background() -> None:
    """docs/maintaining.md's "Background work": one way to run it, so one stop rule. No thread of
    its own (threading.Thread, threading.Timer, _thread), and no pool that outlives the call that
    made it (its threads left running on a path that skipped its shutdown)."""
    trees = _trees()
    pools = _pools(trees)
    raw = sorted(
        f"{name}:{line}"
        for name, tree in trees.items()
        if name not in {"mdl/background.py", *NOT_BACKGROUND}
        for line in raw_threads(tree)
    )
    kept = sorted(
        f"{name}:{line}" for name, tree in trees.items() for line in kept_pools(tree, pools)
    )
    assert (raw, kept) == ([], [])


@pytest.mark.parametrize(
    ("code", "found"),
    [
        ("import threading\nthreading.Thread(target=f).start()", "raw"),
        ("import threading\nthreading.Timer(5, f).start()", "raw"),
        ("from threading import Timer\nTimer(5, f).start()", "raw"),
        ("import _thread\n_thread.start_new_thread(f, ())", "raw"),
        ("from _thread import start_new_thread\nstart_new_thread(f, ())", "raw"),
        ("class C(threading.Thread):\n    pass", "raw"),
        ("def f(self):\n    self.pool = ThreadPoolExecutor(4)", "kept"),
        ("POOL = ThreadPoolExecutor(4)", "kept"),
        ("def f():\n    pool = ThreadPoolExecutor(4)\n    return pool", "kept"),
        ("def f():\n    return g(concurrent.futures.ThreadPoolExecutor(4))", "kept"),
        ("class P(ThreadPoolExecutor):\n    pass\ndef f():\n    return P()", "kept"),
        ("def f():\n    with ThreadPoolExecutor(4) as pool:\n        pool.map(g, x)", ""),
        ("class P(ThreadPoolExecutor):\n    pass\ndef f():\n    with P() as p:\n        g(p)", ""),
        (
            "def f():\n    pool = ThreadPoolExecutor(4)\n    try:\n        g(pool)\n"
            "    finally:\n        pool.shutdown()",
            "",
        ),
        ("import threading\nthreading.Event().wait(1)", ""),
    ],
)
def test_the_thread_rule_finds_each_way_to_start_a_thread(code: str, found: str) -> None:
    """The rule's finder on each way a thread or a pool is made: it cannot pass by missing one."""
    tree = ast.parse(code)
    pools = _pools({"x": tree})
    assert (bool(raw_threads(tree)), bool(kept_pools(tree, pools))) == (
        found == "raw",
        found == "kept",
    )


@pytest.mark.realtime  # waits out the default bound
def test_a_stop_without_a_bound_waits_for_the_works_end() -> None:
    """``join=None``: the caller's next step needs what the work does after its stop is told."""
    go = threading.Event()

    def work(stop: threading.Event) -> None:
        stop.wait()
        assert go.wait(60)  # still working after the stop was told, past the default bound

    helper = Background("t-tail", work, join=None).start()
    stopper = threading.Thread(target=helper.stop)
    stopper.start()
    stopper.join(JOIN + 1)
    assert stopper.is_alive(), "stop gave up on work its caller needs ended"
    go.set()
    stopper.join(60)
    assert not stopper.is_alive() and not helper.alive
