"""The Xet stand-in (tests/xetserver.py) is trustworthy: its hashes are hf_xet's, hf_xet downloads
from it byte-identically through the xorb route, and it really serves what mdl's tests need
(corruption, dedup, faults)."""

from __future__ import annotations

import hashlib
import itertools
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import hf_xet
import httpx2
import pytest
from huggingface_hub import get_hf_file_metadata
from hypothesis import example, given, settings
from hypothesis import strategies as st
from profiles import examples
from runfixtures import HANG
from servers import TOKEN, Fault, make_data
from xetserver import (
    _GEAR,
    MAX_CHUNK,
    MIN_CHUNK,
    CasServer,
    Term,
    XetHubServer,
    XetStore,
    _merged_ranges,
    bearer,
    bg4_split,
    chunk,
    decode_chunk,
    encode_chunk,
    hash_hex,
    hex_hash,
    hf_download,
    revise,
    xet_hash,
)

MIB = 1 << 20


def client(**kwargs: Any) -> httpx2.Client:
    """A raw client that never follows redirects."""
    return httpx2.Client(timeout=5, **kwargs)


# ---------------------------------------------------------------------------------------------------------
# Minting from the spec
# ---------------------------------------------------------------------------------------------------------


def test_hash_string_form_is_the_api_example() -> None:
    raw = bytes(range(32))
    # api.md's example, whose third word lost its "10" (it prints 62 characters).
    text = "07060504030201000f0e0d0c0b0a090817161514131211101f1e1d1c1b1a1918"
    assert hash_hex(raw) == text
    assert hex_hash(text) == raw


