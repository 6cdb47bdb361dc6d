"""Catalogs and locks remembered by their bytes (mdl.lockfile.remembered): a second read of the same
bytes gives the same value without checking them again; a changed byte, a corrupt, foreign or
linked entry, or another file's entry, is checked again, errors said exactly as without the memory.
Real files in an isolated HOME (conftest's XDG_CACHE_HOME)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from mdl.catalog.load import parse_catalog
from mdl.catalog.specs import CatalogWarning
from mdl.errors import CatalogError
from mdl.lockfile import remembered
from mdl.lockfile.io import parse_lock, read_lock

SHA = "a" * 64
COMMIT = "c" * 40
CATALOG = f"""\
[settings]
dest = "models"
limit_rate = "50M"
mirrors = ["https://mirror.example/{{model}}/{{path}}", {{ url = "s3://bucket/{{model}}/{{path}}", endpoint = "https://s3.example" }}]

[models.signed]
repo = "org/signed"
include = ["*.json"]
tags = ["a", "b"]
[models.signed.signature]
key = "~/keys/signer.pub"

[models.direct]
description = "a direct file"
files = [{{ url = "https://cdn.example/w.bin", sha256 = "{SHA}", size = 12, as = "x/w.bin" }}]
"""
LOCK = f"""\
version = 1

