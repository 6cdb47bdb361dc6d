"""The one descriptor walk (``mdl.folderwalk.open_dir``), held once for both its callers: the confined
store (no link below the root followed) and the shared folder (``shared``: a link root or this user
made followed, folders made as shared as their parent). Real folders in ``tmp_path``; a race is
played by another "run" acting from inside the walk's own ``mkdir`` or ``open``, never by timing."""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from mdl.errors import LocalFSError, UnsafePathError
from mdl.folderwalk import named_user, open_dir
from mdl.paths import FRESH_TRIES

AS_ROOT = pytest.mark.skipif(os.geteuid() != 0, reason="another user's link or folder: needs root")
ANOTHER = 1000  # the user who planted a link


@contextmanager
def opened(root: Path, folder: Path, **how: bool) -> Iterator[Path]:
    """The folder the walk's descriptor is, as a path (closed after)."""
    fd = open_dir(root, folder, **how)
    try:
        yield Path(os.readlink(f"/proc/self/fd/{fd}"))
    finally:
        os.close(fd)


@contextmanager
def hooked(name: str, before: Callable[[str], None]) -> Iterator[list[str]]:
    """``os.<name>`` runs ``before(entry)`` first, another run's act at that very moment; the
    entries it was called with."""
    real: Callable[..., Any] = getattr(os, name)
    calls: list[str] = []

    def wrapper(entry: Any, *args: Any, **kwargs: Any) -> Any:
        if kwargs.get("dir_fd") is not None:  # the walk's own calls, relative to a folder
            calls.append(entry)
            before(entry)
        return real(entry, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(os, name, wrapper)
        yield calls


@pytest.mark.parametrize("root", [Path("."), Path("models")])
def test_an_absolute_folder_is_never_inside_a_relative_root(
    root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models").mkdir()
    # "." has no parts: it is the prefix of every path, /etc's too
    with pytest.raises(UnsafePathError, match="is not inside"):
        open_dir(root, Path("/etc"), create=False)


def test_a_folder_below_the_root_is_opened_and_dot_dot_refused(tmp_path: Path) -> None:
    fd = open_dir(tmp_path, tmp_path / "a" / "b")
    try:
        assert os.path.samefile(f"/proc/self/fd/{fd}", tmp_path / "a" / "b")
    finally:
        os.close(fd)
    with pytest.raises(UnsafePathError):
        open_dir(tmp_path, tmp_path / "a" / ".." / ".." / "x")


@pytest.mark.parametrize("shared", [False, True])
def test_outside_or_up_is_refused_before_anything_is_made(tmp_path: Path, shared: bool) -> None:
    root = tmp_path / "root"
    root.mkdir()
    for folder in (tmp_path / "other" / "x", root / "a" / ".." / "b", Path("rel") / "x"):
        with pytest.raises(UnsafePathError, match="is not inside"):
            open_dir(root, folder, shared=shared)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["root"]
    assert list(root.iterdir()) == []


@pytest.mark.parametrize("shared", [False, True])
def test_create_makes_the_missing_folders_and_without_it_nothing_is_made(
    tmp_path: Path, shared: bool
) -> None:
    root, folder = tmp_path / "root", tmp_path / "root" / "a" / "b"
    with pytest.raises(FileNotFoundError):
        open_dir(root, folder, create=False, shared=shared)
    assert not root.exists()
    root.mkdir()
    with pytest.raises(FileNotFoundError):
        open_dir(root, folder, create=False, shared=shared)
    assert list(root.iterdir()) == []
    with opened(root, folder, shared=shared) as where:
        assert where == folder and folder.is_dir()
    with opened(root, folder, create=False, shared=shared) as where:  # there now: opened
        assert where == folder


@pytest.mark.parametrize("shared", [False, True])
def test_a_file_on_the_way_is_exit_7_naming_it(tmp_path: Path, shared: bool) -> None:
    (tmp_path / "a").write_text("a file, not a folder")
    for create in (True, False):
        with pytest.raises(LocalFSError, match=f"{tmp_path / 'a'} is not a folder"):
            open_dir(tmp_path, tmp_path / "a" / "b", create=create, shared=shared)
    assert (tmp_path / "a").read_text() == "a file, not a folder"


def test_the_root_may_be_a_link_no_folder_below_it_may(tmp_path: Path) -> None:
    (tmp_path / "real" / "sub").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "root").symlink_to(tmp_path / "real")
    (tmp_path / "real" / "link").symlink_to(tmp_path / "elsewhere")
    with opened(tmp_path / "root", tmp_path / "root" / "sub") as where:  # the user's choice
        assert where == tmp_path / "real" / "sub"
    for create in (True, False):
        with pytest.raises(UnsafePathError, match="is a symbolic link; mdl never follows links"):
            open_dir(tmp_path / "root", tmp_path / "root" / "link" / "x", create=create)
    assert list((tmp_path / "elsewhere").iterdir()) == []


def test_shared_follows_a_link_root_or_this_user_made(tmp_path: Path) -> None:
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "elsewhere")  # this user's (root's, as root)
    with opened(tmp_path, tmp_path / "link" / "x", shared=True) as where:
        assert where == tmp_path / "elsewhere" / "x"


