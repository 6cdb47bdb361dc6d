"""The ui layer: progress reporters, stderr messages, JSON on stdout, tables and the log file."""

from __future__ import annotations

import io
import json
import logging
import re
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from mdl.cli.render.progress import (
    Console,
    Reporter,
    choose_progress_mode,
    color_enabled,
    emit_json,
    human_duration,
    human_size,
    make_reporter,
    render_table,
    setup_logging,
)
from mdl.progress import Progress

SIGNED = "https://cdn.example.com/m.bin?X-Amz-Signature=deadbeefcafe&X-Amz-Credential=AKIA123"
STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ ")


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def wallclock() -> datetime:
    return datetime(2026, 11, 22, 8, 3, 39, tzinfo=UTC)


def plain(clock: FakeClock, *, interval: float = 5.0, secrets: tuple[str, ...] = ()) -> tuple[Reporter, io.StringIO]:
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


@pytest.fixture(autouse=True)
def reset_mdl_logger() -> object:
    """Leave the ``mdl`` logger as found, closing any file a test opened."""
    yield None
    logger = logging.getLogger("mdl")
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
    logger.setLevel(logging.NOTSET)


# --- human sizes and durations -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "text"),
    [
        (None, "?"),
        (0, "0 B"),
        (999, "999 B"),
        (1000, "1.0 kB"),
        (300_000, "300.0 kB"),
        (999_960, "1.0 MB"),
        (1_234_567, "1.2 MB"),
        (265_300_000, "265.3 MB"),
        (16_100_000_000, "16.1 GB"),
    ],
)
def test_human_size_uses_decimal_units(n: int | None, text: str) -> None:
    assert human_size(n) == text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.3, "0.3s"),
        (4, "4s"),
        (9.96, "10s"),
        (42.4, "42s"),
        (125, "2m05s"),
        (3720, "1h02m"),
        (97200, "1d03h"),
    ],
)
def test_human_duration(seconds: float, text: str) -> None:
    assert human_duration(seconds) == text
    assert human_duration(float("inf")) == "?"


# --- choosing the mode ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("quiet", "no_progress", "json_output", "tty", "environ", "mode"),
    [
        (False, False, False, True, {"TERM": "xterm-256color"}, "rich"),
        (False, False, True, True, {"TERM": "xterm"}, "rich"),  # --json keeps progress on stderr
        (False, False, False, False, {"TERM": "xterm"}, "plain"),  # cron, CI, pipes
        (False, False, True, False, {}, "plain"),
        (False, False, False, True, {"TERM": "dumb"}, "plain"),
        (False, False, False, True, {"NO_COLOR": "1"}, "rich"),  # no colour, still bars
        (True, False, False, True, {}, "none"),
        (False, True, False, True, {}, "none"),
        (True, False, True, False, {}, "none"),
    ],
)
def test_choose_progress_mode(
    quiet: bool, no_progress: bool, json_output: bool, tty: bool, environ: dict[str, str], mode: str
) -> None:
    got = choose_progress_mode(
        quiet=quiet, no_progress=no_progress, json_output=json_output, stderr_isatty=tty, environ=environ
    )
    assert got == mode


# --- plain mode ----------------------------------------------------------------------------------


def test_plain_reports_start_progress_and_done_with_timestamps() -> None:
    clock = FakeClock()
    reporter, stream = plain(clock)
    progress: Progress = reporter  # the reporter satisfies the core's protocol
    progress.begin(total_bytes=266_500_000, files=2)
    progress.start("a", label="tiny-bert/config.json", total=1_200_000, completed=300_000)
    progress.start("b", label="tiny-bert/model.safetensors", total=265_300_000)
    clock.now += 5
    progress.advance("b", 120_000_000)  # 24 MB/s over the 5 s since start
    clock.now += 0.3
    progress.advance("a", 900_000)
    progress.finish("a", ok=True)
    progress.finish("b", ok=False, message="connection reset")
    progress.note("waiting for lock held by pid 42")
    reporter.close()

    lines = stream.getvalue().splitlines()
    assert all(line.startswith("2026-11-22T08:03:39Z ") for line in lines)
    body = [line.removeprefix("2026-11-22T08:03:39Z ") for line in lines]
    assert body == [
        "begin 2 files, 266.5 MB",
        "start tiny-bert/config.json (1.2 MB, resuming at 300.0 kB)",
        "start tiny-bert/model.safetensors (265.3 MB)",
        "tiny-bert/model.safetensors 45% 120.0 MB/265.3 MB 24.0 MB/s ETA 7s",
        "done tiny-bert/config.json 1.2 MB in 5.3s (169.8 kB/s)",
        "FAILED tiny-bert/model.safetensors: connection reset",
        "waiting for lock held by pid 42",
    ]


