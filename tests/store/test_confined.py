"""The confined walk: a folder outside the root is refused whatever the root looks like."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mdl.errors import UnsafePathError
from mdl.store.confined import open_dir


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
