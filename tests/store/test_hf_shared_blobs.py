"""huggingface_hub >= 2.4 keeps Xet-fetched files in a shared store (``<cache>/blobs/<2 hex>/<xet
hash>``), the repo's ``blobs/<etag>`` a relative link to it. In the hf-cache layout mdl reads such a
file where huggingface_hub put it (0 bytes fetched, one copy on disk), while a link planted anywhere
else stays refused."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest
from runfixtures import mdl, use_catalog
from servers import HubServer, make_data
from xetserver import XetHubServer, hf_download

WEIGHTS = "model.safetensors"
DATA = make_data(3 << 20, seed=71)
SHA = hashlib.sha256(DATA).hexdigest()
CATALOG = '[settings]\nlayout = "hf-cache"\n\n[models.m]\nrepo = "org/m"\n'


@pytest.mark.slow
def test_a_file_huggingface_hub_fetched_by_xet_is_read_from_its_shared_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with XetHubServer() as hub:
        hub.add_repo("org/m", {WEIGHTS: DATA, "config.json": b"{}"}, scheme="lz4")
        xet_hash = hub.xet_file("org/m", WEIGHTS).hash
        home = tmp_path / "hf"
        hf_download(hub, "org/m", [WEIGHTS], home)  # huggingface_hub 2.4 + hf_xet: the real layout
        cache = home / "hub"
        repo_blob = cache / "models--org--m" / "blobs" / SHA
        entry = cache / "blobs" / xet_hash[:2] / xet_hash
        assert repo_blob.is_symlink() and entry.is_file() and not entry.is_symlink()
        assert Path(os.path.realpath(repo_blob)) == entry.resolve()
        use_catalog(tmp_path, monkeypatch, CATALOG, endpoint=hub.url)
        monkeypatch.setenv("HF_HUB_CACHE", str(cache))
        xorbs = hub.cas.xorb_bytes()

        result = mdl("pull", "m", "--json", "--no-progress")
        assert result.exit_code == 0, result.stderr
        assert hub.cas.xorb_bytes() == xorbs, "fetched again by Xet though huggingface_hub has it"
        weights = [f for f in json.loads(result.stdout)["files"] if f["path"] == WEIGHTS]
        assert [f["action"] for f in weights] == ["skipped"], weights
        assert repo_blob.is_symlink(), "huggingface_hub's link stays: one copy of the bytes on disk"
        assert entry.read_bytes() == DATA
        snapshot = next((cache / "models--org--m" / "snapshots").iterdir())
        assert (snapshot / WEIGHTS).resolve() == entry.resolve()
        assert os.readlink(snapshot / WEIGHTS) == f"../../blobs/{SHA}", (
            "the snapshot names the repo blob"
        )
        copies = [
            p
            for p in cache.rglob("*")
            if p.is_file() and not p.is_symlink() and p.read_bytes() == DATA
        ]
        assert copies == [entry]

        verified = mdl("verify", "m", "--json")
        assert verified.exit_code == 0, verified.stdout + verified.stderr
        assert mdl("pull", "m", "--no-progress").exit_code == 0
        assert hub.cas.xorb_bytes() == xorbs

        pruned = mdl("remove", "m", "--prune", "--json")
        assert pruned.exit_code == 0, pruned.stderr
        assert entry.read_bytes() == DATA and repo_blob.is_symlink(), (
            "huggingface_hub's shared store is its own"
        )


def _planted(cache: Path, repo_blob: Path, how: str, outside: Path) -> Path:
    """Replace the repo blob by a link as ``how`` says; returns the file it leads to."""
    store = cache / "blobs"
    fake_hash = hashlib.sha256(b"xet " + DATA[:64]).hexdigest()
    entry = store / fake_hash[:2] / fake_hash
    if how == "outside":  # leads out of the cache root
        target, link = outside, os.path.relpath(outside, repo_blob.parent)
    # to the store, but written absolute (huggingface_hub writes relative links)
    elif how == "absolute":
        target, link = entry, str(entry)
    elif how == "unmarked":  # the store's shape, without huggingface_hub's marker
        target, link = entry, os.path.relpath(entry, repo_blob.parent)
    elif how == "linked-prefix":  # the store's prefix folder is itself a link out of the cache
        target = outside.parent / fake_hash
        link = os.path.relpath(entry, repo_blob.parent)
    else:
        raise AssertionError(how)
    if how != "outside":
        store.mkdir(exist_ok=True)
        if how != "unmarked":
            (store / ".huggingface-shared-blobs").write_text("1\n")
        if how == "linked-prefix":
            shutil.copyfile(outside, target)
            (store / fake_hash[:2]).symlink_to(outside.parent)
        else:
            entry.parent.mkdir(exist_ok=True)
            shutil.copyfile(outside, entry)
    repo_blob.unlink()
    repo_blob.symlink_to(link)
    return target


@pytest.mark.slow
@pytest.mark.parametrize("how", ["outside", "absolute", "unmarked", "linked-prefix"])
def test_a_link_huggingface_hub_did_not_make_is_never_read_through(
    hub: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    hub.add_repo("org/m", {WEIGHTS: DATA})
    cache = tmp_path / "hf-cache"
    use_catalog(tmp_path, monkeypatch, CATALOG, endpoint=hub.url)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    assert mdl("pull", "m", "--no-progress").exit_code == 0
    repo_blob = cache / "models--org--m" / "blobs" / SHA
    (tmp_path / "elsewhere").mkdir()
    outside = tmp_path / "elsewhere" / "weights.bin"
    outside.write_bytes(DATA)
    target = _planted(cache, repo_blob, how, outside)
    hub.cdn.log.clear()

    result = mdl("pull", "m", "--no-progress")
    assert result.exit_code == 0, result.stderr
    assert hub.cdn.log.body_bytes() == len(DATA), (
        "what the planted link leads to is no blob to read"
    )
    assert not repo_blob.is_symlink() and repo_blob.read_bytes() == DATA
    assert target.read_bytes() == DATA and outside.read_bytes() == DATA, "never written through"


def test_a_shared_store_entry_laid_out_as_huggingface_hub_does_is_read(
    hub: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same layout made by huggingface_hub's own publisher (no Xet server): read, not
    fetched.
    """
    hub.add_repo("org/m", {WEIGHTS: DATA})
    cache = tmp_path / "hf-cache"
    use_catalog(tmp_path, monkeypatch, CATALOG, endpoint=hub.url)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    assert mdl("pull", "m", "--no-progress").exit_code == 0
    repo_blob = cache / "models--org--m" / "blobs" / SHA
    xet_hash = hashlib.sha256(b"a xet hash").hexdigest()
    hub.xet_hashes[SHA] = xet_hash  # the listing names the file's Xet hash, as the Hub's does
    entry = _published(cache, repo_blob, xet_hash)
    hub.cdn.log.clear()
    result = mdl("pull", "m", "--no-progress")
    assert result.exit_code == 0, result.stderr
    assert hub.cdn.log.body_bytes() == 0
    assert repo_blob.is_symlink() and entry.read_bytes() == DATA
    verified = mdl("verify", "m", "--json")  # the record keeps the Xet hash that names the entry
    assert verified.exit_code == 0, verified.stdout + verified.stderr
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert mdl("pull", "m", "--no-progress").exit_code == 0
    assert repo_blob.is_symlink() and hub.cdn.log.body_bytes() == 0


