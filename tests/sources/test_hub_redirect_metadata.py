"""A Hub file's metadata from the redirect of a GET of its first byte (issue 79): no HEAD, the Hub
asked once per file, the ranges sent to the CDN URL it named; every pin still decides (a commit the
catalog pins, the lock's sha256), and a Hub that says less still works."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from locks import lock_catalog
from runfixtures import mdl, use_catalog
from servers import Commit, Exchange, Fault, HubServer, Repo, make_data

from mdl.errors import ExitCode
from mdl.transfer.scheduling import SPLIT_THRESHOLD

# big enough to be fetched as parallel ranges
WEIGHTS = make_data(SPLIT_THRESHOLD + 5000, seed=7)
CONFIG = b'{"model_type": "bert"}\n'


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def resolves(hub: HubServer) -> list[tuple[str, str | None, int]]:
    """Every request on a resolve URL: method, Range, status."""
    return [(r.method, r.range, r.status) for r in hub.log if "/resolve/" in r.url_path]


def files_catalog(revision: str = "main", **pins: str) -> str:
    extra = "".join(f', {key} = "{value}"' for key, value in pins.items())
    return (
        "[models.m]\nfiles = [\n"
        f'  {{ repo = "org/m", path = "w.safetensors", revision = "{revision}"{extra} }},\n'
        f'  {{ repo = "org/m", path = "config.json", revision = "{revision}" }},\n'
        "]\n"
    )


class LyingHub(HubServer):
    """The Hub stand-in whose LFS redirects carry ``lies`` over their honest headers."""

    lies: Mapping[str, str] = {}

    def lfs_headers(self, repo: Repo, commit: Commit, path: str) -> dict[str, str]:
        return dict(self.lies)


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LyingHub]:
    server = LyingHub().start()
    server.add_repo("org/m", {"w.safetensors": WEIGHTS, "config.json": CONFIG})
    use_catalog(tmp_path, monkeypatch, files_catalog(), endpoint=server.url)
    monkeypatch.setenv("MDL_RETRIES", "0")
    try:
        yield server
    finally:
        server.stop()
    assert not server.errors and not server.cdn.errors


def test_a_hub_file_asks_the_hub_once_and_its_ranges_go_to_the_cdn(
    world: LyingHub, tmp_path: Path
) -> None:
    result = mdl("pull", "m", "--json")
    assert result.exit_code == 0, result.stderr
    dest = tmp_path / "models" / "m"
    assert (dest / "w.safetensors").read_bytes() == WEIGHTS
    assert (dest / "config.json").read_bytes() == CONFIG
    # no HEAD: the weights' first-byte GET was answered by the redirect (metadata and CDN URL),
    # and nothing else asked the Hub for them; the config's, by its first byte, then its body
    assert not world.log.records(method="HEAD")
    weights = [(r.method, r.range, r.status) for r in world.log if "w.safetensors" in r.url_path]
    assert weights == [("GET", "bytes=0-0", 302)]
    ranges = world.cdn.log.records(method="GET")
    assert len(ranges) >= 2 and all(r.status == 206 for r in ranges)
    assert sum(r.bytes_sent for r in ranges) == len(WEIGHTS)
    outcome = {f["path"]: f for f in json.loads(result.stdout)["files"]}
    assert outcome["w.safetensors"]["sha256"] == sha256(WEIGHTS)


def test_a_commit_the_catalog_pins_that_the_hub_answers_for_another_is_refused(
    world: LyingHub, tmp_path: Path
) -> None:
    commit = world.repo("org/m").sha
    (tmp_path / "catalog.toml").write_text(files_catalog(commit))
    world.lies = {"X-Repo-Commit": "f" * 40}
    result = mdl("pull", "m")
    assert result.exit_code == ExitCode.NETWORK, result.output
    assert f"the Hub answered for commit {'f' * 40} of org/m, not {commit}" in result.stderr
    assert not world.cdn.log.records()
    assert not (tmp_path / "models" / "m" / "w.safetensors").exists()


def test_a_redirects_sha256_never_replaces_the_catalogs_pin(
    world: LyingHub, tmp_path: Path
) -> None:
    other = sha256(b"other bytes")
    (tmp_path / "catalog.toml").write_text(files_catalog(sha256=sha256(WEIGHTS)))
    world.lies = {"X-Linked-Etag": f'"{other}"'}
    result = mdl("pull", "m")
    assert result.exit_code == ExitCode.INTEGRITY, result.output
    assert f"the catalog expects sha256 {sha256(WEIGHTS)} but org/m has {other}" in result.stderr
    assert not world.cdn.log.records()  # refused before a byte was asked


def test_a_malformed_etag_in_the_hf_cache_is_the_hubs_reply_not_bad_input(
    world: LyingHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The plain layout needs no blob name; the Hugging Face cache names the blob by it: an
    ``X-Linked-Etag`` that is no sha256 is what the Hub said wrong (exit 5), never written."""
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    world.lies = {"X-Linked-Etag": '"../../../evil"', "ETag": '"../../../evil"'}
    result = mdl("pull", "m", "--layout", "hf-cache")
    assert result.exit_code == ExitCode.NETWORK, result.output
    commit = world.repo("org/m").sha
    said = f"m/w.safetensors: the Hub named no sha256 or git blob id for hf://org/m@{commit}/"
    assert said in result.stderr and "check HF_ENDPOINT" in result.stderr, result.stderr
    assert not (tmp_path / "evil").exists()


