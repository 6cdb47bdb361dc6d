"""``mdl unpack --force`` swaps the target entirely or not at all: SIGTERM and Ctrl-C wait for the
swap, a failed rename is undone, and what a kill -9 leaves behind is rolled back by the next unpack,
never deleted."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import zipfile
from pathlib import Path
from typing import Any

import pytest
from runfixtures import HANG, mdl, wait_for

from mdl.archive import staging as unpack_staging
from mdl.archive.unpack import unpack_archive
from mdl.errors import ArchiveError, ExitCode, LocalFSError, UsageError
from mdl.progress import NullProgress

ROOT = Path(__file__).resolve().parents[2]
TESTS = ROOT / "tests"
TOPS = 40


def snapshot(folder: Path) -> dict[str, bytes | None]:
    """Every path under ``folder`` (a folder maps to None), mdl's staging folders left out."""
    found: dict[str, bytes | None] = {}
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder).as_posix()
        if not rel.startswith(unpack_staging.STAGING_PREFIX):
            found[rel] = None if path.is_dir() else path.read_bytes()
    return found


def staging_folders(dest: Path) -> list[str]:
    return sorted(
        p.name for p in dest.iterdir() if p.name.startswith(unpack_staging.STAGING_PREFIX)
    )


def make_old_and_new(
    tmp_path: Path,
) -> tuple[Path, Path, dict[str, bytes | None], dict[str, bytes | None]]:
    """A destination full of old files, and an archive replacing every one of its TOPS top-level
    names.
    """
    dest = tmp_path / "dest"
    for i in range(TOPS):
        if i % 4 == 0:
            (dest / f"top{i:02}").mkdir(parents=True)
            (dest / f"top{i:02}" / "old-only.txt").write_text(f"old {i}")
            (dest / f"top{i:02}" / "shared.txt").write_text(f"old shared {i}")
        else:
            dest.mkdir(exist_ok=True)
            (dest / f"top{i:02}").write_text(f"old file {i}")
    (dest / "unrelated.txt").write_text("not in the archive")
    archive = tmp_path / "new.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for i in range(TOPS):
            if i % 4 == 0:
                zf.writestr(f"top{i:02}/shared.txt", f"new shared {i}")
                zf.writestr(f"top{i:02}/new-only.txt", f"new {i}")
            else:
                zf.writestr(f"top{i:02}", f"new file {i}")
    old = snapshot(dest)
    probe = tmp_path / "probe"
    unpack_archive(archive, dest=probe, force=False, progress=NullProgress(), cwd=tmp_path)
    new = {**snapshot(probe), "unrelated.txt": b"not in the archive"}
    return archive, dest, old, new


def child_script(archive: Path, dest: Path, body: str) -> str:
    """A Python child that runs ``body`` (which patches os.rename) and then the real CLI."""
    return (
        textwrap.dedent("""
        import os, signal, sys, time
        from pathlib import Path
        real_rename = os.rename
        calls = [0]
        def swapping(src):  # the swap's own moves, not the record's or a journal's rename
            return str(src).startswith("top")
        """)
        + textwrap.dedent(body)
        + textwrap.dedent(f"""
        os.rename = hooked
        sys.argv = ["mdl", "unpack", {str(archive)!r}, "-d", {str(dest)!r}, "--force"]
        from mdl.__main__ import main
        main()
        """)
    )


