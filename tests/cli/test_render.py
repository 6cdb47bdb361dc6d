"""The ui layer: stderr messages, JSON on stdout, tables and the log file (progress:
tests/cli/render/).
"""

from __future__ import annotations

import io
import json
import logging
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from mdl.cli.render.console import Console, color_enabled, render_table
from mdl.cli.render.log import setup_logging
from mdl.cli.stdout import emit_document
from mdl.redact import Secrets

SIGNED = "https://cdn.example.com/m.bin?X-Amz-Signature=deadbeefcafe&X-Amz-Credential=AKIA123"
STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ ")


@pytest.fixture(autouse=True)
def reset_mdl_logger() -> object:
    """Leave the ``mdl`` logger as found, closing any file a test opened."""
    yield None
    logger = logging.getLogger("mdl")
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
    logger.setLevel(logging.NOTSET)


# --- console -------------------------------------------------------------------------------------


def test_console_error_format_and_hint() -> None:
    stream = io.StringIO()
    Console(stream, environ={}).error("model 'x' is not in the catalog", hint="run `mdl list`")
    assert (
        stream.getvalue() == "mdl: error: model 'x' is not in the catalog\n  hint: run `mdl list`\n"
    )


def test_console_redacts_tokens_signed_urls_and_known_secrets() -> None:
    stream = io.StringIO()
    console = Console(stream, environ={}, secrets=Secrets(("civitai-abcdef",)))
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
    # The one sanitiser (mdl.redact.printable): the escape shows as text, visible and never
    # interpreted.
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
    emit_document(doc, stream=stream)
    text = stream.getvalue()
    assert text.endswith("}\n")
    assert text.count("\n") == 1  # not a TTY: one line
    assert "پارس" in text  # ensure_ascii=False
    assert list(json.loads(text)) == ["ok", "files"]  # key order as given
    assert json.loads(text)["files"][0]["dest"] == "/m/a.bin"
    with pytest.raises(TypeError):
        emit_document({"x": object()}, stream=io.StringIO())


def test_render_table_aligns_plain_text() -> None:
    stream = io.StringIO()
    rows: list[dict[str, Any]] = [
        {"name": "tiny-bert", "status": "installed", "files": 3},
        {"name": "z-image-turbo", "status": None, "files": 12},
        {"name": "evil\x1b[2J", "status": "missing", "files": 0},
    ]
    render_table(
        rows,
        [("name", "NAME"), ("status", "STATUS"), ("files", "FILES")],
        stream=stream,
        color=False,
    )
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


def test_setup_logging_writes_redacted_records(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log_file = tmp_path / "logs" / "mdl" / "mdl.log"
    assert (
        setup_logging(log_file=log_file, verbose=False, secrets=Secrets(("my-civitai-key",)))
        == log_file
    )
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
    assert re.match(
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z INFO pid=\d+ \[MainThread\] mdl\.transfer: ", first
    )
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
    code = (
        "import sys, mdl.cli.render.progress; print(sorted(m for m in sys.modules if"
        " m.startswith('rich')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
