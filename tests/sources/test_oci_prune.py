"""``mdl prune --mirror oci://REGISTRY/NAMESPACE``: each catalog model's repository read by its
tags; the versions the kept locks pin stay, and the newest ``--keep-versions N`` of them count
(catalog.lock's, and those a lock pins by their manifest's digest: a version matched by its files
alone is never counted); a manifest no lock pins only stays while it is as new as the last version
counted (a planted one, a release not locked yet), never counted; the others' manifests are
deleted by digest where the registry allows it."""

from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx2
import pytest
from registry import (
    EMPTY_CONFIG,
    HAVE_REGISTRY,
    NEEDS_REGISTRY,
    WEIGHT_RAW,
    DistributionRegistry,
    RegistryGate,
    distribution,
    model_manifest,
    registry_gate,
)
from registrytokens import token_service
from runfixtures import mdl, use_catalog
from servers import make_data
from signkeys import key_pair

CREATED = "org.opencontainers.image.created"


def version(seed: int) -> dict[str, bytes]:
    return {
        "config.json": b'{"model_type": "tiny", "release": %d}' % seed,
        "model.safetensors": make_data(20_000 + seed, seed=100 + seed),
    }


def push_version(
    registry: DistributionRegistry, repository: str, tag: str, files: dict[str, bytes], when: str
) -> str:
    """A ModelPack manifest over ``files`` (one raw layer each, as publish writes), stating
    ``when`` it was made; its digest."""
    config = registry.push_blob(repository, EMPTY_CONFIG)
    layers = [
        {
            "mediaType": WEIGHT_RAW,
            "digest": registry.push_blob(repository, data),
            "size": len(data),
            "annotations": {"org.cncf.model.filepath": path},
        }
        for path, data in files.items()
    ]
    doc = json.loads(model_manifest(config, layers))
    doc["annotations"] = {CREATED: when}
    return registry.push_manifest(repository, tag, json.dumps(doc).encode())


def manifest_status(registry: DistributionRegistry, repository: str, digest: str) -> int:
    accept = {"Accept": "application/vnd.oci.image.manifest.v1+json"}
    url = f"{registry.url}/v2/{repository}/manifests/{digest}"
    return httpx2.get(url, headers=accept, timeout=30).status_code


