"""How a start loads what it needs (mdl/lazy.py): imports without the cyclic collector, then frozen;
a transfer's modules imported on a background thread while the first request is out, and waited for
before their first use."""

from __future__ import annotations

import gc
import logging
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from mdl import lazy
from mdl.lazy import import_ahead, loading


@pytest.fixture
def collector() -> Iterator[None]:
    """The collector on, as a run starts, and left as it was found (what the suite froze, frozen
    again: the tests unfreeze what they froze, and all with it)."""
    was, frozen = gc.isenabled(), gc.get_freeze_count()
    gc.enable()
    yield
    (gc.enable if was else gc.disable)()
    if frozen:
        gc.freeze()


@pytest.mark.usefixtures("collector")
def test_loading_turns_the_collector_off_and_freezes_only_in_the_cli(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    frozen = gc.get_freeze_count()
    with loading():
        assert not gc.isenabled()
        made = [[] for _ in range(1000)]  # tracked containers, made while loading
    assert gc.isenabled()
    assert gc.get_freeze_count() == frozen  # a library caller's objects are never frozen
    monkeypatch.setattr(lazy, "_depth", [0, True, False])  # (the process is not made the CLI's)
    lazy.freeze_loaded()
    assert gc.get_freeze_count() >= frozen + len(made)
    gc.unfreeze()
    with loading():
        more = [[] for _ in range(1000)]
    assert gc.isenabled()
    assert gc.get_freeze_count() >= len(more)
    gc.unfreeze()  # (the test's own objects go back to the collector)


@pytest.mark.usefixtures("collector")
def test_loading_on_two_threads_ends_with_the_last() -> None:
    inside, leave = threading.Event(), threading.Event()

    def other() -> None:
        with loading():
            inside.set()
            assert leave.wait(30)

    with loading():
        thread = threading.Thread(target=other)
        thread.start()
        assert inside.wait(30)
    assert not gc.isenabled()  # the other thread still loads
    leave.set()
    thread.join(30)
    assert gc.isenabled()


def test_loading_keeps_a_collector_that_was_off_off() -> None:
    was = gc.isenabled()
    gc.disable()
    try:
        with loading():
            pass
        assert not gc.isenabled()
    finally:
        (gc.enable if was else gc.disable)()


def _package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, body: str) -> str:
    name = f"ahead_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(body)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, name, raising=False)
    return name


def test_import_ahead_imports_on_its_thread_and_the_wait_returns_once_loaded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = _package(
        tmp_path, monkeypatch, "import threading\nBY = threading.current_thread().name\n"
    )
    wait = import_ahead(name, "json")  # (json: loaded already, not imported again)
    wait()
    assert sys.modules[name].BY == "mdl-import-ahead"
    assert not any(t.name == "mdl-import-ahead" for t in threading.enumerate())
    monkeypatch.delitem(sys.modules, name)


def test_import_ahead_of_what_is_loaded_starts_no_thread() -> None:
    before = threading.active_count()
    wait = import_ahead("json", "os")
    assert threading.active_count() == before
    wait()


def test_a_failed_import_ahead_is_the_caller_s_own_import_s_to_raise(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    name = _package(tmp_path, monkeypatch, "raise ImportError('no such thing here')\n")
    with caplog.at_level(logging.DEBUG, logger="mdl.background"):
        import_ahead(name)()
    assert caplog.records == []  # nothing said on the thread
    with pytest.raises(ImportError, match="no such thing here"):
        __import__(name)
