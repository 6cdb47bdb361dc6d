"""The live frame at fixed widths: nothing wider than the terminal, distinct rows, the total
whole, ETA last.
"""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from mdl.cli.render.bars import Row, choose_layout, render_rows

MiB, GiB = 1024**2, 1024**3
SHARD_1 = "big/model-00001-of-00002.safetensors"
SHARD_2 = "big/model-00002-of-00002.safetensors"
ROWS = [
    Row("total 4/6 files", 700 * MiB, 4 * GiB, 21 * MiB, 107.0, whole=True),
    Row(SHARD_1, int(52.4 * MiB), int(1.6 * GiB), 20 * MiB, 107.0),
    Row(SHARD_2, 600 * MiB, int(1.6 * GiB), 1 * MiB, 1000.0),
    Row(
        "big/config.json",
        0,
        700,
        None,
        None,
        waiting="waiting (1:20): another mdl run holds the lock",
    ),
]


def rendered(width: int, rows: list[Row] = ROWS) -> list[str]:
    # A height too: with TERM=dumb (the test environment) rich ignores a width given alone.
    console = Console(width=width, height=50, record=True, force_terminal=True, file=io.StringIO())
    for line in render_rows(rows, width, color=True):
        console.print(line)
    return console.export_text().splitlines()


@pytest.mark.parametrize("width", [40, 60, 80, 120, 200])
def test_rows_fit_and_stay_distinct(width: int) -> None:
    lines = rendered(width)
    assert len(lines) == len(ROWS)  # one line each: nothing wraps
    assert all(len(line) <= width for line in lines)
    assert lines[0].startswith("total 4/6 files")  # never cut
    assert lines[1] != lines[2]
    assert lines[1].split()[0] != lines[2].split()[0]  # the labels themselves differ
    assert lines[1].rstrip().endswith("1:47")  # the time left is the last column to go
    assert "waiting (1:20)" in lines[3]  # the clock before the message: it survives the cut


def test_wide_terminal_shows_every_column_and_whole_labels() -> None:
    lines = rendered(120)
    assert SHARD_1 in lines[1] and SHARD_2 in lines[2]
    assert "━" in lines[1]
    assert "52.4 MiB/1.60 GiB" in lines[1]
    assert "20.0 MiB/s" in lines[1]
    assert "waiting (1:20): another mdl run holds the lock" in lines[3]


def test_columns_drop_bar_first_then_rate_then_size_eta_last() -> None:
    assert choose_layout(ROWS, 200).columns == ("bar", "size", "rate", "eta")
    assert choose_layout(ROWS, 60).columns == ("size", "rate", "eta")
    assert choose_layout(ROWS, 45).columns == ("size", "eta")
    assert choose_layout(ROWS, 40).columns == ("percent", "eta")
    assert choose_layout(ROWS, 24).columns == ("eta",)
    assert "  3%" in rendered(40)[1]
    assert "20.0 MiB/s" in rendered(60)[1]
    assert "52.4 MiB/1.60 GiB" in rendered(45)[1]


def test_unknown_values_show_as_such() -> None:
    rows = [Row("m/stream.bin", 5 * MiB, None, None, None)]
    (line,) = rendered(80, rows)
    assert "5.00 MiB/?" in line
    assert line.rstrip().endswith("-:--")


@pytest.mark.parametrize("width", [40, 60, 80, 120, 200])
def test_a_file_of_unknown_size_shows_its_bytes_at_every_width(width: int) -> None:
    """No Content-Length: no share to show, so the bytes so far say it moves (at 40 columns it
    was "-:--" alone).
    """
    rows = [
        Row("total 1/2 files", 5 * MiB, None, 2 * MiB, None, whole=True),
        Row("m/stream.bin", 5 * MiB, None, 2 * MiB, None),
        Row("m/config.json", 0, 0, None, None),
    ]
    lines = rendered(width, rows)
    assert all(len(line) <= width for line in lines)
    assert "5.00 MiB" in lines[0] and "5.00 MiB" in lines[1], lines
    assert "%" not in lines[1]


def test_without_colour_the_unfilled_bar_is_blank() -> None:
    rows = [Row("m/a.bin", 50, 100, None, None)]
    (line,) = render_rows(rows, 120, color=False)
    assert "━" in line.plain
    assert "━" * 30 not in line.plain
