"""``mdl prune --mirror URL``: a mirror keeps what the catalog's lock names, what is younger than
--keep-days, live leases and the objects they guard, whatever mdl did not write (it carries no mdl
mark) and other models' objects (unless --all-models); it loses the rest and its expired leases.
Each case runs against every store that has a writer (``shelves``), through the CLI."""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from runfixtures import mdl, use_catalog
from s3proxy import s3_proxy
from s3server import S3

from mdl.buckets import names
from mdl.buckets.folder import file_etag
from mdl.buckets.names import Generation, namespace
from mdl.buckets.protocol import Listed, Mark, Seen, side_of
from mdl.buckets.registry import STORES
from mdl.buckets.s3 import mdl_metadata
from mdl.catalog.load import parse_catalog
from mdl.errors import ExitCode, UsageError
from mdl.lockfile.io import write_lock
from mdl.lockfile.model import Lock, LockedFile, LockedModel, fingerprint
from mdl.paths import temp_name
from mdl.redact import Secrets

COMMIT = "c" * 40
CATALOG = '[models.tiny]\nrepo = "org/tiny"\n\n[models.loose]\nrepo = "org/loose"\n'
DAY = 86_400.0
OLD = 30 * DAY  # older than any --keep-days the tests give
TINY = {"config.json": b'{"a": 1}', "model.safetensors": b"weights" * 100}


class MemWriter:
    """A store in memory with its own clock: the Writer protocol as the store keeps it."""

    def __init__(self) -> None:
        # uri → data, modified, version, mdl's mark (as S3 metadata: set by upload)
        self.objects: dict[str, tuple[bytes, float, int, bool]] = {}
        self.clock = 1_000_000_000.0
        self.deleted: list[str] = []

    def _seen(self, uri: str) -> Seen:
        data, modified, version, marked = self.objects[uri]
        # a mark bound to the object that names no side (as mdl 0.6's folder marks)
        return Seen(
            str(version), len(data), modified, self.clock, Mark(None, None) if marked else None
        )

    def head(self, uri: str) -> Seen | None:
        return self._seen(uri) if uri in self.objects else None

    def read(self, uri: str, *, limit: int = 4096, aged: bool = True) -> tuple[bytes, Seen] | None:
        return (self.objects[uri][0], self._seen(uri)) if uri in self.objects else None

    def create(self, uri: str, data: bytes) -> Seen | None:
        if uri in self.objects:
            return None
        self.objects[uri] = (data, self.clock, 1, False)
        return self._seen(uri)

    def replace(self, uri: str, data: bytes, *, etag: str) -> Seen | None:
        if uri not in self.objects or str(self.objects[uri][2]) != etag:
            return None
        self.objects[uri] = (data, self.clock, self.objects[uri][2] + 1, False)
        return self._seen(uri)

    def delete(self, uri: str, *, etag: str | None = None) -> bool:
        if uri not in self.objects or (etag is not None and str(self.objects[uri][2]) != etag):
            return False
        del self.objects[uri]
        self.deleted.append(uri)
        return True

    def upload(self, uri: str, path: Path, *, size: int, sha256: str, root: str) -> bool:
        if uri in self.objects:
            return False
        self.objects[uri] = (path.read_bytes(), self.clock, 1, True)
        return True

    def owned(self, uri: str, *, root: str) -> Seen | None:
        return self.head(uri)

    def listing(self, prefix: str, *, most: int | None = None) -> Iterator[Listed]:
        for uri in sorted(self.objects):
            if uri.startswith(prefix):
                data, modified, _, _ = self.objects[uri]
                yield Listed(uri, len(data), modified)

    def abandoned(self, prefix: str, *, before: float, remove: bool) -> list[Listed]:
        return []

    def now(self) -> float:
        return self.clock


class MemStore:
    """``mem://`` for the tests: one shared MemWriter."""

    scheme = "mem"
    takes_endpoint = True
    quotes_values = False

    def __init__(self) -> None:
        self.shelf = MemWriter()
        self.endpoints: list[str | None] = []

    def check_template(self, template: str, *, where: str) -> None:
        if not template.startswith("mem://shelf/"):
            raise UsageError(f"{where}: only the shelf, got {template!r}")

    def writer(self, *, endpoint: str | None, secrets: Secrets | None) -> MemWriter:
        self.endpoints.append(endpoint)
        return self.shelf

    def signer(self, *, endpoint: str | None, secrets: Secrets | None) -> object:
        raise AssertionError("prune never presigns")


@dataclass
class Shelf:
    """A mirror for one test: its template, and how to put an object in it ``age`` seconds old by
    the store's clock, as mdl uploads it (with its mark) or (``marked=False``) another tool."""

    template: str
    put: Callable[..., None]
    has: Callable[[str], bool]

    def uri(self, model: str, path: str) -> str:
        return self.template.replace("{model}", model).replace("{path}", path)


