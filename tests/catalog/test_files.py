"""The catalog file on disk: written atomically, through a symlink, keeping its mode and BOM, no
temp file left.
"""

from __future__ import annotations

import os
from pathlib import Path

from mdl.catalog import files

TEXT = '[models.a]\nrepo = "org/a"\n'


def test_an_edit_keeps_the_bom_and_the_mode_and_leaves_no_temp_file(tmp_path: Path) -> None:
    path = tmp_path / "catalog.toml"
    path.write_bytes(b"\xef\xbb\xbf# old\n")
    path.chmod(0o640)
    files.write_catalog(path, TEXT, created=False)
    assert path.read_bytes() == b"\xef\xbb\xbf" + TEXT.encode()
    assert path.stat().st_mode & 0o777 == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["catalog.toml"]


def test_a_new_catalog_is_created_with_its_folders_as_the_umask_says(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "catalog.toml"
    old = os.umask(0o027)
    try:
        files.write_catalog(path, TEXT, created=True)
    finally:
        os.umask(old)
    assert path.read_text() == TEXT
    assert path.stat().st_mode & 0o777 == 0o640


def test_a_symlinked_catalog_is_written_where_it_points(tmp_path: Path) -> None:
    real, link = tmp_path / "real.toml", tmp_path / "catalog.toml"
    real.write_text("# old\n")
    link.symlink_to(real)
    files.write_catalog(link, TEXT, created=False)
    assert link.is_symlink() and real.read_text() == TEXT


def test_read_catalog_drops_the_bom_and_says_when_there_is_none_yet(tmp_path: Path) -> None:
    path = tmp_path / "catalog.toml"
    assert files.read_catalog(path, create=True) == (files.NEW_CATALOG, True)
    path.write_bytes(b"\xef\xbb\xbf" + TEXT.encode())
    assert files.read_catalog(path, create=False) == (TEXT, False)
