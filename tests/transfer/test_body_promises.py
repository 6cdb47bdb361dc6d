"""One check, every path (issue 37, class B; engine rule 16): an answer's body never exceeds what
its headers name, whether the probe, the engine's parser or its raw socket reader reads it, and a
200 that carries a Content-Range for part of the file (``rclone serve s3``) is read as that range.

The servers are `FramedServer`s (tests/hostile.py): scripted files whose answers a policy may frame
as chunked with more or fewer bytes than their Content-Range names, or answer a range with rclone's
200.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx2
import pytest
from hostile import (
    Answer,
    FramedServer,
    Phase,
    Policy,
    ScriptedServer,
    Seen,
    chunked,
    rclone_ranges,
)
from hypothesis import given, settings
from hypothesis import strategies as st
from profiles import examples
from runfixtures import mdl, transfer_job
from servers import make_data

from mdl.errors import ExitCode, MdlError, NetworkError
from mdl.progress import NullProgress
from mdl.transfer._state import OVERLAP
from mdl.transfer.body import Span, promised
from mdl.transfer.engine import Engine
from mdl.transfer.http import Credentials, RetryPolicy, follow, make_client
from mdl.transfer.job import EngineConfig
from mdl.transfer.scheduling import Piece, run_pieces

MiB = 1 << 20
PATH = "/f.bin"
ETAG = '"v1"'


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def serve(
    started: list[ScriptedServer],
    data: bytes,
    policy: Policy | None = None,
    *,
    cls: type[ScriptedServer] = FramedServer,
) -> ScriptedServer:
    server = cls({PATH: [Phase(data, etag=ETAG)]}, policy=policy).start()
    started.append(server)
    return server


def get_file(server: ScriptedServer, out: Path, *extra: str) -> tuple[int, str]:
    result = mdl(
        "get", server.url + PATH, "-o", str(out), "--no-progress", *extra, env={"MDL_RETRIES": "1"}
    )
    return result.exit_code, result.stderr


# -- the carried probe: a chunked first window with more bytes than its Content-Range names
# ------------------------


@pytest.mark.parametrize("framing", ["chunked", "content-length"])
def test_a_probe_answer_longer_than_its_range_is_refused_and_nothing_is_kept(
    started: list[ScriptedServer], tmp_path: Path, framing: str
) -> None:
    """The regression: chunked, the first window's 11 extra bytes were written at its end and the
    download went on from there + 11 (right size, wrong bytes, exit 0). Now either framing is exit 5
    and no file."""
    data = make_data(12 * MiB, seed=3701)

    def policy(index: int, seen: Seen, server: ScriptedServer) -> Answer | None:
        answer = server.reply(seen)
        if seen.range == "bytes=0-":  # the probe's open-ended first GET
            if framing == "chunked":
                return chunked(answer, extra=b"X" * 11)
            return Answer(
                answer.status, answer.headers, bytes(answer.body) + b"X" * 11, phase=answer.phase
            )
        return answer

    server = serve(started, data, policy)
    out = tmp_path / "out" / "f.bin"
    code, stderr = get_file(server, out)
    assert code == ExitCode.NETWORK, stderr
    assert f"bytes 0-{len(data) - 1}" in stderr and "Traceback" not in stderr
    assert not out.exists()
    partial = list((tmp_path / "out" / ".mdl").rglob("*.part"))
    for part in partial:  # whatever stays for a resume claims only bytes of the file
        record = json.loads(part.with_name(part.name + ".json").read_text())
        for start, _, done in record["pieces"]:
            assert part.read_bytes()[start : start + done] == data[start : start + done]


def one_stream(
    todo: list[Piece], run_piece: Callable[[Piece, Callable[[], None]], None], **how: Any
) -> None:
    run_pieces(todo, run_piece, **{**how, "workers": 1, "overlap": False})


@pytest.mark.parametrize("alone", [False, True], ids=["streams", "one-stream-joins"])
@pytest.mark.parametrize("raw", [False, True], ids=["parser", "raw-socket"])
def test_a_range_answer_longer_than_its_range_takes_back_what_it_wrote(
    started: list[ScriptedServer],
    tmp_path: Path,
    raw: bool,
    alone: bool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The engine's ranges (read by the parser, or from the socket when big): a body past its range
    is exit 5, and the resume record claims none of that answer's bytes.

    Every answer that reaches the file's end goes on past it, whatever ranges the engine asks: one
    per stream, or (streams that start late, under load) one stream taking every piece, its joins
    repeating 64 KiB, or a stolen tail. Past the bytes a join repeats (compared, engine rule 15) its
    body holds 7 bytes that are not the file's, so what it writes after them is wrong and only its
    end shows it."""
    if raw:
        monkeypatch.setattr("mdl.transfer.body.RAW_LEAST", 0)
    if alone:  # the layout of streams that start late: one takes every piece, each a join
        monkeypatch.setattr("mdl.transfer._part.run_pieces", one_stream)
    data = make_data(12 * MiB, seed=3702)
    ends = f"-{len(data) - 1}/{len(data)}"
    faulted: list[int] = []  # where each answer that went past its range started

    def policy(index: int, seen: Seen, server: ScriptedServer) -> Answer | None:
        answer = server.reply(seen)
        if answer.status == 206 and answer.headers.get("Content-Range", "").endswith(ends):
            faulted.append(seen.range_start or 0)
            body = bytes(answer.body)
            answer.body = body[:OVERLAP] + b"Y" * 7 + body[OVERLAP:]
            return chunked(answer, extra=b"Y" * 7)
        return answer

    server = serve(started, data, policy)
    job = transfer_job(tmp_path, server.url + PATH, size=len(data), etag=ETAG)
    config = EngineConfig(
        connections=3, retry=RetryPolicy(retries=2, base=0.01, cap=0.05), split_threshold=MiB
    )
    with (
        make_client(pool_size=4, timeout=5) as client,
        pytest.raises(NetworkError, match="more than the"),
    ):
        Engine(client, config, progress=NullProgress(), cancel=threading.Event()).fetch(job)
    assert not job.final_path.exists()
    asked = [(s.connection, s.range) for s in server.seen()]
    assert faulted, asked
    # (one stream: the last piece's answer repeats the 64 KiB before it, as under load)
    assert not alone or min(faulted) == 8 * MiB - OVERLAP, asked
    record = json.loads(job.state_path.read_text())
    part = job.part_path.read_bytes()
    for start, _, done in record["pieces"]:
        assert part[start : start + done] == data[start : start + done], asked
        # its frontier is at most the bytes a join repeats past where it started
        assert start + done <= min(faulted) + OVERLAP, (
            "an answer past its range is not kept",
            asked,
        )


