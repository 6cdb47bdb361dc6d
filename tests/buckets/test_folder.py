"""mdl/buckets/folder.py and mdl/transfer/_files.py: a shared folder as a store. Reads through the
run's real httpx2 client (ranges, 404, 416, streaming); writes as leases need them (exclusive
creates and compare-and-swap, raced by threads and by processes); templates and URIs checked."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from runfixtures import HANG, mdl
from servers import HubServer, make_data

from mdl.buckets.folder import FolderStore, FolderWriter, parse_file_uri
from mdl.buckets.names import Generation
from mdl.buckets.protocol import Seen
from mdl.buckets.registry import STORES, store_for
from mdl.catalog.load import parse_catalog
from mdl.catalog.settings import check_mirror
from mdl.errors import ExitCode, IntegrityError, LocalFSError, MdlError, NotFoundError, UsageError
from mdl.paths import temp_name
from mdl.sources.joboutput import UrlFile
from mdl.sources.oneoff import parse_sources
from mdl.transfer._files import CHUNK, byte_range
from mdl.transfer.http import make_client

DATA = make_data(3 * CHUNK + 123, seed=11)
STORE = STORES["file"]


def uri_of(path: Path) -> str:
    return f"file://{path}"


def url_of(path: Path) -> str:
    """What the mirror path hands the engine for a file in the folder."""
    return STORE.signer(endpoint=None, secrets=None).presign(uri_of(path))


@pytest.fixture
def shelf(tmp_path: Path) -> Path:
    folder = tmp_path / "shared models"
    (folder / "org" / "m").mkdir(parents=True)
    (folder / "org" / "m" / "w b.bin").write_bytes(DATA)
    return folder


# --- the store in the registry, templates, URIs -------------------------------------------------


def test_the_registry_finds_the_folder_store() -> None:
    assert isinstance(store_for("file:///shared/models/a/b.bin"), FolderStore)
    assert STORE.scheme == "file" and not STORE.takes_endpoint and not STORE.quotes_values


@pytest.mark.parametrize(
    "template",
    [
        "file:///shared/models/{model}/{path}",
        "file://localhost/shared/models/{model}/{path}",
        "file:///shared/models/{sha256}",
        "file:///mnt/team models/x-{model}/{path}",
    ],
)
def test_absolute_folder_templates_are_mirrors(template: str) -> None:
    assert check_mirror(template, where="--mirror") == template


@pytest.mark.parametrize(
    ("template", "words"),
    [
        ("file://shared/models/{model}/{path}", "names host 'shared'"),
        ("file://nfs.internal/models/{model}/{path}", "names host 'nfs.internal'"),
        ("file://{model}/{path}", "names host '{model}'"),
        ("file:///shared/../etc/{model}/{path}", "'..' segment"),
        ("file:///shared/./m/{path}", "'..' segment"),
        ("file:///shared//m/{path}", "'..' segment"),
    ],
)
def test_relative_or_remote_templates_are_refused(template: str, words: str) -> None:
    with pytest.raises(UsageError) as caught:
        check_mirror(template, where="--mirror")
    assert caught.value.message.startswith("--mirror: ")
    assert words in caught.value.message


def test_a_catalog_names_the_line_of_a_bad_folder_mirror() -> None:
    with pytest.raises(MdlError) as caught:
        parse_catalog(
            '[settings]\nmirrors = ["file://shared/{model}/{path}"]\n\n[models.x]\nrepo = "a/b"\n'
        )
    assert caught.value.exit_code == ExitCode.USAGE
    assert caught.value.message.startswith("catalog.toml:2: settings.mirrors[0].url: ")
    assert "names host 'shared'" in caught.value.message
    assert "three slashes: file:///abs/path/{model}/{path}" in caught.value.message


def test_a_folder_mirror_names_no_endpoint() -> None:
    with pytest.raises(MdlError) as caught:
        parse_catalog(
            '[settings]\nmirrors = [{ url = "file:///m/{model}/{path}", endpoint = "http://e" }]'
            '\n\n[models.x]\nrepo = "a/b"\n'
        )
    assert "an endpoint is for s3:// mirrors" in caught.value.message


@pytest.mark.parametrize(
    ("uri", "words"),
    [
        ("file:///m/org/../../etc/passwd", "'..' segment"),
        ("file:///m/./x", "'..' segment"),
        ("file:///m//x", "'..' segment"),
        ("file:///m/x/", "names a folder"),
        ("file://host/m/x", "a path on this machine"),
        ("file:///m/x\n", "control character"),
    ],
)
def test_a_filled_path_cannot_leave_its_folder(uri: str, words: str) -> None:
    with pytest.raises(UsageError, match=words):
        parse_file_uri(uri)
    with pytest.raises(UsageError, match=words):
        STORE.signer(endpoint=None, secrets=None).presign(uri)


def test_uri_paths_are_paths_and_urls_are_percent_encoded() -> None:
    assert parse_file_uri("file://localhost/m/a b%20c") == ("localhost", "/m/a b%20c")
    signer = STORE.signer(endpoint=None, secrets=None)
    assert signer.presign("file:///m/a b%20c?#") == "file://localhost/m/a%20b%2520c%3F%23"


def test_get_reads_a_file_uri_as_one_object(shelf: Path) -> None:
    path = shelf / "org" / "m" / "w b.bin"
    [item] = parse_sources([uri_of(path)], read_text=str)
    assert item == UrlFile("w b.bin", url_of(path), len(DATA), None, uri_of(path))
    with pytest.raises(NotFoundError, match="no such file"):
        parse_sources([uri_of(shelf / "nope.bin")], read_text=str)
    with pytest.raises(UsageError, match="names a folder"):
        parse_sources([f"{uri_of(shelf)}/org"], read_text=str)


# --- reads: the transport on the run's client ----------------------------------------------------


def test_a_range_is_a_206_with_its_content_range(shelf: Path) -> None:
    url = url_of(shelf / "org" / "m" / "w b.bin")
    with make_client(pool_size=2) as client:
        part = client.get(url, headers={"Range": "bytes=10-19"})
        assert part.status_code == 206
        assert part.headers["Content-Range"] == f"bytes 10-19/{len(DATA)}"
        assert part.headers["Content-Length"] == "10" and part.content == DATA[10:20]
        tail = client.get(url, headers={"Range": "bytes=-5"})
        assert tail.status_code == 206 and tail.content == DATA[-5:]
        whole = client.get(url)
        assert whole.status_code == 200 and whole.content == DATA
        assert whole.headers["Content-Length"] == str(len(DATA))
        assert whole.headers["ETag"].startswith('"') and whole.headers["Last-Modified"]


def test_past_the_end_is_a_416_naming_the_size(shelf: Path) -> None:
    url = url_of(shelf / "org" / "m" / "w b.bin")
    with make_client(pool_size=2) as client:
        answer = client.get(url, headers={"Range": f"bytes={len(DATA)}-"})
    assert answer.status_code == 416
    assert answer.headers["Content-Range"] == f"bytes */{len(DATA)}"


def test_if_range_of_another_version_is_the_whole_file(shelf: Path) -> None:
    url = url_of(shelf / "org" / "m" / "w b.bin")
    with make_client(pool_size=2) as client:
        etag = client.head(url).headers["ETag"]
        same = client.get(url, headers={"Range": "bytes=0-0", "If-Range": etag})
        other = client.get(url, headers={"Range": "bytes=0-0", "If-Range": '"old"'})
    assert same.status_code == 206 and same.content == DATA[:1]
    assert other.status_code == 200 and other.content == DATA


@pytest.mark.parametrize(
    ("value", "size", "span"),
    [
        (None, 10, None),
        ("bytes=2-4", 10, (2, 5)),
        ("bytes=2-", 10, (2, 10)),
        ("bytes=2-99", 10, (2, 10)),
        ("bytes=-3", 10, (7, 10)),
        ("bytes=-30", 10, (0, 10)),
        ("bytes=10-", 10, False),
        ("bytes=0-0", 0, False),
        ("bytes=-0", 10, False),
        ("bytes=5-2", 10, None),  # not valid: ignored
        ("bytes=0-1,4-5", 10, None),  # several: the whole file
        ("items=0-1", 10, None),
    ],
)
def test_byte_ranges(value: str | None, size: int, span: object) -> None:
    assert byte_range(value, size) == span


def test_missing_files_and_folders_are_404s(shelf: Path) -> None:
    with make_client(pool_size=2) as client:
        missing = client.get(url_of(shelf / "org" / "nope.bin"))
        folder = client.get(url_of(shelf / "org"))
        under_a_file = client.get(url_of(shelf / "org" / "m" / "w b.bin" / "x"))
    assert (missing.status_code, missing.text) == (404, "not in the folder")
    assert (folder.status_code, folder.text) == (404, "a folder, not a file")
    assert under_a_file.status_code == 404
    assert STORE.reason(missing.text, 404) == "not in the folder"
    assert STORE.reason("x", None) is None


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every file")
def test_a_file_we_may_not_read_is_a_403(shelf: Path) -> None:
    path = shelf / "org" / "m" / "w b.bin"
    path.chmod(0)
    with make_client(pool_size=2) as client:
        answer = client.get(url_of(path))
    assert (answer.status_code, answer.text) == (403, "permission denied")


def test_the_body_is_streamed_in_chunks_and_its_file_closed(shelf: Path) -> None:
    url = url_of(shelf / "org" / "m" / "w b.bin")
    open_before = len(os.listdir("/proc/self/fd"))
    sizes, open_while_read = [], []
    with make_client(pool_size=2) as client, client.stream("GET", url) as answer:
        for chunk in answer.iter_raw():
            sizes.append(len(chunk))
            open_while_read.append(len(os.listdir("/proc/self/fd")) - open_before)
    assert open_while_read == [1, 1, 1, 1]  # the file, and nothing read ahead
    assert max(sizes) <= CHUNK and len(sizes) == 4 and sum(sizes) == len(DATA)
    assert len(os.listdir("/proc/self/fd")) == open_before


def test_a_file_that_shrinks_while_read_breaks_the_body(shelf: Path) -> None:
    import httpx2

    path = shelf / "org" / "m" / "w b.bin"
    with (
        make_client(pool_size=2) as client,
        client.stream("GET", url_of(path)) as answer,
        pytest.raises(httpx2.ReadError, match="ended with"),
    ):
        for _ in answer.iter_raw():
            os.truncate(path, CHUNK)


def test_only_this_machines_files_are_served(shelf: Path) -> None:
    with make_client(pool_size=2) as client:
        answer = client.get(f"file://elsewhere{shelf}/org/m/w%20b.bin")
        posted = client.post(url_of(shelf / "org" / "m" / "w b.bin"), content=b"x")
    assert answer.status_code == 400 and posted.status_code == 405


# --- writes --------------------------------------------------------------------------------------


def test_create_is_exclusive_and_says_the_version(tmp_path: Path) -> None:
    writer = STORE.writer(endpoint=None, secrets=None)
    uri = uri_of(tmp_path / "new" / "deep" / "x")
    seen = writer.create(uri, b"first")
    assert isinstance(seen, Seen) and seen.size == 5
    assert writer.create(uri, b"second") is None
    assert (tmp_path / "new" / "deep" / "x").read_bytes() == b"first"
    head = writer.head(uri)
    assert head is not None and (head.etag, head.size, head.modified) == (
        seen.etag,
        5,
        seen.modified,
    )
    read = writer.read(uri, limit=100)
    assert read is not None and read[0] == b"first" and read[1].etag == seen.etag
    assert _temps(tmp_path) == []


@pytest.mark.parametrize("kind", ["link", "dangling", "fifo", "dir"])
def test_head_and_read_never_follow_a_link_nor_wait_on_a_fifo(tmp_path: Path, kind: str) -> None:
    """Only writes walked with O_NOFOLLOW before: a read followed a link to any file."""
    (tmp_path / "secret").write_bytes(b"not the mirror's")
    where = tmp_path / "m" / "x"
    where.parent.mkdir()
    if kind == "link":
        where.symlink_to(tmp_path / "secret")
    elif kind == "dangling":
        where.symlink_to(tmp_path / "nowhere")
    elif kind == "fifo":
        os.mkfifo(where)
    else:
        where.mkdir()
    writer = STORE.writer(endpoint=None, secrets=None)
    assert writer.head(uri_of(where)) is None
    assert writer.read(uri_of(where), limit=100) is None


def test_a_read_is_bounded(tmp_path: Path) -> None:
    with (tmp_path / "huge").open("wb") as sparse:
        sparse.truncate(1 << 30)
    read = STORE.writer(endpoint=None, secrets=None).read(uri_of(tmp_path / "huge"), limit=4096)
    assert read is not None and len(read[0]) == 4097 and read[1].size == 1 << 30


def test_the_clock_is_the_folders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file's mtime by the file server's clock, never this machine's ``time.time``."""
    writer = STORE.writer(endpoint=None, secrets=None)
    uri = uri_of(tmp_path / "clocked" / "x")
    monkeypatch.setattr("time.time", lambda: 0.0)  # a machine whose clock is far off
    seen = writer.create(uri, b"x")
    assert seen is not None and seen.now >= seen.modified > 1e9  # the file's own stamps
    assert not (tmp_path / "clocked" / ".mdl").exists()  # a create needs no clock
    read = writer.read(uri, limit=10)  # a lease's age is judged on a read: the folder's clock
    assert read is not None
    clock = tmp_path / "clocked" / ".mdl" / ".mdl-clock"  # in mdl's namespace
    assert read[1].now == clock.stat().st_mtime_ns / 1e9 >= seen.modified
    assert writer.now() >= read[1].now


