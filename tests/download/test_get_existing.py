"""`mdl get` over files already there: same bytes are kept, anything else is refused unless --force
replaces it.

Also what a get reports: inline and downloaded bytes in one total, hf:// failures named
owner/repo/path, URLs in errors with their port. Through the real CLI against the loopback Hub
stand-in and its CDN (tests/servers.py).
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from runfixtures import mdl
from servers import HubServer, make_data
from terminal import PLAIN, unstamped
from typer.testing import Result

from mdl.units import human_size

CONFIG = b'{"a": 1}'
LORA = make_data(3_000_000, seed=12)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def inline(name: str, data: bytes) -> dict[str, Any]:
    return {
        "type": "file_data",
        "filename": name,
        "data": base64.b64encode(data).decode(),
        "size": len(data),
    }


def messages(result: Result) -> list[str]:
    """stderr without the plain progress lines, each line without its stamp (every one has its
    own).
    """
    return [line for line in unstamped(result.stderr) if not PLAIN.match(line)]


@pytest.fixture
def env(hub: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> HubServer:
    hub.add_repo("org/tiny", {"config.json": CONFIG})
    hub.cdn.add_file("/files/abc.bin", b"abc")
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.setenv("MDL_LOG_FILE", str(tmp_path / "mdl.log"))
    monkeypatch.chdir(tmp_path)
    return hub


def job(tmp_path: Path, *descriptors: dict[str, Any]) -> str:
    (tmp_path / "job.json").write_text(json.dumps({"files": list(descriptors)}))
    return "job.json"


# -- inline files
# --------------------------------------------------------------------------------------------


def test_an_edited_file_is_refused_without_force_and_nothing_is_written(
    env: HubServer, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "config.json").write_text('{"edited": true}')
    source = job(tmp_path, inline("lora.bin", b"new"), inline("config.json", b'{"a": 2}'))
    result = mdl("get", source, "-d", str(out))
    assert result.exit_code == 2
    assert (
        f"mdl: error: {out / 'config.json'}: already exists and differs from job.json"
        in result.stderr
    )
    assert "hint: --force to replace it" in result.stderr
    assert (out / "config.json").read_text() == '{"edited": true}'
    assert sorted(p.name for p in out.iterdir()) == ["config.json"], "nothing was written"


def test_the_same_bytes_are_kept_and_force_replaces(env: HubServer, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "config.json").write_bytes(b'{"a": 2}')
    source = job(tmp_path, inline("config.json", b'{"a": 2}'))
    same = mdl("get", source, "-d", str(out), "--json")
    assert same.exit_code == 0
    assert [(f["action"], f["path"]) for f in json.loads(same.stdout)["files"]] == [
        ("skipped", "config.json")
    ]

    (out / "config.json").write_text('{"edited": true}')
    forced = mdl("get", source, "-d", str(out), "--force")
    assert forced.exit_code == 0, forced.stderr
    assert (out / "config.json").read_bytes() == b'{"a": 2}'
    assert messages(forced)[-1].startswith("fetched 1 file: 1 replaced")
    assert "repaired" not in forced.stderr
    (out / "config.json").write_text('{"edited": true}')
    doc = json.loads(mdl("get", source, "-d", str(out), "--force", "--json").stdout)
    assert [(f["action"], f["reason"]) for f in doc["files"]] == [("downloaded", "--force")]


# -- URLs and hf:// files
# ---------------------------------------------------------------------------------------


def test_a_url_without_sha256_over_a_file_is_refused_before_any_request(
    env: HubServer, tmp_path: Path
) -> None:
    (tmp_path / "abc.bin").write_bytes(b"mine")
    url = f"{env.cdn.url}/files/abc.bin"
    result = mdl("get", url)
    assert result.exit_code == 2
    assert "abc.bin: already exists, and with no sha256" in result.stderr
    assert "--force to replace it" in result.stderr
    assert len(env.cdn.log) == 0, "nothing was asked of the server"
    assert (tmp_path / "abc.bin").read_bytes() == b"mine"

    # --sha256 says what it must be: the file is that
    kept = mdl("get", url, "--sha256", sha(b"mine"))
    assert kept.exit_code == 0 and "fetched 1 file: 1 skipped" in kept.stderr
    assert len(env.cdn.log) == 0

    forced = mdl("get", url, "--force")
    assert forced.exit_code == 0, forced.stderr
    assert (tmp_path / "abc.bin").read_bytes() == b"abc"
    assert "1 replaced" in messages(forced)[-1]


def test_an_hf_file_is_compared_with_the_hubs_hash(env: HubServer, tmp_path: Path) -> None:
    first = mdl("get", "hf://org/tiny/config.json")
    assert first.exit_code == 0, first.stderr
    again = mdl("get", "hf://org/tiny/config.json")
    assert again.exit_code == 0 and messages(again)[-1] == "fetched 1 file: 1 skipped"

    (tmp_path / "config.json").write_text('{"edited": true}')
    refused = mdl("get", "hf://org/tiny/config.json")
    assert refused.exit_code == 2
    assert (
        f"{tmp_path / 'config.json'}: already exists and differs from hf://org/tiny/config.json"
        in refused.stderr
    )
    assert (tmp_path / "config.json").read_text() == '{"edited": true}'

    forced = mdl("get", "hf://org/tiny/config.json", "--force", "--json")
    assert forced.exit_code == 0, forced.stderr
    assert [(f["action"], f["reason"]) for f in json.loads(forced.stdout)["files"]] == [
        ("downloaded", "--force")
    ]
    assert (tmp_path / "config.json").read_bytes() == CONFIG


# -- what a get reports
# --------------------------------------------------------------------------------------------


def test_the_total_counts_inline_and_downloaded_bytes(env: HubServer, tmp_path: Path) -> None:
    source = job(
        tmp_path,
        inline("lora.bin", LORA),
        {"type": "redirect", "url": f"{env.cdn.url}/files/abc.bin", "filename": "abc.bin"},
    )
    result = mdl("get", source, "-d", "out")
    assert result.exit_code == 0, result.stderr
    assert messages(result)[-1].startswith(
        f"fetched 2 files: 2 downloaded; {human_size(len(LORA) + 3)} in "
    )


def test_an_hf_failure_is_named_by_repo_and_path(env: HubServer) -> None:
    result = mdl("get", "hf://org/tiny/nope.json")
    assert result.exit_code == 4
    assert messages(result)[0].startswith("mdl: error: org/tiny/nope.json: "), result.stderr
    assert "/nope.json:" not in result.stderr.replace("org/tiny/nope.json:", "")


def test_a_url_in_an_error_keeps_its_port(env: HubServer) -> None:
    result = mdl("get", f"{env.cdn.url}/models/")
    assert result.exit_code == 2
    assert f"{env.cdn.url}/models/" in result.stderr, result.stderr
