"""One file, one version (issue 23: every range is checked against the first answer's validator):
whatever a server does between ranges, the final file holds exactly one version's bytes, or the run
fails with a documented exit (5 network, 6 integrity) and leaves no file.

Each test runs the real CLI (`mdl get`, a process of its own with a time limit, forked from the
worker's zygote: tests/zygote.py) against `ScriptedServer` (tests/hostile.py) on 127.0.0.1, serving
a 40 MiB file (above the 32 MiB split threshold, so `--connections 4` means parallel ranges) whose
versions change after a scripted number of requests. The assertions are on the final file's bytes and on what the server saw: every range
that does not start at byte 0 carries `If-Range` with the first answer's validator (strong ETag,
else Last-Modified as an HTTP-date; never a weak ETag).
"""

from __future__ import annotations

import hashlib
import http.client
import subprocess
import time
from collections.abc import Iterator, Sequence
from functools import cache
from pathlib import Path

import pytest
from hostile import Phase, ScriptedServer, Seen, http_date
from runfixtures import HANG
from servers import make_data
from zygote import forked_mdl

MiB = 1 << 20
KiB = 1 << 10
SIZE = 40 * MiB
PATH = "/f.bin"
LM_A = http_date(1_767_225_600)  # 2026-01-01
LM_B = http_date(1_767_312_000)  # a day later
LM_C = http_date(1_767_398_400)


NAMED: dict[str, bytes] = {}  # every version made so far, to say what a spliced file is made of


@cache
def version(name: str, size: int = SIZE) -> bytes:
    """The bytes of version ``name`` (distinct, incompressible, cached across tests)."""
    data = make_data(size, seed=23_000 + sum(map(ord, name)) * 7 + size % 1000)
    NAMED[name if size == SIZE else f"{name}({size})"] = data
    return data


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def serve() -> Iterator[list[ScriptedServer]]:
    """Start ScriptedServers for a test (``serve_file``); stop them after, and fail on any error
    inside them.
    """
    started: list[ScriptedServer] = []
    yield started
    for server in started:
        server.stop()
    for server in started:
        assert not server.errors, server.errors


def serve_file(started: list[ScriptedServer], *phases: Phase) -> ScriptedServer:
    server = ScriptedServer({PATH: phases}).start()
    started.append(server)
    return server