@AS_ROOT
def test_shared_refuses_a_link_another_user_made(tmp_path: Path) -> None:
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "elsewhere")
    os.chown(tmp_path / "link", ANOTHER, ANOTHER, follow_symlinks=False)
    for create in (True, False):
        with pytest.raises(UnsafePathError, match=f"link is a link uid {ANOTHER} made"):
            open_dir(tmp_path, tmp_path / "link" / "x", create=create, shared=True)
    assert list((tmp_path / "elsewhere").iterdir()) == []


def test_folders_made_shared_take_their_parents_bits_else_the_umask(tmp_path: Path) -> None:
    top = tmp_path / "top"
    top.mkdir()
    top.chmod(0o1777)  # all-writable and sticky, as /tmp
    old = os.umask(0o077)
    try:
        with opened(tmp_path, top / "shared" / "deeper", shared=True):
            pass
        with opened(tmp_path, top / "private"):
            pass
    finally:
        os.umask(old)
    for made in (top / "shared", top / "shared" / "deeper"):  # never sticky
        assert stat.S_IMODE(made.stat().st_mode) == 0o777, made
    assert stat.S_IMODE((top / "private").stat().st_mode) == 0o700


def test_a_folder_replaced_by_a_link_mid_walk_is_not_followed(tmp_path: Path) -> None:
    """Once a folder is open, a link swapped in for it sends nothing elsewhere: the walk goes on
    below the folder it opened, moved aside or not."""
    (tmp_path / "a").mkdir()
    (tmp_path / "elsewhere").mkdir()

    def swap(entry: str) -> None:
        if entry == "b" and not (tmp_path / "a").is_symlink():  # "a" is open: swapped for a link
            (tmp_path / "a").rename(tmp_path / "moved")
            (tmp_path / "a").symlink_to(tmp_path / "elsewhere")

    for shared in (False, True):
        with hooked("open", swap), opened(tmp_path, tmp_path / "a" / "b", shared=shared) as where:
            assert where == tmp_path / "moved" / "b"
        assert list((tmp_path / "elsewhere").iterdir()) == []
        (tmp_path / "a").unlink()
        (tmp_path / "moved" / "b").rmdir()
        (tmp_path / "moved").rename(tmp_path / "a")


@pytest.mark.parametrize("shared", [False, True])
def test_a_folder_another_run_makes_first_is_opened(tmp_path: Path, shared: bool) -> None:
    """Missing when looked at, made by another run before our mkdir: ours fails (it exists), the
    other run's is opened, its bits left as that run made them."""

    def other_run(entry: str) -> None:
        (tmp_path / entry).mkdir(mode=0o750)
        (tmp_path / entry).chmod(0o750)

    with (
        hooked("mkdir", other_run) as calls,
        opened(tmp_path, tmp_path / "a", shared=shared) as where,
    ):
        assert where == tmp_path / "a"
    assert calls == ["a"]
    assert stat.S_IMODE((tmp_path / "a").stat().st_mode) == 0o750


@pytest.mark.parametrize("shared", [False, True])
def test_a_folder_removed_as_made_is_made_again_then_given_up(tmp_path: Path, shared: bool) -> None:
    """Another run removes (empty) the folder we make, before we open it: made again, up to
    ``FRESH_TRIES`` looks; removed every time, FileNotFoundError (the caller's error)."""
    removed: list[str] = []

    def removed_once(entry: str) -> None:  # the other run removes the folder we made, once
        if not removed and (tmp_path / entry).is_dir():
            removed.append(entry)
            (tmp_path / entry).rmdir()

    with (
        hooked("mkdir", lambda entry: None) as calls,
        hooked("open", removed_once),
        opened(tmp_path, tmp_path / "a", shared=shared) as where,
    ):
        assert where == tmp_path / "a"
    assert calls == ["a", "a"] and removed == ["a"]

    def vanish(entry: str) -> None:  # the other run removes the folder before each open
        with contextlib.suppress(FileNotFoundError):
            (tmp_path / entry).rmdir()

    with (
        hooked("mkdir", lambda entry: None) as calls,
        hooked("open", vanish),
        pytest.raises(FileNotFoundError),
    ):
        open_dir(tmp_path, tmp_path / "b", shared=shared)
    assert calls == ["b"] * (FRESH_TRIES - 1) and not (tmp_path / "b").exists()


def _in_a_shared_folder(tmp_path: Path, mode: int, folder_owner: int = 0) -> tuple[Path, Path]:
    """``tmp_path/top`` of ``mode`` (owned by ``folder_owner``) holding ``m``, which ANOTHER made."""
    top = tmp_path / "top"
    (top / "m").mkdir(parents=True)
    top.chmod(mode)
    os.chown(top, folder_owner, folder_owner)
    os.chown(top / "m", ANOTHER, ANOTHER)
    return top, top / "m"