def test_replace_needs_the_current_version(tmp_path: Path) -> None:
    writer = STORE.writer(endpoint=None, secrets=None)
    uri = uri_of(tmp_path / "x")
    first = writer.create(uri, b"one")
    assert first is not None
    second = writer.replace(uri, b"two", etag=first.etag)
    assert second is not None and second.etag != first.etag
    assert writer.replace(uri, b"three", etag=first.etag) is None  # stale: someone wrote since
    assert (tmp_path / "x").read_bytes() == b"two"
    assert writer.replace(uri_of(tmp_path / "gone" / "y"), b"z", etag=second.etag) is None
    assert _temps(tmp_path) == []


def test_delete_only_the_version_named(tmp_path: Path) -> None:
    writer = STORE.writer(endpoint=None, secrets=None)
    uri = uri_of(tmp_path / "x")
    first = writer.create(uri, b"one")
    assert first is not None
    second = writer.replace(uri, b"two", etag=first.etag)
    assert second is not None
    assert writer.delete(uri, etag=first.etag) is False
    assert writer.delete(uri, etag=second.etag) is True
    assert writer.head(uri) is None
    assert writer.delete(uri) is False
    assert writer.delete(uri_of(tmp_path / "never" / "x")) is False


def test_upload_is_exclusive_and_leaves_no_temp(tmp_path: Path) -> None:
    source = tmp_path / "verified.bin"
    source.write_bytes(DATA)
    writer = STORE.writer(endpoint=None, secrets=None)
    uri, shelf = (
        uri_of(tmp_path / "shelf" / "org" / "m" / "w.bin"),
        uri_of(tmp_path / "shelf") + "/",
    )
    assert writer.upload(
        uri, source, size=len(DATA), sha256=hashlib.sha256(DATA).hexdigest(), root=shelf
    )
    assert (tmp_path / "shelf" / "org" / "m" / "w.bin").read_bytes() == DATA
    other = tmp_path / "other.bin"
    other.write_bytes(b"other")
    other_sha = hashlib.sha256(b"other").hexdigest()
    assert (
        writer.upload(uri, other, size=5, sha256=other_sha, root=shelf) is False
    )  # never replaced
    assert (tmp_path / "shelf" / "org" / "m" / "w.bin").read_bytes() == DATA
    # the bytes written are checked, read back: another size, or the same size and other bytes
    for size, sha256 in ((9, other_sha), (5, hashlib.sha256(b"0ther").hexdigest())):
        with pytest.raises(IntegrityError, match=r"not the \d+ bytes verified"):
            writer.upload(
                uri_of(tmp_path / "shelf" / "z.bin"), other, size=size, sha256=sha256, root=shelf
            )
        assert not (tmp_path / "shelf" / "z.bin").exists()
    assert _temps(tmp_path) == []


