"""``lock --check`` holds the release order (issue 86): when the catalog's bucket holds published
versions of a model, the version the lock pins must be one of them (exit 4 naming the model, not a
lock that passes while nodes find nothing in the bucket); a bucket that cannot be read is exit 5;
a bucket no version of the model was published to (a fleet filling it with --fill-mirror) is no
reason to fail."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, cast

import pytest
from runfixtures import mdl, use_catalog
from s3server import S3
from servers import HubServer, make_data

from mdl.buckets import versions
from mdl.buckets.protocol import Seen, Writer
from mdl.catalog.specs import ModelSpec
from mdl.download import _lockpublished
from mdl.errors import ExitCode, NotFoundError

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


class Meeting:
    """A store whose HEADs answer only when ``looks`` are in flight at once (its deadline:
    BrokenBarrierError): a check that looks at a version's files one at a time never passes."""

    def __init__(self, looks: int, held: set[str]) -> None:
        self.met, self.held, self.asked = threading.Barrier(looks, timeout=60), held, list[str]()

    def head(self, uri: str) -> Seen | None:
        self.met.wait()
        self.asked.append(uri)
        return Seen(etag="e", size=8, modified=0.0, now=0.0) if uri in self.held else None


def test_a_versions_files_are_looked_at_together_at_their_published_names() -> None:
    """300 files were 300 round trips in a row: they are looked at ``HEAD_WORKERS`` at once, each
    at the name publish gives it (``versions.template_of``)."""
    files = tuple(versions.ManifestFile(path=f"f{n}", size=8, sha256=f"{n:064x}") for n in range(4))
    found = versions.Manifest(model="llm", id="0" * 64, files=files)
    named = [f"{PREFIX}/llm/{f.sha256}" for f in files]
    store = Meeting(4, held=set(named[1:]))
    with pytest.raises(
        NotFoundError,
        match=r"has a manifest in s3://team-models/hub but not its"
        r" files \(f0\)",
    ):
        _lockpublished._held(cast(Writer, cast(Any, store)), ModelSpec(name="llm"), PREFIX, found)
    assert sorted(store.asked) == sorted(named)
