"""``lock --check`` holds the release order (issue 86): when the catalog's bucket holds published
versions of a model, the version the lock pins must be one of them (exit 4 naming the model, not a
lock that passes while nodes find nothing in the bucket); a bucket that cannot be read is exit 5;
a bucket no version of the model was published to (a fleet filling it with --fill-mirror) is no
reason to fail."""

from __future__ import annotations

from pathlib import Path

import pytest
from runfixtures import mdl, use_catalog
from s3server import S3
from servers import HubServer, make_data

from mdl.errors import ExitCode

PREFIX = "s3://team-models/hub"
V1 = {"config.json": b'{"v": 1}\n', "model.safetensors": make_data(4000, "lcp-1")}


@pytest.fixture
def world(hub: HubServer, s3: S3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    s3.client().create_bucket(Bucket="team-models")
    hub.add_repo("team/llm", V1)
    catalog = f'[settings]\nmirrors = ["{PREFIX}/{{model}}/{{sha256}}"]\n\n[models.llm]\nrepo = "team/llm"\n'
    return use_catalog(tmp_path, monkeypatch, catalog, endpoint=hub.url)


def test_lock_check_holds_the_lock_to_the_versions_published(
    world: Path, hub: HubServer, s3: S3
) -> None:
    assert mdl("lock", "llm").exit_code == 0
    unpublished = mdl("lock", "--check")
    assert unpublished.exit_code == 0, "no version published there: nothing to hold it to"
    assert mdl("pull", "llm", "--unsigned").exit_code == 0
    assert mdl("publish", "llm", "--to", PREFIX).exit_code == 0
    assert mdl("lock", "--check").exit_code == 0

    hub.commit("team/llm", {"model.safetensors": make_data(4001, "lcp-2")}, title="v2")
    assert mdl("lock", "--upgrade", "llm").exit_code == 0  # before publishing v2: the wrong order
    checked = mdl("lock", "--check")
    assert checked.exit_code == ExitCode.NOT_FOUND, checked.stderr
    assert "llm: the version the lock pins" in checked.stderr and "not published" in checked.stderr
    assert "mdl pull llm --unsigned" in checked.stderr, "the hint: the release order"

    s3.cutter.slowdown = 10**9  # the bucket down: an outage, not a verdict
    down = mdl("lock", "--check")
    assert down.exit_code == ExitCode.NETWORK, down.stderr
    s3.cutter.slowdown = 0

    assert mdl("pull", "llm", "--unsigned").exit_code == 0
    assert mdl("publish", "llm", "--to", PREFIX).exit_code == 0
    again = mdl("lock", "--check")
    assert again.exit_code == 0, again.stderr


def test_a_manifest_without_its_files_is_not_the_version(world: Path, s3: S3) -> None:
    """The bucket holds the version's manifest (planted: its id is computable from the pins; or
    left while its objects were removed) and not its objects: exit 4 naming the files, as when
    there is no manifest at all."""
    assert mdl("lock", "llm").exit_code == 0
    assert mdl("pull", "llm", "--unsigned").exit_code == 0
    assert mdl("publish", "llm", "--to", PREFIX).exit_code == 0
    client = s3.client()
    for item in client.list_objects_v2(Bucket="team-models", Prefix="hub/llm/")["Contents"]:
        if item["Size"] == len(V1["model.safetensors"]):
            client.delete_object(Bucket="team-models", Key=item["Key"])
    checked = mdl("lock", "--check")
    assert checked.exit_code == ExitCode.NOT_FOUND, checked.stderr
    assert "llm: the version the lock pins has a manifest in s3://team-models/hub" in checked.stderr
    assert "not its files (model.safetensors)" in checked.stderr