def test_plain_rate_limits_progress_lines_per_file() -> None:
    clock = FakeClock()
    reporter, stream = plain(clock, interval=5.0)
    reporter.start("a", label="m/a.bin", total=10_000_000)
    reporter.start("b", label="m/b.bin", total=None)
    for _ in range(80):  # 80 chunks of 12.5 kB, one every 0.125 s: 10 s at 100 kB/s
        clock.now += 0.125
        reporter.advance("a", 12_500)
        reporter.advance("b", 12_500)
    lines = stream.getvalue().splitlines()
    a_lines = [line for line in lines if " m/a.bin " in line and "start" not in line]
    b_lines = [line for line in lines if " m/b.bin " in line and "start" not in line]
    assert len(a_lines) == 2  # at 5 s and at 10 s, not one per chunk
    assert len(b_lines) == 2
    assert a_lines[0].endswith("m/a.bin 5% 500.0 kB/10.0 MB 100.0 kB/s ETA 1m35s")
    assert b_lines[0].endswith("m/b.bin 500.0 kB 100.0 kB/s")  # unknown size: no percent, no ETA


def test_plain_never_writes_control_characters_and_redacts() -> None:
    clock = FakeClock()
    reporter, stream = plain(clock, interval=0.0, secrets=("s3cr3t-value",))
    reporter.start("x", label="evil/\x1b[2Jname\r.bin", total=10)
    clock.now += 1
    reporter.advance("x", 5)
    reporter.finish("x", ok=False, message=f"403 for {SIGNED}\nbody: s3cr3t-value\r\x1b[31m")
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
    assert stream.getvalue() == "2026-11-22T09:03:39Z hello\n"


def test_plain_is_thread_safe() -> None:
    clock = FakeClock()
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
    assert lines[-1].endswith("done m/big.bin 96.0 kB in 0s")


# --- none and rich modes -------------------------------------------------------------------------


def test_none_mode_writes_nothing() -> None:
    stream = io.StringIO()
    with make_reporter("none", stream=stream, environ={}) as reporter:
        reporter.begin(total_bytes=10, files=1)
        reporter.start("a", label="m/a", total=10)
        reporter.advance("a", 10)
        reporter.finish("a", ok=False, message="boom")
        reporter.note("quiet please")
    assert stream.getvalue() == ""
    assert reporter.transferred == 10


def test_rich_mode_renders_bars_and_notes_to_the_stream() -> None:
    stream = io.StringIO()
    clock = FakeClock()
    with make_reporter("rich", stream=stream, environ={"NO_COLOR": "1"}, clock=clock) as reporter:
        reporter.begin(total_bytes=2_000_000, files=2)
        reporter.start("a", label="tiny-bert/model.safetensors", total=1_000_000)
        reporter.start("b", label="tiny-bert/[bold]odd.json", total=1_000_000, completed=400_000)
        reporter.note("waiting for a lock")
        clock.now += 1
        reporter.advance("a", 500_000)
        reporter.finish("b", ok=False, message=f"403 from {SIGNED}")
        reporter.finish("a", ok=True)
    output = stream.getvalue()
    assert "waiting for a lock" in output
    assert "FAILED tiny-bert/[bold]odd.json" in output  # markup off: brackets stay text
    assert "deadbeefcafe" not in output
    assert "total" in output
    assert reporter.transferred == 500_000
    # NO_COLOR: cursor movement is fine on a terminal, but no colour (SGR 3x/4x) codes.
    assert not re.search(r"\x1b\[[0-9;]*3[0-7]m", output)