@pytest.fixture
def mem_shelf(monkeypatch: pytest.MonkeyPatch) -> Shelf:
    """``mem://``: a store with a clock the test sets."""
    store = MemStore()
    monkeypatch.setitem(STORES, "mem", store)
    writer = store.shelf

    def put(uri: str, data: bytes, age: float, *, marked: bool = True) -> None:
        writer.objects[uri] = (data, writer.clock - age, 1, marked)

    return Shelf("mem://shelf/hub/{model}/{path}", put, lambda uri: uri in writer.objects)


def file_shelf(folder: Path) -> Shelf:
    """``file://``: a shared folder, whose clock is a fresh mtime (this machine's, here): an
    object is aged by its mtime."""

    template = f"file://{folder}/mirror/{{model}}/{{path}}"

    def put(uri: str, data: bytes, age: float, *, marked: bool = True) -> None:
        path = Path(uri.removeprefix("file://"))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        stamp = time.time() - age
        os.utime(path, (stamp, stamp))
        if marked:  # as FolderWriter.upload marks what it wrote: its version, in mdl's namespace
            mark = Path(
                names.Mark.of(uri, root=f"file://{folder}/mirror/").uri.removeprefix("file://")
            )
            mark.parent.mkdir(parents=True, exist_ok=True)
            mark.write_text(file_etag(path.stat()))

    def has(uri: str) -> bool:
        return Path(uri.removeprefix("file://")).exists()

    return Shelf(template, put, has)


@pytest.fixture(params=["mem", "file"])
def shelf(request: pytest.FixtureRequest, tmp_path: Path) -> Shelf:
    """Each store with a writer: the cases hold for all of them."""
    if request.param == "file":
        return file_shelf(tmp_path / "shared")
    return request.getfixturevalue("mem_shelf")  # type: ignore[no-any-return]


