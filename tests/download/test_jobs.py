"""How many files a pull keeps in flight: small files follow the work unless --jobs (or MDL_JOBS)
says.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
from runfixtures import HANG
from servers import Fault, HubServer, make_data

from mdl.catalog.load import parse_catalog
from mdl.catalog.settings import build_settings
from mdl.download._owned import MANY_JOBS
from mdl.download._workers import job_counts
from mdl.download.puller import PullSession, plan_models, pull_models, resolve
from mdl.progress import NullProgress
from mdl.setting import Overrides

FILES = {f"part/f{i:02d}.json": make_data(2_000 + i, seed=i) for i in range(40)}


def most_at_once(records: list[Any], hold: float) -> int:
    """The most requests whose answers overlapped, each held for `hold` seconds after it began."""
    starts = sorted(r.time for r in records)
    return max(sum(1 for t in starts if begin <= t < begin + hold) for begin in starts)


@pytest.fixture
def slow_repo(hub: HubServer) -> HubServer:
    hub.add_repo("org/many", FILES)
    # Every file's body waits 0.4 s after its headers: a round trip far from the Hub, not bandwidth.
    hub.faults.add(
        Fault.stall(seconds=0.4, resume=True, times=None, path_prefix="/org/many/resolve/")
    )
    return hub


def run(hub: HubServer, dest: Path, env: dict[str, str] | None = None, **flags: Any) -> None:
    models = parse_catalog('[models.many]\nrepo = "org/many"\n').models
    settings = build_settings(
        environ={"HF_ENDPOINT": hub.url, **(env or {})}, dest=dest, flags=Overrides(**flags)
    )
    report = pull_models(models, settings, progress=NullProgress())
    assert {f.action for f in report.files} == {"downloaded"}
    for path, data in FILES.items():
        assert (dest / "many" / path).read_bytes() == data


def resolves(hub: HubServer) -> list[Any]:
    return [r for r in hub.log.records(method="GET") if "/resolve/" in r.url_path]


@pytest.mark.slow
def test_small_files_get_many_in_flight_by_default(slow_repo: HubServer, tmp_path: Path) -> None:
    # The first 12 answers wait until all 12 are asked: only a run with 12 files in flight at once
    # gets past them (4, as a fixed --jobs default gave, never does). Counted from the requests'
    # start times instead, "at once" was the machine's pace: a busy one's files each took longer
    # than the hold, their starts spread past its window (10 of 12, 1 run in 5 under load).
    met = threading.Barrier(12, timeout=HANG)
    slow_repo.faults.add(
        Fault.call(met.wait, path_prefix="/org/many/resolve/", methods=frozenset({"GET"}), times=12)
    )
    run(slow_repo, tmp_path / "d")
    assert not met.broken
    assert most_at_once(resolves(slow_repo), hold=0.35) <= MANY_JOBS


class InFlight:
    """Every file's answer held ``hold`` seconds before it begins (a round trip far from the Hub),
    counting the answers held at once: the files the run has in flight, however fast it runs."""

    def __init__(self, hub: HubServer, hold: float) -> None:
        self.hold, self.now, self.most = hold, 0, 0
        self._lock = threading.Lock()
        hub.faults.add(Fault.call(self._held, path_prefix="/org/many/resolve/", times=None))

    def _held(self) -> None:
        with self._lock:
            self.now += 1
            self.most = max(self.most, self.now)
        time.sleep(self.hold)
        with self._lock:
            self.now -= 1


@pytest.mark.slow
@pytest.mark.parametrize("how", ["flag", "env"])
def test_an_explicit_jobs_count_is_obeyed(hub: HubServer, tmp_path: Path, how: str) -> None:
    hub.add_repo("org/many", FILES)
    held = InFlight(hub, hold=0.1)
    if how == "flag":
        run(hub, tmp_path / "d", jobs=3)
    else:
        run(hub, tmp_path / "d", env={"MDL_JOBS": "3"})
    assert held.most <= 3


def test_big_files_keep_the_jobs_count_small_ones_get_more(hub: HubServer, tmp_path: Path) -> None:
    hub.add_repo("org/mixed", {"a.json": b"{}", "w.safetensors": make_data(100, seed=1)})
    settings = build_settings(environ={"HF_ENDPOINT": hub.url}, dest=tmp_path)
    session = PullSession(settings, progress=NullProgress(), cancel=threading.Event())
    try:
        (model,) = parse_catalog('[models.m]\nrepo = "org/mixed"\n').models
        plans, _ = plan_models(session, resolve(session, [model], lock=None)[0])
        assert job_counts(settings, plans) == (2, 4)  # two small files: no more threads than files
        fixed = build_settings(
            environ={"HF_ENDPOINT": hub.url}, dest=tmp_path, flags=Overrides(jobs=7)
        )
        assert job_counts(fixed, plans) == (7, 1)
    finally:
        session.owned.close()