def test_an_upload_told_to_overwrite_replaces_and_reports_its_bytes(tmp_path: Path) -> None:
    """``overwrite`` (publish's rule): what is there is replaced, atomically, and marked again;
    ``sent`` hears the bytes copied, then 0 just before the object is whole (its last word: what it
    raises then stops the upload)."""
    writer = STORE.writer(endpoint=None, secrets=None)
    target, shelf = tmp_path / "shelf" / "w.bin", uri_of(tmp_path / "shelf") + "/"
    target.parent.mkdir()
    target.write_bytes(b"old bytes")
    source = tmp_path / "verified.bin"
    source.write_bytes(DATA)
    told: list[int] = []
    assert writer.upload(
        uri_of(target),
        source,
        size=len(DATA),
        sha256=hashlib.sha256(DATA).hexdigest(),
        root=shelf,
        overwrite=True,
        sent=told.append,
    )
    assert target.read_bytes() == DATA and told == [len(DATA), 0]
    owned = writer.owned(uri_of(target), root=shelf)
    assert owned is not None and owned.marked
    assert _temps(tmp_path) == []


def test_an_interrupted_upload_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "verified.bin"
    source.write_bytes(DATA)

    def interrupted(source: int, target: int, sent: object) -> int:
        os.write(target, b"part")
        raise KeyboardInterrupt

    monkeypatch.setattr("mdl.buckets.folder._copy", interrupted)
    writer = STORE.writer(endpoint=None, secrets=None)
    with pytest.raises(KeyboardInterrupt):
        writer.upload(
            uri_of(tmp_path / "shelf" / "w.bin"),
            source,
            size=len(DATA),
            sha256="0",
            root=uri_of(tmp_path / "shelf") + "/",
        )
    assert sorted(p.name for p in (tmp_path / "shelf").iterdir()) == []


