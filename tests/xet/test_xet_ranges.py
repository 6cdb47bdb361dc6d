"""Xet ranges released before the whole file: `mdl serve --pull` of a Xet file from the Hub + CAS stand-in
(tests/xetserver.py) whose `GET /v2/file-chunk-hashes` answers are summed up from the file's chunks
(as xet-core does: tests/xet/test_subtree.py holds them to its vectors and hf_xet). While the
file's last xorb is held back, the windows whose chunks landed verify and read back (the check
`mdl serve --pull` reads through, found by the pull's releases); a lying answer, a window at the wrong offset, a
repeated region, a truncated summary or no answer at all leave the file to be released whole, as
before, and the pull ends with the right bytes in every case.

A range's root is bound to the pin: the Xet hash only when this machine verified it whole with the
pinned sha256 (a pull by chunk, then the file lost), the part hashes beside the lock over it. A Hub
naming another file's Xet hash (once, always; with a lock, with part hashes) gets no byte of that
file to a loader; a bound root that lies (tampered part hashes) is never silent."""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import logging
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from runfixtures import HANG, mdl, use_catalog, wait_for
from serveproc import AWS_ISOLATION
from servers import Fault, make_data
from xetserver import CasServer, XetFile, XetHubServer, XetStore, chunk_hashes_answer

from mdl import partsize
from mdl.download.demand import Demand
from mdl.endpoint import serving
from mdl.lockfile.parts import PartHashes, write_parts
from mdl.transfer import ranges
from mdl.wait import Wait

WEIGHTS = "model.safetensors"
OTHER = "other.safetensors"  # another file of the repo, as big (whose Xet hash a Hub may name)
SIZE = 4 << 20
_ONLY_OURS = '[models.m]\nrepo = "org/m"\ninclude = ["model.safetensors", "config.json"]\n'
DEMANDS: list[Demand] = []  # the serves' of the test running


@pytest.fixture
def hub() -> Iterator[XetHubServer]:
    """The stand-in, its xorbs small (a file of several terms, each landing on its own)."""
    cas = CasServer(XetStore(max_xorb_bytes=512 << 10)).start()
    server = XetHubServer(cas=cas).start()
    try:
        yield server
    finally:
        server.stop()
        server.cas.stop()
    for part in (server, server.cdn, server.cas):
        assert not part.errors, part.errors


