"""The live display on a terminal: rows per file and a total, resume and waiting said, failures
left to the report.
"""

from __future__ import annotations

import io
import re

import pytest
from clocks import FakeClock
from rich.console import Console

from mdl.cli.render.bars import RichReporter
from mdl.cli.run import make_reporter

SIGNED = "https://cdn.example.com/m.bin?X-Amz-Signature=deadbeefcafe&X-Amz-Credential=AKIA123"
MiB, GiB = 1024**2, 1024**3
SHARD_1 = "big/model-00001-of-00002.safetensors"
SHARD_2 = "big/model-00002-of-00002.safetensors"


def recording(width: int) -> Console:
    # A height too: with TERM=dumb (the test environment) rich ignores a width given alone.
    return Console(width=width, height=50, record=True, force_terminal=True, file=io.StringIO())


def frame_lines(reporter: RichReporter, width: int) -> list[str]:
    """The rows the live display draws (while it runs, a blank line below them holds the cursor:
    checked, left out).
    """
    console = recording(width)
    console.print(reporter)  # the reporter is the renderable the live display redraws
    *rows, cursor_line = console.export_text().splitlines()
    assert cursor_line == "", rows
    return rows


def test_the_final_frame_has_no_blank_line_below_the_rows() -> None:
    reporter = RichReporter(stream=io.StringIO(), no_color=True, console=recording(80))
    reporter.begin(total_bytes=10, files=1)
    reporter.start("a", label="m/a.bin", total=10)
    reporter.close()
    console = recording(80)
    console.print(reporter)
    assert console.export_text().splitlines()[-1].startswith("m/a.bin")


def clock_seconds(text: str) -> int:
    parts = [int(p) for p in text.split(":")]
    return sum(p * 60**i for i, p in enumerate(reversed(parts)))