@pytest.fixture
def place(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A catalog of two models, ``tiny`` pinned by catalog.lock, ``loose`` not."""
    catalog = use_catalog(tmp_path, monkeypatch, CATALOG, endpoint="http://127.0.0.1:9")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    spec = next(m for m in parse_catalog(CATALOG).models if m.name == "tiny")
    files = tuple(
        LockedFile(
            path, len(data), hashlib.sha256(data).hexdigest(), f"hf://org/tiny@{COMMIT}/{path}"
        )
        for path, data in sorted(TINY.items())
    )
    lock = Lock({"tiny": LockedModel("tiny", fingerprint(spec), "main", COMMIT, files)})
    write_lock(catalog.with_name("catalog.lock"), lock)
    return catalog


def lease_of(template: str, uri: str) -> str:
    """The first generation of ``uri``'s lease (in mdl's namespace of the mirror)."""
    root = namespace(template)
    assert root is not None
    return Generation.of(root, uri).uri


def stocked(shelf: Shelf) -> dict[str, str]:
    """The mirror as a fleet leaves it, every object written by mdl: tiny's pinned files, an old
    and a young object of tiny's no pin names, a model the catalog no longer names, loose's file
    (not pinned), a file under a live lease and its lease, an expired lease."""
    uris = {
        "named": shelf.uri("tiny", "config.json"),
        "named_weights": shelf.uri("tiny", "model.safetensors"),
        "old": shelf.uri("gone", "model.safetensors"),
        "old_version": shelf.uri("tiny", "old.bin"),
        "young": shelf.uri("tiny", "newer.bin"),
        "unpinned": shelf.uri("loose", "weights.bin"),
        "guarded": shelf.uri("filling", "big.bin"),
        "live": lease_of(shelf.template, shelf.uri("filling", "big.bin")),
        "expired": lease_of(shelf.template, shelf.uri("tiny", "model.safetensors")),
    }
    ages = {"young": 3600.0, "live": 5.0, "expired": 3600.0}
    for key, uri in uris.items():
        named = key.startswith("named")
        data = TINY[uri.rsplit("/", 1)[-1]] if named else b"lease" if key in ages else b"x" * 10
        shelf.put(uri, data, ages.get(key, OLD))
    return uris


def test_prune_keeps_what_the_lock_names_and_what_is_leased_and_removes_the_rest(
    place: Path, shelf: Shelf
) -> None:
    uris = stocked(shelf)
    result = mdl("prune", "--mirror", shelf.template)
    assert result.exit_code == 0, result.stderr
    gone = {uris[k] for k in ("old_version", "expired")}
    for key, uri in uris.items():
        assert shelf.has(uri) == (uri not in gone), key
    rows = result.stdout.splitlines()
    assert sorted(row.split("  ")[1] for row in rows) == sorted(gone)
    assert f"removed  {uris['old_version']}  (10 B)  named by no kept version" in rows
    assert f"removed  {uris['expired']}  (5 B)  expired lease" in rows
    assert f"in 2 object(s) of {shelf.template}; kept 7" in result.stderr


def test_all_models_also_prunes_a_model_the_catalog_no_longer_names(
    place: Path, shelf: Shelf
) -> None:
    """Without the flag a model the catalog does not name is another catalog's as far as prune
    can tell: kept. With --all-models what mdl wrote for it goes too."""
    uris = stocked(shelf)
    result = mdl("prune", "--mirror", shelf.template, "--all-models")
    assert result.exit_code == 0, result.stderr
    gone = {uris[k] for k in ("old", "old_version", "expired")}
    for key, uri in uris.items():
        assert shelf.has(uri) == (uri not in gone), key
    assert f"removed  {uris['old']}  (10 B)  named by no kept version" in result.stdout


def test_dry_run_removes_nothing_and_says_what_it_would(place: Path, shelf: Shelf) -> None:
    uris = stocked(shelf)
    result = mdl("prune", "--mirror", shelf.template, "--dry-run")
    assert result.exit_code == 0, result.stderr
    assert all(shelf.has(uri) for uri in uris.values())
    assert len(result.stdout.splitlines()) == 2
    assert all(row.startswith("would remove  ") for row in result.stdout.splitlines())
    assert "would free" in result.stderr


def test_keep_days_decides_what_is_young(place: Path, shelf: Shelf) -> None:
    uris = stocked(shelf)
    # 0 days: every unnamed object goes, however young; the leased one and the named stay
    result = mdl("prune", "--mirror", shelf.template, "--keep-days", "0")
    assert result.exit_code == 0, result.stderr
    assert not shelf.has(uris["young"])
    assert shelf.has(uris["guarded"]) and shelf.has(uris["live"]) and shelf.has(uris["named"])


def test_the_json_report_says_each_object_and_why(place: Path, shelf: Shelf) -> None:
    uris = stocked(shelf)
    result = mdl("prune", "--mirror", shelf.template, "--json")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["ok"] is True and doc["dry_run"] is False and doc["keep_days"] == 7
    assert doc["mirror"] == shelf.template
    removed = {e["uri"]: e for e in doc["removed"]}
    kept = {e["uri"]: e["reason"] for e in doc["kept"]}
    assert removed[uris["old_version"]] == {
        "uri": uris["old_version"],
        "size": 10,
        "reason": "named by no kept version",
        "removed": True,
    }
    assert doc["freed"] == sum(e["size"] for e in doc["removed"])
    assert kept == {
        uris["named"]: "named by catalog.lock",
        uris["named_weights"]: "named by catalog.lock",
        uris["old"]: "not a model of this catalog (--all-models prunes every model's)",
        uris["young"]: "younger than 7 day(s)",
        uris["unpinned"]: "loose has no fresh catalog.lock entry: its objects are kept",
        uris["guarded"]: "a fill holds its lease",
        uris["live"]: "a live lease (a fill is under way)",
    }


def test_a_write_killed_midway_leaves_a_temp_file_prune_removes_after_a_day(
    place: Path, tmp_path: Path
) -> None:
    """``kill -9`` during a copy leaves the write's temp file: never an object, removed once a day
    old by the folder's clock; a younger one may be a write under way and is left alone."""
    shelf = file_shelf(tmp_path / "shared")
    uris = stocked(shelf)
    folder = Path(uris["old"].removeprefix("file://")).parent
    left, writing = folder / temp_name("model.safetensors"), folder / temp_name("other.bin")
    for temp, age in ((left, 2 * DAY), (writing, 3600.0)):
        temp.write_bytes(b"half")
        os.utime(temp, (time.time() - age, time.time() - age))
    result = mdl("prune", "--mirror", shelf.template)
    assert result.exit_code == 0, result.stderr
    assert not left.exists() and writing.exists()
    assert f"removed  file://{left}  (4 B)  abandoned upload" in result.stdout.splitlines()
    assert str(writing) not in result.stdout + result.stderr


