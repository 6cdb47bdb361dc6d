"""The ``file://`` transport never reads an object through a symbolic link (issue 59, B): anyone who
may write a shared folder could plant one at an object's name, pointing at a file of each machine
that reads it. A mirror's object that is a link is a 404 naming it, and the file comes from the next
source; a link the user gives ``mdl get`` on its command line is the user's own and is followed, as
curl follows it."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import quote

import pytest
from runfixtures import mdl
from servers import HubServer, make_data

from mdl.transfer.http import make_client

DATA = make_data(300_000, seed=59)


def _url(path: Path) -> str:
    return f"file://localhost{quote(str(path))}"


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_the_transport_refuses_a_link_to_a_regular_file(tmp_path: Path, method: str) -> None:
    (tmp_path / "secret").write_bytes(DATA)
    (tmp_path / "w.bin").symlink_to(tmp_path / "secret")
    with make_client(pool_size=2) as client:
        answer = client.request(method, _url(tmp_path / "w.bin"))
        assert answer.status_code == 404
        if method == "GET":
            assert answer.text == "a symbolic link, never followed"
        # a link in a folder above the object is the share's layout, not the object
        (tmp_path / "up").symlink_to(tmp_path, target_is_directory=True)
        assert client.request(method, _url(tmp_path / "up" / "secret")).status_code == 200


def test_get_follows_a_link_the_user_names(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "real.bin").write_bytes(DATA)
    (tmp_path / "w.bin").symlink_to("real.bin")
    result = mdl("get", f"file://{tmp_path}/w.bin", "-d", "out")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == f"{tmp_path / 'out' / 'w.bin'}\n"  # named as the user named it
    assert (tmp_path / "out" / "w.bin").read_bytes() == DATA


FILES = {"config.json": b'{"model_type": "bert"}\n', "model.safetensors": DATA}


def test_a_mirror_object_that_is_a_link_is_not_read_and_the_origin_serves_it(
    hub: HubServer, catalog: Path, tmp_path: Path
) -> None:
    """Even a link to the right bytes: what a link reads is not the share's to decide."""
    hub.add_repo("org/tiny", FILES)
    catalog.write_text('[models.tiny]\nrepo = "org/tiny"\n')
    folder = tmp_path / "shared"
    (folder / "tiny").mkdir(parents=True)
    (folder / "tiny" / "config.json").write_bytes(FILES["config.json"])
    (tmp_path / "elsewhere").write_bytes(DATA)
    (folder / "tiny" / "model.safetensors").symlink_to(tmp_path / "elsewhere")
    template = f"file://{folder}/{{model}}/{{path}}"
    result = mdl("pull", "tiny", "--mirror", template, "--json", "--no-progress")
    assert result.exit_code == 0, result.stderr
    by_path = {f["path"]: f for f in json.loads(result.stdout)["files"]}
    assert by_path["config.json"]["mirror"] == f"file://{folder}/tiny/config.json"
    assert by_path["model.safetensors"]["warning"] == (
        f"tiny/model.safetensors: mirror file://{folder}/tiny/model.safetensors failed (a symbolic"
        " link, never followed); trying the next source"
    )
    fetched = [r.url_path for r in hub.log.records(method="GET", path_prefix="/org/tiny/resolve/")]
    assert [path.rsplit("/", 1)[-1] for path in fetched] == ["model.safetensors"]
    assert (tmp_path / "models" / "tiny" / "model.safetensors").read_bytes() == DATA