@pytest.fixture
def releases(
    plain_registry: DistributionRegistry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    """Model ``tiny`` released from its own repository ``team/tiny`` (each lock pins its
    manifest by digest, so the time it states is the lock's): v1 locked in releases/v1.lock, v2 in
    catalog.lock; the repository holds v0 (older than both), v1, v2, a version made between them
    that no lock pins, and one planted with a time years ahead."""
    registry = plain_registry
    entry = f'[models.tiny]\noci = "oci://{registry.host}/team/tiny:%s"\n'
    catalog = use_catalog(tmp_path, monkeypatch, entry % "v1")
    pushed = {
        "v0": push_version(registry, "team/tiny", "v0", version(0), "2024-01-01T00:00:00Z"),
        "v1": push_version(registry, "team/tiny", "v1", version(1), "2024-02-01T00:00:00Z"),
    }
    assert mdl("lock", "tiny").exit_code == 0
    (tmp_path / "releases").mkdir()
    shutil.copy(tmp_path / "catalog.lock", tmp_path / "releases" / "v1.lock")
    pushed["mid"] = push_version(registry, "team/tiny", "mid", version(3), "2024-02-15T00:00:00Z")
    pushed["v2"] = push_version(registry, "team/tiny", "v2", version(2), "2024-03-01T00:00:00Z")
    catalog.write_text(entry % "v2")
    upgraded = mdl("lock", "tiny", "--upgrade")
    assert upgraded.exit_code == 0, upgraded.stderr
    pushed["planted"] = push_version(registry, "team/tiny", "x", version(4), "2099-01-01T00:00:00Z")
    return pushed


@pytest.fixture
def gate(plain_registry: DistributionRegistry) -> Iterator[RegistryGate]:
    with registry_gate(plain_registry.url) as started:
        started.token_auth = True  # the token handshake on every request
        yield started


def test_prune_keeps_the_locked_and_newest_proven_and_deletes_the_rest(
    plain_registry: DistributionRegistry,
    gate: RegistryGate,
    releases: dict[str, str],
    tmp_path: Path,
) -> None:
    tags = {"v0": "v0", "v1": "v1", "mid": "mid", "v2": "v2", "planted": "x"}

    def shown(host: str, name: str) -> str:
        return f"oci://{host}/team/tiny:{tags[name]}@{releases[name]}"

    # a dry run through a gate that wants a token for every request
    front = gate.url.removeprefix("http://")
    lock = str(tmp_path / "releases" / "v1.lock")
    dry = mdl("prune", "--mirror", f"oci://{front}/team/{{model}}", "--lock", lock, "--dry-run",
              "--json")  # fmt: skip
    assert dry.exit_code == 0, dry.stderr
    report = json.loads(dry.stdout)
    assert [e["uri"] for e in report["removed"]] == [shown(front, "v0")]
    kept = {e["uri"]: e["reason"] for e in report["kept"]}
    assert kept[shown(front, "v1")].endswith(f"{lock} pins")
    assert kept[shown(front, "v2")] == "the manifest of a version catalog.lock pins"
    assert "never counted" in kept[shown(front, "mid")]
    assert "never counted" in kept[shown(front, "planted")]
    assert manifest_status(plain_registry, "team/tiny", releases["v0"]) == 200  # a dry run
    assert any(s.authorization and s.admitted for s in gate.requests("GET"))

    host = plain_registry.host
    mirror = f"oci://{host}/team/{{model}}"
    done = mdl("prune", "--mirror", mirror, "--lock", lock)
    assert done.exit_code == 0, done.stderr
    assert f"removed  {shown(host, 'v0')}" in done.stdout
    assert manifest_status(plain_registry, "team/tiny", releases["v0"]) == 404
    for name in ("v1", "mid", "v2", "planted"):
        assert manifest_status(plain_registry, "team/tiny", releases[name]) == 200

    # one version counted (catalog.lock's): what is older and no lock pins goes, the planted
    # manifest still stays (it states a time ahead of catalog.lock's version)
    again = mdl("prune", "--mirror", mirror, "--keep-versions", "1", "--json")
    assert again.exit_code == 0, again.stderr
    removed = {e["uri"] for e in json.loads(again.stdout)["removed"]}
    assert removed == {shown(host, "v1"), shown(host, "mid")}
    assert manifest_status(plain_registry, "team/tiny", releases["planted"]) == 200
    assert manifest_status(plain_registry, "team/tiny", releases["v2"]) == 200


@pytest.fixture(scope="module")
def no_deletes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DistributionRegistry]:
    if not HAVE_REGISTRY:
        pytest.skip(NEEDS_REGISTRY.kwargs["reason"])
    with distribution(tmp_path_factory.mktemp("registry"), delete=False) as started:
        yield started


