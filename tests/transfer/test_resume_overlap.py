"""A resume proves it continues the same bytes (issue 37, class A; engine rule 15).

nginx gives two builds of one size and mtime the same ETag (``"<mtime hex>-<size hex>"``: ``cp -p``,
``rsync -a``, a fixed-timestamp unzip), so If-Range cannot tell them apart. Where no hash will check
the file, a resumed range starts a little before the bytes on disk and compares that overlap: a
difference is a new version, and the file is fetched again from the start. Only a file checked
against a known hash, or fetched whole in one answer, is verified.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import threading
from pathlib import Path

import httpx2
import pytest
from hostile import Answer, Phase, ScriptedServer, Seen, http_date
from hypothesis import given, settings
from hypothesis import strategies as st
from profiles import examples
from runfixtures import mdl, transfer_job
from servers import CdnServer, Fault, make_data

from mdl.errors import ExitCode, MdlError
from mdl.progress import NullProgress
from mdl.transfer._state import OVERLAP
from mdl.transfer.engine import Engine
from mdl.transfer.http import RetryPolicy, make_client
from mdl.transfer.job import EngineConfig

MiB = 1 << 20
SIZE = 12 * MiB
PATH = "/f.bin"
MTIME = 1_767_225_600
NGINX_ETAG = f'"{MTIME:x}-{SIZE:x}"'  # nginx's: the same for every build of this size and mtime
# the probe's open-ended answer is a legal short 206 of this much: the download joins on to it
PROBE_CUT = 4 * MiB
# the next answer (repeating the probe's last 64 KiB) breaks off 2 MiB in
CUT_AT = PROBE_CUT - OVERLAP + 2 * MiB
V1, V2 = make_data(SIZE, seed=3720), make_data(SIZE, seed=3721)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def nginx_build(data: bytes, **more: object) -> Phase:
    return Phase(data, etag=NGINX_ETAG, last_modified=http_date(MTIME), **more)  # type: ignore[arg-type]


def v1_cut_short() -> list[Phase]:
    """Build 1 for two answers, the probe's cut short at ``PROBE_CUT`` (else a small file is its
    probe alone).
    """
    return [nginx_build(V1, requests=1, cap=PROBE_CUT), nginx_build(V1, requests=1)]


def cut_second_get(index: int, seen: Seen, server: ScriptedServer) -> Answer | None:
    """The first answer past the probe breaks off mid-body (its Content-Length promised more): a
    lost connection.
    """
    answer = server.reply(seen)
    if index == 1:
        headers = {**answer.headers, "Content-Length": str(len(answer.body))}
        return Answer(
            answer.status, headers, answer.body[: 2 * MiB], close=True, phase=answer.phase
        )
    return answer


def get(server: ScriptedServer, out: Path, *extra: str, retries: int) -> tuple[int, str, str]:
    args = ("get", server.url + PATH, "-o", str(out), "--no-progress", "--json", *extra)
    result = mdl(*args, env={"MDL_RETRIES": str(retries)})
    return result.exit_code, result.stdout, result.stderr


def test_a_resume_across_runs_onto_another_build_under_one_etag_starts_over(
    started: list[ScriptedServer], tmp_path: Path
) -> None:
    server = ScriptedServer(
        {PATH: [*v1_cut_short(), nginx_build(V2)]}, policy=cut_second_get
    ).start()
    started.append(server)
    out = tmp_path / "out" / "f.bin"
    code, _, stderr = get(server, out, retries=0)
    assert code == ExitCode.NETWORK, stderr  # broken off mid-v1: a partial download is kept
    assert not out.exists()
    # the server now has v2, same size, mtime and ETag
    code, stdout, stderr = get(server, out, retries=0)
    assert code == 0, stderr
    assert out.read_bytes() == V2, "no file of two builds"
    resumed = [s for s in server.seen(PATH)[2:] if (s.range_start or 0) > 0]
    assert resumed and resumed[0].range_start == CUT_AT - OVERLAP, [
        s.range for s in server.seen(PATH)
    ]
    assert resumed[0].if_range == NGINX_ETAG
    [file] = json.loads(stdout)["files"]
    assert file["action"] == "downloaded", (
        "the kept bytes were another build: fetched from the start"
    )


@pytest.mark.slow
def test_a_retry_within_a_run_onto_another_build_under_one_etag_starts_over(
    started: list[ScriptedServer], tmp_path: Path
) -> None:
    server = ScriptedServer(
        {PATH: [*v1_cut_short(), nginx_build(V2)]}, policy=cut_second_get
    ).start()
    started.append(server)
    out = tmp_path / "out" / "f.bin"
    code, _, stderr = get(server, out, retries=2)
    assert code == 0, stderr
    assert out.read_bytes() == V2, "no file of two builds"
    retried = server.seen(PATH)[2]
    assert retried.range_start == CUT_AT - OVERLAP, "the retry repeats the bytes before the break"


def test_a_resume_of_the_same_build_keeps_its_bytes(
    started: list[ScriptedServer], tmp_path: Path
) -> None:
    server = ScriptedServer(
        {PATH: [*v1_cut_short(), nginx_build(V1)]}, policy=cut_second_get
    ).start()
    started.append(server)
    out = tmp_path / "out" / "f.bin"
    code, _, stderr = get(server, out, retries=0)
    assert code == ExitCode.NETWORK, stderr
    code, stdout, stderr = get(server, out, retries=0)
    assert code == 0, stderr
    assert out.read_bytes() == V1
    [file] = json.loads(stdout)["files"]
    assert file["action"] == "resumed"
    served = sum(s.sent for s in server.seen(PATH))
    # The join after the probe's short answer and the resume each repeat one overlap (and the second
    # run's 1-byte probe)
    assert served <= SIZE + 2 * OVERLAP + 1, (
        f"{served} bytes served: a resume repeats at most the overlap"
    )


def test_with_a_sha256_a_resume_repeats_nothing(
    started: list[ScriptedServer], tmp_path: Path
) -> None:
    server = ScriptedServer(
        {PATH: [*v1_cut_short(), nginx_build(V2)]}, policy=cut_second_get
    ).start()
    started.append(server)
    out = tmp_path / "out" / "f.bin"
    code, _, stderr = get(server, out, "--sha256", sha(V2), retries=0)
    assert code in (ExitCode.NETWORK, ExitCode.INTEGRITY), stderr
    code, _, stderr = get(server, out, "--sha256", sha(V2), retries=0)
    assert code == 0, stderr
    assert out.read_bytes() == V2  # the hash caught the splice and fetched it again
    starts = [s.range_start for s in server.seen(PATH)]
    # after the probe's short answer; the resume after the break
    joins = (PROBE_CUT, PROBE_CUT + 2 * MiB)
    assert set(joins) <= set(starts), starts
    assert not any(start in (j - OVERLAP for j in joins) for start in starts), (
        "a hash checks it: no overlap"
    )


# -- the engine: pieces an earlier run finished, and what is called verified
# ----------------------------------------


def engine(client: httpx2.Client, *, connections: int = 3, retries: int = 0) -> Engine:
    config = EngineConfig(
        connections=connections,
        retry=RetryPolicy(retries=retries, base=0.01, cap=0.05),
        split_threshold=MiB,
    )
    return Engine(client, config, progress=NullProgress(), cancel=threading.Event())


def plant(
    job_part: Path, job_state: Path, url: str, pieces: list[list[int]], data: bytes, etag: str
) -> None:
    """A .part and its record as an earlier run leaves them: each piece's first ``done`` bytes
    from ``data``.
    """
    job_part.parent.mkdir(parents=True, exist_ok=True)
    part = bytearray(len(data))
    for start, _, done in pieces:
        part[start : start + done] = data[start : start + done]
    job_part.write_bytes(bytes(part))
    identity = {"size": len(data), "sha256": None, "git_oid": None, "etag": etag}
    record = {
        "version": 1,
        "source": url,
        "identity": identity,
        "validator": etag,
        "pieces": pieces,
    }
    job_state.write_text(json.dumps(record))


def test_finished_pieces_no_resumed_range_can_compare_are_fetched_again(
    started: list[ScriptedServer], tmp_path: Path
) -> None:
    """Only the last piece was finished by the earlier run: no range of this run starts next to its
    bytes, so nothing could show they are of another build. They are fetched again, never trusted on
    the record's word."""
    server = ScriptedServer({PATH: [nginx_build(V2)]}).start()
    started.append(server)
    job = transfer_job(tmp_path, server.url + PATH, size=SIZE, etag=NGINX_ETAG)
    third = SIZE // 3
    plant(
        job.part_path,
        job.state_path,
        job.url,
        [[0, third, 0], [third, 2 * third, 0], [2 * third, SIZE, third]],
        V1,
        NGINX_ETAG,
    )
    with make_client(pool_size=4, timeout=5) as client:
        result = engine(client).fetch(job)
    assert job.final_path.read_bytes() == V2
    assert result.resumed_from == 0 and not result.verified


