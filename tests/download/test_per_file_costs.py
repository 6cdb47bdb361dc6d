"""What a pull of many small files costs per file beyond its bytes (issue 90): counted, not timed.
Each small-file worker asks on connections of its own (no pool lock or scan shared with the other
workers), a file's lock is taken in a folder opened once for the run, and the run log formats each
file's line once."""

from __future__ import annotations

import itertools
import logging
import os
import threading
from pathlib import Path
from typing import Any

import httpcore2
import pytest
from servers import Fault, HubServer, make_data

from mdl.catalog.load import parse_catalog
from mdl.catalog.settings import build_settings
from mdl.cli.render.logfile import SharedRotatingFileHandler
from mdl.download.puller import pull_models
from mdl.progress import NullProgress
from mdl.setting import Overrides

FILES = {f"part/f{i:02d}.json": make_data(1_000 + i, seed=i) for i in range(40)}


def pull(
    hub: HubServer, dest: Path, files: dict[str, bytes] = FILES, repo: str = "org/many"
) -> None:
    hub.add_repo(repo, files)
    models = parse_catalog(f'[models.many]\nrepo = "{repo}"\n').models
    settings = build_settings(environ={"HF_ENDPOINT": hub.url}, dest=dest, flags=Overrides())
    report = pull_models(models, settings, progress=NullProgress())
    assert {f.action for f in report.files} == {"downloaded"}
    for path, data in files.items():
        assert (dest / "many" / path).read_bytes() == data


def test_each_small_file_worker_asks_on_a_pool_no_other_thread_uses(
    hub: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every file's request goes through a pool that only its worker's thread asks on: no worker
    waits on another's pool lock, nor looks at another's connections (with one shared pool, every
    request and every answer's end did both, for each of the run's connections)."""
    asked: dict[int, set[str]] = {}  # pool -> the threads that asked on it
    files = 0
    real = httpcore2.ConnectionPool.handle_request

    def spy(pool: httpcore2.ConnectionPool, request: httpcore2.Request) -> Any:
        nonlocal files
        if b"/resolve/" in request.url.target:
            files += 1
            asked.setdefault(id(pool), set()).add(threading.current_thread().name)
        return real(pool, request)

    monkeypatch.setattr(httpcore2.ConnectionPool, "handle_request", spy)
    # the first file's answer waits for a second file's request: two workers ask at once, the case
    # a shared pool made them wait on each other (not left to the order threads start in)
    second, seen = threading.Event(), itertools.count(1)

    def hold_first() -> None:
        if (n := next(seen)) == 1:
            second.wait(30)
        elif n == 2:
            second.set()

    hub.faults.add(Fault.call(hold_first, path_prefix="/org/many/resolve/", times=None))
    pull(hub, tmp_path / "d")
    assert files == len(FILES) and second.is_set()
    assert len(asked) > 1
    assert all(len(threads) == 1 for threads in asked.values()), asked


def test_a_pull_opens_the_state_folders_once_not_per_file(
    hub: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Folders opened during the pull (the lock folder's walk included) stay far below one per
    file: each file's lock is taken in the folder opened once for all the files, as its ``.part``
    and its rename are (``confined.reused``)."""
    opened: list[int] = []
    real = os.open

    def spy(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if flags & os.O_DIRECTORY:
            opened.append(flags)
        return real(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", spy)
    few = dict(list(FILES.items())[:10])
    pull(hub, tmp_path / "few", few, repo="org/few")
    for_few = len(opened)
    opened.clear()
    pull(hub, tmp_path / "d")
    # 30 files more, a few folders more (a walk per file to its lock folder alone opened 3 each)
    assert len(opened) - for_few < 10, (for_few, len(opened))


def test_the_run_log_formats_each_line_once(tmp_path: Path) -> None:
    """One format per record: the size rule for rotating and the write share the line."""
    formatted: list[str] = []

    class Counting(logging.Formatter):
        def format(self, record: logging.LogRecord) -> str:
            formatted.append(record.getMessage())
            return super().format(record)

    handler = SharedRotatingFileHandler(tmp_path / "mdl.log", maxBytes=1 << 20, backupCount=1)
    handler.setFormatter(Counting("%(message)s"))
    try:
        for n in range(3):
            handler.emit(
                logging.LogRecord("mdl.files", logging.INFO, "", 0, f"file {n}", None, None)
            )
    finally:
        handler.close()
    assert formatted == ["file 0", "file 1", "file 2"]
    assert (tmp_path / "mdl.log").read_text() == "file 0\nfile 1\nfile 2\n"


def test_a_plan_looks_at_each_folder_its_files_go_to_once(
    hub: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whether a file can be made where it goes is asked of its folder once per plan, not once per
    file (40 files in one folder, their partials in another: 2 folders)."""
    asked: list[str] = []
    real = os.access

    def spy(path: Any, mode: int, *args: Any, **kwargs: Any) -> bool:
        asked.append(str(path))
        return real(path, mode, *args, **kwargs)

    monkeypatch.setattr(os, "access", spy)
    pull(hub, tmp_path / "d")
    assert len(asked) < 10, asked


def test_two_requests_before_the_first_file(hub: HubServer, tmp_path: Path) -> None:
    """The revision, then the listing, then the files: two round trips before the first file's
    GET (the replies' checks are plain code since issue 90: nothing to load ahead of them; a
    pull's process loads no pydantic for them, tests/cli/test_startup.py)."""
    pull(hub, tmp_path / "d")
    paths = [r.url_path for r in hub.log.records(method="GET")]
    first_file = next(i for i, path in enumerate(paths) if "/resolve/" in path)
    assert [p.split("/")[5] for p in paths[:first_file]] == ["revision", "tree"], paths[:3]
