"""A signed model re-published upstream (new files, a new model.sig) while the signed version a pull
installed whole is still on disk: ``list``/``show`` say what is true — installed, verified against
the signature it was pulled with — and, apart from the status, that upstream has another version
(``update_available`` in --json)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from runfixtures import mdl
from servers import Fault, HubServer, make_data
from signing.test_signed_pull import FILES, signed_repo, write_catalog
from signkeys import official_sign, write_files

NEW_FILE = make_data(200_001, seed=7)  # big enough to be an LFS file, served by the CDN


def listed() -> dict[str, object]:
    result = mdl("list", "--json")
    assert result.exit_code == 0, result.stderr
    model: dict[str, object] = json.loads(result.stdout)["models"][0]
    return model


@pytest.mark.slow
def test_a_new_file_upstream_not_signed_yet_leaves_the_signed_version_installed(
    world: Path, hub: HubServer, tmp_path: Path
) -> None:
    """The publisher uploads the new file first and the new model.sig later: the cron pull in
    between is refused (exit 6, the file is not signed), and the node's signed version is still
    installed and verified."""
    private, public, _ = signed_repo(hub, tmp_path)
    write_catalog(world, public)
    assert mdl("pull", "tiny").exit_code == 0
    assert listed()["update_available"] is False
    hub.commit("org/tiny", {"extra.bin": NEW_FILE})
    refused = mdl("pull", "tiny")
    assert refused.exit_code == 6 and "tiny/extra.bin" in refused.stderr, refused.stderr
    model = listed()
    assert model["status"] == "installed", model
    assert model["signature"] == {
        "verified": True,
        "by": model["signature"]["by"],
        "file": "model.sig",
    }  # type: ignore[index]
    assert model["update_available"] is True and model["files"] == 4, model
    text = mdl("list").stdout
    assert "installed, signed by key" in text and "update available" in text, text
    assert "not verified" not in text
    # a readiness check holds
    assert mdl("list", "--status", "installed", "--json").stdout.count('"tiny"') == 1
    shown = mdl("show", "tiny")
    assert "upstream has another version" in shown.stdout and "extra.bin" not in shown.stdout, (
        shown.stdout
    )
    # the installed version, held to the signature it was pulled with
    verified = mdl("verify", "tiny")
    assert verified.exit_code == 0, verified.stderr
    # The publisher signs the new version: the next pull installs it, and nothing is left to update.
    new = {**FILES, "extra.bin": NEW_FILE}
    hub.commit(
        "org/tiny",
        {"model.sig": official_sign(write_files(tmp_path / "republished", new), private)},
    )
    done = mdl("pull", "tiny")
    assert done.exit_code == 0, done.stderr
    model = listed()
    assert (
        model["status"] == "installed"
        and model["update_available"] is False
        and model["files"] == 5
    ), model
    assert model["signature"]["verified"] is True  # type: ignore[index]


@pytest.mark.slow
def test_a_republished_model_whose_pull_fails_midway_is_still_installed_as_signed(
    world: Path, hub: HubServer, tmp_path: Path
) -> None:
    """New files and a new model.sig, both upstream; the pull of the new file fails (the server
    errs): the new signature is not placed over the old one (it is placed last, with its whole
    version), and the signed version on disk stays installed."""
    private, public, signature = signed_repo(hub, tmp_path)
    write_catalog(world, public)
    assert mdl("pull", "tiny").exit_code == 0
    more = b'{"added": "in v2"}\n'  # a small file: served by the Hub itself, it arrives
    new = {**FILES, "extra.bin": NEW_FILE, "more.json": more}
    sig = official_sign(write_files(tmp_path / "v2", new), private)
    hub.commit("org/tiny", {"extra.bin": NEW_FILE, "more.json": more, "model.sig": sig})
    hub.cdn.faults.add(Fault.http_error(404, path_prefix="/blobs/", times=None))  # 404: no retries
    failed = mdl("pull", "tiny")
    assert failed.exit_code != 0, failed.stderr
    assert (tmp_path / "models" / "tiny" / "more.json").read_bytes() == more
    # what the newer version fetched so far is not the model's extra
    pruned = mdl("prune", "--dry-run", "--json")
    assert pruned.exit_code == 0 and "more.json" not in pruned.stdout, pruned.stdout
    assert "tiny/model.sig: verified, not placed" in failed.stderr, failed.stderr
    # placed only with its version
    assert (tmp_path / "models" / "tiny" / "model.sig").read_bytes() == signature
    model = listed()
    assert model["status"] == "installed" and model["update_available"] is True, model
    assert model["signature"]["verified"] is True  # type: ignore[index]
    assert mdl("verify", "tiny").exit_code == 0
    hub.cdn.faults.clear()
    assert mdl("pull", "tiny").exit_code == 0
    model = listed()
    assert (
        model["status"] == "installed"
        and model["update_available"] is False
        and model["files"] == 6
    ), model


@pytest.mark.slow
def test_a_lock_pinning_another_version_is_judged_against_the_lock(
    world: Path, hub: HubServer, tmp_path: Path
) -> None:
    """A lock is the version wanted, not news from upstream: a node behind it is not installed as
    the lock says.
    """
    private, public, _ = signed_repo(hub, tmp_path)
    write_catalog(world, public)
    assert mdl("pull", "tiny").exit_code == 0
    new = {**FILES, "extra.bin": NEW_FILE}
    hub.commit(
        "org/tiny",
        {
            "extra.bin": NEW_FILE,
            "model.sig": official_sign(write_files(tmp_path / "v2", new), private),
        },
    )
    assert mdl("lock").exit_code == 0
    model = listed()
    assert model["status"] == "partial" and model["update_available"] is False, model


@pytest.mark.slow
def test_in_the_hf_cache_a_republished_model_whose_pull_fails_stays_installed_and_prune_keeps_it(
    world: Path, hub: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Hugging Face cache keeps each commit's files apart (the record's earlier commits): the
    signed version a pull installed whole is judged from them, and prune never frees it while
    ``list`` calls it installed."""
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("MDL_LAYOUT", "hf-cache")
    private, public, _ = signed_repo(hub, tmp_path)
    write_catalog(world, public)
    assert mdl("pull", "tiny").exit_code == 0
    more = b'{"added": "in v2"}\n'
    changed = {name: data + b" v2" for name, data in FILES.items() if not name.endswith(".bin")}
    new = {**FILES, **changed, "extra.bin": NEW_FILE, "more.json": more}
    sig = official_sign(write_files(tmp_path / "v2", new), private)
    hub.commit("org/tiny", {**changed, "extra.bin": NEW_FILE, "more.json": more, "model.sig": sig})
    hub.cdn.faults.add(Fault.http_error(404, path_prefix="/blobs/", times=None))  # 404: no retries
    assert mdl("pull", "tiny").exit_code != 0
    model = listed()
    assert model["status"] == "installed" and model["update_available"] is True, model
    pruned = mdl("prune", "--json")
    assert pruned.exit_code == 0, pruned.stderr
    assert json.loads(pruned.stdout)["removed"] == [], pruned.stdout
    assert listed()["status"] == "installed"
    verified = mdl("verify", "tiny")
    assert verified.exit_code == 0, verified.stderr
