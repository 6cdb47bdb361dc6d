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


class Threads(ast.NodeVisitor):
    """One pass over a module: the lines that start a thread of their own (threading.Thread or
    Timer, used, subclassed or imported by name; the _thread module), and the lines that make a
    pool (``pools``: the executors and their subclasses) that outlives the call making it: one not
    made in a ``with``, nor a local shut down in a ``finally`` of the function that made it (an
    attribute, a global, a pool handed on or returned)."""

    def __init__(self, pools: set[str]) -> None:
        self.pools, self.raw, self.kept = pools, list[int](), list[int]()
        self.scoped: set[int] = set()  # id() of the pool calls made in a ``with``
        # per function being read: its locals made a pool, its names shut down in a finally
        self.frames: list[tuple[dict[str, int], set[str]]] = [({}, set())]

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if node.attr in RAW:
            self.raw.append(node.lineno)
        self.generic_visit(node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        names = {alias.name for alias in node.names}
        if node.module == "_thread" or (node.module == "threading" and names & RAW):
            self.raw.append(node.lineno)

    def visit_Import(self, node: ast.Import) -> None:
        if any(alias.name == "_thread" for alias in node.names):
            self.raw.append(node.lineno)

    def visit_With(self, node: ast.With) -> None:
        self.scoped.update(id(item.context_expr) for item in node.items)
        self.generic_visit(node)

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        self.frames.append(({}, set()))
        self.generic_visit(node)
        made, shut = self.frames.pop()
        self.kept.extend(line for name, line in made.items() if name not in shut)

    def visit_Try(self, node: ast.Try) -> None:
        for call in (n for statement in node.finalbody for n in ast.walk(statement)):
            shutdown = isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute)
            if shutdown and call.func.attr == "shutdown" and isinstance(call.func.value, ast.Name):
                self.frames[-1][1].add(call.func.value.id)
        self.generic_visit(node)

    def visit_Assign(self, node: ast.Assign) -> None:
        (target,) = node.targets if len(node.targets) == 1 else (None,)
        if isinstance(target, ast.Name) and self._pool(node.value) and len(self.frames) > 1:
            self.frames[-1][0][target.id] = node.lineno
            self.scoped.add(id(node.value))  # kept only if its function never shuts it down
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        if self._pool(node) and id(node) not in self.scoped:
            self.kept.append(node.lineno)
        self.generic_visit(node)

    def _pool(self, node: ast.expr) -> bool:
        return isinstance(node, ast.Call) and _name(node.func) in self.pools


def read(tree: ast.Module, pools: set[str]) -> Threads:
    found = Threads(pools)
    found.visit(tree)
    return found


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
    raw, kept = [], []
    for name, tree in trees.items():
        found = read(tree, pools)
        if name not in {"mdl/background.py", *NOT_BACKGROUND}:
            raw.extend(f"{name}:{line}" for line in found.raw)
        kept.extend(f"{name}:{line}" for line in found.kept)
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
    seen = read(tree, _pools({"x": tree}))
    assert (bool(seen.raw), bool(seen.kept)) == (found == "raw", found == "kept")


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
