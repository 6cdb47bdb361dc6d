"""The "add a store" recipe: a store registered for a new scheme (here a fake, ``fake://``) is found
by the one lookup and used by every caller (mirror templates checked and filled, the mirror path
presigning, ``mdl get``'s sources), with no other module touched."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from servers import CdnServer, Fault, make_data

from mdl.buckets._s3store import S3Store
from mdl.buckets.protocol import StoredObject
from mdl.buckets.registry import STORES, store_for, store_schemes
from mdl.catalog.load import parse_catalog
from mdl.catalog.settings import build_settings, check_mirror
from mdl.catalog.specs import CatalogSettings
from mdl.download.puller import pull_models
from mdl.errors import ExitCode, MdlError, UsageError
from mdl.progress import NullProgress
from mdl.redact import Secrets
from mdl.setting import Overrides
from mdl.sources.joboutput import UrlFile
from mdl.sources.oneoff import parse_sources
from mdl.sources.resolve import RemoteFile, mirror_targets

DATA = make_data(20_001, seed=5)
TEMPLATE = "fake://shelf/{model}/{path}"


class FakeSigner:
    """Signs ``fake://shelf/<key>`` as a GET of ``<base>/<key>`` on a loopback server."""

    def __init__(self, base: str, endpoint: str | None, signed: list[tuple[str, str | None]]):
        self.base, self.endpoint, self.signed = base, endpoint, signed

    def presign(self, uri: str) -> str:
        self.signed.append((uri, self.endpoint))
        key = uri.removeprefix("fake://shelf/")
        return f"{self.base}/{quote(key)}"


class FakeStore:
    """A store in a few lines: what a new store module provides."""

    scheme = "fake"
    takes_endpoint = True
    quotes_values = False

    def __init__(self, base: str = "http://127.0.0.1:9") -> None:
        self.base = base
        self.signed: list[tuple[str, str | None]] = []

    def check_template(self, template: str, *, where: str) -> None:
        if not template.startswith("fake://shelf/"):
            raise UsageError(f"{where}: only the shelf, got {template!r}")

    def one_off(self, uri: str, *, secrets: Secrets | None) -> StoredObject:
        key = uri.removeprefix("fake://shelf/")
        url = f"{self.base}/{key}?sig=abc"
        return StoredObject(key.rsplit("/", 1)[-1], url, len(DATA), None, where=uri)

    def signer(self, *, endpoint: str | None, secrets: Secrets | None) -> FakeSigner:
        return FakeSigner(self.base, endpoint, self.signed)

    def reason(self, text: str | None, status: int | None) -> str | None:
        return "no such shelf" if "NoShelf" in (text or "") else None

    def is_down(self, said: str) -> bool:
        return "NoShelf" in said


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeStore]:
    """The fake store registered as the registry's line for ``fake``, for one test."""
    store = FakeStore()
    monkeypatch.setitem(STORES, "fake", store)
    yield store


def test_the_lookup_finds_a_store_by_its_scheme(fake: FakeStore) -> None:
    assert store_for("fake://shelf/a/b.bin") is fake
    assert isinstance(store_for("s3://bucket/key"), S3Store)
    assert store_for("https://host/fake://x") is None
    assert store_for("/a/local/path") is None
    assert store_for("FAKE://shelf/a") is None  # schemes as registered, as before


def test_mirror_templates_of_the_store_are_checked_by_it(fake: FakeStore) -> None:
    assert check_mirror(TEMPLATE, where="--mirror") == TEMPLATE
    with pytest.raises(UsageError, match="only the shelf"):
        check_mirror("fake://attic/{path}", where="--mirror")
    with pytest.raises(UsageError) as caught:
        check_mirror("ftp://m/{path}", where="--mirror")
    # every registered store's scheme, the test's last: a real new store breaks nothing here
    assert store_schemes().endswith(" or fake://")
    assert f"or one in a store ({store_schemes()})" in caught.value.message