def test_rich_mode_shows_the_file_label_while_active(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "100")  # rich sizes the console from COLUMNS when it is not a real TTY
    stream = io.StringIO()
    reporter = make_reporter("rich", stream=stream, environ={}, clock=FakeClock())
    reporter.start("a", label="tiny-bert/model.safetensors", total=1_000)
    reporter.start("a", label="tiny-bert/model.safetensors", total=1_000)  # a retry: still one bar
    reporter.start("b", label="persiannlp/mt5-small-parsinlu-squad-reading-comprehension/spiece.model", total=9)
    reporter.advance("a", 10)
    reporter.close()  # last frame drawn with the files still active
    reporter.close()  # idempotent
    last_frame = stream.getvalue().rsplit("\x1b[2K", 1)[-1]  # rich clears the lines before each redraw
    output = stream.getvalue()
    assert "tiny-bert/model.safetensors" in output
    assert "…" in output and "/spiece.model" in output  # long labels keep the file name
    assert last_frame.count("tiny-bert/model.safetensors") == 1


# --- console -------------------------------------------------------------------------------------


def test_console_error_format_and_hint() -> None:
    stream = io.StringIO()
    Console(stream, environ={}).error("model 'x' is not in the catalog", hint="run `mdl list`")
    assert stream.getvalue() == "mdl: error: model 'x' is not in the catalog\n  hint: run `mdl list`\n"


def test_console_redacts_tokens_signed_urls_and_known_secrets() -> None:
    stream = io.StringIO()
    console = Console(stream, environ={}, secrets=("civitai-abcdef",))
    console.error(f"403 Forbidden for {SIGNED}", hint="token civitai-abcdef was refused")
    console.warn("Authorization: Bearer hf_abcdefghijklmnopq failed")
    output = stream.getvalue()
    for secret in ("deadbeefcafe", "AKIA123", "civitai-abcdef", "hf_abcdefghijklmnopq"):
        assert secret not in output
    assert "https://cdn.example.com/m.bin?REDACTED" in output


def test_console_quiet_keeps_only_errors() -> None:
    stream = io.StringIO()
    console = Console(stream, environ={}, quiet=True)
    console.info("pulled 3 files")
    console.warn("log file not writable")
    console.error("network down")
    assert stream.getvalue() == "mdl: error: network down\n"


def test_console_colour_only_when_asked_and_strips_escape_sequences_from_messages() -> None:
    coloured, plain_stream = io.StringIO(), io.StringIO()
    Console(coloured, environ={}, color=True).error("bad \x1b[2J thing")
    Console(plain_stream, environ={}).error("bad \x1b[2J thing")  # StringIO is no TTY: no colour
    assert coloured.getvalue().startswith("\x1b[1;31mmdl: error: \x1b[0m")
    assert "\x1b[2J" not in coloured.getvalue()
    # The one sanitiser (mdl.redact.printable): the escape shows as text, visible and never interpreted.
    assert plain_stream.getvalue() == "mdl: error: bad \\x1b[2J thing\n"


@pytest.mark.parametrize(
    ("tty", "environ", "expected"),
    [
        (True, {"TERM": "xterm"}, True),
        (False, {"TERM": "xterm"}, False),
        (True, {"TERM": "dumb"}, False),
        (True, {"NO_COLOR": "1"}, False),
        (True, {"NO_COLOR": ""}, True),  # no-color.org: an empty value does not count
    ],
)
def test_color_enabled(tty: bool, environ: dict[str, str], expected: bool) -> None:
    assert color_enabled(isatty=tty, environ=environ) is expected


# --- JSON and tables -----------------------------------------------------------------------------


