"""``prune --mirror`` knows a swarm's names (issue 78): a claim (``names.Claim``, a lease per part)
is judged as a file's lease is, part by part: a live one stays and keeps its object's parts, a
released or lapsed one goes once past the term by the store's clock (never one below a live one);
the version's own part set (no token) goes at once when no claim on its object is live and the
object is there as that version (its mark says that sha256): the parts a killed assembler left.
Names under ``claims/`` that are not claims are not mdl's and stay. Against a real shared folder
and a real S3 server (moto), through the CLI."""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import replace
from pathlib import Path

import pytest
from runfixtures import mdl, use_catalog
from s3proxy import s3_proxy
from s3server import S3

from mdl.buckets import names
from mdl.buckets.folder import FolderWriter
from mdl.buckets.lease import TERM, lease_body
from mdl.buckets.protocol import side_of
from mdl.buckets.s3 import mdl_metadata
from mdl.catalog.load import parse_catalog
from mdl.lockfile.io import write_lock
from mdl.lockfile.model import Lock, LockedFile, LockedModel, fingerprint

COMMIT = "c" * 40
CATALOG = '[models.tiny]\nrepo = "org/tiny"\n'
TINY = {"config.json": b'{"a": 1}', "model.safetensors": b"weights" * 100}
PINS = {path: hashlib.sha256(data).hexdigest() for path, data in TINY.items()}
SIDE = side_of(f"hf://org/tiny@{COMMIT}/x")
HOLDER = "node-1:4242:0123abcd"


