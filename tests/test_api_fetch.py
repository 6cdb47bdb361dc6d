"""``mdl.fetch``: one call from a repo id (or ``hf://``) to the local folder, as
``snapshot_download`` and ``hf_hub_download`` return it, with no catalog file written; and
``mdl.ProgressBars``, the ready display a notebook passes as ``progress=``."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from servers import HubServer, make_data

import mdl

WEIGHTS = make_data(150_000, seed=882)
TINY = {"config.json": b'{"a": 1}', "model.safetensors": WEIGHTS}


@pytest.fixture
def env(hub: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    hub.add_repo("org/tiny", TINY)
    hub.add_repo("org/ds", {"data/train.csv": b"a,b\n1,2\n"}, repo_type="dataset")
    monkeypatch.chdir(tmp_path)
    return {
        "HF_ENDPOINT": hub.url,
        "HF_HUB_CACHE": str(tmp_path / "hf"),
        "MDL_LOG_FILE": str(tmp_path / "mdl.log"),
    }


def test_a_repo_id_to_its_snapshot_folder_as_snapshot_download_returns_it(
    env: dict[str, str], tmp_path: Path
) -> None:
    from huggingface_hub import snapshot_download

    folder = mdl.fetch("org/tiny", environ=env)
    assert sorted(p.name for p in folder.iterdir()) == sorted(TINY)
    assert (folder / "model.safetensors").read_bytes() == WEIGHTS
    same = snapshot_download("org/tiny", cache_dir=tmp_path / "hf", local_files_only=True)
    assert folder == Path(same)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hf"], "no catalog, no .mdl"
    # the same call again: its record says so, and the path is the same
    assert mdl.fetch("hf://org/tiny", environ=env) == folder


def test_one_file_a_dataset_a_local_dir_and_a_cache_dir(
    env: dict[str, str], tmp_path: Path
) -> None:
    one = mdl.fetch("org/tiny", "config.json", environ=env)
    assert one.read_bytes() == TINY["config.json"] and one.parent.parent.name == "snapshots"
    data = mdl.fetch("org/ds", "data/train.csv", repo_type="dataset", local_dir="ds", environ=env)
    assert data == tmp_path / "ds" / "data" / "train.csv"
    there = mdl.fetch("org/tiny", local_dir=tmp_path / "here", environ=env)
    assert there == tmp_path / "here" and (there / "config.json").exists()
    cached = mdl.fetch("org/tiny", cache_dir=tmp_path / "other", environ=env)
    assert cached.is_relative_to(tmp_path / "other" / "models--org--tiny")


def test_what_cannot_be_had_raises_its_error(env: dict[str, str]) -> None:
    with pytest.raises(mdl.NotFoundError):
        mdl.fetch("org/missing", environ=env)
    with pytest.raises(mdl.UsageError, match="repo_type"):
        mdl.fetch("org/tiny", repo_type="checkpoint", environ=env)
    with pytest.raises(mdl.UsageError, match="names its repo type"):
        mdl.fetch("hf://org/tiny", revision="main", environ=env)


def test_the_ready_bars_draw_the_files_and_the_total(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from rich.console import Console

    monkeypatch.setenv("TERM", "xterm-256color")  # (the suite's is dumb: rich draws no frames)

    screen = io.StringIO()  # a terminal's: every frame drawn, the last one kept
    console = Console(file=screen, width=120, force_terminal=True, no_color=True)
    with mdl.ProgressBars(console=console) as bars:
        mdl.fetch("org/tiny", environ=env, progress=bars)
    shown = screen.getvalue()
    assert "model.safetensors" in shown, "a row for the file while it came"
    last = shown.rsplit("\r", 1)[-1]
    assert "total" in last and "146.5/146.5 KiB" in last, last
