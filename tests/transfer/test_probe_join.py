"""Every join between two answers proves continuity (issue 37, class A; engine rule 15), the carried
probe's too.

``mdl get URL`` without a sha256 reads the file from its probe's open-ended answer; an answer cut
short (a legal short 206, a lost connection) is continued by another request. nginx gives two builds
of one size and mtime one ETag (``"<mtime hex>-<size hex>"``), so If-Range cannot tell them apart:
that next request, like any request continuing bytes another answer wrote (after a legal short 206,
a piece's next window), starts a little before them and compares the overlap. A difference is a new
version: the file is fetched again from the start. The file is one build's bytes, or the run fails;
never a mix.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import threading
from pathlib import Path

from hostile import Phase, ScriptedServer, http_date
from hypothesis import given, settings
from hypothesis import strategies as st
from profiles import examples
from runfixtures import HANG, mdl, transfer_job
from servers import make_data

from mdl.errors import ExitCode, MdlError
from mdl.progress import NullProgress
from mdl.transfer._state import OVERLAP
from mdl.transfer.engine import Engine
from mdl.transfer.http import RetryPolicy, make_client
from mdl.transfer.job import EngineConfig

MiB = 1 << 20
SIZE = 6 * MiB
CUT = 4 * MiB  # where the probe's answer is cut short (a legal short 206)
PATH = "/model.bin"
MTIME = 1_767_225_600
V1, V2 = make_data(SIZE, seed=3730), make_data(SIZE, seed=3731)


def nginx_build(data: bytes, **more: object) -> Phase:
    """One build as nginx serves it: ETag ``"<mtime hex>-<size hex>"``, the same for every build
    of that size.
    """
    etag = f'"{MTIME:x}-{len(data):x}"'
    return Phase(data, etag=etag, last_modified=http_date(MTIME), **more)  # type: ignore[arg-type]


def get(server: ScriptedServer, out: Path, *extra: str) -> tuple[int, str, str]:
    result = mdl(
        "get",
        server.url + PATH,
        "-o",
        str(out),
        "--no-progress",
        "--json",
        *extra,
        env={"MDL_RETRIES": "0"},
    )
    return result.exit_code, result.stdout, result.stderr


def test_the_answer_after_the_carried_probe_repeats_its_last_bytes_and_a_new_build_starts_over(
    started: list[ScriptedServer], tmp_path: Path
) -> None:
    """The reviewer's repro: the probe's answer is v1 (cut short at 4 MiB), every later one v2 under
    the same ETag and date."""
    server = ScriptedServer({PATH: [nginx_build(V1, requests=1, cap=CUT), nginx_build(V2)]}).start()
    started.append(server)
    out = tmp_path / "out" / "model.bin"
    code, stdout, stderr = get(server, out)
    assert code == 0, stderr
    data = out.read_bytes()
    assert data != V1[:CUT] + V2[CUT:], "4 MiB of v1 spliced onto 2 MiB of v2"
    assert data == V2, "the file is one build whole"
    seen = server.seen(PATH)
    assert seen[1].range_start == CUT - OVERLAP, [s.range for s in seen]  # the join repeats 64 KiB
    [file] = json.loads(stdout)["files"]
    assert file["action"] == "downloaded"
    assert not list((tmp_path / "out").glob("**/*.part")), "no partial left behind"


def test_a_normal_get_is_its_probe_alone(started: list[ScriptedServer], tmp_path: Path) -> None:
    """The cost on an unchanged 6 MiB file: one open-ended request, no byte twice, no join to
    prove.
    """
    server = ScriptedServer({PATH: [nginx_build(V1)]}).start()
    started.append(server)
    out = tmp_path / "out" / "model.bin"
    code, _, stderr = get(server, out)
    assert code == 0, stderr
    assert out.read_bytes() == V1
    seen = server.seen(PATH)
    assert [s.range for s in seen] == ["bytes=0-"]
    assert sum(s.sent for s in seen) == SIZE


def test_with_a_sha256_the_join_repeats_nothing(
    started: list[ScriptedServer], tmp_path: Path
) -> None:
    server = ScriptedServer({PATH: [nginx_build(V1)]}).start()
    started.append(server)
    out = tmp_path / "out" / "model.bin"
    code, _, stderr = get(server, out, "--sha256", hashlib.sha256(V1).hexdigest())
    assert code == 0, stderr
    assert out.read_bytes() == V1
    assert sum(s.sent for s in server.seen(PATH)) == SIZE, "a hash checks the file: no overlap"


def test_the_answer_after_a_short_206_repeats_its_last_bytes(
    started: list[ScriptedServer], tmp_path: Path
) -> None:
    """A legal short answer (its Content-Range says so) is a join too: the next answer proves it
    continues it.
    """
    cap = 3 * MiB // 2
    server = ScriptedServer(
        {PATH: [nginx_build(V1, requests=2, cap=cap), nginx_build(V2, cap=cap)]}
    ).start()
    started.append(server)
    out = tmp_path / "out" / "model.bin"
    code, _, stderr = get(server, out)
    assert code == 0, stderr
    assert out.read_bytes() == V2, "the file is one build whole"
    seen = server.seen(PATH)
    # each capped answer's bytes include the overlap it repeats
    assert seen[1].range_start == cap - OVERLAP, [s.range for s in seen]
    assert seen[2].range_start == 2 * cap - 2 * OVERLAP, [s.range for s in seen]


# -- a property: builds switched under one ETag at any request, answers cut short anywhere
# -------------------------

SMALL = 2 * MiB
S1, S2 = make_data(SMALL, seed=3732), make_data(SMALL, seed=3733)


@settings(max_examples=examples(25), deadline=None)
@given(switch=st.integers(1, 5), cap=st.one_of(st.none(), st.integers(OVERLAP // 2, SMALL)))
def test_builds_switched_between_answers_end_in_one_build_or_nothing(
    switch: int, cap: int | None
) -> None:
    """No hash, size unknown (a carried probe): the server swaps build 1 for build 2 (one size, one
    ETag) after ``switch`` requests and caps every 206 at ``cap`` bytes (legal short answers). Every
    request after the first repeats the bytes before it; the final file is one build whole, or there
    is none."""
    phases = [nginx_build(S1, requests=switch, cap=cap), nginx_build(S2, cap=cap)]
    config = EngineConfig(connections=1, retry=RetryPolicy(retries=2, base=0.01, cap=0.05))
    with tempfile.TemporaryDirectory() as tmp, ScriptedServer({PATH: phases}) as server:
        job = transfer_job(Path(tmp), server.url + PATH, size=None, size_pinned=False)
        with make_client(pool_size=4, timeout=HANG) as client:
            engine = Engine(client, config, progress=NullProgress(), cancel=threading.Event())
            try:
                engine.fetch(job)
            except MdlError as exc:
                assert exc.exit_code in (ExitCode.NETWORK, ExitCode.INTEGRITY), (
                    f"{type(exc).__name__}: {exc}"
                )
        if job.final_path.exists():
            story = [(s.range, s.status, s.phase, s.sent) for s in server.seen()]
            assert job.final_path.read_bytes() in (S1, S2), f"a file of no single build: {story}"
        assert not server.errors, server.errors
