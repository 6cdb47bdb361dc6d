"""mdl.userfolders: this user's folders, where platformdirs puts them, and no home told."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import get_args

import pytest

from mdl.errors import UsageError
from mdl.userfolders import UserFolder


@pytest.mark.parametrize(
    ("folder", "variable"),
    [
        ("mdl.catalog.settings:default_log_file", "XDG_STATE_HOME"),
        ("mdl.catalog.settings:default_dest", "XDG_DATA_HOME"),
        ("mdl.catalog.settings:user_config_dir", "XDG_CONFIG_HOME"),
        ("mdl.store.register:register_dir", "XDG_DATA_HOME"),
        ("mdl.lockfile.remembered:_root", "XDG_CACHE_HOME"),
    ],
)
def test_a_user_with_no_home_is_told_what_to_set(
    monkeypatch: pytest.MonkeyPatch, folder: str, variable: str
) -> None:
    """A container's random uid: no HOME, no passwd entry. Each folder of the user's mdl keeps is
    exit 2 naming what sets it (platformdirs raised RuntimeError: an internal error; the Linux
    register's rule made a folder named "~" wherever mdl ran); with HOME, it is under it."""
    import pwd

    from mdl.lazy import load

    find = load(folder)
    assert callable(find)
    for name in ("HOME", *(f"XDG_{kind}_HOME" for kind in ("STATE", "DATA", "CONFIG", "CACHE"))):
        monkeypatch.delenv(name, raising=False)

    def no_entry(uid: int) -> None:
        raise KeyError(f"getpwuid(): uid not found: {uid}")

    monkeypatch.setattr(pwd, "getpwuid", no_entry)
    with pytest.raises(UsageError, match=r"this user has no home folder") as told:
        find()
    assert told.value.hint == f"set HOME, or {variable}"
    monkeypatch.setenv("HOME", "/home/someone")
    assert str(find()).startswith("/home/someone/")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the rule written out is Linux's")
@pytest.mark.parametrize("kind", get_args(UserFolder))
def test_a_user_folder_is_where_platformdirs_puts_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, kind: UserFolder
) -> None:
    """On Linux mdl writes platformdirs' XDG rule out (importing it was 1.4 % of a small get's
    instructions): the two agree with the variable set, empty or unset, and HOME set, relative or
    unset (the user list's); a relative variable is no XDG folder (the spec: ignored)."""
    import platformdirs

    from mdl.userfolders import _USER_FOLDERS, user_folder

    function, variable, under_home, added = _USER_FOLDERS[kind]
    for home in ("/home/someone", "relative", None):
        for value in (str(tmp_path / "xdg"), "", None):
            for name, set_to in (("HOME", home), (variable, value)):
                if set_to is None:
                    monkeypatch.delenv(name, raising=False)
                else:
                    monkeypatch.setenv(name, set_to)
            assert user_folder(kind) == Path(getattr(platformdirs, function)()), (home, value)
    monkeypatch.setenv("HOME", "/home/someone")
    monkeypatch.setenv(variable, "relative/xdg")
    assert user_folder(kind) == Path("/home/someone", under_home, added)
