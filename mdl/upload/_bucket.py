"""The publish target, a place in an object store (``s3://bucket/prefix``, ``file:///folder``),
through its writer: what it holds already (by SHA-256), uploads hashed as sent. Each file's object
is named by its content, ``<target>/<model>/<sha256>`` (``mdl.buckets.versions.LAYOUT``): a name no
other version's file can take.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from mdl.buckets.protocol import side_of
from mdl.buckets.registry import store_for
from mdl.errors import InterruptedByUserError, MdlError
from mdl.progress import Progress
from mdl.redact import Secrets
from mdl.report import FileOutcome, failed

log = logging.getLogger("mdl.publish")
HEAD_WORKERS = 16  # looks to decide what to skip are latency-bound: many at once
STOP_POLL = 0.05  # seconds: an upload waiting for leave to complete looks at the stop this often


@dataclass(frozen=True)
class ReadyFile:
    """A verified local file of a model: where its bytes are, and what they are."""

    model: str
    path: str  # save path in the model folder
    local: Path  # where the bytes are (a blob in the Hugging Face cache layout)
    size: int
    sha256: str
    source: str


class Bucket:
    """The publish target (``target``: its URI, no trailing slash), through one writer of its
    store (S3: one client, its uploads ``connections`` parts in flight at most)."""

    def __init__(
        self,
        target: str,
        *,
        endpoint: str | None = None,
        secrets: Secrets | None = None,
        connections: int = 2,
    ) -> None:
        store = store_for(target)
        assert store is not None, "a publish target is in a store"
        self.target, self.connections = target, max(2, connections)
        self.root = target + "/"  # the folder of its names (mdl.buckets.names), as a fill's
        self.writer = store.writer(endpoint=endpoint, secrets=secrets, parts=self.connections)

    def uri(self, *parts: str) -> str:
        """``<target>/<parts…>``."""
        return "/".join((self.target, *parts))

    def object_of(self, f: ReadyFile) -> str:
        """Where the file's bytes go: ``<target>/<model>/<sha256>``, once however many versions
        or paths hold them."""
        return self.uri(f.model, f.sha256)

    def already_there(self, model: str, files: Sequence[ReadyFile]) -> set[str]:
        """The sha256 of the contents among ``files`` the target already holds (only objects
        listed at their size, then proved by the SHA-256 of their bytes)."""
        sizes = {item.uri: item.size for item in self.writer.listing(self.uri(model) + "/")}
        distinct = {f.sha256: f for f in files}.values()
        if not (candidates := [f for f in distinct if sizes.get(self.object_of(f)) == f.size]):
            return set()
        pool = ThreadPoolExecutor(max_workers=min(HEAD_WORKERS, len(candidates)))
        try:
            same = pool.map(
                lambda f: self.writer.holds(
                    self.object_of(f), f.local, size=f.size, sha256=f.sha256
                ),
                candidates,
            )
            return {f.sha256 for f, kept in zip(candidates, list(same), strict=True) if kept}
        finally:
            # Ctrl-C does not wait for thousands of HEADs
            pool.shutdown(wait=False, cancel_futures=True)

    def send(self, files: Sequence[ReadyFile], *, progress: Progress) -> list[FileOutcome]:
        """Upload ``files``, ``connections`` at once, each closed as soon as it is done. Ctrl-C
        stops them all: unfinished uploads are aborted (a multipart upload, a folder's temp file),
        complete objects stay (to be skipped). An upload is made complete only once this (the
        main) thread has let it (``_meter``): a Ctrl-C another thread took wakes no wait here, and
        is raised here before, not after that upload completes."""
        # stop: Ctrl-C (unfinished uploads aborted); gone: this thread waits no more (an error
        # here): an upload asking for leave goes on without it, as it did before it asked
        stop, gone = threading.Event(), threading.Event()
        # what wakes this thread: an upload done, or one asking to complete (its Event to set)
        woken: queue.SimpleQueue[Future[FileOutcome] | threading.Event] = queue.SimpleQueue()
        pool = ThreadPoolExecutor(max_workers=self.connections)
        try:
            ask = _Asking(woken.put, stop, gone)
            futures = [pool.submit(self._send, f, progress, ask) for f in files]
            for future in futures:
                future.add_done_callback(woken.put)
            outcomes: list[FileOutcome] = []
            while len(outcomes) < len(futures):
                if isinstance(item := woken.get(), threading.Event):
                    item.set()  # (a Ctrl-C pending in this thread was raised by now)
                else:
                    outcomes.append(item.result())
            return outcomes
        except KeyboardInterrupt:
            stop.set()
            raise InterruptedByUserError("interrupted while uploading") from None
        finally:
            gone.set()
            pool.shutdown(cancel_futures=True)

    def _send(self, f: ReadyFile, progress: Progress, ask: _Asking) -> FileOutcome:
        """One file, uploaded over whatever is there (its object was compared first: bytes there
        that are not these are a damaged object, replaced)."""
        label, uri = f"{f.model}/{f.path}", self.object_of(f)
        try:
            self.writer.upload(
                uri,
                f.local,
                size=f.size,
                sha256=f.sha256,
                root=self.root,
                overwrite=True,
                sent=_meter(progress, f, ask.stop, ask),
                side=side_of(f.source),
            )
        except MdlError as exc:
            if ask.stop.is_set():
                raise
            progress.finish(label, ok=False, message=exc.message.removeprefix(f"{uri}: "))
            return failed(f.model, f.path, exc)._replace(dest=uri)
        if f.size == 0:  # no bytes, no progress callback: its row starts here
            progress.start(label, label=label, total=0, model=f.model, path=f.path)
        progress.finish(label, ok=True)
        log.info("%s: uploaded to %s", label, uri)
        return self.outcome(f, "uploaded")

    def outcome(self, f: ReadyFile, action: str, *, reason: str = "") -> FileOutcome:
        """A file ``skipped`` (its object is already these bytes) or ``uploaded``."""
        if action == "skipped" and not reason:
            reason = "already in the bucket (the store's SHA-256 checksum matches)"
        return FileOutcome(
            f.model,
            f.path,
            self.object_of(f),
            f.size,
            f.sha256,
            action,
            reason=reason,
            fetched=f.size if action == "uploaded" else 0,
        )


@dataclass(frozen=True)
class _Asking:
    """An upload's way to the main thread's leave before it is made whole (``_meter``)."""

    put: Callable[[threading.Event], None]  # onto the queue the main thread waits on
    stop: threading.Event  # Ctrl-C: no leave comes, the upload is aborted
    gone: threading.Event  # the main thread waits no more: the upload goes on

    def leave(self) -> None:
        self.put(given := threading.Event())
        while not given.wait(STOP_POLL) and not self.stop.is_set() and not self.gone.is_set():
            pass


def _meter(
    progress: Progress, f: ReadyFile, stop: threading.Event, ask: _Asking | None = None
) -> Callable[[int], None]:
    """A file's progress from the upload threads: its row starts with its first bytes on the
    wire; once ``stop`` is set, no more bytes go (the upload is aborted). Told 0 bytes (the upload
    is about to be made complete), it first waits for the main thread's leave (``ask``), given
    only once that thread has run, so after a Ctrl-C delivered before it."""
    label, lock, started = f"{f.model}/{f.path}", threading.Lock(), threading.Event()

    def advance(nbytes: int) -> None:
        if not nbytes and ask is not None and not stop.is_set():
            ask.leave()
        if stop.is_set():
            raise InterruptedByUserError("interrupted while uploading")
        if not nbytes:
            return  # (the last word before it is whole: no bytes, no row started for it)
        with lock:
            if not started.is_set():
                started.set()
                progress.start(label, label=label, total=f.size, model=f.model, path=f.path)
        progress.advance(label, nbytes)

    return advance
