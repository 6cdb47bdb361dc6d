"""docs/coming-from-hf.md, run as written: each command of its sh blocks runs (in this process, in
one folder, in order) against the Hub stand-in serving the repos it names, and ends exit 0 with the
files it says."""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from pathlib import Path

import pytest
from runfixtures import mdl
from servers import HubServer, make_data

ROOT = Path(__file__).parents[1]
PAGE = (ROOT / "docs" / "coming-from-hf.md").read_text(encoding="utf-8")
BLOCKS = re.findall(r"^```sh\n(.*?)^```", PAGE, re.MULTILINE | re.DOTALL)
QWEN = {
    "config.json": b'{"model_type": "qwen3"}\n',
    "generation_config.json": b'{"do_sample": true}\n',
    "tokenizer.json": b'{"version": "1.0"}\n',
    "model.safetensors": make_data(400_000, seed=30),
}
IMDB = {"README.md": b"# imdb\n", "plain_text/train-00000-of-00001.parquet": make_data(9_000, 31)}


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[HubServer]:
    server = HubServer().start()
    server.add_repo("Qwen/Qwen3-0.6B", {**QWEN, "config.json": b'{"old": true}\n'})
    server.create_tag("Qwen/Qwen3-0.6B", "v1.0")
    server.commit("Qwen/Qwen3-0.6B", {"config.json": QWEN["config.json"]})
    server.add_repo("stanfordnlp/imdb", IMDB, repo_type="dataset")
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    monkeypatch.setenv("MDL_DEST", str(tmp_path / "models"))
    monkeypatch.chdir(tmp_path)
    try:
        yield server
    finally:
        server.stop()


def commands(block: str) -> list[list[str]]:
    return [shlex.split(line) for line in block.splitlines() if line.strip()]


def test_the_page_has_its_commands() -> None:
    assert len(BLOCKS) == 2 and all(cmd[0] == "mdl" for b in BLOCKS for cmd in commands(b))
    # each hf download habit of the table is one of its rows
    for habit in (
        "--local-dir",
        "--revision",
        "--repo-type",
        "--include",
        "--token",
        "--cache-dir",
    ):
        assert f"| `{habit}" in PAGE or f"`hf download Qwen/Qwen3-0.6B {habit}" in PAGE, habit


def test_every_command_of_the_page_runs_as_written(hub: HubServer, tmp_path: Path) -> None:
    for block in BLOCKS:
        for args in commands(block):
            result = mdl(*args[1:])
            assert result.exit_code == 0, (args, result.stderr)
    assert {p.name for p in (tmp_path / "qwen").iterdir() if p.is_file()} == set(QWEN)
    for name, data in QWEN.items():
        assert (tmp_path / "qwen" / name).read_bytes() == data
    assert (tmp_path / "cfg" / "config.json").read_bytes() == QWEN["config.json"]
    assert {p.name for p in (tmp_path / "two").iterdir() if p.is_file()} == {
        "config.json",
        "tokenizer.json",
    }
    assert (tmp_path / "qwen-v1" / "config.json").read_bytes() == b'{"old": true}\n'
    configs = {p.name for p in (tmp_path / "configs").iterdir() if p.is_file()}
    assert configs == {"config.json", "generation_config.json"}
    train = "plain_text/train-00000-of-00001.parquet"
    assert (tmp_path / "imdb" / train).read_bytes() == IMDB[train]
    assert (tmp_path / "models" / "qwen" / "model.safetensors").read_bytes() == QWEN[
        "model.safetensors"
    ]
