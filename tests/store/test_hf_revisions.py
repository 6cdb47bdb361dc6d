"""The Hugging Face cache keeps each commit's snapshot and blobs: a pull back to a revision already
there reuses its intact blobs (0 bytes fetched), and mdl's records keep every commit's files it
wrote, so ``prune`` (and ``remove --prune``) frees those no model needs any more, with the refs
naming their emptied snapshots."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from runfixtures import mdl, use_catalog
from servers import HubServer, make_data

OLD = make_data(400_000, seed=81)
NEW = make_data(400_000, seed=82)
CONFIG = b'{"hidden_size": 8}'
WEIGHTS = "model.safetensors"


@pytest.fixture
def cache(hub: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    hub.add_repo("org/m", {WEIGHTS: OLD, "config.json": CONFIG})
    hub.create_tag("org/m", "v1")
    hub.commit("org/m", {WEIGHTS: NEW})
    use_catalog(tmp_path, monkeypatch, None, endpoint=hub.url)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    return tmp_path / "hf-cache"


def at(catalog: Path, revision: str) -> None:
    catalog.write_text(
        f'[settings]\nlayout = "hf-cache"\n\n[models.m]\nrepo = "org/m"\nrevision = "{revision}"\n'
    )


def pulled(*args: str) -> dict[str, str]:
    result = mdl("pull", "m", "--json", "--no-progress", *args)
    assert result.exit_code == 0, result.stderr
    return {f["path"]: f["action"] for f in json.loads(result.stdout)["files"]}


def file_bytes(report: dict[str, Any]) -> int:
    """What a prune report says it freed of files (not of refs)."""
    return sum(r["size"] for r in report["removed"] if "refs" not in Path(r["path"]).parts)


def blob(cache: Path, data: bytes) -> Path:
    return cache / "models--org--m" / "blobs" / hashlib.sha256(data).hexdigest()


def test_a_pull_back_to_a_revision_in_the_cache_reuses_its_blobs(
    hub: HubServer, cache: Path
) -> None:
    catalog = Path(os.environ["MDL_CATALOG"])
    at(catalog, "v1")
    assert pulled()[WEIGHTS] == "downloaded"
    at(catalog, "main")
    assert pulled()[WEIGHTS] == "downloaded"
    at(catalog, "v1")
    hub.cdn.log.clear()
    assert pulled() == {WEIGHTS: "skipped", "config.json": "skipped"}
    assert hub.cdn.log.body_bytes() == 0, (
        "the old weights are intact in the cache: not fetched again"
    )
    shown = json.loads(mdl("show", "m", "--json").stdout)["models"][0]
    assert shown["status"] == "installed"
    assert {f["path"]: f["sha256"] for f in shown["files"]}[WEIGHTS] == hashlib.sha256(
        OLD
    ).hexdigest()
    verified = mdl("verify", "m", "--json")
    assert verified.exit_code == 0, verified.stdout
    hub.cdn.log.clear()
    assert pulled() == {WEIGHTS: "skipped", "config.json": "skipped"}, (
        "and recorded as the model's files again"
    )
    assert hub.cdn.log.body_bytes() == 0


def test_prune_frees_the_files_of_a_commit_the_model_moved_from(
    hub: HubServer, cache: Path
) -> None:
    catalog = Path(os.environ["MDL_CATALOG"])
    at(catalog, "main")
    pulled()
    at(catalog, "v1")
    pulled()
    refs = cache / "models--org--m" / "refs"
    assert (refs / "main").exists() and (refs / "v1").exists()
    assert blob(cache, NEW).exists()

    dry = json.loads(mdl("prune", "--dry-run", "--json").stdout)
    assert file_bytes(dry) == len(NEW) and blob(cache, NEW).exists()
    result = mdl("prune", "--json")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert file_bytes(doc) == len(NEW), doc
    assert doc["freed"] == len(NEW) + 40, "and the 40-byte ref naming the snapshot it emptied"
    assert {r["reason"] for r in doc["removed"]} <= {
        "of another commit than the model's",
        "names a snapshot prune removed",
    }
    assert not blob(cache, NEW).exists(), "the weights only the commit left behind used are gone"
    assert blob(cache, OLD).read_bytes() == OLD, "the model's own stay"
    assert not (refs / "main").exists(), (
        "a ref to a removed snapshot would be a corrupted cache to huggingface_hub"
    )
    assert (refs / "v1").exists()
    assert json.loads(mdl("show", "m", "--json").stdout)["models"][0]["status"] == "installed"
    assert json.loads(mdl("prune", "--json").stdout)["removed"] == []
    code = (
        f'from huggingface_hub import hf_hub_download; open(hf_hub_download("org/m", "{WEIGHTS}",'
        ' revision="v1"))'
    )
    run = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr[-2000:]


def test_remove_prune_frees_every_commit_mdl_wrote(hub: HubServer, cache: Path) -> None:
    catalog = Path(os.environ["MDL_CATALOG"])
    at(catalog, "main")
    pulled()
    at(catalog, "v1")
    pulled()
    result = mdl("remove", "m", "--prune", "--json")
    assert result.exit_code == 0, result.stderr
    assert file_bytes(json.loads(result.stdout)["pruned"]) == len(OLD) + len(NEW) + len(CONFIG)
    assert not (cache / "models--org--m").exists()
