"""`mdl get`: URLs, hf:// URIs and serverless job outputs (inline base64 and presigned redirects)."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import pytest
from servers import HubServer, make_data
from typer.testing import CliRunner, Result

from mdl.cli import app

DATA = make_data(2_500_000, seed=11)


def mdl(*args: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(app, list(args), input=stdin)


@pytest.fixture
def env(hub: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> HubServer:
    hub.add_repo("org/tiny", {"config.json": b'{"a": 1}', "model.safetensors": DATA})
    hub.add_repo("org/ds", {"data/train.jsonl": b'{"x": 1}\n'}, repo_type="dataset")
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.setenv("MDL_LOG_FILE", str(tmp_path / "mdl.log"))
    monkeypatch.chdir(tmp_path)
    return hub


def test_job_output_inline_and_presigned_in_bulk(env: HubServer, tmp_path: Path) -> None:
    url = env.cdn.add_file("/out/lora.safetensors", DATA, signed=True)
    job = [
        {"type": "file_data", "filename": "log.txt", "data": base64.b64encode(b"trained\n").decode(), "size": 8},
        {"type": "redirect", "url": url, "filename": "lora.safetensors", "size": len(DATA)},
    ]
    (tmp_path / "job.json").write_text(json.dumps({"files": job}))
    result = mdl("get", "job.json", "-d", "out", "--json")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["ok"] is True and len(doc["files"]) == 2
    assert (tmp_path / "out" / "log.txt").read_bytes() == b"trained\n"
    assert (tmp_path / "out" / "lora.safetensors").read_bytes() == DATA
    assert not (tmp_path / "out" / ".mdl").exists(), "a finished one-off get leaves no state behind"
    assert "X-Amz-Signature" not in result.stdout + result.stderr


def test_job_output_from_stdin(env: HubServer, tmp_path: Path) -> None:
    job = {"type": "file_data", "filename": "a.bin", "data": base64.b64encode(b"xyz").decode()}
    result = mdl("get", "-", stdin=json.dumps(job))
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "a.bin").read_bytes() == b"xyz"


@pytest.mark.parametrize(
    ("payload", "needle"),
    [
        ("not json", "not valid JSON"),
        ('{"type": "file_data", "filename": "../evil", "data": "eHl6"}', "filename"),
        ('{"type": "file_data", "filename": "a", "data": "%%%"}', "base64"),
        ('{"type": "ftp", "filename": "a"}', "type"),
        ('{"type": "redirect", "filename": "a", "url": "file:///etc/passwd"}', "url"),
        ("[]", "no files"),
    ],
)
def test_bad_job_output_is_exit_2(env: HubServer, tmp_path: Path, payload: str, needle: str) -> None:
    result = mdl("get", "-", stdin=payload)
    assert result.exit_code == 2
    assert needle in result.stderr
    assert not (tmp_path / "evil").exists() and not (tmp_path.parent / "evil").exists()


def test_inline_size_mismatch_is_exit_6(env: HubServer, tmp_path: Path) -> None:
    job = {"type": "file_data", "filename": "a.bin", "data": base64.b64encode(b"xyz").decode(), "size": 4}
    result = mdl("get", "-", stdin=json.dumps(job))
    assert result.exit_code == 6
    assert not (tmp_path / "a.bin").exists()


def test_hf_uri_and_output_file(env: HubServer, tmp_path: Path) -> None:
    result = mdl("get", "hf://org/tiny/model.safetensors", "-o", "w/model.bin", "--json")
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "w" / "model.bin").read_bytes() == DATA
    assert json.loads(result.stdout)["files"][0]["sha256"] == hashlib.sha256(DATA).hexdigest()
    ds = mdl("get", "hf://datasets/org/ds@main/data/train.jsonl")
    assert ds.exit_code == 0, ds.stderr
    assert (tmp_path / "train.jsonl").read_bytes() == b'{"x": 1}\n'
    assert mdl("get", "hf://org/tiny/missing.bin").exit_code == 4


def test_url_with_wrong_sha256_is_exit_6(env: HubServer, tmp_path: Path) -> None:
    url = env.cdn.add_file("/files/x.bin", DATA)
    result = mdl("get", url, "--sha256", "ab" * 32)
    assert result.exit_code == 6
    assert not (tmp_path / "x.bin").exists()
    ok = mdl("get", url, "--sha256", hashlib.sha256(DATA).hexdigest())
    assert ok.exit_code == 0
    assert (tmp_path / "x.bin").read_bytes() == DATA


def test_get_usage_errors(env: HubServer) -> None:
    assert mdl("get", "a.json", "-o", "x", "-d", "y").exit_code == 2
    assert mdl("get", "nope.json").exit_code == 2
    assert mdl("get", "hf://just-a-name").exit_code == 2