def _published(cache: Path, repo_blob: Path, xet_hash: str) -> Path:
    """The repo blob moved into huggingface_hub's shared store by its own publisher (the real
    writer of the layout); returns its entry there."""
    from huggingface_hub.utils._shared_blobs import publish_blob_to_shared_store

    size = repo_blob.stat().st_size
    assert publish_blob_to_shared_store(
        blob_path=str(repo_blob), xet_hash=xet_hash, cache_dir=cache, expected_size=size
    )
    assert repo_blob.is_symlink()
    return cache / "blobs" / xet_hash[:2] / xet_hash


def _as_it_is(path: Path) -> tuple[bytes, int, int]:
    found = path.stat()
    return path.read_bytes(), found.st_ino, found.st_mode


def test_a_link_to_another_files_shared_entry_is_replaced_never_written_through(
    hub: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A co-tenant links repo a's blob, as huggingface_hub writes links, to the shared entry of
    repo b's file: the entry is b's (its name is b's Xet hash, not a's), so a's file is fetched and
    the link replaced; b's entry keeps its bytes, inode and huggingface_hub's read-only mode."""
    other = make_data(3 << 20, seed=72)
    hub.add_repo("org/a", {WEIGHTS: DATA})
    hub.add_repo("org/b", {WEIGHTS: other})
    b_hash = hashlib.sha256(b"xet hash of b").hexdigest()
    hub.xet_hashes[hashlib.sha256(other).hexdigest()] = b_hash
    cache = tmp_path / "hf-cache"
    catalog = '[settings]\nlayout = "hf-cache"\n[models.a]\nrepo = "org/a"\n'
    use_catalog(tmp_path, monkeypatch, catalog + '[models.b]\nrepo = "org/b"\n', endpoint=hub.url)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    assert mdl("pull", "--all", "--no-progress").exit_code == 0
    blob_a = cache / "models--org--a" / "blobs" / SHA
    blob_b = cache / "models--org--b" / "blobs" / hashlib.sha256(other).hexdigest()
    entry_b = _published(cache, blob_b, b_hash)
    blob_a.unlink()
    blob_a.symlink_to(os.readlink(blob_b))
    before = _as_it_is(entry_b)

    result = mdl("pull", "--all", "--json", "--no-progress")
    assert result.exit_code == 0, result.stderr
    assert _as_it_is(entry_b) == before, "another repo's file was written through a link"
    assert not blob_a.is_symlink() and blob_a.read_bytes() == DATA
    actions = {f["model"]: f["action"] for f in json.loads(result.stdout)["files"]}
    assert actions["b"] == "skipped", actions  # its own link, named by its Xet hash
    verified = mdl("verify", "--all", "--json")
    assert verified.exit_code == 0, verified.stdout + verified.stderr
    assert blob_b.is_symlink() and _as_it_is(entry_b) == before


def test_a_repair_replaces_the_link_never_the_shared_entry(
    hub: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The file's own shared entry (named by its Xet hash) holds other bytes: the repair writes
    the repo blob in place of huggingface_hub's link, never the entry other repos may link to."""
    hub.add_repo("org/m", {WEIGHTS: DATA})
    xet_hash = hashlib.sha256(b"xet hash of m").hexdigest()
    hub.xet_hashes[SHA] = xet_hash
    cache = tmp_path / "hf-cache"
    use_catalog(tmp_path, monkeypatch, CATALOG, endpoint=hub.url)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    assert mdl("pull", "m", "--no-progress").exit_code == 0
    repo_blob = cache / "models--org--m" / "blobs" / SHA
    entry = _published(cache, repo_blob, xet_hash)
    mode = entry.stat().st_mode
    entry.chmod(0o600)
    entry.write_bytes(make_data(len(DATA), seed=73))  # damaged in place
    entry.chmod(mode)
    before = _as_it_is(entry)

    result = mdl("pull", "m", "--json", "--no-progress")
    assert result.exit_code == 0, result.stderr
    assert [f["action"] for f in json.loads(result.stdout)["files"]] == ["repaired"]
    assert _as_it_is(entry) == before, "the shared entry was written"
    assert not repo_blob.is_symlink() and repo_blob.read_bytes() == DATA
    snapshot = next((cache / "models--org--m" / "snapshots").iterdir())
    assert (snapshot / WEIGHTS).read_bytes() == DATA
    assert mdl("verify", "m").exit_code == 0
