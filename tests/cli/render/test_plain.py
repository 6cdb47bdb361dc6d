"""Plain lines for cron and pipes: stamped, smoothed rates in binary units, resume named, never
control chars.
"""

from __future__ import annotations

import io
import os
import re
import threading
from datetime import UTC, datetime, timedelta, timezone

import pytest
from clocks import FakeClock, wallclock

from mdl.cli.render.progress import Reporter
from mdl.cli.run import make_reporter
from mdl.progress import Progress
from mdl.redact import Secrets

SIGNED = "https://cdn.example.com/m.bin?X-Amz-Signature=deadbeefcafe&X-Amz-Credential=AKIA123"
STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ \[\d+\] ")
PID = f"[{os.getpid()}]"
KiB, MiB, GiB = 1024, 1024**2, 1024**3


def plain(
    clock: FakeClock, *, interval: float = 5.0, secrets: Secrets | None = None
) -> tuple[Reporter, io.StringIO]:
    stream = io.StringIO()
    reporter = make_reporter(
        "plain",
        stream=stream,
        environ={},
        clock=clock,
        wallclock=wallclock,
        interval=interval,
        secrets=secrets,
    )
    return reporter, stream


def body(stream: io.StringIO) -> list[str]:
    lines = stream.getvalue().splitlines()
    assert all(line.startswith(f"2026-11-22T08:03:39Z {PID} ") for line in lines)
    return [line.removeprefix(f"2026-11-22T08:03:39Z {PID} ") for line in lines]


def test_plain_reports_start_progress_and_done_with_timestamps(clock: FakeClock) -> None:
    reporter, stream = plain(clock)
    progress: Progress = reporter  # the reporter satisfies the core's protocol
    progress.begin(total_bytes=266 * MiB, files=2)
    progress.start("a", label="tiny-bert/config.json", total=1200 * KiB)
    progress.start("b", label="tiny-bert/model.safetensors", total=265 * MiB)
    for _ in range(40):  # 5 s at 24 MiB/s
        clock.now += 0.125
        progress.advance("b", 3 * MiB)
    clock.now += 0.3
    progress.advance("a", 1200 * KiB)
    progress.finish("a", ok=True)
    progress.note("no bytes for 30 s, reconnecting (1/20)")
    reporter.close()
    assert body(stream) == [
        "begin 2 files, 266 MiB",
        "start tiny-bert/config.json (1.17 MiB)",
        "start tiny-bert/model.safetensors (265 MiB)",
        "tiny-bert/model.safetensors 45% 120 MiB/265 MiB 24.0 MiB/s ETA 7s",
        "done tiny-bert/config.json 1.17 MiB in 5.3s (226 KiB/s)",
        "no bytes for 30 s, reconnecting (1/20)",
    ]


def test_plain_resume_is_the_start_line(clock: FakeClock) -> None:
    reporter, stream = plain(clock)
    reporter.start(
        "m", label="big/model.safetensors", total=int(1.6 * GiB), completed=600 * MiB, model="big"
    )
    assert body(stream) == ["resuming big/model.safetensors at 600 MiB of 1.60 GiB"]


def test_plain_failure_prints_nothing(clock: FakeClock) -> None:
    """The final report prints each failed file once; the display must not add a second copy."""
    reporter, stream = plain(clock)
    reporter.start("b", label="m/b.bin", total=10)
    reporter.finish("b", ok=False, message="connection reset")
    assert body(stream) == ["start m/b.bin (10 B)"]


def test_plain_waiting_is_written_once(clock: FakeClock) -> None:
    reporter, stream = plain(clock)
    reporter.start("b", label="m/b.bin", total=10)
    for _ in range(3):
        reporter.waiting("b", "another mdl run holds the lock")
    # a lock is taken before the start
    reporter.waiting("m/c.bin", "another mdl run holds the lock")
    reporter.start("m/c.bin", label="m/c.bin", total=5)
    assert body(stream) == [
        "start m/b.bin (10 B)",
        "m/b.bin waiting: another mdl run holds the lock",
        "m/c.bin waiting: another mdl run holds the lock",
        "start m/c.bin (5 B)",
    ]


