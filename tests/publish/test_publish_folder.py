"""`mdl publish --to file:///…`: a shared folder through the folder store (mdl/buckets/folder.py),
as S3 publish goes through the S3 store: the same skip rule (a SHA-256 of the object's own bytes:
here the file read), the same layout (each file once, by its content), version manifests and
model.sig, the same output; and a fleet node pulling from the folder with the mirror
``file:///…/{model}/{sha256}``."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from runfixtures import mdl
from servers import HubServer, make_data
from typer.testing import Result

from mdl.buckets.folder import FolderWriter
from mdl.buckets.names import Temp
from mdl.errors import ExitCode, InterruptedByUserError
from mdl.progress import NullProgress

MiB = 1024 * 1024
FILES = {
    "config.json": b'{"model_type": "bert", "hidden_size": 8}\n',
    "vocab.txt": b"[PAD]\n[UNK]\n" * 50,
    "nested/big.safetensors": make_data(3 * MiB + 7, seed=91),
}


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def manifests(shared: Path) -> list[Path]:
    """The version manifests in the folder."""
    return sorted((shared / ".mdl" / "versions").rglob("*.json"))


def files_of(result: Result) -> dict[str, dict[str, Any]]:
    return {f["path"]: f for f in json.loads(result.stdout)["files"] if f["path"] is not None}


def make_key(folder: Path) -> Path:
    """An EC P-256 private key made here (PEM)."""
    key, private = ec.generate_private_key(ec.SECP256R1()), folder / "signer.pem"
    pkcs8, none = serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    private.write_bytes(key.private_bytes(serialization.Encoding.PEM, pkcs8, none))
    return private


def temps(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if (Temp.parse(p.name) is not None)]


@pytest.fixture
def pulled(hub: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Machine A has pulled `tiny` from the Hub stand-in; the shared folder is not made yet."""
    hub.add_repo("org/tiny", FILES)
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.setenv("MDL_LOG_FILE", str(tmp_path / "mdl.log"))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "catalog.toml").write_text('[models.tiny]\nrepo = "org/tiny"\n')
    done = mdl("pull", "tiny", "--dest", str(tmp_path / "a"))
    assert done.exit_code == 0, done.stderr
    return tmp_path / "a"


def publish(dest: Path, to: str, *extra: str) -> Result:
    return mdl("publish", "tiny", "--to", to, "--dest", str(dest), "--json", *extra)


def test_publish_to_a_folder_then_a_node_pulls_from_it_with_zero_hub_bytes(
    pulled: Path, hub: HubServer, tmp_path: Path
) -> None:
    shared = tmp_path / "shared" / "models"
    to = f"file://{shared}"
    published = publish(pulled, to + "/")
    assert published.exit_code == 0, published.stderr
    doc = json.loads(published.stdout)
    assert doc["ok"] and doc["to"] == to and doc["template"] == f"{to}/{{model}}/{{sha256}}"
    (vid,) = [v["id"] for v in doc["versions"]]
    assert doc["manifests"] == [f"{to}/.mdl/versions/tiny/{vid}.json"]
    assert {
        p: (f["action"], f["size"], f["sha256"], f["dest"]) for p, f in files_of(published).items()
    } == {p: ("uploaded", len(d), sha(d), f"{to}/tiny/{sha(d)}") for p, d in FILES.items()}
    assert sorted(p.name for p in (shared / "tiny").iterdir()) == sorted(map(sha, FILES.values()))
    for data in FILES.values():
        assert (shared / "tiny" / sha(data)).read_bytes() == data
        # marked as mdl's, as a fill marks what it uploads: prune --mirror may remove it
        owned = FolderWriter().owned(f"{to}/tiny/{sha(data)}", root=f"{to}/")
        assert owned is not None and owned.marked
    assert not (shared / ".mdl" / "tiny.json").exists(), "no per-model manifest"
    manifest = json.loads((shared / ".mdl" / "versions" / "tiny" / f"{vid}.json").read_bytes())
    assert manifest["model"] == "tiny" and manifest["id"] == vid
    assert {f["path"]: (f["size"], f["sha256"]) for f in manifest["files"]} == {
        p: (len(d), sha(d)) for p, d in FILES.items()
    }
    assert temps(shared) == []

    assert mdl("lock", "tiny").exit_code == 0
    hub.cdn.log.clear()
    hub.log.clear()
    mirror = f"{to}/{{model}}/{{sha256}}"
    node = mdl(
        "pull", "tiny", "--locked", "--dest", str(tmp_path / "b"), "--mirror", mirror, "--json"
    )
    assert node.exit_code == 0, node.stderr
    assert hub.cdn.log.body_bytes() == 0 and hub.log.records() == []
    for path, data in FILES.items():
        assert (tmp_path / "b" / "tiny" / path).read_bytes() == data
    assert {p: f["mirror"] for p, f in files_of(node).items()} == {
        p: f"{to}/tiny/{sha(d)}" for p, d in FILES.items()
    }


