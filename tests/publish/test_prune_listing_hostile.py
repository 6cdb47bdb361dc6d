"""``prune --mirror`` on a listing that lies (moto behind ``Cutter.listings``): a listing of the
published versions that says more follow with no token, one that names a key outside the mirror's
folder, one that never ends. Each is exit 5 naming the prefix, and nothing is removed: prune never
deletes on a listing it could not check."""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path

import pytest
from releases import Signed, object_uri, publish, shard, signatures, write_locks
from releases import version_id as vid
from runfixtures import Result, mdl, use_catalog
from s3server import S3, Shape, endless, naming, truncated
from signkeys import key_pair

from mdl.errors import ExitCode

PREFIX = "s3://mirror/hub"


@pytest.fixture(scope="module")
def signer(tmp_path_factory: pytest.TempPathFactory) -> Signed:
    private, public = key_pair(tmp_path_factory.mktemp("keys"), "team")
    return public, signatures(private)


@pytest.fixture
def team(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, signer: Signed, s3: S3) -> S3:
    """The team's repo at v3 (its signer named), v1, v2 and v3 published to ``PREFIX``."""
    project = tmp_path / "project"
    project.mkdir()
    use_catalog(project, monkeypatch, None, endpoint="http://127.0.0.1:9")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(project)
    write_locks(project, signed=signer)
    s3.client().create_bucket(Bucket="mirror")
    publish(PREFIX, tmp_path / "scratch", "v1", "v2", "v3", signed=signer[1])
    return s3


def held(s3: S3) -> set[str]:
    pages = s3.client().get_paginator("list_objects_v2").paginate(Bucket="mirror")
    return {item["Key"] for page in pages for item in page.get("Contents", [])}


def prune(*args: str) -> Result:
    return mdl("prune", "--mirror", f"{PREFIX}/{{model}}/{{sha256}}", "--keep-days", "0", *args)


def refused(result: Result, said: str) -> None:
    """Exit 5 naming the listing, nothing removed."""
    assert result.exit_code == ExitCode.NETWORK, result.stderr
    assert re.search(said, result.stderr), result.stderr
    assert json.loads(result.stdout).get("removed", []) == []


def test_a_versions_listing_truncated_without_a_token_keeps_everything(team: S3) -> None:
    """v2's manifest is "on the next page" that cannot be asked for: believed, v2 (one of the two
    newest) would lose its objects; prune keeps everything and says why."""
    every = held(team)

    def hiding(query: str, body: bytes) -> bytes:
        if "versions" not in query:
            return body
        one = rb"<Contents>(?:(?!</Contents>).)*?" + vid("v2").encode() + rb".*?</Contents>"
        return truncated(query, re.sub(one, b"", body, flags=re.S))

    team.cutter.listings = hiding
    result = prune("--json")
    refused(result, r"s3://mirror/hub/\.mdl/versions/: an incomplete listing")
    assert held(team) == every
    assert object_uri(PREFIX, shard(4)).removeprefix("s3://mirror/") in every
    reasons = {entry["reason"] for entry in json.loads(result.stdout)["kept"]}
    assert "the mirror's published versions could not be listed: every object is kept" in reasons


def test_a_key_outside_the_mirrors_folder_is_never_removed(team: S3, tmp_path: Path) -> None:
    """A listing of hub/ that names hubnot/<model>/<sha256> (another mirror, mdl's objects): prune
    --all-models removes nothing on it, there or here."""
    other = "s3://mirror/hubnot"
    publish(other, tmp_path / "other", "v1")
    theirs = object_uri(other, shard(1)).removeprefix("s3://mirror/")
    every = held(team)
    team.cutter.listings = naming("hub/", theirs)
    refused(prune("--all-models", "--json"), rf"s3://mirror/hub/: a hostile listing .*{theirs}")
    assert held(team) == every


def lying(pages: int) -> Shape:
    """``endless`` for ``pages`` pages, then the store's honest first page (a test that fails
    ends)."""
    told = itertools.count()
    return lambda query, body: endless(query, body) if next(told) < pages else body


def test_a_listing_that_never_ends_is_refused(team: S3) -> None:
    """Every page says more follow, with a new token, and names the same keys again."""
    every = held(team)
    team.cutter.listings = lying(200)
    refused(prune("--json", "--dry-run"), r"s3://mirror/hub/: a hostile listing .* \(again")
    assert held(team) == every
