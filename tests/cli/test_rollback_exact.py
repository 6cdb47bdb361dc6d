"""Issue 86: a rollback leaves exactly the version it names, judged against the lock it is given.

- A pull of a lock leaves the model's folder as that version: the files mdl installed for another
  version are removed (as ``mdl prune`` removes them: only what mdl recorded, unchanged since), the
  files it never installed are named and left, and both are said (stderr, ``--json``'s ``extra``).
  The same for a plain ``mdl pull`` once ``catalog.lock`` pins a version with fewer files.
- A lock given by ``--lock`` (or ``$MDL_LOCK_FILE``) is the truth for that command: ``--locked`` does
  not judge it stale against the catalog checked out now (a URL model's weekly folders, a changed
  entry), and its pins, URLs included, are used as written.
- ``mdl lock --check`` takes ``--lock`` and honours ``$MDL_LOCK_FILE``.
- A catalog that gained a signer after a version was locked: that version's lock installs it signed
  when its manifest on the bucket names its signature, else is refused, exit 6, cleanly.

Real stores (a shared folder, the moto server), the loopback CDN; the origin is down throughout."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from releases import (
    CATALOG,
    COMMITS,
    MODEL,
    RELEASES,
    locked,
    manifest,
    object_uri,
    publish,
    put,
    sha,
    write_locks,
    writer_of,
)
from runfixtures import mdl, use_catalog
from s3server import S3, s3, s3_server  # noqa: F401
from servers import CdnServer
from signkeys import key_pair

from mdl.buckets import versions
from mdl.lockfile.io import write_lock
from mdl.lockfile.model import Lock, LockedFile
from mdl.signing.library import sign_digests

DOWN = "http://127.0.0.1:9"  # the origin: nothing listens


def deploy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, prefix: str, extra: str = "") -> Path:
    """A node's checkout at v3: the catalog (its mirror the published prefix; ``extra`` after the
    model's entry), catalog.lock at v3 and the kept locks in releases/; v1..v3 published. Its model
    folder."""
    project = tmp_path / "project"
    project.mkdir()
    use_catalog(project, monkeypatch, None, endpoint=DOWN)
    monkeypatch.chdir(project)
    write_locks(project)
    mirror = versions.template_of(prefix)
    (project / "catalog.toml").write_text(f'[settings]\nmirrors = ["{mirror}"]\n\n{CATALOG}{extra}')
    publish(prefix, tmp_path / "scratch", "v1", "v2", "v3")
    return project / "models" / MODEL


@pytest.fixture
def node(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, prefix: str) -> Path:
    return deploy(tmp_path, monkeypatch, prefix)


@pytest.fixture
def folder_node(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return deploy(tmp_path, monkeypatch, f"file://{tmp_path}/shared/hub")


def tree(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def sums(release: str) -> dict[str, str]:
    return {path: sha(data) for path, data in RELEASES[release].items()}


def test_a_rollback_leaves_exactly_the_version_it_names(node: Path) -> None:
    """v3, then v1 by its kept lock: none of v3's shards stays beside v1's; a file the user put
    there stays and is said; the removals are said on stderr and in --json."""
    assert mdl("pull", "--frozen", "--all").exit_code == 0
    assert tree(node) == sums("v3")
    (node / "notes.txt").write_text("the user's own\n")
    back = mdl("pull", "--all", "--frozen", "--lock", "releases/v1.lock", "--json")
    assert back.exit_code == 0, back.stderr
    assert tree(node) == {**sums("v1"), "notes.txt": sha(b"the user's own\n")}
    extra = {e["path"]: e for e in json.loads(back.stdout)["extra"]}
    gone = set(sums("v3")) - set(sums("v1"))
    assert {p for p, e in extra.items() if e["action"] == "removed"} == gone
    assert all("not in v1.lock" in extra[p]["reason"] for p in gone)
    assert extra["notes.txt"]["action"] == "kept"
    assert "not installed by mdl" in extra["notes.txt"]["reason"]
    assert "notes.txt: left in its folder" in back.stderr
    # said in people's words too; the version is the lock's, ready by its probe
    again = mdl("pull", "--all", "--frozen", "--lock", "releases/v3.lock")
    assert again.exit_code == 0, again.stderr
    assert tree(node) == {**sums("v3"), "notes.txt": sha(b"the user's own\n")}
    for path in set(sums("v1")) - set(sums("v3")):
        assert f"llm: removed {path}: not in v3.lock" in again.stderr
    probe = mdl("verify", "--all", "--quick", "--locked", "--lock", "releases/v3.lock")
    assert probe.exit_code == 0, probe.stderr


def test_a_newer_versions_extra_config_goes_and_a_changed_file_stays(
    folder_node: Path, tmp_path: Path
) -> None:
    """The issue's example: v3 adds generation_config.json; back to v2 it goes (a loader reading
    every JSON there would run v2's weights with v3's settings). A file of v3 the user changed since
    mdl wrote it is not mdl's to remove: it stays, said."""
    node = folder_node
    prefix = f"file://{tmp_path}/shared/hub"
    config = b'{"temperature": 0.7}\n'
    put(
        writer_of(prefix),
        object_uri(prefix, config),
        config,
        prefix + "/",
        side="hub",
        scratch=tmp_path / "scratch",
    )
    v3 = locked("v3").models[MODEL]
    source = f"hf://org/llm@{COMMITS['v3']}/generation_config.json"
    files = (*v3.files, LockedFile("generation_config.json", len(config), sha(config), source))
    v3g = Lock({MODEL: type(v3)(v3.name, v3.fingerprint, v3.revision, v3.commit, files)})
    write_lock(Path("catalog.lock"), v3g)
    assert mdl("pull", "--frozen", "--all").exit_code == 0
    assert (node / "generation_config.json").read_bytes() == config
    dry = mdl("pull", "--all", "--frozen", "--lock", "releases/v2.lock", "--dry-run")
    assert dry.exit_code == 0 and "would remove generation_config.json" in dry.stderr
    assert (node / "generation_config.json").is_file(), "a dry run removes nothing"
    back = mdl("pull", "--all", "--frozen", "--lock", "releases/v2.lock")
    assert back.exit_code == 0, back.stderr
    assert tree(node) == sums("v2")
    # v3 with its config again; the user edits it; back to v2: the edit is theirs
    assert mdl("pull", "--frozen", "--all").exit_code == 0
    (node / "generation_config.json").write_bytes(b'{"temperature": 0.1}\n')
    kept = mdl("pull", "--all", "--frozen", "--lock", "releases/v2.lock")
    assert kept.exit_code == 0, kept.stderr
    assert (node / "generation_config.json").read_bytes() == b'{"temperature": 0.1}\n'
    assert "generation_config.json: left in its folder" in kept.stderr
    assert "changed since mdl wrote it" in kept.stderr
    assert not [p for p in node.iterdir() if p.name.endswith(".mdl-prune")], "nothing set aside"


