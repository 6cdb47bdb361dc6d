"""`mdl verify` shows its hashing: a total bar on a terminal, stamped start/done lines off it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from runfixtures import use_catalog
from servers import HubServer, make_data
from terminal import STAMP, TOTAL, run_mdl

from mdl.progress import Event, NullProgress
from mdl.store.layout import Layout
from mdl.store.verify import verify_models

MiB = 1024 * 1024
BIG = make_data(24 * MiB, seed=81)
SMALL = make_data(3 * MiB, seed=82)


class Calls(NullProgress):
    """begin/start/advance as they came (a real Progress, not the thing under test)."""

    def __init__(self) -> None:
        self.begun: list[tuple[int | None, int]] = []
        self.started: list[tuple[str, int | None, str | None, str | None]] = []
        self.advanced: dict[str, list[int]] = {}

    def emit(self, event: Event) -> None:
        if event.kind == "begin":
            self.begun.append((event.total, event.files))
        elif event.kind == "start":
            self.started.append((event.key, event.total, event.model, event.path))
        elif event.kind == "advance":
            self.advanced.setdefault(event.key, []).append(event.nbytes)


@pytest.fixture
def env(hub: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    hub.add_repo("org/big", {"weights.bin": BIG, "small.safetensors": SMALL})
    use_catalog(
        tmp_path,
        monkeypatch,
        '[models.big]\nrepo = "org/big"\n\n[models.never]\nrepo = "org/never"\n',
        endpoint=hub.url,
    )
    environ = dict(os.environ)
    pulled = run_mdl(["pull", "big"], env=environ, tty=False)
    assert pulled.code == 0, pulled.stderr
    return environ


@pytest.mark.slow
def test_verify_off_a_terminal_writes_stamped_start_and_done_lines(env: dict[str, str]) -> None:
    ran = run_mdl(["verify", "big"], env=env, tty=False)
    assert ran.code == 0, ran.stderr
    stamped = [line for line in ran.stderr.splitlines() if STAMP.match(line)]
    text = "\n".join(STAMP.sub("", line) for line in stamped)
    assert "begin 2 files" in text, ran.stderr
    for name in ("big/weights.bin", "big/small.safetensors"):
        assert f"start {name} (" in text and f"done {name} " in text, ran.stderr


@pytest.mark.slow
def test_verify_on_a_terminal_draws_a_total_bar(env: dict[str, str]) -> None:
    ran = run_mdl(["verify", "big"], env=env, tty=True)
    assert ran.code == 0, ran.screen
    assert TOTAL.search(ran.screen), ran.screen
    assert ran.stdout  # the table of results is still data on stdout


@pytest.mark.slow
def test_verify_hashes_with_a_bar_per_file_under_one_total(
    env: dict[str, str], tmp_path: Path
) -> None:
    from mdl.catalog.settings import build_settings
    from mdl.lockfile.remembered import load_catalog

    catalog = load_catalog(Path(env["MDL_CATALOG"]))
    settings = build_settings(environ=env, dest=Path(env["MDL_DEST"]))
    calls = Calls()
    report = verify_models(catalog.models, settings, progress=calls)
    assert {f.action for f in report.files if f.model == "big"} == {"verified"}
    # One total for what is on disk and recorded (the never-pulled model adds nothing), then a bar
    # per file.
    assert calls.begun == [(len(BIG) + len(SMALL), 2)]
    assert sorted(calls.started) == [
        ("big/small.safetensors", len(SMALL), "big", "small.safetensors"),
        ("big/weights.bin", len(BIG), "big", "weights.bin"),
    ]
    # The bytes come as they are hashed (blocks), not in one lump at the end.
    assert len(calls.advanced["big/weights.bin"]) > 1
    assert sum(calls.advanced["big/weights.bin"]) == len(BIG)
    assert Layout(settings).records.read_record("big") is not None