def run_child(script: str, tmp_path: Path) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "PYTHONPATH": f"{ROOT}{os.pathsep}{TESTS}",
        "MDL_LOG_FILE": str(tmp_path / "mdl.log"),
    }
    return subprocess.Popen(
        [sys.executable, "-c", script],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.slow
def test_sigterm_during_the_swap_waits_for_it_to_finish(tmp_path: Path) -> None:
    archive, dest, old, new = make_old_and_new(tmp_path)
    marker, sent = tmp_path / "swapping", tmp_path / "sent"
    # The swap is held after its first move until the parent has sent SIGTERM (then touched
    # ``sent``): the signal lands mid-swap however fast or slow the child is.
    body = f"""
        def hooked(src, dst, *args, **kwargs):
            real_rename(src, dst, *args, **kwargs)
            calls[0] += swapping(src)
            if calls[0] == 1:
                Path({str(marker)!r}).touch()  # the swap is under way: the parent sends SIGTERM now
                deadline = time.monotonic() + {HANG}
                while not Path({str(sent)!r}).exists() and time.monotonic() < deadline:
                    time.sleep(0.01)
        """
    proc = run_child(child_script(archive, dest, body), tmp_path)
    wait_for(lambda: marker.exists() or proc.poll() is not None, what="the swap under way")
    assert marker.exists(), proc.communicate()
    proc.send_signal(signal.SIGTERM)
    sent.touch()
    _, stderr = proc.communicate(timeout=60)
    state = snapshot(dest)
    assert state in (old, new), "the target is a mix of old and new"
    assert state == new  # the signal waited for the swap, then interrupted: exit 130
    assert proc.returncode == ExitCode.INTERRUPTED, stderr
    assert "Traceback" not in stderr
    assert staging_folders(dest) == []


def killed_mid_swap(
    tmp_path: Path,
) -> tuple[Path, Path, dict[str, bytes | None], dict[str, bytes | None]]:
    """An unpack of new over old killed (-9) halfway through its swap: some originals aside, some
    new entries in place; the archive, DEST and the two snapshots."""
    archive, dest, old, new = make_old_and_new(tmp_path)
    body = """
        def hooked(src, dst, *args, **kwargs):
            real_rename(src, dst, *args, **kwargs)
            calls[0] += swapping(src)
            if calls[0] == 25:
                os.kill(os.getpid(), signal.SIGKILL)
        """
    proc = run_child(child_script(archive, dest, body), tmp_path)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    return archive, dest, old, new


def test_a_kill_9_mid_swap_is_rolled_back_by_the_next_unpack(tmp_path: Path) -> None:
    archive, dest, old, new = killed_mid_swap(tmp_path)
    [leftover] = staging_folders(dest)
    journal = json.loads((dest / leftover / "journal.json").read_text())
    assert journal["state"] == "swapping" and len(journal["tops"]) == TOPS
    # what a kill -9 leaves: the journal is what makes it recoverable
    assert snapshot(dest) not in (old, new)

    (tmp_path / "junk.zip").write_bytes(b"not a zip")
    # the next run restores first, whatever its own archive turns out to be
    with pytest.raises(ArchiveError):
        unpack_archive(
            Path("junk.zip"), dest=dest, force=True, progress=NullProgress(), cwd=tmp_path
        )
    assert snapshot(dest) == old
    assert staging_folders(dest) == []
    with pytest.raises(UsageError, match="already exists"):
        unpack_archive(archive, dest=dest, force=False, progress=NullProgress(), cwd=tmp_path)
    assert snapshot(dest) == old
    assert staging_folders(dest) == []
    unpack_archive(archive, dest=dest, force=True, progress=NullProgress(), cwd=tmp_path)
    assert snapshot(dest) == new


def test_a_rename_that_fails_mid_swap_is_undone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive, dest, old, _ = make_old_and_new(tmp_path)
    real = os.rename
    calls = [0]

    def failing(src: Any, dst: Any, **kwargs: Any) -> None:
        calls[0] += str(src).startswith("top")
        if calls[0] == 31:
            raise PermissionError(13, "Permission denied")
        real(src, dst, **kwargs)

    monkeypatch.setattr(os, "rename", failing)
    with pytest.raises(LocalFSError, match="cannot move") as err:
        unpack_archive(archive, dest=dest, force=True, progress=NullProgress(), cwd=tmp_path)
    assert err.value.exit_code == ExitCode.LOCAL
    assert snapshot(dest) == old
    assert staging_folders(dest) == []


def test_ctrl_c_during_the_swap_is_delivered_after_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive, dest, _, new = make_old_and_new(tmp_path)
    real = os.rename
    calls = [0]

    def interrupting(src: Any, dst: Any, **kwargs: Any) -> None:
        real(src, dst, **kwargs)
        calls[0] += str(src).startswith("top")
        if calls[0] == 3:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)  # a handler that raised would do so right here

    monkeypatch.setattr(os, "rename", interrupting)
    with pytest.raises(KeyboardInterrupt):
        unpack_archive(archive, dest=dest, force=True, progress=NullProgress(), cwd=tmp_path)
    assert calls[0] == 2 * TOPS  # every move happened
    assert snapshot(dest) == new
    assert staging_folders(dest) == []
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def killed_after_swap(dest: Path, name: str, content: str) -> unpack_staging.Staging:
    """A staging whose swap of ``name`` committed, then abandoned as a kill -9 leaves it (lock
    released, nothing removed): its record, journal and old/ are still there."""
    staging = unpack_staging.Staging(dest)
    (staging.path / "tree" / name).mkdir()
    (staging.path / "tree" / name / "new.txt").write_text(content)
    staging.swap([name])
    staging._close_fds()
    staging._close_own()  # what dying does: descriptors (and the flock) gone, files left
    return staging