@pytest.mark.parametrize("hashed", [False, True])
def test_only_a_hash_or_one_whole_answer_makes_a_file_verified(
    cdn: CdnServer, tmp_path: Path, hashed: bool
) -> None:
    data = make_data(12 * MiB, seed=3722)
    url = cdn.add_file("/f.bin", data, etag='"v"')
    with make_client(pool_size=4, timeout=5) as client:
        one = transfer_job(tmp_path / "one", url, size=len(data), sha=sha(data) if hashed else None)
        assert engine(client, connections=1).fetch(one).verified, "whole, in one answer"
        split = transfer_job(
            tmp_path / "split", url, size=len(data), sha=sha(data) if hashed else None
        )
        result = engine(client, connections=3).fetch(split)
        assert split.final_path.read_bytes() == data
        assert result.verified is hashed, "parallel ranges are verified only by a hash"
        cdn.faults.add(Fault.reset(after_bytes=MiB, path_prefix="/f.bin", times=1))
        cut = transfer_job(tmp_path / "cut", url, size=len(data), sha=sha(data) if hashed else None)
        result = engine(client, connections=1, retries=2).fetch(cut)
        assert cut.final_path.read_bytes() == data
        assert result.verified is hashed, (
            "a stream resumed after a break is verified only by a hash"
        )