def test_listing_is_the_objects_under_a_prefix(tmp_path: Path) -> None:
    writer = STORE.writer(endpoint=None, secrets=None)
    for name in ("org/a/w.bin", "org/a/w.bin.mdl-lease", "org/b/x.bin", "orgy/y.bin"):
        assert writer.create(uri_of(tmp_path / name), name.encode()) is not None
    (tmp_path / "org" / "a" / temp_name("w.bin")).write_bytes(b"left by a crash")
    (tmp_path / "org" / "loop").symlink_to(tmp_path)  # a linked folder is not walked into
    writer.delete(uri_of(tmp_path / "org/b/x.bin"))
    assert writer.create(uri_of(tmp_path / "org/.mdl/leases/a/w.bin/1"), b"{}")  # mdl's own
    listed = list(writer.listing(uri_of(tmp_path / "org") + "/"))
    assert [item.uri for item in listed] == [
        uri_of(tmp_path / "org/a/w.bin"),
        uri_of(tmp_path / "org/a/w.bin.mdl-lease"),
    ]
    assert listed[0].size == len("org/a/w.bin")
    partial = [item.uri for item in writer.listing(uri_of(tmp_path / "org"))]
    assert partial[-1] == uri_of(tmp_path / "orgy/y.bin") and len(partial) == 3
    assert list(writer.listing(uri_of(tmp_path / "none") + "/")) == []