def test_emit_json_prints_one_document() -> None:
    stream = io.StringIO()
    doc = {"ok": True, "files": [{"model": "پارس", "dest": Path("/m/a.bin"), "size": 3}]}
    emit_json(doc, stream=stream)
    text = stream.getvalue()
    assert text.endswith("}\n")
    assert text.count("\n") == 1  # not a TTY: one line
    assert "پارس" in text  # ensure_ascii=False
    assert list(json.loads(text)) == ["ok", "files"]  # key order as given
    assert json.loads(text)["files"][0]["dest"] == "/m/a.bin"
    with pytest.raises(TypeError):
        emit_json({"x": object()}, stream=io.StringIO())


def test_render_table_aligns_plain_text() -> None:
    stream = io.StringIO()
    rows: list[dict[str, Any]] = [
        {"name": "tiny-bert", "status": "installed", "files": 3},
        {"name": "z-image-turbo", "status": None, "files": 12},
        {"name": "evil\x1b[2J", "status": "missing", "files": 0},
    ]
    render_table(rows, [("name", "NAME"), ("status", "STATUS"), ("files", "FILES")], stream=stream, color=False)
    assert stream.getvalue().splitlines() == [
        "NAME           STATUS     FILES",
        "tiny-bert      installed      3",
        "z-image-turbo  -             12",
        "evil\\x1b[2J    missing        0",
    ]


def test_render_table_bold_header_only_with_colour() -> None:
    stream = io.StringIO()
    render_table([{"a": "x"}], [("a", "A")], stream=stream, color=True)
    assert stream.getvalue() == "\x1b[1mA\x1b[0m\nx\n"


# --- logging -------------------------------------------------------------------------------------


def test_setup_logging_writes_redacted_records(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log_file = tmp_path / "logs" / "mdl" / "mdl.log"
    assert setup_logging(log_file=log_file, verbose=False, secrets=("my-civitai-key",)) == log_file
    log = logging.getLogger("mdl.transfer")
    log.info("GET %s with key %s", SIGNED, "my-civitai-key")
    log.debug("not at INFO")
    try:
        raise ConnectionError(f"reset while reading {SIGNED}")
    except ConnectionError:
        log.exception("stream failed")
    text = log_file.read_text(encoding="utf-8")
    assert "deadbeefcafe" not in text
    assert "my-civitai-key" not in text
    assert "GET https://cdn.example.com/m.bin?REDACTED with key REDACTED" in text
    assert "not at INFO" not in text
    assert "ConnectionError: reset while reading https://cdn.example.com/m.bin?REDACTED" in text
    first = text.splitlines()[0]
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z INFO pid=\d+ \[MainThread\] mdl\.transfer: ", first)
    assert capsys.readouterr().err == ""  # the log never goes to stderr


def test_setup_logging_verbose_and_idempotent(tmp_path: Path) -> None:
    first, second = tmp_path / "one.log", tmp_path / "two.log"
    setup_logging(log_file=first, verbose=False)
    setup_logging(log_file=second, verbose=True)
    logger = logging.getLogger("mdl")
    assert len(logger.handlers) == 1
    logger.debug("debug line")
    assert first.read_text() == ""
    assert second.read_text().count("debug line") == 1


def test_setup_logging_rotates(tmp_path: Path) -> None:
    log_file = tmp_path / "mdl.log"
    setup_logging(log_file=log_file, verbose=False, max_bytes=2_000, backups=2)
    log = logging.getLogger("mdl")
    for i in range(200):
        log.info("line %d %s", i, "x" * 50)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mdl.log", "mdl.log.1", "mdl.log.2"]
    assert all(p.stat().st_size <= 2_000 for p in tmp_path.iterdir())
    assert "line 199 " in log_file.read_text()


def test_setup_logging_falls_back_when_the_file_cannot_be_opened(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    assert setup_logging(log_file=blocker / "mdl.log", verbose=True) is None
    logging.getLogger("mdl").error("goes nowhere, and not to stderr either")
    assert capsys.readouterr().err == ""
    assert setup_logging(log_file=None, verbose=False) is None


def test_importing_ui_does_not_import_rich() -> None:
    code = "import sys, mdl.cli.render.progress; print(sorted(m for m in sys.modules if m.startswith('rich')))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
