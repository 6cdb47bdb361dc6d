"""The sha256 fed from memory, in file order (issue 90): chunks landed past the hashed prefix are
held (a copy, within ``hasher.WINDOW``) till the prefix reaches them; only what lands past the
window is read back from the ``.part``, counted in the file's ledger and its result. The memory held
never passes the window, whatever order chunks land in; a loopback fetch on several streams reads
back almost nothing, and a resumed file reads back exactly the bytes it kept."""

from __future__ import annotations

import hashlib
import json
import os
import random
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from runfixtures import transfer_job
from servers import CdnServer, Fault, make_data

from mdl.errors import MdlError
from mdl.progress import Progress
from mdl.transfer import hasher as hasher_module
from mdl.transfer import scheduling
from mdl.transfer.context import JobContext, Ledger
from mdl.transfer.engine import Engine
from mdl.transfer.hasher import Hasher
from mdl.transfer.http import RetryPolicy, make_client
from mdl.transfer.job import EngineConfig

KiB, MiB = 1 << 10, 1 << 20


def chunked(data: bytes, sizes: list[int]) -> list[tuple[int, bytes]]:
    """``data`` cut into chunks of ``sizes`` (cycled), as (offset, bytes)."""
    out, at, i = [], 0, 0
    while at < len(data):
        step = sizes[i % len(sizes)]
        out.append((at, data[at : at + step]))
        at, i = at + step, i + 1
    return out


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    sizes=st.lists(st.integers(16, 4_000), min_size=1, max_size=5),
    window=st.integers(1, 20_000),
)
def test_chunks_in_any_order_hash_to_the_file_within_the_window(
    tmp_path_factory: pytest.TempPathFactory, seed: int, sizes: list[int], window: int
) -> None:
    """Offered in any order (a memoryview of a buffer reused after the call, as streams do), the
    hash is the file's; the bytes held never pass the window; exactly the bytes offered past it
    are read back."""
    data = random.Random(seed).randbytes(20_000)
    path = tmp_path_factory.mktemp("h") / "f.part"
    path.write_bytes(data)
    fd = os.open(path, os.O_RDONLY)
    mp = pytest.MonkeyPatch()
    mp.setattr(hasher_module, "WINDOW", window)
    try:
        ledger = Ledger()
        hasher = Hasher(fd, len(data), git=False, ledger=ledger)
        chunks = chunked(data, sizes)
        random.Random(seed).shuffle(chunks)
        reused = bytearray(max(sizes))
        overflowed = 0
        for offset, chunk in chunks:
            # at the frontier: hashed from the buffer; else what lies past the window read back
            if offset != hasher.position:
                overflowed += max(0, offset + len(chunk) - max(offset, hasher.position + window))
            reused[: len(chunk)] = chunk
            hasher.offer(offset, memoryview(reused)[: len(chunk)])
            reused[:] = bytes(len(reused))  # the stream's buffer, reused at once
            assert hasher.held <= window
        hasher.catch_up(len(data))
    finally:
        mp.undo()
        os.close(fd)
    assert hasher.sha256.hexdigest() == hashlib.sha256(data).hexdigest()
    assert hasher.most_held <= window and hasher.held == 0
    assert ledger.bytes["read_back"] == overflowed


def test_a_take_back_forgets_the_chunks_held_past_it(tmp_path: Path) -> None:
    """Bytes claimed no more (a stream's answer taken back) are not hashed from what was held:
    the bytes written there next are."""
    data = make_data(64 * KiB, seed=5)
    path = tmp_path / "f.part"
    path.write_bytes(data)
    fd = os.open(path, os.O_RDONLY)
    try:
        hasher = Hasher(fd, len(data), git=False)
        hasher.offer(32 * KiB, b"\0" * (16 * KiB))  # held: what a bad answer wrote
        hasher.unclaim(32 * KiB)
        assert hasher.held == 0
        hasher.offer(0, data[: 32 * KiB])
        hasher.catch_up(len(data))  # the right bytes, on disk now
    finally:
        os.close(fd)
    assert hasher.sha256.hexdigest() == hashlib.sha256(data).hexdigest()


DATA = make_data(6 * MiB + 4_321, seed=90)


@pytest.fixture
def client() -> Iterator[httpx2.Client]:
    with make_client(timeout=60, pool_size=8) as c:
        yield c


@pytest.fixture
def small_pieces(monkeypatch: pytest.MonkeyPatch) -> int:
    """Pieces and a window scaled down to a few-MiB file (the 2 GiB pull's shape: 8 MiB pieces,
    96 MiB held); the wait for the prefix long enough that no slow thread ends it."""
    window = 1 * MiB
    monkeypatch.setattr(scheduling, "PIECE", 128 * KiB)
    monkeypatch.setattr(scheduling, "MIN_PIECE", 128 * KiB)
    monkeypatch.setattr(scheduling, "HASH_WINDOW", window)
    monkeypatch.setattr(hasher_module, "WINDOW", window)
    monkeypatch.setattr("mdl.transfer._part.HASH_WINDOW", window)
    monkeypatch.setattr(hasher_module, "WINDOW_WAIT", 60.0)
    return window


def engine(client: httpx2.Client, *, retries: int = 3) -> Engine:
    config = EngineConfig(
        connections=4, retry=RetryPolicy(retries=retries, base=0.01, cap=0.05), split_threshold=1
    )
    return Engine(client, config, progress=Progress(), cancel=threading.Event())


def test_a_fetch_on_several_streams_hashes_from_memory(
    cdn: CdnServer, client: httpx2.Client, tmp_path: Path, small_pieces: int
) -> None:
    url = cdn.add_file("/f.bin", DATA)
    ledger = Ledger()
    job = transfer_job(tmp_path, url, DATA)
    result = engine(client).fetch(job, JobContext(ledger=ledger))
    assert job.final_path.read_bytes() == DATA
    assert cdn.log.body_bytes(path_prefix="/f.bin") == len(DATA)
    assert len(cdn.log.records(method="GET", path_prefix="/f.bin")) >= 8  # small pieces
    assert result.read_back == ledger.bytes["read_back"] <= len(DATA) // 20, result.read_back


def test_a_resumed_fetch_reads_back_the_bytes_it_kept(
    cdn: CdnServer, client: httpx2.Client, tmp_path: Path, small_pieces: int
) -> None:
    url = cdn.add_file("/f.bin", DATA)
    # some pieces come, then every request is refused (not tried again): the fetch stops, kept
    cdn.faults.add(Fault.http_error(404, skip=12, times=None, path_prefix="/f.bin"))
    job = transfer_job(tmp_path, url, DATA)
    with pytest.raises(MdlError):
        engine(client, retries=0).fetch(job, JobContext())
    cdn.faults.clear()
    kept = sum(done for _, _, done in json.loads(job.state_path.read_text())["pieces"])
    assert 0 < kept < len(DATA)
    ledger = Ledger()
    result = engine(client).fetch(job, JobContext(ledger=ledger))
    assert job.final_path.read_bytes() == DATA
    assert result.read_back == ledger.bytes["read_back"]
    # every byte kept is read back (no stream offered it), and little else
    assert kept <= result.read_back <= kept + len(DATA) // 20, (kept, result.read_back)