@pytest.mark.slow
@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"hello",
        make_data(MIN_CHUNK - 1, seed=2),
        make_data(MIN_CHUNK, seed=3),
        make_data(MIN_CHUNK + 1, seed=4),
        make_data(3 * MIB + 12345, seed=5),
        bytes(MAX_CHUNK * 5 + 77),  # no content boundary: forced cuts at MAX_CHUNK, repeated chunks
    ],
    ids=["empty", "tiny", "min-1", "min", "min+1", "3MiB", "zeros"],
)
def test_file_hash_is_hf_xets(data: bytes, tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    [info] = hf_xet.hash_files([str(path)])
    assert (info.hash, info.file_size) == (xet_hash(data), len(data))


@pytest.mark.slow
def test_chunks_cover_the_data_within_the_size_limits() -> None:
    data = make_data(2 * MIB, seed=6) + bytes(3 * MAX_CHUNK)
    spans = chunk(data)
    assert spans[0][0] == 0 and spans[-1][1] == len(data)
    assert all(a[1] == b[0] for a, b in itertools.pairwise(spans))
    assert all(MIN_CHUNK <= e - s <= MAX_CHUNK for s, e in spans[:-1])
    in_zeros = [e - s for s, e in spans if s >= 2 * MIB]
    # no boundary: forced cuts
    assert in_zeros[:-1] == [MAX_CHUNK] * (len(in_zeros) - 1) and len(in_zeros) >= 2
    # Content-defined: a prefix changes nothing after the next boundaries.
    shifted = chunk(b"xyz" + data)
    assert {e + 3 for _, e in spans[3:]} <= {e for _, e in shifted}


def spec_chunks(data: bytes) -> list[tuple[int, int]]:
    """chunking.md's pseudocode, byte by byte (an empty input has no chunk, as xet-core and
    hf_xet say).
    """
    if len(data) < MIN_CHUNK:
        return [(0, len(data))] if data else []
    spans, start, h = [], 0, 0
    for i, b in enumerate(data):
        h = ((h << 1) + _GEAR[b]) & 0xFFFF_FFFF_FFFF_FFFF
        size = i + 1 - start
        if size >= MIN_CHUNK and (size >= MAX_CHUNK or not h & 0xFFFF_0000_0000_0000):
            spans.append((start, i + 1))
            start, h = i + 1, 0
    if start < len(data):
        spans.append((start, len(data)))
    return spans


PIECES = st.lists(
    st.tuples(
        st.sampled_from(["random", "zeros", "again"]), st.integers(1, 150_000), st.integers(0, 9)
    ),
    max_size=5,
)


@settings(max_examples=examples(20), deadline=None)
@given(PIECES)
@example(
    [("random", 150_000, 1), ("zeros", 140_000, 0), ("again", 100_000, 0), ("random", 70_000, 2)]
)
def test_chunk_is_the_spec_pseudocode(pieces: list[tuple[str, int, int]]) -> None:
    data = b""
    for kind, size, seed in pieces:
        if kind == "random":
            data += make_data(size, seed)
        elif kind == "zeros":
            data += bytes(size)
        else:
            data += data[-size:]  # a repeat of what came before: the same content cut the same way
    assert chunk(data) == spec_chunks(data)


@settings(max_examples=examples(100), deadline=None)
@given(
    st.binary(max_size=3000) | st.builds(bytes, st.integers(0, MAX_CHUNK)),
    st.sampled_from([0, 1, 2]),
)
def test_any_chunk_round_trips(data: bytes, scheme: int) -> None:
    blob = encode_chunk(data, scheme)
    assert decode_chunk(blob) == data and len(blob) == 8 + int.from_bytes(blob[1:4], "little")


@pytest.mark.parametrize("scheme", [0, 1, 2])
def test_chunk_serialization_round_trips(scheme: int) -> None:
    data = make_data(10_003, seed=scheme) + bytes(5000)
    blob = encode_chunk(data, scheme)
    assert blob[0] == 0 and blob[4] == scheme
    assert int.from_bytes(blob[1:4], "little") == len(blob) - 8
    assert int.from_bytes(blob[5:8], "little") == len(data)
    assert decode_chunk(blob) == data


def test_byte_grouping_is_the_spec_layout() -> None:
    assert bg4_split(bytes([1, 2, 3, 4, 5, 6, 7, 8, 9, 10])) == bytes(
        [1, 5, 9, 2, 6, 10, 3, 7, 4, 8]
    )


@pytest.mark.slow
def test_store_dedupes_a_new_revision_against_stored_xorbs() -> None:
    store = XetStore()
    a = make_data(4 * MIB, seed=8)
    b = revise(a, 6)
    fa, fb = store.add(a), store.add(b, "lz4")
    assert store.reconstruct(fa) == a and store.reconstruct(fb) == b
    assert len(fa.xorbs) == 1
    new = [x for x in fb.xorbs if x not in fa.xorbs]
    assert len(new) == 1 and set(fb.xorbs) == {*fa.xorbs, *new}
    assert set(store.xorbs[new[0]].schemes) == {1}
    assert (
        0
        < store.new_bytes(fb, fa)
        == store.xorb_bytes(fb)
        - sum(
            store.xorbs[fa.xorbs[0]].offsets[t.end] - store.xorbs[fa.xorbs[0]].offsets[t.start]
            for t in fb.terms
            if t.xorb == fa.xorbs[0]
        )
    )
    assert store.add(a) is fa  # the same bytes again: nothing new
    assert len(store.xorbs) == 2


def test_store_caps_xorbs_by_chunks_and_bytes() -> None:
    store = XetStore(max_xorb_chunks=5, max_xorb_bytes=10 * MAX_CHUNK)
    xf = store.add(make_data(2 * MIB, seed=9), "mixed")
    assert all(store.xorbs[x].chunks <= 5 for x in xf.xorbs)
    assert len(xf.xorbs) == len(xf.terms) >= len(xf.chunks) // 5
    schemes = [s for x in xf.xorbs for s in store.xorbs[x].schemes]
    assert schemes == [i % 3 for i in range(len(schemes))]


def test_merged_ranges_join_overlapping_and_adjacent_terms_only() -> None:
    terms = [
        Term("x", 0, 3, 1, 0),
        Term("y", 0, 1, 1, 0),
        Term("x", 3, 5, 1, 0),
        Term("x", 7, 9, 1, 0),
    ]
    terms.append(Term("x", 8, 10, 1, 0))
    assert _merged_ranges(terms) == {"x": [(0, 5), (7, 10)], "y": [(0, 1)]}


# ---------------------------------------------------------------------------------------------------------
# The Hub side
# ---------------------------------------------------------------------------------------------------------

WEIGHTS = make_data(MIB + 4321, seed=10)


@pytest.fixture
def repo(xet_hub: XetHubServer) -> XetHubServer:
    xet_hub.add_repo("org/m", {"model.safetensors": WEIGHTS, "config.json": b"{}"})
    return xet_hub


@pytest.mark.slow
def test_listing_and_resolve_announce_xet_files(repo: XetHubServer) -> None:
    xf = repo.xet_file("org/m", "model.safetensors")
    sha = repo.repo("org/m").sha
    with client() as http:
        tree = http.get(f"{repo.url}/api/models/org/m/tree/main").json()
        head = http.head(repo.file_url("org/m", "model.safetensors"))
        plain = http.get(repo.file_url("org/m", "model.safetensors"), follow_redirects=True)
    entries = {e["path"]: e for e in tree}
    assert entries["model.safetensors"]["xetHash"] == xf.hash == xet_hash(WEIGHTS)
    assert "xetHash" not in entries["config.json"]
    assert head.status_code == 302 and head.headers["X-Xet-Hash"] == xf.hash
    token_url = f"{repo.url}/api/models/org/m/xet-read-token/{sha}"
    assert head.headers["X-Xet-Refresh-Route"] == token_url == repo.token_url("org/m")
    assert head.links["xet-auth"]["url"] == token_url
    assert (
        head.links["xet-reconstruction-info"]["url"]
        == f"{repo.cas.url}/v1/reconstructions/{xf.hash}"
    )
    assert plain.content == WEIGHTS  # the plain path still serves the bytes
    meta = get_hf_file_metadata(
        repo.file_url("org/m", "model.safetensors"), token=TOKEN, endpoint=repo.url
    )
    assert meta.xet_file_data is not None
    assert (meta.xet_file_data.file_hash, meta.xet_file_data.refresh_route) == (xf.hash, token_url)


def test_later_commits_mint_only_changed_files_with_the_repos_scheme(xet_hub: XetHubServer) -> None:
    a, b = make_data(300_000, seed=14), make_data(200_000, seed=15)
    xet_hub.add_repo("org/s", {"a.bin": a, "b.bin": b}, scheme={"a.bin": "bg4"})
    first = xet_hub.repo("org/s").sha
    xet_hub.commit("org/s", {"b.bin": revise(b, 1), "c.bin": a[::-1]})
    store = xet_hub.store

    def schemes(path: str, revision: str = "main") -> set[int]:
        xf = xet_hub.xet_file("org/s", path, revision)
        return {store.xorbs[x].schemes[i] for x, i, _ in xf.chunks}

    assert schemes("a.bin", first) == {2} and schemes("b.bin", first) == {0}
    assert xet_hub.xet_file("org/s", "a.bin") is xet_hub.xet_file("org/s", "a.bin", first)
    assert schemes("b.bin") == {0} and schemes("c.bin") == {0}
    assert xet_hub.xet_file("org/s", "b.bin").hash == xet_hash(revise(b, 1))


def test_a_repo_without_xet_has_no_xet_headers(xet_hub: XetHubServer) -> None:
    xet_hub.add_repo("org/plain", {"model.safetensors": WEIGHTS}, xet=False)
    with client() as http:
        head = http.head(xet_hub.file_url("org/plain", "model.safetensors"))
        tree = http.get(f"{xet_hub.url}/api/models/org/plain/tree/main").json()
    assert head.status_code == 302 and "X-Xet-Hash" not in head.headers
    assert "xetHash" not in tree[0]


def test_read_token_route(repo: XetHubServer) -> None:
    url = repo.token_url("org/m")
    with client() as http:
        ok = http.get(url, headers={"Authorization": f"Bearer {TOKEN}"})
        anonymous = http.get(f"{repo.url}/api/models/org/m/xet-read-token/main")
        bad = http.get(url, headers={"Authorization": "Bearer hf_wrong"})
        missing = http.get(f"{repo.url}/api/models/org/nope/xet-read-token/main")
        no_rev = http.get(f"{repo.url}/api/models/org/m/xet-read-token/v9")
    body = ok.json()
    assert ok.status_code == 200 and anonymous.status_code == 200
    assert body["casUrl"] == repo.cas.url == ok.headers["X-Xet-Cas-Url"]
    assert body["accessToken"] == ok.headers["X-Xet-Access-Token"]
    assert body["exp"] == int(ok.headers["X-Xet-Token-Expiration"]) > time.time() + 3000
    grant = repo.cas.tokens[body["accessToken"]]
    assert grant.files == {repo.xet_file("org/m", "model.safetensors").hash}
    assert (bad.status_code, missing.status_code, no_rev.status_code) == (401, 404, 404)


def test_read_token_follows_gating(xet_hub: XetHubServer) -> None:
    xet_hub.add_repo("org/gated", {"w.safetensors": WEIGHTS}, gated=True, granted_tokens=[])
    xet_hub.valid_tokens.add("hf_other")
    xet_hub.add_repo("org/private", {"w.safetensors": WEIGHTS}, private=True)
    with client() as http:
        gated = http.get(
            xet_hub.token_url("org/gated"), headers={"Authorization": f"Bearer {TOKEN}"}
        )
        private = http.get(xet_hub.token_url("org/private"))
        allowed = http.get(
            xet_hub.token_url("org/private"), headers={"Authorization": f"Bearer {TOKEN}"}
        )
    assert gated.status_code == 403 and gated.headers["X-Error-Code"] == "GatedRepo"
    assert private.status_code == 401
    assert allowed.status_code == 200


# ---------------------------------------------------------------------------------------------------------
# The CAS
# ---------------------------------------------------------------------------------------------------------


def token_for(hub: XetHubServer, repo_id: str = "org/m") -> str:
    with client() as http:
        return str(
            http.get(hub.token_url(repo_id), headers={"Authorization": f"Bearer {TOKEN}"}).json()[
                "accessToken"
            ]
        )


def test_reconstruction_needs_a_live_token_covering_the_file(
    repo: XetHubServer, cas: CasServer
) -> None:
    xf = repo.xet_file("org/m", "model.safetensors")
    other = cas.store.add(make_data(20_000, seed=11))
    token = token_for(repo)
    url = f"{cas.url}/v1/reconstructions/{xf.hash}"
    auth = {"Authorization": f"Bearer {token}"}
    with client() as http:
        assert http.get(url).status_code == 401
        assert http.get(url, headers={"Authorization": "Bearer xet_nope"}).status_code == 401
        assert http.get(url, headers=auth).status_code == 200
        assert (
            http.get(f"{cas.url}/v1/reconstructions/{other.hash}", headers=auth).status_code == 403
        )
        assert http.get(f"{cas.url}/v1/reconstructions/{'0' * 64}", headers=auth).status_code == 404
        assert http.get(f"{cas.url}/v1/reconstructions/ABC", headers=auth).status_code == 400
        cas.expire_tokens()
        assert http.get(url, headers=auth).status_code == 401
    assert [bearer(r) for r in cas.log][:3] == [None, "xet_nope", token]


@pytest.mark.slow
def test_v1_and_v2_replies_name_exact_xorb_ranges(repo: XetHubServer, cas: CasServer) -> None:
    a = make_data(2 * MIB, seed=12)
    repo.add_repo("org/up", {"w.bin": a})
    repo.replace_file("org/up", "w.bin", revise(a, 3))
    xf = repo.xet_file("org/up", "w.bin")
    old = repo.xet_file(
        "org/up", "w.bin", repo.repo("org/up").commits[next(iter(repo.repo("org/up").commits))].sha
    )
    auth = {"Authorization": f"Bearer {token_for(repo, 'org/up')}"}
    with client() as http:
        v1 = http.get(f"{cas.url}/v1/reconstructions/{xf.hash}", headers=auth).json()
        v2 = http.get(f"{cas.url}/v2/reconstructions/{xf.hash}", headers=auth).json()
        assert v1["offset_into_first_range"] == v2["offset_into_first_range"] == 0
        assert v1["terms"] == v2["terms"]
        assert sum(t["unpacked_length"] for t in v1["terms"]) == xf.size
        assert len(v1["terms"]) == len(xf.terms) >= 5  # old, new, old, new, ... old
        [old_xorb] = old.xorbs
        # the unchanged runs of the old xorb: not adjacent
        assert len(v1["fetch_info"][old_xorb]) == 4
        rebuilt = b""
        for term in v2["terms"]:
            entry = covering(v2["xorbs"][term["hash"]], term)
            [rng] = entry["ranges"]
            got = http.get(
                entry["url"],
                headers={"Range": f"bytes={rng['bytes']['start']}-{rng['bytes']['end']}"},
            )
            assert got.status_code == 206
            x = cas.store.xorbs[term["hash"]]
            assert got.content == x.chunk_bytes(rng["chunks"]["start"], rng["chunks"]["end"])
            first = term["range"]["start"] - rng["chunks"]["start"]
            count = term["range"]["end"] - term["range"]["start"]
            offsets = x.offsets
            base = offsets[rng["chunks"]["start"]]
            for i in range(first, first + count):
                k = rng["chunks"]["start"] + i
                rebuilt += decode_chunk(got.content[offsets[k] - base : offsets[k + 1] - base])
        assert rebuilt == revise(a, 3)


def covering(entries: list[dict[str, Any]], term: dict[str, Any]) -> dict[str, Any]:
    """The v2 url entry whose (only) range holds the term's chunks."""
    for entry in entries:
        chunks = entry["ranges"][0]["chunks"]
        if chunks["start"] <= term["range"]["start"] and chunks["end"] >= term["range"]["end"]:
            return entry
    raise AssertionError(f"no fetch covers {term}")


def test_reconstruction_of_a_byte_range(repo: XetHubServer, cas: CasServer) -> None:
    xf = repo.xet_file("org/m", "model.safetensors")
    auth = {"Authorization": f"Bearer {token_for(repo)}"}
    first, last = 200_000, 300_000
    with client() as http:
        body = http.get(
            f"{cas.url}/v2/reconstructions/{xf.hash}",
            headers={**auth, "Range": f"bytes={first}-{last}"},
        )
        beyond = http.get(
            f"{cas.url}/v1/reconstructions/{xf.hash}",
            headers={**auth, "Range": f"bytes={xf.size}-"},
        )
    reply = body.json()
    start = sum(n for _, _, n in xf.chunks[: reply["terms"][0]["range"]["start"]])
    assert start + reply["offset_into_first_range"] == first
    assert start + sum(t["unpacked_length"] for t in reply["terms"]) > last
    assert beyond.status_code == 416


def xorb_fetch(repo: XetHubServer, cas: CasServer) -> tuple[str, str]:
    """(url, Range) of the first fetch of org/m's file."""
    xf = repo.xet_file("org/m", "model.safetensors")
    auth = {"Authorization": f"Bearer {token_for(repo)}"}
    with client() as http:
        info = http.get(f"{cas.url}/v1/reconstructions/{xf.hash}", headers=auth).json()[
            "fetch_info"
        ]
    [entry] = info[xf.terms[0].xorb]
    return entry["url"], f"bytes={entry['url_range']['start']}-{entry['url_range']['end']}"


def test_xorb_urls_grant_exactly_their_ranges(repo: XetHubServer, cas: CasServer) -> None:
    url, rng = xorb_fetch(repo, cas)
    with client() as http:
        ok = http.get(url, headers={"Range": rng})
        assert ok.status_code == 206 and ok.headers["Content-Range"].startswith(
            rng.replace("=", " ") + "/"
        )
        assert http.get(url).status_code == 403  # no Range
        assert http.get(url, headers={"Range": "bytes=0-99"}).status_code == 403
        assert (
            http.get(
                url.replace("X-Xet-Signature=", "X-Xet-Signature=0"), headers={"Range": rng}
            ).status_code
            == 403
        )
        assert (
            http.get(
                url.replace("X-Xet-Ranges=", "X-Xet-Ranges=0-9%2C"), headers={"Range": rng}
            ).status_code
            == 403
        )
        assert (
            http.get(url, headers={"Range": rng, "Authorization": "Bearer xet_x"}).status_code
            == 400
        )
        cas.expire_urls()
        assert http.get(url, headers={"Range": rng}).status_code == 403
    assert [bearer(r) for r in cas.xorb_records()] == [None] * 5 + ["xet_x", None]


@pytest.mark.slow
def test_a_fault_expires_the_urls_after_some_fetches(repo: XetHubServer, cas: CasServer) -> None:
    url, rng = xorb_fetch(repo, cas)
    cas.faults.add(Fault.expire_urls(path_prefix="/xorb/", skip=1))
    with client() as http:
        assert [http.get(url, headers={"Range": rng}).status_code for _ in range(3)] == [
            206,
            403,
            403,
        ]
        url, rng = xorb_fetch(repo, cas)  # a new reconstruction signs new URLs
        assert http.get(url, headers={"Range": rng}).status_code == 206


def test_xorb_urls_can_be_single_use_or_short_lived(repo: XetHubServer, cas: CasServer) -> None:
    cas.url_uses = 1
    url, rng = xorb_fetch(repo, cas)
    with client() as http:
        assert http.get(url, headers={"Range": rng}).status_code == 206
        assert http.get(url, headers={"Range": rng}).status_code == 403
        cas.url_uses, cas.url_lifetime = None, -1
        url, rng = xorb_fetch(repo, cas)
        assert http.get(url, headers={"Range": rng}).status_code == 403


def test_v2_can_be_absent_and_reconstructions_can_fail(repo: XetHubServer, cas: CasServer) -> None:
    xf = repo.xet_file("org/m", "model.safetensors")
    auth = {"Authorization": f"Bearer {token_for(repo)}"}
    with client() as http:
        for status in (404, 501):
            cas.v2_status = status
            assert (
                http.get(f"{cas.url}/v2/reconstructions/{xf.hash}", headers=auth).status_code
                == status
            )
        cas.fail_reconstructions(500, times=2, version=1)
        codes = [
            http.get(f"{cas.url}/v1/reconstructions/{xf.hash}", headers=auth).status_code
            for _ in range(3)
        ]
        assert codes == [500, 500, 200]
        cas.down = "503"
        assert http.get(f"{cas.url}/v1/reconstructions/{xf.hash}", headers=auth).status_code == 503
        cas.down = "reset"
        with pytest.raises(httpx2.TransportError):
            http.get(f"{cas.url}/v1/reconstructions/{xf.hash}", headers=auth)
        cas.down = None
        cas.refuse_connections()
        with pytest.raises(httpx2.ConnectError):
            http.get(f"{cas.url}/v1/reconstructions/{xf.hash}", headers=auth)
        cas.accept_connections()
        assert http.get(f"{cas.url}/v1/reconstructions/{xf.hash}", headers=auth).status_code == 200


@pytest.mark.slow
def test_xorb_bodies_can_stall(repo: XetHubServer, cas: CasServer) -> None:
    url, rng = xorb_fetch(repo, cas)
    cas.stall_xorbs(after_bytes=1000)
    with (
        httpx2.Client(timeout=httpx2.Timeout(5, read=0.3)) as http,
        pytest.raises(httpx2.ReadTimeout),
    ):
        http.get(url, headers={"Range": rng})
    [record] = cas.xorb_records()
    assert record.bytes_sent == 1000 and record.fault == "stall"


def test_corrupt_flips_one_served_byte_of_a_chunk(xet_hub: XetHubServer, cas: CasServer) -> None:
    xf = cas.store.add(make_data(MIB, seed=13), "mixed")
    [xorb] = xf.xorbs
    x = cas.store.xorbs[xorb]
    for index in (0, 1, 2):  # stored, LZ4, BG4
        pos = cas.corrupt(xorb, index)
        assert x.offsets[index] + 8 <= pos < x.offsets[index + 1]
    served = cas._content(xorb).read()
    assert [i for i in range(len(x.data)) if served[i] != x.data[i]] == sorted(
        x.offsets[i] + 8 + (x.offsets[i + 1] - x.offsets[i] - 8) // 2 for i in range(3)
    )
    for index in (1, 2):  # the LZ4 frames still decode (the byte is literal data), to wrong bytes
        blob = served[x.offsets[index] : x.offsets[index + 1]]
        assert len(decode_chunk(blob)) == x.sizes[index]
        assert decode_chunk(blob) != decode_chunk(x.data[x.offsets[index] : x.offsets[index + 1]])


def test_patch_rewrites_served_headers_and_rewrite_changes_replies(
    repo: XetHubServer, cas: CasServer
) -> None:
    xf = repo.xet_file("org/m", "model.safetensors")
    x = cas.store.xorbs[xf.terms[0].xorb]
    cas.patch(x.hash, x.offsets[1], b"\x01")  # chunk 1 claims header version 1
    seen: list[int] = []

    def rewrite(version: int, reply: dict[str, Any]) -> object:
        seen.append(version)
        return b"{oops" if version == 2 else {**reply, "terms": reply["terms"][:1]}

    cas.rewrite = rewrite
    auth = {"Authorization": f"Bearer {token_for(repo)}"}
    url, rng = xorb_fetch(repo, cas)
    with client() as http:
        served = http.get(url, headers={"Range": rng}).content
        v2 = http.get(f"{cas.url}/v2/reconstructions/{xf.hash}", headers=auth)
    assert served[x.offsets[1]] == 1 and x.data[x.offsets[1]] == 0
    assert served[: x.offsets[1]] == x.data[: x.offsets[1]]
    assert v2.content == b"{oops" and seen == [1, 2]
    with pytest.raises(ValueError, match="cannot patch"):
        cas.patch(x.hash, len(x.data), b"x")


def test_served_from_another_process(tmp_path: Path) -> None:
    a = make_data(300_000, seed=16)
    (tmp_path / "a.bin").write_bytes(a)
    (tmp_path / "b.bin").write_bytes(revise(a, 1))
    script = Path(__file__).parents[1] / "xetserver.py"
    child = subprocess.Popen(
        [
            sys.executable,
            str(script),
            "--scheme",
            "bg4",
            str(tmp_path / "a.bin"),
            str(tmp_path / "b.bin"),
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=script.parent,
    )
    try:
        assert child.stdout is not None
        info = json.loads(child.stdout.readline())
        with client() as http:
            token = http.get(
                f"{info['hub']}/api/models/org/bench/xet-read-token/{info['revisions'][1]}"
            ).json()
            auth = {"Authorization": f"Bearer {token['accessToken']}"}
            reply = http.get(
                f"{info['cas']}/v1/reconstructions/{info['files'][1]['hash']}", headers=auth
            ).json()
            fetch = reply["fetch_info"][reply["terms"][1]["hash"]][0]
            first, last = fetch["url_range"]["start"], fetch["url_range"]["end"]
            assert (
                http.get(fetch["url"], headers={"Range": f"bytes={first}-{last}"}).status_code
                == 206
            )
            stats = http.get(f"{info['cas']}/_stats", params={"clear": "1"}).json()
            after = http.get(f"{info['cas']}/_stats").json()
    finally:
        child.terminate()
        child.wait(HANG)
    assert info["files"][1]["hash"] == xet_hash(revise(a, 1))
    assert 0 < info["files"][1]["new_bytes"] < info["files"][1]["xorb_bytes"]
    assert stats["xorb_requests"] == 1 and stats["xorb_bytes"] == last - first + 1
    assert after == {"requests": 0, "xorb_requests": 0, "xorb_bytes": 0}


# ---------------------------------------------------------------------------------------------------------
# The oracle: huggingface_hub + hf_xet download from the stand-in
# ---------------------------------------------------------------------------------------------------------

SCHEMES = ("none", "lz4", "bg4", "mixed")


@pytest.mark.slow
def test_hf_xet_downloads_every_scheme_through_the_xorb_route(
    xet_hub: XetHubServer, tmp_path: Path
) -> None:
    files = {
        f"{s}.safetensors": make_data(MIB + 1000 * i, seed=20 + i) for i, s in enumerate(SCHEMES)
    }
    # chunk 0 five times (the last term also takes chunk 1)
    files["zeros.bin"] = bytes(5 * MAX_CHUNK + 77)
    files["tiny.bin"] = b"tiny"  # a single short chunk
    xet_hub.add_repo(
        "org/schemes", files, scheme={f"{s}.safetensors": s for s in SCHEMES} | {"zeros.bin": "lz4"}
    )
    assert len(xet_hub.xet_file("org/schemes", "zeros.bin").terms) == 5
    paths = hf_download(xet_hub, "org/schemes", list(files), tmp_path / "hf")
    for name, path in zip(files, paths, strict=True):
        assert path.read_bytes() == files[name], name
    cas = xet_hub.cas
    minted = [xet_hub.xet_file("org/schemes", name) for name in files]
    assert {s for xf in minted for x in xf.xorbs for s in cas.store.xorbs[x].schemes} == {0, 1, 2}
    assert cas.xorb_bytes() == sum(cas.store.xorb_bytes(xf) for xf in minted)
    assert xet_hub.cdn.log.body_bytes(path_prefix="/blobs/") == 0  # not the plain path
    # Token scope: the Hub token only went to the Hub, the CAS token only to reconstructions, none
    # to xorb URLs.
    hub_tokens = {bearer(r) for r in xet_hub.log}
    cas_tokens = {bearer(r) for r in cas.reconstruction_records()}
    assert hub_tokens == {TOKEN}
    assert cas_tokens <= set(cas.tokens) and len(cas_tokens) == 1
    assert {bearer(r) for r in cas.xorb_records()} == {None}
    assert len(cas.reconstruction_records(2)) == len(files)


@pytest.mark.slow
@pytest.mark.parametrize("status", [404, 501])
def test_hf_xet_uses_v1_when_v2_is_absent(status: int, repo: XetHubServer, tmp_path: Path) -> None:
    repo.cas.v2_status = status
    [path] = hf_download(repo, "org/m", ["model.safetensors"], tmp_path / "hf")
    assert path.read_bytes() == WEIGHTS
    assert repo.cas.reconstruction_records(1) and repo.cas.xorb_bytes() > 0


@pytest.mark.slow
def test_hf_xet_writes_a_corrupted_chunk_without_noticing(
    xet_hub: XetHubServer, tmp_path: Path
) -> None:
    data = make_data(2 * MIB, seed=30)
    xet_hub.add_repo("org/bad", {"model.safetensors": data})
    xf = xet_hub.xet_file("org/bad", "model.safetensors")
    [xorb] = xf.xorbs
    x = xet_hub.store.xorbs[xorb]
    index = 5
    # a stored chunk: the flipped byte lands in the file as is
    pos = xet_hub.cas.corrupt(xorb, index)
    [path] = hf_download(xet_hub, "org/bad", ["model.safetensors"], tmp_path / "hf")
    got = path.read_bytes()
    assert len(got) == len(data)
    assert hashlib.sha256(got).hexdigest() != xf.sha256
    in_file = sum(x.sizes[:index]) + pos - x.offsets[index] - 8
    assert [i for i in range(0, len(data), 4096) if got[i : i + 4096] != data[i : i + 4096]] == [
        in_file // 4096 * 4096
    ]
    assert got[in_file] == data[in_file] ^ 0xFF


@pytest.mark.slow
def test_hf_xet_refetches_an_upgrade_whole(xet_hub: XetHubServer, tmp_path: Path) -> None:
    a = make_data(8 * MIB, seed=31)
    b = revise(a, 12)  # ~10 % of ~128 chunks
    xet_hub.add_repo("org/up", {"model.safetensors": a})
    first = xet_hub.repo("org/up").sha
    xet_hub.replace_file("org/up", "model.safetensors", b)
    fa = xet_hub.xet_file("org/up", "model.safetensors", first)
    fb = xet_hub.xet_file("org/up", "model.safetensors")
    store, cas = xet_hub.store, xet_hub.cas
    new = store.new_bytes(fb, fa)
    assert 0.05 < new / store.xorb_bytes(fb) < 0.25
    home = tmp_path / "hf"
    [pa] = hf_download(xet_hub, "org/up", ["model.safetensors"], home, revision=first)
    assert pa.read_bytes() == a
    cas.log.clear()
    [pb] = hf_download(xet_hub, "org/up", ["model.safetensors"], home)
    assert pb.read_bytes() == b
    fetched = cas.xorb_bytes()
    # about everything, not just what changed
    assert fetched >= 0.9 * store.xorb_bytes(fb) > 3 * new
    print(json.dumps({"new_xorb_bytes": new, "hf_xet_fetched": fetched, "file": fb.size}))
