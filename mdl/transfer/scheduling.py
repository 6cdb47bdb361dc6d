"""Which byte ranges a file is split into, and how a pool of streams works through them."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass

from mdl.transfer.outcomes import StreamStopped

MiB = 1024 * 1024
SPLIT_THRESHOLD = 32 * MiB  # files at least this big are fetched as parallel ranges
MIN_PIECE = 4 * MiB
PIECES_PER_CONNECTION = 4  # more pieces than streams, so a slow stream cannot hold the tail for long


@dataclass
class Piece:
    """A byte range [start, end) of the file and how much of it is on disk."""

    start: int
    end: int | None  # None: unknown size, read to EOF
    done: int = 0

    @property
    def complete(self) -> bool:
        return self.end is not None and self.start + self.done >= self.end


def plan_pieces(size: int | None, *, connections: int, split_threshold: int) -> list[Piece]:
    """Split a file into ranges: one piece for small or unknown sizes, else ~4 pieces per connection."""
    if size is None:
        return [Piece(0, None)]
    if connections <= 1 or size < split_threshold:
        return [Piece(0, size)]
    count = connections * PIECES_PER_CONNECTION
    piece = max(MIN_PIECE, -(-size // count))
    piece = -(-piece // MiB) * MiB
    return [Piece(start, min(start + piece, size)) for start in range(0, size, piece)]


def run_pieces(
    todo: list[Piece],
    run_piece: Callable[[Piece], None],
    *,
    connections: int,
    name: str,
    stopped: Callable[[], bool],
    on_failure: Callable[[], None],
) -> None:
    """Work through ``todo`` with up to ``connections`` streams, each taking the next piece when it is free.

    The first stream to fail for good calls ``on_failure`` (which must make the others end, by raising
    ``StreamStopped`` or returning) and its error is raised once every stream has ended.
    """
    queue = list(todo)
    queue_lock = threading.Lock()
    workers = max(1, min(connections, len(todo)))

    def worker() -> None:
        while not stopped():
            with queue_lock:
                if not queue:
                    return
                piece = queue.pop(0)
            try:
                run_piece(piece)
            except StreamStopped:
                return

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix=name) as pool:
        futures = [pool.submit(worker) for _ in range(workers)]
        finished, _ = wait(futures, return_when=FIRST_EXCEPTION)
        failed = [f for f in finished if f.exception() is not None]
        if failed:
            on_failure()
            wait(futures)
            exc = failed[0].exception()
            assert exc is not None
            raise exc