def throttled_pull(clock: FakeClock, width: int) -> RichReporter:
    """Five small files done in the first second; two shards still going, one throttled, one file
    waiting.
    """
    reporter = RichReporter(
        stream=io.StringIO(), no_color=False, clock=clock, console=recording(width)
    )
    reporter.begin(total_bytes=2 * 200 * MiB + 5 * 8 * MiB + 700, files=8)
    for i in range(5):
        reporter.start(f"s{i}", label=f"big/small-{i}.json", total=8 * MiB)
    reporter.start("1", label=SHARD_1, total=200 * MiB)
    reporter.start("2", label=SHARD_2, total=200 * MiB)
    reporter.start("c", label="big/config.json", total=700)
    reporter.waiting("c", "another mdl run holds the lock")
    for _ in range(8):  # steps of 1/8 s (exact in binary): the flush batching sees every one
        clock.now += 0.125
        for i in range(5):
            reporter.advance(f"s{i}", MiB)
        reporter.advance("1", MiB // 8)
        reporter.advance("2", 10 * MiB // 8)
    for i in range(5):
        reporter.finish(f"s{i}", ok=True)
    for _ in range(32):
        clock.now += 0.125
        reporter.advance("1", MiB // 8)
        reporter.advance("2", 10 * MiB // 8)
    return reporter


@pytest.mark.parametrize("width", [40, 60, 80, 120, 200])
def test_throttled_pull_at_each_width(clock: FakeClock, width: int) -> None:
    reporter = throttled_pull(clock, width)
    lines = frame_lines(reporter, width)
    reporter.close()
    assert len(lines) == 4  # total, two shards, the waiting file: one line each
    assert all(len(line) <= width for line in lines)
    total, one, two, waiting = lines
    assert total.startswith("total 5/8 files")
    assert one.split()[0] != two.split()[0]
    # The wait's clock comes first, so a narrow terminal still shows it ticking (issue 12: not
    # frozen for minutes).
    assert re.search(r"waiting \(0:05\)", waiting), waiting
    # The case: the total waits for the throttled shard (195 MiB at 1 MiB/s), never less.
    assert clock_seconds(total.split()[-1]) >= clock_seconds(one.split()[-1]) >= 190


def test_total_row_counts_bytes_and_files(clock: FakeClock) -> None:
    reporter = throttled_pull(clock, 120)
    total, one, two, waiting = frame_lines(reporter, 120)
    assert "95.0 MiB/440 MiB" in total
    assert SHARD_1 in one and "5.00 MiB/200 MiB" in one
    # timed from its first bytes (batched: within a chunk)
    assert re.search(r" (0\.9[6-9]|1\.0[0-4]) MiB/s ", one)
    assert SHARD_2 in two and "50.0 MiB/200 MiB" in two
    # Its own smoothed rate, timed from its first bytes; this shard's bytes reach the rows one flush
    # late here (advanced after the flush each step triggers), so up to one step's bytes too many:
    # within 5%.
    assert re.search(r" (9\.9\d|10\.[0-4]) MiB/s ", two)
    assert waiting.split() == [
        "big/config.json",
        "waiting",
        "(0:05):",
        "another",
        "mdl",
        "run",
        "holds",
        "the",
        "lock",
    ]
    clock.now += 1
    reporter.advance("c", 700)  # bytes flow: the row becomes a normal one
    assert "waiting" not in frame_lines(reporter, 120)[3]


def test_resume_is_said_above_the_bars(clock: FakeClock) -> None:
    console = recording(100)
    reporter = RichReporter(stream=io.StringIO(), no_color=True, clock=clock, console=console)
    reporter.start("m", label="big/model.safetensors", total=int(1.6 * GiB), completed=600 * MiB)
    reporter.close()
    assert "resuming big/model.safetensors at 600 MiB of 1.60 GiB" in console.export_text()


def test_failure_prints_nothing_and_notes_are_redacted(clock: FakeClock) -> None:
    stream = io.StringIO()
    with make_reporter("rich", stream=stream, environ={"NO_COLOR": "1"}, clock=clock) as reporter:
        reporter.begin(total_bytes=2_000_000, files=2)
        reporter.start("a", label="tiny-bert/model.safetensors", total=1_000_000)
        reporter.start("b", label="tiny-bert/[bold]odd.json", total=1_000_000, completed=400_000)
        reporter.note(f"no bytes for 30 s from {SIGNED}, reconnecting (1/20)")
        clock.now += 1
        reporter.advance("a", 500_000)
        reporter.finish("b", ok=False, message="sha256 mismatch")
        reporter.finish("a", ok=True)
    output = stream.getvalue()
    assert "no bytes for 30 s" in output and "reconnecting" in output
    assert "resuming tiny-bert/[bold]odd.json" in output  # markup off: brackets stay text
    # the final report says it, once
    assert "FAILED" not in output and "sha256 mismatch" not in output
    assert "deadbeefcafe" not in output
    assert "total 1/2 files, 1 failed" in output  # a failed file is no file done
    assert reporter.transferred == 500_000
    # NO_COLOR: cursor movement is fine on a terminal, but no colour (SGR 3x/4x) codes.
    assert not re.search(r"\x1b\[[0-9;]*3[0-7]m", output)


def test_one_row_per_item_even_on_retry(clock: FakeClock) -> None:
    reporter = RichReporter(
        stream=io.StringIO(), no_color=True, clock=clock, console=recording(100)
    )
    reporter.start("a", label="tiny-bert/model.safetensors", total=1_000)
    # a retry from zero: still one row
    reporter.start("a", label="tiny-bert/model.safetensors", total=1_000)
    reporter.start(
        "b", label="persiannlp/mt5-small-parsinlu-squad-reading-comprehension/spiece.model", total=9
    )
    reporter.advance("a", 10)
    lines = frame_lines(reporter, 100)
    reporter.close()
    reporter.close()  # idempotent
    assert len(lines) == 2
    assert lines[0].startswith("tiny-bert/model.safetensors")
    assert "…" in lines[1] and "/spiece.model" in lines[1]  # cut in the middle: the file name stays


def test_nothing_drawn_for_an_empty_run() -> None:
    stream = io.StringIO()
    with make_reporter("rich", stream=stream, environ={}) as reporter:
        reporter.begin(total_bytes=0, files=0)
    assert stream.getvalue() == ""


@pytest.mark.slow
def test_threads_and_the_redraw_thread_never_deadlock() -> None:
    """Workers advance and print notes (under the reporter's lock) while rich's own thread
    redraws the rows.
    """
    import threading

    stream = io.StringIO()
    reporter = make_reporter("rich", stream=stream, environ={})
    reporter.begin(total_bytes=8 * 20_000 * 7, files=8)

    def work(n: int) -> None:
        reporter.start(str(n), label=f"m/file-{n}.bin", total=20_000 * 7)
        for i in range(20_000):
            reporter.advance(str(n), 7)
            if i % 5000 == 0:
                reporter.note(f"file {n} at {i}")
                reporter.waiting(str(n), "a short wait")
        reporter.finish(str(n), ok=True)

    threads = [threading.Thread(target=work, args=(n,), daemon=True) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads), (
        "a worker is stuck: lock-order deadlock"
    )
    reporter.close()
    assert reporter.transferred == 8 * 20_000 * 7
    assert "total 8/8 files" in stream.getvalue()


def test_waiting_before_the_start_gets_a_row(clock: FakeClock) -> None:
    """The lock is taken before the first byte: the row says why nothing moves, then becomes the
    file's bar.
    """
    reporter = RichReporter(
        stream=io.StringIO(), no_color=True, clock=clock, console=recording(100)
    )
    reporter.waiting("big/w.bin", "another mdl run holds the lock")
    clock.now += 80
    (line,) = frame_lines(reporter, 100)
    assert line.split() == [
        "big/w.bin",
        "waiting",
        "(1:20):",
        "another",
        "mdl",
        "run",
        "holds",
        "the",
        "lock",
    ]
    reporter.start("big/w.bin", label="big/w.bin", total=1000)
    (line,) = frame_lines(reporter, 100)
    assert "waiting" not in line and "0 B/1000 B" in line
    reporter.close()
