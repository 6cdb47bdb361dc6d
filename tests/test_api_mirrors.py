"""``pull(mirrors=…)`` takes the mirrors the catalog's ``[settings] mirrors`` takes -- URL templates and
``{ url, endpoint }`` tables for a store with its own endpoint -- checked by the catalog's own rules
(issue 59 H). Against the loopback Hub and moto's S3 on 127.0.0.1."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from s3server import S3, s3, s3_server  # noqa: F401
from servers import CdnServer, HubServer, make_data

import mdl
from mdl import CatalogError, UsageError
from mdl.catalog.load import given_mirrors
from mdl.catalog.settings import build_settings
from mdl.setting import Overrides

WEIGHTS = make_data(200_003, seed=61)
CONFIG = b'{"hidden_size": 8}\n'
CATALOG = '[models.tiny]\nrepo = "org/tiny"\n'
TEMPLATE = "s3://team-models/hub/{model}/{path}"


@pytest.fixture
def origin(hub: HubServer, tmp_path: Path) -> Path:
    hub.add_repo("org/tiny", {"config.json": CONFIG, "model.safetensors": WEIGHTS})
    catalog = tmp_path / "catalog.toml"
    catalog.write_text(CATALOG)
    return catalog


@pytest.mark.slow
def test_a_mirror_table_brings_its_own_endpoint(
    origin: Path,
    hub: HubServer,
    s3: S3,  # noqa: F811 (the fixture)
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client = s3.client()
    client.create_bucket(Bucket="team-models")
    for path, data in (("config.json", CONFIG), ("model.safetensors", WEIGHTS)):
        client.put_object(Bucket="team-models", Key=f"hub/tiny/{path}", Body=data)
    # the environment's endpoint leads nowhere: only the table's reaches the store
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    report = mdl.pull(
        "tiny",
        catalog=origin,
        dest=tmp_path / "models",
        environ={"HF_ENDPOINT": hub.url},
        mirrors=[{"url": TEMPLATE, "endpoint": s3.endpoint}],
    )
    assert report.ok, [f.error for f in report.files]
    weights = tmp_path / "models" / "tiny" / "model.safetensors"
    assert hashlib.sha256(weights.read_bytes()).digest() == hashlib.sha256(WEIGHTS).digest()
    assert all(f.mirror is not None for f in report.files), report.files
    assert hub.cdn.log.body_bytes() == 0  # nothing from the origin's CDN


@pytest.mark.slow
@pytest.mark.parametrize(
    ("mirrors", "says"),
    [
        # the catalog's own words for the same mistakes
        ([{"url": "http://m/{model}/{path}", "endpoint": "http://e"}], "an endpoint is for"),
        ([{"url": TEMPLATE, "region": "x"}], "unknown key"),
        ([{"endpoint": "http://127.0.0.1:9"}], "url"),
        ([{"url": "ftp://m/{path}"}], "a mirror must be an http(s)"),
        ([{"url": TEMPLATE, "endpoint": "not a url"}], "endpoint"),
    ],
)
def test_a_bad_mirror_table_is_refused_as_the_catalog_refuses_it(
    origin: Path, tmp_path: Path, mirrors: list[dict[str, str]], says: str
) -> None:
    with pytest.raises(CatalogError) as caught:
        mdl.pull("tiny", catalog=origin, dest=tmp_path / "models", mirrors=mirrors, dry_run=True)
    assert caught.value.exit_code == 2
    assert caught.value.message.startswith("mirrors")
    assert says in caught.value.message
    assert not (tmp_path / "models").exists()


@pytest.mark.parametrize("mirrors", [[3], [{"url": 1}], b"http://m/{path}", [None]])
def test_a_mirror_of_the_wrong_type_is_a_usage_error_naming_it(
    origin: Path, mirrors: object
) -> None:
    with pytest.raises(UsageError, match=r"^mirrors"):
        mdl.pull("tiny", catalog=origin, mirrors=mirrors)  # type: ignore[arg-type]


def test_one_table_alone_is_one_mirror(
    origin: Path, tmp_path: Path, hub: HubServer, cdn: CdnServer
) -> None:
    # (a string alone is one template, as everywhere in the API)
    for path, data in (("config.json", CONFIG), ("model.safetensors", WEIGHTS)):
        cdn.add_file(f"/m/tiny/{path}", data)
    report = mdl.pull(
        "tiny",
        catalog=origin,
        dest=tmp_path / "models",
        environ={"HF_ENDPOINT": hub.url},
        mirrors={"url": cdn.url + "/m/{model}/{path}"},
    )
    assert report.ok, [f.error for f in report.files]
    assert sorted(f.mirror or "" for f in report.files) == [
        f"{cdn.url}/m/tiny/{path}" for path in ("config.json", "model.safetensors")
    ]
    weights = tmp_path / "models" / "tiny" / "model.safetensors"
    assert weights.read_bytes() == WEIGHTS
    assert hub.cdn.log.body_bytes() == 0  # nothing from the origin's CDN


def test_templates_and_tables_keep_their_order_and_the_tables_endpoints() -> None:
    given = given_mirrors(
        [
            "http://near/{model}/{path}",
            {"url": TEMPLATE, "endpoint": "http://127.0.0.1:9000/"},
            {"url": "https://far/{model}/{path}"},
        ],
        where="mirrors",
    )
    settings = build_settings(Overrides(mirrors=given), environ={}, dest=Path("d"))
    assert settings.mirrors == (
        "http://near/{model}/{path}",
        TEMPLATE,
        "https://far/{model}/{path}",
    )
    assert settings.mirror_endpoints == ((TEMPLATE, "http://127.0.0.1:9000"),)
