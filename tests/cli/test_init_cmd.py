"""mdl init: the starter catalog written where mdl looks for one, so that the README's Quick start
works from any folder after `pip install`; and a broken catalog's every problem in one run, on
stderr and in --json."""

from __future__ import annotations

import fnmatch
import json
import os
import stat
import tomllib
from pathlib import Path

import pytest
from runfixtures import mdl
from servers import HubServer
from terminal import unstamped

import mdl as api
from mdl.catalog.edit import starter_catalog
from mdl.errors import UsageError

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "catalog.toml"


@pytest.fixture
def home(isolated_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty working folder (no catalog anywhere: HOME and XDG are isolated), downloads and
    log in tmp_path.
    """
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("MDL_DEST", str(tmp_path / "models"))
    monkeypatch.setenv("MDL_LOG_FILE", str(tmp_path / "mdl.log"))
    return isolated_env


def user_catalog(home: Path) -> Path:
    # XDG_CONFIG_HOME (conftest) + mdl/catalog.toml
    return home / ".config" / "mdl" / "catalog.toml"


def test_the_starter_is_the_repo_catalog_and_ships_as_package_data() -> None:
    """One text: the repo's catalog.toml and mdl/catalog/starter.toml may not drift, and pip
    install ships it.
    """
    assert starter_catalog() == SHIPPED.read_text(encoding="utf-8")
    assert (ROOT / "mdl" / "catalog" / "starter.toml").read_bytes() == SHIPPED.read_bytes()
    package_data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"
    ]["mdl"]
    assert any(fnmatch.fnmatch("catalog/starter.toml", pattern) for pattern in package_data)
    assert "tiny-bert" in tomllib.loads(starter_catalog())["models"]


def test_init_then_the_quick_start_works_from_any_folder(
    home: Path, tmp_path: Path, hub: HubServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub.add_repo(
        "hf-internal-testing/tiny-random-bert", {"config.json": b"{}", "vocab.txt": b"[PAD]\n" * 50}
    )
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    before = mdl("pull", "tiny-bert")
    assert before.exit_code == 2
    assert "no catalog found" in before.stderr and "hint: run 'mdl init'" in before.stderr

    result = mdl("init")
    assert result.exit_code == 0, result.stderr
    written = user_catalog(home)
    assert result.stdout == f"{written}\n"  # the path, as data
    assert written.read_text(encoding="utf-8") == SHIPPED.read_text(encoding="utf-8")
    assert "from any folder without a catalog.toml of its own" in result.stderr
    assert not (Path.cwd() / "catalog.toml").exists()

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    listed = mdl("list", "--json")
    assert listed.exit_code == 0, listed.stderr
    assert "tiny-bert" in [m["name"] for m in json.loads(listed.stdout)["models"]]
    dry = mdl("pull", "tiny-bert", "--dry-run")
    assert dry.exit_code == 0, dry.stderr
    pulled = mdl("pull", "tiny-bert", "--no-progress")
    assert pulled.exit_code == 0, pulled.stderr
    folder = Path(pulled.stdout.strip())
    assert folder == tmp_path / "models" / "tiny-bert"
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "vocab.txt"]


def test_init_never_overwrites_unless_forced(home: Path) -> None:
    written = user_catalog(home)
    written.parent.mkdir(parents=True)
    written.write_text("# mine\n")
    again = mdl("init")
    assert again.exit_code == 2
    assert f"{written} already exists" in again.stderr and "--force" in again.stderr
    assert again.stdout == ""
    assert written.read_text() == "# mine\n"
    doc = json.loads(mdl("init", "--json").stdout)
    assert (
        doc["ok"] is False and doc["error"]["code"] == 2 and str(written) in doc["error"]["message"]
    )
    os.chmod(written, 0o600)
    forced = mdl("init", "--force", "--json")
    assert forced.exit_code == 0, forced.stderr
    assert json.loads(forced.stdout) == {
        "ok": True,
        "catalog": str(written),
        "replaced": True,
        "empty": False,
    }
    assert written.read_text(encoding="utf-8") == starter_catalog()
    assert written.stat().st_mode & 0o777 == 0o600  # a replaced catalog keeps its permissions


def test_init_writes_where_catalog_or_mdl_catalog_says(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    nested = tmp_path / "deploy" / "gpu" / "models.toml"
    result = mdl("init", "--catalog", str(nested), "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout) == {
        "ok": True,
        "catalog": str(nested),
        "replaced": False,
        "empty": False,
    }
    assert nested.read_text(encoding="utf-8") == starter_catalog()  # its folders created
    assert not user_catalog(home).exists()
    assert mdl("show", "tiny-bert", "--catalog", str(nested)).exit_code == 0

    here = mdl("init", "--catalog", "catalog.toml")  # relative to the working folder, found from it
    assert here.exit_code == 0, here.stderr
    assert here.stdout == f"{Path.cwd() / 'catalog.toml'}\n" and "mdl reads it here" in here.stderr

    env = tmp_path / "env" / "catalog.toml"
    monkeypatch.setenv("MDL_CATALOG", str(env))
    assert mdl("init").stdout == f"{env}\n"
    assert env.read_text(encoding="utf-8") == starter_catalog()

    monkeypatch.setenv("MDL_CATALOG", str(tmp_path / "not-there.toml"))
    other = mdl("init", "--catalog", str(tmp_path / "other.toml"))
    assert other.exit_code == 0, other.stderr
    assert "use it with --catalog" in other.stderr

    assert mdl("init", "--catalog", str(tmp_path)).exit_code == 2  # a folder
    dash = mdl("init", "--catalog", "-")
    assert dash.exit_code == 2 and "--catalog -" in dash.stderr
    assert not (Path.cwd() / "-").exists()


def test_a_catalog_in_this_folder_that_comes_first_is_said(home: Path) -> None:
    (Path.cwd() / "catalog.toml").write_text('[models.mine]\nrepo = "o/mine"\n')
    result = mdl("init")
    assert result.exit_code == 0, result.stderr
    assert (
        f"mdl: warning: in this folder mdl reads {Path.cwd() / 'catalog.toml'} first"
        in result.stderr
    )
    assert user_catalog(home).exists()


def test_the_python_api_is_what_the_command_calls(home: Path, tmp_path: Path) -> None:
    done = api.init(environ={**os.environ})
    assert done.catalog == user_catalog(home) and done.fallback and done.found == done.catalog
    assert not done.replaced
    with pytest.raises(UsageError, match="already exists") as caught:
        api.init()
    assert caught.value.exit_code == 2
    assert api.init(force=True).replaced


BROKEN = """\
version = 1

[settings]
connections = "4"

[models.a]
repo = "o/a"
revison = "v1"

[models.b]
files = [{ repo = "o/b", path = "w.bin", sha256 = "not-hex" }]
"""


def test_every_catalog_problem_in_one_run_and_in_json(home: Path) -> None:
    catalog = Path.cwd() / "catalog.toml"
    catalog.write_text(BROKEN)
    result = mdl("list")
    assert result.exit_code == 2
    assert result.stdout == ""
    lines = unstamped(result.stderr)
    assert lines[:4] == [
        f"mdl: error: {catalog}: 3 problems",
        f"  {catalog}:4: settings.connections: must be an integer, got string",
        f"  {catalog}:8: models.a.revison: unknown key (did you mean 'revision'?)",
        (
            f"  {catalog}:11: models.b.files[0].sha256: must be 64 hex digits (optionally"
            " 'sha256:…'), found 'n'"
        ),
    ]
    doc = json.loads(mdl("pull", "a", "--json").stdout)
    assert doc["ok"] is False and doc["error"]["code"] == 2
    assert doc["error"]["problems"] == [line.strip() for line in lines[1:4]]
    # on one line
    assert all(problem in doc["error"]["message"] for problem in doc["error"]["problems"])


def test_init_never_opens_or_replaces_what_is_not_a_file(home: Path, tmp_path: Path) -> None:
    """A FIFO is never opened (it would wait forever) and a device never replaced, --force or
    not: exit 2.
    """
    fifo = tmp_path / "fifo.toml"
    os.mkfifo(fifo)
    for force in ([], ["--force"]):
        result = mdl("init", "--catalog", str(fifo), *force)
        assert result.exit_code == 2, result.stderr
        assert f"{fifo} is a FIFO, not a catalog file" in result.stderr
    assert fifo.is_fifo()
    # never the real /dev/null: were the check to go, the test must harm nothing
    device = tmp_path / "null.toml"
    try:
        os.mknod(device, 0o600 | stat.S_IFCHR, os.makedev(1, 3))
    except PermissionError:
        return  # not root: no device node to try
    null = mdl("init", "--catalog", str(device), "--force")
    assert null.exit_code == 2 and "is a device" in null.stderr
    assert device.is_char_device()
