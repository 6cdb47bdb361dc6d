"""A catalog edited since a model's last pull (a file added, one renamed with ``as``, a new sha256
pinned): ``list``, ``show``, ``verify`` and ``verify --quick`` judge the files the catalog asks for
now, as an offline ``pull --dry-run`` plans them, never the set the record kept from that pull
(docs/commands.md, verify: a file not on this disk is ``missing``, exit 4). A whole repo's files are
its recorded listing; a record that names no file is a model not on this disk."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from runfixtures import mdl, use_catalog
from servers import CdnServer, make_data

from mdl.store.store import Store

A, B = make_data(20_000, seed=251), b"second file\n"
OTHER = "ab" * 32  # a sha256 no file here has


def said(*args: str) -> tuple[int, dict[str, str]]:
    """``mdl ARGS --json`` (offline): its exit code and each file's action (verify) or state."""
    result = mdl(*args, "--json")
    doc = json.loads(result.stdout)
    files = doc["files"] if "files" in doc else doc["models"][0]["files"]
    return result.exit_code, {f["path"]: f.get("action") or f["state"] for f in files}


@pytest.fixture
def pulled(cdn: CdnServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """m (one file, a.bin) pulled; then offline. The URLs of a.bin and b.txt."""
    urls = {"a": cdn.add_file("/a.bin", A), "b": cdn.add_file("/b.txt", B)}
    use_catalog(tmp_path, monkeypatch, f'[models.m]\nfiles = [{{ url = "{urls["a"]}" }}]\n')
    assert mdl("pull", "m").exit_code == 0
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cdn.log.clear()
    return urls


def edit(tmp_path: Path, urls: dict[str, str], *files: str) -> None:
    """m's files now: each an inline table's keys, ``{a}`` and ``{b}`` the URLs of a.bin and
    b.txt."""
    tables = ", ".join("{ " + keys.format(**urls) + " }" for keys in files)
    (tmp_path / "catalog.toml").write_text(f"[models.m]\nfiles = [{tables}]\n")


@pytest.mark.parametrize(
    ("change", "planned", "status", "verified", "quick"),
    [
        # a file added to the catalog: the model lacks it
        (
            ('url = "{a}"', 'url = "{b}"'),
            {"a.bin": "skip", "b.txt": "download"},
            ("partial", {"a.bin": "installed", "b.txt": "missing"}),
            {"a.bin": "verified", "b.txt": "missing"},
            {"a.bin": "verified", "b.txt": "missing"},
        ),
        # renamed: the file is wanted under its new name (the old one is extra)
        (
            ('url = "{a}", as = "c.bin"',),
            {"c.bin": "download"},
            ("missing", {"c.bin": "missing"}),
            {"c.bin": "missing"},
            {"c.bin": "missing"},
        ),
        # another version pinned: the one here is outdated
        (
            (f'url = "{{a}}", sha256 = "{OTHER}"',),
            {"a.bin": "download"},
            ("partial", {"a.bin": "outdated"}),
            {"a.bin": "failed"},
            {"a.bin": "failed"},
        ),
    ],
    ids=["added", "renamed", "pinned anew"],
)
def test_every_offline_view_judges_the_files_the_catalog_names_now(
    pulled: dict[str, str],
    cdn: CdnServer,
    tmp_path: Path,
    change: tuple[str, ...],
    planned: dict[str, str],
    status: tuple[str, dict[str, str]],
    verified: dict[str, str],
    quick: dict[str, str],
) -> None:
    edit(tmp_path, pulled, *change)
    assert said("pull", "m", "--dry-run") == (0, planned)
    listed = json.loads(mdl("list", "--json").stdout)["models"]
    assert [(m["name"], m["status"], m["files"]) for m in listed] == [
        ("m", status[0], len(status[1]))
    ]
    assert said("show", "m") == (0, status[1])
    assert said("verify", "m") == (4, verified)
    assert said("verify", "--quick", "m") == (4, quick)
    assert len(cdn.log) == 0  # offline: no server asked


def test_a_record_that_names_no_file_is_a_model_not_on_this_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_catalog(tmp_path, monkeypatch, '[models.n]\nrepo = "org/n"\n')
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    Store(tmp_path / "models").update_record("n", revision="main", commit="c" * 40, expected={})
    assert json.loads(mdl("list", "--json").stdout)["models"][0]["status"] == "missing"
    for quick in ((), ("--quick",)):
        result = mdl("verify", "n", *quick, "--json")
        assert result.exit_code == 4, result.stdout
        (outcome,) = json.loads(result.stdout)["files"]
        assert outcome["action"] == "missing"
        assert "n: not on this disk" in outcome["error"]
