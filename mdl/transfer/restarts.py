"""A file's streams run to its end: where its ranges go, and a start over from byte 0 when the
server ignores ranges or the file changes (never two versions spliced)."""

from __future__ import annotations

import logging
import os

from mdl.errors import NetworkError
from mdl.transfer.job import RangesIgnoredError, SourceChanged
from mdl.transfer.resume import DownloadState, keeping
from mdl.transfer.scheduling import MIN_PIECE, Piece, run_pieces, spread
from mdl.transfer.shared import IGNORED_RANGE, Shared
from mdl.transfer.stream import PieceStream

log = logging.getLogger("mdl.transfer")

MAX_RESTARTS = 4
COMPRESSED = "the server sent a compressed body, which cannot be resumed"


class Restarts:
    """One file's attempts: its streams run, and run again from zero when the bytes on disk cannot
    be continued."""

    def __init__(self, shared: Shared, state: DownloadState) -> None:
        self.shared, self.state = shared, state

    def run(self) -> None:
        """Run the streams; start over when ranges are ignored or, once, when the file changed:
        never two versions.
        """
        for _ in range(MAX_RESTARTS):
            try:
                self._run_streams()
                return
            except RangesIgnoredError:
                layout = self._ranges_ignored()
            except SourceChanged as changed:
                layout = self._changed(changed)
            self._start_over(layout)
        raise NetworkError(
            f"{self.state.job.label}: the server kept changing the file or ignoring ranges; giving"
            " up"
        )

    def _ranges_ignored(self) -> list[Piece]:
        state, job = self.state, self.state.job
        log.info("%s: server ignores ranges, restarting as one stream", job.label)
        kept = state.on_disk() > 0
        # kept bytes fetched again (a coded body: not ranges)
        if kept and not state.whole_only:
            self.shared.ignored_range(state)
        if kept:
            why = COMPRESSED if state.whole_only else IGNORED_RANGE
            state.discarded = state.discarded or why
        job.retries.add("server ignores ranges, restarted as one stream")
        return [Piece(0, state.size)]

    def _changed(self, changed: SourceChanged) -> list[Piece]:
        state, job = self.state, self.state.job
        state.count_change()
        log.info("%s: the file changed on the server, starting over", job.label)
        job.retries.add("the file changed on the server, started over")
        self.shared.progress.note(
            f"{job.label}: the file changed on the server, downloading the new version"
        )
        if state.on_disk() > 0:
            state.discarded = state.discarded or "the file changed on the server"
        size = state.size if changed.new_size is None else changed.new_size
        return self.shared.config.plan(size)

    def _start_over(self, layout: list[Piece]) -> None:
        state = self.state
        self.shared.progress.advance(state.job.label, -state.on_disk())
        state.reset(layout)
        os.ftruncate(state.fd, 0)  # never splice two versions: drop every byte of the old one
        if state.size is not None:
            os.ftruncate(state.fd, state.size)
        state.save()

    def _run_streams(self) -> None:
        state, job = self.state, self.state.job
        connections = self.shared.config.streams(state.size)
        state.multi = len(state.pieces) > 1
        state.url = job.located if job.located and not state.restarted else job.url
        if state.multi and not all(p.complete for p in state.pieces):
            state.multi = self._aim_ranges(connections)
        todo = [p for p in state.pieces if not p.complete]
        small = state.size is None or state.size < self.shared.config.split_threshold
        if len(todo) <= 1 and small:
            self._run_alone(todo)
        else:
            self._run_parallel(todo, connections)

    def _run_alone(self, todo: list[Piece]) -> None:
        """A small file: one stream, hashed as it arrives."""
        # a resumed prefix first: then the stream hashes from memory
        self.state.hasher.catch_up(self.state.contiguous())
        for piece in todo:
            PieceStream(self.shared, self.state, piece).run()

    def _run_parallel(self, todo: list[Piece], connections: int) -> None:
        state, shared = self.state, self.shared
        workers = max(1, min(connections, len(todo)))
        with keeping(state, checkpoint=shared.config.checkpoint_interval, on_failure=self._stop):
            run_pieces(
                todo,
                lambda piece: PieceStream(shared, state, piece).run(),
                connections=connections,
                name=f"get:{state.job.label}",
                stopped=lambda: shared.cancel.is_set() or state.stop.is_set(),
                on_failure=self._stop,
                steal=(lambda: state.steal(workers)) if state.multi else None,
            )
        shared.check_stop(state)  # Ctrl-C: the streams ended early

    def _stop(self) -> None:
        self.state.stop.set()
        self.shared.close(self.state)  # only this file's streams: other files go on

    def _aim_ranges(self, connections: int) -> bool:
        """Where a split file's ranges go, and whether in parallel (not if nothing tells two
        versions' ranges apart).
        """
        state, job = self.state, self.state.job
        # A probe of this run found where ranges are answered (state.url is there), or a hash will
        # prove the result whatever the answers' versions: every stream asks at once, each answer
        # checked as locate's would be (the first one's final URL serves the later requests). Else
        # one round trip first fixes the version.
        if (job.located and not state.restarted) or (job.verify and job.identity.has_hash):
            # after a restart the next answer says
            if state.validator is None and not state.restarted:
                state.adopt(job.identity.etag)  # If-Range on every range
        else:
            state.url = self.shared.locate(state)
        if state.validator is None and not job.identity.has_hash and state.on_disk() == 0:
            job.retries.warn(
                f"{job.label}: the server names no version of the file (no strong ETag, no usable"
                " Last-Modified) and no sha256 checks it: fetched as one stream, and an"
                " interruption starts it over"
            )
            with state.lock:
                state.pieces = [Piece(0, state.size)]
            return False
        with state.lock:  # a resume down to a few big pieces still uses every connection
            spread(state.pieces, connections=connections, least=MIN_PIECE)
        return True