def test_a_lease_renewed_after_the_listing_is_kept(
    place: Path, mem_shelf: Shelf, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The listing saw it expired; its holder renewed it before prune came to it: it stays, as
    does its object."""
    shelf = mem_shelf
    uris = stocked(shelf)
    writer = STORES["mem"].shelf  # type: ignore[attr-defined]
    listing = writer.listing

    def renewing_listing(prefix: str) -> Iterator[Listed]:
        yield from list(listing(prefix))
        writer.replace(uris["expired"], b"renewed", etag="1")  # a fresh version, now

    monkeypatch.setattr(writer, "listing", renewing_listing)
    result = mdl("prune", "--mirror", shelf.template, "--keep-days", "0", "--json")
    assert result.exit_code == 0, result.stderr
    assert shelf.has(uris["expired"]) and shelf.has(uris["named_weights"])
    kept = {e["uri"]: e["reason"] for e in json.loads(result.stdout)["kept"]}
    assert kept[uris["expired"]] == "a live lease (a fill is under way)"


def test_a_listed_key_with_control_characters_is_shown_escaped(place: Path, shelf: Shelf) -> None:
    """Removed where the store can address it; a shared folder refuses such a name (it cannot be a
    URI of it): kept, with a warning. Either way it is shown escaped, never raw."""
    hostile = shelf.uri("tiny", "evil\x1b[2J\rname.bin")
    shelf.put(hostile, b"x", OLD)
    result = mdl("prune", "--mirror", shelf.template)
    assert result.exit_code == 0, result.stderr
    said = result.stdout + result.stderr
    assert "\x1b" not in said and "\r" not in said
    assert "\\x1b[2J\\rname.bin" in said
    if shelf.template.startswith("file://"):
        assert shelf.has(hostile) and "kept" in result.stderr
    else:
        assert not shelf.has(hostile) and "removed  " in result.stdout
    doc = json.loads(mdl("prune", "--mirror", shelf.template, "--json").stdout)
    assert doc["removed"] == []


def test_a_catalog_mirrors_endpoint_is_used_for_its_template(
    tmp_path: Path, place: Path, mem_shelf: Shelf
) -> None:
    shelf = mem_shelf
    place.write_text(
        f'[settings]\nmirrors = [{{ url = "{shelf.template}", endpoint = "http://127.0.0.1:9" }}]\n'
        + CATALOG
    )
    # the lock's fingerprints are of the models alone: still fresh
    result = mdl("prune", "--mirror", shelf.template, "--dry-run")
    assert result.exit_code == 0, result.stderr
    assert STORES["mem"].endpoints == ["http://127.0.0.1:9"]  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("--mirror", "http://models.internal/{model}/{path}"), "not in an object store"),
        (("--mirror", "mem://shelf/{model}/{nope}"), "--mirror"),
        (("--mirror", "mem://other/{model}/{path}"), "only the shelf"),
        (("--keep-days", "3"), "--keep-days is for a mirror"),
        (("--all-models",), "--all-models is for a mirror"),
        (("--mirror", "mem://shelf/{model}/{path}", "--keep-days", "-1"), "--keep-days"),
        (("--mirror", "mem://shelf/{model}/{path}", "--dest", "x"), "drop --dest"),
    ],
)
def test_a_bad_mirror_or_option_is_exit_2_naming_it(
    place: Path, mem_shelf: Shelf, args: tuple[str, ...], words: str
) -> None:
    result = mdl("prune", *args)
    assert result.exit_code == ExitCode.USAGE, result.stdout
    assert words in result.stderr
    assert STORES["mem"].shelf.deleted == []  # type: ignore[attr-defined]


def test_a_model_not_pinned_with_objects_not_by_model_keeps_everything(
    place: Path, mem_shelf: Shelf
) -> None:
    """A content-addressed mirror ({sha256} first): loose's objects cannot be told from others'."""
    shelf = mem_shelf
    shelf.put("mem://shelf/cas/" + "0" * 64, b"x", OLD)
    result = mdl("prune", "--mirror", "mem://shelf/cas/{sha256}", "--json")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["removed"] == [] and shelf.has("mem://shelf/cas/" + "0" * 64)
    assert any("every object is kept" in w for w in doc["warnings"])


@pytest.mark.slow
def test_an_s3_mirror_is_pruned_by_the_store_clock(
    place: Path, s3: S3, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bucket on a real S3 server (moto), its clock read from its replies' Date: while every
    object is fresh nothing goes; once the store's clock says two days passed (a proxy moves the
    Date), the unnamed objects go, and the lease that was live has expired, so its object goes
    too; the named objects and an unpinned model's stay throughout."""
    template = "s3://mirror/hub/{model}/{path}"
    keys = {
        "named": "hub/tiny/config.json",
        "named_weights": "hub/tiny/model.safetensors",
        "old": "hub/gone/model.safetensors",
        "unpinned": "hub/loose/weights.bin",
        "guarded": "hub/filling/big.bin",
        "lease": "hub/.mdl/leases/filling/big.bin/1",
    }
    for name, key in keys.items():
        data = TINY.get(key.rsplit("/", 1)[-1], b"x" * 10) if "named" in name else b"x"
        # as mdl uploads: with its mark (the lease, as mdl creates one, without)
        sha256, side = hashlib.sha256(data).hexdigest(), side_of(f"hf://org/tiny@{COMMIT}/x")
        said = mdl_metadata(f"s3://mirror/{key}", sha256=sha256, size=len(data), side=side)
        marked = {} if name == "lease" else {"Metadata": said}
        s3.put("mirror", key, data, **marked)
    client = s3.client()

    def uploads() -> list[str]:
        return [
            str(u["Key"]) for u in client.list_multipart_uploads(Bucket="mirror").get("Uploads", [])
        ]

    def held() -> set[str]:
        listed = client.list_objects_v2(Bucket="mirror", Prefix="hub/").get("Contents", [])
        return {str(o["Key"]) for o in listed}

    with s3_proxy(s3.endpoint) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.endpoint)
        fresh = mdl("prune", "--mirror", template, "--json", "--all-models")
        assert fresh.exit_code == 0, fresh.stderr
        kept = {e["uri"]: e["reason"] for e in json.loads(fresh.stdout)["kept"]}
        assert json.loads(fresh.stdout)["removed"] == [] and held() == set(keys.values())
        # a fill killed midway leaves its multipart upload: parts billed, never an object (moto
        # says every upload began in 2010: a young one's staying is the folder's test)
        client.create_multipart_upload(Bucket="mirror", Key="hub/gone/killed.bin")
        assert uploads() == ["hub/gone/killed.bin"]
        assert kept["s3://mirror/hub/gone/model.safetensors"] == "younger than 7 day(s)"
        assert kept["s3://mirror/" + keys["lease"]] == "a live lease (a fill is under way)"
        assert kept["s3://mirror/" + keys["guarded"]] == "a fill holds its lease"
        proxy.date_offset = 2 * DAY
        later = mdl("prune", "--mirror", template, "--keep-days", "1", "--all-models")
        assert later.exit_code == 0, later.stderr
    assert held() == {keys["named"], keys["named_weights"], keys["unpinned"]}
    assert uploads() == []
    assert sorted(row.split("  ")[1] for row in later.stdout.splitlines()) == sorted(
        ["s3://mirror/" + keys[k] for k in ("old", "guarded", "lease")]
        + ["s3://mirror/hub/gone/killed.bin"]
    )
    assert "removed  s3://mirror/hub/gone/killed.bin  (0 B)  abandoned upload" in later.stdout


