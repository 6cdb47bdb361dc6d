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
