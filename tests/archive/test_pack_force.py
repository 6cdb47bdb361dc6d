"""`mdl pack -o` onto an existing file needs --force, like `get` and `unpack`; the replacement is
atomic.
"""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
from runfixtures import make_hf_run
from runfixtures import mdl as run_mdl

import mdl
from mdl import UsageError


@pytest.fixture
def run_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MDL_LOG_FILE", str(tmp_path / "mdl.log"))
    make_hf_run(tmp_path / "run", steps=(100,))
    return tmp_path / "run"


def test_pack_onto_an_existing_file_is_refused_with_the_force_hint(
    run_dir: Path, tmp_path: Path
) -> None:
    existing = tmp_path / "existing.zip"
    existing.write_bytes(b"precious")
    result = run_mdl("pack", str(run_dir), "--checkpoint", "latest", "-o", str(existing), "--json")
    assert result.exit_code == 2
    doc = json.loads(result.stdout)
    assert doc["ok"] is False and "already exists" in doc["error"]["message"]
    assert doc["error"]["hint"] == "use --force to replace it"
    assert "--force" in result.stderr
    assert existing.read_bytes() == b"precious"
    assert not list(tmp_path.glob("*.partial"))


def test_dry_run_says_so_too_and_the_default_name_is_no_exception(
    run_dir: Path, tmp_path: Path
) -> None:
    first = run_mdl("pack", str(run_dir), "--checkpoint", "latest")
    assert first.exit_code == 0, first.stderr
    archive = tmp_path / "run-checkpoint-100.zip"
    before = archive.read_bytes()
    for extra in ((), ("--dry-run",)):
        again = run_mdl("pack", str(run_dir), "--checkpoint", "latest", *extra)
        assert again.exit_code == 2 and "use --force to replace it" in again.stderr
    assert archive.read_bytes() == before


def test_force_replaces_it_atomically(run_dir: Path, tmp_path: Path) -> None:
    target = tmp_path / "out.zip"
    target.write_bytes(b"old archive")
    old_inode = target.stat().st_ino
    # a reader of the old file keeps its bytes: the new one is renamed over it
    watcher = target.open("rb")
    result = run_mdl(
        "pack", str(run_dir), "--checkpoint", "latest", "-o", str(target), "--force", "--json"
    )
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["ok"] is True
    assert watcher.read() == b"old archive"
    watcher.close()
    assert target.stat().st_ino != old_inode
    with zipfile.ZipFile(target) as zf:
        assert zf.testzip() is None and "out/config.json" in zf.namelist()
    assert sorted(os.listdir(tmp_path)) == ["mdl.log", "out.zip", "run"]


