"""``mdl get --layout hf-cache``: Hub files where huggingface_hub looks for them, judged by
huggingface_hub's own offline lookups against the cache it wrote."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from runfixtures import mdl
from servers import HubServer, make_data

WEIGHTS = make_data(120_000, seed=881)
TINY = {"config.json": b'{"a": 1}', "model.safetensors": WEIGHTS, "tok/vocab.txt": b"a\nb\n"}


@pytest.fixture
def cache(hub: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    hub.add_repo("org/tiny", TINY)
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.setenv("MDL_LOG_FILE", str(tmp_path / "mdl.log"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.chdir(tmp_path)
    return tmp_path / "hf"


def offline_lookups(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """huggingface_hub reads HF_HUB_OFFLINE when imported: its constants are set for the lookups."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)


def test_a_whole_repo_lands_where_hf_hub_download_finds_it_offline(
    hub: HubServer, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from huggingface_hub import hf_hub_download, snapshot_download

    result = mdl("get", "hf://org/tiny", "--layout", "hf-cache")
    assert result.exit_code == 0, result.stderr
    [folder] = result.stdout.splitlines()
    commit = hub.repos[("model", "org/tiny")].sha
    assert Path(folder) == cache / "models--org--tiny" / "snapshots" / commit
    assert not (Path.cwd() / ".mdl").exists(), "nothing of it in the current folder"
    offline_lookups(cache, monkeypatch)
    for path, data in TINY.items():
        found = hf_hub_download("org/tiny", path, cache_dir=cache, local_files_only=True)
        assert Path(found).read_bytes() == data
    assert snapshot_download("org/tiny", cache_dir=cache, local_files_only=True) == folder
    hub.log.clear()
    hub.cdn.log.clear()
    again = mdl("get", "hf://org/tiny", "--layout", "hf-cache", "--json")
    assert again.exit_code == 0, again.stderr
    assert {f["action"] for f in json.loads(again.stdout)["files"]} == {"skipped"}
    assert not hub.cdn.log.records(method="GET"), "no body fetched again"


def test_one_file_into_the_cache_and_what_does_not_fit(
    hub: HubServer, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from huggingface_hub import hf_hub_download

    result = mdl("get", "hf://org/tiny/tok/vocab.txt", "--layout", "hf-cache")
    assert result.exit_code == 0, result.stderr
    offline_lookups(cache, monkeypatch)
    found = hf_hub_download("org/tiny", "tok/vocab.txt", cache_dir=cache, local_files_only=True)
    assert result.stdout.splitlines() == [found]
    url = hub.cdn.add_file("/w/x.bin", b"x")
    mixed = mdl("get", url, "--layout", "hf-cache")
    assert mixed.exit_code == 2 and "not one" in mixed.stderr, mixed.stderr
    named = mdl("get", "hf://org/tiny/config.json", "--layout", "hf-cache", "-o", "c.json")
    assert named.exit_code == 2 and "-o" in named.stderr, named.stderr


def test_offline_a_repo_in_the_cache_is_its_snapshot_folder(
    hub: HubServer, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = mdl("get", "hf://org/tiny", "--layout", "hf-cache")
    assert first.exit_code == 0, first.stderr
    hub.log.clear()
    offline = mdl("get", "hf://org/tiny", "--layout", "hf-cache", env={"HF_HUB_OFFLINE": "1"})
    assert offline.exit_code == 0, offline.stderr
    assert offline.stdout == first.stdout
    assert hub.log.records() == []


def test_offline_files_of_a_repo_are_the_files_asked_for(hub: HubServer, cache: Path) -> None:
    whole = mdl("get", "hf://org/tiny", "--layout", "hf-cache")
    assert whole.exit_code == 0, whole.stderr
    snapshot = Path(whole.stdout.strip())
    online = mdl("get", "hf://org/tiny/model.safetensors", "--layout", "hf-cache")
    assert online.exit_code == 0, online.stderr  # (the record's last pull: one file of the repo)
    offline = {"HF_HUB_OFFLINE": "1"}
    one = mdl("get", "org/tiny", "config.json", "--layout", "hf-cache", "--json", env=offline)
    assert one.exit_code == 0, one.stderr
    assert [f["path"] for f in json.loads(one.stdout)["files"]] == ["config.json"]
    two = mdl("get", "hf://org/tiny/tok/vocab.txt", "--layout", "hf-cache", env=offline)
    assert two.exit_code == 0, two.stderr
    assert two.stdout.splitlines() == [str(snapshot / "tok" / "vocab.txt")]


def test_a_sha256_in_upper_case_is_the_same_digest_in_the_cache(
    hub: HubServer, cache: Path
) -> None:
    import hashlib

    digest = hashlib.sha256(WEIGHTS).hexdigest()
    source = "hf://org/tiny/model.safetensors"
    # read once, before the layout says the way: the cache's pull holds the file to it as a plain
    # get does (it was compared as typed: exit 6)
    result = mdl("get", source, "--layout", "hf-cache", "--sha256", digest.upper())
    assert result.exit_code == 0, result.stderr
    wrong = mdl("get", source, "--layout", "hf-cache", "--sha256", "AB" * 32, "--force")
    assert wrong.exit_code == 6, wrong.stderr


def test_offline_a_revision_is_the_one_its_ref_names_never_the_last_fetched(
    hub: HubServer, cache: Path
) -> None:
    """Offline, a repo or a file in the cache is the revision asked for as refs/ names it (as
    huggingface_hub's local_files_only reads it), whatever revision the cache's record fetched
    last; a revision no ref names is exit 5 naming it."""
    hub.create_tag("org/tiny", "v1.0")
    main = hub.commit("org/tiny", {"config.json": b'{"main": true}'})
    hub.create_branch("org/tiny", "dev")
    dev = hub.commit("org/tiny", {"config.json": b'{"dev": true}'}, branch="dev")
    for revision in ("main", "dev"):
        got = mdl("get", "org/tiny", "--revision", revision, "--layout", "hf-cache")
        assert got.exit_code == 0, got.stderr
    record = cache / ".locks" / "mdl" / "records" / "models--org--tiny.json"
    before = record.stat()
    offline = {"HF_HUB_OFFLINE": "1"}
    whole = mdl("get", "org/tiny", "--layout", "hf-cache", env=offline)
    assert whole.exit_code == 0, whole.stderr
    assert whole.stdout.splitlines() == [str(cache / "models--org--tiny" / "snapshots" / main)]
    one = mdl("get", "org/tiny", "config.json", "--layout", "hf-cache", env=offline)
    assert one.exit_code == 0, one.stderr
    assert Path(one.stdout.strip()).read_bytes() == b'{"main": true}'
    again = mdl("get", "hf://org/tiny@dev/config.json", "--layout", "hf-cache", env=offline)
    assert again.exit_code == 0, again.stderr
    assert again.stdout.splitlines() == [
        str(cache / "models--org--tiny" / "snapshots" / dev / "config.json")
    ]
    for never in ("hf://org/tiny@v1.0", "hf://org/tiny@v1.0/config.json"):
        missing = mdl("get", never, "--layout", "hf-cache", env=offline)
        assert missing.exit_code == 5 and "v1.0" in missing.stderr, missing.stderr
        assert missing.stdout == ""
    after = record.stat()  # (a reader that may not write it reads it alike)
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


def test_offline_a_failed_get_leaves_the_record_as_it_was(hub: HubServer, cache: Path) -> None:
    """An offline get that fails (a mistyped file name) writes nothing: a later offline get of the
    whole repo answers as before, and a no-op rewrites no record (a read-only consumer)."""
    first = mdl("get", "hf://org/tiny", "--layout", "hf-cache")
    assert first.exit_code == 0, first.stderr
    offline = {"HF_HUB_OFFLINE": "1"}
    assert mdl("get", "hf://org/tiny", "--layout", "hf-cache", env=offline).exit_code == 0
    record = cache / ".locks" / "mdl" / "records" / "models--org--tiny.json"
    before = record.stat()
    typo = mdl("get", "org/tiny", "confg.json", "--layout", "hf-cache", env=offline)
    assert typo.exit_code == 5 and "confg.json" in typo.stderr, typo.stderr
    assert typo.stdout == ""
    whole = mdl("get", "hf://org/tiny", "--layout", "hf-cache", env=offline)
    assert whole.exit_code == 0, whole.stderr
    assert whole.stdout == first.stdout
    after = record.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


def test_a_folder_with_the_cache_layout_is_refused_as_a_file_is(
    hub: HubServer, cache: Path, tmp_path: Path
) -> None:
    """-d with --layout hf-cache is exit 2, as -o is: the files would not go there."""
    mine = tmp_path / "mine"
    result = mdl("get", "hf://org/tiny/config.json", "--layout", "hf-cache", "-d", str(mine))
    assert result.exit_code == 2 and "-d" in result.stderr, result.stderr
    assert not mine.exists() and not cache.exists()


def test_offline_a_bare_repo_id_is_said_read_from_this_disk(hub: HubServer, cache: Path) -> None:
    """HF_HUB_OFFLINE: the note of what a bare repo id was read as says nothing of fetching."""
    assert mdl("get", "org/tiny", "config.json", "--layout", "hf-cache").exit_code == 0
    offline = mdl(
        "get", "org/tiny", "config.json", "--layout", "hf-cache", env={"HF_HUB_OFFLINE": "1"}
    )
    assert offline.exit_code == 0, offline.stderr
    assert "fetching" not in offline.stderr and "from this disk" in offline.stderr, offline.stderr
