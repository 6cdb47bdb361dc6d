"""`mdl get` stands alone: a plain URL needs no catalog (a broken ./catalog.toml in the folder never
stops it, one named with --catalog or $MDL_CATALOG is still read), and offline (HF_HUB_OFFLINE) it
asks no server and names the URL it could not fetch."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from runfixtures import mdl
from servers import CdnServer, make_data
from terminal import unstamped

DATA = make_data(200_000, seed=50)
BROKEN = "[settings\nconnections = 4\n"  # a TOML syntax error on line 1


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MDL_LOG_FILE", str(tmp_path / "mdl.log"))
    return tmp_path


def errors(stderr: str) -> list[str]:
    return [line for line in unstamped(stderr) if line.startswith("mdl: error:")]


def test_a_broken_catalog_in_the_folder_does_not_stop_a_plain_url_get(
    cdn: CdnServer, here: Path
) -> None:
    (here / "catalog.toml").write_text(BROKEN)
    url = cdn.add_file("/w/model.bin", DATA)
    result = mdl("get", url, "-d", "out")
    assert result.exit_code == 0, result.stderr
    assert (here / "out" / "model.bin").read_bytes() == DATA
    assert "catalog" not in result.stderr


def test_nor_one_in_the_user_config_dir(
    cdn: CdnServer, here: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = here / "config"
    (config / "mdl").mkdir(parents=True)
    (config / "mdl" / "catalog.toml").write_text(BROKEN)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(config))
    assert mdl("list").exit_code == 2, "the catalog is broken for the commands that read it"
    result = mdl("get", cdn.add_file("/w/model.bin", DATA))
    assert result.exit_code == 0, result.stderr
    assert (here / "model.bin").read_bytes() == DATA


@pytest.mark.parametrize("named", ["--catalog", "MDL_CATALOG"])
def test_a_catalog_named_on_purpose_is_still_read(cdn: CdnServer, here: Path, named: str) -> None:
    """Its [settings] count (and a broken one is said, exit 2), whichever way it was named."""
    (here / "named.toml").write_text(BROKEN)
    url = cdn.add_file("/w/model.bin", DATA)
    given = ("--catalog", "named.toml") if named == "--catalog" else ()
    env = {"MDL_CATALOG": "named.toml"} if named == "MDL_CATALOG" else None
    broken = mdl("get", url, *given, env=env)
    assert broken.exit_code == 2 and "named.toml:1" in broken.stderr, broken.stderr
    assert not cdn.log.records(), "refused before anything was asked"
    # only a catalog read has it
    (here / "named.toml").write_text('[settings]\nconnections = "many"\n')
    bad = mdl("get", url, *given, env=env)
    assert bad.exit_code == 2 and "connections" in bad.stderr, bad.stderr
    (here / "named.toml").write_text("[settings]\nconnections = 3\n")
    assert mdl("get", url, *given, env=env).exit_code == 0
    assert (here / "model.bin").read_bytes() == DATA


def test_offline_a_url_is_never_asked_and_its_error_names_it(
    cdn: CdnServer, here: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    url = cdn.add_file("/w/f.bin", DATA)
    secret = "deadbeefsecret"
    signed = f"{url}?X-Amz-Signature={secret}"
    result = mdl("get", signed, "-d", "out")
    assert result.exit_code == 5, result.stderr
    assert not cdn.log.records(), "HF_HUB_OFFLINE: no request to any server"
    shown = f"{url}?REDACTED"
    assert errors(result.stderr) == [
        f"mdl: error: {shown}: HF_HUB_OFFLINE is set and the file must be fetched"
    ]
    assert secret not in result.stderr
    doc = json.loads(mdl("get", signed, "-d", "out", "--json").stdout)
    (file,) = doc["files"]
    assert file["error"].startswith(f"{shown}: "), file
    assert not (here / "out" / "f.bin").exists()