def test_a_symlink_at_the_output_is_replaced_not_followed(run_dir: Path, tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    (tmp_path / "link.zip").symlink_to(victim)
    with pytest.raises(UsageError, match="already exists"):
        mdl.pack(run_dir, checkpoint="latest", output="link.zip")
    mdl.pack(run_dir, checkpoint="latest", output="link.zip", force=True)
    assert victim.read_text() == "keep me"
    assert not (tmp_path / "link.zip").is_symlink() and zipfile.is_zipfile(tmp_path / "link.zip")


def test_a_folder_at_the_output_is_refused_even_with_force(run_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "dir.zip").mkdir()
    with pytest.raises(UsageError, match="is a folder"):
        mdl.pack(run_dir, checkpoint="latest", output="dir.zip", force=True)


@pytest.mark.parametrize("plant", ["hard link", "leftover"])
def test_a_planted_partial_is_never_written_through(
    run_dir: Path, tmp_path: Path, plant: str
) -> None:
    """Issue 37 (rule 14): OUT.zip.partial is made fresh; another name of an outside file there
    loses only its name.
    """
    outside = tmp_path / "outside.txt"
    outside.write_bytes(b"PRECIOUS DATA")
    before = outside.stat()
    partial = tmp_path / "out.zip.partial"
    if plant == "hard link":
        os.link(outside, partial)
    else:
        partial.write_bytes(b"half an archive from a killed pack")
    result = run_mdl(
        "pack", str(run_dir), "--checkpoint", "latest", "-o", str(tmp_path / "out.zip")
    )
    assert result.exit_code == 0, result.stderr
    assert outside.read_bytes() == b"PRECIOUS DATA"
    assert (outside.stat().st_ino, outside.stat().st_mtime_ns) == (
        before.st_ino,
        before.st_mtime_ns,
    )
    assert zipfile.ZipFile(tmp_path / "out.zip").testzip() is None
    assert not partial.exists()


def test_mdl_state_in_a_run_is_left_out_not_refused(run_dir: Path, tmp_path: Path) -> None:
    """`mdl get -d RUN` keeps RUN/.mdl/get.json: pack leaves mdl's state out (listed), as git
    leaves out .git.
    """
    (run_dir / ".mdl").mkdir()
    (run_dir / ".mdl" / "get.json").write_text("{}")
    result = run_mdl("pack", str(run_dir), "-o", str(tmp_path / "out.zip"), "--json")
    assert result.exit_code == 0, result.stderr
    names = zipfile.ZipFile(tmp_path / "out.zip").namelist()
    assert names and not any(".mdl/" in name for name in names)
    assert ".mdl/" in result.stdout


def once_written(monkeypatch: pytest.MonkeyPatch, then: Callable[[], object]) -> None:
    """``then`` run as the archive's bytes are written, before the pack puts it in place: what
    another run does meanwhile."""
    from mdl.archive import _zipwriter

    real = _zipwriter._write_seekable

    def written(*args: object, **kwargs: object) -> object:
        done = real(*args, **kwargs)  # type: ignore[arg-type]
        then()
        return done

    monkeypatch.setattr(_zipwriter, "_write_seekable", written)


def test_a_pack_of_the_same_output_under_way_is_exit_7_and_its_partial_untouched(
    run_dir: Path, tmp_path: Path
) -> None:
    """Two `pack -o same.zip` at once (two cron jobs): the second never takes the first's
    partial (it unlinked it, and the first then renamed the second's archive in place and said
    its own was there); a leftover no run holds is still taken."""
    import fcntl

    target = tmp_path / "same.zip"
    partial = tmp_path / "same.zip.partial"
    partial.write_bytes(b"the other run's archive, so far")
    with open(partial, "rb") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        result = run_mdl("pack", str(run_dir), "--checkpoint", "latest", "-o", str(target))
    assert result.exit_code == 7, result.stderr
    assert "another mdl pack is writing this archive" in result.stderr
    assert partial.read_bytes() == b"the other run's archive, so far"
    assert not target.exists()
    done = run_mdl("pack", str(run_dir), "--checkpoint", "latest", "-o", str(target))
    assert done.exit_code == 0, done.stderr  # (a leftover: no run holds it)
    assert zipfile.ZipFile(target).testzip() is None and not partial.exists()


def test_an_archive_another_run_put_there_meanwhile_is_never_replaced_unseen(
    run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The check at the start (exit 2 without --force) holds at the end too: an archive another
    run put at the output while this one packed stays, and this run says so (exit 2)."""
    target = tmp_path / "out.zip"
    once_written(monkeypatch, lambda: target.write_bytes(b"the other run's archive"))
    result = run_mdl("pack", str(run_dir), "--checkpoint", "latest", "-o", str(target))
    assert result.exit_code == 2, result.stderr
    assert "another run put an archive there while this one packed" in result.stderr
    assert target.read_bytes() == b"the other run's archive"
    assert not list(tmp_path.glob("*.partial"))


def test_a_partial_another_pack_took_the_name_of_is_never_put_in_place(
    run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another pack took the partial's name (it looked in the instant before this run held its
    fresh partial, and made its own): this run never puts the other's unfinished archive in place
    as its own, nor removes it; it is exit 7."""
    target, partial = tmp_path / "out.zip", tmp_path / "out.zip.partial"

    def the_other_pack_takes_the_name() -> None:
        partial.unlink()
        partial.write_bytes(b"the other run's half")

    once_written(monkeypatch, the_other_pack_takes_the_name)
    result = run_mdl("pack", str(run_dir), "--checkpoint", "latest", "-o", str(target))
    assert result.exit_code == 7, result.stderr
    assert "another mdl pack is writing this archive" in result.stderr
    assert not target.exists()
    assert partial.read_bytes() == b"the other run's half"