def test_a_chunked_body_that_fits_its_range_is_read(
    started: list[ScriptedServer], tmp_path: Path
) -> None:
    data = make_data(12 * MiB, seed=3703)
    server = serve(started, data, lambda i, seen, s: chunked(s.reply(seen)))
    out = tmp_path / "out" / "f.bin"
    code, stderr = get_file(server, out, "--connections", "3")
    assert code == 0, stderr
    assert out.read_bytes() == data


# -- rclone serve s3: a 200 with a Content-Range and only the range
# ----------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(
    ("size", "cap"),
    [(12 * MiB, None), (12 * MiB, 4 * MiB), (40 * MiB, None)],
    ids=["one-stream", "one-stream-short-answers", "parallel"],
)
def test_a_200_naming_a_range_is_read_as_that_range(
    started: list[ScriptedServer], tmp_path: Path, size: int, cap: int | None
) -> None:
    """rclone answers every ranged GET with a 200 naming the range, the probe's open-ended one too
    (``cap``: each answer at most that long, a legal short one, so the probe's names a part of the
    file and a join follows)."""
    data = make_data(size, seed=3704)
    server = ScriptedServer({PATH: [Phase(data, etag=ETAG, cap=cap)]}, policy=rclone_ranges).start()
    started.append(server)
    out = tmp_path / "out" / "f.bin"
    code, stderr = get_file(server, out, "--connections", "4")
    assert code == 0, stderr
    assert out.read_bytes() == data
    seen = server.seen(PATH)
    probe, later = seen[0], seen[1:]
    assert probe.range == "bytes=0-" and all(s.status == 200 for s in seen), [
        (s.range, s.status) for s in seen
    ]
    # The probe's answer is the download's first piece (a small file whole), read to its end or the
    # answer's: no later request asks for those bytes again but the 64 KiB a join repeats (no sha256
    # checks the file: rule 15).
    held = min(EngineConfig(connections=4).plan(size)[0].end or size, cap or size)
    asked = [(s.range, s.range_start) for s in later]
    assert all(
        r is not None and start is not None and start >= held - OVERLAP for r, start in asked
    ), asked
    # Each later 200 was read as its range: no byte fetched twice but the joins' 64 KiB.
    assert sum(s.sent for s in later) <= size - held + len(later) * OVERLAP, asked
    # every answer exact (the probe's too): each join repeats 64 KiB, nothing else
    if cap is not None:
        assert sum(s.sent for s in seen) == size + len(later) * OVERLAP, asked
    if size > 32 * MiB:
        assert sum(1 for s in later if (s.range_start or 0) > 0) >= 3, (
            "parallel ranges, as with 206s"
        )


