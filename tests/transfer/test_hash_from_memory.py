"""The hash fed from memory (issue 90): the streams hand what lands to the hasher in file order, its
own thread hashes it, and only what no stream handed it is read back from the ``.part``, counted
(bytes, never time)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from runfixtures import transfer_job
from servers import CdnServer, make_data

from mdl.progress import NullProgress
from mdl.transfer.engine import Engine
from mdl.transfer.hasher import Hasher
from mdl.transfer.http import RetryPolicy, make_client
from mdl.transfer.job import EngineConfig

MiB = 1 << 20


@pytest.fixture
def client() -> Iterator[httpx2.Client]:
    with make_client(pool_size=8, timeout=10) as c:
        yield c


def read_back(
    cdn: CdnServer, client: httpx2.Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[int, int]:
    """(bytes hashed, bytes read back) of a verified 24 MiB file fetched as 4 ranges in order."""
    data = make_data(24 * MiB, seed=9001)
    job = transfer_job(tmp_path, cdn.add_file("/f.bin", data), data)
    config = EngineConfig(connections=4, retry=RetryPolicy(retries=0), split_threshold=64 * 1024)
    engine = Engine(client, config, progress=NullProgress(), cancel=threading.Event())
    made: list[Hasher] = []

    class Counted(Hasher):  # the engine's hasher, kept to be read after the fetch
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr("mdl.transfer._state.Hasher", Counted)
    engine.fetch(job)
    assert job.final_path.read_bytes() == data
    [hasher] = made  # (one attempt: nothing started it over)
    return hasher.position, hasher.read_back


def test_an_in_order_download_is_hashed_from_memory(
    cdn: CdnServer, client: httpx2.Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hashed, back = read_back(cdn, client, tmp_path, monkeypatch)
    assert hashed == 24 * MiB
    assert back <= hashed // 20, f"{back} of {hashed} bytes read back from disk"


def test_what_lands_past_the_window_is_read_back_and_counted(
    cdn: CdnServer, client: httpx2.Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No window at all: no chunk is kept, every byte is read back (the counter counts)."""
    monkeypatch.setattr("mdl.transfer.hasher.WINDOW", 0)
    hashed, back = read_back(cdn, client, tmp_path, monkeypatch)
    assert back == hashed == 24 * MiB