def test_a_plain_pull_after_the_lock_moved_to_fewer_files_leaves_that_version(
    folder_node: Path,
) -> None:
    """``mdl pull`` (no --frozen) of a catalog.lock that now pins a version without some files:
    the same stage as a rollback's."""
    assert mdl("pull", "--all").exit_code == 0
    assert tree(folder_node) == sums("v3")
    write_lock(Path("catalog.lock"), locked("v1"))  # what `lock --upgrade` would leave
    moved = mdl("pull", "--all")
    assert moved.exit_code == 0, moved.stderr
    assert tree(folder_node) == sums("v1")


def test_a_model_resolved_fresh_keeps_its_folder(folder_node: Path) -> None:
    """A model no lock pins (its entry changed, in auto mode) is resolved from upstream: nothing is
    taken out of its folder by a list no lock names (here the origin is down: the installed
    version is kept, said)."""
    assert mdl("pull", "--all").exit_code == 0
    text = Path("catalog.toml").read_text()
    Path("catalog.toml").write_text(text + 'include = ["*.safetensors"]\n')
    fresh = mdl("pull", "--all")
    assert "keeping commit" in fresh.stderr and "removed" not in fresh.stderr, fresh.stderr
    assert tree(folder_node) == sums("v3")


def test_the_probe_after_a_rollback_judges_against_the_lock_given(
    folder_node: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The catalog changed since v2 was locked (here: its entry's files filter): --locked with
    v2's lock given pulls and probes v2, never "v2.lock is out of date"."""
    text = Path("catalog.toml").read_text()
    Path("catalog.toml").write_text(text + 'include = ["*.json", "*.safetensors"]\n')
    back = mdl("pull", "--all", "--locked", "--lock", "releases/v2.lock")
    assert back.exit_code == 0, back.stderr
    assert tree(folder_node) == sums("v2")
    probe = mdl("verify", "--all", "--quick", "--locked", "--lock", "releases/v2.lock")
    assert probe.exit_code == 0, probe.stderr
    assert "out of date" not in probe.stderr
    monkeypatch.setenv("MDL_LOCK_FILE", "releases/v2.lock")
    assert mdl("verify", "--all", "--quick", "--locked").exit_code == 0
    # catalog.lock itself is still judged against the catalog: stale, exit 2
    monkeypatch.delenv("MDL_LOCK_FILE")
    stale = mdl("verify", "--all", "--quick", "--locked")
    assert stale.exit_code == 2 and "out of date" in stale.stderr


def test_a_url_models_rollback_fetches_the_urls_its_lock_pins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cdn: CdnServer
) -> None:
    """A model of direct URLs whose folder moves each week (/llm/v2/, /llm/v3/): v2's lock, given
    on a checkout at v3, pulls v2's URL (not the catalog's v3 URL at the same path) and its probe
    says ready."""
    data = {"v2": b"weights of v2\n" * 100, "v3": b"weights of v3\n" * 120}
    urls = {v: cdn.add_file(f"/llm/{v}/w.bin", d) for v, d in data.items()}
    project = tmp_path / "project"
    project.mkdir()
    catalog = use_catalog(project, monkeypatch, None, endpoint=DOWN)
    monkeypatch.chdir(project)
    entry = '[models.llm]\nfiles = [{{ url = "{}" }}]\n'
    catalog.write_text(entry.format(urls["v2"]))
    assert mdl("lock").exit_code == 0
    Path("releases").mkdir()
    Path("releases/v2.lock").write_bytes(Path("catalog.lock").read_bytes())
    catalog.write_text(entry.format(urls["v3"]))
    assert mdl("lock").exit_code == 0
    assert mdl("pull", "--all", "--locked").exit_code == 0
    node = project / "models" / "llm"
    assert (node / "w.bin").read_bytes() == data["v3"]
    back = mdl("pull", "--all", "--locked", "--lock", "releases/v2.lock")
    assert back.exit_code == 0, back.stderr
    assert (node / "w.bin").read_bytes() == data["v2"]
    probe = mdl("verify", "--all", "--quick", "--locked", "--lock", "releases/v2.lock")
    assert probe.exit_code == 0, probe.stderr


def test_lock_check_takes_the_lock_given(
    folder_node: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``lock --check --lock FILE`` and ``$MDL_LOCK_FILE`` check that lock, not catalog.lock; one
    that is not there is exit 2 naming it, as for pull and verify."""
    assert "v2.lock is up to date" in mdl("lock", "--check", "--lock", "releases/v2.lock").stderr
    text = Path("catalog.toml").read_text()
    Path("catalog.toml").write_text(text + 'include = ["*.json", "*.safetensors"]\n')
    stale = mdl("lock", "--check", "--lock", "releases/v1.lock", "--json")
    assert stale.exit_code == 2
    doc = json.loads(stale.stdout)
    assert doc["lock"].endswith("v1.lock") and doc["stale"] == [MODEL]
    monkeypatch.setenv("MDL_LOCK_FILE", "releases/v1.lock")
    from_env = mdl("lock", "--check")
    assert from_env.exit_code == 2 and "v1.lock is stale for: llm" in from_env.stderr
    monkeypatch.setenv("MDL_LOCK_FILE", "releases/nope.lock")
    missing = mdl("lock", "--check")
    assert missing.exit_code == 2 and "$MDL_LOCK_FILE: releases/nope.lock: no such file" in (
        missing.stderr
    )


def signed_manifest(release: str, signature: bytes) -> bytes:
    """``release``'s manifest naming ``signature``, as ``publish --sign`` writes it."""
    found = manifest(release)
    named = versions.ManifestFile("model.sig", len(signature), sha(signature))
    return versions.Manifest(
        found.model, found.id, found.files, found.revision, found.commit, signature=named
    ).to_bytes()


def sign(release: str, private: Path) -> bytes:
    """A model.sig over ``release``'s files."""
    return sign_digests(sums(release), private_key=private, model_name=MODEL)


def publish_signed(prefix: str, scratch: Path, release: str, signature: bytes) -> None:
    """The signature stored by content and the release's manifest now naming it."""
    writer, root = writer_of(prefix), prefix + "/"
    put(writer, object_uri(prefix, signature), signature, root, side="", scratch=scratch)
    uri = versions.manifest_uri(prefix, MODEL, manifest(release).id)
    writer.delete(uri)
    put(writer, uri, signed_manifest(release, signature), root, side="", scratch=scratch)


def test_a_rollback_once_the_catalog_gained_a_signer(
    node: Path, tmp_path: Path, prefix: str
) -> None:
    """v1 and v2 were locked before the catalog named a signer. v2 was never signed: its rollback
    is exit 6, cleanly, nothing of it installed. v1 was signed at publish (its manifest names its
    signature): its lock installs it, signed, by the signature the manifest names. A manifest naming
    a signature of other files is refused by name."""
    private, public = key_pair(tmp_path / "keys")
    assert mdl("pull", "--frozen", "--all").exit_code == 0
    text = Path("catalog.toml").read_text()
    Path("catalog.toml").write_text(f'{text}\n[models.llm.signature]\nkey = "{public}"\n')
    unsigned = mdl("pull", "--all", "--frozen", "--lock", "releases/v2.lock")
    assert unsigned.exit_code == 6, unsigned.stderr
    assert "v2.lock pins no model.sig" in unsigned.stderr
    assert "nothing of it is installed unsigned" in unsigned.stderr
    assert "internal error" not in unsigned.stderr and "Traceback" not in unsigned.stderr
    assert "[signature]" not in unsigned.stderr, "a hint never says to turn verification off"
    assert tree(node) == sums("v3"), "nothing moved"
    publish_signed(prefix, tmp_path / "scratch", "v1", sign("v1", private))
    back = mdl("pull", "--all", "--frozen", "--lock", "releases/v1.lock", "--json")
    assert back.exit_code == 0, back.stderr
    assert json.loads(back.stdout)["signatures"][MODEL]["verified"] is True
    installed = tree(node)
    assert installed.pop("model.sig", None) is not None, "its signature installed with it"
    assert installed == sums("v1"), "v1 alone, signed: none of v3's shards beside it"
    for probe in (["--quick", "--locked"], ["--frozen"]):  # the probe, and a re-hash
        ready = mdl("verify", "--all", *probe, "--lock", "releases/v1.lock")
        assert ready.exit_code == 0, ready.stderr
    (node / "model.sig").unlink()
    gone = mdl("verify", "--all", "--quick", "--locked", "--lock", "releases/v1.lock")
    assert gone.exit_code != 0 and "model.sig" in gone.stderr, gone.stderr
    assert mdl("pull", "--all", "--frozen", "--lock", "releases/v1.lock").exit_code == 0
    # v2's manifest naming v1's signature: not v2's files, refused by name
    publish_signed(prefix, tmp_path / "scratch", "v2", sign("v1", private))
    planted = mdl("pull", "--all", "--frozen", "--lock", "releases/v2.lock")
    assert planted.exit_code == 6, planted.stderr
    assert "not covered" in planted.stderr or "does not cover" in planted.stderr, planted.stderr
    assert "internal error" not in planted.stderr


def test_the_catalogs_own_lock_named_by_lock_is_still_judged(folder_node: Path) -> None:
    """``--lock catalog.lock`` is the catalog's own lock: still judged stale against it."""
    text = Path("catalog.toml").read_text()
    Path("catalog.toml").write_text(text + 'include = ["*.json", "*.safetensors"]\n')
    stale = mdl("verify", "--all", "--quick", "--locked", "--lock", "catalog.lock")
    assert stale.exit_code == 2 and "out of date" in stale.stderr, stale.stderr
