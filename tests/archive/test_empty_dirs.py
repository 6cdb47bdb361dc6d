"""Empty folders are packed as `zip -r` packs them (an entry `name/`), and unpack makes them
again.
"""

from __future__ import annotations

import io
import shutil
import stat
import subprocess
import zipfile
from pathlib import Path

import pytest
from runfixtures import make_hf_run

import mdl


@pytest.fixture
def run_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    run = make_hf_run(tmp_path / "run", steps=(100,))
    (run.root / "checkpoint-100" / "samples" / "none-yet").mkdir(parents=True)
    (run.root / "checkpoint-100" / "assets").mkdir()
    return run.root


FOLDERS = ["assets/", "samples/none-yet/"]


class Pipe:
    """A stream that can only be written to, in order (no fileno, no seek): the pipe writer's
    case.
    """

    def __init__(self) -> None:
        self.data = bytearray()

    def write(self, chunk: bytes) -> int:
        self.data += chunk
        return len(chunk)

    def flush(self) -> None:
        pass


def _folder_entries(archive: zipfile.ZipFile) -> dict[str, zipfile.ZipInfo]:
    return {info.filename: info for info in archive.infolist() if info.is_dir()}


@pytest.mark.parametrize("to", ["file", "seekable stdout", "pipe"])
def test_empty_folders_are_entries_of_their_own(run_dir: Path, tmp_path: Path, to: str) -> None:
    if to == "file":
        result = mdl.pack(run_dir, checkpoint="latest", output="out.zip")
        data = (tmp_path / "out.zip").read_bytes()
    elif to == "seekable stdout":
        with (tmp_path / "out.zip").open("w+b") as stream:
            result = mdl.pack(run_dir, checkpoint="latest", output="-", stream=stream)
        data = (tmp_path / "out.zip").read_bytes()
    else:
        sink = Pipe()
        result = mdl.pack(run_dir, checkpoint="latest", output="-", stream=sink)  # type: ignore[arg-type]
        data = bytes(sink.data)
    top = "out" if to == "file" else "run-checkpoint-100"
    assert list(result.folders) == FOLDERS and result.to_json()["folders"] == FOLDERS
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert archive.testzip() is None
        folders = _folder_entries(archive)
        assert sorted(folders) == [f"{top}/{name}" for name in FOLDERS]
        for info in folders.values():
            assert info.file_size == 0 and stat.S_ISDIR(info.external_attr >> 16)
    (tmp_path / "check.zip").write_bytes(data)
    # mdl's own reader takes each writer's folder entries
    unpacked = mdl.unpack("check.zip", dest="u")
    assert unpacked.manifest and (tmp_path / "u" / top / "samples" / "none-yet").is_dir()
    if shutil.which("unzip"):  # the tool users check with lists them as zip -r's own folders
        listing = subprocess.run(
            ["unzip", "-l", str(tmp_path / "check.zip")], capture_output=True, text=True
        )
        assert f"{top}/assets/" in listing.stdout and f"{top}/samples/none-yet/" in listing.stdout


def test_unpack_makes_them_again_and_the_manifest_still_verifies(
    run_dir: Path, tmp_path: Path
) -> None:
    mdl.pack(run_dir, checkpoint="latest", output="out.zip")
    result = mdl.unpack("out.zip", dest="there")
    assert result.manifest and sorted(result.folders) == ["out/assets/", "out/samples/none-yet/"]
    assert (tmp_path / "there" / "out" / "assets").is_dir()
    assert (tmp_path / "there" / "out" / "samples" / "none-yet").is_dir()
    assert not any((tmp_path / "there" / "out" / "assets").iterdir())
    (tmp_path / "there" / "out" / "mdl-manifest.json").unlink()
    # and round trip back into a pack
    again = mdl.pack(tmp_path / "there" / "out", output="again.zip")
    assert list(again.folders) == FOLDERS


def test_a_pattern_that_leaves_a_folder_out_leaves_it_out(run_dir: Path) -> None:
    assert mdl.pack(run_dir, checkpoint="latest", exclude="assets/", dry_run=True).folders == (
        "samples/none-yet/",
    )
    everything = mdl.pack(run_dir, checkpoint="latest", dry_run=True).folders
    # it adds
    assert (
        mdl.pack(run_dir, checkpoint="latest", include="*.json", dry_run=True).folders == everything
    )


def test_a_folder_made_empty_by_the_profile_is_not_an_entry(run_dir: Path) -> None:
    (run_dir / "checkpoint-100" / "state").mkdir()
    (run_dir / "checkpoint-100" / "state" / "optimizer.pt").write_bytes(b"x")
    assert mdl.pack(run_dir, checkpoint="latest", dry_run=True).folders == tuple(FOLDERS)
