"""A folder another user made first where anyone may write (a model's folder in a 1777
destination, ``.mdl`` in ``/tmp``) is refused, as the kernel's ``protected_regular`` refuses such a
file: its maker may replace what mdl installs in it, keeping size and time, and a pull, ``verify
--quick`` and the probe would vouch for it by its record. Nothing is installed in it, the refusal
names it (exit 2), and once it is gone the next run installs the file."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from runfixtures import mdl
from servers import CdnServer, HubServer

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="another user's folder needs root")
COTENANT = 4242


def _shared(tmp_path: Path) -> Path:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)  # as /tmp
    return shared


def test_a_pull_installs_nothing_in_a_model_folder_a_cotenant_made_first(
    cdn: CdnServer, tmp_path: Path
) -> None:
    data = os.urandom(3 << 20)
    url, sha256 = cdn.add_file("/w.bin", data), hashlib.sha256(data).hexdigest()
    catalog = tmp_path / "catalog.toml"
    catalog.write_text(f'[models.m]\nfiles = [{{ url = "{url}", sha256 = "{sha256}" }}]\n')
    shared = _shared(tmp_path)
    (shared / "m").mkdir()
    os.chown(shared / "m", COTENANT, COTENANT)
    pull = ("pull", "m", "--catalog", str(catalog), "--dest", str(shared))
    result = mdl(*pull)
    assert result.exit_code == 2, result.stderr
    assert f"{shared / 'm'} is a folder uid {COTENANT} made where anyone may write" in result.stderr
    assert list((shared / "m").iterdir()) == []
    quick = mdl("verify", "m", "--quick", "--catalog", str(catalog), "--dest", str(shared))
    assert quick.exit_code == 2, quick.stderr
    assert f"{shared / 'm'} is a folder uid {COTENANT} made where" in quick.stderr
    # the co-tenant's folder gone, the next pull installs the file
    (shared / "m").rmdir()
    again = mdl(*pull)
    assert again.exit_code == 0, again.stderr
    assert (shared / "m" / "w.bin").read_bytes() == data


def test_a_get_keeps_no_state_in_a_state_folder_a_cotenant_made_first(
    cdn: CdnServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``mdl get URL`` in ``/tmp`` keeps its state in ``./.mdl``: one a co-tenant made first is
    refused, nothing kept in it or beside it."""
    url = cdn.add_file("/w.bin", b"model bytes")
    shared = _shared(tmp_path)
    (shared / ".mdl").mkdir()
    os.chown(shared / ".mdl", COTENANT, COTENANT)
    monkeypatch.chdir(shared)
    result = mdl("get", url)
    assert result.exit_code == 2, result.stderr
    assert f"{shared / '.mdl'} is a folder uid {COTENANT} made where" in result.stderr
    assert not (shared / "w.bin").exists()
    assert [p.name for p in shared.iterdir()] in ([], [".mdl"])  # (its empty folder, or none)


def test_what_is_in_a_folder_a_cotenant_took_is_vouched_for_by_no_command(
    cdn: CdnServer, tmp_path: Path
) -> None:
    """A model installed before its folder became another user's (an earlier mdl installed into a
    folder a co-tenant made first; a ``chown``): no command calls its files ready or skips them by
    their record any more; each names the folder (exit 2)."""
    data = os.urandom(4096)
    url, sha256 = cdn.add_file("/w.bin", data), hashlib.sha256(data).hexdigest()
    catalog = tmp_path / "catalog.toml"
    catalog.write_text(f'[models.m]\nfiles = [{{ url = "{url}", sha256 = "{sha256}" }}]\n')
    shared = _shared(tmp_path)
    where = ("--catalog", str(catalog), "--dest", str(shared))
    assert mdl("pull", "m", *where).exit_code == 0
    os.chown(shared / "m", COTENANT, COTENANT)
    for command in (("pull", "m"), ("verify", "m", "--quick"), ("verify", "m"), ("list",)):
        result = mdl(*command, *where)
        assert result.exit_code == 2, (command, result.stderr)
        assert f"{shared / 'm'} is a folder uid {COTENANT} made where" in result.stderr, command
        assert "installed" not in result.stdout, command


def test_a_destination_a_cotenant_made_first_is_refused(cdn: CdnServer, tmp_path: Path) -> None:
    """``--dest /tmp/models`` names a folder; whoever came first made it, and may swap anything in
    it (its own folder): the destination is held to the same rule as the folders below it."""
    url = cdn.add_file("/w.bin", b"model bytes")
    catalog = tmp_path / "catalog.toml"
    catalog.write_text(f'[models.m]\nfiles = [{{ url = "{url}" }}]\n')
    dest = _shared(tmp_path) / "models"
    dest.mkdir(mode=0o777)
    dest.chmod(0o777)
    os.chown(dest, COTENANT, COTENANT)
    where = ("--catalog", str(catalog), "--dest", str(dest))
    for command in (("pull", "m"), ("verify", "m", "--quick"), ("list",)):
        result = mdl(*command, *where)
        assert result.exit_code == 2, (command, result.stderr)
        assert f"{dest} is a folder uid {COTENANT} made where" in result.stderr, command
    assert list(dest.iterdir()) == []


def test_a_shared_hugging_face_caches_repo_folder_a_cotenant_made_is_refused(
    hub: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 1777 cache (huggingface_hub's shared-cache recipe, opened to all): the co-tenant's
    ``models--org--tiny`` is refused; a group's shared cache (2775) trusts its group."""
    hub.add_repo("org/tiny", {"config.json": b"{}", "model.safetensors": os.urandom(4096)})
    (tmp_path / "catalog.toml").write_text('[models.tiny]\nrepo = "org/tiny"\n')
    cache = _shared(tmp_path) / "hub"
    cache.mkdir()
    cache.chmod(0o1777)
    (cache / "models--org--tiny").mkdir()
    os.chown(cache / "models--org--tiny", COTENANT, COTENANT)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    refused = mdl("pull", "tiny", "--layout", "hf-cache")
    assert refused.exit_code == 2, refused.stderr
    assert f"{cache / 'models--org--tiny'} is a folder uid {COTENANT} made where" in refused.stderr
    assert list((cache / "models--org--tiny").iterdir()) == []
    cache.chmod(0o2775)  # a group's share
    pulled = mdl("pull", "tiny", "--layout", "hf-cache")
    assert pulled.exit_code == 0, pulled.stderr