def test_what_mdl_did_not_write_stays_however_old(place: Path, shelf: Shelf) -> None:
    """A bucket other teams share: their data beside the models (no mdl mark) stays, a week old
    or a year; another catalog's filled model stays unless --all-models, and even then only what
    mdl wrote of it goes."""
    uris = stocked(shelf)
    root = shelf.template.removesuffix("{model}/{path}")
    foreign = {
        "dataset": root + "datasets/train.parquet",
        "backup": root + "backups/db.sql.gz",
        "readme": root + "README.md",
        "beside": shelf.uri("tiny", "notes.txt"),  # in a model of this catalog, not by mdl
        "theirs_by_hand": shelf.uri("other-team", "eval.json"),
    }
    for uri in foreign.values():
        shelf.put(uri, b"theirs", 8 * DAY, marked=False)
    theirs = shelf.uri("other-team", "model.safetensors")  # another catalog's fill
    shelf.put(theirs, b"x" * 10, OLD)
    result = mdl("prune", "--mirror", shelf.template, "--json")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert all(shelf.has(uri) for uri in [*foreign.values(), theirs]), doc["removed"]
    kept = {e["uri"]: e["reason"] for e in doc["kept"]}
    assert (
        kept[foreign["beside"]]
        == "not written by mdl at this name (no mdl mark made for it: a copy, another tool's)"
    )
    assert kept[foreign["dataset"]].startswith("not a model of this catalog")
    assert kept[theirs].startswith("not a model of this catalog")
    assert {e["uri"] for e in doc["removed"]} == {uris["old_version"], uris["expired"]}
    every = mdl("prune", "--mirror", shelf.template, "--all-models", "--json")
    assert every.exit_code == 0, every.stderr
    assert all(shelf.has(uri) for uri in foreign.values())
    assert not shelf.has(theirs) and not shelf.has(uris["old"])
    kept = {e["uri"]: e["reason"] for e in json.loads(every.stdout)["kept"]}
    assert (
        kept[foreign["dataset"]]
        == "not written by mdl at this name (no mdl mark made for it: a copy, another tool's)"
    )


def test_a_template_not_by_model_keeps_every_object_it_does_not_name(
    place: Path, mem_shelf: Shelf
) -> None:
    """{model} not first: the catalog's models' objects cannot be told from others' (said once)."""
    template = "mem://shelf/cas/{path}"
    mem_shelf.put("mem://shelf/cas/w.bin", b"x", OLD)
    result = mdl("prune", "--mirror", template, "--json")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["removed"] == [] and mem_shelf.has("mem://shelf/cas/w.bin")
    assert any("{model} does not come first" in w for w in doc["warnings"])


