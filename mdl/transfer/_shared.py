"""What every stream of one engine shares: the client and its knobs, the display, Ctrl-C, the rate
cap, and the answers being read (closed to wake the streams reading them)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from functools import partial

import httpx2

from mdl.errors import InterruptedByUserError
from mdl.progress import Progress
from mdl.store.filesystem import DirSyncs
from mdl.transfer._state import DownloadState
from mdl.transfer.failures import RetryableError, transport_error
from mdl.transfer.http import say_wait
from mdl.transfer.job import EngineConfig, Opening, RangesIgnoredError
from mdl.transfer.replies import locate
from mdl.transfer.scheduling import RateLimiter, StreamStopped
from mdl.units import human_size

# why kept bytes were thrown away (a resume's outcome says it)
IGNORED_RANGE = "the server ignored the range"


class Shared:
    """What a file's streams share: the client, the config, progress, cancel, the limiter, the
    folders to fsync."""

    def __init__(
        self,
        client: httpx2.Client,
        config: EngineConfig,
        *,
        progress: Progress,
        cancel: threading.Event,
        limiter: RateLimiter | None = None,
        dirs: DirSyncs | None = None,
    ) -> None:
        self.client = client
        self.config = config
        self.progress = progress
        self.cancel = cancel
        self.limiter = limiter
        # folders to fsync before a record names their files (None: fsync at each finish)
        self.dirs = dirs
        self._open: dict[httpx2.Response, DownloadState] = {}  # by file
        self._open_lock = threading.Lock()
        # by file: a 200 to one of its ranges, unread, for the one stream it starts over as
        self._wholes: dict[DownloadState, Opening] = {}

    @contextlib.contextmanager
    def reading(self, response: httpx2.Response, state: DownloadState) -> Iterator[None]:
        """``response`` is read for ``state``'s file meanwhile: ``close`` wakes its stream."""
        with self._open_lock:
            self._open[response] = state
        try:
            yield
        finally:
            with self._open_lock:
                del self._open[response]

    def close(self, state: DownloadState | None = None) -> None:
        """Close the answers being read for ``state`` (None: for every file): their streams wake
        and end.
        """
        with self._open_lock:
            doomed = [
                response
                for response, owner in self._open.items()
                if state is None or owner is state
            ]
        for response in doomed:
            with contextlib.suppress(Exception):
                response.close()

    def keep_whole(self, state: DownloadState, opening: Opening) -> None:
        """Keep ``opening``, a 200 to a range of ``state``'s file (the whole file from byte 0, its
        body unread): the file starts over as one stream that reads on from it, never asking again
        (the first kept; another is closed)."""
        with self._open_lock:
            kept = self._wholes.setdefault(state, opening)
        if kept is not opening:
            opening.close()

    def whole_carried(self, state: DownloadState) -> None:
        """The probe's unranged answer (it located nothing: a 200 to ``bytes=0-``), if unread, is
        the whole file: kept as a range's 200 is (``keep_whole``), for the one stream that reads it
        on; a split file starts over as that stream (RangesIgnoredError), no range asked to learn
        it again."""
        carried = state.beside.opening if state.job.located is None else None
        if carried is not None and (whole := carried.take()) is not None:
            self.keep_whole(state, whole)
            if state.multi:
                raise RangesIgnoredError

    def take_whole(self, state: DownloadState) -> Opening | None:
        """The answer ``keep_whole`` kept for ``state``'s file (None: none), now the caller's."""
        with self._open_lock:
            return self._wholes.pop(state, None)

    def check_stop(self, state: DownloadState) -> None:
        if self.cancel.is_set():
            raise InterruptedByUserError(f"{state.job.label}: interrupted")
        if state.stop.is_set():
            raise StreamStopped

    def announce(self, state: DownloadState, kind: str, count: int, text: str) -> None:
        """One line per retry of a file, however many of its streams hit it at once (the highest
        count wins).
        """
        with state.lock:
            if state.announced.get(kind, 0) >= count:
                return
            state.announced[kind] = count
        if kind == "retry":  # said as every wait before a retry is
            say_wait(self.progress, state.job.label, text)
        else:
            self.progress.note(f"{state.job.label}: {text}")

    def ignored_range(self, state: DownloadState) -> None:
        """Say once that the bytes on disk are thrown away: a resume the display announced is not
        one after all.
        """
        size = human_size(state.size) if state.size is not None else "the file"
        self.announce(
            state, "whole", 1, f"server ignored the range; fetching {size} from the start"
        )

    def locate(self, state: DownloadState) -> str:
        """Where the file's ranges are answered (``replies.locate``), retried; an answer of the
        whole file is kept (``keep_whole``)."""
        return self.config.retry.run(
            lambda: locate(self.client, state, keep=partial(self.keep_whole, state)),
            what=state.job.label,
            wait=self.cancel.wait,
            on_retry=state.job.retries.add,
            announce=lambda _, line: say_wait(self.progress, state.job.label, line),
        )


def retryable(
    exc: RetryableError | httpx2.TransportError | httpx2.StreamClosed, *, what: str, url: str
) -> RetryableError:
    """The error a failed try is retried as (httpx2's said in one line, ``transport_error``);
    raised at once when no try would cure it (a refused certificate)."""
    err = exc if isinstance(exc, RetryableError) else transport_error(exc, what=what, url=url)
    if not isinstance(err, RetryableError):
        raise err from exc
    return err
