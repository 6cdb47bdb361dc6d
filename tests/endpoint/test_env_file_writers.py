"""``--env-file`` against who else can write its folder (issue 75 E): a team folder (``chmod
2775``) whose group holds another user, an access list that lets another user write, a folder the
name goes through that the team may rename. A real second user (``useradd``, ``runuser``) shows
each time what it can do there; mdl refuses those folders (exit 7, one line naming the path) and
accepts the ones only this user can swap a file in."""

from __future__ import annotations

import errno
import os
import secrets
import shutil
import struct
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import pytest
from runfixtures import HANG
from serveproc import isolated, model_catalog, serve_in_process


class Mate(NamedTuple):
    """Another user of this machine, in the group ``team`` (this user, root, is not)."""

    user: str
    team: str
    uid: int


def _root_only() -> None:
    if os.geteuid() != 0:
        pytest.skip("adding a user and a group needs root")
    for tool in ("useradd", "groupadd", "userdel", "groupdel", "runuser"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed: no second user to try the folder with")


@pytest.fixture
def mate() -> Iterator[Mate]:
    _root_only()
    tag = secrets.token_hex(3)
    team, user = f"mdlteam{tag}", f"mdlmate{tag}"
    made = subprocess.run(["groupadd", team], capture_output=True, text=True, check=False)
    if made.returncode != 0:
        pytest.skip(f"groupadd failed: {made.stderr.strip()}")
    try:
        made = subprocess.run(
            ["useradd", "-M", "-N", "-G", team, "-s", "/bin/sh", user],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if made.returncode != 0:
            pytest.skip(f"useradd failed: {made.stderr.strip()}")
        try:
            yield Mate(user, team, int(_out(["id", "-u", user])))
        finally:
            subprocess.run(["userdel", user], capture_output=True, check=False)
    finally:
        subprocess.run(["groupdel", team], capture_output=True, check=False)


def _out(command: list[str]) -> str:
    return subprocess.run(command, capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture
def top() -> Iterator[Path]:
    """A folder of root's the other user can go through (pytest's own are root's alone)."""
    folder = Path(f"/tmp/mdl-env-{secrets.token_hex(4)}")
    folder.mkdir(mode=0o711)
    folder.chmod(0o711)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _as(mate: Mate, script: str) -> bool:
    """Whether ``script`` (sh) succeeds as the other user."""
    done = subprocess.run(
        ["runuser", "-u", mate.user, "--", "sh", "-c", script],
        capture_output=True, text=True, timeout=HANG, check=False, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    return done.returncode == 0


def _serve(tmp_path: Path, target: Path) -> subprocess.CompletedProcess[str]:
    """``mdl serve m --port 0 --env-file TARGET``'s start, in this process (what it refuses is
    the proof, not its process); a start that served instead is stopped, its code None."""
    catalog = model_catalog(tmp_path, {"w.bin": ("http://127.0.0.1:9/w", b"x" * 10)})
    code, stderr = serve_in_process("m", env=isolated(tmp_path, catalog), env_file=target)
    return subprocess.CompletedProcess(["mdl", "serve"], code, "", stderr)  # type: ignore[arg-type]


def _written(tmp_path: Path, target: Path) -> str:
    """The env file a run wrote there (it is accepted), the run stopped once ready."""
    from mdl import serve

    catalog = model_catalog(tmp_path, {"w.bin": ("http://127.0.0.1:9/w", b"x" * 10)})
    stop = threading.Event()
    serve("m", port=0, env_file=target, environ=isolated(tmp_path, catalog),
          on_ready=lambda _: stop.set(), stop=stop)  # fmt: skip
    return target.read_text()


def _refused(done: subprocess.CompletedProcess[str], target: Path, folder: Path, why: str) -> None:
    assert done.returncode == 7, done.stderr
    (line,) = [x for x in done.stderr.splitlines() if f"--env-file {target}" in x]
    assert f"the folder {folder} " in line and why in line, line
    assert "Traceback" not in done.stderr


def _acl(*entries: tuple[int, int, int]) -> bytes:
    """A POSIX access list as the kernel stores it (version 2, then tag, perm, id each)."""
    return struct.pack("<I", 2) + b"".join(struct.pack("<HHI", *e) for e in entries)


ANY = 0xFFFFFFFF


def test_a_team_folder_another_user_may_write_is_refused(
    mate: Mate, top: Path, tmp_path: Path
) -> None:
    """Found (issue 75 E): ``--env-file`` in a team folder (``chmod 2775``) was accepted, and a
    member of the team could rename their file over it for the loader to source. Refused now,
    exit 7, in a line naming the file, the folder and the group; nothing written there."""
    team = top / "team"
    team.mkdir()
    shutil.chown(team, group=mate.team)
    team.chmod(0o2775)
    assert _as(mate, f"echo theirs > {team}/probe && mv -f {team}/probe {team}/mdl.env")
    (team / "mdl.env").unlink()  # (the member could: now the run is asked to write there)
    target = team / "mdl.env"
    done = _serve(tmp_path, target)
    _refused(done, target, team, f"group {mate.team}")
    assert list(team.iterdir()) == []


def test_a_private_folder_inside_a_team_folder_is_refused_by_the_team_folder(
    mate: Mate, top: Path, tmp_path: Path
) -> None:
    """A folder only this user can write, inside the team's: a member renames the whole folder
    away and puts theirs at its name. The name's every folder is judged."""
    team = top / "team"
    team.mkdir()
    shutil.chown(team, group=mate.team)
    team.chmod(0o2775)
    mine = team / "mine"
    mine.mkdir(mode=0o700)
    assert _as(mate, f"mv {mine} {team}/moved && mkdir {mine} && rmdir {mine}")
    (team / "moved").rename(mine)
    target = mine / "mdl.env"
    _refused(_serve(tmp_path, target), target, team, f"group {mate.team}")
    assert list(mine.iterdir()) == []


def test_a_link_inside_a_team_folder_is_refused_by_the_team_folder(
    mate: Mate, top: Path, tmp_path: Path
) -> None:
    """Found (review R9): ``TEAM/l/mdl.env`` with ``l`` a link, in a team folder, to a folder only
    this user can write was accepted (the folders were judged after the links). A member renames
    their own link over ``l`` and the loader sources their file. The folder holding the link is
    judged too: refused, naming the team folder, nothing written in the private one."""
    team = top / "team"
    team.mkdir()
    shutil.chown(team, group=mate.team)
    team.chmod(0o2775)
    mine = top / "mine"
    mine.mkdir(mode=0o700)
    link = team / "l"
    link.symlink_to(mine)
    assert _as(mate, f"ln -s /tmp {team}/theirs && mv -fT {team}/theirs {link}")
    assert os.readlink(link) == "/tmp"  # (the member could: the user's link again)
    link.unlink()
    link.symlink_to(mine)
    target = link / "mdl.env"
    _refused(_serve(tmp_path, target), target, team, f"group {mate.team}")
    assert list(mine.iterdir()) == []


def test_a_link_from_a_private_folder_to_a_private_folder_is_accepted(
    mate: Mate, top: Path, tmp_path: Path
) -> None:
    """A link in a folder only this user can write, to another such folder: nobody else can
    swap either name, and the file is written through the link (the member cannot replace it)."""
    mine, there = top / "mine", top / "there"
    mine.mkdir(mode=0o700)
    there.mkdir(mode=0o700)
    (mine / "l").symlink_to(there)
    written = _written(tmp_path, mine / "l" / "mdl.env")
    assert written.startswith("export AWS_ENDPOINT_URL=")
    assert (there / "mdl.env").read_text() == written
    assert not _as(mate, f"ln -s /tmp {mine}/theirs")


def test_this_users_own_group_is_known_without_listing_every_account(
    top: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Review R3: a folder writable by this user's private group is judged from the group alone
    (its id, name and members), never by listing the whole user database (slow on a directory,
    partial where it does not enumerate): with the listing failing, still written."""
    import pwd

    _root_only()

    def no_listing() -> list[pwd.struct_passwd]:
        raise AssertionError("the whole user database was listed")

    monkeypatch.setattr(pwd, "getpwall", no_listing)
    own = top / "own"
    own.mkdir()
    own.chmod(0o775)  # root:root, root's private group
    assert _written(tmp_path, own / "mdl.env").startswith("export AWS_ENDPOINT_URL=")


def test_an_access_list_that_lets_another_user_write_is_refused(
    mate: Mate, top: Path, tmp_path: Path
) -> None:
    """Mode 775 of root's own group (nobody else's bits), plus an access list entry letting the
    other user write: the group bits are the list's mask, and the list is read."""
    folder = top / "listed"
    folder.mkdir(mode=0o755)
    os.setxattr(folder, "system.posix_acl_access",
                _acl((0x01, 7, ANY), (0x02, 7, mate.uid), (0x04, 5, ANY), (0x10, 7, ANY),
                     (0x20, 5, ANY)))  # fmt: skip
    assert _as(mate, f"echo theirs > {folder}/probe && rm {folder}/probe")
    target = folder / "mdl.env"
    _refused(_serve(tmp_path, target), target, folder, f"the user {mate.user} write it")
    assert list(folder.iterdir()) == []


def test_an_access_list_whose_mask_denies_writing_is_accepted(
    mate: Mate, top: Path, tmp_path: Path
) -> None:
    """The same entry for the other user, but a mask without write: it cannot write there, and
    the file is written."""
    folder = top / "masked"
    folder.mkdir(mode=0o755)
    os.setxattr(folder, "system.posix_acl_access",
                _acl((0x01, 7, ANY), (0x02, 7, mate.uid), (0x04, 5, ANY), (0x10, 5, ANY),
                     (0x20, 5, ANY)))  # fmt: skip
    assert not _as(mate, f"echo theirs > {folder}/probe")
    assert _written(tmp_path, folder / "mdl.env").startswith("export AWS_ENDPOINT_URL=")


def test_a_sticky_team_folder_and_this_users_own_group_are_accepted(
    mate: Mate, top: Path, tmp_path: Path
) -> None:
    """A team folder with the sticky bit (``chmod 3775``): a member may add files but not rename
    over this user's, so the file is written, and the member's swap fails. A folder writable by
    this user's own group (root's, no other member) is this user's alone: written too."""
    team = top / "sticky"
    team.mkdir()
    shutil.chown(team, group=mate.team)
    team.chmod(0o3775)
    target = team / "mdl.env"
    (tmp_path / "a").mkdir()
    written = _written(tmp_path / "a", target)
    assert written.startswith("export AWS_ENDPOINT_URL=")
    assert not _as(mate, f"echo theirs > {team}/probe && mv -f {team}/probe {target}")
    assert target.read_text() == written
    own = top / "own"
    own.mkdir()
    own.chmod(0o775)  # root:root, root's private group
    (tmp_path / "b").mkdir()
    assert _written(tmp_path / "b", own / "mdl.env").startswith("export AWS_ENDPOINT_URL=")


def test_an_access_list_that_cannot_be_read_counts_as_letting_others_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A folder whose access list the system will not give (here: an I/O error from it) may let
    anyone write: refused, with why, rather than taken as this user's alone."""
    from mdl.errors import LocalFSError

    folder = tmp_path / "private"
    folder.mkdir(mode=0o700)

    def unreadable(path: object, name: str, **_: object) -> bytes:
        raise OSError(errno.EIO, os.strerror(errno.EIO), str(path))

    monkeypatch.setattr(os, "getxattr", unreadable)
    with pytest.raises(LocalFSError, match="access list mdl cannot read") as refused:
        _written(tmp_path, folder / "mdl.env")
    assert f"--env-file {folder / 'mdl.env'}" in str(refused.value)
    assert list(folder.iterdir()) == []