def test_a_job_output_size_the_server_contradicts_names_both_in_the_users_words(
    started: list[ScriptedServer], tmp_path: Path
) -> None:
    data = make_data(5 * MiB, seed=3705)
    server = serve(started, data, cls=ScriptedServer)
    job = {"type": "redirect", "url": server.url + PATH, "filename": "f.bin", "size": len(data) + 1}
    (tmp_path / "job.json").write_text(json.dumps(job))
    result = mdl("get", str(tmp_path / "job.json"), "-d", str(tmp_path / "out"), "--no-progress")
    assert result.exit_code == ExitCode.INTEGRITY, result.stderr
    assert f"the job output says {len(data) + 1} bytes" in result.stderr
    assert f"{len(data)} bytes" in result.stderr and "descriptor" not in result.stderr


# -- the span an answer's headers promise (a parser of untrusted headers)
# ----------------------------------------


def answer(status: int, headers: dict[str, str]) -> httpx2.Response:
    return httpx2.Response(
        status, headers=headers, request=httpx2.Request("GET", "http://127.0.0.1/f")
    )


def test_promised_spans() -> None:
    cases = [
        (
            206,
            {"Content-Range": "bytes 5-9/20", "Content-Length": "5"},
            Span(5, 10, 20, ranged=True),
        ),
        (
            200,
            {"Content-Range": "bytes 5-9/20", "Content-Length": "5"},
            Span(5, 10, 20, ranged=True),
        ),
        (
            200,
            {"Content-Range": "bytes 0-19/20", "Content-Length": "20"},
            Span(0, 20, 20, ranged=False),
        ),
        (200, {"Content-Length": "20"}, Span(0, 20, 20, ranged=False)),
        (200, {"Transfer-Encoding": "chunked"}, Span(0, None, None, ranged=False)),
        (
            206,
            {"Content-Range": "bytes 0-9/*", "Transfer-Encoding": "chunked"},
            Span(0, 10, None, ranged=True),
        ),
        (200, {"Content-Range": "nonsense", "Content-Length": "20"}, Span(0, 20, 20, ranged=False)),
    ]
    for status, headers, span in cases:
        assert promised(answer(status, headers), what="f") == span, (status, headers)
    for status, headers in [
        (206, {"Content-Length": "5"}),
        (206, {"Content-Range": "bytes 5-9/20", "Content-Length": "6"}),
        (200, {"Content-Range": "bytes 5-9/20", "Content-Length": "20"}),
    ]:
        with pytest.raises(NetworkError):
            promised(answer(status, headers), what="f")


RANGES = st.builds(
    "bytes {}-{}/{}".format,
    st.integers(0, 50),
    st.integers(0, 50),
    st.one_of(st.just("*"), st.integers(0, 60)),
)


