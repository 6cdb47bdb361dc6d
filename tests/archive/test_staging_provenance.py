"""Issue 37, class A: unpack's staging is known by where it came from, never by its name. An archive
carrying any name mdl reserves (``.mdl``, ``.mdl-unpack-*``, in any spelling a filesystem folds
together) is refused before a byte is written; a staging folder planted beside a real destination,
whatever it holds, is never acted on by ``mdl unpack -d DIR`` or ``mdl clean --dest DIR``: every
bystander's inode, bytes and folder stay as they were."""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from profiles import examples
from runfixtures import RecordingProgress, mdl

from mdl.archive import staging as unpack_staging
from mdl.archive.unpack import unpack_archive
from mdl.errors import ArchiveError, ExitCode
from mdl.paths import name_problem
from mdl.progress import NullProgress

# A top-level component each spelling of which a case-folding or normalising filesystem takes for a
# reserved one.
RESERVED_SPELLINGS = [
    ".mdl",
    ".MDL",
    ".Mdl",
    ".ｍｄｌ",  # full-width letters: NFKC makes them ASCII
    "．mdl",  # a full-width full stop
    ".mdl-unpack-0123456789abcdef",
    ".MDL-UNPACK-deadbeef",
    ".mdl-unpac\u212a-x",  # KELVIN SIGN case-folds to 'k'
    ".mdl-unpack-",
]


@settings(max_examples=examples(200), deadline=None)
@given(
    base=st.sampled_from([".mdl", ".mdl-unpack-"]),
    flips=st.lists(st.booleans(), min_size=12, max_size=12),
    suffix=st.text(alphabet="abcdef0123456789XYZ", max_size=12),
    depth=st.integers(min_value=0, max_value=2),
)
def test_every_spelling_of_a_reserved_name_is_refused_at_any_depth(
    base: str, flips: list[bool], suffix: str, depth: int
) -> None:
    spelled = "".join(c.upper() if flip else c for c, flip in zip(base, flips, strict=False))
    part = spelled + (suffix if base.endswith("-") else "")
    name = "/".join([*["dir"] * depth, part, "file.bin"])
    assert name_problem(name) is not None