def test_a_folder_we_cannot_write_is_a_local_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"")
    writer = STORE.writer(endpoint=None, secrets=None)
    with pytest.raises(LocalFSError) as caught:
        writer.create(uri_of(tmp_path / "file" / "x"), b"x")
    assert caught.value.exit_code == ExitCode.LOCAL
    assert str(tmp_path / "file") in caught.value.message


# --- races: one winner, from threads and from processes ------------------------------------------


def _race(tries: Callable[[], object], count: int) -> list[object]:
    """``tries()`` on ``count`` threads released at once."""
    start = threading.Barrier(count)
    results: list[object] = []

    def one() -> None:
        start.wait(timeout=HANG)
        results.append(tries())

    threads = [threading.Thread(target=one) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=HANG)
    assert not any(thread.is_alive() for thread in threads), f"a try hung for {HANG}s"
    return results


def test_threads_creating_one_object_have_one_winner(tmp_path: Path) -> None:
    uri = uri_of(tmp_path / "lease")
    for _ in range(5):
        results = _race(lambda: FolderWriter().create(uri, b"mine"), 8)
        assert sum(r is not None for r in results) == 1
        assert FolderWriter().delete(uri) is True


def _in_process(kind: str, uri: str, etag: str, go: object, out: object) -> None:
    go.wait(30)  # type: ignore[attr-defined]
    writer = FolderWriter()
    if kind == "create":
        won = writer.create(uri, str(os.getpid()).encode()) is not None
    else:
        won = writer.replace(uri, str(os.getpid()).encode(), etag=etag) is not None
    out.put(won)  # type: ignore[attr-defined]


@pytest.mark.parametrize("kind", ["create"])
def test_processes_racing_on_one_object_have_one_winner(tmp_path: Path, kind: str) -> None:
    uri = uri_of(tmp_path / "lease")
    etag = ""
    if kind == "replace":
        first = FolderWriter().create(uri, b"v0")
        assert first is not None
        etag = first.etag
    context = multiprocessing.get_context("fork")
    go, out = context.Event(), context.Queue()
    processes = [
        context.Process(target=_in_process, args=(kind, uri, etag, go, out)) for _ in range(4)
    ]
    for process in processes:
        process.start()
    go.set()
    won = [out.get(timeout=60) for _ in processes]
    for process in processes:
        process.join(timeout=60)
        assert process.exitcode == 0
    assert sorted(won) == [False, False, False, True]
    assert _temps(tmp_path) == []


