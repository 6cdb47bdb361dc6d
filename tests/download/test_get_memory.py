"""A one-off keeps a memory and uses it: a second ``mdl get`` of what it saved is judged by the
folder's record (``DIR/.mdl/get.json``: size and mtime, as pull judges its own) and reads no file
back; offline (``HF_HUB_OFFLINE=1``) it answers from that record."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from runfixtures import mdl
from servers import HubServer, make_data

WEIGHTS = make_data(300_000, seed=88)
TINY = {"config.json": b'{"a": 1}', "model.safetensors": WEIGHTS, "tok/vocab.txt": b"a\nb\n"}
NOTE = "nothing was checked upstream"

# Every file this process opens while ``_OPENED`` is a list (an audit hook: ``open()`` and
# ``os.open`` both raise the "open" event; hooks cannot be removed, so this one is idle otherwise).
_OPENED: list[list[str]] = []


def _hook(event: str, args: tuple[Any, ...]) -> None:
    if event == "open" and _OPENED and isinstance(args[0], (str, bytes, os.PathLike)):
        _OPENED[-1].append(os.fsdecode(args[0]))


sys.addaudithook(_hook)


@contextmanager
def opened() -> Iterator[list[str]]:
    """The paths opened (for any use) inside the block."""
    seen: list[str] = []
    _OPENED.append(seen)
    try:
        yield seen
    finally:
        _OPENED.pop()


@pytest.fixture
def env(hub: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> HubServer:
    hub.add_repo("org/tiny", TINY)
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.setenv("MDL_LOG_FILE", str(tmp_path / "mdl.log"))
    monkeypatch.chdir(tmp_path)
    return hub


def data_files(paths: list[str]) -> set[str]:
    """Of ``paths``, the files a get saved, by name (a confined open names a file relative to its
    folder's descriptor: only its name is sure)."""
    names = {Path(path).name: path for path in TINY}
    return {names[Path(path).name] for path in paths if Path(path).name in names}


def test_a_second_get_of_a_repo_reads_no_file_back(env: HubServer, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert mdl("get", "hf://org/tiny", "-d", "out").exit_code == 0
    with opened() as seen:
        again = mdl("get", "hf://org/tiny", "-d", "out", "--json")
    assert again.exit_code == 0, again.stderr
    doc = json.loads(again.stdout)
    assert {f["action"] for f in doc["files"]} == {"skipped"}
    assert data_files(seen) == set(), "its record vouched for every file: none was opened"
    # one file of it, the same
    with opened() as seen:
        one = mdl("get", "hf://org/tiny/model.safetensors", "-d", "out")
    assert one.exit_code == 0, one.stderr
    assert one.stdout.splitlines() == [str(out / "model.safetensors")]
    assert data_files(seen) == set()


def test_a_file_touched_since_is_hashed_again_and_kept(env: HubServer, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert mdl("get", "hf://org/tiny", "-d", "out").exit_code == 0
    weights = out / "model.safetensors"
    stat = weights.stat()
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    with opened() as seen:
        again = mdl("get", "hf://org/tiny", "-d", "out", "--json")
    assert again.exit_code == 0, again.stderr
    assert {f["action"] for f in json.loads(again.stdout)["files"]} == {"skipped"}
    assert data_files(seen) == {"model.safetensors"}, "only the touched file is read"
    weights.write_bytes(b"x" * len(WEIGHTS))  # same size, other bytes: not the Hub's file
    refused = mdl("get", "hf://org/tiny", "-d", "out")
    assert refused.exit_code == 2 and "differs" in refused.stderr, refused.stderr


def test_offline_a_repo_get_saved_is_its_folder_with_a_note(
    env: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    assert mdl("get", "hf://org/tiny", "-d", "out").exit_code == 0
    env.log.clear()
    env.cdn.log.clear()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with opened() as seen:
        result = mdl("get", "hf://org/tiny", "-d", "out")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines() == [str(out)], "the folder, as hf download prints it"
    assert result.stderr.count(NOTE) == 1, result.stderr
    assert data_files(seen) == set()
    one = mdl("get", "hf://org/tiny/tok/vocab.txt", "-d", "out", "--json")
    assert one.exit_code == 0, one.stderr
    [file] = json.loads(one.stdout)["files"]
    assert (file["action"], file["dest"]) == ("skipped", str(out / "tok" / "vocab.txt"))
    assert NOTE in file["warning"]
    only = mdl("get", "hf://org/tiny", "-d", "out", "--include", "tok/*", "--json")
    assert [f["path"] for f in json.loads(only.stdout)["files"]] == ["tok/vocab.txt"]
    assert env.log.records() == [] and env.cdn.log.records() == [], "offline: nothing asked"
    forced = mdl("get", "hf://org/tiny/config.json", "-d", "out", "--force")
    assert forced.exit_code == 5, "--force asks to fetch it again: offline, it cannot"
    assert "HF_HUB_OFFLINE is set and the file must be fetched" in forced.stderr


def test_offline_a_file_gone_is_the_offline_error_naming_it(
    env: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert mdl("get", "hf://org/tiny", "-d", "out").exit_code == 0
    (tmp_path / "out" / "config.json").unlink()
    env.log.clear()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    result = mdl("get", "hf://org/tiny", "-d", "out")
    assert result.exit_code == 5, result.stderr
    assert "hf://org/tiny/config.json: HF_HUB_OFFLINE is set and the file must be fetched" in (
        result.stderr
    )
    assert result.stdout == "", "no folder: not every file is there"
    single = mdl("get", "hf://org/tiny/config.json", "-d", "out")
    assert single.exit_code == 5 and "hf://org/tiny/config.json" in single.stderr
    other = mdl("get", "hf://org/other", "-d", "out")
    assert other.exit_code == 2 and "no get saved it" in other.stderr, other.stderr
    assert env.log.records() == []
