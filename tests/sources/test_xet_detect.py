"""Which Hub files are stored in Xet: from the tree listing's ``xetHash`` (no request more per
file), from a resolve HEAD's ``X-Xet-Hash`` and ``xet-auth`` link; a value that is not a Xet hash is
ignored, never an error."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator, Mapping
from typing import Any

import httpx2
import pytest
from hypothesis import given
from hypothesis import strategies as st
from servers import Exchange, HubServer, make_data

from mdl.catalog.specs import FileSpec, ModelSpec
from mdl.sources._hubreplies import parse_tree_page, parse_xet_head
from mdl.sources.hub import Hub
from mdl.sources.huburls import xet_token_url
from mdl.sources.resolve import RemoteFile, XetRef, resolve_file, resolve_model

WEIGHTS = make_data(30_000, seed=7)
WEIGHTS_SHA = hashlib.sha256(WEIGHTS).hexdigest()
CONFIG = b'{"model_type": "bert"}\n'
XET = "0123456789abcdef" * 4
NOT_HASHES = [
    XET.upper(),
    XET[:-1],
    XET + "0",
    12,
    None,
    ["x"],
    {"h": XET},
    "g" * 64,
    " " + XET[1:],
]


@pytest.fixture
def tiny(hub: HubServer) -> HubServer:
    hub.add_repo("org/tiny", {"config.json": CONFIG, "model.safetensors": WEIGHTS})
    return hub


@pytest.fixture
def client(hub: HubServer) -> Iterator[Hub]:
    one = Hub(hub.url, None)
    yield one
    one.close()


def snapshot(client: Hub) -> dict[str, RemoteFile]:
    resolved = resolve_model(ModelSpec(name="tiny", repo="org/tiny"), hub=client, environ={})
    return {f.path: f for f in resolved.files}


def test_the_listings_xet_hash_marks_the_lfs_file_with_no_request_more(
    tiny: HubServer, client: Hub
) -> None:
    plain = snapshot(client)
    asked = len(tiny.log.records())
    assert plain["model.safetensors"].xet is None
    tiny.log.clear()
    tiny.xet_hashes[WEIGHTS_SHA] = XET
    files = snapshot(client)
    # the revision and the listing: no HEAD per file, Xet or not
    assert len(tiny.log.records()) == asked == 2
    assert not tiny.log.records(method="HEAD")
    commit = files["model.safetensors"].commit
    assert commit is not None
    token_url = f"{tiny.url}/api/models/org/tiny/xet-read-token/{commit}"
    assert files["model.safetensors"].xet == XetRef(XET, token_url)
    assert xet_token_url(tiny.url + "/", "org/tiny", "model", commit) == token_url
    assert files["config.json"].xet is None  # a small git file is never a Xet one


def test_a_datasets_token_url_names_its_repo_type(hub: HubServer, client: Hub) -> None:
    hub.add_repo("org/data", {"train.parquet": WEIGHTS}, repo_type="dataset")
    hub.xet_hashes[WEIGHTS_SHA] = XET
    spec = ModelSpec(name="data", repo="org/data", repo_type="dataset")
    (remote,) = resolve_model(spec, hub=client, environ={}).files
    assert remote.xet is not None and remote.xet.token_url.startswith(
        f"{hub.url}/api/datasets/org/data/xet-read-token/"
    )


@pytest.mark.slow
@pytest.mark.parametrize("bad", NOT_HASHES, ids=repr)
def test_a_listed_xet_hash_that_is_not_one_is_ignored_with_a_debug_line(
    tiny: HubServer, client: Hub, bad: object, caplog: pytest.LogCaptureFixture
) -> None:
    tiny.xet_hashes[WEIGHTS_SHA] = bad
    with caplog.at_level(logging.DEBUG, logger="mdl.hub"):
        files = snapshot(client)
    assert files["model.safetensors"].xet is None
    # the file itself is as before: fetched whole
    assert files["model.safetensors"].sha256 == WEIGHTS_SHA
    said = [r.getMessage() for r in caplog.records if "Xet hash" in r.getMessage()]
    assert (said != []) is (bad is not None), said
    assert all("model.safetensors" in line for line in said)


@given(
    value=st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=70), st.lists, max_leaves=4
    )
)
def test_any_xet_hash_value_in_a_listing_is_read_or_ignored_never_refused(value: Any) -> None:
    entry = {"type": "file", "path": "w.bin", "size": 3, "oid": "a" * 40, "xetHash": value}
    (parsed,) = parse_tree_page(json.dumps([entry]).encode(), what="m", url="http://127.0.0.1/api")
    valid = isinstance(value, str) and len(value) == 64 and set(value) <= set("0123456789abcdef")
    assert parsed.xet_hash == (value if valid else None)


class XetHeadHub(HubServer):
    """The Hub stand-in whose LFS resolve answers carry ``head`` too (as the Hub's do for a file
    in Xet).
    """

    head: Mapping[str, str] = {}

    def _route_resolve(self, ex: Exchange, repo_type: Any, segs: list[str]) -> None:
        redirect = ex.redirect
        ex.redirect = lambda location, status=302, headers=None: redirect(  # type: ignore[method-assign]
            location, status, {**(headers or {}), **self.head}
        )
        super()._route_resolve(ex, repo_type, segs)


@pytest.fixture
def head_hub() -> Iterator[XetHeadHub]:
    server = XetHeadHub().start()
    server.add_repo("org/tiny", {"config.json": CONFIG, "model.safetensors": WEIGHTS})
    try:
        yield server
    finally:
        server.stop()
    assert not server.errors


def resolve_one(server: HubServer) -> RemoteFile:
    spec = FileSpec("models.z.files[0]", repo="org/tiny", path="model.safetensors")
    with_client = Hub(server.url, None)
    try:
        return resolve_file("z", spec, hub=with_client, environ={})
    finally:
        with_client.close()


def test_a_resolve_heads_xet_hash_and_auth_link_mark_the_file(head_hub: XetHeadHub) -> None:
    commit = head_hub.repo("org/tiny").branches["main"]
    link = f"{head_hub.url}/api/models/org/tiny/xet-read-token/{commit}"
    head_hub.head = {
        "X-Xet-Hash": XET,
        "Link": f'<{link}>; rel="xet-auth", <https://cas.example/x>; rel="next"',
    }
    remote = resolve_one(head_hub)
    assert remote.xet == XetRef(XET, link)
    # the first byte's GET mdl makes anyway (no HEAD): no request more
    assert [(r.method, r.range) for r in head_hub.log] == [("GET", "bytes=0-0")]


@pytest.mark.parametrize(
    ("hash_", "link"),
    [
        (XET.upper(), "{hub}/api/models/org/tiny/xet-read-token/c"),  # not lowercase
        (XET[:40], "{hub}/api/models/org/tiny/xet-read-token/c"),  # too short
        # the token would leave the Hub
        (XET, "https://elsewhere.example/api/models/org/tiny/xet-read-token/c"),
        (XET, None),  # no xet-auth link
    ],
)
def test_a_head_whose_xet_fields_are_not_usable_leaves_the_file_plain(
    head_hub: XetHeadHub, hash_: str, link: str | None
) -> None:
    head = {"X-Xet-Hash": hash_}
    if link is not None:
        head["Link"] = f'<{link.format(hub=head_hub.url)}>; rel="xet-auth"'
    head_hub.head = head
    remote = resolve_one(head_hub)
    assert remote.xet is None and remote.sha256 == WEIGHTS_SHA


def test_a_head_without_xet_headers_is_a_plain_file(head_hub: XetHeadHub) -> None:
    assert resolve_one(head_hub).xet is None


@given(
    headers=st.dictionaries(
        st.sampled_from(["X-Xet-Hash", "Link", "X-Xet-Refresh-Route", "Other"]),
        st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=90),
    )
)
def test_any_head_gives_a_valid_xet_ref_on_the_hub_or_none(headers: dict[str, str]) -> None:
    endpoint = "http://127.0.0.1:9"
    response = httpx2.Response(
        302, headers=headers, request=httpx2.Request("HEAD", endpoint + "/x")
    )
    found = parse_xet_head(response, endpoint=endpoint, what="m")
    if found is not None:
        assert len(found[0]) == 64 and set(found[0]) <= set("0123456789abcdef")
        assert httpx2.URL(found[1]).host == "127.0.0.1" and httpx2.URL(found[1]).port == 9
