"""mdl add --signed-by PUB.pem against the loopback Hub: the entry's signature table written (a new
entry, or one that is there without a SOURCE), every other byte kept, the key's path relative to the
catalog's folder when inside it, a bad key or another signer refused before the catalog is touched,
and catalog.lock renewed (model.sig is a file)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from runfixtures import mdl
from servers import HubServer, make_data
from signkeys import key_pair, official_sign

from mdl.catalog.load import lock_beside, parse_catalog
from mdl.lockfile.io import read_lock
from mdl.signing.statement import key_id

FILES = {
    "config.json": b'{"model_type": "bert"}\n',
    "model.safetensors": make_data(200_001, seed=4),
}

HAND = """\
# Models for the render farm.   (hand-written; mdl add must keep every line)

[settings]
connections = 4   # the NAS is slow

# smoke test
[models.tiny]
description = "Tiny BERT"   # for CI
repo = "org/tiny"  # public

# -- retired ------------------------------------------------------------------
# [models.old]
# repo = "org/old"
"""


@pytest.fixture
def project(hub: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """tmp_path/project/catalog.toml (HAND), the CLI pointed at it and run from tmp_path; org/tiny
    signed upstream by the key pair in tmp_path/project/keys (signer.pem, signer.pub)."""
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.setenv("MDL_DEST", str(tmp_path / "models"))
    monkeypatch.setenv("MDL_LOG_FILE", str(tmp_path / "mdl.log"))
    monkeypatch.chdir(tmp_path)
    catalog = tmp_path / "project" / "catalog.toml"
    catalog.parent.mkdir()
    catalog.write_text(HAND)
    monkeypatch.setenv("MDL_CATALOG", str(catalog))
    private, _ = key_pair(catalog.parent / "keys")
    upstream = tmp_path / "upstream"
    upstream.mkdir()
    for path, data in FILES.items():
        (upstream / path).write_bytes(data)
    hub.add_repo("org/tiny", {**FILES, "model.sig": official_sign(upstream, private)})
    return catalog


def signature_of(catalog: Path, name: str) -> tuple[Path | None, str]:
    """The model's trust as mdl reads the catalog back: its key's path (resolved) and its
    signature file.
    """
    trust = parse_catalog(catalog.read_text(), path=catalog).get(name).signature
    assert trust is not None
    return trust.key, trust.file


@pytest.mark.slow
def test_a_new_entry_is_written_with_its_signer_and_pulls_verified(
    project: Path, tmp_path: Path
) -> None:
    # relative to the cwd
    result = mdl("add", "bert", "hf://org/tiny", "--signed-by", "project/keys/signer.pub")
    assert result.exit_code == 0, result.stderr
    block = '\n[models.bert]\nrepo = "org/tiny"\nsignature = { key = "keys/signer.pub" }\n'
    assert project.read_text() == HAND.replace(
        "public\n\n# -- retired", "public\n" + block + "\n# -- retired"
    )
    assert signature_of(project, "bert") == (project.parent / "keys" / "signer.pub", "model.sig")
    pulled = mdl("pull", "bert")
    assert pulled.exit_code == 0, pulled.stderr
    assert (tmp_path / "models" / "bert" / "model.sig").exists()
    shown = json.loads(mdl("show", "bert", "--json").stdout)["models"][0]
    assert shown["signature"]["verified"] is True
    assert key_id(project.parent / "keys" / "signer.pub")[:16] in shown["signature"]["by"]


@pytest.mark.slow
def test_an_entry_that_is_there_gets_only_its_signature_and_asks_nothing(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # no Hub: a question upstream would fail (exit 5)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    result = mdl(
        "add", "tiny", "--signed-by", str(project.parent / "keys" / "signer.pub"), "--json"
    )
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["action"] == "updated" and doc["lock"] is None
    assert doc["entry"]["signature"] == {"key": "keys/signer.pub"}
    # after the entry's last value, every comment and quote kept; the commented-out model stays
    # where it was
    line = 'repo = "org/tiny"  # public\nsignature = { key = "keys/signer.pub" }\n'
    assert project.read_text() == HAND.replace('repo = "org/tiny"  # public\n', line)
    assert signature_of(project, "tiny") == (project.parent / "keys" / "signer.pub", "model.sig")
    listed = mdl("list")
    assert listed.exit_code == 0, listed.stderr
    # the same file: nothing to do
    again = mdl("add", "tiny", "--signed-by", "project/./keys/../keys/signer.pub")
    assert again.exit_code == 0 and "nothing changed" in again.stderr


@pytest.mark.slow
def test_a_key_outside_the_catalogs_folder_is_written_absolute(
    project: Path, tmp_path: Path
) -> None:
    _, elsewhere = key_pair(tmp_path / "shared" / "keys", "team")
    result = mdl("add", "tiny", "--signed-by", "shared/keys/team.pub")
    assert result.exit_code == 0, result.stderr
    assert f'signature = {{ key = "{elsewhere}" }}\n' in project.read_text()
    assert Path(elsewhere).is_absolute()
    assert signature_of(project, "tiny")[0] == elsewhere


@pytest.mark.slow
@pytest.mark.parametrize("bad", ["missing.pub", "garbage.pub", "signer.pem"])
def test_a_bad_key_is_exit_2_naming_it_and_the_catalog_is_untouched(
    project: Path, tmp_path: Path, bad: str
) -> None:
    (project.parent / "keys" / "garbage.pub").write_bytes(
        b"-----BEGIN PUBLIC KEY-----\nnot a key\n"
    )
    key = project.parent / "keys" / bad  # not there; not PEM; a private key, not a public one
    before = project.read_bytes()
    for args in (["tiny"], ["new", "hf://org/tiny"]):
        result = mdl("add", *args, "--signed-by", str(key))
        assert result.exit_code == 2, result.stderr
        assert str(key) in result.stderr and "Traceback" not in result.stderr
        assert project.read_bytes() == before
    project.unlink()
    assert mdl("add", "new", "hf://org/tiny", "--signed-by", str(key)).exit_code == 2
    assert not project.exists()  # no catalog is created for it


@pytest.mark.slow
def test_another_signer_is_replaced_only_with_force_keeping_the_tables_lines(
    project: Path, tmp_path: Path
) -> None:
    _, other = key_pair(tmp_path / "other", "bob")
    text = HAND.replace(
        "\n# -- retired",
        "# the signer, as the vendor says\n[models.tiny.signature]   # keyless\n"
        'identity = "ci@example.com"   # their CI\nissuer = "https://accounts.example.com"\n'
        'file = "sigs/model.sig"  # where they ship it\n\n# -- retired',
    )
    project.write_text(text)
    refused = mdl("add", "tiny", "--signed-by", str(other))
    assert refused.exit_code == 2
    assert (
        "models.tiny.signature already trusts ci@example.com (https://accounts.example.com)"
        in refused.stderr
    )
    assert "--force" in refused.stderr
    assert project.read_text() == text
    result = mdl("add", "tiny", "--signed-by", str(other), "--force")
    assert result.exit_code == 0, result.stderr
    # the header, its comments and file stay; the signer's lines become the key
    replaced = text.replace(
        'identity = "ci@example.com"   # their CI\nissuer = "https://accounts.example.com"\n',
        f'key = "{other}"\n',
    )
    assert project.read_text() == replaced
    assert signature_of(project, "tiny") == (other, "sigs/model.sig")
    mine = project.parent / "keys" / "signer.pub"
    again = mdl("add", "tiny", "--signed-by", str(mine))
    assert again.exit_code == 2 and f"already trusts the key {other}" in again.stderr
    assert mdl("add", "tiny", "--signed-by", str(mine), "--force").exit_code == 0
    assert project.read_text() == replaced.replace(f'key = "{other}"', 'key = "keys/signer.pub"')


@pytest.mark.slow
def test_the_lock_is_renewed_as_for_any_change_to_what_the_entry_fetches(project: Path) -> None:
    # one file of the signed repo
    assert mdl("add", "one", "hf://org/tiny/config.json").exit_code == 0
    assert mdl("lock").exit_code == 0
    lock_file = lock_beside(project)
    locked = read_lock(lock_file)
    assert locked is not None and [f.path for f in locked.models["one"].files] == ["config.json"]
    result = mdl("add", "one", "--signed-by", "project/keys/signer.pub")
    assert result.exit_code == 0, result.stderr
    assert f"updated {lock_file}" in result.stderr
    after = read_lock(lock_file)
    assert after is not None and [f.path for f in after.models["one"].files] == [
        "config.json",
        "model.sig",
    ]
    assert after.models["tiny"] == locked.models["tiny"]  # the other entries as they were
    assert mdl("lock", "--check").exit_code == 0
    pulled = mdl("pull", "one", "--frozen")
    assert pulled.exit_code == 0, pulled.stderr


@pytest.mark.slow
def test_without_the_check_the_lock_is_left_stale_and_said(project: Path) -> None:
    assert mdl("lock").exit_code == 0
    lock_file = lock_beside(project)
    before = lock_file.read_bytes()
    result = mdl("add", "tiny", "--signed-by", "project/keys/signer.pub", "--no-check")
    assert result.exit_code == 0, result.stderr
    assert "was not updated for tiny (--no-check); run 'mdl lock tiny'" in result.stderr
    assert lock_file.read_bytes() == before
    assert mdl("lock", "--check").exit_code == 2  # stale: the entry now fetches its model.sig too
    assert mdl("add", "tiny", "--description", "only words", "--no-check").exit_code == 0
    assert lock_file.read_bytes() == before  # a description alone still leaves the lock as it is
