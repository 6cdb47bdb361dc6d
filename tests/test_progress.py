"""The core's progress API: each call one Event handed to ``emit``; pack's and unpack's wrapper
passes calls on.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from runfixtures import make_hf_run

import mdl
from mdl.progress import ArchiveProgress, Event, Progress

METHODS = ("begin", "start", "waiting", "advance", "finish", "note")


class Calls:
    """Progress's six methods and nothing else (no ``emit``): the API takes any such object."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []

    def __getattr__(self, name: str) -> Callable[..., None]:
        if name not in METHODS:
            raise AttributeError(name)
        return lambda *args, **fields: self.calls.append((name, args, fields))


class Events(Progress):
    def __init__(self) -> None:
        self.events: list[Event] = []

    def emit(self, event: Event) -> None:
        self.events.append(event)


def test_each_call_is_one_event() -> None:
    progress = Events()
    progress.begin(total_bytes=30, files=2)
    progress.start("a", label="m/a", total=20, completed=5, model="m", path="a")
    progress.waiting("a", "another run holds the lock")
    progress.advance("a", 15)
    progress.finish("a", ok=False, message="sha256 mismatch")
    progress.note("reconnecting")
    assert progress.events == [
        Event("begin", total=30, files=2),
        Event("start", "a", "m/a", 20, completed=5, model="m", path="a"),
        Event("waiting", "a", message="another run holds the lock"),
        Event("advance", "a", nbytes=15),
        Event("finish", "a", ok=False, message="sha256 mismatch"),
        Event("note", message="reconnecting"),
    ]


def test_the_archive_wrapper_passes_each_call_on_and_names_the_archive() -> None:
    inner = Calls()
    wrapped = ArchiveProgress(inner, "best.zip")  # type: ignore[arg-type]
    wrapped.begin(total_bytes=4, files=2)
    wrapped.start("a", label="a", total=3, path="a")
    wrapped.start("b", label="b", total=1, model="m", path="b")  # a model it names stays
    wrapped.waiting("a", "w")
    wrapped.advance("a", 3)
    wrapped.finish("a", ok=True)
    wrapped.note("n")
    assert [name for name, _, _ in inner.calls] == [
        "begin",
        "start",
        "start",
        "waiting",
        "advance",
        "finish",
        "note",
    ]
    assert [fields.get("model") for name, _, fields in inner.calls if name == "start"] == [
        "best.zip",
        "m",
    ]
    assert inner.calls[4][1] == ("a", 3)


def test_pack_reports_to_any_object_with_the_methods(tmp_path: Path) -> None:
    """The API's promise (``progress=`` takes any object with Progress's methods), through pack's
    wrapper.
    """
    run = make_hf_run(tmp_path / "bert-run", steps=(100, 200), best_step=200)
    progress = Calls()
    mdl.pack(run.root, output=tmp_path / "best.zip", checkpoint="best", progress=progress)  # type: ignore[arg-type]
    starts = [fields for name, _, fields in progress.calls if name == "start"]
    assert starts and all(fields["model"] == "best.zip" for fields in starts)
    assert sum(args[1] for name, args, _ in progress.calls if name == "advance") > 0