@pytest.fixture
def catalog(
    hub: XetHubServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> Path:
    monkeypatch.setattr(partsize, "PART", 512 << 10)
    DEMANDS.clear()

    class Recorded(Demand):  # the serve's: its releases find the range check
        def __init__(self) -> None:
            super().__init__()
            DEMANDS.append(self)

    monkeypatch.setattr(serving, "Demand", Recorded)
    caplog.set_level(logging.INFO, logger="mdl.xet")
    monkeypatch.setenv("MDL_LOG_LEVEL", "debug")
    return use_catalog(tmp_path, monkeypatch, '[models.m]\nrepo = "org/m"\n', endpoint=hub.url)


class Pull:
    """`mdl serve m --pull` in a thread of this process (a loader reads what it pulls, as it comes:
    a big Xet file's windows are checked as they land), the file's last xorb held until
    ``release``."""

    def __init__(
        self,
        hub: XetHubServer,
        catalog: Path,
        data: bytes,
        *,
        bound: bool = True,
        plain: bool = False,
        other: bytes | None = None,
        lie: list[str | None] | None = None,
        lock: bool = False,
        parts: bytes | None = None,
        unchecked: bool = False,
    ) -> None:
        """``other``: a file beside it in the repo (not in the model), whose Xet hash the Hub
        names for it in the answers ``lie`` says (``XetHubServer.xet_lies``: OTHER for the other's
        hash), from the first after ``bound``'s pull; its bytes are then the ones fetched (and its
        last xorb held). ``lock``: `mdl lock` run then (its part hashes too, with ``bound``);
        ``parts``: bytes whose part hashes are then written for it (a tampered lock); ``plain``:
        ``bound``'s pull over plain HTTP (verified, its record binds no Xet hash); ``unchecked``:
        its record then as mdl <= 0.9 wrote it (its Xet hash without ``xet_checked``)."""
        hub.add_repo(
            "org/m", {WEIGHTS: data, "config.json": b"{}", **({OTHER: other} if other else {})}
        )
        if other is not None:
            catalog.write_text(_ONLY_OURS)
        self.xf: XetFile = hub.xet_file("org/m", WEIGHTS)
        self.data, self.models = data, catalog.parent / "models"
        if bound:  # pulled and verified whole here once: its record binds the Xet hash
            pulled = mdl("pull", "m", *(["--no-xet"] if plain else []))
            assert pulled.exit_code == 0, pulled.stderr
        if unchecked:
            unmark(self.models)
        if lie is not None:
            named = hub.xet_file("org/m", OTHER).hash
            hub.xet_lies[WEIGHTS] = [named if told == OTHER else told for told in lie]
        if lock:
            locked = mdl("lock", "m")
            assert locked.exit_code == 0, locked.stderr
        if parts is not None:
            step = 512 << 10
            digests = tuple(ranges.digest(parts[i : i + step]) for i in range(0, len(parts), step))
            write_parts(
                catalog.parent / "catalog.lock.parts",
                {hashlib.sha256(data).hexdigest(): PartHashes(len(parts), step, digests)},
            )
        if bound:  # ... then lost
            (self.models / "m" / WEIGHTS).unlink()
        fetched = hub.xet_file("org/m", OTHER) if lie and lie[0] == OTHER else self.xf
        self.landing = other if fetched is not self.xf else data  # what its .part is filled with
        last = fetched.terms[-1].xorb
        assert all(t.xorb != last for t in self.xf.terms[:-1])
        self.gate, self.stop = threading.Event(), threading.Event()
        hub.cas.faults.add(
            Fault.stall(0, until=self.gate, resume=True, path_prefix=f"/xorb/default/{last}")
        )
        self.pulled: list[Any] = []
        self.ended: list[BaseException | None] = []
        self.ready: list[Any] = []  # the endpoint's Serving, once it listens
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        wait_for(lambda: self.part() is not None or bool(self.ended), what="the .part")
        assert not self.ended, self.ended

    def _run(self) -> None:
        from mdl import serve

        try:
            # the held xorb is not a stall: only the test's release ends it
            serve(
                "m",
                pull=True,
                port=0,
                stall_timeout=HANG * 2,
                on_pulled=self.pulled.append,
                on_ready=self.ready.append,
                wait=HANG,
                stop=self.stop,
            )
        except BaseException as exc:  # said by the waits
            self.ended.append(exc)
        self.ended.append(None)

    def part(self) -> Path | None:
        found = [p for p in self.models.rglob("*.part") if _size(p) == len(self.data)]
        return found[0] if found else None

    def check(self) -> ranges.RangeCheck | None:
        part = self.part()
        for demand in DEMANDS if part is not None else []:
            assert part is not None
            check = demand.releases.share(part)
            if check is not None:
                check.unshare()  # (the test reads its state only)
                return check
        return None

    def landed_but_last(self, last: int | None = None) -> None:
        """Every term but the held one on disk (the partial's bytes there are the ones fetched;
        ``last``: the held term's offset, when another file's terms are fetched)."""
        held = self.xf.terms[-1].offset if last is None else last
        part = self.part()
        assert part is not None
        wait_for(
            lambda: part.exists() and part.read_bytes()[:held] == self.landing[:held],
            what="every term but the last",
        )

    def release(self, exit_code: int = 0, *, serving: bool = False) -> Any:
        """The held xorb let go, the pull's end awaited; its report (the file installed right when
        it ends well). ``serving``: the endpoint still answers (``end`` stops it)."""
        self.gate.set()
        wait_for(lambda: bool(self.pulled or self.ended), what="the pull's end")
        if not serving:
            self.end()
        report = self.pulled[0].pulled
        assert report.exit_code == exit_code, report.to_json()
        if exit_code == 0:
            assert (self.models / "m" / WEIGHTS).read_bytes() == self.data
        return report

    def end(self) -> None:
        self.stop.set()
        self._thread.join(HANG)
        assert not self._thread.is_alive() and self.ended == [None], self.ended


def s3_client(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Any:
    """boto3 as a loader makes it from the endpoint's environment (127.0.0.1, its own key)."""
    import boto3

    for name, value in AWS_ISOLATION.items():
        monkeypatch.setenv(name, value)
    return boto3.session.Session(
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        region_name=env["AWS_REGION"],
    ).client("s3", endpoint_url=env["AWS_ENDPOINT_URL"])


def test_windows_verify_and_read_back_before_the_file_is_whole(
    hub: XetHubServer, catalog: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pull = Pull(hub, catalog, make_data(SIZE, seed=21))
    wait_for(lambda: pull.check() is not None, what="the range check")
    check = pull.check()
    assert check is not None and check.trust.kind == "xet"
    held = pull.xf.terms[-1].offset
    pull.landed_but_last()
    wait_for(
        lambda: sum(e - s for s, e in check.verified_spans()) >= held - (1 << 20),
        what="the windows before the held term verified",
    )
    assert not (pull.models / "m" / WEIGHTS).exists()  # not whole yet
    spans = check.verified_spans()
    assert all(end <= held for _, end in spans)  # nothing of the held term
    start, end = spans[0][0] + 1000, spans[0][1] - 1000
    cancel = threading.Event()
    with check.reading(start, end, Wait(cancel=cancel)) as view:
        assert view is not None and bytes(view) == pull.data[start:end]
    with check.reading(held - 10, held + 10, Wait(cancel=cancel)) as view:
        assert view is None  # touches bytes not verified
    # the same through the endpoint: a loader's ranged GET of verified windows is answered now,
    # the object's ETag and no whole-object checksum; a whole GET still waits for the file
    s3 = s3_client(pull.ready[0].environment, monkeypatch)
    got = s3.get_object(Bucket="mdl", Key=f"m/{WEIGHTS}", Range=f"bytes={start}-{end - 1}")
    assert got["ResponseMetadata"]["HTTPStatusCode"] == 206
    assert got["Body"].read() == pull.data[start:end]
    assert not any(k.startswith("Checksum") for k in got)
    assert not (pull.models / "m" / WEIGHTS).exists(), "answered before the file was whole"
    tiles = check.spans
    pull.release()
    # the windows tile the file
    assert tiles[0][0] == 0 and tiles[-1][1] == SIZE and len(tiles) >= 2
    assert all(a[1] == b[0] for a, b in itertools.pairwise(tiles))
    # where each window ends (the byte before it) in one request, then one request per window
    step = 512 << 10
    ends, *tiled = hub.cas.chunk_hashes_asked
    assert ends == [(e - 1, e) for e in range(step, SIZE, step)]
    # (a window that reached the next one's byte is asked with it, to close where it did)
    assert sorted(dirty[0][0] for dirty in tiled) == [start for start, _ in tiles]


def unmark(models: Path) -> None:
    """The model's record as mdl <= 0.9 wrote it: a file's Xet hash with no mark that a fetch by
    chunk checked it (0.9 also copied the Hub's word there for files fetched over plain HTTP)."""
    path = models / ".mdl" / "records" / "m.json"
    record = json.loads(path.read_text())
    entry = record["files"][WEIGHTS]
    assert entry.pop("xet_checked") is True and entry["xet"] and entry["verified"]
    path.write_text(json.dumps(record))


def _size(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return None


def _lying(answer: dict[str, Any]) -> dict[str, Any]:
    """A node's hash changed: the answer reads well but is not the file's."""
    out = copy.deepcopy(answer)
    summary = out["hashRanges"][1] or out["hashRanges"][0]
    node = summary["nodes"][0]
    node["hash"] = ("1" if node["hash"][0] != "1" else "2") + node["hash"][1:]
    return out


def _moved(answer: dict[str, Any]) -> dict[str, Any]:
    """The window a few bytes later than asked."""
    out = copy.deepcopy(answer)
    out["windows"][0]["dirtyByteRange"][0] += 7
    return out


def _truncated(answer: dict[str, Any]) -> dict[str, Any]:
    """The summary after the window loses its last level."""
    out = copy.deepcopy(answer)
    for summary in out["hashRanges"]:
        if summary is not None and len(summary["levels"]) > 1:
            dropped = summary["levels"].pop()
            summary["nodes"] = summary["nodes"][: len(summary["nodes"]) - sum(dropped)]
    return out


def test_a_lying_answer_releases_nothing_before_the_file_verified(
    hub: XetHubServer, catalog: Path
) -> None:
    hub.cas.rewrite_chunk_hashes = _lying
    pull = Pull(hub, catalog, make_data(SIZE, seed=22))
    wait_for(lambda: pull.check() is not None, what="the range check")
    check = pull.check()
    assert check is not None
    pull.landed_but_last()
    wait_for(lambda: len(check.bad) >= 2, what="the landed windows checked")
    assert check.verified_spans() == []
    with check.reading(0, 100, Wait()) as view:
        assert view is None
    pull.release()


@pytest.mark.parametrize(
    "lie",
    [_moved, _truncated, lambda a: b"{", lambda a: {**a, "extra": 1}],
    ids=["moved", "truncated", "not-json", "extra-field"],
)
def test_an_answer_that_does_not_add_up_means_released_whole(
    hub: XetHubServer,
    catalog: Path,
    lie: Callable[[dict[str, Any]], object],
    caplog: pytest.LogCaptureFixture,
) -> None:
    hub.cas.rewrite_chunk_hashes = lie
    pull = Pull(hub, catalog, make_data(SIZE, seed=23))
    pull.landed_but_last()
    wait_for(lambda: "released whole" in caplog.text, what="the refusal said")
    assert pull.check() is None
    pull.release()


def test_a_repeated_region_answered_for_its_other_copy_is_refused(
    hub: XetHubServer, catalog: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The file holds the same 1.5 MiB twice; the CAS answers every window of the second copy with
    the first copy's answer, moved to where it was asked: the bytes before it do not add up."""
    copy_of = make_data(3 << 19, seed=24)
    data = copy_of + copy_of + make_data(SIZE - 2 * len(copy_of), seed=25)
    swapped: list[int] = []

    def other_copy(answer: dict[str, Any]) -> dict[str, Any]:
        start, end = answer["windows"][0]["dirtyByteRange"]
        if start < len(copy_of) or end > 2 * len(copy_of):
            return answer
        xf = hub.xet_file("org/m", WEIGHTS)
        out = chunk_hashes_answer(xf, [(start - len(copy_of), end - len(copy_of))])
        out["windows"] = answer["windows"]
        swapped.append(start)
        return out

    hub.cas.rewrite_chunk_hashes = other_copy
    pull = Pull(hub, catalog, data)
    pull.landed_but_last()
    wait_for(lambda: "released whole" in caplog.text, what="the refusal said")
    assert pull.check() is None and swapped  # refused for the copied answers
    pull.release()


def test_a_cas_without_chunk_hashes_means_released_whole(
    hub: XetHubServer, catalog: Path, caplog: pytest.LogCaptureFixture
) -> None:
    hub.cas.chunk_hashes_status = 404
    pull = Pull(hub, catalog, make_data(SIZE, seed=26))
    pull.landed_but_last()
    wait_for(lambda: "released whole" in caplog.text, what="the refusal said")
    assert pull.check() is None
    pull.release()
    assert len(hub.cas.log.records()) > 0


def test_a_pull_with_no_loader_asks_no_chunk_hashes(hub: XetHubServer, catalog: Path) -> None:
    """Without a loader reading as files come, a Xet file is fetched as before: no window asked,
    no range check (its cost would buy nothing)."""
    data = make_data(SIZE, seed=27)
    hub.add_repo("org/m", {WEIGHTS: data})
    result = mdl("pull", "m")
    assert result.exit_code == 0, result.stderr
    assert (catalog.parent / "models" / "m" / WEIGHTS).read_bytes() == data
    assert hub.cas.chunk_hashes_asked == []
    assert len(hub.cas.xorb_records()) >= len(hub.xet_file("org/m", WEIGHTS).terms) > 1


def _get(s3: Any, start: int, end: int) -> bytes | str:
    """A loader's ranged GET of the weights: their bytes, or the S3 error's code."""
    from botocore.exceptions import ClientError

    try:
        got = s3.get_object(Bucket="mdl", Key=f"m/{WEIGHTS}", Range=f"bytes={start}-{end - 1}")
    except ClientError as exc:
        return str(exc.response["Error"]["Code"])
    return bytes(got["Body"].read())


def _waiting(s3: Any, caplog: pytest.LogCaptureFixture, start: int, end: int) -> Callable[[], Any]:
    """A ranged GET sent now, by a loader that waits for its answer; once it waits at the
    endpoint: what it got, when asked (after the pull ended)."""
    got: list[bytes | str] = []
    loader = threading.Thread(target=lambda: got.append(_get(s3, start, end)), daemon=True)
    loader.start()
    wait_for(lambda: f"a loader waits for m/{WEIGHTS}" in caplog.text, what="the loader's wait")

    def answer() -> Any:
        loader.join(HANG)
        assert not loader.is_alive() and len(got) == 1
        return got[0]

    return answer


@pytest.mark.parametrize("bound", [False, True], ids=["fresh", "verified-here-before"])
@pytest.mark.parametrize("lie", [[OTHER, None], [OTHER]], ids=["first-answer", "every-answer"])
def test_a_hub_naming_another_files_xet_hash_gets_no_byte_of_it_to_a_loader(
    hub: XetHubServer,
    catalog: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    bound: bool,
    lie: list[str | None],
) -> None:
    """The Hub's listing names the Xet hash of another file as big in the same commit: its bytes
    come, and would verify against that hash window by window; only the pinned sha256 refuses
    them. A Xet hash bound to nothing this machine verified releases no range: the loader waits
    for the whole file and gets the pinned bytes (the Xet hash that named others said, the file
    fetched over plain HTTP), never a byte of the other file."""
    caplog.set_level(logging.INFO, logger="mdl.serve")
    data, other = make_data(SIZE, seed=31), make_data(SIZE, seed=32)
    pull = Pull(hub, catalog, data, bound=bound, other=other, lie=lie)
    pull.landed_but_last(hub.xet_file("org/m", OTHER).terms[-1].offset)
    assert pull.check() is None, "a range check whose root is the Hub's word"
    assert "its Xet hash is not bound to its pinned sha256: released whole" in caplog.text
    s3 = s3_client(pull.ready[0].environment, monkeypatch)
    answer = _waiting(s3, caplog, 1000, 300_000)
    report = pull.release(serving=True)
    assert answer() == data[1000:300_000]
    assert _get(s3, 0, 1000) == data[:1000]
    pull.end()
    [outcome] = [o for o in report.files if o.path == WEIGHTS]
    assert outcome.released_wrong == () and "released_wrong" not in outcome.to_json()
    named = hub.xet_file("org/m", OTHER).hash
    said = f"its Xet hash {named} names other bytes than its pinned sha256"
    assert any(said in warning for warning in outcome.warnings), outcome.warnings


@pytest.mark.parametrize("bound", [False, True], ids=["lock", "lock-and-part-hashes"])
def test_a_lock_written_while_the_hub_lied_gets_no_byte_of_the_other_file_to_a_loader(
    hub: XetHubServer,
    catalog: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    bound: bool,
) -> None:
    """`mdl lock` run while the Hub names the other file's Xet hash copies it when nothing here
    says otherwise (where to fetch the bytes, no root). Without part hashes the file is released
    whole; with them (hashed here from the file verified whole before, over plain HTTP: its record
    binds no Xet hash) they win: the other file's bytes fail every range. Either way
    the loader gets the pinned bytes, fetched over plain HTTP, never one of the other file's."""
    monkeypatch.setattr(partsize, "PART", 512 << 10)
    caplog.set_level(logging.INFO, logger="mdl.serve")
    data, other = make_data(SIZE, seed=33), make_data(SIZE, seed=34)
    pull = Pull(hub, catalog, data, bound=bound, plain=True, other=other, lie=[OTHER], lock=True)
    assert hub.xet_file("org/m", OTHER).hash in (catalog.parent / "catalog.lock").read_text()
    assert (catalog.parent / "catalog.lock.parts").exists() == bound
    pull.landed_but_last(hub.xet_file("org/m", OTHER).terms[-1].offset)
    check = pull.check()
    if bound:
        assert check is not None and check.trust.kind == "lock"
        wait_for(lambda: len(check.bad) >= 2, what="the landed ranges checked")
        assert check.verified_spans() == []
    else:
        assert check is None
    s3 = s3_client(pull.ready[0].environment, monkeypatch)
    answer = _waiting(s3, caplog, 0, 1000)
    report = pull.release(serving=True)  # (its answer first: then the endpoint stops)
    assert answer() == data[:1000]
    pull.end()
    [outcome] = [o for o in report.files if o.path == WEIGHTS]
    assert outcome.released_wrong == ()
    assert outcome.range_trust == ("lock" if bound else None)


def test_a_range_released_then_refused_by_the_files_hash_is_told_and_refused(
    hub: XetHubServer,
    catalog: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A root that lies though bound (part hashes of the other file written under the pinned
    sha256: a tampered lock) releases the other file's bytes; once the sha256 refuses the file,
    the release is never silent: stderr and the report name the ranges that left, and every
    later request for the object is an S3 error, whatever a later try installs."""
    caplog.set_level(logging.INFO, logger="mdl.serve")
    data, other = make_data(SIZE, seed=35), make_data(SIZE, seed=36)
    pull = Pull(hub, catalog, data, bound=False, other=other, lie=[OTHER], lock=True, parts=other)
    pull.landed_but_last(hub.xet_file("org/m", OTHER).terms[-1].offset)
    check = pull.check()
    assert check is not None and check.trust.kind == "lock"
    wait_for(lambda: ranges.covered((0, 1000), check.verified_spans()), what="the first range")
    s3 = s3_client(pull.ready[0].environment, monkeypatch)
    assert _get(s3, 0, 1000) == other[:1000]  # what the tampered root vouched for
    report = pull.release(6, serving=True)
    step = 512 << 10
    assert f"{WEIGHTS}: bytes 0-{step - 1} left verified by its lock hash" in caplog.text
    [outcome] = [o for o in report.files if o.path == WEIGHTS]
    assert outcome.released_wrong == ((0, step),) and outcome.exit_code == 6
    assert outcome.to_json()["released_wrong"] == [[0, step - 1]]
    assert f"bytes 0-{step - 1} left to a loader before the file verified" in str(outcome.error)
    assert _get(s3, 0, 1000) == "InvalidObjectState"
    assert _get(s3, 2 << 20, 3 << 20) == "InvalidObjectState"
    pull.end()


def test_mdl_lock_locks_the_xet_hash_this_machine_verified_not_the_one_a_hub_names(
    hub: XetHubServer, catalog: Path
) -> None:
    """Pulled by chunk here (the Xet hash and the sha256 checked over the same bytes), then locked
    while the Hub names another file's Xet hash: the verified one is locked, and the lie said."""
    data, other = make_data(SIZE, seed=37), make_data(SIZE, seed=38)
    hub.add_repo("org/m", {WEIGHTS: data, OTHER: other})
    catalog.write_text(_ONLY_OURS)
    assert mdl("pull", "m").exit_code == 0
    mine, named = hub.xet_file("org/m", WEIGHTS).hash, hub.xet_file("org/m", OTHER).hash
    hub.xet_lies[WEIGHTS] = [named]
    locked = mdl("lock", "m")
    assert locked.exit_code == 0, locked.stderr
    text = (catalog.parent / "catalog.lock").read_text()
    assert f'xet = "{mine}"' in text and named not in text
    said = f"m/{WEIGHTS}: the Hub names Xet hash {named} for it, not {mine}"
    assert said in locked.stderr, locked.stderr


def test_a_xet_hash_an_older_mdl_recorded_releases_nothing_early(
    hub: XetHubServer,
    catalog: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A record's Xet hash without the mark that a fetch by chunk checked it with the sha256 (an
    older mdl's, which may be the Hub's word) is no root: the file, lost and pulled again, is
    released whole, though the Hub names the right hash."""
    caplog.set_level(logging.INFO, logger="mdl.serve")
    data = make_data(SIZE, seed=39)
    pull = Pull(hub, catalog, data, unchecked=True)
    pull.landed_but_last()
    assert pull.check() is None, "a range check whose root an older mdl copied from the Hub"
    assert "its Xet hash is not bound to its pinned sha256: released whole" in caplog.text
    s3 = s3_client(pull.ready[0].environment, monkeypatch)
    answer = _waiting(s3, caplog, 1000, 300_000)
    report = pull.release(serving=True)  # (its answer first: then the endpoint stops)
    assert answer() == data[1000:300_000]
    pull.end()
    [outcome] = [o for o in report.files if o.path == WEIGHTS]
    assert outcome.range_trust is None and outcome.released_wrong == ()
    record = json.loads((pull.models / ".mdl" / "records" / "m.json").read_text())
    assert record["files"][WEIGHTS]["xet_checked"] is True  # fetched by chunk again: checked


def test_mdl_lock_calls_no_xet_hash_an_older_mdl_recorded_verified(
    hub: XetHubServer, catalog: Path
) -> None:
    """The record's Xet hash without the mark (an older mdl's) is not this machine's: the Hub's
    word is locked, as for a file never pulled here, and nothing says it is the verified one."""
    data, other = make_data(SIZE, seed=40), make_data(SIZE, seed=41)
    hub.add_repo("org/m", {WEIGHTS: data, OTHER: other})
    catalog.write_text(_ONLY_OURS)
    assert mdl("pull", "m").exit_code == 0
    unmark(catalog.parent / "models")
    mine, named = hub.xet_file("org/m", WEIGHTS).hash, hub.xet_file("org/m", OTHER).hash
    hub.xet_lies[WEIGHTS] = [named]
    locked = mdl("lock", "m")
    assert locked.exit_code == 0, locked.stderr
    text = (catalog.parent / "catalog.lock").read_text()
    assert f'xet = "{named}"' in text and mine not in text
    assert "the one this machine verified" not in locked.stderr, locked.stderr