def test_the_dry_run_says_when_each_young_object_goes(place: Path, shelf: Shelf) -> None:
    """The weekly dry run shows next week's removals: for each object kept only for its age, the
    date the same command removes it (the store's clock), in words and in --json."""
    uris = stocked(shelf)
    dry = mdl("prune", "--mirror", shelf.template, "--dry-run")
    assert dry.exit_code == 0, dry.stderr
    line = next(row for row in dry.stderr.splitlines() if uris["young"] in row)
    assert "younger than 7 day(s); would be removed after 20" in line
    assert "(in 7.0 day(s))" in line  # an hour old: 6.96 days to go
    doc = json.loads(mdl("prune", "--mirror", shelf.template, "--dry-run", "--json").stdout)
    young = next(e for e in doc["kept"] if e["uri"] == uris["young"])
    assert young["removed_in_days"] == pytest.approx(7 - 1 / 24, abs=0.01)
    assert young["removed_after"].endswith("Z") and young["removed_after"][:4].isdigit()
    # only age keeps it: not an unmarked object, nor one of another model
    assert all("removed_after" not in e for e in doc["kept"] if e["uri"] != uris["young"])
    # a week later the same command removes it
    if shelf.template.startswith("mem://"):
        STORES["mem"].shelf.clock += 7 * DAY  # type: ignore[attr-defined]
    else:
        path = Path(uris["young"].removeprefix("file://"))
        stamp = time.time() - 8 * DAY
        os.utime(path, (stamp, stamp))
        Path(
            names.Mark.of(uris["young"], root=shelf.template.partition("{")[0]).uri[7:]
        ).write_text(file_etag(path.stat()))
    later = mdl("prune", "--mirror", shelf.template)
    assert later.exit_code == 0, later.stderr
    assert not shelf.has(uris["young"])


@pytest.mark.slow
def test_objects_mdl_uploads_carry_the_mark_prune_honours(
    place: Path, tmp_path: Path, s3: S3, monkeypatch: pytest.MonkeyPatch
) -> None:
    """End to end on real stores: what a fill's writer uploads (S3 on moto, a shared folder)
    goes once old; an object another tool wrote at a name beside it stays."""
    source = tmp_path / "w.bin"
    source.write_bytes(b"w" * 10)
    sha = hashlib.sha256(b"w" * 10).hexdigest()
    s3.put("mirror", "hub/tiny/other.bin", b"theirs")  # no mdl mark: another tool's
    writer = STORES["s3"].writer(endpoint=None, secrets=None)
    template = "s3://mirror/hub/{model}/{path}"
    assert writer.upload("s3://mirror/hub/tiny/w.bin", source, size=10, sha256=sha, root="x")
    folder = file_shelf(tmp_path / "shared")
    ours, theirs = folder.uri("tiny", "w.bin"), folder.uri("tiny", "other.bin")
    root = folder.template.partition("{")[0]
    assert (
        STORES["file"]
        .writer(endpoint=None, secrets=None)
        .upload(ours, source, size=10, sha256=sha, root=root)
    )
    folder.put(theirs, b"theirs", 8 * DAY, marked=False)
    with s3_proxy(s3.endpoint) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.endpoint)
        proxy.date_offset = 8 * DAY
        pruned = mdl("prune", "--mirror", template, "--json")
    assert pruned.exit_code == 0, pruned.stderr
    client = s3.client()
    held = {o["Key"] for o in client.list_objects_v2(Bucket="mirror")["Contents"]}
    assert held == {"hub/tiny/other.bin"}, pruned.stdout
    kept = {e["uri"]: e["reason"] for e in json.loads(pruned.stdout)["kept"]}
    assert (
        kept["s3://mirror/hub/tiny/other.bin"]
        == "not written by mdl at this name (no mdl mark made for it: a copy, another tool's)"
    )
    # the mark FolderWriter.upload wrote, as it wrote it: --keep-days 0 (touching the file
    # would make it another version, unmarked)
    on_disk = mdl("prune", "--mirror", folder.template, "--keep-days", "0")
    assert on_disk.exit_code == 0, on_disk.stderr
    assert not folder.has(ours) and folder.has(theirs)
    assert not Path(names.Mark.of(ours, root=root).uri[7:]).exists()  # its mark went with it