def test_a_registry_that_refuses_deletes_is_said_and_nothing_changes(
    no_deletes: DistributionRegistry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = no_deletes
    use_catalog(
        tmp_path, monkeypatch, f'[models.tiny]\noci = "oci://{registry.host}/origin/tiny:rel"\n'
    )
    registry.push_model("origin/tiny", "rel", version(2))
    assert mdl("lock", "tiny").exit_code == 0
    old = [push_version(registry, "team/tiny", f"v{n}", version(n), f"202{n}-01-01T00:00:00Z")
           for n in (0, 1)]  # fmt: skip
    push_version(registry, "team/tiny", "v2", version(2), "2024-01-01T00:00:00Z")
    done = mdl("prune", "--mirror", f"oci://{registry.host}/team/{{model}}", "--keep-versions", "1")
    assert done.exit_code == 5
    assert "HTTP 405" in done.stderr
    assert "storage.delete.enabled" in done.stderr
    assert all(manifest_status(registry, "team/tiny", digest) == 200 for digest in old)
    assert done.stderr.count("HTTP 405") == 1  # asked once: the other is kept, said in the tally


def test_a_token_registry_grants_the_delete_it_asks_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not HAVE_REGISTRY:
        pytest.skip(NEEDS_REGISTRY.kwargs["reason"])
    (tmp_path / "reg").mkdir()
    with token_service() as tokens, distribution(tmp_path / "reg", tokens=tokens) as registry:
        catalog = f'[models.tiny]\noci = "oci://{registry.host}/origin/tiny:rel"\n'
        use_catalog(tmp_path, monkeypatch, catalog)
        registry.push_model("origin/tiny", "rel", version(2))
        assert mdl("lock", "tiny").exit_code == 0
        old = push_version(registry, "team/tiny", "v0", version(0), "2020-01-01T00:00:00Z")
        push_version(registry, "team/tiny", "v2", version(2), "2024-01-01T00:00:00Z")
        tokens.asked.clear()
        done = mdl(
            "prune", "--mirror", f"oci://{registry.host}/team/{{model}}", "--keep-versions", "1"
        )
        assert done.exit_code == 0, done.stderr
        assert f"removed  oci://{registry.host}/team/tiny:v0@{old}" in done.stdout
        scopes = {scope for scope, _ in tokens.asked}
        assert scopes == {"repository:team/tiny:pull", "repository:team/tiny:delete"}


@pytest.mark.parametrize(
    ("flag", "said"),
    [(("--keep-days", "3"), "--keep-days: a registry"), (("--all-models",), "--all-models: a")],
)
def test_what_a_registry_cannot_be_pruned_by_is_refused(
    flag: tuple[str, ...], said: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_catalog(tmp_path, monkeypatch, '[models.tiny]\noci = "oci://reg.example/origin/tiny:v1"\n')
    done = mdl("prune", "--mirror", "oci://reg.example/team/{model}", *flag)
    assert done.exit_code == 2
    assert said in done.stderr


def test_a_repository_several_models_share_is_kept_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = "".join(f'[models.{m}]\noci = "oci://reg.example/origin/{m}:v1"\n' for m in ("a", "b"))
    use_catalog(tmp_path, monkeypatch, text)
    done = mdl("prune", "--mirror", "oci://reg.example/team/all", "--json")  # asks nothing
    assert done.exit_code == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["removed"] == []
    assert {e["reason"] for e in report["kept"]} == {
        "a repository several of the catalog's models share: every version kept"
    }


def test_versions_that_state_no_time_go_only_with_keep_versions_0(
    plain_registry: DistributionRegistry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = plain_registry  # another tool's manifests, stating no time
    catalog = f'[models.tiny]\noci = "oci://{registry.host}/origin/undated:rel"\n'
    use_catalog(tmp_path, monkeypatch, catalog)
    registry.push_model("origin/undated", "rel", version(2))
    assert mdl("lock", "tiny").exit_code == 0
    old = registry.push_model("undated/tiny", "v1", version(1))
    kept = registry.push_model("undated/tiny", "v2", version(2))
    mirror = f"oci://{registry.host}/undated/{{model}}"
    counted = mdl("prune", "--mirror", mirror, "--keep-versions", "1")
    assert counted.exit_code == 0, counted.stderr
    assert manifest_status(registry, "undated/tiny", old) == 200  # no time: never judged older
    locks_only = mdl("prune", "--mirror", mirror, "--keep-versions", "0")
    assert locks_only.exit_code == 0, locks_only.stderr
    assert manifest_status(registry, "undated/tiny", old) == 404
    assert manifest_status(registry, "undated/tiny", kept) == 200


def test_keep_versions_1_prunes_what_mdl_published_before_catalog_locks_version(
    plain_registry: DistributionRegistry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Five versions published by ``mdl publish`` (each manifest states its publish time), v2 and
    v3 locked (by their files: a mirror of a model from another source): the default
    ``--keep-versions 2`` counts catalog.lock's version only (a version matched by its files alone
    is never counted) and deletes nothing; ``--keep-versions 1`` deletes the two before v2, and
    keeps v4, published after catalog.lock's version (no lock pins it yet)."""
    registry = plain_registry
    use_catalog(
        tmp_path, monkeypatch, f'[models.tiny]\noci = "oci://{registry.host}/origin/dated:rel"\n'
    )
    times = iter(f"2026-11-0{day}T09:00:00.000Z" for day in range(1, 6))
    monkeypatch.setattr("mdl.upload.ocipublish.created_now", lambda: next(times))
    (tmp_path / "releases").mkdir()
    mirror, published = f"oci://{registry.host}/dated/{{model}}", {}
    for n in range(5):
        registry.push_model("origin/dated", "rel", version(n))
        locked = mdl("lock", "tiny", "--upgrade")
        assert locked.exit_code == 0, locked.stderr
        shutil.copy(tmp_path / "catalog.lock", tmp_path / "releases" / f"v{n}.lock")
        assert mdl("pull", "tiny", "--dest", str(tmp_path / f"v{n}")).exit_code == 0
        to = mirror.replace("{model}", f"tiny:v{n}")
        done = mdl("publish", "tiny", "--to", to, "--dest", str(tmp_path / f"v{n}"), "--json")
        assert done.exit_code == 0, done.stderr
        published[n] = json.loads(done.stdout)["versions"][0]["manifest"]
    shutil.copy(tmp_path / "releases" / "v3.lock", tmp_path / "catalog.lock")  # v4: not yet
    only_one = mdl("prune", "--mirror", mirror, "--json")  # catalog.lock's version counted only
    assert only_one.exit_code == 0, only_one.stderr
    assert json.loads(only_one.stdout)["removed"] == []
    release = str(tmp_path / "releases" / "v2.lock")
    two = mdl("prune", "--mirror", mirror, "--lock", release, "--json")
    assert two.exit_code == 0, two.stderr
    assert json.loads(two.stdout)["removed"] == []  # v2 matched by its files: never counted
    # catalog.lock's version not in the mirror (never published there, or its tag moved away by a
    # co-tenant): nothing is counted, nothing goes by its age
    registry.push_model("origin/dated", "rel", version(5))
    assert mdl("lock", "tiny", "--upgrade").exit_code == 0
    hidden = mdl("prune", "--mirror", mirror, "--keep-versions", "1", "--dry-run", "--json")
    assert hidden.exit_code == 0, hidden.stderr
    assert json.loads(hidden.stdout)["removed"] == []
    shutil.copy(tmp_path / "releases" / "v3.lock", tmp_path / "catalog.lock")
    done = mdl("prune", "--mirror", mirror, "--lock", release, "--keep-versions", "1", "--json")
    assert done.exit_code == 0, done.stderr
    report = json.loads(done.stdout)
    assert sorted(e["uri"] for e in report["removed"]) == [published[0], published[1]]
    kept = {e["uri"]: e["reason"] for e in report["kept"]}
    assert kept[published[2]].endswith("v2.lock pins")
    assert kept[published[3]] == "the manifest of a version catalog.lock pins"
    assert "newer than the version catalog.lock pins" in kept[published[4]]
    for n, manifest in published.items():
        status = manifest_status(registry, "dated/tiny", manifest.rpartition("@")[2])
        assert status == (404 if n < 2 else 200)


class _Tags(BaseHTTPRequestHandler):
    """A registry whose tag list is what the test says (``server.pages``: path → body, Link)."""

    server: Any

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self.server.asked.append(self.path)
        body, link = self.server.pages.get(self.path, (b'{"errors": []}', None))
        self.send_response(200 if self.path in self.server.pages else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if link:
            self.send_header("Link", link)
        self.end_headers()
        self.wfile.write(body)


def pruned_through(pages: dict[str, tuple[bytes, str | None]]) -> tuple[Any, str, list[str]]:
    """``mdl prune --mirror`` of the catalog's ``tiny`` through a registry whose tag list is
    ``pages`` (``_Tags``): its result, that registry's host and the paths it was asked for."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Tags)
    server.pages, server.asked = pages, []  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    host = f"127.0.0.1:{server.server_address[1]}"
    try:
        done = mdl("prune", "--mirror", f"oci://{host}/team/{{model}}", "--keep-versions", "0")
    finally:
        server.shutdown()
        server.server_close()
    return done, host, server.asked  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("pages", "said"),
    [
        ({"/v2/team/tiny/tags/list?n=1000": (b'{"tags": ["v1", 5]}', None)}, "not a list of names"),
        (
            {"/v2/team/tiny/tags/list?n=1000": (b'{"tags": ["v1"]}', '<http://elsewhere.example/v2/x>; rel="next"')},
            "on another host",
        ),
    ],
)  # fmt: skip
def test_a_hostile_tag_list_is_refused_and_nothing_is_deleted(
    plain_registry: DistributionRegistry,
    pages: dict[str, tuple[bytes, str | None]],
    said: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    origin = f"oci://{plain_registry.host}/origin/hostile:rel"
    use_catalog(tmp_path, monkeypatch, f'[models.tiny]\noci = "{origin}"\n')
    plain_registry.push_model("origin/hostile", "rel", version(5))
    assert mdl("lock", "tiny").exit_code == 0
    done, _, asked = pruned_through(pages)
    assert done.exit_code == 5, done.stderr
    assert said in done.stderr
    assert asked == ["/v2/team/tiny/tags/list?n=1000"]


def test_the_tag_list_is_read_page_by_page(
    plain_registry: DistributionRegistry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    origin = f"oci://{plain_registry.host}/origin/paged:rel"
    use_catalog(tmp_path, monkeypatch, f'[models.tiny]\noci = "{origin}"\n')
    plain_registry.push_model("origin/paged", "rel", version(6))
    assert mdl("lock", "tiny").exit_code == 0
    first, second = "/v2/team/tiny/tags/list?n=1000", "/v2/team/tiny/tags/list?n=1000&last=a"
    done, _, asked = pruned_through(
        {first: (b'{"tags": ["a"]}', f'<{second}>; rel="next"'), second: (b'{"tags": ["b"]}', None)}
    )
    assert done.exit_code == 0, done.stderr  # both tags untagged meanwhile (404): none to judge
    assert asked == [first, second, "/v2/team/tiny/manifests/a", "/v2/team/tiny/manifests/b"]


@pytest.mark.parametrize("by_lock", [False, True])
def test_a_manifest_another_models_lock_pins_is_kept_never_counted(
    by_lock: bool,
    plain_registry: DistributionRegistry,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Model ``q`` is deployed by digest from model ``tiny``'s repository (an older release of it,
    tagged there): a kept lock (catalog.lock, or a ``--lock`` once ``q`` left the catalog) pins
    that manifest for ``q``, so pruning ``tiny``'s repository keeps it, and never counts it among
    ``tiny``'s versions (the older one no lock pins stays)."""
    registry = plain_registry
    old = push_version(registry, "cross/tiny", "v0", version(0), "2019-01-01T00:00:00Z")
    release = push_version(registry, "cross/tiny", "q-release", version(1), "2020-01-01T00:00:00Z")
    push_version(registry, "cross/tiny", "v2", version(2), "2024-01-01T00:00:00Z")
    registry.push_model("origin/cross", "rel", version(2))
    tiny = f'[models.tiny]\noci = "oci://{registry.host}/origin/cross:rel"\n'
    q = f'[models.q]\noci = "oci://{registry.host}/cross/tiny:q-release"\n'
    catalog = use_catalog(tmp_path, monkeypatch, tiny + q)
    assert mdl("lock").exit_code == 0
    assert f"cross/tiny@{release}" in (tmp_path / "catalog.lock").read_text()
    origin, flags = "catalog.lock", ()
    if by_lock:
        origin, flags = str(tmp_path / "q.lock"), ("--lock", str(tmp_path / "q.lock"))
        shutil.copy(tmp_path / "catalog.lock", origin)
        catalog.write_text(tiny)
    mirror = f"oci://{registry.host}/cross/{{model}}"
    counted = mdl("prune", "--mirror", mirror, *flags, "--keep-versions", "2", "--json")
    assert counted.exit_code == 0, counted.stderr
    report = json.loads(counted.stdout)
    assert report["removed"] == []  # one version of tiny counted (v2): fewer than 2, none goes
    kept = {e["uri"]: e["reason"] for e in report["kept"]}
    shown = f"oci://{registry.host}/cross/tiny:q-release@{release}"
    assert kept[shown] == f"the manifest {origin} pins for q: kept, never counted"
    done = mdl("prune", "--mirror", mirror, *flags, "--keep-versions", "1")
    assert done.exit_code == 0, done.stderr
    assert manifest_status(registry, "cross/tiny", release) == 200
    assert manifest_status(registry, "cross/tiny", old) == 404


def _loop(first: str) -> dict[str, tuple[bytes, str | None]]:
    """One tag a page (n ignored), each page's Link back to the first."""
    return {first: (b'{"tags": ["a"]}', f'<{first}>; rel="next"')}


def _endless(first: str) -> dict[str, tuple[bytes, str | None]]:
    """One tag a page (n ignored), each page's Link to a new one, past the pages prune reads."""
    urls = [first, *(f"{first}&last=t{n}" for n in range(200))]
    return {url: (b'{"tags": ["t%d"]}' % n, f'<{urls[n + 1]}>; rel="next"')
            for n, url in enumerate(urls[:-1])}  # fmt: skip


@pytest.mark.parametrize(("pages", "asked"), [(_loop, 1), (_endless, 100)])
def test_a_tag_list_that_never_ends_keeps_every_version(
    plain_registry: DistributionRegistry,
    pages: Any,
    asked: int,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A registry that ignores ``n`` and links a page already read, or page after page past the
    pages prune reads: the walk ends there, every version kept, the repository named."""
    origin = f"oci://{plain_registry.host}/origin/endless:rel"
    use_catalog(tmp_path, monkeypatch, f'[models.tiny]\noci = "{origin}"\n')
    plain_registry.push_model("origin/endless", "rel", version(7))
    assert mdl("lock", "tiny").exit_code == 0
    done, host, paths = pruned_through(pages("/v2/team/tiny/tags/list?n=1000"))
    assert done.exit_code == 0, done.stderr
    assert f"oci://{host}/team/tiny: its tag list does not end within" in done.stderr
    assert "every version kept" in done.stderr
    assert len(paths) == asked
    assert all("/tags/list" in path for path in paths)


def test_a_copy_of_a_locked_version_planted_stating_any_time_pushes_no_version_out(
    plain_registry: DistributionRegistry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """v2 and v3 published to the mirror, catalog.lock pins v3 and v1.lock v1, never published
    there: a co-tenant's manifest of v1's files stating a time just before v3's only keeps itself;
    v2, which nothing counted pushed out before, stays (a time anyone may write orders nothing)."""
    registry = plain_registry
    origin = f"oci://{registry.host}/origin/plant:rel"
    use_catalog(tmp_path, monkeypatch, f'[models.tiny]\noci = "{origin}"\n')
    for n in (1, 2, 3):
        registry.push_model("origin/plant", "rel", version(n))
        assert mdl("lock", "tiny", "--upgrade").exit_code == 0
        shutil.copy(tmp_path / "catalog.lock", tmp_path / f"v{n}.lock")
    v2 = push_version(registry, "plant/tiny", "v2", version(2), "2024-02-01T00:00:00Z")
    push_version(registry, "plant/tiny", "v3", version(3), "2024-03-01T00:00:00Z")
    mirror, lock = f"oci://{registry.host}/plant/{{model}}", str(tmp_path / "v1.lock")
    before = mdl("prune", "--mirror", mirror, "--lock", lock, "--dry-run", "--json")
    assert before.exit_code == 0, before.stderr
    assert json.loads(before.stdout)["removed"] == []
    planted = push_version(registry, "plant/tiny", "x", version(1), "2024-02-29T23:59:59.999Z")
    after = mdl("prune", "--mirror", mirror, "--lock", lock, "--json")
    assert after.exit_code == 0, after.stderr
    report = json.loads(after.stdout)
    assert report["removed"] == []
    kept = {e["uri"]: e["reason"] for e in report["kept"]}
    shown = f"oci://{registry.host}/plant/tiny:x@{planted}"
    assert kept[shown] == f"the manifest of a version {lock} pins"
    assert manifest_status(registry, "plant/tiny", v2) == 200


def test_a_version_signed_in_place_of_its_own_model_sig_is_the_one_its_lock_pins(
    plain_registry: DistributionRegistry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A model with a model.sig of its own, published with ``--sign --force`` (mdl's signature a
    referrer, its own model.sig no layer): the lock, which pins that model.sig, pins the manifest
    all the same (the signature file is left out of both, as of a bucket's version id), so
    ``--keep-versions 0`` keeps both locked versions."""
    registry = plain_registry
    host = registry.host
    use_catalog(tmp_path, monkeypatch, f'[models.tiny]\noci = "oci://{host}/origin/signed:rel"\n')
    key, _ = key_pair(tmp_path / "keys")
    published = {}
    for n in (1, 2):
        registry.push_model("origin/signed", "rel", {**version(n), "model.sig": b"own %d" % n})
        assert mdl("lock", "tiny", "--upgrade").exit_code == 0
        shutil.copy(tmp_path / "catalog.lock", tmp_path / f"v{n}.lock")
        dest = str(tmp_path / f"v{n}")
        assert mdl("pull", "tiny", "--dest", dest).exit_code == 0
        to = f"oci://{host}/signed/tiny:v{n}"
        done = mdl("publish", "tiny", "--to", to, "--dest", dest, "--sign", str(key), "--force",
                   "--json")  # fmt: skip
        assert done.exit_code == 0, done.stderr
        published[n] = json.loads(done.stdout)["versions"][0]["manifest"]
    lock = str(tmp_path / "v1.lock")
    mirror = f"oci://{host}/signed/{{model}}"
    done = mdl("prune", "--mirror", mirror, "--lock", lock, "--keep-versions", "0", "--json")
    assert done.exit_code == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["removed"] == []
    kept = {e["uri"]: e["reason"] for e in report["kept"]}
    assert kept[published[1]] == f"the manifest of a version {lock} pins"
    assert kept[published[2]] == "the manifest of a version catalog.lock pins"
    for manifest in published.values():
        assert manifest_status(registry, "signed/tiny", manifest.rpartition("@")[2]) == 200
