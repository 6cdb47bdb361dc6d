"""This user's folders mdl keeps its files in (the data, the log, the catalog, the checks
remembered): platformdirs', found on Linux without importing it."""

import contextlib
import os
import pwd
import sys
from pathlib import Path
from typing import Literal

from mdl.errors import UsageError

UserFolder = Literal["data", "log", "config", "cache"]
# a kind of user folder: platformdirs' function, the variable that sets it, and (on Linux) the
# folder under the home without it and what platformdirs adds to either
_USER_FOLDERS: dict[UserFolder, tuple[str, str, str, str]] = {
    "data": ("user_data_dir", "XDG_DATA_HOME", ".local/share", ""),
    "log": ("user_log_dir", "XDG_STATE_HOME", ".local/state", "log"),
    "config": ("user_config_dir", "XDG_CONFIG_HOME", ".config", ""),
    "cache": ("user_cache_dir", "XDG_CACHE_HOME", ".cache", ""),
}


def user_folder(kind: UserFolder) -> Path:
    """This user's folder of a kind (``data``, ``log``, ``config``, ``cache``: platformdirs'), or
    UsageError (exit 2) when the user has no home to keep it under (HOME unset or relative and no
    passwd entry: a container's random uid), naming the variable that sets it instead (a folder
    relative to wherever mdl runs is never one). On Linux platformdirs' XDG rule written out (the
    variable when absolute, else under the home): importing platformdirs' seven modules was 1.4 %
    of a small get's instructions; tests/test_userfolders.py holds the two equal."""
    function, variable, under_home, added = _USER_FOLDERS[kind]
    if sys.platform.startswith("linux"):
        found = Path(os.environ.get(variable, ""))  # (a relative one is no XDG folder)
        found = (found if found.is_absolute() else Path(_home(), under_home)) / added
    else:
        import platformdirs

        try:
            found = Path(getattr(platformdirs, function)())
        except RuntimeError:  # (platformdirs': "could not determine the home directory")
            found = Path()
    if found.is_absolute():
        return found
    raise UsageError(
        f"this user has no home folder (HOME is unset or not absolute, and uid {os.getuid()} has"
        " none in the system's user list)",
        hint=f"set HOME, or {variable}",
    )


def _home() -> str:
    """HOME when absolute, else the passwd entry's home, else "" (as platformdirs finds it)."""
    home = os.environ.get("HOME", "")
    if not Path(home).is_absolute():
        with contextlib.suppress(KeyError):
            home = pwd.getpwuid(os.getuid()).pw_dir
    return home
