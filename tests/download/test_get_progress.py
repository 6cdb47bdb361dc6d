"""`mdl get` of a big inline payload (a job output's file_data) shows its check and its write as
they go.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path

import pytest
from terminal import STAMP, TOTAL, run_mdl

from mdl.progress import Event, NullProgress
from mdl.sources.joboutput import InlineFile, check_inline

MiB = 1024 * 1024
PAYLOAD = os.urandom(24 * MiB)


def write_job(tmp_path: Path) -> None:
    doc = {
        "type": "file_data",
        "filename": "adapter.safetensors",
        "data": base64.b64encode(PAYLOAD).decode(),
        "sha256": hashlib.sha256(PAYLOAD).hexdigest(),
    }
    (tmp_path / "job.json").write_text(json.dumps(doc))


@pytest.mark.slow
def test_a_big_inline_file_off_a_terminal_says_checking_then_writing(tmp_path: Path) -> None:
    write_job(tmp_path)
    ran = run_mdl(["get", "job.json", "-d", "out"], env=dict(os.environ), tty=False, cwd=tmp_path)
    assert ran.code == 0, ran.stderr
    said = [STAMP.sub("", line) for line in ran.stderr.splitlines() if STAMP.match(line)]
    checking = said.index(
        next(x for x in said if x.startswith("start checking adapter.safetensors ("))
    )
    writing = said.index(next(x for x in said if x.startswith("start adapter.safetensors (")))
    assert checking < writing, said
    assert any(x.startswith("done adapter.safetensors ") for x in said), said
    assert (tmp_path / "out" / "adapter.safetensors").read_bytes() == PAYLOAD


@pytest.mark.slow
def test_a_big_inline_file_on_a_terminal_draws_a_total_bar(tmp_path: Path) -> None:
    write_job(tmp_path)
    ran = run_mdl(["get", "job.json", "-d", "out"], env=dict(os.environ), tty=True, cwd=tmp_path)
    assert ran.code == 0, ran.screen
    assert TOTAL.search(ran.screen), ran.screen


class Moves(NullProgress):
    def __init__(self) -> None:
        self.steps: list[int] = []
        self.names: list[tuple[str | None, str | None]] = []

    def emit(self, event: Event) -> None:
        if event.kind == "start":
            self.names.append((event.model, event.path))
        elif event.kind == "advance":
            self.steps.append(event.nbytes)


def test_checking_a_payload_advances_as_it_decodes() -> None:
    item = InlineFile(
        "a.bin", base64.b64encode(PAYLOAD[: 4 * MiB]).decode(), None, None, "job.json"
    )
    moves = Moves()
    check = check_inline(item, progress=moves)
    assert check.size == 4 * MiB and sum(moves.steps) == 4 * MiB and len(moves.steps) > 1
    assert moves.names == [(None, "a.bin")]  # one-off files belong to no model
