"""Ctrl-C typed under the live display (a real terminal: SIGINT and its echoed ``^C``) leaves one
final frame — one ``total`` line — above the interruption's words, whatever the rows' width."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from servers import CdnServer, Fault, make_data
from terminal import TOTAL, run_mdl, screen_of

MiB = 1024 * 1024


@pytest.mark.slow
@pytest.mark.parametrize("columns", [80, 120])
def test_ctrl_c_leaves_one_final_frame(tmp_path: Path, columns: int) -> None:
    with CdnServer(throttle_bps=2_000_000) as cdn:
        urls = [
            cdn.add_file(f"/files/{name}.bin", make_data(64 * MiB, seed=seed))
            for seed, name in enumerate("wx")
        ]
        # every answer held after 8 MiB until the server stops: the Ctrl-C comes mid-way, however
        # slow the machine (64 s at this rate alone was a head start, not a promise)
        cdn.faults.add(Fault.stall(8 * MiB, times=None))
        env = {**os.environ, "MDL_LOG_FILE": str(tmp_path / "mdl.log")}

        # the display is up and showing bytes: the moment a person presses Ctrl-C
        def drawn(output: str) -> bool:
            return bool(TOTAL.search(output)) and "MiB/s" in output

        ran = run_mdl(
            ["get", *urls, "-d", str(tmp_path / "out")],
            env=env,
            tty=True,
            cwd=tmp_path,
            columns=columns,
            ctrl_c_when=drawn,
        )
    assert ran.code == 130, ran.stderr
    assert "^C" in ran.stderr  # the terminal echoed it, as a person's does
    screen = [line for line in screen_of(ran.stderr, columns=columns) if line]
    totals = [line for line in screen if TOTAL.search(line)]
    assert len(totals) == 1, "\n".join(screen)
    rows = screen.index(totals[0])
    assert sorted(line.split()[0] for line in screen[rows + 1 : rows + 3]) == ["w.bin", "x.bin"], (
        "\n".join(screen)
    )
    assert screen[-1].startswith("mdl: error: interrupted; what had arrived is kept"), "\n".join(
        screen
    )
    # the rows fill the line: where the echo used to wrap and shift the final redraw
    if columns == 80:
        assert len(totals[0]) == columns, totals[0]


def test_the_screen_of_a_full_line_wraps_at_the_next_character() -> None:
    assert screen_of("abcd^C\r\x1b[2K\x1b[1Axy", columns=4) == ["xycd", ""]
    assert screen_of("ab\r\n\x1b[1mcd\x1b[0m\x1b[1A\rz", columns=4) == ["zb", "cd"]
