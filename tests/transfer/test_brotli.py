"""A server that forces ``Content-Encoding: br`` is decoded (brotli is a dependency); where brotli
is missing (an install made with --no-deps), the body is refused naming the package: exit 5, nothing
written."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
from runfixtures import mdl, without_modules
from servers import CdnServer, Fault

from mdl.errors import ExitCode

TOKENIZER = json.dumps({"vocab": {f"tok{i}": i for i in range(20_000)}}).encode()


def _serve_br(cdn: CdnServer, body: bytes) -> str:
    headers = {"Content-Encoding": "br", "Content-Type": "application/json"}
    cdn.faults.add(Fault.http_error(200, body, headers=headers, path_prefix="/br/", times=None))
    return f"{cdn.url}/br/tokenizer.json"


@pytest.mark.slow
def test_a_br_body_is_decoded(
    cdn: CdnServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    brotli = pytest.importorskip(
        "brotli", reason="brotli is a dependency of mdl; this environment lacks it"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MDL_LOG_FILE", str(tmp_path / "mdl.log"))
    encoded = brotli.compress(TOKENIZER)
    assert len(encoded) < len(TOKENIZER) // 4, "the wire carries the encoded bytes, not the file"
    url = _serve_br(cdn, encoded)
    sha = hashlib.sha256(TOKENIZER).hexdigest()
    result = mdl("get", url, "-d", "out", "--sha256", sha, "--json")
    assert result.exit_code == 0, result.output
    [file] = json.loads(result.stdout)["files"]
    assert (file["size"], file["sha256"]) == (len(TOKENIZER), sha)
    assert (tmp_path / "out" / "tokenizer.json").read_bytes() == TOKENIZER


def test_without_brotli_a_br_body_is_refused_naming_the_package(
    cdn: CdnServer, tmp_path: Path
) -> None:
    # A real interpreter where neither brotli nor brotlicffi can be imported, as after `pip install
    # --no-deps mdl`.
    url = _serve_br(cdn, b"\x1b\x00\x00\x00not really brotli")
    env = {
        **without_modules(tmp_path, "brotli", "brotlicffi"),
        "MDL_LOG_FILE": str(tmp_path / "mdl.log"),
    }
    probe = subprocess.run(
        [sys.executable, "-c", "import brotli"], env=env, capture_output=True, text=True
    )
    assert probe.returncode != 0, "the blocker must make brotli unimportable"
    result = subprocess.run(
        [sys.executable, "-m", "mdl", "get", url, "-d", "out", "--json"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == ExitCode.NETWORK, result.stderr
    [file] = json.loads(result.stdout)["files"]
    assert "Content-Encoding br; pip install brotli to accept it" in file["error"]
    assert url in file["error"]
    assert "pip install brotli" in result.stderr
    assert not (tmp_path / "out" / "tokenizer.json").exists()