def _temps(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.mdl-tmp"))


# --- the engine and a real pull, with the folder as the mirror ----------------------------------


def test_the_engine_fetches_parallel_ranges_from_the_folder(shelf: Path) -> None:
    import hashlib

    from runfixtures import transfer_job

    from mdl.progress import NullProgress
    from mdl.transfer.engine import Engine
    from mdl.transfer.http import RetryPolicy
    from mdl.transfer.job import EngineConfig

    config = EngineConfig(connections=4, retry=RetryPolicy(retries=0), split_threshold=CHUNK)
    job = transfer_job(shelf.parent / "pulled", url_of(shelf / "org" / "m" / "w b.bin"), DATA)
    with make_client(pool_size=8) as client:
        engine = Engine(client, config, progress=NullProgress(), cancel=threading.Event())
        result = engine.fetch(job)
    assert result.sha256 == hashlib.sha256(DATA).hexdigest()
    assert job.final_path.read_bytes() == DATA


WEIGHTS = make_data(200_001, seed=41)
CONFIG = b'{"model_type": "bert"}\n'
FILES = {"config.json": CONFIG, "model.safetensors": WEIGHTS}


@pytest.fixture
def world(hub: HubServer, catalog: Path, tmp_path: Path) -> dict[str, Path]:
    """The Hub's org/tiny as the catalog's model ``tiny``, and a shared folder beside it."""
    hub.add_repo("org/tiny", FILES)
    catalog.write_text('[models.tiny]\nrepo = "org/tiny"\n')
    folder = tmp_path / "shared" / "models"
    (folder / "tiny").mkdir(parents=True)
    return {"dest": tmp_path / "models", "folder": folder}


def pull_with_folder(world: dict[str, Path]) -> tuple[dict[str, Any], str]:
    template = f"file://{world['folder']}/{{model}}/{{path}}"
    result = mdl("pull", "tiny", "--mirror", template, "--json", "--no-progress")
    assert result.exit_code == 0, result.stderr
    for path, data in FILES.items():
        assert (world["dest"] / "tiny" / path).read_bytes() == data  # verified, wherever from
    doc = json.loads(result.stdout)
    return {f["path"]: f for f in doc["files"]}, result.stderr


def test_a_pull_takes_the_files_from_the_folder(world: dict[str, Path], hub: HubServer) -> None:
    for path, data in FILES.items():
        (world["folder"] / "tiny" / path).write_bytes(data)
    by_path, stderr = pull_with_folder(world)
    for path in FILES:
        assert by_path[path]["mirror"] == f"file://{world['folder']}/tiny/{path}"
        assert by_path[path]["warning"] is None
    assert hub.log.records(method="GET", path_prefix="/org/tiny/resolve/") == []  # none of origin
    assert "warning" not in stderr


def test_wrong_bytes_in_the_folder_fall_through_to_the_origin(
    world: dict[str, Path], hub: HubServer
) -> None:
    wrong = bytearray(WEIGHTS)
    wrong[1000] ^= 1
    (world["folder"] / "tiny" / "config.json").write_bytes(CONFIG)
    (world["folder"] / "tiny" / "model.safetensors").write_bytes(bytes(wrong))
    by_path, stderr = pull_with_folder(world)
    assert by_path["config.json"]["mirror"] and by_path["config.json"]["warning"] is None
    weights = by_path["model.safetensors"]
    assert "mirror" not in weights or not weights["mirror"]
    assert "mismatch" in weights["warning"] and weights["warning"] in stderr
    fetched = [r.url_path for r in hub.log.records(method="GET", path_prefix="/org/tiny/resolve/")]
    assert [path.rsplit("/", 1)[-1] for path in fetched] == ["model.safetensors"], fetched


def test_a_file_missing_from_the_folder_is_a_warning(world: dict[str, Path]) -> None:
    (world["folder"] / "tiny" / "config.json").write_bytes(CONFIG)
    by_path, _ = pull_with_folder(world)
    folder = world["folder"]
    assert by_path["model.safetensors"]["warning"] == (
        f"tiny/model.safetensors: mirror file://{folder}/tiny/model.safetensors failed (not in"
        " the folder); trying the next source"
    )


def test_get_fetches_a_file_uri(
    shelf: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import hashlib

    monkeypatch.chdir(tmp_path)
    source = uri_of(shelf / "org" / "m" / "w b.bin")
    result = mdl("get", source, "-d", "D", "--json", "--sha256", hashlib.sha256(DATA).hexdigest())
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "D" / "w b.bin").read_bytes() == DATA
    missing = mdl("get", uri_of(shelf / "nope.bin"), "-d", "D")
    assert missing.exit_code == ExitCode.NOT_FOUND and "no such file" in missing.stderr


def test_a_lock_another_program_holds_stalls_no_write(tmp_path: Path) -> None:
    """mdl takes no lock in the folder: a stuck process holding ``.mdl-lock`` (as older mdl took
    it) delays no write, no take, no release."""
    import subprocess
    import sys

    from mdl.buckets.lease import take

    script = "import fcntl, os, sys\n"
    for held in (tmp_path / ".mdl-lock", tmp_path / ".mdl" / ".mdl-lock"):
        held.parent.mkdir(exist_ok=True)
        script += f"fd = os.open({str(held)!r}, os.O_RDWR | os.O_CREAT)\n"
        script += "fcntl.lockf(fd, fcntl.LOCK_EX)\n"
    holder = subprocess.Popen(
        [sys.executable, "-c", script + "print('held', flush=True)\nsys.stdin.read()\n"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        writer = FolderWriter()
        first = writer.create(uri_of(tmp_path / "x"), b"v0")
        assert first is not None
        assert writer.replace(uri_of(tmp_path / "x"), b"v1", etag=first.etag) is not None
        lease = take(
            writer,
            Generation.of(uri_of(tmp_path) + "/.mdl/", uri_of(tmp_path / "w.bin")),
            holder="me",
        )
        assert lease is not None
        lease.renew()
        lease.release()
        assert json.loads((tmp_path / ".mdl/leases/w.bin/1").read_bytes())["released"] is True
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=60)


# --- a folder several users share (one per machine) ----------------------------------------------

AS_ROOT = pytest.mark.skipif(os.geteuid() != 0, reason="switches to other users: needs root")
ANOTHER, THIRD = 1000, 1001  # the users of two machines sharing the folder

_AS_USER = """
import hashlib, json, os, pathlib, sys
sys.path.insert(0, sys.argv[1])
uid, uri, op = int(sys.argv[2]), sys.argv[3], sys.argv[4]
from mdl.buckets.folder import FolderWriter
import mdl.buckets.lease
from mdl.buckets.lease import take
from mdl.buckets.names import Generation
from mdl.errors import MdlError
# each op is a process of its own that ends at once: its leases are judged by the clock alone, as
# another machine's are (a holder of this machine that is gone is taken over at once)
mdl.buckets.lease.process_of = lambda pid: None
# imported first: the other user may not read root's Python
os.setgid(uid); os.setuid(uid); os.umask(0o022)  # an ordinary user's umask
writer = FolderWriter()
calls = {
    "take": lambda: take(writer, Generation.parse(uri), holder=str(uid), term=600.0) is not None,
    "head": lambda: writer.head(uri) is not None,
    "read": lambda: writer.read(uri, limit=100) is not None,
    "replace": lambda: writer.replace(uri, b"x", etag="1"),
    "delete": lambda: writer.delete(uri, etag="1"),
    "upload": lambda: writer.upload(uri, pathlib.Path(sys.argv[5]), size=4, sha256=hashlib.sha256(b"keys").hexdigest(), root=uri.rpartition("/")[0] + "/"),
}
try:
    print(json.dumps(calls[op]()))
except MdlError as exc:
    print(json.dumps({"exit": int(exc.exit_code), "said": exc.message}))
"""


def _as_user(uid: int, uri: str, op: str, *extra: str) -> Any:
    """``op`` on ``uri`` by a FolderWriter of user ``uid`` (a process of its own): its result, or
    the MdlError's exit code and words; anything else fails the test."""
    import subprocess
    import sys

    root = str(Path(__file__).resolve().parents[2])
    done = subprocess.run(
        [sys.executable, "-c", _AS_USER, root, str(uid), uri, op, *extra],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.fixture
def share() -> Iterator[Path]:
    """A folder every user may write (``chmod 777``), where every user can reach it."""
    import shutil
    import tempfile

    base = Path(tempfile.mkdtemp(prefix="mdl-share-", dir="/tmp"))
    base.chmod(0o755)
    (base / "share").mkdir()
    (base / "share").chmod(0o777)
    yield base / "share"
    shutil.rmtree(base)


@AS_ROOT
def test_two_users_share_a_folder_its_leases_lock_and_clock(share: Path) -> None:
    """A folder and clock one user made are the next one's too (the parent's bits, not the
    umask); a head writes nothing (a reader may not be allowed to). No wall clock: the term is
    ten minutes, and the lease lapses because its file is made an hour old."""
    leases = share / "hub" / ".mdl" / "leases" / "org" / "model" / "w.bin"
    first = uri_of(leases / "1")
    assert _as_user(ANOTHER, first, "take") is True
    assert _as_user(THIRD, first, "head") is True
    assert not (leases / ".mdl-clock").exists()
    assert _as_user(THIRD, first, "take") is False  # live: read, judged by the clock
    assert _as_user(ANOTHER, first, "read") is True  # the clock THIRD made
    old = (leases / "1").stat().st_mtime - 3600
    os.utime(leases / "1", (old, old))  # its holder stopped renewing an hour ago
    assert _as_user(THIRD, first, "take") is True  # taken over: the next generation
    assert json.loads((leases / "2").read_bytes())["holder"] == str(THIRD)
    # the lapsed one stays until the next takeover: a scan that misses "2" still finds a number
    assert (leases / "1").exists()
    for made in ("hub", "hub/.mdl/leases/org/model/w.bin"):
        assert (share / made).stat().st_mode & 0o7777 == 0o777, made
    for made in (".mdl-clock", "2"):  # the clock: in mdl's namespace already
        assert (leases / made).stat().st_mode & 0o777 == 0o666, made


@AS_ROOT
def test_a_clock_the_user_may_not_touch_is_exit_7_naming_it(share: Path) -> None:
    folder = share / "mine"
    folder.mkdir(mode=0o755)  # root's: another user reads it, cannot write it
    (folder / "w.bin.mdl-lease").write_bytes(b"{}")
    said = _as_user(ANOTHER, uri_of(folder / "w.bin.mdl-lease"), "read")
    assert said["exit"] == ExitCode.LOCAL and str(folder / ".mdl") in said["said"]
    assert _as_user(ANOTHER, uri_of(folder / "w.bin.mdl-lease"), "head") is True


@AS_ROOT
def test_a_link_another_user_planted_is_not_followed(share: Path) -> None:
    """A user of the share links a folder of the fill's path to another user's folder: the fill
    writes nothing there (exit 2)."""
    victim = share.parent / "victim"
    victim.mkdir(mode=0o700)
    os.chown(victim, ANOTHER, ANOTHER)
    (share / "org").mkdir(mode=0o777)
    (share / "org").chmod(0o777)
    os.symlink(victim, share / "org" / "model")
    os.chown(share / "org" / "model", THIRD, THIRD, follow_symlinks=False)
    source = share.parent / "src"
    source.write_bytes(b"keys")
    source.chmod(0o644)
    uri = uri_of(share / "org" / "model" / "authorized_keys")
    lease = uri_of(share / "org" / "model" / ".mdl" / "leases" / "authorized_keys" / "1")
    for op, there in (("upload", uri), ("take", lease)):
        said = _as_user(ANOTHER, there, op, str(source))
        assert said["exit"] == ExitCode.USAGE and "a link uid 1001 made" in said["said"]
    assert list(victim.iterdir()) == []
    os.chown(share / "org" / "model", ANOTHER, ANOTHER, follow_symlinks=False)  # its own: followed
    assert _as_user(ANOTHER, uri, "upload", str(source)) is True
    assert (victim / "authorized_keys").read_bytes() == b"keys"


@AS_ROOT
def test_a_folder_the_user_may_not_enter_is_exit_7_for_every_write(share: Path) -> None:
    locked = share / "locked"
    (locked / "sub").mkdir(parents=True)
    locked.chmod(0o700)
    uri = uri_of(locked / "sub" / "w.bin.mdl-lease")
    for op in ("replace", "delete", "read", "head"):
        said = _as_user(ANOTHER, uri, op)
        assert said["exit"] == ExitCode.LOCAL and str(locked) in said["said"], op