@pytest.fixture
def place(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A catalog of one model, ``tiny``, pinned by catalog.lock (both its files are named)."""
    catalog = use_catalog(tmp_path, monkeypatch, CATALOG, endpoint="http://127.0.0.1:9")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    spec = parse_catalog(CATALOG).models[0]
    files = tuple(
        LockedFile(path, len(data), PINS[path], f"hf://org/tiny@{COMMIT}/{path}")
        for path, data in sorted(TINY.items())
    )
    lock = Lock({"tiny": LockedModel("tiny", fingerprint(spec), "main", COMMIT, files)})
    write_lock(catalog.with_name("catalog.lock"), lock)
    return catalog


def own_part(base: str, path: str, number: int, *, pin: str | None = None) -> names.Part:
    """Part ``number`` of ``path``'s version (its pin) in the version's own set (no token)."""
    return names.Part(base, f"tiny/{path}", pin or PINS[path], 4, None, number)


def claim(base: str, path: str, number: int, generation: int = 1) -> names.Claim:
    """Generation ``generation`` of the claim on that part."""
    return replace(names.Claim.on(own_part(base, path, number)), number=generation)


# --- a shared folder ------------------------------------------------------------------------------


def aged(writer: FolderWriter, uri: str, data: bytes, age: float, **side: str) -> str:
    """``data`` created at ``uri`` as mdl creates it (exclusive, marked when a ``side`` is
    given), last written ``age`` seconds ago by the folder's clock; a claim read once, as the
    machines that take it judge it (its folder's clock touched)."""
    assert writer.create(uri, data, **side) is not None
    if isinstance(names.parse(uri), names.Claim):
        assert writer.read(uri, limit=4096) is not None
    stamp = time.time() - age
    os.utime(uri.removeprefix("file://"), (stamp, stamp))
    return uri


def test_a_folders_claims_go_as_leases_do_and_a_swarms_leftover_parts_with_them(
    place: Path, tmp_path: Path
) -> None:
    """On a shared folder: the claims of a swarm of two files, each judged by the term; the
    parts of the file whose object is there and whose claims are all released or lapsed go at
    once; those of the file with a live claim stay, as do junk names among the claims."""
    base = f"file://{tmp_path}/mirror/"
    template = base + "{model}/{path}"
    writer = FolderWriter()
    for path, data in TINY.items():  # both objects made (the swarm's assembler: marked)
        local = tmp_path / path
        local.write_bytes(data)
        uri = f"{base}tiny/{path}"
        assert writer.upload(uri, local, size=len(data), sha256=PINS[path], root=base, side=SIDE)
    hour = 3600.0
    weights, config = "model.safetensors", "config.json"
    claims = {
        "live": aged(writer, claim(base, weights, 1).uri, lease_body(HOLDER), 5.0),
        "below_live": aged(writer, claim(base, weights, 2).uri, lease_body(HOLDER), hour),
        "above": aged(writer, claim(base, weights, 2, 2).uri, lease_body(HOLDER), 5.0),
        "lapsed": aged(writer, claim(base, config, 1).uri, lease_body(HOLDER), hour),
        "released_old": aged(
            writer, claim(base, config, 2).uri, lease_body(HOLDER, released=True), hour
        ),
        "released_young": aged(
            writer, claim(base, config, 3).uri, lease_body(HOLDER, released=True), 5.0
        ),
    }
    junk = [
        aged(writer, f"{base}.mdl/claims/tiny/{weights}/notes.txt", b"junk", hour),
        aged(writer, claim(base, weights, 3).uri.removesuffix("/1") + "/007", b"junk", hour),
    ]
    side = {"side": SIDE}
    parts = {
        path: [aged(writer, own_part(base, path, n).uri, b"part", 60.0, **side) for n in (1, 2)]
        for path in TINY
    }
    # a set of another version of config.json (a newer lock's, being made): its object is not it
    other = own_part(base, config, 1, pin="e" * 64)
    aged(writer, other.uri, b"part", 60.0, **side)
    # a lease holder's set (a token): a file lease's, judged by its age as before
    held = aged(writer, replace(own_part(base, config, 1), token="d" * 32).uri, b"part", 60.0)

    result = mdl("prune", "--mirror", template, "--json")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    removed = {e["uri"]: e["reason"] for e in doc["removed"]}
    kept = {e["uri"]: e["reason"] for e in doc["kept"]}
    config_set = own_part(base, config, 1).prefix
    assert removed == {
        claims["lapsed"]: "expired claim",
        claims["released_old"]: "expired claim",
        config_set: "a swarm's parts left once its object was made",
    }
    assert [e["size"] for e in doc["removed"] if e["uri"] == config_set] == [8]
    for key in ("live", "below_live", "above"):
        assert kept[claims[key]] == "a live claim (a swarm is fetching its part)", key
    assert kept[claims["released_young"]] == (
        "a released claim (its part is published; removed once expired)"
    )
    assert kept[own_part(base, weights, 1).prefix] == "a fill's parts (one under way, or killed)"

    def there(uri: str) -> bool:
        return Path(uri.removeprefix("file://")).exists()

    assert not any(there(claims[k]) for k in ("lapsed", "released_old"))
    # a removed claim's folder goes with it, its clock too (one per part, or a share keeps them)
    assert not any(there(claims[k].rpartition("/")[0]) for k in ("lapsed", "released_old"))
    assert there(claims["released_young"].rpartition("/")[0] + "/.mdl-clock")
    assert all(there(claims[k]) for k in ("live", "below_live", "above", "released_young"))
    assert not any(there(uri) for uri in parts[config]) and all(map(there, parts[weights]))
    assert there(other.uri) and there(held) and all(map(there, junk))
    assert all(there(f"{base}tiny/{path}") for path in TINY)
    assert not any(junk_uri in result.stdout for junk_uri in junk)


def test_a_dry_run_says_the_leftovers_and_the_claims_and_removes_none(
    place: Path, tmp_path: Path
) -> None:
    base = f"file://{tmp_path}/mirror/"
    writer = FolderWriter()
    local = tmp_path / "config.json"
    local.write_bytes(TINY["config.json"])
    uri = f"{base}tiny/config.json"
    pin = PINS["config.json"]
    assert writer.upload(uri, local, size=len(TINY["config.json"]), sha256=pin, root=base)
    lapsed = aged(writer, claim(base, "config.json", 1).uri, lease_body(HOLDER), 3600.0)
    part = aged(writer, own_part(base, "config.json", 1).uri, b"part", 60.0)
    result = mdl("prune", "--mirror", base + "{model}/{path}", "--dry-run")
    assert result.exit_code == 0, result.stderr
    size = Path(lapsed.removeprefix("file://")).stat().st_size
    assert sorted(result.stdout.splitlines()) == [
        f"would remove  {lapsed}  ({size} B)  expired claim",
        f"would remove  {own_part(base, 'config.json', 1).prefix}  (4 B)"
        "  a swarm's parts left once its object was made",
    ]
    assert Path(lapsed.removeprefix("file://")).exists()
    assert Path(part.removeprefix("file://")).exists()


def test_a_swarms_parts_whose_object_is_not_there_go_by_their_age(
    place: Path, tmp_path: Path
) -> None:
    """No object (a swarm killed before it assembled one): its parts are a dead fill's, kept a day
    after the newest, then removed as any abandoned set; its lapsed claims go at once."""
    base = f"file://{tmp_path}/mirror/"
    writer = FolderWriter()
    aged(writer, f"{base}tiny/other.bin", b"an object", 60.0)  # the mirror is not empty
    day = 86_400.0
    young = aged(writer, own_part(base, "config.json", 1).uri, b"part", 60.0)
    old = aged(writer, own_part(base, "model.safetensors", 1).uri, b"part", 2 * day)
    lapsed = aged(writer, claim(base, "model.safetensors", 1).uri, lease_body(HOLDER), 2 * day)
    result = mdl("prune", "--mirror", base + "{model}/{path}", "--json")
    assert result.exit_code == 0, result.stderr
    removed = {e["uri"]: e["reason"] for e in json.loads(result.stdout)["removed"]}
    assert removed == {
        lapsed: "expired claim",
        own_part(base, "model.safetensors", 1).prefix: "abandoned upload",
    }
    assert Path(young.removeprefix("file://")).exists()
    assert not Path(old.removeprefix("file://")).exists()


# --- a bucket ---------------------------------------------------------------------------------------


@pytest.mark.slow
def test_an_s3_mirrors_claims_go_by_the_store_clock(
    place: Path, s3: S3, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bucket on a real S3 server (moto): while the store's clock says the claims are fresh, a
    live claim keeps its object's parts, and the parts of an object whose only claim is released
    go at once; once the store's clock says a term passed (a proxy moves the Date), every claim
    is past it and goes, and the rest of the parts with it; a name under claims/ that is no claim
    stays throughout."""
    template = "s3://mirror/hub/{model}/{path}"
    base = "s3://mirror/hub/"
    for path, data in TINY.items():  # the objects, as the assembler makes them (marked)
        uri = f"{base}tiny/{path}"
        said = mdl_metadata(uri, sha256=PINS[path], size=len(data), side=SIDE)
        s3.put("mirror", uri.removeprefix("s3://mirror/"), data, Metadata=said)
    key = {
        "live": claim(base, "model.safetensors", 1).uri,
        "released": claim(base, "config.json", 1).uri,
        "junk": f"{base}.mdl/claims/tiny/model.safetensors/notes.txt",
    }
    bodies = {"live": lease_body(HOLDER), "released": lease_body(HOLDER, released=True)}
    for name, uri in key.items():
        s3.put("mirror", uri.removeprefix("s3://mirror/"), bodies.get(name, b"junk"))
    sets = {path: own_part(base, path, 1).prefix for path in TINY}
    for path, prefix in sets.items():
        for number in (1, 2):
            s3.put("mirror", f"{prefix}{number:05d}".removeprefix("s3://mirror/"), b"part")
    client = s3.client()

    def held() -> set[str]:
        listed = client.list_objects_v2(Bucket="mirror", Prefix="hub/.mdl/").get("Contents", [])
        return {"s3://mirror/" + str(o["Key"]) for o in listed}

    with s3_proxy(s3.endpoint) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.endpoint)
        fresh = mdl("prune", "--mirror", template, "--json")
        assert fresh.exit_code == 0, fresh.stderr
        first = json.loads(fresh.stdout)
        after_first = held()
        proxy.date_offset = 2 * TERM
        later = mdl("prune", "--mirror", template, "--json")
        assert later.exit_code == 0, later.stderr
    kept = {e["uri"]: e["reason"] for e in first["kept"]}
    assert kept[key["live"]] == "a live claim (a swarm is fetching its part)"
    assert kept[key["released"]].startswith("a released claim")
    assert [(e["uri"], e["reason"]) for e in first["removed"]] == [
        (sets["config.json"], "a swarm's parts left once its object was made")
    ]
    weights = {f"{sets['model.safetensors']}{n:05d}" for n in (1, 2)}
    assert after_first == {key["live"], key["released"], key["junk"], *weights}
    assert sorted((e["uri"], e["reason"]) for e in json.loads(later.stdout)["removed"]) == sorted(
        [
            (key["live"], "expired claim"),
            (key["released"], "expired claim"),
            (sets["model.safetensors"], "a swarm's parts left once its object was made"),
        ]
    )
    assert held() == {key["junk"]}
