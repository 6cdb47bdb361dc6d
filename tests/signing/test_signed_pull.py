"""pull of models whose catalog names a signer: model.sig fetched first and verified, every file
held to its signed digest, on the loopback Hub, with model_signing's own CLI as the judge both ways.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from runfixtures import mdl
from servers import HubServer, make_data
from signkeys import key_pair, official_sign, official_verify, write_files

WEIGHTS = make_data(300_003, seed=1)
CONFIG = b'{"model_type": "bert"}\n'
FILES = {"config.json": CONFIG, "model.safetensors": WEIGHTS, "nested/vocab.txt": b"[PAD]\n" * 40}


def signed_repo(
    hub: HubServer, tmp_path: Path, files: dict[str, bytes] = FILES
) -> tuple[Path, Path, bytes]:
    """org/tiny on the Hub with a model.sig made by the official CLI: (private key, public key,
    signature).
    """
    private, public = key_pair(tmp_path / "keys")
    signature = official_sign(write_files(tmp_path / "upstream", files), private)
    hub.add_repo(
        "org/tiny",
        {**files, "model.sig": signature, ".gitattributes": b"*.safetensors filter=lfs\n"},
    )
    return private, public, signature


def write_catalog(catalog: Path, public: Path, extra: str = "") -> None:
    catalog.write_text(
        f'[models.tiny]\nrepo = "org/tiny"\n{extra}\n[models.tiny.signature]\nkey = "{public}"\n'
    )


@pytest.mark.slow
def test_a_signed_repo_is_verified_and_the_official_tool_accepts_the_folder(
    world: Path, hub: HubServer, tmp_path: Path
) -> None:
    _, public, signature = signed_repo(hub, tmp_path)
    write_catalog(world, public)
    result = mdl("pull", "tiny", "--json")
    assert result.exit_code == 0, result.stderr
    folder = tmp_path / "models" / "tiny"
    assert (folder / "model.sig").read_bytes() == signature
    assert (folder / "model.safetensors").read_bytes() == WEIGHTS
    # the signer left it out: not installed from a signed model
    assert not (folder / ".gitattributes").exists()
    judged = official_verify(folder, public)
    assert judged.returncode == 0, judged.stderr + judged.stdout


@pytest.mark.slow
def test_a_file_replaced_upstream_after_signing_is_refused(
    world: Path, hub: HubServer, tmp_path: Path
) -> None:
    _, public, _ = signed_repo(hub, tmp_path)
    # the listing's sha256 is the new one
    hub.replace_file("org/tiny", "model.safetensors", make_data(300_003, seed=9))
    write_catalog(world, public)
    result = mdl("pull", "tiny")
    assert result.exit_code == 6, result.stderr
    assert "tiny/model.safetensors" in result.stderr and "signed" in result.stderr
    assert not (tmp_path / "models" / "tiny" / "model.safetensors").exists()


@pytest.mark.slow
def test_a_wrong_key_refuses_the_whole_model(world: Path, hub: HubServer, tmp_path: Path) -> None:
    signed_repo(hub, tmp_path)
    _, other = key_pair(tmp_path / "other")
    write_catalog(world, other)
    result = mdl("pull", "tiny")
    assert result.exit_code == 6, result.stderr
    assert "model.sig" in result.stderr
    assert not (tmp_path / "models" / "tiny").exists() or not any(
        (tmp_path / "models" / "tiny").iterdir()
    )


@pytest.mark.slow
def test_an_unsigned_file_added_upstream_fails_by_name_and_the_rest_installs(
    world: Path, hub: HubServer, tmp_path: Path
) -> None:
    _, public, _ = signed_repo(hub, tmp_path)
    hub.commit("org/tiny", {"extra.bin": b"not signed"})
    write_catalog(world, public)
    result = mdl("pull", "tiny", "--json")
    assert result.exit_code == 6, result.stderr
    doc = json.loads(result.stdout)
    failed = {f["path"]: f for f in doc["files"] if f["action"] == "failed"}
    assert set(failed) == {"extra.bin"} and "not covered" in failed["extra.bin"]["error"]
    folder = tmp_path / "models" / "tiny"
    assert not (folder / "extra.bin").exists()
    assert (folder / "config.json").read_bytes() == CONFIG
    shown = json.loads(mdl("show", "tiny", "--json").stdout)["models"][0]
    assert shown["status"] != "installed" and shown["signature"]["verified"] is False


@pytest.mark.slow
def test_a_signed_file_missing_upstream_fails_when_the_catalog_selects_it(
    world: Path, hub: HubServer, tmp_path: Path
) -> None:
    _, public, _ = signed_repo(hub, tmp_path)
    hub.delete_file("org/tiny", "nested/vocab.txt")
    write_catalog(world, public)
    result = mdl("pull", "tiny")
    assert result.exit_code == 6 and "tiny/nested/vocab.txt" in result.stderr, result.stderr
    # not selected: a part of a repo is fine
    write_catalog(world, public, 'include = ["*.json", "*.safetensors"]')
    again = mdl("pull", "tiny")
    assert again.exit_code == 0, again.stderr


@pytest.mark.slow
def test_part_of_a_signed_repo_is_checked_and_the_signature_is_installed(
    world: Path, hub: HubServer, tmp_path: Path
) -> None:
    _, public, signature = signed_repo(hub, tmp_path)
    write_catalog(world, public, 'include = ["*.safetensors"]')  # model.sig is fetched all the same
    result = mdl("pull", "tiny", "--json")
    assert result.exit_code == 0, result.stderr
    folder = tmp_path / "models" / "tiny"
    assert sorted(p.name for p in folder.iterdir()) == ["model.safetensors", "model.sig"]
    assert (folder / "model.sig").read_bytes() == signature


@pytest.mark.slow
@pytest.mark.parametrize(
    "forged",
    [b"not json", b"[]", b"{}", b'{"mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json"}'],
    ids=["text", "array", "empty", "no-material"],
)
def test_a_signature_that_is_not_a_bundle_is_exit_6_and_nothing_is_installed(
    world: Path, hub: HubServer, tmp_path: Path, forged: bytes
) -> None:
    _, public, _ = signed_repo(hub, tmp_path)
    hub.replace_file("org/tiny", "model.sig", forged)
    write_catalog(world, public)
    result = mdl("pull", "tiny")
    assert result.exit_code == 6, result.stderr
    assert "tiny/model.sig" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "models" / "tiny").exists() or not any(
        (tmp_path / "models" / "tiny").iterdir()
    )


@pytest.mark.slow
def test_no_verify_does_not_skip_a_signature_the_catalog_asks_for(
    world: Path, hub: HubServer, tmp_path: Path
) -> None:
    _, public, _ = signed_repo(hub, tmp_path)
    # a small file: a git blob id, no sha256
    hub.replace_file("org/tiny", "config.json", b'{"model_type": "evil"}\n')
    write_catalog(world, public)
    result = mdl("pull", "tiny", "--no-verify")
    assert result.exit_code == 6 and "tiny/config.json" in result.stderr, result.stderr
    assert not (tmp_path / "models" / "tiny" / "config.json").exists()


@pytest.mark.slow
def test_without_the_sign_extra_a_signed_catalog_is_exit_2_naming_it(
    world: Path, hub: HubServer, tmp_path: Path
) -> None:
    import subprocess
    import sys

    from runfixtures import without_modules

    _, public, _ = signed_repo(hub, tmp_path)
    write_catalog(world, public)
    env = without_modules(tmp_path, "model_signing")
    done = subprocess.run(
        [sys.executable, "-m", "mdl", "pull", "tiny"], env=env, capture_output=True, text=True
    )
    assert done.returncode == 2, done.stderr
    assert "mdl[sign]" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "models" / "tiny").exists()


@pytest.mark.slow
def test_verify_rechecks_offline_and_catches_a_file_changed_on_disk(
    world: Path, hub: HubServer, tmp_path: Path
) -> None:
    _, public, _ = signed_repo(hub, tmp_path)
    write_catalog(world, public)
    assert mdl("pull", "tiny").exit_code == 0
    hub.stop()  # offline from here: the signature and its key are local
    assert mdl("verify", "tiny").exit_code == 0
    weights = tmp_path / "models" / "tiny" / "model.safetensors"
    weights.write_bytes(make_data(300_003, seed=5))
    result = mdl("verify", "tiny")
    assert result.exit_code == 6 and "tiny/model.safetensors" in result.stderr, result.stderr


@pytest.mark.slow
def test_verify_fails_when_the_installed_signature_is_not_the_signers(
    world: Path, hub: HubServer, tmp_path: Path
) -> None:
    _, public, _ = signed_repo(hub, tmp_path)
    write_catalog(world, public)
    assert mdl("pull", "tiny").exit_code == 0
    _, other = key_pair(tmp_path / "other")
    write_catalog(world, other)
    result = mdl("verify", "tiny")
    assert result.exit_code == 6 and "tiny/model.sig" in result.stderr, result.stderr


@pytest.mark.slow
def test_list_and_show_say_who_signed(world: Path, hub: HubServer, tmp_path: Path) -> None:
    _, public, _ = signed_repo(hub, tmp_path)
    write_catalog(world, public)
    assert mdl("pull", "tiny").exit_code == 0
    listed = json.loads(mdl("list", "--json").stdout)["models"][0]
    assert listed["signature"]["verified"] is True and listed["signature"]["by"].startswith("key ")
    assert "signed by key" in mdl("list").stdout
    assert "signed by key" in mdl("show", "tiny").stdout


@pytest.mark.slow
def test_the_hf_cache_layout_installs_a_signed_model_as_links(
    world: Path, hub: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, public, signature = signed_repo(hub, tmp_path)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    write_catalog(world, public)
    result = mdl("pull", "tiny", "--layout", "hf-cache")
    assert result.exit_code == 0, result.stderr
    snapshot = next((tmp_path / "hf" / "models--org--tiny" / "snapshots").iterdir())
    assert (snapshot / "model.sig").is_symlink() and (
        snapshot / "model.sig"
    ).read_bytes() == signature
    assert (snapshot / "model.safetensors").read_bytes() == WEIGHTS
    assert mdl("verify", "tiny", "--layout", "hf-cache").exit_code == 0


@pytest.mark.parametrize(
    ("method", "algorithm", "shard"),
    [("shards", "sha256", 65_536), ("files", "blake3", 0), ("files", "blake2", 0)],
)
def test_other_serialisations_are_checked_as_they_say(
    world: Path, hub: HubServer, tmp_path: Path, method: str, algorithm: str, shard: int
) -> None:
    from signkeys import library_sign

    private, public = key_pair(tmp_path / "keys")
    folder = write_files(tmp_path / "upstream", FILES)
    signature = library_sign(folder, private, method=method, algorithm=algorithm, shard=shard)
    hub.add_repo("org/tiny", {**FILES, "model.sig": signature})
    write_catalog(world, public)
    result = mdl("pull", "tiny")
    assert result.exit_code == 0, result.stderr
    assert mdl("verify", "tiny").exit_code == 0
    # other bytes, same size
    hub.replace_file("org/tiny", "model.safetensors", make_data(300_003, seed=8))
    again = mdl("pull", "tiny")
    assert again.exit_code == 6 and "tiny/model.safetensors" in again.stderr, again.stderr
    # the signed one stays
    assert (tmp_path / "models" / "tiny" / "model.safetensors").read_bytes() == WEIGHTS


@pytest.mark.slow
def test_a_mirror_serving_a_forged_signature_is_passed_over_for_the_source(
    world: Path, hub: HubServer, tmp_path: Path
) -> None:
    _private, public, signature = signed_repo(hub, tmp_path)
    forged_folder = tmp_path / "forged"
    forged_folder.mkdir()
    (forged_folder / "config.json").write_bytes(b"{}")
    evil, _ = key_pair(tmp_path / "evil")
    hub.cdn.add_file("/mirror/tiny/model.sig", official_sign(forged_folder, evil))
    for path, data in FILES.items():
        hub.cdn.add_file(f"/mirror/tiny/{path}", data)
    world.write_text(
        f'[settings]\nmirrors = ["{hub.cdn.url}/mirror/{{model}}/{{path}}"]\n\n'
        f'[models.tiny]\nrepo = "org/tiny"\n\n[models.tiny.signature]\nkey = "{public}"\n'
    )
    result = mdl("pull", "tiny")
    assert result.exit_code == 0, result.stderr
    assert "mirror" in result.stderr  # the fallback is said
    assert (tmp_path / "models" / "tiny" / "model.sig").read_bytes() == signature


@pytest.mark.slow
def test_a_signature_only_a_mirror_has_is_fetched_there_and_checked(
    world: Path, hub: HubServer, tmp_path: Path
) -> None:
    """``publish --sign`` puts model.sig on the mirror only: a pull from that mirror fetches and
    checks it.
    """
    private, public = key_pair(tmp_path / "keys")
    signature = official_sign(write_files(tmp_path / "upstream", FILES), private)
    hub.add_repo("org/tiny", dict(FILES))  # no model.sig at the source
    hub.cdn.add_file("/mirror/tiny/model.sig", signature)
    world.write_text(
        f'[settings]\nmirrors = ["{hub.cdn.url}/mirror/{{model}}/{{path}}"]\n\n'
        f'[models.tiny]\nrepo = "org/tiny"\n\n[models.tiny.signature]\nkey = "{public}"\n'
    )
    result = mdl("pull", "tiny")
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "models" / "tiny" / "model.sig").read_bytes() == signature
    # the mirror's copy is now forged: the next pull says so
    hub.cdn.add_file("/mirror/tiny/model.sig", b"{}")
    (tmp_path / "models" / "tiny" / "model.sig").unlink()
    again = mdl("pull", "tiny")
    assert again.exit_code == 6 and "tiny/model.sig" in again.stderr, again.stderr


def test_no_signature_anywhere_is_exit_6_naming_it(
    world: Path, hub: HubServer, tmp_path: Path
) -> None:
    _, public = key_pair(tmp_path / "keys")
    hub.add_repo("org/tiny", dict(FILES))
    write_catalog(world, public)
    result = mdl("pull", "tiny")
    assert result.exit_code == 6, result.stderr
    assert "tiny/model.sig" in result.stderr and "no signature" not in result.stdout
    assert "`mdl publish --sign`" in result.stderr
    # its files are fetched and checked by their own hashes (for a seeding machine's `publish
    # --sign`), but the model is never installed unsigned: partial, its signature still wanted
    for path, data in FILES.items():
        if not path.startswith(".git"):
            assert (tmp_path / "models" / "tiny" / path).read_bytes() == data, path
    listed = json.loads(mdl("list", "--json").stdout)["models"]
    assert [(m["name"], m["status"]) for m in listed] == [("tiny", "partial")]
    assert mdl("verify", "tiny").exit_code != 0


@pytest.mark.slow
def test_the_lock_pins_the_signature_and_a_locked_pull_checks_it(
    world: Path, hub: HubServer, tmp_path: Path
) -> None:
    _, public, signature = signed_repo(hub, tmp_path)
    write_catalog(world, public, 'include = ["*.safetensors"]')
    assert mdl("lock").exit_code == 0
    locked = (
        json.loads((world.parent / "catalog.lock").read_text())
        if (world.parent / "catalog.lock").read_text().lstrip().startswith("{")
        else None
    )
    text = (world.parent / "catalog.lock").read_text()
    assert "model.sig" in text and hashlib.sha256(signature).hexdigest() in text, (locked, text)
    result = mdl("pull", "tiny", "--locked")
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "models" / "tiny" / "model.sig").read_bytes() == signature


@pytest.mark.slow
def test_a_pull_of_an_unchanged_signed_model_does_not_verify_it_again(
    world: Path, hub: HubServer, tmp_path: Path
) -> None:
    """The verified statement is kept (by the signature's and the key's digests): a cron re-pull
    does not import model_signing again, and another key at the same path is verified afresh."""
    import os
    import subprocess
    import sys

    _, public, _ = signed_repo(hub, tmp_path)
    write_catalog(world, public)
    assert mdl("pull", "tiny").exit_code == 0
    probe = tmp_path / "imported"
    script = (
        f"import atexit, runpy, sys\natexit.register(lambda: open({str(probe)!r},"
        " 'w').write(str('model_signing' in sys.modules)))\nsys.argv = ['mdl', 'pull',"
        " 'tiny']\nrunpy.run_module('mdl', run_name='__main__')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], env=dict(os.environ), capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert probe.read_text() == "False"
    _, other = key_pair(tmp_path / "other")
    # another key at the same path: not the one that verified it
    public.write_bytes(other.read_bytes())
    again = mdl("pull", "tiny")
    assert again.exit_code == 6 and "tiny/model.sig" in again.stderr, again.stderr


@pytest.mark.slow
def test_the_lock_pins_a_signature_only_a_mirror_has(
    world: Path, hub: HubServer, tmp_path: Path
) -> None:
    private, public = key_pair(tmp_path / "keys")
    signature = official_sign(write_files(tmp_path / "upstream", FILES), private)
    hub.add_repo("org/tiny", dict(FILES))
    hub.cdn.add_file("/mirror/tiny/model.sig", signature)
    world.write_text(
        f'[settings]\nmirrors = ["{hub.cdn.url}/mirror/{{model}}/{{path}}"]\n\n'
        f'[models.tiny]\nrepo = "org/tiny"\n\n[models.tiny.signature]\nkey = "{public}"\n'
    )
    locked = mdl("lock")
    assert locked.exit_code == 0, locked.stderr
    assert hashlib.sha256(signature).hexdigest() in (world.parent / "catalog.lock").read_text()
    result = mdl("pull", "tiny", "--locked")
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "models" / "tiny" / "model.sig").read_bytes() == signature


@pytest.mark.slow
def test_a_dry_run_of_a_signed_model_fetches_nothing_and_lists_no_git_file(
    world: Path, hub: HubServer, tmp_path: Path
) -> None:
    _, public, _ = signed_repo(hub, tmp_path)
    write_catalog(world, public)
    hub.cdn.log.clear()
    result = mdl("pull", "tiny", "--dry-run", "--json")
    assert result.exit_code == 0, result.stderr
    paths = {f["path"] for f in json.loads(result.stdout)["files"]}
    assert paths == {*FILES, "model.sig"}
    assert hub.cdn.log.body_bytes() == 0 and not (tmp_path / "models" / "tiny").exists()


@pytest.mark.slow
def test_a_key_file_that_is_not_there_is_exit_2_before_anything_is_fetched(
    world: Path, hub: HubServer, tmp_path: Path
) -> None:
    signed_repo(hub, tmp_path)
    write_catalog(world, tmp_path / "keys" / "nobody.pub")
    hub.cdn.log.clear()
    result = mdl("pull", "tiny")
    assert result.exit_code == 2, result.stderr
    assert "nobody.pub" in result.stderr and "models.tiny.signature" in result.stderr
    assert hub.cdn.log.body_bytes() == 0 and not (tmp_path / "models" / "tiny").exists()