def test_a_rerun_skips_what_is_there_and_replaces_what_changed(
    pulled: Path, tmp_path: Path
) -> None:
    shared = tmp_path / "shared"
    to = f"file://{shared}"
    assert publish(pulled, to).exit_code == 0
    # same size, other bytes: a file the folder holds is judged by its bytes, never its name
    changed = shared / "tiny" / sha(FILES["vocab.txt"])
    changed.write_bytes(b"X" * len(FILES["vocab.txt"]))
    kept = {p: (shared / "tiny" / sha(d)).stat().st_ino for p, d in FILES.items()}
    del kept["vocab.txt"]
    (manifest_path,) = manifests(shared)
    manifest = manifest_path.stat()

    again = publish(pulled, to)
    assert again.exit_code == 0, again.output
    actions = {p: f["action"] for p, f in files_of(again).items()}
    assert actions == {
        "config.json": "skipped",
        "vocab.txt": "uploaded",
        "nested/big.safetensors": "skipped",
    }
    assert changed.read_bytes() == FILES["vocab.txt"]
    assert {p: (shared / "tiny" / sha(FILES[p])).stat().st_ino for p in kept} == kept, (
        "skipped: not written"
    )
    assert manifest_path.stat().st_ino == manifest.st_ino, "the same manifest"

    before = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in shared.rglob("*") if p.is_file()}
    third = mdl("publish", "tiny", "--to", to, "--dest", str(pulled))
    assert third.exit_code == 0, third.output
    assert "3 skipped" in third.stderr
    vid = manifest_path.stem
    assert (
        f"tiny → {to}/tiny/ (3 files, 3.00 MiB; version {vid[:12]}, manifest {manifest_path.as_uri()}"
        " already there)" in third.stderr
    )
    assert f"nodes: --mirror '{to}/{{model}}/{{sha256}}'\n" in third.stderr
    after = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in shared.rglob("*") if p.is_file()}
    assert after == before, "nothing changed: no file, manifest or mark is written again"


def test_a_link_in_the_folder_is_never_taken_for_the_file(pulled: Path, tmp_path: Path) -> None:
    """An object that is a link to the very bytes is not the object: replaced by a file."""
    shared = tmp_path / "shared"
    (shared / "tiny").mkdir(parents=True)
    name = sha(FILES["config.json"])
    (shared / "tiny" / name).symlink_to(pulled / "tiny" / "config.json")
    result = publish(pulled, f"file://{shared}")
    assert result.exit_code == 0, result.output
    assert files_of(result)["config.json"]["action"] == "uploaded"
    assert not (shared / "tiny" / name).is_symlink()


