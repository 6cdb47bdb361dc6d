"""A file another user owns is never vouched for by its size and mtime (``states.as_judged``): that
user may rewrite it keeping both (its own blob in a shared Hugging Face cache, mdl adopted after
hashing it) or put one of its own in mdl's file's place (a model folder it may write). The probe
does not call it ready and a pull hashes it again and repairs it; the running user's and root's
files are trusted as ever."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from runfixtures import mdl
from servers import HubServer, make_data
from typer.testing import Result

from mdl.store.records import FileRecord
from mdl.store.states import INSTALLED, MODIFIED_MAYBE, as_judged, judge

FOREIGN_UID = 12345
WEIGHTS = make_data(300_000, seed=41)
FILES = {"config.json": b'{"model_type": "bert"}\n', "model.safetensors": WEIGHTS}

AS_ROOT = pytest.mark.skipif(os.geteuid() != 0, reason="gives a file to another user: needs root")


def _record_of(path: Path) -> FileRecord:
    found = path.stat()
    sha256 = hashlib.sha256(path.read_bytes()).hexdigest()
    return FileRecord(path=path.name, size=found.st_size, sha256=sha256, mtime_ns=found.st_mtime_ns)


def test_a_file_of_the_running_users_is_judged_by_its_size_and_mtime(tmp_path: Path) -> None:
    path = tmp_path / "w.bin"
    path.write_bytes(WEIGHTS)
    assert judge(_record_of(path), *as_judged(path.stat())) == INSTALLED


@AS_ROOT
def test_another_users_file_is_judged_only_by_a_rehash(tmp_path: Path) -> None:
    path = tmp_path / "w.bin"
    path.write_bytes(WEIGHTS)
    entry = _record_of(path)
    os.chown(path, FOREIGN_UID, FOREIGN_UID)
    assert as_judged(path.stat()) == (len(WEIGHTS), None)
    assert judge(entry, *as_judged(path.stat())) == MODIFIED_MAYBE
    os.chown(path, 0, 0)  # root's: trusted, as its records are
    assert judge(entry, *as_judged(path.stat())) == INSTALLED


@pytest.fixture
def pulled(hub: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    hub.add_repo("org/tiny", FILES)
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setenv("MDL_LOG_FILE", str(tmp_path / "mdl.log"))
    (tmp_path / "catalog.toml").write_text('[models.tiny]\nrepo = "org/tiny"\n')
    yield tmp_path


def _mdl(root: Path, *args: str) -> Result:
    return mdl(*args, "--catalog", str(root / "catalog.toml"), "--dest", str(root / "dest"))


def _forged(path: Path) -> bytes:
    """Other bytes of the same size at ``path``, another user's, at the mtime mdl recorded."""
    was = path.stat()
    other = bytes(b ^ 0xFF for b in WEIGHTS)
    forged = path.with_name(path.name + ".forged")
    forged.write_bytes(other)
    os.chown(forged, FOREIGN_UID, FOREIGN_UID)
    os.utime(forged, ns=(was.st_atime_ns, was.st_mtime_ns))
    os.replace(forged, path)
    return other


@AS_ROOT
@pytest.mark.parametrize("layout", ["plain", "hf-cache"])
def test_a_file_another_user_put_in_place_is_never_ready_and_the_pull_repairs_it(
    pulled: Path, layout: str
) -> None:
    flag = ("--layout", layout)
    first = _mdl(pulled, "pull", "tiny", *flag)
    assert first.exit_code == 0, first.stderr
    placed = pulled / "dest" / "tiny" / "model.safetensors"
    if layout == "hf-cache":
        placed = next((pulled / "hf-cache").glob("models--org--tiny/snapshots/*/model.safetensors"))
    bytes_path = placed.resolve()  # the blob behind the snapshot's link
    assert _forged(bytes_path) != WEIGHTS
    probe = _mdl(pulled, "verify", "tiny", "--quick", *flag)
    assert probe.exit_code == 6, probe.stdout + probe.stderr
    assert "model.safetensors" in probe.stdout + probe.stderr
    again = _mdl(pulled, "pull", "tiny", *flag)
    assert again.exit_code == 0, again.stderr
    assert placed.read_bytes() == WEIGHTS
    assert _mdl(pulled, "verify", "tiny", "--quick", *flag).exit_code == 0