@AS_ROOT
@pytest.mark.parametrize("mode", [0o1777, 0o777], ids=["sticky, as /tmp", "not sticky"])
def test_a_folder_another_user_made_where_anyone_may_write_is_refused(
    tmp_path: Path, mode: int
) -> None:
    """The co-tenant who made a model's folder first may replace what mdl installs in it, keeping
    size and time: refused (exit 2, naming the folder and its maker), to write or to read."""
    _, theirs = _in_a_shared_folder(tmp_path, mode)
    for create in (True, False):
        with pytest.raises(UnsafePathError) as refused:
            open_dir(tmp_path, theirs / "sub", create=create)
        assert str(refused.value).startswith(f"{theirs} is a folder {named_user(ANOTHER)} made")
        # the destination itself: a name the user chose, a folder whoever came first made
        with pytest.raises(UnsafePathError, match=f"{theirs} is a folder .*uid {ANOTHER}"):
            open_dir(theirs, theirs / "sub", create=create)
    assert list(theirs.iterdir()) == []  # nothing made in it


@AS_ROOT
@pytest.mark.parametrize(
    ("mode", "folder_owner", "shared"),
    [
        (0o755, 0, False),  # only its owner writes the folder above: it made what is in it
        (0o2775, 0, False),  # a group's share: the group is trusted, as its modes say
        (0o1777, ANOTHER, False),  # the folder's owner made it (protected_regular's exception)
        (0o1777, 0, True),  # a fleet's shared folder: its users' folders are the fleet's
    ],
    ids=["private", "group share", "the share's owner's", "fleet share"],
)
def test_another_users_folder_is_used_where_it_could_not_be_planted(
    tmp_path: Path, mode: int, folder_owner: int, shared: bool
) -> None:
    _, theirs = _in_a_shared_folder(tmp_path, mode, folder_owner)
    with opened(tmp_path, theirs / "sub", shared=shared) as where:
        assert where == theirs / "sub"


@AS_ROOT
def test_roots_and_this_users_folders_are_used_where_anyone_may_write(tmp_path: Path) -> None:
    _, mine = _in_a_shared_folder(tmp_path, 0o1777, ANOTHER)
    os.chown(mine, 0, 0)  # root's, also this user's (tests run as root): only root made it
    with opened(tmp_path, mine / "sub") as where:
        assert where == mine / "sub"


def test_a_folder_mdl_makes_is_never_one_anyone_may_write(tmp_path: Path) -> None:
    """umask 000: a model's folder 0777 (no sticky bit) would let anyone swap the files mdl
    vouches for by their record; the group keeps what the umask gives it (a team's share)."""
    old = os.umask(0)
    try:
        with opened(tmp_path / "dest", tmp_path / "dest" / "m" / "sub"):
            pass
    finally:
        os.umask(old)
    for made in (tmp_path / "dest", tmp_path / "dest" / "m", tmp_path / "dest" / "m" / "sub"):
        assert stat.S_IMODE(made.stat().st_mode) == 0o775, made


@AS_ROOT
def test_a_destination_below_a_folder_a_cotenant_made_is_refused_however_deep(
    tmp_path: Path,
) -> None:
    """``/tmp/share/models``, both made by the co-tenant: ``models`` is its owner's as ``share``
    is, and ``share`` is the co-tenant's in a folder anyone may write; the walk up judges it."""
    top = tmp_path / "top"
    (top / "share" / "models").mkdir(parents=True)
    top.chmod(0o1777)
    for folder in (top / "share", top / "share" / "models"):
        folder.chmod(0o777)
        os.chown(folder, ANOTHER, ANOTHER)
    models = top / "share" / "models"
    with pytest.raises(UnsafePathError, match=f"{top / 'share'} is a folder .*uid {ANOTHER}"):
        open_dir(models, models / "m")
    assert list(models.iterdir()) == []


@AS_ROOT
def test_a_groups_share_made_where_anyone_may_write_trusts_the_group(tmp_path: Path) -> None:
    """``/tmp/team`` (2775) a teammate made: its group is one of this user's, and only a member
    could make it that group's; the same folder of a group this user is not in is refused."""
    top = tmp_path / "top"
    top.mkdir()
    top.chmod(0o1777)
    for name, group in (("team", os.getegid()), ("theirs", ANOTHER)):
        (top / name).mkdir()
        os.chown(top / name, ANOTHER, group)
        (top / name).chmod(0o2775)
    with opened(top / "team", top / "team" / "models") as where:
        assert where == top / "team" / "models"
    with pytest.raises(UnsafePathError, match="theirs is a folder"):
        open_dir(top / "theirs", top / "theirs" / "models")


def test_the_folders_above_a_destination_mdl_makes_are_never_anyone_may_write(
    tmp_path: Path,
) -> None:
    old = os.umask(0)
    try:
        with opened(tmp_path / "a" / "b" / "c", tmp_path / "a" / "b" / "c"):
            pass
    finally:
        os.umask(old)
    for made in (tmp_path / "a", tmp_path / "a" / "b", tmp_path / "a" / "b" / "c"):
        assert stat.S_IMODE(made.stat().st_mode) == 0o775, made
