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


def test_no_thread_is_started_but_through_background() -> None:
    """docs/maintaining.md's "Background work": one way to run it, so one stop rule."""
    root = Path(__file__).resolve().parent.parent
    raw = sorted(
        f"{path.relative_to(root)}:{node.lineno}"
        for path in (root / "mdl").rglob("*.py")
        if path.relative_to(root).as_posix() not in {"mdl/background.py", *NOT_BACKGROUND}
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if (isinstance(node, ast.Attribute) and node.attr == "Thread")
        or (isinstance(node, ast.ImportFrom) and any(a.name == "Thread" for a in node.names))
    )
    assert raw == []


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
