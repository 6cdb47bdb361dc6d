"""Every command's --json document has ``ok`` (true exactly when the exit code is 0), absent values
are null (never ""), and an error document is ``{"ok": false, "error": {"code", "kind", "message",
"hint"}}``."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from runfixtures import make_hf_run, mdl
from servers import HubServer, make_data
from zygote import forked_mdl

ROOT = Path(__file__).resolve().parents[2]
CATALOG = """
[models.tiny]
repo = "org/tiny"

[[models.lora.files]]
url = "{url}"
"""


@pytest.fixture
def world(hub: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    hub.add_repo(
        "org/tiny",
        {"config.json": b'{"hidden_size": 8}\n', "model.bin": make_data(300_000, seed=3)},
    )
    url = hub.cdn.add_file("/style.safetensors", make_data(20_000, seed=4))
    (tmp_path / "catalog.toml").write_text(CATALOG.format(url=url))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.setenv("MDL_DEST", str(tmp_path / "models"))
    monkeypatch.setenv("MDL_LOG_FILE", str(tmp_path / "mdl.log"))
    make_hf_run(tmp_path / "run", steps=(100,))
    return url


def empty_strings(doc: Any, where: str = "$") -> list[str]:
    """Where ``doc`` holds ``""`` (the contract says null)."""
    if doc == "":
        return [where]
    if isinstance(doc, dict):
        return [w for key, value in doc.items() for w in empty_strings(value, f"{where}.{key}")]
    if isinstance(doc, list):
        return [w for i, value in enumerate(doc) for w in empty_strings(value, f"{where}[{i}]")]
    return []


def check_shape(args: list[str], code: int, stdout: str) -> dict[str, Any]:
    lines = stdout.splitlines()
    assert len(lines) == 1, f"{args}: one JSON document, got {stdout!r}"
    doc = json.loads(lines[0])
    assert isinstance(doc, dict) and doc.get("ok") is (code == 0), (
        f"{args} (exit {code}): ok is {doc.get('ok')!r}"
    )
    assert empty_strings(doc) == [], f"{args}: empty strings instead of null"
    if "error" in doc:
        assert set(doc["error"]) == {"code", "kind", "message", "hint"}, args
        assert doc["error"]["code"] == code, args
    return doc


def run(*args: str) -> tuple[int, dict[str, Any]]:
    result = mdl(*args, "--json")
    return result.exit_code, check_shape(list(args), result.exit_code, result.stdout)


def test_every_command_says_ok(world: str, tmp_path: Path) -> None:
    expected = [
        (("lock", "--check"), 2),  # no lock yet: a failed check is ok false, not a missing key
        (("list",), 0),
        (("show", "tiny"), 0),
        (("resolve", "tiny"), 0),
        (("lock",), 0),
        (("lock", "--check"), 0),
        (("pull", "--all"), 0),
        (("verify", "--all"), 0),
        (("clean",), 0),
        (("prune", "--dry-run"), 0),
        (("get", world, "-d", "fetched"), 0),
        (("pack", "run", "--checkpoint", "latest", "-o", "a.zip"), 0),
        (("pack", "run", "--checkpoint", "latest", "-o", "a.zip", "--dry-run", "--force"), 0),
        (("unpack", "a.zip", "-d", "unpacked"), 0),
        (("add", "cfg", "hf://org/tiny/config.json"), 0),
        (("remove", "cfg"), 0),
    ]
    for args, code in expected:
        got, doc = run(*args)
        assert got == code, (args, doc)
    _, checked = run("lock", "--check")
    assert checked["fresh"] is True


def test_error_documents_carry_the_hint(world: str, tmp_path: Path) -> None:
    code, doc = run("pack", "run", "--checkpoint", "latest", "-o", "b.zip")
    assert code == 0
    code, doc = run("pack", "run", "--checkpoint", "latest", "-o", "b.zip")
    assert code == 2 and doc["error"]["hint"] == "use --force to replace it"
    code, doc = run("show", "nosuch")
    assert code == 2 and doc["error"]["kind"] == "usage" and "mdl list" in doc["error"]["hint"]
    code, doc = run("publish", "tiny", "--to", "not-s3")
    assert code == 2 and doc["ok"] is False
    code, doc = run("unpack", "missing.zip")
    assert code == 2 and doc["error"]["hint"] is None  # no hint to give: null, present


def test_a_parse_error_document_carries_a_hint_too(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MDL_LOG_FILE": str(tmp_path / "mdl.log")}
    for args in (["pack", "--bogus", "--json"], ["get", "--bogus", "--json"]):
        result = subprocess.run(
            [forked_mdl(), *args], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 2
        doc = check_shape(args, result.returncode, result.stdout)
        assert doc["error"]["hint"] == f"see mdl {args[0]} --help"