[[model]]
name = "tiny"
fingerprint = "sha256:{"d" * 64}"
commit = "{COMMIT}"
files = [
  {{ path = "config.json", size = 12, sha256 = "{SHA}", source = "hf://o/tiny@{COMMIT}/config.json" }},
]
"""


def entries() -> list[Path]:
    return sorted(Path(os.environ["XDG_CACHE_HOME"], "mdl", "checked").glob("*.json"))


def test_a_catalog_read_again_is_the_catalog_checked(tmp_path: Path) -> None:
    path = tmp_path / "catalog.toml"
    path.write_text(CATALOG)
    checked = parse_catalog(CATALOG, source=str(path), path=path)
    assert remembered.load_catalog(path) == checked
    [entry] = entries()
    assert json.loads(entry.read_bytes())["value"][""] == "Catalog"
    again = remembered.load_catalog(path)  # from the entry: the same value, types and all
    assert again == checked
    assert again.models[0].signature == checked.models[0].signature
    assert isinstance(again.models[0].tags, tuple) and isinstance(again.path, Path)
    assert entries() == [entry]


def test_a_changed_byte_is_checked_again_and_its_error_said(tmp_path: Path) -> None:
    path = tmp_path / "catalog.toml"
    path.write_text(CATALOG)
    remembered.load_catalog(path)
    bad = CATALOG.replace(f'sha256 = "{SHA}"', f'sha256 = "{SHA[:-1]}g"')
    path.write_text(bad)
    with pytest.raises(CatalogError) as said:
        remembered.load_catalog(path)
    with pytest.raises(CatalogError) as expected:
        parse_catalog(bad, source=str(path), path=path)
    assert said.value.message == expected.value.message
    assert "sha256" in said.value.message
    # a bad catalog is never remembered: the entry still holds the good one's key, and the good
    # bytes read again are the good catalog
    path.write_text(CATALOG)
    assert remembered.load_catalog(path) == parse_catalog(CATALOG, source=str(path), path=path)


def test_an_edit_that_stays_valid_is_the_new_catalog(tmp_path: Path) -> None:
    path = tmp_path / "catalog.toml"
    path.write_text(CATALOG)
    remembered.load_catalog(path)
    edited = CATALOG.replace("size = 12", "size = 13")
    path.write_text(edited)
    assert remembered.load_catalog(path).models[1].files[0].size == 13


@pytest.mark.parametrize("damage", ["garbage", "truncated", "wrong type", "hard link", "symlink"])
def test_a_corrupt_or_foreign_entry_is_not_used(tmp_path: Path, damage: str) -> None:
    path = tmp_path / "catalog.toml"
    path.write_text(CATALOG)
    checked = remembered.load_catalog(path)
    [entry] = entries()
    text = entry.read_text()
    # what the entry says is not what the file says: used, it would show
    forged = text.replace('"size":12', '"size":999')
    assert forged != text
    if damage == "garbage":
        entry.write_bytes(b"\x00\xff not json")
    elif damage == "truncated":
        entry.write_text(text[: len(text) // 2])
    elif damage == "wrong type":
        entry.write_text(forged.replace('"":"FileSpec"', '"":"Popen"'))
    elif damage == "hard link":  # another name of one file: not one mdl made
        entry.write_text(forged)
        os.link(entry, tmp_path / "other-name")
    else:  # a link planted at the entry's name is never read through
        target = tmp_path / "planted.json"
        target.write_text(forged)
        entry.unlink()
        entry.symlink_to(target)
    assert remembered.load_catalog(path) == checked
    assert remembered.load_catalog(path).models[1].files[0].size == 12


def test_another_files_entry_is_not_this_ones(tmp_path: Path) -> None:
    """An entry carries its key (the bytes, the path): copied under another file's name, it is
    not used for that file."""
    one, two = tmp_path / "one.toml", tmp_path / "two.toml"
    one.write_text(CATALOG)
    two.write_text(CATALOG.replace("size = 12", "size = 14"))
    remembered.load_catalog(one)
    remembered.load_catalog(two)
    first, second = entries()
    second.write_bytes(first.read_bytes())
    first.write_bytes(second.read_bytes())
    assert remembered.load_catalog(two).models[1].files[0].size == 14
    assert remembered.load_catalog(one).models[1].files[0].size == 12


def test_warnings_are_said_on_every_read(tmp_path: Path) -> None:
    path = tmp_path / "catalog.toml"
    path.write_text(CATALOG.replace('dest = "models"', 'dest = "models"\nfill_mirorr = true'))
    for _ in range(2):
        with warnings.catch_warnings(record=True) as said:
            warnings.simplefilter("always")
            remembered.load_catalog(path)
        assert [str(w.message) for w in said if w.category is CatalogWarning] == [
            f"{path}:3: settings.fill_mirorr: unknown key, ignored by mdl"
            f" {remembered.__version__} (did you mean 'fill_mirror'?)"
        ]


def test_a_read_only_memory_costs_nothing_but_the_check(tmp_path: Path) -> None:
    path = tmp_path / "catalog.toml"
    path.write_text(CATALOG)
    cache = Path(os.environ["XDG_CACHE_HOME"])
    cache.mkdir(parents=True, exist_ok=True)
    (cache / "mdl").write_text("a file where the memory's folder goes")
    assert remembered.load_catalog(path) == parse_catalog(CATALOG, source=str(path), path=path)


def test_a_lock_read_again_is_the_lock_checked(tmp_path: Path) -> None:
    path = tmp_path / "catalog.lock"
    path.write_text(LOCK)
    checked = parse_lock(LOCK, source=str(path))
    assert read_lock(path) == checked
    assert read_lock(path) == checked
    assert [e.name.split("-")[0] for e in entries()] == ["lock"]
    bad = LOCK.replace("size = 12", 'size = "12"')
    path.write_text(bad)
    with pytest.raises(CatalogError) as said:
        read_lock(path)
    with pytest.raises(CatalogError) as expected:
        parse_lock(bad, source=str(path))
    assert said.value.message == expected.value.message
    assert said.value.message.endswith("model[0].files[0].size: Input should be a valid integer")


def test_a_private_catalogs_secret_is_not_remembered_for_others_to_read(tmp_path: Path) -> None:
    """A catalog may hold a credential as it is (a header, a URL's user:password), readable by its
    owner alone: the memory of it is as private (its entries are the user's alone, whatever the
    umask), never a copy other users of the machine can read in the cache."""
    path = tmp_path / "catalog.toml"
    path.write_text(
        '[[models.lora.files]]\nurl = "https://u:pw-s3cret@cdn.example/l.bin"\n'
        'headers = { Authorization = "Bearer tok-s3cret" }\n'
    )
    path.chmod(0o600)
    remembered.load_catalog(path)
    [entry] = entries()
    assert b"s3cret" in entry.read_bytes()  # (the memory is of this very catalog)
    assert entry.stat().st_mode & 0o077 == 0, oct(entry.stat().st_mode)


# mdl's modules a check loads that hold no rule of what a catalog or lock says (version.py is
# in the key by its value, this memory by its FORMAT)
NO_RULES = {
    "errors.py",
    "lazy.py",
    "outsidejson.py",  # reads this memory back (a catalog or lock is TOML)
    "units.py",
    "version.py",
    "lockfile/remembered.py",
    "store/confined.py",
    "folderwalk.py",  # the walk to a state folder (and its owner rule): no rule of a catalog either
    "store/filelocks.py",
    "wait.py",  # how long the catalog's file lock is waited for: no rule of a catalog or a lock
    "writes.py",  # a buffer written whole (the catalog's file lock's note): no rule either
    "store/filesystem.py",
    "store/records.py",
    "store/store.py",
}


def test_every_module_a_check_runs_is_in_the_key(tmp_path: Path) -> None:
    """An edit to any rule (a save path's, a header's, a URL's) in a checkout or a patched install
    of the same version is another key: a catalog remembered as valid by the old rule is checked
    again by the new one."""
    code = (
        "import sys, mdl\n"
        "from pathlib import Path\n"
        "from mdl.catalog.load import parse_catalog\n"
        "from mdl.lockfile.io import parse_lock\n"
        f"parse_catalog({CATALOG!r}, source='c', path=Path('c'))\n"
        f"parse_lock({LOCK!r})\n"
        "root = Path(mdl.__file__).parent\n"
        "for m in list(sys.modules.values()):\n"
        "    f = getattr(m, '__file__', None) or ''\n"
        "    if m.__name__.startswith('mdl') and not f.endswith('__init__.py'):\n"
        "        print(Path(f).relative_to(root).as_posix())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    ran = set(done.stdout.split())
    assert "catalog/_schema.py" in ran and "lockfile/checked.py" in ran  # (the checks ran)
    assert ran - NO_RULES <= set(remembered._RULES), sorted(ran - NO_RULES - set(remembered._RULES))
