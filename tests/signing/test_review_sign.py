"""A hostile review of signed pulls (issue 40): each test is one way a signed model was installed,
shown or refused other than as its catalog's signer says."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest
from runfixtures import mdl
from servers import HubServer
from signing.test_signed_pull import FILES, WEIGHTS, signed_repo, write_catalog
from signkeys import key_pair
from zygote import forked_mdl

from mdl.lockfile.io import read_lock, write_lock
from mdl.lockfile.model import Lock
from mdl.signing.library import sign_digests


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.mark.slow
def test_frozen_pull_of_a_signed_model_still_checks_its_signature(
    world: Path, hub: HubServer, tmp_path: Path
) -> None:
    """--frozen takes the files from the lock, and the signer from the catalog: a lock made while a
    file was replaced upstream (its listing names the new bytes) installs nothing that the signer
    did not sign."""
    _, public, _ = signed_repo(hub, tmp_path)
    write_catalog(world, public)
    assert mdl("lock").exit_code == 0
    good = mdl("pull", "tiny", "--frozen")
    assert good.exit_code == 0, good.stderr
    assert "signature verified" in good.stderr
    shown = json.loads(mdl("show", "tiny", "--frozen", "--json").stdout)["models"][0]
    assert shown["signature"]["verified"] is True
    shutil.rmtree(tmp_path / "models")
    tampered = b"tampered after signing"
    hub.replace_file("org/tiny", "model.safetensors", tampered)
    # the lock refuses what its signature does not cover (tests/download/test_locksigned.py)
    lock = world.parent / "catalog.lock"
    before = lock.read_bytes()
    refused = mdl("lock", "--upgrade")
    assert refused.exit_code == 6 and "model.safetensors" in refused.stderr, refused.stderr
    assert lock.read_bytes() == before
    # a lock edited by hand (a pull request) to pin the new bytes: the pull still refuses them
    found = read_lock(lock)
    assert found is not None
    model = found.models["tiny"]
    files = tuple(
        replace(f, sha256=sha(tampered), size=len(tampered), git_oid=None, xet=None)
        if f.path == "model.safetensors"
        else f
        for f in model.files
    )
    write_lock(lock, Lock({"tiny": replace(model, files=files)}))
    result = mdl("pull", "tiny", "--frozen")
    assert result.exit_code == 6, result.stderr
    assert "tiny/model.safetensors" in result.stderr
    folder = tmp_path / "models" / "tiny"
    assert not (folder / "model.safetensors").exists()
    # left out by the signer: not installed from a signed model
    assert not (folder / ".gitattributes").exists()


@pytest.mark.slow
def test_a_locked_signed_model_is_shown_installed_and_verifies(
    world: Path, hub: HubServer, tmp_path: Path
) -> None:
    """A lock pins every file the Hub lists, .gitattributes too, which a signed pull leaves out (its
    signer did): list, show and verify with the lock must not call the model partial, unsigned, or
    not covered."""
    _, public, _ = signed_repo(hub, tmp_path)
    write_catalog(world, public)
    assert mdl("lock").exit_code == 0
    pulled = mdl("pull", "tiny", "--locked")
    assert pulled.exit_code == 0, pulled.stderr
    for flags in ((), ("--locked",)):
        shown = json.loads(mdl("show", "tiny", "--json", *flags).stdout)["models"][0]
        assert shown["status"] == "installed", (flags, shown)
        assert shown["signature"]["verified"] is True
        listed = json.loads(mdl("list", "--json", *flags).stdout)["models"][0]
        assert listed["status"] == "installed" and listed["signature"]["verified"] is True
    checked = mdl("verify", "tiny", "--locked")
    assert checked.exit_code == 0, checked.stderr


def test_a_signature_at_a_presigned_url_is_saved_as_its_file_name_never_with_its_query(
    world: Path, hub: HubServer, tmp_path: Path
) -> None:
    """``file = "https://…/model.sig?X-Amz-Signature=…"``: the query is a secret; it must not become
    the installed file's name, nor appear in the JSON on stdout or in show's table."""
    private, public = key_pair(tmp_path / "keys")
    hub.cdn.add_file("/f/w.bin", WEIGHTS)
    hub.cdn.add_file(
        "/f/model.sig", sign_digests({"w.bin": sha(WEIGHTS)}, private_key=private, model_name="w")
    )
    secret = "0123456789abcdef0123456789abcdef"
    url = f"{hub.cdn.url}/f/model.sig?X-Amz-Credential=AKIAEXAMPLE&X-Amz-Signature={secret}"
    world.write_text(
        f'[models.tiny]\nfiles = [{{ url = "{hub.cdn.url}/f/w.bin" }}]\n\n'
        f'[models.tiny.signature]\nkey = "{public}"\nfile = "{url}"\n'
    )
    result = mdl("pull", "tiny", "--json")
    assert result.exit_code == 0, result.stderr
    assert secret not in result.stdout + result.stderr
    assert sorted(p.name for p in (tmp_path / "models" / "tiny").iterdir()) == [
        "model.sig",
        "w.bin",
    ]
    shown = mdl("show", "tiny")
    assert shown.exit_code == 0 and secret not in shown.stdout + shown.stderr
    assert "signed by key" in shown.stdout


def test_a_signature_url_without_a_file_name_is_a_catalog_error(
    world: Path, hub: HubServer, tmp_path: Path
) -> None:
    _, public = key_pair(tmp_path / "keys")
    world.write_text(
        f'[models.tiny]\nfiles = [{{ url = "{hub.cdn.url}/f/w.bin" }}]\n\n'
        f'[models.tiny.signature]\nkey = "{public}"\nfile = "{hub.cdn.url}/sigs/"\n'
    )
    result = mdl("pull", "tiny")
    assert result.exit_code == 2, result.stderr
    assert "models.tiny.signature.file" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "models").exists()


def test_a_settings_signature_on_a_model_of_urls_keeps_it_in_the_bucket_not_an_internal_error(
    world: Path, hub: HubServer, tmp_path: Path
) -> None:
    """[settings.signature] (file = "model.sig", a path in a repo) given to a model of direct URLs,
    or of files from two repos: their signature has no place at their source, so it is the one
    ``publish --sign`` keeps in the team's bucket (issue 86: a model of URLs names a signer). With
    no lock and nothing published, a pull refuses by name (exit 6), never with an internal
    error."""
    _, public = key_pair(tmp_path / "keys")
    hub.cdn.add_file("/f/w.bin", b"weights")
    world.write_text(
        f'[settings.signature]\nkey = "{public}"\n\n[models.tiny]\nfiles = [{{ url ='
        f' "{hub.cdn.url}/f/w.bin" }}]\n\n[models.two]\nfiles = [{{ repo = "org/a", path = "x.bin"'
        ' }, { repo = "org/b", path = "y.bin" }]\n'
    )
    result = mdl("pull", "tiny")
    assert result.exit_code == 6, result.stderr
    assert "internal error" not in result.stderr and "tiny/model.sig" in result.stderr
    assert "team's bucket" in result.stderr
    assert not (tmp_path / "models" / "tiny" / "w.bin").exists()


@pytest.mark.parametrize("bad", ["../escape.bin", "/etc/abs.bin", "a/../../b.bin", "bell\x07.bin"])
def test_a_statement_naming_a_path_no_folder_can_hold_refuses_the_model(
    world: Path, hub: HubServer, tmp_path: Path, bad: str
) -> None:
    """A signed statement naming '../x' (or '/x', or a control character) was taken as "signed,
    missing upstream": its expected entry made the model's record unreadable, so show said
    `installed` and verify exit 0 after a pull that failed. No folder can match it (model_signing's
    verify fails it too): the signature is refused whole."""
    private, public = key_pair(tmp_path / "keys")
    digests = {path: sha(data) for path, data in FILES.items()} | {bad: sha(b"x")}
    hub.add_repo(
        "org/tiny",
        {**FILES, "model.sig": sign_digests(digests, private_key=private, model_name="m")},
    )
    write_catalog(world, public)
    (tmp_path / "models").mkdir()
    # what '../escape.bin' would name beside the folder
    (tmp_path / "models" / "escape.bin").write_bytes(b"x")
    result = mdl("pull", "tiny")
    assert result.exit_code == 6, result.stderr
    assert "tiny/model.sig" in result.stderr and "\x07" not in result.stderr
    assert not (tmp_path / "models" / "tiny" / "model.safetensors").exists()
    shown = json.loads(mdl("show", "tiny", "--json").stdout)["models"][0]
    assert shown["status"] != "installed" and shown["signature"]["verified"] is False
    assert mdl("verify", "tiny").exit_code != 0


@pytest.mark.slow
def test_an_unsigned_file_an_earlier_pull_installed_is_not_shown_installed_and_signed(
    world: Path, hub: HubServer, tmp_path: Path
) -> None:
    """Pulled before the catalog named a signer, an unsigned file added upstream stays on disk; once
    the catalog asks for the signature the pull refuses it (exit 6, "nothing of it was installed"),
    so list and show must not call the model installed and signed with that file in it."""
    _, public, _ = signed_repo(hub, tmp_path)
    hub.commit("org/tiny", {"extra.bin": b"added upstream, never signed"})
    world.write_text('[models.tiny]\nrepo = "org/tiny"\n')
    assert mdl("pull", "tiny").exit_code == 0
    write_catalog(world, public)
    result = mdl("pull", "tiny")
    assert result.exit_code == 6 and "tiny/extra.bin" in result.stderr, result.stderr
    shown = json.loads(mdl("show", "tiny", "--json").stdout)["models"][0]
    assert shown["status"] != "installed", shown
    assert shown["signature"]["verified"] is False
    listed = json.loads(mdl("list", "--json").stdout)["models"][0]
    assert listed["status"] != "installed" and listed["signature"]["verified"] is False
    assert mdl("verify", "tiny").exit_code != 0


@pytest.mark.slow
def test_concurrent_pulls_of_one_signed_model_all_succeed(
    world: Path, hub: HubServer, tmp_path: Path
) -> None:
    """Runs of `mdl pull` on one model wait for each other's file locks; the signature was fetched
    into the model's shared .part and staging file with no lock, so one run renamed it away under
    another ("cannot move it into place") or another read it half-written ("the signature does not
    verify")."""
    _, public, signature = signed_repo(hub, tmp_path)
    write_catalog(world, public)
    runs = [
        subprocess.Popen(
            [forked_mdl(), "pull", "tiny"],
            env=dict(os.environ),
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for _ in range(4)
    ]
    ended = [(run.wait(timeout=120), run.communicate()[1]) for run in runs]
    assert all(code == 0 for code, _ in ended), [err for code, err in ended if code != 0]
    assert (tmp_path / "models" / "tiny" / "model.sig").read_bytes() == signature


@pytest.mark.slow
def test_list_and_show_do_not_vouch_for_a_signer_the_catalog_no_longer_names(
    world: Path, hub: HubServer, tmp_path: Path
) -> None:
    """The catalog's key is changed (or its file is gone) after a pull: the model was not signed by
    the key the catalog names now, so it is not shown verified (verify and pull already fail)."""
    _, public, _ = signed_repo(hub, tmp_path)
    write_catalog(world, public)
    assert mdl("pull", "tiny").exit_code == 0
    _, other = key_pair(tmp_path / "other")
    write_catalog(world, other)
    assert mdl("verify", "tiny").exit_code == 6
    for command in (("list", "--json"), ("show", "tiny", "--json")):
        shown = json.loads(mdl(*command).stdout)["models"][0]
        assert shown["signature"]["verified"] is False, (command, shown)
    other.unlink()
    listed = mdl("list", "--json")
    assert (
        listed.exit_code == 0
        and json.loads(listed.stdout)["models"][0]["signature"]["verified"] is False
    )
    write_catalog(world, public)  # the signer it was pulled with: vouched for again
    assert json.loads(mdl("list", "--json").stdout)["models"][0]["signature"]["verified"] is True


@pytest.mark.slow
def test_a_signed_hub_file_saved_under_another_name_is_still_signed(
    world: Path, hub: HubServer, tmp_path: Path
) -> None:
    _, public, _ = signed_repo(hub, tmp_path)
    world.write_text(
        '[models.tiny]\nfiles = [\n  { repo = "org/tiny", path = "model.safetensors" },\n'
        '  { repo = "org/tiny", path = "config.json", as = "cfg/config.json" },\n]\n\n'
        f'[models.tiny.signature]\nkey = "{public}"\n'
    )
    result = mdl("pull", "tiny")
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "models" / "tiny" / "cfg" / "config.json").is_file()
    assert mdl("verify", "tiny").exit_code == 0


@pytest.mark.slow
def test_add_signed_by_writes_the_signature_table(
    world: Path, hub: HubServer, tmp_path: Path
) -> None:
    _, public, _ = signed_repo(hub, tmp_path)
    world.write_text("")
    added = mdl("add", "tiny", "hf://org/tiny", "--signed-by", str(public))
    assert added.exit_code == 0, added.stderr
    assert "signature" in world.read_text()
    pulled = mdl("pull", "tiny")
    assert pulled.exit_code == 0 and "signature verified" in pulled.stderr, pulled.stderr