def test_a_locked_pull_checks_the_locks_sha256_not_the_redirects(
    world: LyingHub, tmp_path: Path
) -> None:
    lock_catalog(tmp_path / "catalog.toml", world)
    world.log.clear()
    world.lies = {"X-Linked-Etag": f'"{sha256(b"other")}"', "X-Linked-Size": "5"}
    result = mdl("pull", "m", "--locked", "--json")
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "models" / "m" / "w.safetensors").read_bytes() == WEIGHTS
    outcome = {f["path"]: f for f in json.loads(result.stdout)["files"]}
    assert outcome["w.safetensors"]["sha256"] == sha256(WEIGHTS)
    # the lock pins the commit: no API call, no first-byte ask, no HEAD
    assert not [r for r in world.log if r.asks_metadata or r.url_path.startswith("/api/")]


class PlainRedirectHub(HubServer):
    """A Hub (or a mirror of it) whose LFS redirect says nothing but where to go: no
    ``X-Linked-*``, no ETag, no commit."""

    def _route_resolve(self, ex: Exchange, repo_type: Any, segs: list[str]) -> None:
        redirect = ex.redirect

        def bare(
            location: str, status: int = 302, headers: Mapping[str, str] | None = None
        ) -> None:
            redirect(location, status, {})

        ex.redirect = bare  # type: ignore[method-assign]
        super()._route_resolve(ex, repo_type, segs)


@pytest.fixture
def plain() -> Iterator[PlainRedirectHub]:
    server = PlainRedirectHub().start()
    server.add_repo("org/m", {"w.safetensors": WEIGHTS, "config.json": CONFIG})
    try:
        yield server
    finally:
        server.stop()
    assert not server.errors


def test_a_redirect_without_metadata_still_fetches_and_verifies_the_file(
    plain: PlainRedirectHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_catalog(tmp_path, monkeypatch, files_catalog(sha256=sha256(WEIGHTS)), endpoint=plain.url)
    result = mdl("pull", "m", "--json")
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "models" / "m" / "w.safetensors").read_bytes() == WEIGHTS
    outcome = {f["path"]: f for f in json.loads(result.stdout)["files"]}
    assert outcome["w.safetensors"]["size"] == len(WEIGHTS)
    assert not plain.log.records(method="HEAD")


def test_an_empty_hub_file_is_known_by_its_first_bytes_416(world: LyingHub, tmp_path: Path) -> None:
    world.commit("org/m", {"config.json": b""})
    result = mdl("pull", "m")
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "models" / "m" / "config.json").read_bytes() == b""
    assert ("GET", "bytes=0-0", 416) in resolves(world)


def test_a_snapshot_pinned_to_a_commit_asks_no_revision(world: LyingHub, tmp_path: Path) -> None:
    commit = world.repo("org/m").sha
    world.commit("org/m", {"config.json": b"{}"})  # main moved on
    (tmp_path / "catalog.toml").write_text(f'[models.m]\nrepo = "org/m"\nrevision = "{commit}"\n')
    result = mdl("pull", "m")
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "models" / "m" / "config.json").read_bytes() == CONFIG
    api = [r.url_path for r in world.log if r.url_path.startswith("/api/")]
    assert api == [f"/api/models/org/m/tree/{commit}"]


def test_a_snapshot_pinned_to_a_commit_the_hub_lacks_is_not_found(
    world: LyingHub, tmp_path: Path
) -> None:
    (tmp_path / "catalog.toml").write_text(f'[models.m]\nrepo = "org/m"\nrevision = "{"e" * 40}"\n')
    result = mdl("pull", "m")
    assert result.exit_code == ExitCode.NOT_FOUND, result.output
    assert "not found" in result.stderr


def test_a_cdn_url_that_expired_before_its_download_is_asked_for_again(
    world: LyingHub, tmp_path: Path
) -> None:
    # the URL the resolve's redirect named expires as the download first asks it
    world.cdn.faults.add(Fault.expire_urls(path_prefix="/blobs/", times=1))
    result = mdl("pull", "m")
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "models" / "m" / "w.safetensors").read_bytes() == WEIGHTS
    assert 403 in {r.status for r in world.cdn.log}
    weights = [(r.method, r.range, r.status) for r in world.log if "w.safetensors" in r.url_path]
    # the first byte's ask, then the download's one ask of the resolve URL at its commit
    assert weights[0] == ("GET", "bytes=0-0", 302) and len(weights) == 2
    assert weights[1][0] == "GET" and weights[1][2] == 302
