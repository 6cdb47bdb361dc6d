"""A file another run is fetching: its bar says the run waits (progress.waiting), then starts or is
closed.

Two pulls in two threads share the destination: filelock's locks are per open file, so the second
pull waits for the first exactly as a second process would. The CDN holds the first pull's body
until the second waits.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from filelock import FileLock
from runfixtures import HANG, wait_for
from servers import Fault, HubServer, make_data

from mdl.catalog.load import parse_catalog
from mdl.catalog.settings import build_settings
from mdl.catalog.specs import ModelSpec
from mdl.download.puller import pull_models
from mdl.progress import Event, NullProgress
from mdl.report import RunReport
from mdl.setting import Overrides
from mdl.store.store import Store

WEIGHTS = make_data(3_000_000, seed=71)
WAIT = "another mdl run is fetching it"  # the display says "waiting"


class Events(NullProgress):
    """Every event but bytes, in order (a real Progress, not the thing under test)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.calls: list[Event] = []

    def emit(self, event: Event) -> None:
        if event.kind not in ("begin", "advance"):
            with self.lock:
                self.calls.append(event)

    def kinds(self, key: str) -> list[str]:
        with self.lock:
            return [e.kind for e in self.calls if e.key == key]


@pytest.fixture
def model(hub: HubServer) -> ModelSpec:
    hub.add_repo("org/w", {"weights.bin": WEIGHTS})
    return parse_catalog('[models.w]\nrepo = "org/w"\n').models[0]


def pull(hub: HubServer, dest: Path, spec: ModelSpec, progress: Events, **flags: Any) -> RunReport:
    settings = build_settings(Overrides(**flags), environ={"HF_ENDPOINT": hub.url}, dest=dest)
    return pull_models([spec], settings, progress=progress)


def test_a_held_file_says_so_on_its_bar_then_starts_when_the_lock_is_free(
    hub: HubServer, model: ModelSpec, tmp_path: Path
) -> None:
    dest = tmp_path / "models"
    lock_path = Store(dest).lock_path("w", "weights.bin")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    events = Events()
    reports: list[RunReport] = []
    with FileLock(lock_path, timeout=0):  # "another run" holds weights.bin
        runner = threading.Thread(target=lambda: reports.append(pull(hub, dest, model, events)))
        runner.start()
        wait_for(lambda: "waiting" in events.kinds("w/weights.bin"))
        assert events.kinds("w/weights.bin") == ["waiting"]  # no bar with bytes while it waits
    runner.join(timeout=HANG)
    (report,) = reports
    assert report.ok
    assert events.kinds("w/weights.bin") == ["waiting", "start", "finish"]
    waiting = next(e for e in events.calls if e.kind == "waiting")
    assert (waiting.key, waiting.message) == ("w/weights.bin", WAIT)
    start = next(e for e in events.calls if e.kind == "start")
    assert (start.key, start.label, start.model, start.path) == (
        "w/weights.bin",
        "w/weights.bin",
        "w",
        "weights.bin",
    )
    assert not [e for e in events.calls if e.kind == "note"]  # said on the bar, not as a loose line
    assert (dest / "w" / "weights.bin").read_bytes() == WEIGHTS


def test_a_file_the_other_run_finished_is_closed_not_left_waiting(
    hub: HubServer, model: ModelSpec, tmp_path: Path
) -> None:
    dest = tmp_path / "models"
    gate = threading.Event()
    held = hub.cdn.faults.add(
        Fault.call(lambda: gate.wait(10 * HANG), path_prefix="/blobs/", times=None)
    )
    first_events, second_events = Events(), Events()
    reports: dict[str, RunReport] = {}
    first = threading.Thread(
        target=lambda: reports.update(first=pull(hub, dest, model, first_events))
    )
    first.start()
    try:
        wait_for(lambda: held.seen > 0)  # the first run holds the lock and is fetching
        second = threading.Thread(
            target=lambda: reports.update(second=pull(hub, dest, model, second_events))
        )
        second.start()
        wait_for(lambda: "waiting" in second_events.kinds("w/weights.bin"))
    finally:
        gate.set()
    first.join(timeout=HANG)
    second.join(timeout=HANG)
    assert reports["first"].ok and reports["second"].ok
    assert [f.action for f in reports["second"].files] == ["skipped"]
    assert second_events.kinds("w/weights.bin") == ["waiting", "finish"]
    last = second_events.calls[-1]
    assert (last.kind, last.key, last.ok) == ("finish", "w/weights.bin", True)
    assert last.message == "fetched by another mdl run"