def test_a_catalog_mirror_in_the_store_may_name_its_endpoint(fake: FakeStore) -> None:
    catalog = parse_catalog(
        f'[settings]\nmirrors = [{{ url = "{TEMPLATE}", endpoint = "http://127.0.0.1:9/" }}]'
        '\n\n[models.x]\nrepo = "a/b"\n'
    )
    assert catalog.settings.mirror_endpoints == ((TEMPLATE, "http://127.0.0.1:9"),)
    with pytest.raises(MdlError) as caught:
        parse_catalog(
            '[settings]\nmirrors = [{ url = "http://m/{path}", endpoint = "http://e" }]'
            '\n\n[models.x]\nrepo = "a/b"\n'
        )
    assert caught.value.exit_code == ExitCode.USAGE
    assert store_schemes(endpoint=True).endswith(" or fake://")
    assert f"an endpoint is for {store_schemes(endpoint=True)} mirrors" in caught.value.message


def test_mirror_values_are_left_for_the_store_to_quote(fake: FakeStore) -> None:
    remote = RemoteFile("m", "a b/c.bin", url="", size=1, sha256="0" * 64)
    templates = [TEMPLATE, "http://m/{model}/{path}"]
    assert [url for _, url in mirror_targets(templates, remote)] == [
        "fake://shelf/m/a b/c.bin",
        "http://m/m/a%20b/c.bin",
    ]


def test_get_reads_a_store_uri_as_one_object(fake: FakeStore) -> None:
    secrets = Secrets()
    [item] = parse_sources(["fake://shelf/m/w.bin"], read_text=str, secrets=secrets)
    assert item == UrlFile(
        "w.bin", f"{fake.base}/m/w.bin?sig=abc", len(DATA), None, "fake://shelf/m/w.bin"
    )
    [named] = parse_sources(["fake://shelf/m/w.bin"], read_text=str, named=True)
    assert isinstance(named, UrlFile) and named.filename == ""


def test_the_mirror_path_presigns_through_the_store(
    fake: FakeStore, cdn: CdnServer, tmp_path: Path
) -> None:
    origin = cdn.add_file("/origin/w.bin", DATA)
    cdn.add_file("/shelf/lora/w.bin", DATA)
    fake.base = f"{cdn.url}/shelf"
    sha256 = hashlib.sha256(DATA).hexdigest()
    catalog = parse_catalog(
        f'[settings]\nmirrors = [{{ url = "{TEMPLATE}", endpoint = "http://127.0.0.1:9/" }}]\n\n'
        f'[models.lora]\nfiles = [{{ url = "{origin}", sha256 = "{sha256}" }}]\n'
    )
    settings = build_settings(
        Overrides(),
        environ={},
        dest=tmp_path / "d",
        catalog=CatalogSettings(
            mirrors=catalog.settings.mirrors, mirror_endpoints=catalog.settings.mirror_endpoints
        ),
    )
    report = pull_models(list(catalog.models), settings, progress=NullProgress())
    assert report.ok, report.files
    [file] = report.files
    assert file.mirror == "fake://shelf/lora/w.bin"
    assert fake.signed == [("fake://shelf/lora/w.bin", "http://127.0.0.1:9")]
    assert (tmp_path / "d" / "lora" / "w.bin").read_bytes() == DATA
    assert cdn.log.body_bytes(path_prefix="/origin/") == 0


def test_a_store_says_when_its_mirror_is_down(
    fake: FakeStore, cdn: CdnServer, tmp_path: Path
) -> None:
    files = [(f"w{i}.bin", make_data(1_001 + i, seed=i)) for i in range(2)]
    entries = []
    for name, data in files:
        url = cdn.add_file(f"/origin/{name}", data)
        entries.append(f'{{ url = "{url}", sha256 = "{hashlib.sha256(data).hexdigest()}" }}')
    # what the store answers for a shelf that is not there
    body = b"<Error><Code>NoShelf</Code></Error>"
    cdn.faults.add(Fault.http_error(404, body, path_prefix="/shelf/", times=None))
    fake.base = f"{cdn.url}/shelf"
    catalog = parse_catalog(f"[models.lora]\nfiles = [{', '.join(entries)}]\n")
    settings = build_settings(
        Overrides(jobs=1),
        environ={},
        dest=tmp_path / "d",
        catalog=CatalogSettings(mirrors=(TEMPLATE,)),
    )
    report = pull_models(list(catalog.models), settings, progress=NullProgress())
    assert report.ok, report.files
    # the first file's failure leaves the mirror for the run: the second never asks it
    assert [uri for uri, _ in fake.signed] == ["fake://shelf/lora/w0.bin"]
    warned = [w for f in report.files for w in f.warnings]
    assert any("is not usable (no such shelf)" in w for w in warned), warned