def test_a_committed_swap_is_finished_and_a_live_one_left_alone(tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    (dest / "model").mkdir(parents=True)
    (dest / "model" / "old.txt").write_text("old")
    dead = killed_after_swap(dest, "model", "new")
    assert (dest / "model" / "new.txt").read_text() == "new" and (
        dead.path / "old" / "model" / "old.txt"
    ).exists()
    live = unpack_staging.Staging(dest)  # holds its lock, as a running unpack does
    try:
        handled = unpack_staging.recover(dest, NullProgress())
        assert [path for path, _ in handled] == [dead.path]
        assert staging_folders(dest) == [live.path.name]
        assert (dest / "model" / "new.txt").read_text() == "new"
    finally:
        live.close()
    assert staging_folders(dest) == []
    # the records and .mdl/ went with them
    assert sorted(p.name for p in dest.iterdir()) == ["model"]


def test_a_discard_killed_after_it_removed_the_lock_is_finished(tmp_path: Path) -> None:
    """A kill -9 while a done swap's staging is removed (rmtree reaches the lock before old/)
    leaves the originals moved aside and the record: the next recovery (unpack, clean) ends it."""
    dest = tmp_path / "dest"
    (dest / "model").mkdir(parents=True)
    (dest / "model" / "old.txt").write_text("old")
    dead = killed_after_swap(dest, "model", "new")
    (dead.path / "lock").unlink()  # where the killed discard stopped
    handled = unpack_staging.recover(dest, NullProgress())
    assert [path for path, _ in handled] == [dead.path]
    assert staging_folders(dest) == []
    assert (dest / "model" / "new.txt").read_text() == "new"
    assert sorted(p.name for p in dest.iterdir()) == ["model"]  # the record and .mdl/ too


def test_a_swap_under_way_whose_lock_is_gone_is_left_alone(tmp_path: Path) -> None:
    """No discard removes the lock while the journal says swapping: such a staging is nobody's to
    remove (its moved-aside originals would go)."""
    _, dest, _, _ = killed_mid_swap(tmp_path)
    [leftover] = staging_folders(dest)
    (dest / leftover / "lock").unlink()
    before = snapshot(dest)
    assert unpack_staging.recover(dest, NullProgress()) == []
    assert snapshot(dest) == before and staging_folders(dest) == [leftover]


def test_a_staging_being_made_is_never_taken_for_abandoned(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another unpack's recovery, run just before a new staging locks its lock file, leaves that
    staging alone.
    """
    flock = unpack_staging.fcntl.flock

    def recovery_first(fd: int, operation: int) -> None:
        # the new staging's own lock, not recovery's LOCK_NB probe
        if operation == unpack_staging.fcntl.LOCK_EX:
            unpack_staging.recover(tmp_path, NullProgress())
        flock(fd, operation)

    monkeypatch.setattr(unpack_staging.fcntl, "flock", recovery_first)
    staging = unpack_staging.Staging(tmp_path)
    assert staging_folders(tmp_path) == [staging.path.name]
    staging.close()


def test_a_hand_written_journal_with_unsafe_names_is_not_acted_on(tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    planted = dest / f"{unpack_staging.STAGING_PREFIX}planted"
    (planted / "tree").mkdir(parents=True)
    (planted / "lock").touch()
    (planted / "journal.json").write_text(
        json.dumps({"state": "swapping", "tops": ["../x"], "present": []})
    )
    (tmp_path / "x").write_text("outside")
    unpack_staging.recover(dest, NullProgress())
    assert (tmp_path / "x").read_text() == "outside"
    assert staging_folders(dest) == [planted.name]


def test_a_journal_entry_without_its_new_identity_is_not_acted_on(tmp_path: Path) -> None:
    """A journal of this staging (its token) whose entry lacks a field is malformed, as any other:
    left alone, never a KeyError out of recovery."""
    _, dest, _, _ = killed_mid_swap(tmp_path)
    [leftover] = staging_folders(dest)
    path = dest / leftover / "journal.json"
    journal = json.loads(path.read_text())
    del journal["tops"][0]["new"]
    path.write_text(json.dumps(journal))
    before = snapshot(dest)
    unpack_staging.recover(dest, NullProgress())
    assert snapshot(dest) == before
    assert staging_folders(dest) == [leftover]


def test_what_a_killed_unpack_left_is_named_by_clean_dry_run_and_finished_by_clean(
    tmp_path: Path,
) -> None:
    """The hidden staging folder a kill -9 leaves in DIR (up to 32 MB) does not wait for the next
    unpack there: `mdl clean --dest DIR --dry-run` names it with its size, `mdl clean --dest DIR`
    restores what it moved aside and removes it (issue 27)."""

    _, dest, old, _ = killed_mid_swap(tmp_path)
    [leftover] = staging_folders(dest)

    dry = mdl("clean", "--dest", str(dest), "--dry-run", "--json")
    assert dry.exit_code == 0, dry.stderr
    [named] = [f for f in json.loads(dry.stdout)["files"] if f["path"] == str(dest / leftover)]
    assert named["removed"] is False and named["size"] > 0 and "unpack" in named["source"]
    assert staging_folders(dest) == [leftover]  # a dry run changes nothing

    done = mdl("clean", "--dest", str(dest))
    assert done.exit_code == 0, done.stderr
    assert str(dest / leftover) in done.stdout
    assert staging_folders(dest) == []
    assert snapshot(dest) == old  # the originals it had moved aside are back, not deleted


def test_clean_leaves_a_running_unpacks_staging_folder_alone(tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    dest.mkdir()
    staging = unpack_staging.Staging(dest)  # held by this process, as a running unpack holds it
    try:
        assert unpack_staging.recover(dest, NullProgress()) == []
        assert staging_folders(dest) == [staging.path.name]
    finally:
        staging.close()
    assert staging_folders(dest) == []