def test_a_folder_mirrors_marks_are_its_own_and_go_with_its_objects(tmp_path: Path) -> None:
    """Two mirrors in one folder (``a-{model}``, ``b-{model}``) share its ``.mdl/marks/``: pruning
    one removes the marks of the objects it removed, never the other mirror's."""
    from mdl.buckets.folder import FolderWriter
    from mdl.upload.mirrorprune import Named, model_prefix, prune_mirror

    source = tmp_path / "w.bin"
    source.write_bytes(b"w")
    sha = hashlib.sha256(b"w").hexdigest()
    writer = FolderWriter()
    a, b = f"file://{tmp_path}/a-{{model}}/{{path}}", f"file://{tmp_path}/b-{{model}}/{{path}}"
    uris = {t: t.replace("{model}", "m").replace("{path}", "w.bin") for t in (a, b)}
    for template, uri in uris.items():
        assert writer.upload(uri, source, size=1, sha256=sha, root=template.partition("{")[0])
    marks = {t: Path(names.Mark.of(u, root=t.partition("{")[0]).uri[7:]) for t, u in uris.items()}
    assert all(mark.exists() for mark in marks.values())
    report = prune_mirror(writer, a, Named({}, {}, (model_prefix(a, "m"),)), keep_days=0)
    assert [e.uri for e in report.removed] == [uris[a]]
    assert not marks[a].exists() and marks[b].exists()
    assert Path(uris[b][7:]).exists()


def test_another_catalogs_model_whose_name_starts_with_ours_stays(
    place: Path, tmp_path: Path
) -> None:
    """``{model}-{revision}``: the pinned ``tiny`` owned every object under ``tiny-``, so another
    catalog's ``tiny-x`` (``tiny-x-main/…``, filled by mdl, marked) went after a week. A model's
    part ends at a character no model name holds (``/``); with none before the next placeholder
    the models cannot be told apart: only what the catalog names is known, the rest stays."""
    from mdl.upload.mirrorprune import model_prefix

    folder = file_shelf(tmp_path / "shared")
    template = folder.template.replace("{model}/", "{model}-{revision}/")
    theirs = template.replace("{model}-{revision}", "tiny-x-main").replace("{path}", "w.bin")
    folder.put(theirs, b"theirs", OLD)
    result = mdl("prune", "--mirror", template, "--json")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["removed"] == [] and folder.has(theirs)
    assert any("cannot be told from others'" in w for w in doc["warnings"])
    assert model_prefix(folder.template, "tiny") == folder.uri("tiny", "")


PIN = "a" * 64  # a file's sha256: its parts' set is <ns>parts/<object path>/<pin>-<part size>/


def part_set(shelf: Shelf, model: str, path: str, ages: list[float], *, pin: str = PIN) -> str:
    """A fill's published parts of ``model``'s ``path`` (4 bytes each, ``ages`` old by the store's
    clock, in order), as a leader leaves them: plain objects in mdl's namespace. Their folder."""
    root = namespace(shelf.template)
    assert root is not None
    folder = f"{root}parts/{model}/{path}/{pin}-4/"
    for number, age in enumerate(ages, 1):
        shelf.put(f"{folder}{number:05d}", b"part", age, marked=False)
    return folder


def stocked_parts(shelf: Shelf) -> dict[str, str]:
    """The parts fills left: a dead leader's (every part older than a day), a live one's (young),
    one whose leader published a part an hour ago after a long stall, another model's, the parts
    of an object under a live lease, and names under ``parts/`` not shaped as parts."""
    stocked(shelf)
    sets = {
        "dead": part_set(shelf, "tiny", "model.safetensors", [3 * DAY, 2 * DAY, 2 * DAY]),
        "live": part_set(shelf, "tiny", "config.json", [3600.0, 60.0]),
        "stalled": part_set(shelf, "tiny", "newer.bin", [3 * DAY, 3600.0], pin="b" * 40),
        "other": part_set(shelf, "gone", "model.safetensors", [3 * DAY]),
        "leased": part_set(shelf, "filling", "big.bin", [3 * DAY]),
    }
    foreign = {
        "note": sets["dead"] + "notes.txt",
        "unnumbered": sets["dead"].rsplit("/", 2)[0] + "/00001",
        "unpinned": sets["dead"].replace(PIN, "not-a-pin") + "00001",
    }
    for uri in foreign.values():
        shelf.put(uri, b"foreign", OLD, marked=False)
    return sets | foreign