def run_mdl(tmp_path: Path, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """The CLI as users run it, in a subprocess (the environment is the test's isolated one); a run
    that outlasts ``timeout`` seconds is a failure."""
    try:
        return subprocess.run(
            [str(forked_mdl()), *args, "--no-progress", "--log-file", str(tmp_path / "mdl.log")],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=tmp_path,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"mdl {' '.join(args[:1])} still running after {timeout:.0f} s: {exc.stderr!r}")


def get(
    tmp_path: Path, server: ScriptedServer, *extra: str, connections: int = 4, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    out = tmp_path / "out" / "f.bin"
    args = ("get", server.url + PATH, "-o", str(out), "--connections", str(connections), *extra)
    return run_mdl(tmp_path, *args, timeout=timeout)


def composition(data: bytes) -> str:
    """Which version each MiB of ``data`` comes from, run-length encoded ("A×10 B×30"; "0" for
    zeros, "?" for anything else), for failure messages."""
    runs: list[list[object]] = []
    for pos in range(0, len(data), MiB):
        block = data[pos : pos + MiB]
        who = next((n for n, v in NAMED.items() if v[pos : pos + len(block)] == block), "?")
        if who == "?" and block.count(0) == len(block):
            who = "0"
        if runs and runs[-1][0] == who:
            runs[-1][1] = int(str(runs[-1][1])) + 1
        else:
            runs.append([who, 1])
    return " ".join(f"{who}×{count}" for who, count in runs) + f" ({len(data)} bytes)"


def assert_one_version(
    result: subprocess.CompletedProcess[str],
    tmp_path: Path,
    versions: dict[str, bytes],
    *,
    exits: Sequence[int],
) -> str | None:
    """The run made a final file that is exactly one of ``versions`` (returns its name), or it
    failed with one of ``exits`` and left no final file (returns None)."""
    out = tmp_path / "out" / "f.bin"
    if result.returncode == 0:
        data = out.read_bytes()
        for name, whole in versions.items():
            if data == whole:
                return name
        pytest.fail(
            f"exit 0 with a file of no single version: {composition(data)}\n{result.stderr}"
        )
    assert result.returncode in exits, (
        f"exit {result.returncode}, expected one of {exits}: {result.stderr}"
    )
    assert "Traceback" not in result.stderr
    assert not out.exists(), f"exit {result.returncode} left a final file"
    return None


def ranged(server: ScriptedServer) -> list[Seen]:
    return [s for s in server.seen(PATH) if s.method == "GET" and s.range is not None]


def assert_if_range(server: ScriptedServer, first: str, allowed: set[str]) -> None:
    """Every range that does not start at 0 carries If-Range with one of the ``allowed`` validators,
    the first identity's (``first``) among them; a weak ETag is never sent as a validator."""
    later = [s for s in ranged(server) if (s.range_start or 0) > 0]
    assert later, (
        f"no range beyond byte 0 was asked: {[(s.range, s.status) for s in server.seen()]}"
    )
    sent = [s.if_range for s in later]
    assert all(v in allowed for v in sent), (
        f"If-Range values {sent}, expected among {sorted(allowed)}"
    )
    assert first in sent, f"If-Range {first!r} (the first answer's validator) never sent: {sent}"
    assert not any(s.if_range and s.if_range.startswith("W/") for s in server.seen()), (
        "a weak ETag as If-Range"
    )


def parallel_ranges(server: ScriptedServer) -> int:
    """How many ranged GETs started beyond byte 0 (several means the file was split over
    connections).
    """
    return sum(1 for s in ranged(server) if (s.range_start or 0) > 0)


# -- the server does what it says (so the tests below prove something)
# -----------------------------------------


def _ask(
    conn: http.client.HTTPConnection, headers: dict[str, str]
) -> tuple[int, dict[str, str], bytes]:
    conn.request("GET", PATH, headers=headers)
    reply = conn.getresponse()
    return reply.status, dict(reply.getheaders()), reply.read()


def test_scripted_server_phases_if_range_caps_and_keep_alive(serve: list[ScriptedServer]) -> None:
    a, b = b"a" * 1000, b"B" * 1200
    server = serve_file(
        serve,
        Phase(a, etag='"a"', requests=2, cap=100),
        Phase(b, last_modified=LM_B, if_range=False),
    )
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    status, headers, body = _ask(conn, {"Range": "bytes=0-499"})
    assert (status, headers["Content-Range"], body, headers["ETag"]) == (
        206,
        "bytes 0-99/1000",
        a[:100],
        '"a"',
    )
    status, headers, body = _ask(conn, {"Range": "bytes=100-", "If-Range": '"other"'})
    assert (status, body) == (200, a), "If-Range that does not match: the whole current version"
    status, headers, body = _ask(conn, {"Range": "bytes=100-199", "If-Range": '"a"'})
    assert (status, headers["Content-Range"], headers["Last-Modified"], body) == (
        206,
        "bytes 100-199/1200",
        LM_B,
        b[100:200],
    )
    assert "ETag" not in headers
    assert [s.connection for s in server.seen()] == [1, 1, 1], "keep-alive"
    assert [s.phase for s in server.seen()] == [0, 0, 1]
    assert [s.if_range for s in server.seen()] == [None, '"other"', '"a"']
    conn.close()


@pytest.mark.slow
def test_scripted_server_ignores_ranges_and_drips(serve: list[ScriptedServer]) -> None:
    server = serve_file(serve, Phase(b"x" * 10, etag='W/"w"', ranges=False, drip_body=0.05))
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    began = time.monotonic()
    status, headers, body = _ask(conn, {"Range": "bytes=5-"})
    assert (status, body, headers["ETag"]) == (200, b"x" * 10, 'W/"w"')
    assert time.monotonic() - began >= 0.4, "ten body bytes, one every 0.05 s"
    conn.close()


# -- an ETag change, If-Range ignored: the 206s carry another ETag
# --------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("switch", [1, 3], ids=["after-probe", "mid-ranges"])
def test_etag_change_with_if_range_ignored_is_one_version(
    serve: list[ScriptedServer], tmp_path: Path, switch: int
) -> None:
    a, b = version("A"), version("B")
    server = serve_file(
        serve,
        Phase(a, etag='"a"', requests=switch, if_range=False),
        Phase(b, etag='"b"', if_range=False),
    )
    result = get(tmp_path, server)
    # B, unless no request reached the second version (a long first answer makes a stream take on
    # the pieces after its own: DownloadState.widen, the whole file in the first few requests)
    reached = any(s.phase == 1 for s in server.seen(PATH))
    # (B reached: B, or exit 5 after a second change; not reached: A, the file never changed)
    if reached:
        assert_one_version(result, tmp_path, {"B": b}, exits=[5])
    else:
        assert assert_one_version(result, tmp_path, {"A": a}, exits=[]) == "A"
    assert_if_range(server, '"a"', {'"a"', '"b"'})


# -- Last-Modified only (no ETag, or only a weak one), If-Range honoured: If-Range must be the date
# ------------


@pytest.mark.slow
@pytest.mark.parametrize("weak", [False, True], ids=["no-etag", "weak-etag"])
def test_last_modified_validator_is_sent_as_if_range(
    serve: list[ScriptedServer], tmp_path: Path, weak: bool
) -> None:
    a, b = version("A"), version("B")
    server = serve_file(
        serve,
        Phase(a, etag='W/"a"' if weak else None, last_modified=LM_A, requests=2),
        Phase(b, etag='W/"b"' if weak else None, last_modified=LM_B),
    )
    result = get(tmp_path, server)
    assert result.returncode == 0, f"one change is a restart, not a failure: {result.stderr}"
    assert assert_one_version(result, tmp_path, {"B": b}, exits=[]) == "B"
    assert_if_range(server, LM_A, {LM_A, LM_B})


@pytest.mark.slow
def test_last_modified_unchanged_keeps_parallel_ranges(
    serve: list[ScriptedServer], tmp_path: Path
) -> None:
    a = version("A")
    server = serve_file(serve, Phase(a, last_modified=LM_A))
    result = get(tmp_path, server)
    assert result.returncode == 0, result.stderr
    assert assert_one_version(result, tmp_path, {"A": a}, exits=[]) == "A"
    assert parallel_ranges(server) >= 2, "Last-Modified is a validator: ranges stay parallel"
    assert_if_range(server, LM_A, {LM_A})
    assert all(s.status == 206 for s in ranged(server))


# -- no validator at all: one stream (or ranges only under a sha256)
# -----------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("weak", [False, True], ids=["nothing", "weak-etag-only"])
@pytest.mark.parametrize("switch", [1, 2])
def test_no_validator_is_one_stream_and_one_version(
    serve: list[ScriptedServer], tmp_path: Path, weak: bool, switch: int
) -> None:
    a, b = version("A"), version("B")
    server = serve_file(
        serve,
        Phase(a, etag='W/"a"' if weak else None, requests=switch),
        Phase(b, etag='W/"b"' if weak else None),
    )
    result = get(tmp_path, server)
    assert_one_version(result, tmp_path, {"A": a, "B": b}, exits=[5, 6])
    assert parallel_ranges(server) <= 1, (
        "no validator and no sha256: one stream, no parallel ranges:"
        f" {[(s.range, s.status) for s in server.seen()]}"
    )
    assert not any(s.if_range for s in server.seen()), "nothing to send as If-Range"


@pytest.mark.slow
@pytest.mark.parametrize("expected", ["B", "A"])
def test_no_validator_with_sha256_ends_verified(
    serve: list[ScriptedServer], tmp_path: Path, expected: str
) -> None:
    """No validator, but a sha256: ranges may be used, and the hash decides. A lasts two requests,
    then B for ever: the final file is the hashed version whole, or the run fails (exit 5 or 6) with
    no file."""
    a, b = version("A"), version("B")
    server = serve_file(serve, Phase(a, requests=2), Phase(b))
    result = get(tmp_path, server, "--sha256", sha(version(expected)))
    assert assert_one_version(result, tmp_path, {expected: version(expected)}, exits=[5, 6]) in (
        expected,
        None,
    )


# -- a known sha256 never turns ranges off
# ----------------------------------------------------------------------


@pytest.mark.slow
def test_get_with_sha256_still_uses_parallel_ranges(
    serve: list[ScriptedServer], tmp_path: Path
) -> None:
    a = version("A")
    server = serve_file(serve, Phase(a, etag='"a"'))
    result = get(tmp_path, server, "--sha256", sha(a))
    assert result.returncode == 0, result.stderr
    assert assert_one_version(result, tmp_path, {"A": a}, exits=[]) == "A"
    assert parallel_ranges(server) >= 2, (
        f"one stream despite --connections 4: {[(s.range, s.status) for s in server.seen()]}"
    )
    assert not any(s.status == 200 for s in server.seen()), "no whole-file 200"


@pytest.mark.slow
def test_catalog_entry_with_sha256_and_no_size_uses_parallel_ranges(
    serve: list[ScriptedServer], tmp_path: Path
) -> None:
    a = version("A")
    server = serve_file(serve, Phase(a, etag='"a"'))
    catalog = tmp_path / "catalog.toml"
    catalog.write_text(
        f'[models.m]\nfiles = [{{ url = "{server.url}{PATH}", sha256 = "{sha(a)}" }}]\n'
    )
    dest = tmp_path / "dest"
    result = run_mdl(
        tmp_path, "pull", "m", "--catalog", str(catalog), "--dest", str(dest), "--connections", "4"
    )
    assert result.returncode == 0, result.stderr
    (final,) = [p for p in dest.rglob("f.bin") if ".mdl" not in p.parts]
    assert final.read_bytes() == a
    assert parallel_ranges(server) >= 2, (
        f"one stream despite --connections 4: {[(s.range, s.status) for s in server.seen()]}"
    )
    assert not any(s.status == 200 for s in server.seen()), "no whole-file 200"


# -- the complete length changes
# -------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("delta", [333 * KiB, -5 * MiB], ids=["grows", "shrinks"])
@pytest.mark.parametrize("validator", ["same-etag", "same-last-modified"])
def test_complete_length_change_is_a_new_version(
    serve: list[ScriptedServer], tmp_path: Path, delta: int, validator: str
) -> None:
    """The server keeps the validator (a broken origin) but the Content-Range total changes: only
    the length tells.
    """
    a, b = version("A"), version("B", SIZE + delta)
    keys = {"etag": '"same"'} if validator == "same-etag" else {"last_modified": LM_A}
    server = serve_file(serve, Phase(a, requests=2, **keys), Phase(b, **keys))
    result = get(tmp_path, server)
    assert_one_version(result, tmp_path, {"B": b}, exits=[5])
    first = '"same"' if validator == "same-etag" else LM_A
    assert_if_range(server, first, {first})


# -- 200 to a ranged request
# --------------------------------------------------------------------------------------


@pytest.mark.slow
def test_200_to_a_ranged_request_of_a_changed_file_restarts_from_it(
    serve: list[ScriptedServer], tmp_path: Path
) -> None:
    """A compliant server: If-Range "a" no longer matches, so the ranges get 200 and the whole
    new version.
    """
    a, b = version("A"), version("B")
    server = serve_file(serve, Phase(a, etag='"a"', requests=2), Phase(b, etag='"b"'))
    result = get(tmp_path, server)
    assert result.returncode == 0, f"one change is a restart, not a failure: {result.stderr}"
    assert assert_one_version(result, tmp_path, {"B": b}, exits=[]) == "B"
    assert_if_range(server, '"a"', {'"a"', '"b"'})


@pytest.mark.slow
def test_200_to_a_ranged_request_of_the_same_file_is_one_stream(
    serve: list[ScriptedServer], tmp_path: Path
) -> None:
    """Ranges ignored after the first answer (same bytes, same ETag): mdl keeps one stream of the
    200.
    """
    a = version("A")
    server = serve_file(serve, Phase(a, etag='"a"', requests=1), Phase(a, etag='"a"', ranges=False))
    result = get(tmp_path, server)
    assert result.returncode == 0, result.stderr
    assert assert_one_version(result, tmp_path, {"A": a}, exits=[]) == "A"


# -- short 206s are progress
# ----------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("validator", ["etag", "last-modified"])
def test_every_206_capped_at_512k_succeeds(
    serve: list[ScriptedServer], tmp_path: Path, validator: str
) -> None:
    a = version("A")
    keys = {"etag": '"a"'} if validator == "etag" else {"last_modified": LM_A}
    server = serve_file(serve, Phase(a, cap=512 * KiB, **keys))
    result = get(tmp_path, server)
    assert result.returncode == 0, f"short 206s are progress, not failures: {result.stderr}"
    assert assert_one_version(result, tmp_path, {"A": a}, exits=[]) == "A"
    served = sum(s.sent for s in server.seen())
    assert served <= SIZE * 1.1, (
        f"{served} bytes served for a {SIZE}-byte file: short answers were thrown away"
    )
    assert all(s.status == 206 for s in ranged(server))


@pytest.mark.slow
def test_short_206s_continue_on_the_same_connections(
    serve: list[ScriptedServer], tmp_path: Path
) -> None:
    a = version("A")
    server = serve_file(serve, Phase(a, etag='"a"', cap=512 * KiB))
    result = get(tmp_path, server)
    assert result.returncode == 0, result.stderr
    requests = server.seen()
    connections = {s.connection for s in requests}
    assert len(requests) >= SIZE // (512 * KiB)
    assert len(connections) <= 2 * 4 + 1, (
        f"{len(requests)} requests on {len(connections)} connections: no keep-alive"
    )


@pytest.mark.slow
def test_a_server_trickling_tiny_206s_gives_up_with_exit_5(
    serve: list[ScriptedServer], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A short answer is progress, but one of a few KiB per request spends a try: the work stays
    bounded.
    """
    monkeypatch.setenv("MDL_RETRIES", "1")
    a = version("A")
    server = serve_file(serve, Phase(a, etag='"a"', cap=16 * KiB))
    result = get(tmp_path, server)
    assert result.returncode == 5, result.stderr
    assert "the server sent only 16384 bytes of the range" in result.stderr
    assert "gave up after 2 tries" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out" / "f.bin").exists()
    assert len(server.seen()) < 40, "a request per 16 KiB of a 40 MiB file would be thousands"


# -- a file that keeps changing
# ---------------------------------------------------------------------------------------


def three_versions(validator: str) -> list[dict[str, str]]:
    """Versions A, B and C named by ``validator`` alone: strong ETags, or dates a day apart."""
    if validator == "etag":
        return [{"etag": '"a"'}, {"etag": '"b"'}, {"etag": '"c"'}]
    return [{"last_modified": LM_A}, {"last_modified": LM_B}, {"last_modified": LM_C}]


@pytest.mark.slow
@pytest.mark.parametrize("validator", ["etag", "last-modified"])
def test_file_changing_twice_is_exit_5_and_no_file(
    serve: list[ScriptedServer], tmp_path: Path, validator: str
) -> None:
    """A, then B (long enough for mdl to restart on it), then C: the second change during one
    download is exit 5.
    """
    a, b, c = version("A"), version("B"), version("C")
    cap = 1 * MiB  # many requests per version, so mdl sees each change
    keys = three_versions(validator)
    server = serve_file(
        serve,
        Phase(a, requests=2, cap=cap, if_range=False, **keys[0]),
        Phase(b, requests=6, cap=cap, if_range=False, **keys[1]),
        Phase(c, cap=cap, if_range=False, **keys[2]),
    )
    result = get(tmp_path, server)
    assert result.returncode == 5, f"exit {result.returncode}: {result.stderr}"
    assert "kept changing upstream" in result.stderr
    assert assert_one_version(result, tmp_path, {}, exits=[5]) is None
    assert server.phase(PATH) == 2, "the test is void unless mdl saw the third version"


@pytest.mark.slow
@pytest.mark.parametrize("validator", ["etag", "last-modified"])
@pytest.mark.parametrize("connections", [1, 4])
def test_a_version_seen_in_one_answer_counts_as_a_change(
    serve: list[ScriptedServer], tmp_path: Path, validator: str, connections: int
) -> None:
    """Fixed defect (CI, issue 79's overlapping streams), as found: A, then B for a few answers,
    then C was fetched whole as C, exit 0, when the streams in flight read every answer of B: the
    start over took the next answer's version as new, not the one that had made it start over. The
    start over is now bound to the version seen (and a third one seen in one attempt counts too):
    here B lasts one answer and C's header block drips (about 2 s), so B's answer is read first on
    any number of streams, and the start over's answer (C) is a second change, counted once."""
    a, b, c = version("A"), version("B"), version("C")
    keys = three_versions(validator)
    server = serve_file(
        serve,
        Phase(a, requests=1, cap=MiB, if_range=False, **keys[0]),
        Phase(b, requests=1, cap=MiB, if_range=False, **keys[1]),
        Phase(c, cap=MiB, if_range=False, drip_headers=0.01, **keys[2]),
    )
    result = get(tmp_path, server, connections=connections)
    seen = [s.phase for s in server.seen()]
    assert result.returncode == 5, f"exit {result.returncode} ({seen}): {result.stderr}"
    assert "kept changing upstream" in result.stderr and "Traceback" not in result.stderr
    assert "(3 versions seen)" in result.stderr
    assert not (tmp_path / "out" / "f.bin").exists()


@pytest.mark.slow
@pytest.mark.parametrize("connections", [1, 4])
def test_a_new_version_whose_answers_each_lost_a_validator_is_one_change(
    serve: list[ScriptedServer], tmp_path: Path, connections: int
) -> None:
    """A, then B, whose first answer kept only its ETag and the others only their date (a proxy
    strips one or the other): a validator left out is no contradiction, so this is one change,
    the file is B, exit 0 (a review of the fix above: a missing date had counted as a third
    version)."""
    a, b = version("A"), version("B")
    server = serve_file(
        serve,
        Phase(a, requests=1, cap=MiB, if_range=False, etag='"a"', last_modified=LM_A),
        Phase(b, requests=1, cap=MiB, if_range=False, etag='"b"'),
        Phase(b, cap=MiB, if_range=False, last_modified=LM_B),
    )
    result = get(tmp_path, server, connections=connections)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out" / "f.bin").read_bytes() == b


# -- a header block that drips: --timeout bounds the whole header block
# ------------------------------------------------


@pytest.mark.slow
@pytest.mark.realtime
def test_dripping_header_block_is_exit_5_at_its_timeout(
    serve: list[ScriptedServer], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # ~200 header bytes, one per 0.3 s: a minute a try (two tries). Exit 5 at all says the block's 1
    # s budget fired (a budget per byte would read it all and succeed).
    server = serve_file(serve, Phase(b"tiny file", etag='"t"', drip_headers=0.3))
    monkeypatch.setenv("MDL_RETRIES", "1")
    result = get(tmp_path, server, "--timeout", "1", connections=1, timeout=HANG)
    assert result.returncode == 5, result.stderr
    assert not (tmp_path / "out" / "f.bin").exists()