# -- a redirect to a scheme mdl does not speak
# -----------------------------------------------------------------


@pytest.mark.parametrize(
    "target", ["file:///etc/passwd", "data:text/plain;base64,aGVsbG8=", "ftp://127.0.0.1/f.bin"]
)
def test_a_redirect_to_a_non_http_scheme_is_exit_5_at_once(
    started: list[ScriptedServer], tmp_path: Path, target: str
) -> None:
    def policy(index: int, seen: Seen, server: ScriptedServer) -> Answer | None:
        return Answer(302, {"Location": target})

    server = ScriptedServer({PATH: [Phase(b"x")]}, policy=policy).start()
    started.append(server)
    result = mdl("get", server.url + PATH, "-o", str(tmp_path / "f.bin"), "--no-progress")
    assert result.exit_code == ExitCode.NETWORK, result.stderr
    assert len(server.seen()) == 1  # never retried (counted, not timed)
    scheme = target.split(":", 1)[0]
    assert f"redirected to a {scheme}: URL" in result.stderr
    assert f"{server.url}{PATH}" in result.stderr, "names the URL the redirect came from"
    assert "error from :" not in result.stderr and "Traceback" not in result.stderr


# -- a property: builds switched under one ETag, streams broken anywhere
# --------------------------------------------

SMALL = 2 * MiB
S1, S2 = make_data(SMALL, seed=3723), make_data(SMALL, seed=3724)


@settings(max_examples=examples(25), deadline=None)
@given(
    switch=st.integers(1, 6),
    cuts=st.lists(st.one_of(st.none(), st.integers(0, SMALL)), min_size=1, max_size=6),
    retries=st.integers(0, 3),
)
def test_builds_under_one_etag_and_broken_streams_end_in_one_build_or_nothing(
    switch: int, cuts: list[int | None], retries: int
) -> None:
    """One stream, no hash: the server swaps build 1 for build 2 (same size, same ETag) after
    ``switch`` requests, and answers break off after ``cuts[i]`` body bytes. Two runs (the second
    resumes what the first kept): the final file is one build whole, or there is none."""
    etag = f'"{MTIME:x}-{SMALL:x}"'

    def policy(index: int, seen: Seen, server: ScriptedServer) -> Answer | None:
        answer = server.reply(seen)
        cut = cuts[index % len(cuts)]
        if cut is None or cut >= len(answer.body):
            return answer
        headers = {**answer.headers, "Content-Length": str(len(answer.body))}
        return Answer(answer.status, headers, answer.body[:cut], close=True, phase=answer.phase)

    phases = [Phase(S1, etag=etag, requests=switch), Phase(S2, etag=etag)]
    with (
        tempfile.TemporaryDirectory() as tmp,
        ScriptedServer({PATH: phases}, policy=policy) as server,
    ):
        job = transfer_job(Path(tmp), server.url + PATH, size=SMALL, etag=etag)
        with make_client(pool_size=2, timeout=5) as client:
            for _ in range(2):
                try:
                    engine(client, connections=1, retries=retries).fetch(job)
                    break
                except MdlError as exc:
                    assert exc.exit_code in (ExitCode.NETWORK, ExitCode.INTEGRITY), (
                        f"{type(exc).__name__}: {exc}"
                    )
        if job.final_path.exists():
            data = job.final_path.read_bytes()
            story = [(s.range, s.status, s.phase, s.sent) for s in server.seen()]
            assert data in (S1, S2), f"a file of no single build: {story}"
        assert not server.errors, server.errors