def test_a_dead_fills_parts_go_a_set_at_a_time_once_a_day_old(place: Path, shelf: Shelf) -> None:
    """A set of parts is abandoned when its newest part is over a day old by the store's clock:
    all its parts go, said as one abandoned upload with its bytes. A set with any young part may
    be a live leader's, an object under a live lease is being filled, another model's parts are
    another catalog's (but with --all-models), and a name not shaped as a part is not mdl's."""
    uris = stocked_parts(shelf)
    result = mdl("prune", "--mirror", shelf.template)
    assert result.exit_code == 0, result.stderr
    dead = [f"{uris['dead']}{n:05d}" for n in (1, 2, 3)]
    assert not any(shelf.has(uri) for uri in dead)
    assert f"removed  {uris['dead']}  (12 B)  abandoned upload" in result.stdout.splitlines()
    for key in ("live", "stalled", "other", "leased"):
        assert shelf.has(uris[key] + "00001"), key
    assert shelf.has(uris["live"] + "00002") and shelf.has(uris["stalled"] + "00002")
    for key in ("note", "unnumbered", "unpinned"):
        assert shelf.has(uris[key]), key
    assert "parts/" not in result.stdout.replace(uris["dead"], "")

    every = mdl("prune", "--mirror", shelf.template, "--all-models", "--json")
    assert every.exit_code == 0, every.stderr
    removed = [e for e in json.loads(every.stdout)["removed"] if "/parts/" in e["uri"]]
    assert removed == [
        {"uri": uris["other"], "size": 4, "reason": "abandoned upload", "removed": True}
    ]
    assert not shelf.has(uris["other"] + "00001") and shelf.has(uris["leased"] + "00001")


def test_a_dry_run_says_the_abandoned_parts_and_removes_none(place: Path, shelf: Shelf) -> None:
    uris = stocked_parts(shelf)
    result = mdl("prune", "--mirror", shelf.template, "--dry-run")
    assert result.exit_code == 0, result.stderr
    assert f"would remove  {uris['dead']}  (12 B)  abandoned upload" in result.stdout.splitlines()
    assert all(shelf.has(f"{uris['dead']}{n:05d}") for n in (1, 2, 3))
    doc = json.loads(mdl("prune", "--mirror", shelf.template, "--dry-run", "--json").stdout)
    assert {"uri": uris["dead"], "size": 12, "reason": "abandoned upload", "removed": False} in (
        doc["removed"]
    )
    assert shelf.has(uris["dead"] + "00001")


@pytest.mark.slow
def test_an_s3_mirrors_abandoned_parts_go_by_the_store_clock(
    place: Path, s3: S3, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bucket on a real S3 server (moto): parts a leader published stay while the store's clock
    says they are fresh; once it says two days passed (a proxy moves the Date), the set goes, part
    by part, while another model's parts and a name not shaped as a part stay."""
    template = "s3://mirror/hub/{model}/{path}"
    folder = f"hub/.mdl/parts/tiny/model.safetensors/{PIN}-4/"
    keys = {
        "parts": [f"{folder}0000{n}" for n in (1, 2)],
        "other": [f"hub/.mdl/parts/gone/model.safetensors/{PIN}-4/00001"],
        "foreign": [f"{folder}notes.txt", "hub/.mdl/parts/tiny/model.safetensors/00001"],
    }
    every = {key for group in keys.values() for key in group}
    for key in every:
        s3.put("mirror", key, b"part")
    s3.put("mirror", "hub/tiny/config.json", TINY["config.json"])  # an object: the mirror is
    client = s3.client()

    def held() -> set[str]:
        listed = client.list_objects_v2(Bucket="mirror", Prefix="hub/.mdl/").get("Contents", [])
        return {str(o["Key"]) for o in listed}

    with s3_proxy(s3.endpoint) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.endpoint)
        fresh = mdl("prune", "--mirror", template)
        assert fresh.exit_code == 0, fresh.stderr
        assert fresh.stdout == "" and held() == every
        proxy.date_offset = 2 * DAY
        dry = mdl("prune", "--mirror", template, "--dry-run")
        assert dry.exit_code == 0, dry.stderr
        assert held() == every
        later = mdl("prune", "--mirror", template)
        assert later.exit_code == 0, later.stderr
    assert held() == set(keys["other"] + keys["foreign"])
    row = f"s3://mirror/{folder}  (8 B)  abandoned upload"
    assert dry.stdout.splitlines() == [f"would remove  {row}"]
    assert later.stdout.splitlines() == [f"removed  {row}"]


def test_a_generation_below_a_live_one_is_kept(place: Path, shelf: Shelf) -> None:
    """Issue 75, C: machines find a lease by walking its numbers from 1 by name; generations 1-6
    expired below a live 7 removed would leave a gap no walk crosses, and a machine would take
    number 1 beside the live holder. They stay while 7 is live; once it expires, all go."""
    uris = stocked(shelf)
    below = [uris["live"].removesuffix("1") + str(n) for n in range(2, 8)]
    shelf.put(uris["live"], b"lease", 3600.0)  # 1 expired
    for n, uri in enumerate(below, 2):
        shelf.put(uri, b"lease", 5.0 if n == 7 else 3600.0)
    result = mdl("prune", "--mirror", shelf.template)
    assert result.exit_code == 0, result.stderr
    assert all(shelf.has(uri) for uri in [uris["live"], *below])
    assert shelf.has(uris["guarded"])
