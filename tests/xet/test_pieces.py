"""A big term fetched as pieces (each from a reconstruction of its span) against a CAS that lies
about one piece: what is on disk is exactly what was hashed into the Xet file hash, with
``--no-verify`` as without it. Every lie ends in the right bytes (the file fetched unsplit, or over
plain HTTP) or in exit 6 with nothing installed."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from profiles import examples
from runfixtures import mdl, use_catalog
from servers import make_data
from xetserver import XetHubServer

WEIGHTS = "model.safetensors"
# MIN_PIECE for these tests: a file of a few hundred KiB is cut as a 24 MiB one is
PIECE = 128 << 10


@pytest.fixture
def catalog(xet_hub: XetHubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    from mdl.xet import _plan as plan

    monkeypatch.setattr(plan, "MIN_PIECE", PIECE)
    path = use_catalog(tmp_path, monkeypatch, '[models.m]\nrepo = "org/m"\n', endpoint=xet_hub.url)
    monkeypatch.setenv("MDL_LOG_LEVEL", "debug")
    return path


def _pull(dest: Path, *, pieces: int, verify: bool) -> tuple[int, str]:
    args = ["pull", "m"] if verify else ["pull", "m", "--no-verify"]
    result = mdl(*args, env={"MDL_DEST": str(dest), "MDL_CONNECTIONS": str(pieces)})
    return result.exit_code, result.stderr


def _chunk_at(hub: XetHubServer, byte: int) -> tuple[str, int, int]:
    """(xorb, chunk index, the chunk's first byte in the file) of the file's chunk holding
    ``byte``.
    """
    xf = hub.xet_file("org/m", WEIGHTS)
    (term,) = xf.terms
    sizes = hub.store.xorbs[term.xorb].sizes
    at = 0
    for index in range(term.start, term.end):
        if at + sizes[index] > byte:
            return term.xorb, index, at
        at += sizes[index]
    raise AssertionError(f"no chunk holds byte {byte}")


def _right_or_6(code: int, stderr: str, dest: Path, data: bytes) -> None:
    installed = dest / "m" / WEIGHTS
    if code == 0:
        assert installed.read_bytes() == data
    else:
        assert code == 6, stderr
        assert not installed.exists()
    assert "Traceback" not in stderr


@pytest.mark.parametrize("verify", [True, False])
def test_a_flipped_byte_in_a_later_piece_s_copy_of_the_chunk_across_a_cut_is_never_installed(
    xet_hub: XetHubServer, catalog: Path, tmp_path: Path, verify: bool
) -> None:
    """The chunk across a cut is fetched by both pieces; the second writes its tail from its own
    copy, which must hash as the first piece's (the one the Xet file hash was built from)."""
    data = make_data(512 << 10, seed=301)
    xet_hub.add_repo("org/m", {WEIGHTS: data}, scheme="none")
    xorb, chunk, start = _chunk_at(xet_hub, len(data) // 2)
    assert start < len(data) // 2  # the cut falls inside the chunk: both pieces fetch it
    first_byte = xet_hub.store.xorbs[xorb].offsets[chunk]
    size = xet_hub.store.xorbs[xorb].sizes[chunk]
    # a byte of the part past the cut
    at = len(data) // 2 - start + (size - (len(data) // 2 - start)) // 2
    # the second piece's copy, not the first's
    xet_hub.cas.corrupt(xorb, chunk, at=at, only_from=first_byte)
    dest = tmp_path / "dest"
    code, stderr = _pull(dest, pieces=2, verify=verify)
    _right_or_6(code, stderr, dest, data)
    assert code == 0  # the pieces disagree: the file is fetched unsplit, from an honest range
    assert "fetching its xorb ranges whole" in (catalog.parent / "mdl.log").read_text()


@pytest.mark.slow
@pytest.mark.parametrize("verify", [True, False])
@pytest.mark.parametrize("shift", [-50, 50])
def test_a_lie_about_a_piece_s_offset_into_its_first_chunk_is_never_installed(
    xet_hub: XetHubServer, catalog: Path, tmp_path: Path, verify: bool, shift: int
) -> None:
    """Only ``offset_into_first_range`` of the second piece's reply is wrong: its chunks would
    land shifted.
    """
    data = make_data(512 << 10, seed=302)
    xet_hub.add_repo("org/m", {WEIGHTS: data}, scheme="none")

    def shifted(_version: int, reply: dict[str, Any]) -> object:
        if reply["terms"][0]["range"]["start"] == 0:
            return reply
        return {
            **reply,
            "offset_into_first_range": max(0, reply["offset_into_first_range"] + shift),
        }

    xet_hub.cas.rewrite = shifted
    dest = tmp_path / "dest"
    code, stderr = _pull(dest, pieces=2, verify=verify)
    _right_or_6(code, stderr, dest, data)


_LIES = ["flip", "offset", "url_range", "range", "length", "none"]


def _lie(kind: str, amount: int, target_start: int) -> Any:
    """A reconstruction rewrite that lies (``kind``) in the reply whose first term starts at
    chunk ``target_start``.
    """

    def rewrite(version: int, reply: dict[str, Any]) -> object:
        if reply["terms"][0]["range"]["start"] != target_start or kind in ("flip", "none"):
            return reply
        out = copy.deepcopy(reply)
        term = out["terms"][0]
        if kind == "offset":
            out["offset_into_first_range"] = max(0, out["offset_into_first_range"] + amount)
        elif kind == "range":
            term["range"]["start"] = max(0, term["range"]["start"] + amount)
            term["range"]["end"] = max(term["range"]["start"] + 1, term["range"]["end"] + amount)
        elif kind == "length":
            term["unpacked_length"] = max(1, term["unpacked_length"] + amount)
        else:  # url_range / bytes: another stretch of the xorb than the URL grants
            entries = out["fetch_info"] if version == 1 else out["xorbs"]
            for fetches in entries.values():
                for fetch in fetches:
                    for span in (
                        [fetch["url_range"]]
                        if version == 1
                        else [r["bytes"] for r in fetch["ranges"]]
                    ):
                        span["start"] = max(0, span["start"] + amount)
                        span["end"] = max(span["start"], span["end"] + amount)
        return out

    return rewrite


@pytest.mark.slow
@settings(
    max_examples=examples(40),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@example(size=512 << 10, seed=1, pieces=2, kind="flip", amount=50, victim=1, verify=False, v2=True)
@example(
    size=512 << 10, seed=1, pieces=2, kind="offset", amount=-50, victim=1, verify=False, v2=False
)
@given(
    size=st.integers(300 << 10, 900 << 10),
    seed=st.integers(0, 1000),
    pieces=st.integers(2, 6),
    kind=st.sampled_from(_LIES),
    amount=st.sampled_from([-100, -50, -1, 1, 8, 50, 4096]),
    victim=st.integers(0, 5),
    verify=st.booleans(),
    v2=st.booleans(),
)
def test_any_cut_of_any_term_and_any_lie_ends_in_the_right_bytes_or_exit_6(
    xet_hub: XetHubServer,
    catalog: Path,
    tmp_path_factory: pytest.TempPathFactory,
    size: int,
    seed: int,
    pieces: int,
    kind: str,
    amount: int,
    victim: int,
    verify: bool,
    v2: bool,
) -> None:
    # no two sizes share chunks: the file is one term
    data = make_data(size, seed=(seed << 20) + size)
    xet_hub.add_repo("org/m", {WEIGHTS: data}, scheme="none")
    xet_hub.cas.v2_status = None if v2 else 404
    count = max(1, min(pieces, size // PIECE))
    cut = size * min(victim, count - 1) // count  # the first byte of the piece lied about
    xorb, chunk, start = _chunk_at(xet_hub, cut)
    xet_hub.cas.rewrite = _lie(kind, amount, chunk)
    # a byte of that piece's copy of its first chunk: of the part it writes (past the cut), mostly
    if kind == "flip":
        size = xet_hub.store.xorbs[xorb].sizes[chunk]
        at = (cut - start + abs(amount)) % size
        xet_hub.cas.corrupt(xorb, chunk, at=at, only_from=xet_hub.store.xorbs[xorb].offsets[chunk])
    dest = tmp_path_factory.mktemp("dest")
    code, stderr = _pull(dest, pieces=pieces, verify=verify)
    xet_hub.cas.rewrite = None
    xet_hub.cas.heal()  # the next example starts from an honest CAS
    _right_or_6(code, stderr, dest, data)


def test_a_piece_s_reconstruction_may_be_no_bigger_than_its_span_needs(
    xet_hub: XetHubServer, catalog: Path, tmp_path: Path
) -> None:
    """A piece of 256 KiB may have a reply of 64 KiB + 32 KiB: a 120 kB one (fine for the whole
    file's 128 KiB) is refused naming its URL, and the file comes over plain HTTP; eight such
    streams cannot hold eight 64 MiB replies."""
    data = make_data(512 << 10, seed=303)
    xet_hub.add_repo("org/m", {WEIGHTS: data}, scheme="none")
    xf = xet_hub.xet_file("org/m", WEIGHTS)

    def padded(_version: int, reply: dict[str, Any]) -> object:
        return {**reply, "pad": "x" * 120_000}

    xet_hub.cas.rewrite = padded
    dest = tmp_path / "dest"
    code, stderr = _pull(dest, pieces=2, verify=True)
    assert code == 0, stderr
    assert (dest / "m" / WEIGHTS).read_bytes() == data
    log = (catalog.parent / "mdl.log").read_text()
    assert (
        f"the reply from {xet_hub.cas.url}/v2/reconstructions/{xf.hash} is longer than 98,304 bytes"
        in log
    )
