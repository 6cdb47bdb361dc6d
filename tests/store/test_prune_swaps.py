"""Prune acts on the object it checked: a file another program renames over a recorded path at any
moment of a prune (an atomic write: a new inode under the old name) survives, and is never reported
as removed or freed."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from profiles import examples

from mdl import api
from mdl.store import confined
from mdl.store.prune import PruneReport
from mdl.store.records import FileRecord
from mdl.store.store import Store

ORIGINAL = b"weights mdl wrote " * 500
# not the same bytes; the same size (8 bytes short of ORIGINAL is not)
THEIRS = b"another tool's file" * 474
THEIRS = THEIRS.ljust(len(ORIGINAL), b"!")
MOST_CALLS = 160  # more filesystem calls than one prune of the scene makes (a test holds it)
_CALLS = ("stat", "lstat", "open", "fstat", "rename", "link", "unlink", "listdir")


@pytest.fixture(autouse=True)
def no_remembered_checks(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: Any) -> None:
    """No memory of checked catalogs (``mdl.lockfile.remembered``): its writes are filesystem calls
    this file counts to place a swap. A cache folder under a regular file cannot be made."""
    blocker = tmp_path_factory.mktemp("cache") / "a-file"
    blocker.write_bytes(b"")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))


@dataclass
class Scene:
    root: Path
    dest: Path
    catalog: Path
    target: Path  # the recorded file prune removes
    original: int  # its inode
    # the file another tool renames over the target (prepared beside, on the same filesystem)
    theirs: Path


def make_scene(root: Path, *, touched: bool) -> Scene:
    """A model no longer in the catalog, its one file recorded as mdl wrote it (``touched``: its
    mtime moved since, so prune hashes it before removing it)."""
    root.mkdir(parents=True, exist_ok=True)
    dest, catalog = root / "models", root / "catalog.toml"
    catalog.write_text('[models.stays]\nrepo = "org/stays"\n')
    target = dest / "gone" / "w.bin"
    target.parent.mkdir(parents=True)
    target.write_bytes(ORIGINAL)
    found = target.stat()
    record = FileRecord(
        "w.bin", len(ORIGINAL), hashlib.sha256(ORIGINAL).hexdigest(), found.st_mtime_ns
    )
    Store(dest).update_record("gone", revision=None, commit=None, put=record)
    if touched:
        os.utime(target, ns=(found.st_atime_ns, found.st_mtime_ns + 1_000_000_000))
    theirs = root / "elsewhere" / "theirs.bin"
    theirs.parent.mkdir()
    theirs.write_bytes(THEIRS)
    # as like the recorded file as another file can be: its size, and the mtime prune would accept
    # unhashed
    os.utime(theirs, ns=(found.st_atime_ns, found.st_mtime_ns))
    return Scene(root, dest, catalog, target, found.st_ino, theirs)


@contextmanager
def at_call(moment: int | None, act: Callable[[], None]) -> Iterator[list[str]]:
    """Count the filesystem calls made meanwhile; run ``act`` just before call number ``moment``
    (None: never).
    """
    seen: list[str] = []
    real = {name: getattr(os, name) for name in (*_CALLS, "readlink")}

    def wrap(name: str) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            if len(seen) == moment:
                seen.append("swap")
                act()
            # which folder: by its descriptor
            if name == "listdir" and args and isinstance(args[0], int):
                seen.append(f"listdir {Path(real['readlink'](f'/proc/self/fd/{args[0]}')).name}")
            else:
                seen.append(name)
            return real[name](*args, **kwargs)

        return call

    with pytest.MonkeyPatch.context() as patch:
        for name in _CALLS:
            patch.setattr(os, name, wrap(name))
        yield seen


def names_of(folder: Path) -> dict[int, list[Path]]:
    """Every entry under ``folder`` by inode."""
    found: dict[int, list[Path]] = {}
    for where, dirs, files in os.walk(folder):
        for name in (*files, *dirs):
            path = Path(where) / name
            found.setdefault(path.lstat().st_ino, []).append(path)
    return found


def holds(alive: dict[int, list[Path]], inode: int, data: bytes) -> bool:
    """Whether a name of ``inode`` still holds ``data`` (the file, not a later one given its
    freed inode: the file system reuses inode numbers at once)."""
    return any(p.is_file() and p.read_bytes() == data for p in alive.get(inode, []))


def prune_with_a_swap(scene: Scene, moment: int | None) -> tuple[PruneReport, list[str]]:
    swapped = scene.theirs.stat().st_ino

    def swap() -> None:  # another tool's atomic write: a new inode renamed over the name
        real_rename(scene.theirs, scene.target)

    real_rename = os.rename
    with at_call(moment, swap) as seen:
        report = api.prune(catalog=scene.catalog, dest=scene.dest, environ={})
    if moment is not None and "swap" in seen:
        alive = names_of(scene.root)
        assert swapped in alive, (
            f"the file renamed over the path at call {moment} ({seen}) was deleted"
        )
        assert all(p.read_bytes() == THEIRS for p in alive[swapped])
    return report, seen


def check(report: PruneReport, scene: Scene) -> None:
    """What prune says it removed is what is gone: the recorded file, and only when its inode is
    gone.
    """
    alive = names_of(scene.root)
    removed = [r for r in report.removed if r.path == scene.target]
    if removed:
        # (by its inode holding its bytes: a freed inode may be given to a file made since)
        assert not holds(alive, scene.original, ORIGINAL), (
            "reported removed, yet the file mdl wrote is still here"
        )
        assert report.freed == len(ORIGINAL)
    else:
        assert report.freed == 0
    kept_aside = [p for paths in alive.values() for p in paths if p.name.endswith(".mdl-prune")]
    assert all(any(k.path == p for k in report.kept) for p in kept_aside), (
        "a set-aside file prune does not name"
    )


@pytest.mark.parametrize("touched", [False, True], ids=["unchanged", "hashed"])
def test_without_a_swap_the_recorded_file_goes(tmp_path: Path, touched: bool) -> None:
    scene = make_scene(tmp_path, touched=touched)
    report, seen = prune_with_a_swap(scene, None)
    assert [r.path for r in report.removed] == [scene.target]
    assert report.freed == len(ORIGINAL) and not scene.target.parent.exists()
    check(report, scene)
    assert len(seen) > 10


@pytest.mark.parametrize("touched", [False, True], ids=["unchanged", "hashed"])
def test_a_file_renamed_over_the_path_after_it_was_checked_survives(
    tmp_path: Path, touched: bool
) -> None:
    """The report's example: the swap lands after the check (the hash, for a touched file),
    before the removal.
    """
    scene = make_scene(tmp_path / "run", touched=touched)
    _, seen = prune_with_a_swap(make_scene(tmp_path / "dry", touched=touched), None)
    # the removal: checked by then
    moment = next(i for i, call in enumerate(seen) if call in ("rename", "unlink"))
    report, _ = prune_with_a_swap(scene, moment)
    assert scene.target.read_bytes() == THEIRS
    assert [k.reason for k in report.kept if k.path == scene.target] == [
        "replaced while prune checked it"
    ]
    assert report.removed == () and report.freed == 0
    check(report, scene)


@settings(
    max_examples=examples(80),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(moment=st.integers(0, MOST_CALLS), touched=st.booleans())
def test_a_file_swapped_at_any_moment_of_a_prune_survives(moment: int, touched: bool) -> None:
    with tempfile.TemporaryDirectory() as root:
        scene = make_scene(Path(root), touched=touched)
        report, seen = prune_with_a_swap(scene, moment)
        check(report, scene)
    assert moment <= len(seen) or "swap" not in seen


@pytest.mark.parametrize("touched", [False, True], ids=["unchanged", "hashed"])
def test_a_prune_makes_fewer_calls_than_the_property_tries(tmp_path: Path, touched: bool) -> None:
    """Every moment of a prune is one the property above can draw."""
    _, seen = prune_with_a_swap(make_scene(tmp_path, touched=touched), None)
    assert len(seen) < MOST_CALLS


def test_freed_leaves_out_a_file_another_hard_link_keeps(tmp_path: Path) -> None:
    scene = make_scene(tmp_path, touched=False)
    os.link(scene.target, tmp_path / "backup.bin")  # the user's second name for the same bytes
    report = api.prune(catalog=scene.catalog, dest=scene.dest, environ={})
    assert [(r.path, r.linked) for r in report.removed] == [(scene.target, True)]
    assert report.freed == 0, "the bytes are still on disk under another name"
    assert report.to_json()["removed"][0]["linked"] is True
    assert (tmp_path / "backup.bin").read_bytes() == ORIGINAL


# -- clean: a partial download is removed only if it is the file clean listed
# --------------------------------


@settings(max_examples=examples(40), deadline=None)
@given(moment=st.integers(0, MOST_CALLS))
def test_a_partial_swapped_at_any_moment_of_a_clean_survives(moment: int) -> None:
    with tempfile.TemporaryDirectory() as root:
        dest = Path(root) / "models"
        store = Store(dest)
        store.ensure_dirs()
        part, state = store.part_paths("m", "big.bin")
        part.write_bytes(ORIGINAL)
        state.write_text('{"source": "https://127.0.0.1:9/big.bin"}')
        theirs = Path(root) / "theirs.bin"
        theirs.write_bytes(THEIRS)
        swapped, original = theirs.stat().st_ino, part.stat().st_ino
        real_rename = os.rename
        with at_call(moment, lambda: real_rename(theirs, part)) as seen:
            report = api.clean(dest=dest, environ={})
        alive = names_of(Path(root))
        looked = seen.index(
            "stat", seen.index("listdir partial")
        )  # the lstat of the names listed: the partial as listed
        if "swap" in seen and seen.index("swap") > looked:
            assert swapped in alive, (
                f"a file renamed over the partial at call {moment} ({seen}) was deleted"
            )
        if any(f.path == part for f in report.files):
            assert not holds(alive, original, ORIGINAL), (
                "reported removed, yet the partial clean listed is still here"
            )
        else:
            assert original in alive or "swap" in seen, "removed, yet not reported"


@pytest.mark.parametrize("failure", [KeyboardInterrupt, OSError])
def test_a_removal_stopped_while_judging_puts_the_entry_back(
    tmp_path: Path, failure: type[BaseException]
) -> None:
    """A Ctrl-C (or an error) while the set-aside entry is judged: it has its own name again,
    none is left hidden.
    """
    target = tmp_path / "weights.bin"
    target.write_bytes(b"someone's bytes")

    def judge(found: os.stat_result) -> bool:
        raise failure

    with pytest.raises(failure):
        confined.unlink_checked(tmp_path, target, judge)
    assert target.read_bytes() == b"someone's bytes"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["weights.bin"]