def test_plain_rate_limits_progress_lines_and_smooths_the_rate(clock: FakeClock) -> None:
    reporter, stream = plain(clock, interval=5.0)
    reporter.start("a", label="m/a.bin", total=10 * MiB)
    reporter.start("b", label="m/b.bin", total=None)
    for _ in range(80):  # 80 chunks of 12.8 KiB, one every 0.125 s: 10 s at 100 KiB/s
        clock.now += 0.125
        reporter.advance("a", 12_800)
        reporter.advance("b", 12_800)
    lines = body(stream)
    a_lines = [line for line in lines if line.startswith("m/a.bin ")]
    b_lines = [line for line in lines if line.startswith("m/b.bin ")]
    assert len(a_lines) == 2  # at 5 s and at 10 s, not one per chunk
    assert len(b_lines) == 2
    assert a_lines[0] == "m/a.bin 4% 500 KiB/10.0 MiB 100 KiB/s ETA 1m38s"
    assert b_lines[0] == "m/b.bin 500 KiB 100 KiB/s"  # unknown size: no percent, no ETA


def test_plain_never_writes_control_characters_and_redacts(clock: FakeClock) -> None:
    reporter, stream = plain(clock, interval=0.0, secrets=Secrets(("s3cr3t-value",)))
    reporter.start("x", label="evil/\x1b[2Jname\r.bin", total=10)
    clock.now += 1
    reporter.advance("x", 5)
    reporter.waiting("x", f"lock of {SIGNED}\r\x1b[31m s3cr3t-value")
    reporter.finish("x", ok=True, message="repaired \x1b[2J")
    reporter.note("hf_abcdefghijklmnop is your token")
    output = stream.getvalue()
    assert "\x1b" not in output
    assert "\r" not in output
    assert all(STAMP.match(line) for line in output.splitlines())
    assert "deadbeefcafe" not in output
    assert "s3cr3t-value" not in output
    assert "hf_abcdefghijklmnop" not in output
    assert "https://cdn.example.com/m.bin?REDACTED" in output


def test_plain_timestamps_come_from_the_wallclock_in_utc() -> None:
    stream = io.StringIO()
    local = datetime(2026, 11, 22, 10, 3, 39, tzinfo=timezone(timedelta(hours=1)))
    reporter = make_reporter("plain", stream=stream, environ={}, wallclock=lambda: local)
    reporter.note("hello")
    assert stream.getvalue() == f"2026-11-22T09:03:39Z {PID} hello\n"
    naive = io.StringIO()
    make_reporter(
        "plain", stream=naive, environ={}, wallclock=lambda: datetime(2026, 1, 2, 3, 4, 5)
    ).note("x")
    assert naive.getvalue() == f"2026-01-02T03:04:05Z {PID} x\n"
    assert datetime(2026, 1, 2, tzinfo=UTC)  # naive stamps are taken as UTC


@pytest.mark.slow
def test_plain_is_thread_safe(clock: FakeClock) -> None:
    reporter, stream = plain(clock, interval=0.0)
    threads_n, chunks = 16, 2000
    reporter.start("big", label="m/big.bin", total=threads_n * chunks * 3)

    def work() -> None:
        for _ in range(chunks):
            reporter.advance("big", 3)

    threads = [threading.Thread(target=work) for _ in range(threads_n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    reporter.finish("big", ok=True)
    assert reporter.transferred == threads_n * chunks * 3
    lines = stream.getvalue().splitlines()
    assert all(STAMP.match(line) for line in lines)  # no torn or interleaved lines
    assert lines[-1].endswith("done m/big.bin 93.8 KiB in 0s")
