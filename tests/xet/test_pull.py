"""`mdl pull` of Xet-backed Hub files against the Hub + CAS stand-in (tests/xetserver.py): by chunk,
verified, reusing what is on disk (resuming: tests/xet/test_resume.py); every fault of the protocol
ends in the right bytes over plain HTTP, or in exit 6 with nothing at the final path when the CAS
serves corrupt bytes."""

from __future__ import annotations

import json
import random
import re
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from profiles import examples
from runfixtures import HANG, mdl, use_catalog
from servers import TOKEN, Fault, make_data
from xetserver import XetHubServer, bearer

WEIGHTS = "model.safetensors"


@pytest.fixture
def catalog(xet_hub: XetHubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = use_catalog(tmp_path, monkeypatch, '[models.m]\nrepo = "org/m"\n', endpoint=xet_hub.url)
    monkeypatch.setenv("MDL_LOG_LEVEL", "debug")
    return path


def _installed(catalog: Path) -> Path:
    return catalog.parent / "models" / "m" / WEIGHTS


def _log(catalog: Path) -> str:
    return (catalog.parent / "mdl.log").read_text()


def _edited(data: bytes, *, every: int = 1 << 20, seed: int = 5) -> bytes:
    """``data`` with a 50-byte span changed per ``every`` bytes: about one chunk in sixteen
    changes.
    """
    out, rng = bytearray(data), random.Random(seed)
    for start in range(0, len(data) - every + 1, every):
        at = start + rng.randrange(every - 64)
        out[at : at + 50] = rng.randbytes(50)
    return bytes(out)


def _cdn_bytes(hub: XetHubServer) -> int:
    return sum(r.bytes_sent for r in hub.cdn.log.records())


@pytest.mark.slow
@pytest.mark.parametrize("scheme", ["none", "lz4", "bg4", "mixed"])
def test_a_first_pull_fetches_xorb_ranges_not_the_plain_file(
    xet_hub: XetHubServer, catalog: Path, scheme: str
) -> None:
    data = make_data(3 << 20, seed=1)
    xet_hub.add_repo("org/m", {WEIGHTS: data, "config.json": b"{}"}, scheme=scheme)
    xf = xet_hub.xet_file("org/m", WEIGHTS)
    result = mdl("pull", "m")
    assert result.exit_code == 0, result.stderr
    assert _installed(catalog).read_bytes() == data
    # every xorb range once, nothing more
    assert xet_hub.cas.xorb_bytes() == xet_hub.store.xorb_bytes(xf)
    assert _cdn_bytes(xet_hub) == 0  # the plain path sent nothing
    show = json.loads(mdl("show", "m", "--json").stdout)["models"][0]["files"]
    weights = next(f for f in show if f["path"] == WEIGHTS)
    assert (weights["xet"], weights["fetched"], weights["reused"]) == (
        xf.hash,
        xet_hub.cas.xorb_bytes(),
        0,
    )


@pytest.mark.slow
def test_an_upgrade_fetches_only_the_chunks_not_on_disk(
    xet_hub: XetHubServer, catalog: Path
) -> None:
    old = make_data(8 << 20, seed=2)
    new = _edited(old)
    xet_hub.add_repo("org/m", {WEIGHTS: old}, scheme="mixed")
    before = xet_hub.xet_file("org/m", WEIGHTS)
    assert mdl("pull", "m").exit_code == 0
    first = xet_hub.cas.xorb_bytes()
    xet_hub.commit("org/m", {WEIGHTS: new})
    after = xet_hub.xet_file("org/m", WEIGHTS)
    result = mdl("pull", "m", "--json")
    assert result.exit_code == 0, result.stderr
    assert _installed(catalog).read_bytes() == new
    fetched = xet_hub.cas.xorb_bytes() - first
    wanted = xet_hub.store.new_bytes(after, before)
    assert 0 < wanted < xet_hub.store.xorb_bytes(after) // 4  # the edit changed few chunks
    assert fetched <= 1.1 * wanted
    doc = json.loads(result.stdout)
    (entry,) = doc["files"]
    assert entry["reused"] > 6 << 20 and doc["reused"] == entry["reused"]
    assert "reused from files already here" in result.stderr


@pytest.mark.slow
def test_chunks_that_changed_on_disk_are_fetched_not_copied(
    xet_hub: XetHubServer, catalog: Path
) -> None:
    """Reused bytes are checked chunk by chunk as they are read: a file edited in place is no
    source.
    """
    old = make_data(4 << 20, seed=3)
    xet_hub.add_repo("org/m", {WEIGHTS: old}, scheme="lz4")
    assert mdl("pull", "m").exit_code == 0
    installed = _installed(catalog)
    # same size, same mtime is not needed: the chunk hashes decide
    with installed.open("r+b") as handle:
        handle.seek(1 << 20)
        handle.write(b"\0" * 4096)
    new = _edited(old)
    xet_hub.commit("org/m", {WEIGHTS: new})
    result = mdl("pull", "m")
    assert result.exit_code == 0, result.stderr
    assert installed.read_bytes() == new


@pytest.mark.slow
@pytest.mark.parametrize("scheme", ["none", "lz4", "bg4"])
def test_a_corrupt_xorb_byte_is_exit_6_and_nothing_reaches_the_final_path(
    xet_hub: XetHubServer, catalog: Path, scheme: str
) -> None:
    data = make_data(2 << 20, seed=4)
    xet_hub.add_repo("org/m", {WEIGHTS: data}, scheme=scheme)
    xf = xet_hub.xet_file("org/m", WEIGHTS)
    xet_hub.cas.corrupt(xf.terms[0].xorb, 5)
    result = mdl("pull", "m")
    assert result.exit_code == 6, result.stderr
    assert not _installed(catalog).exists()
    assert not list((catalog.parent / "models" / ".mdl" / "partial").glob("*.part"))
    assert "model.safetensors" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.slow
def test_an_expired_xorb_url_asks_the_reconstruction_again(
    xet_hub: XetHubServer, catalog: Path
) -> None:
    data = make_data(3 << 20, seed=6)
    xet_hub.add_repo("org/m", {WEIGHTS: data}, scheme="none")
    # the first URLs expire (403)
    xet_hub.cas.faults.add(Fault.expire_urls(path_prefix="/xorb/", times=1))
    result = mdl("pull", "m")
    assert result.exit_code == 0, result.stderr
    assert _installed(catalog).read_bytes() == data
    assert len(xet_hub.cas.reconstruction_records()) == 2
    assert [r.status for r in xet_hub.cas.xorb_records()].count(403) >= 1
    assert _cdn_bytes(xet_hub) == 0


@pytest.mark.slow
def test_a_token_near_its_expiry_is_asked_again(xet_hub: XetHubServer, catalog: Path) -> None:
    xet_hub.add_repo(
        "org/m", {WEIGHTS: make_data(2 << 20, seed=7), "b.safetensors": make_data(2 << 20, seed=8)}
    )
    # less than the 30 s mdl keeps in hand: every use asks a fresh one
    xet_hub.cas.token_lifetime = 10
    result = mdl("pull", "m", "--jobs", "1")
    assert result.exit_code == 0, result.stderr
    token_asks = [r for r in xet_hub.log.records() if "/xet-read-token/" in r.url_path]
    assert len(token_asks) >= 2


def test_a_token_the_cas_refuses_is_replaced_once(xet_hub: XetHubServer, catalog: Path) -> None:
    data = make_data(2 << 20, seed=9)
    xet_hub.add_repo("org/m", {WEIGHTS: data})
    xet_hub.cas.fail_reconstructions(401, times=1)
    result = mdl("pull", "m")
    assert result.exit_code == 0, result.stderr
    assert _installed(catalog).read_bytes() == data
    assert len([r for r in xet_hub.log.records() if "/xet-read-token/" in r.url_path]) == 2
    assert xet_hub.cas.xorb_bytes() > 0  # by chunk, not over plain HTTP


@pytest.mark.slow
def test_a_stalled_xorb_stream_ends_in_a_bounded_wait(
    xet_hub: XetHubServer, catalog: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = make_data(2 << 20, seed=10)
    xet_hub.add_repo("org/m", {WEIGHTS: data})
    xet_hub.cas.stall_xorbs(after_bytes=100_000, seconds=None, times=1)
    monkeypatch.setenv("MDL_STALL_TIMEOUT", "1")
    began = time.monotonic()
    result = mdl("pull", "m")
    assert result.exit_code == 0, result.stderr
    # the stall is endless: ending at all is the stall timeout firing
    assert time.monotonic() - began < HANG
    assert _installed(catalog).read_bytes() == data


def test_token_scope_each_credential_goes_to_its_own_origin_only(
    xet_hub: XetHubServer, catalog: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    xet_hub.add_repo("org/m", {WEIGHTS: make_data(2 << 20, seed=11)})
    assert mdl("pull", "m").exit_code == 0
    cas_tokens = set(xet_hub.cas.tokens)
    hub_sent = {bearer(r) for r in xet_hub.log.records()}
    assert hub_sent == {TOKEN}  # the Hub gets the Hub token, and never a CAS token
    reconstructions = xet_hub.cas.reconstruction_records()
    # the CAS token, never the Hub's
    assert reconstructions and {bearer(r) for r in reconstructions} <= cas_tokens
    # presigned URLs carry no credential
    assert {bearer(r) for r in xet_hub.cas.xorb_records()} == {None}
    assert all(bearer(r) is None for r in xet_hub.cdn.log.records())


def test_a_refused_hub_token_is_exit_3(
    xet_hub: XetHubServer, catalog: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    xet_hub.add_repo("org/m", {WEIGHTS: make_data(1 << 20, seed=12)})
    xet_hub.faults.add(
        Fault.http_error(403, path_prefix="/api/models/org/m/xet-read-token/", times=None)
    )
    result = mdl("pull", "m")
    assert result.exit_code == 3, result.stderr
    assert not _installed(catalog).exists()


def test_a_token_url_redirected_off_the_hub_falls_back_to_plain_http(
    xet_hub: XetHubServer, catalog: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The read token's URL redirected to another origin (the Hub token is not sent there): its
    401 refuses no token of the user's, so the file comes over plain HTTP, never exit 3."""
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    data = make_data(1 << 20, seed=17)
    xet_hub.add_repo("org/m", {WEIGHTS: data}, private=True)
    asks = "/api/models/org/m/xet-read-token/"
    elsewhere = xet_hub.url.replace("127.0.0.1", "localhost")  # the same server, another origin
    redirect = Fault.http_error(307, path_prefix=asks, headers={})
    redirect.headers["Location"] = f"{elsewhere}{asks}"
    xet_hub.faults.add(redirect)
    _falls_back(xet_hub, catalog, data, "off the Hub's origin, answered HTTP 401")
    offsite = [r for r in xet_hub.log.records() if not r.headers.get("host", "").startswith("127.")]
    assert offsite and all(bearer(r) is None for r in offsite), "the token left the Hub"


def _falls_back(hub: XetHubServer, catalog: Path, data: bytes, why: str) -> None:
    result = mdl("pull", "m")
    assert result.exit_code == 0, result.stderr
    assert _installed(catalog).read_bytes() == data
    # as mdl announced them
    waits = [float(s) for s in re.findall(r"; retry \d+ in ([\d.]+)s", _log(catalog))]
    assert len(waits) <= 2 and sum(waits) < 5, waits  # no long backoff on a sick CAS
    assert _cdn_bytes(hub) >= len(data)  # over plain HTTP
    lines = [line for line in _log(catalog).splitlines() if "fetching it over plain HTTP" in line]
    assert len(lines) == 1 and why in lines[0], lines


@pytest.mark.slow
def test_a_cas_that_is_down_falls_back_quickly(xet_hub: XetHubServer, catalog: Path) -> None:
    data = make_data(1 << 20, seed=13)
    xet_hub.add_repo("org/m", {WEIGHTS: data})
    xet_hub.cas.down = "503"
    _falls_back(xet_hub, catalog, data, "Xet storage failed")


def test_a_xorb_stream_cut_short_falls_back_naming_where_it_came_from(
    xet_hub: XetHubServer, catalog: Path
) -> None:
    data = make_data(1 << 20, seed=16)
    xet_hub.add_repo("org/m", {WEIGHTS: data}, scheme="lz4")
    xet_hub.cas.faults.add(Fault.reset(1000, path_prefix="/xorb/", times=None))
    _falls_back(xet_hub, catalog, data, f"error from {urlsplit(xet_hub.cas.url).netloc}: ")


def test_an_unknown_chunk_version_falls_back(xet_hub: XetHubServer, catalog: Path) -> None:
    data = make_data(1 << 20, seed=14)
    xet_hub.add_repo("org/m", {WEIGHTS: data}, scheme="lz4")
    xf = xet_hub.xet_file("org/m", WEIGHTS)
    xet_hub.cas.patch(xf.terms[0].xorb, xet_hub.store.xorbs[xf.terms[0].xorb].offsets[0], b"\x07")
    _falls_back(xet_hub, catalog, data, "format mdl does not know")


def test_a_malformed_reconstruction_falls_back(xet_hub: XetHubServer, catalog: Path) -> None:
    data = make_data(1 << 20, seed=15)
    xet_hub.add_repo("org/m", {WEIGHTS: data})
    xet_hub.cas.rewrite = lambda version, reply: {**reply, "terms": "nope"}
    _falls_back(xet_hub, catalog, data, "malformed")


def test_no_v2_means_v1(xet_hub: XetHubServer, catalog: Path) -> None:
    data = make_data(2 << 20, seed=16)
    xet_hub.add_repo("org/m", {WEIGHTS: data})
    xet_hub.cas.v2_status = 501
    assert mdl("pull", "m").exit_code == 0
    assert _installed(catalog).read_bytes() == data
    assert xet_hub.cas.reconstruction_records(version=1) and _cdn_bytes(xet_hub) == 0


def test_no_xet_takes_the_plain_path(
    xet_hub: XetHubServer, catalog: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = make_data(1 << 20, seed=17)
    xet_hub.add_repo("org/m", {WEIGHTS: data})
    assert mdl("pull", "m", "--no-xet").exit_code == 0
    assert _installed(catalog).read_bytes() == data
    assert xet_hub.cas.log.records() == []
    assert not [r for r in xet_hub.log.records() if "/xet-read-token/" in r.url_path]


def test_no_verify_still_holds_every_chunk_to_the_xet_hash(
    xet_hub: XetHubServer, catalog: Path
) -> None:
    xet_hub.add_repo("org/m", {WEIGHTS: make_data(1 << 20, seed=18)}, scheme="none")
    xf = xet_hub.xet_file("org/m", WEIGHTS)
    xet_hub.cas.corrupt(xf.terms[0].xorb, 2)
    result = mdl("pull", "m", "--no-verify")
    assert result.exit_code == 6, result.stderr
    assert "Xet file hash mismatch" in result.stderr
    assert not _installed(catalog).exists()


def test_presigned_urls_and_the_cas_token_never_show(xet_hub: XetHubServer, catalog: Path) -> None:
    data = make_data(2 << 20, seed=19)
    xet_hub.add_repo("org/m", {WEIGHTS: data})
    # a refused URL: said in the log
    xet_hub.cas.faults.add(Fault.expire_urls(path_prefix="/xorb/", times=1))
    xet_hub.cas.stall_xorbs(after_bytes=1000, seconds=None, times=1)
    result = mdl("pull", "m", "--stall-timeout", "1", "--json")
    assert result.exit_code == 0, result.stderr
    signatures = {
        r.path.split("X-Xet-Signature=")[1].split("&")[0] for r in xet_hub.cas.xorb_records()
    }
    tokens = set(xet_hub.cas.tokens)
    assert signatures and tokens
    state = catalog.parent / "models" / ".mdl"
    seen = [result.stdout, result.stderr, _log(catalog)]
    seen += [p.read_text() for p in state.rglob("*.json")]
    for text in seen:
        for secret in signatures | tokens:
            assert secret not in text


@pytest.mark.slow
def test_a_new_version_replaces_the_old_chunk_record(xet_hub: XetHubServer, catalog: Path) -> None:
    old = make_data(2 << 20, seed=20)
    xet_hub.add_repo("org/m", {WEIGHTS: old})
    assert mdl("pull", "m").exit_code == 0
    first = xet_hub.xet_file("org/m", WEIGHTS)
    xet_hub.commit("org/m", {WEIGHTS: _edited(old)})
    assert mdl("pull", "m").exit_code == 0
    second = xet_hub.xet_file("org/m", WEIGHTS)
    kept = {p.stem for p in (catalog.parent / "models" / ".mdl" / "xet").glob("*.json")}
    assert kept == {second.hash} != {first.hash}


# --- malformed replies and chunk headers: the right bytes, or exit 5/6 with nothing in place; never
# a traceback ---

_MUTATIONS = st.sampled_from(
    [
        "drop_term",
        "swap_terms",
        "grow_length",
        "shrink_length",
        "bad_range",
        "offset",
        "other_xorb",
        "garbage",
        "no_fetch",
        "dup_term",
        "null",
    ]
)


def _mutate(reply: dict[str, object], how: str, pick: int) -> object:
    terms = list(reply["terms"])  # type: ignore[call-overload]
    term = dict(terms[pick % len(terms)])
    if how == "drop_term":
        terms.pop(pick % len(terms))
    elif how == "swap_terms" and len(terms) > 1:
        terms.reverse()
    elif how == "grow_length":
        term["unpacked_length"] = int(term["unpacked_length"]) + 1 + pick
        terms[pick % len(terms)] = term
    elif how == "shrink_length":
        term["unpacked_length"] = max(1, int(term["unpacked_length"]) - 1 - pick)
        terms[pick % len(terms)] = term
    elif how == "bad_range":
        term["range"] = {"start": 5 + pick, "end": 2}
        terms[pick % len(terms)] = term
    elif how == "offset":
        return {**reply, "offset_into_first_range": 1 + pick}
    elif how == "other_xorb":
        term["hash"] = "ab" * 32
        terms[pick % len(terms)] = term
    elif how == "garbage":
        return b"\x00{not json" + bytes([pick % 256])
    elif how == "no_fetch":
        return {k: {} if k in ("fetch_info", "xorbs") else v for k, v in reply.items()}
    elif how == "dup_term":
        terms.insert(pick % len(terms), term)
    elif how == "null":
        return {**reply, "terms": None}
    return {**reply, "terms": terms}


@pytest.mark.slow
@settings(
    max_examples=examples(25),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(how=_MUTATIONS, pick=st.integers(0, 7), version=st.sampled_from([1, 2]))
def test_a_malformed_reconstruction_never_writes_wrong_bytes(
    xet_hub: XetHubServer,
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
    how: str,
    pick: int,
    version: int,
) -> None:
    if "org/hyp" not in {r for _, r in xet_hub.repos}:
        parts = [make_data(256 << 10, seed=60 + i) for i in range(4)]
        xet_hub.add_repo(
            "org/hypparts", {f"p{i}.bin": p for i, p in enumerate(parts)}, scheme="mixed"
        )
        xet_hub.add_repo("org/hyp", {WEIGHTS: b"".join(parts)}, scheme="mixed")
    data = xet_hub.store.reconstruct(xet_hub.xet_file("org/hyp", WEIGHTS))
    folder = tmp_path_factory.mktemp("hyp")
    use_catalog(folder, monkeypatch, '[models.m]\nrepo = "org/hyp"\n', endpoint=xet_hub.url)
    xet_hub.cas.v2_status = None if version == 2 else 404
    xet_hub.cas.rewrite = lambda _version, reply: _mutate(reply, how, pick)
    result = mdl("pull", "m")
    installed = folder / "models" / "m" / WEIGHTS
    assert result.exit_code in (0, 5, 6), result.stderr
    assert "Traceback" not in result.stderr
    if result.exit_code == 0:
        assert installed.read_bytes() == data
    else:
        assert not installed.exists()


@pytest.mark.slow
def test_limit_rate_caps_xorb_bytes_too(xet_hub: XetHubServer, catalog: Path) -> None:
    data = make_data(3 << 20, seed=21)
    xet_hub.add_repo("org/m", {WEIGHTS: data}, scheme="none")
    began = time.monotonic()
    result = mdl("pull", "m", "--limit-rate", "1M")
    assert result.exit_code == 0, result.stderr
    assert time.monotonic() - began >= 1.5  # 3 MiB at 1 MiB/s, less the limiter's first burst
    assert xet_hub.cas.xorb_bytes() > 0 and _cdn_bytes(xet_hub) == 0


@pytest.mark.slow
def test_a_big_term_is_fetched_as_pieces_on_parallel_streams(
    xet_hub: XetHubServer, catalog: Path
) -> None:
    """One 24 MiB xorb range would be one stream where the plain path opens eight: it is cut into
    pieces, each from a reconstruction of its span; the chunk across each cut comes twice, nothing
    else does."""
    data = make_data(24 << 20, seed=22)
    xet_hub.add_repo("org/m", {WEIGHTS: data}, scheme="lz4")
    xf = xet_hub.xet_file("org/m", WEIGHTS)
    assert len(xf.terms) == 1
    result = mdl("pull", "m")
    assert result.exit_code == 0, result.stderr
    assert _installed(catalog).read_bytes() == data
    xorbs = [r for r in xet_hub.cas.xorb_records() if r.status == 206]
    assert len(xorbs) == 3  # 24 MiB in pieces of at least 8 MiB
    assert (
        xet_hub.store.xorb_bytes(xf)
        < xet_hub.cas.xorb_bytes()
        <= xet_hub.store.xorb_bytes(xf) + 2 * (128 << 10)
    )
    ranged = [r for r in xet_hub.cas.reconstruction_records() if "range" in r.headers]
    assert len(ranged) == 3
    show = json.loads(mdl("show", "m", "--json").stdout)["models"][0]["files"][0]
    assert show["xet"] == xf.hash  # the pieces' chunks add up to the file's Xet hash


@pytest.mark.slow
def test_a_piece_reply_that_does_not_fit_its_term_fetches_the_file_unsplit(
    xet_hub: XetHubServer, catalog: Path
) -> None:
    data = make_data(24 << 20, seed=23)
    xet_hub.add_repo("org/m", {WEIGHTS: data}, scheme="none")

    def pieces_in_two_terms(version: int, reply: dict[str, Any]) -> object:
        term = reply["terms"][0]
        if term["range"]["start"] == 0:  # the whole file's reply (and the first piece's) as it is
            return reply
        # a later piece's: parses, but is not the part of its term
        return {**reply, "terms": [term, term]}

    xet_hub.cas.rewrite = pieces_in_two_terms
    result = mdl("pull", "m")
    assert result.exit_code == 0, result.stderr
    assert _installed(catalog).read_bytes() == data
    assert "fetching its xorb ranges whole" in _log(catalog)
    assert _cdn_bytes(xet_hub) == 0


@pytest.mark.slow
def test_pieces_finishing_out_of_order_still_hash_the_bytes_on_disk(
    xet_hub: XetHubServer, catalog: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sha256 follows only bytes on disk from the file's start: a later piece done first is
    not a start done.
    """
    from mdl.xet._plan import FetchPiece
    from mdl.xet._streams import Streams

    data = make_data(24 << 20, seed=24)
    xet_hub.add_repo("org/m", {WEIGHTS: data}, scheme="none")
    piece = Streams._piece
    another_done = threading.Event()

    def first_piece_last(self: Any, task: FetchPiece) -> None:
        if task.piece == 0:  # another piece is on disk before the file's first bytes
            assert another_done.wait(HANG), "no other piece was fetched while the first waited"
        piece(self, task)
        if task.piece != 0:
            another_done.set()

    monkeypatch.setattr(Streams, "_piece", first_piece_last)
    result = mdl("pull", "m")
    assert result.exit_code == 0, result.stderr
    assert _installed(catalog).read_bytes() == data


@given(sizes=st.lists(st.integers(1, 1 << 20), min_size=1, max_size=40), data=st.data())
def test_runs_cut_terms_in_order_into_the_count_asked(
    sizes: list[int], data: st.DataObject
) -> None:
    from mdl.xet._plan import runs as cut

    count = data.draw(st.integers(1, len(sizes)))
    items = list(range(100, 100 + len(sizes)))
    runs = cut(items, sizes, count)
    assert len(runs) == count and all(runs)
    assert [item for run in runs for item in run] == items


@pytest.mark.slow
def test_a_new_revisions_new_chunks_come_on_several_streams(
    xet_hub: XetHubServer, catalog: Path
) -> None:
    """An upgrade's new chunks sit in one new xorb, one range for many terms: they come as runs of
    whole terms, each from a reconstruction of its span, on parallel streams, and still no byte more
    than the new chunks."""
    old = make_data(32 << 20, seed=25)
    new = _edited(old, every=96 << 10)  # most chunks change: well over 16 MiB of new chunks
    xet_hub.add_repo("org/m", {WEIGHTS: old}, scheme="none")
    before = xet_hub.xet_file("org/m", WEIGHTS)
    assert mdl("pull", "m").exit_code == 0
    xet_hub.cas.log.clear()
    xet_hub.commit("org/m", {WEIGHTS: new})
    after = xet_hub.xet_file("org/m", WEIGHTS)
    result = mdl("pull", "m")
    assert result.exit_code == 0, result.stderr
    assert _installed(catalog).read_bytes() == new
    wanted = xet_hub.store.new_bytes(after, before)
    assert wanted >= 2 * (8 << 20)  # enough new bytes for at least two runs of 8 MiB
    assert len([r for r in xet_hub.cas.xorb_records() if r.status == 206]) >= 2
    assert xet_hub.cas.xorb_bytes() <= 1.1 * wanted