def test_the_signature_is_stored_by_content_named_by_the_manifest_and_a_rerun_keeps_it(
    pulled: Path, tmp_path: Path
) -> None:
    private = make_key(tmp_path)
    shared = tmp_path / "shared"
    to = f"file://{shared}"
    first = publish(pulled, to, "--sign", str(private))
    assert first.exit_code == 0, first.output
    assert files_of(first)["model.sig"]["action"] == "uploaded"
    signature = shared / "tiny" / files_of(first)["model.sig"]["sha256"]
    assert files_of(first)["model.sig"]["sha256"] == sha(signature.read_bytes())
    (manifest,) = manifests(shared)
    named = json.loads(manifest.read_bytes())["signature"]
    assert (named["path"], named["sha256"]) == ("model.sig", sha(signature.read_bytes()))
    again = publish(pulled, to, "--sign", str(private))
    assert again.exit_code == 0, again.output
    assert {f["action"] for f in files_of(again).values()} == {"skipped"}
    assert files_of(again)["model.sig"]["sha256"] == sha(signature.read_bytes())
    # a dry run changes nothing (reading a model.sig writes no clock beside it)
    before = sorted(p for p in shared.rglob("*"))
    dry = publish(pulled, to, "--sign", str(private), "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert {f["action"] for f in files_of(dry).values()} == {"skip"}
    assert sorted(p for p in shared.rglob("*")) == before
    assert not (shared / "tiny" / ".mdl").exists()


@pytest.fixture
def read_only(tmp_path: Path) -> Iterator[Path]:
    """A folder nobody may write in, root included (``chattr +i``; others: mode 555)."""
    folder = tmp_path / "ro"
    folder.mkdir()
    if os.geteuid() == 0:
        chattr = shutil.which("chattr")
        if chattr is None or subprocess.run([chattr, "+i", str(folder)]).returncode:
            pytest.skip("root writes every folder, and this one cannot be made immutable")
    else:
        folder.chmod(0o555)
    try:
        yield folder
    finally:
        if os.geteuid() == 0:
            subprocess.run(["chattr", "-i", str(folder)], check=True)
        folder.chmod(0o755)


def test_a_read_only_folder_is_exit_7_naming_it(pulled: Path, read_only: Path) -> None:
    result = publish(pulled, f"file://{read_only}")
    assert result.exit_code == ExitCode.LOCAL, result.output
    assert json.loads(result.stdout)["manifests"] == []
    assert {f["action"] for f in files_of(result).values()} == {"failed"}
    assert str(read_only) in result.stderr and "Traceback" not in result.output
    assert list(read_only.iterdir()) == []


class CtrlC(NullProgress):
    """Ctrl-C as the big file's first bytes are copied (the small ones go on)."""

    def advance(self, key: str, nbytes: int) -> None:
        if key.endswith("big.safetensors"):
            raise KeyboardInterrupt


def test_ctrl_c_mid_upload_leaves_no_half_file_and_the_rerun_finishes(
    pulled: Path, tmp_path: Path
) -> None:
    import mdl as mdl_api

    shared = tmp_path / "shared"
    to = f"file://{shared}"
    with pytest.raises(InterruptedByUserError):
        mdl_api.publish("tiny", to=to, dest=pulled, progress=CtrlC())
    assert not (shared / "tiny" / sha(FILES["nested/big.safetensors"])).exists()
    assert manifests(shared) == []
    assert temps(shared) == []
    for data in FILES.values():  # whole or not there
        there = shared / "tiny" / sha(data)
        assert not there.exists() or there.read_bytes() == data

    again = publish(pulled, to)
    assert again.exit_code == 0, again.output
    big = FILES["nested/big.safetensors"]
    assert (shared / "tiny" / sha(big)).read_bytes() == big


@pytest.mark.slow
@pytest.mark.parametrize(
    "to",
    [
        "file://other-host/x",
        "file:///a/../b",
        "file:///a//b",
        "file://relative",
        "file:///shared/{model}/{path}",
        "file:///shared/{model}/{sha256}/x",
    ],
)
def test_a_bad_folder_target_is_exit_2_naming_it(to: str, pulled: Path) -> None:
    result = mdl("publish", "tiny", "--dest", str(pulled), "--to", to)
    assert result.exit_code == ExitCode.USAGE, result.output
    assert "--to" in result.stderr


def test_a_folder_target_takes_no_endpoint(pulled: Path, tmp_path: Path) -> None:
    result = mdl(
        "publish",
        "tiny",
        "--dest",
        str(pulled),
        "--to",
        f"file://{tmp_path}/shared",
        "--endpoint-url",
        "http://127.0.0.1:9",
    )
    assert result.exit_code == ExitCode.USAGE, result.output
    assert "--endpoint-url" in result.stderr
    assert not (tmp_path / "shared").exists()


def test_a_bad_object_is_named_with_the_one_command_that_repairs_it(
    pulled: Path, hub: HubServer, tmp_path: Path
) -> None:
    shared = tmp_path / "shared"
    to = f"file://{shared}"
    assert publish(pulled, to).exit_code == 0
    data = FILES["nested/big.safetensors"]
    bad = shared / "tiny" / sha(data)
    bad.write_bytes(bytes([data[0] ^ 1]) + data[1:])  # same size, one byte flipped
    mirror = f"{to}/{{model}}/{{sha256}}"

    # Every machine meets it: the warning names the object and the command that repairs it.
    node = mdl("pull", "tiny", "--dest", str(tmp_path / "b"), "--mirror", mirror, "--json")
    assert node.exit_code == 0, node.stderr
    assert (tmp_path / "b" / "tiny" / "nested" / "big.safetensors").read_bytes() == data
    command = f"mdl publish tiny --to {to}"
    said = [line for line in node.stderr.splitlines() if "holds bad bytes" in line]
    assert len(said) == 1, node.stderr
    assert f"mirror {to}/tiny/{sha(data)} holds bad bytes (sha256 mismatch" in said[0]
    assert said[0].endswith(f"repair it: {command}"), said[0]
    outcome = files_of(node)["nested/big.safetensors"]
    assert "mirror" not in outcome and f"repair it: {command}" in outcome["warning"], outcome

    # That command, run where the pull just verified the file, replaces the object.
    repaired = mdl(*command.split()[1:], "--dest", str(tmp_path / "b"), "--json")
    assert repaired.exit_code == 0, repaired.stderr
    assert files_of(repaired)["nested/big.safetensors"]["action"] == "uploaded"
    assert bad.read_bytes() == data
    hub.cdn.log.clear()
    healed = mdl("pull", "tiny", "--dest", str(tmp_path / "c"), "--mirror", mirror, "--json")
    assert healed.exit_code == 0, healed.stderr
    assert "bad bytes" not in healed.stderr
    assert hub.cdn.log.body_bytes() == 0
