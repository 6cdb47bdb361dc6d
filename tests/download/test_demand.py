"""The order a pull that serves loaders takes its files in: natural order (shard 2 before shard
10), and a file a loader waits on before any other still to start, in either lane."""

from __future__ import annotations

from pathlib import Path

from mdl.download._plan import Action, Decision, PlannedFile
from mdl.download._workers import BIG, SMALL, WorkQueue
from mdl.download.demand import Demand, natural_key
from mdl.sources.resolve import RemoteFile
from mdl.store.layout import Placement
from mdl.store.store import Store
from mdl.transfer.scheduling import SPLIT_THRESHOLD

SHARDS = [f"model-{n:d}-of-12.safetensors" for n in (10, 2, 1, 12, 11)]


def _queue(tmp_path: Path, names: list[str], size: int, demand: Demand | None) -> WorkQueue:
    store, todo = Store(tmp_path), {}
    for i, name in enumerate(names):
        final = store.final_path("m", name)
        remote = RemoteFile("m", name, f"http://127.0.0.1:1/{name}", size=size)
        todo[i] = PlannedFile(
            remote, Decision(Action.DOWNLOAD, "missing"), 0, Placement(final, final, store)
        )
    return WorkQueue(todo, split=True, small_workers=1, demand=demand)


def _taken(queue: WorkQueue, lane: str) -> list[str]:
    order = []
    while (taken := queue.take(lane)) is not None:
        order.append(taken[1].remote.path)
        queue.done(taken[0])
    return order


def test_natural_order_reads_numbers_as_numbers() -> None:
    assert sorted(SHARDS, key=lambda p: natural_key("m", p)) == [
        f"model-{n}-of-12.safetensors" for n in (1, 2, 10, 11, 12)
    ]
    assert natural_key("m", "a10") > natural_key("m", "a9") > natural_key("m", "a")


def test_big_files_go_in_natural_order_and_a_wanted_one_first(tmp_path: Path) -> None:
    demand = Demand()
    queue = _queue(tmp_path, SHARDS, SPLIT_THRESHOLD, demand)
    first = queue.take(BIG)
    assert first is not None and first[1].remote.path == "model-1-of-12.safetensors"
    demand.want("m", "model-12-of-12.safetensors")
    demand.want("m", "model-1-of-12.safetensors")  # started already: nothing to move
    assert _taken(queue, BIG) == [f"model-{n}-of-12.safetensors" for n in (12, 2, 10, 11)]
    assert demand.wanted() == [("m", "model-1-of-12.safetensors")]


def test_a_wanted_small_file_is_taken_first_too(tmp_path: Path) -> None:
    demand = Demand()
    names = ["config.json", "tokenizer.json", "vocab.txt"]
    queue = _queue(tmp_path, names, 100, demand)
    demand.want("m", "vocab.txt")
    assert _taken(queue, SMALL) == ["vocab.txt", "config.json", "tokenizer.json"]


def test_without_a_loader_the_largest_go_first_as_before(tmp_path: Path) -> None:
    queue = _queue(tmp_path, SHARDS, SPLIT_THRESHOLD, None)
    assert _taken(queue, BIG) == SHARDS  # (same sizes: listing order)