def zip_of(path: Path, names: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in names.items():
            zf.writestr(name, data)
    return path


def state(*folders: Path) -> dict[str, tuple[int, int, int, str | None]]:
    """Every entry under ``folders`` (never following a link): inode, mode, a file's mtime and
    its bytes' sha256.
    """
    found: dict[str, tuple[int, int, int, str | None]] = {}
    for folder in folders:
        for root, dirs, files in os.walk(folder):
            for name in [*dirs, *files]:
                path = Path(root) / name
                st = path.lstat()
                file = path.is_file() and not path.is_symlink()
                digest = hashlib.sha256(path.read_bytes()).hexdigest() if file else None
                found[str(path)] = (st.st_ino, st.st_mode, st.st_mtime_ns if file else 0, digest)
    return found


@pytest.mark.parametrize("top", RESERVED_SPELLINGS)
@pytest.mark.parametrize("nested", [False, True])
def test_an_archive_with_a_reserved_name_is_refused_before_a_byte_is_written(
    tmp_path: Path, top: str, nested: bool
) -> None:
    name = f"model/{top}/journal.json" if nested else f"{top}/journal.json"
    archive = zip_of(
        tmp_path / "evil.zip", {"model/config.json": b"{}", name: b'{"state": "swapping"}'}
    )
    dest = tmp_path / "dest"
    with pytest.raises(ArchiveError) as err:
        unpack_archive(archive, dest=dest, force=False, progress=NullProgress(), cwd=tmp_path)
    assert err.value.exit_code == ExitCode.USAGE
    assert repr(name) in err.value.message and "reserves" in err.value.message
    assert not dest.exists()  # nothing extracted, no staging made


def test_the_cli_names_the_reserved_entry_with_exit_2(tmp_path: Path) -> None:
    archive = zip_of(tmp_path / "evil.zip", {".mdl-unpack-abcd/lock": b"", "victim/x": b"new"})
    (tmp_path / "dest").mkdir()
    result = mdl("unpack", str(archive), "-d", str(tmp_path / "dest"))
    assert result.exit_code == 2, result.stderr
    assert "'.mdl-unpack-abcd/lock'" in result.stderr and "Traceback" not in result.stderr
    assert list((tmp_path / "dest").iterdir()) == []


def plant_staging(dest: Path, name: str, journal: dict[str, object]) -> Path:
    """What the issue's archive put in DEST: a staging lookalike whose journal "rolls back" a swap
    of victim and bystander (folders it never made), with the archive's own victim waiting in old/.
    """
    planted = dest / name
    (planted / "tree").mkdir(parents=True)
    (planted / "old" / "victim").mkdir(parents=True)
    (planted / "old" / "victim" / "evil.txt").write_text("planted")
    (planted / "lock").touch()
    (planted / "journal.json").write_text(json.dumps(journal))
    return planted


def bystanders(tmp_path: Path) -> tuple[Path, Path]:
    dest, outside = tmp_path / "dest", tmp_path / "outside"
    for folder in (dest / "victim", dest / "bystander", outside):
        folder.mkdir(parents=True)
        (folder / "keep.txt").write_text(f"precious {folder.name}")
    return dest, outside


LEGACY = {
    "version": 1,
    "state": "swapping",
    "tops": ["victim", "bystander"],
    "present": ["victim", "bystander"],
}


def current_journal(token: str) -> dict[str, object]:
    tops = [{"name": name, "new": [1, 2], "old": [3, 4]} for name in ("victim", "bystander")]
    return {"version": 2, "token": token, "state": "swapping", "tops": tops}


@pytest.mark.parametrize(
    "kind", ["legacy", "current", "forged-record", "linked-record", "symlinked-record"]
)
def test_a_planted_staging_is_never_acted_on_by_unpack_or_clean(tmp_path: Path, kind: str) -> None:
    dest, outside = bystanders(tmp_path)
    token = "ab" * 16
    name = f"{unpack_staging.STAGING_PREFIX}{'0123abcd' if kind == 'legacy' else token}"
    plant_staging(dest, name, LEGACY if kind == "legacy" else current_journal(token))
    # a record under .mdl/ too, but not one mdl made for that folder
    if kind != "legacy" and kind != "current":
        records = dest / unpack_staging.RECORDS
        records.mkdir(parents=True)
        forged = {"version": 1, "token": token, "folder": [1, 2], "lock": [3, 4]}
        if kind == "forged-record":
            st = (dest / name).stat()
            # even the right identities: the journal is not this token's own
            lock = (dest / name / "lock").stat()
            forged |= {"folder": [st.st_dev, st.st_ino], "lock": [lock.st_dev, lock.st_ino]}
            (dest / name / "journal.json").write_text(json.dumps(current_journal("cd" * 16)))
            (records / f"{token}.json").write_text(json.dumps(forged))
        elif kind == "linked-record":
            (outside / "record.json").write_text(json.dumps(forged))
            os.link(outside / "record.json", records / f"{token}.json")
        else:
            (outside / "record.json").write_text(json.dumps(forged))
            (records / f"{token}.json").symlink_to(outside / "record.json")
    before = state(dest, outside)

    progress = RecordingProgress()
    assert unpack_staging.recover(dest, progress) == []
    assert state(dest, outside) == before
    assert any(name in note for note in progress.notes)  # named, and left alone

    good = zip_of(tmp_path / "good.zip", {"fresh/config.json": b"{}"})
    result = mdl("unpack", str(good), "-d", str(dest))
    assert result.exit_code == 0, result.stderr
    assert name in result.stderr  # the note says what was left alone
    after = state(dest, outside)
    assert {k: v for k, v in after.items() if "/dest/fresh" not in k} == before
    cleaned = mdl("clean", "--dest", str(dest))
    assert cleaned.exit_code == 0, cleaned.stderr
    assert state(dest, outside) == after
    assert (dest / "victim" / "keep.txt").read_text() == "precious victim"


def test_a_recorded_stagings_journal_that_is_a_link_is_not_trusted(tmp_path: Path) -> None:
    dest, outside = bystanders(tmp_path)
    staging = unpack_staging.Staging(dest)
    (outside / "journal.json").write_text(json.dumps(current_journal(staging.token)))
    # a hard link: two names, one file
    os.link(outside / "journal.json", staging.path / "journal.json")
    staging._close_fds()
    staging._close_own()
    before = state(dest, outside)
    progress = RecordingProgress()
    unpack_staging.recover(dest, progress)
    assert state(dest, outside) == before
    assert any("journal" in note and staging.path.name in note for note in progress.notes)
