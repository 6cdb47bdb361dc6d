"""Issue 37, class C: a record (``.mdl/records/<model>.json``, ``get.json``) has a size limit
checked before it is parsed, or even read: a bigger one is exit 2 naming the file and the limit,
never cut short into JSON that fails to parse with a confusing message (nor read whole into memory).
And a destination that is a file is exit 2 naming it, in every command taking ``--dest`` and in the
API."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from runfixtures import mdl
from servers import HubServer

import mdl as api
from mdl.errors import ExitCode, UsageError
from mdl.store.confined import read_bytes
from mdl.store.store import RECORD_MAX, Store

CATALOG = '[models.tiny]\nrepo = "org/tiny"\n'


def sparse(path: Path, size: int) -> Path:
    """A file of ``size`` bytes that takes no room (and would take ``size`` bytes of memory if
    read).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as handle:
        handle.truncate(size)
    return path


def test_read_bytes_refuses_a_file_over_its_limit_before_reading_it(tmp_path: Path) -> None:
    # 8 GiB: reading it first would be the bug
    big = sparse(tmp_path / "root" / "state.json", 8 << 30)
    with pytest.raises(
        UsageError, match=r"state\.json is 8\.00 GiB, more than the 1\.00 KiB"
    ) as caught:
        read_bytes(tmp_path / "root", big, limit=1024)
    assert caught.value.exit_code == ExitCode.USAGE
    # a head is only its start
    assert read_bytes(tmp_path / "root", big, limit=16, head=True) == b"\0" * 16
    exact = tmp_path / "root" / "exact.json"
    exact.write_bytes(b"x" * 1024)
    assert read_bytes(tmp_path / "root", exact, limit=1024) == b"x" * 1024


@pytest.mark.parametrize(
    "command", [("list",), ("show", "tiny"), ("verify", "tiny"), ("pull", "tiny")]
)
def test_a_record_over_the_limit_is_exit_2_naming_it(
    hub: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: tuple[str, ...]
) -> None:
    hub.add_repo("org/tiny", {"config.json": b"{}"})
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    (tmp_path / "catalog.toml").write_text(CATALOG)
    record = sparse(Store(tmp_path / "dest").record_path("tiny"), RECORD_MAX + 1)
    result = mdl(
        *command, "--catalog", str(tmp_path / "catalog.toml"), "--dest", str(tmp_path / "dest")
    )
    assert result.exit_code == ExitCode.USAGE, result.stdout + result.stderr
    assert str(record) in result.stderr and "256 MiB" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_a_get_record_over_the_limit_is_exit_2_naming_it(hub: HubServer, tmp_path: Path) -> None:
    url = hub.cdn.add_file("/files/w.bin", b"weights")
    (tmp_path / "D").mkdir()
    (tmp_path / "D" / "w.bin").write_bytes(b"weights")
    record = sparse(tmp_path / "D" / ".mdl" / "get.json", RECORD_MAX + 1)
    result = mdl("get", url, "-d", str(tmp_path / "D"))
    assert result.exit_code == ExitCode.USAGE, result.stdout + result.stderr
    assert str(record) in result.stderr and "256 MiB" in result.stderr, result.stderr


# -- a destination that is a file
# ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        ("clean",),
        ("clean", "--dry-run"),
        ("list",),
        ("show", "tiny"),
        ("verify", "tiny"),
        ("pull", "tiny"),
    ],
)
@pytest.mark.parametrize("below", [False, True])
def test_a_destination_that_is_a_file_is_exit_2_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: tuple[str, ...], below: bool
) -> None:
    # refused before the Hub is asked: nothing listens here
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    (tmp_path / "catalog.toml").write_text(CATALOG)
    (tmp_path / "F").write_text("a file, not a folder")
    dest = tmp_path / "F" / "sub" if below else tmp_path / "F"
    result = mdl(*command, "--catalog", str(tmp_path / "catalog.toml"), "--dest", str(dest))
    assert result.exit_code == ExitCode.USAGE, result.stdout + result.stderr
    assert f"{tmp_path / 'F'} is a file, not a folder" in result.stderr, result.stderr
    assert "internal error" not in result.stderr
    assert (tmp_path / "F").read_text() == "a file, not a folder"


def test_the_api_refuses_a_destination_that_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "F").write_text("a file")
    for call in (
        lambda: api.clean(dest=tmp_path / "F"),
        lambda: api.clean(dest=tmp_path / "F", dry_run=True),
    ):
        with pytest.raises(UsageError, match="is a file, not a folder") as caught:
            call()
        assert (
            caught.value.exit_code == ExitCode.USAGE and str(tmp_path / "F") in caught.value.message
        )


def test_a_cache_that_is_a_file_is_exit_2_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "cache").write_text("a file")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
    result = mdl("clean", "--layout", "hf-cache", "--dest", str(tmp_path / "dest"))
    assert result.exit_code == ExitCode.USAGE, result.stdout + result.stderr
    assert f"the Hugging Face cache {tmp_path / 'cache'} is a file" in result.stderr
    assert not os.path.exists(tmp_path / "dest" / ".mdl")


def test_a_resume_record_over_its_limit_is_set_aside_like_any_unreadable_one(
    hub: HubServer, tmp_path: Path
) -> None:
    """A resume record is scratch: one over its limit is not mdl's, so the download starts over
    (exit 0), as for a damaged or hard-linked one, instead of stopping the run."""
    from mdl.transfer.resume import STATE_MAX

    data = b"w" * 300_000
    url = hub.cdn.add_file("/files/w.bin", data)
    part, state = Store(tmp_path / "D").part_paths("", "w.bin")
    part.parent.mkdir(parents=True)
    part.write_bytes(data[:1000])
    sparse(state, STATE_MAX + 1)
    result = mdl("get", url, "-d", str(tmp_path / "D"))
    assert result.exit_code == 0, result.stdout + result.stderr
    assert (tmp_path / "D" / "w.bin").read_bytes() == data
