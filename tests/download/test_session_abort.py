"""Ctrl-C in a pull session: every stream stops at once, whatever its read is waiting on."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from runfixtures import HANG, transfer_job, wait_for
from servers import CdnServer, Fault, make_data

from mdl.catalog.settings import build_settings
from mdl.download.puller import PullSession
from mdl.errors import InterruptedByUserError
from mdl.progress import NullProgress
from mdl.setting import Overrides


@pytest.mark.realtime
def test_abort_wakes_streams_waiting_on_a_silent_server(cdn: CdnServer, tmp_path: Path) -> None:
    """The server sends a little of each range, then nothing. The session's abort must shut the
    sockets down before the engines close their answers: a closed answer's socket has no descriptor
    left to shut down, and a read already waiting on it would wait for the stall timeout (10 x HANG
    here) with the connection held open."""
    data = make_data(8_000_000, seed=52)
    url = cdn.add_file("/f.bin", data)
    # every answer: headers, a little body, then silence
    cdn.faults.add(Fault.stall(after_bytes=100_000))
    # the stall and answer timeouts: a wait for them would outlast HANG many times
    wrong = 10 * HANG
    settings = build_settings(
        Overrides(connections=4, stall_timeout=wrong, timeout=wrong), environ={}, dest=tmp_path
    )
    session = PullSession(settings, progress=NullProgress(), cancel=threading.Event())
    job = transfer_job(tmp_path, url, data)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            session.owned.engine.fetch(job)
        except BaseException as exc:  # handed to the test thread
            errors.append(exc)

    thread = threading.Thread(target=run)
    try:
        thread.start()
        # (One stream: the file is under the split threshold. This waited 10 s for a second request
        # that never came.)
        # the server sent its bytes and went silent (a stream not yet in its read finds cancel
        # set: the same end)
        wait_for(
            lambda: any(r.error == "fault:stall" for r in list(cdn.log)),
            what="the stream started and the server silent",
        )
        session.owned.abort()
        thread.join(HANG)
        assert not thread.is_alive()  # woken by the shutdown, not by the stall timeout (10 x HANG)
        (error,) = errors
        assert isinstance(error, InterruptedByUserError)
        assert not job.final_path.exists()
    finally:
        session.owned.abort()
        thread.join(HANG)
        session.owned.close()