@settings(max_examples=examples(300), deadline=None)
@given(
    status=st.sampled_from([200, 206]),
    value=st.one_of(
        st.none(), st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=40), RANGES
    ),
    length=st.one_of(st.none(), st.integers(0, 60)),
    chunked_framing=st.booleans(),
)
def test_promised_is_a_span_of_the_file_or_exit_5(
    status: int, value: str | None, length: int | None, chunked_framing: bool
) -> None:
    headers = {}
    if value is not None:
        headers["Content-Range"] = value
    if length is not None:
        headers["Content-Length"] = str(length)
    if chunked_framing:
        headers["Transfer-Encoding"] = "chunked"
    try:
        span = promised(answer(status, headers), what="f")
    except NetworkError as exc:
        assert exc.exit_code == ExitCode.NETWORK
        return
    assert span.start >= 0 and (span.end is None or span.end >= span.start)
    if span.total is not None and span.end is not None:
        assert span.end <= span.total
    if span.ranged or status == 206:
        assert span.end is not None
    if length is not None and not chunked_framing and span.length is not None:
        assert span.length == length, "a Content-Length beside the range is the range's"


# -- whatever the bodies and headers say, the file is the file or nothing
# -------------------------------------------

KINDS = ("honest", "longer", "shorter", "rclone", "length-lies", "chunked")


def shaped(kind: str, answer: Answer, extra: int) -> Answer:
    if kind == "longer":
        return chunked(answer, extra=b"Z" * extra)
    if kind == "shorter":
        return chunked(answer, cut=max(0, len(answer.body) - extra))
    if kind == "rclone" and answer.status == 206:
        answer.status = 200
    if kind == "length-lies":
        headers = {**answer.headers, "Content-Length": str(len(answer.body) + extra)}
        return Answer(answer.status, headers, answer.body, phase=answer.phase, close=True)
    if kind == "chunked":
        return chunked(answer)
    return answer


@pytest.mark.slow
@settings(max_examples=examples(25), deadline=None)
@given(
    kinds=st.lists(st.sampled_from(KINDS), min_size=1, max_size=8),
    extra=st.integers(1, 70_000),
    hashed=st.booleans(),
    size_known=st.booleans(),
)
def test_answers_that_disagree_with_their_headers_end_in_the_file_or_nothing(
    kinds: list[str], extra: int, hashed: bool, size_known: bool
) -> None:
    data = make_data(6 * MiB, seed=3706)

    def policy(index: int, seen: Seen, server: ScriptedServer) -> Answer | None:
        return shaped(kinds[index % len(kinds)], server.reply(seen), extra)

    with (
        tempfile.TemporaryDirectory() as tmp,
        FramedServer({PATH: [Phase(data, etag=ETAG)]}, policy=policy) as server,
    ):
        job = transfer_job(
            Path(tmp),
            server.url + PATH,
            size=len(data) if size_known else None,
            sha=sha(data) if hashed else None,
            etag=ETAG,
        )
        config = EngineConfig(
            connections=3, retry=RetryPolicy(retries=3, base=0.001, cap=0.01), split_threshold=MiB
        )
        with make_client(pool_size=4, timeout=5) as client:
            try:
                Engine(client, config, progress=NullProgress(), cancel=threading.Event()).fetch(job)
            except MdlError as exc:
                assert exc.exit_code in (ExitCode.NETWORK, ExitCode.INTEGRITY), (
                    f"{type(exc).__name__}: {exc}"
                )
                assert not job.final_path.exists()
            else:
                assert job.final_path.read_bytes() == data, [
                    (s.range, s.status, s.sent) for s in server.seen()
                ]
        assert not server.errors, server.errors


def test_follow_reads_a_200_with_a_content_range_as_its_range(
    started: list[ScriptedServer],
) -> None:
    data = make_data(100_000, seed=3707)
    server = serve(started, data, rclone_ranges, cls=ScriptedServer)
    with (
        make_client(pool_size=1, timeout=5) as client,
        follow(
            client,
            server.url + PATH,
            credentials=Credentials(),
            headers={"Range": "bytes=10-19"},
            what="f",
        ) as r,
    ):
        assert r.status_code == 200
        assert promised(r, what="f") == Span(10, 20, len(data), ranged=True)
        assert r.read() == data[10:20]
