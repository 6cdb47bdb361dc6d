"""The loopback Hub and CDN behave like the real ones: checked with huggingface_hub itself and
raw httpx2.
"""

from __future__ import annotations

import hashlib
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import httpx2
import pytest
from huggingface_hub import HfApi, get_hf_file_metadata, hf_hub_download, hf_hub_url
from huggingface_hub.errors import (
    GatedRepoError,
    HfHubHTTPError,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.hf_api import RepoFile, RepoFolder
from runfixtures import HANG
from servers import TOKEN, CdnServer, Fault, HubServer, RequestLog, git_blob_sha1, make_data

WEIGHTS = make_data(5000, seed=1)
CONFIG = b'{"model_type": "bert"}\n'
ODD_PATH = "sub dir/ünï cödé #1.txt"


@pytest.fixture
def tiny(hub: HubServer) -> HubServer:
    """A hub holding org/tiny: a small JSON file, an LFS weights file, a nested and an oddly
    named file.
    """
    hub.add_repo(
        "org/tiny",
        {
            "config.json": CONFIG,
            "model.safetensors": WEIGHTS,
            "nested/deeper/vocab.txt": b"a\nb\n",
            ODD_PATH: b"odd",
        },
    )
    return hub


def client(*, timeout: float = HANG, **kwargs: object) -> httpx2.Client:
    """A raw client that never follows redirects unless asked (its timeout a safety net, not a
    measure of speed).
    """
    return httpx2.Client(timeout=timeout, **kwargs)  # type: ignore[arg-type]


def wait_until(predicate: Callable[[], bool], timeout: float = HANG) -> bool:
    """Poll until `predicate()` holds (server-side bookkeeping may lag the client by a moment)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


# ---------------------------------------------------------------------------------------------------------
# Hub, through huggingface_hub
# ---------------------------------------------------------------------------------------------------------


def test_model_info_matches_the_repo(tiny: HubServer) -> None:
    repo = tiny.repo("org/tiny")
    api = HfApi(endpoint=tiny.url)

    info = api.model_info("org/tiny", files_metadata=True)
    assert info.id == "org/tiny"
    assert info.sha == repo.sha and len(info.sha) == 40
    assert info.gated is False and info.private is False
    siblings = {s.rfilename: s for s in info.siblings or []}
    assert set(siblings) == {
        "config.json",
        "model.safetensors",
        "nested/deeper/vocab.txt",
        ODD_PATH,
    }
    assert siblings["config.json"].size == len(CONFIG)
    assert siblings["config.json"].blob_id == git_blob_sha1(CONFIG)
    assert siblings["config.json"].lfs is None
    lfs = siblings["model.safetensors"].lfs
    assert (
        lfs is not None
        and lfs.sha256 == hashlib.sha256(WEIGHTS).hexdigest()
        and lfs.size == len(WEIGHTS)
    )

    assert api.repo_info("org/tiny", revision="main").sha == repo.sha
    assert api.repo_info("org/tiny", revision=repo.sha).sha == repo.sha


def test_dataset_and_space_repos(hub: HubServer) -> None:
    hub.add_repo(
        "org/data", {"train.parquet": b"P" * 100, "README.md": b"# data"}, repo_type="dataset"
    )
    hub.add_repo("org/app", {"app.py": b"print(1)"}, repo_type="space")
    api = HfApi(endpoint=hub.url)

    assert api.repo_info("org/data", repo_type="dataset").sha == hub.repo("org/data", "dataset").sha
    assert api.repo_info("org/app", repo_type="space").id == "org/app"
    with pytest.raises(RepositoryNotFoundError):
        api.repo_info("org/data")  # it is not a model

    url = hf_hub_url("org/data", "train.parquet", repo_type="dataset", endpoint=hub.url)
    assert "/datasets/org/data/resolve/main/" in url
    meta = get_hf_file_metadata(url)
    assert meta.etag == hashlib.sha256(b"P" * 100).hexdigest() and meta.size == 100
    files = [f.path for f in api.list_repo_tree("org/data", repo_type="dataset")]
    assert files == ["README.md", "train.parquet"]


def test_list_repo_tree_recursive_with_pagination(tiny: HubServer) -> None:
    tiny.page_size = 2
    api = HfApi(endpoint=tiny.url)

    entries = list(api.list_repo_tree("org/tiny", recursive=True))
    by_path = {e.path: e for e in entries}
    assert sorted(by_path) == sorted(
        [
            "config.json",
            "model.safetensors",
            "nested",
            "nested/deeper",
            "nested/deeper/vocab.txt",
            "sub dir",
            ODD_PATH,
        ]
    )
    assert isinstance(by_path["nested"], RepoFolder)
    weights = by_path["model.safetensors"]
    assert isinstance(weights, RepoFile) and weights.lfs is not None
    assert weights.lfs.sha256 == hashlib.sha256(WEIGHTS).hexdigest()
    assert weights.size == len(WEIGHTS)
    # Like git, the listed oid of an LFS file is the blob id of its pointer, not of the content.
    assert weights.blob_id != git_blob_sha1(WEIGHTS)
    config = by_path["config.json"]
    assert (
        isinstance(config, RepoFile)
        and config.lfs is None
        and config.blob_id == git_blob_sha1(CONFIG)
    )

    pages = tiny.log.records(path_prefix="/api/models/org/tiny/tree/")
    assert len(pages) == 4 and "cursor" in pages[-1].query

    below = list(api.list_repo_tree("org/tiny", path_in_repo="nested", recursive=False))
    assert [(type(e).__name__, e.path) for e in below] == [("RepoFolder", "nested/deeper")]
    deep = list(api.list_repo_tree("org/tiny", path_in_repo="nested/deeper"))
    assert [e.path for e in deep] == ["nested/deeper/vocab.txt"]


def test_file_metadata_for_lfs_and_plain_files(tiny: HubServer) -> None:
    repo = tiny.repo("org/tiny")

    lfs = get_hf_file_metadata(hf_hub_url("org/tiny", "model.safetensors", endpoint=tiny.url))
    assert lfs.commit_hash == repo.sha
    assert lfs.etag == hashlib.sha256(WEIGHTS).hexdigest()
    assert lfs.size == len(WEIGHTS)
    assert lfs.location.startswith(tiny.cdn.url + "/blobs/") and "X-Amz-Signature=" in lfs.location

    plain = get_hf_file_metadata(hf_hub_url("org/tiny", ODD_PATH, endpoint=tiny.url))
    assert plain.etag == git_blob_sha1(b"odd") and plain.size == 3 and plain.commit_hash == repo.sha


def test_hf_hub_download_end_to_end(tiny: HubServer, tmp_path: Path) -> None:
    for name, data in [("model.safetensors", WEIGHTS), (ODD_PATH, b"odd"), ("config.json", CONFIG)]:
        local = hf_hub_download(
            "org/tiny", name, endpoint=tiny.url, cache_dir=tmp_path, token=TOKEN
        )
        assert Path(local).read_bytes() == data
    assert any(r.authorization == f"Bearer {TOKEN}" for r in tiny.log)
    assert tiny.cdn.log.records(method="GET")[0].bytes_sent == len(WEIGHTS)


def test_error_classes_come_out_of_the_client(tiny: HubServer) -> None:
    api = HfApi(endpoint=tiny.url)
    with pytest.raises(RepositoryNotFoundError):
        api.model_info("org/missing")
    with pytest.raises(RepositoryNotFoundError):
        get_hf_file_metadata(hf_hub_url("org/missing", "config.json", endpoint=tiny.url))
    with pytest.raises(RevisionNotFoundError):
        api.model_info("org/tiny", revision="v9")
    with pytest.raises(RevisionNotFoundError):
        get_hf_file_metadata(
            hf_hub_url("org/tiny", "config.json", revision="v9", endpoint=tiny.url)
        )
    with pytest.raises(RevisionNotFoundError):
        list(api.list_repo_tree("org/tiny", revision="v9"))
    with pytest.raises(RemoteEntryNotFoundError):
        get_hf_file_metadata(hf_hub_url("org/tiny", "nope.bin", endpoint=tiny.url))
    with pytest.raises(RemoteEntryNotFoundError):
        list(api.list_repo_tree("org/tiny", path_in_repo="no/such/dir"))
    errors = tiny.log.records(status=404)
    assert len(errors) == 7
    assert all(r.status == 404 for r in errors)


def test_error_headers_on_raw_requests(tiny: HubServer) -> None:
    with client() as http:
        cases = {
            "/api/models/org/missing": "RepoNotFound",
            "/api/models/org/tiny/revision/v9": "RevisionNotFound",
            "/org/tiny/resolve/main/nope.txt": "EntryNotFound",
        }
        for path, code in cases.items():
            r = http.get(tiny.url + path)
            assert (r.status_code, r.headers["X-Error-Code"]) == (404, code)
            assert (
                r.headers["X-Error-Message"] and r.json()["error"] == r.headers["X-Error-Message"]
            )


def test_gated_private_and_bad_tokens(hub: HubServer, tmp_path: Path) -> None:
    hub.add_repo("org/gated", {"w.safetensors": WEIGHTS}, gated=True, granted_tokens=[TOKEN])
    hub.valid_tokens.add("hf_other")
    hub.add_repo("org/secret", {"a.txt": b"a"}, private=True)
    url = hf_hub_url("org/gated", "w.safetensors", endpoint=hub.url)

    with pytest.raises(GatedRepoError) as no_token:
        get_hf_file_metadata(url)
    assert no_token.value.response.status_code == 401
    assert "is restricted" in no_token.value.response.headers["X-Error-Message"]
    with pytest.raises(GatedRepoError) as not_granted:
        get_hf_file_metadata(url, token="hf_other")
    assert not_granted.value.response.status_code == 403
    with pytest.raises(HfHubHTTPError) as bad:
        get_hf_file_metadata(url, token="hf_wrong")
    assert bad.value.response.status_code == 401
    assert not isinstance(bad.value, GatedRepoError | RepositoryNotFoundError)

    # As on the real Hub, a gated repo's metadata is public; only its files need access.
    assert HfApi(endpoint=hub.url).model_info("org/gated").gated == "auto"
    assert get_hf_file_metadata(url, token=TOKEN).size == len(WEIGHTS)
    local = hf_hub_download(
        "org/gated", "w.safetensors", endpoint=hub.url, token=TOKEN, cache_dir=tmp_path
    )
    assert Path(local).read_bytes() == WEIGHTS

    with pytest.raises(RepositoryNotFoundError):
        HfApi(endpoint=hub.url).model_info("org/secret")
    assert HfApi(endpoint=hub.url, token=TOKEN).model_info("org/secret").private is True


def test_replace_file_makes_a_new_commit_and_keeps_the_old(tiny: HubServer) -> None:
    repo = tiny.repo("org/tiny")
    old_sha = repo.sha
    new_weights = make_data(6000, seed=2)
    new_sha = tiny.replace_file("org/tiny", "model.safetensors", new_weights)
    assert new_sha != old_sha and len(new_sha) == 40 and repo.sha == new_sha

    main = get_hf_file_metadata(hf_hub_url("org/tiny", "model.safetensors", endpoint=tiny.url))
    old = get_hf_file_metadata(
        hf_hub_url("org/tiny", "model.safetensors", revision=old_sha, endpoint=tiny.url)
    )
    assert (main.commit_hash, main.etag) == (new_sha, hashlib.sha256(new_weights).hexdigest())
    assert (old.commit_hash, old.etag) == (old_sha, hashlib.sha256(WEIGHTS).hexdigest())
    with client() as http:
        assert http.get(old.location).content == WEIGHTS
        assert http.get(main.location).content == new_weights

    tiny.create_tag("org/tiny", "v1", old_sha)
    tiny.create_branch("org/tiny", "refs/pr/1", new_sha)
    api = HfApi(endpoint=tiny.url)
    assert api.model_info("org/tiny", revision="v1").sha == old_sha
    assert api.model_info("org/tiny", revision="refs/pr/1").sha == new_sha
    pr = get_hf_file_metadata(
        hf_hub_url("org/tiny", "config.json", revision="refs/pr/1", endpoint=tiny.url)
    )
    assert pr.commit_hash == new_sha


def test_hostile_paths_are_listed_and_served(hub: HubServer) -> None:
    hub.add_repo(
        "org/evil", {"ok.txt": b"ok", "../evil.txt": b"x", "/abs": b"y"}, allow_unsafe_paths=True
    )
    api = HfApi(endpoint=hub.url)
    assert {e.path for e in api.list_repo_tree("org/evil", recursive=True)} == {
        "ok.txt",
        "../evil.txt",
        "/abs",
    }
    assert {e.path for e in api.list_repo_tree("org/evil")} == {"ok.txt", "../evil.txt", "/abs"}
    assert {s.rfilename for s in api.model_info("org/evil").siblings or []} == {
        "ok.txt",
        "../evil.txt",
        "/abs",
    }
    with client() as http:
        assert http.get(f"{hub.url}/org/evil/resolve/main/%2E%2E/evil.txt").content == b"x"
    with pytest.raises(ValueError, match="unsafe"):
        hub.add_repo("org/oops", {"../x": b""})


def test_resolve_redirects_to_the_cdn_without_following(tiny: HubServer) -> None:
    url = tiny.file_url("org/tiny", "model.safetensors")
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with client() as http:
        head = http.head(url, headers={**auth, "Accept-Encoding": "identity"})
        assert head.status_code == 302
        assert head.headers["Location"].startswith(tiny.cdn.url + "/blobs/")
        assert head.headers["X-Linked-Etag"] == f'"{hashlib.sha256(WEIGHTS).hexdigest()}"'
        assert head.headers["X-Linked-Size"] == str(len(WEIGHTS))
        assert head.headers["X-Repo-Commit"] == tiny.repo("org/tiny").sha
        assert head.headers["Content-Length"] == "0"
        # as a careful client would: no Authorization off-origin
        got = http.get(head.headers["Location"])
        assert got.content == WEIGHTS and got.headers["ETag"] == head.headers["ETag"]

        plain = http.get(tiny.file_url("org/tiny", "config.json"), headers={"Range": "bytes=2-5"})
        assert (plain.status_code, plain.content) == (206, CONFIG[2:6])
        assert plain.headers["ETag"] == f'"{git_blob_sha1(CONFIG)}"'

    assert tiny.log[0].authorization == f"Bearer {TOKEN}"
    assert tiny.log[0].header("accept-encoding") == "identity"
    assert all(r.authorization is None for r in tiny.cdn.log)


# ---------------------------------------------------------------------------------------------------------
# CDN: ranges, conditional requests, redirects, options
# ---------------------------------------------------------------------------------------------------------

BODY = make_data(1000, seed=3)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("range_header", "status", "content_range", "body"),
    [
        ("bytes=0-9", 206, "bytes 0-9/1000", BODY[:10]),
        ("bytes=990-", 206, "bytes 990-999/1000", BODY[990:]),
        ("bytes=-5", 206, "bytes 995-999/1000", BODY[-5:]),
        ("bytes=500-5000", 206, "bytes 500-999/1000", BODY[500:]),
        ("bytes=-5000", 206, "bytes 0-999/1000", BODY),
        ("bytes=999-999", 206, "bytes 999-999/1000", BODY[999:]),
        ("bytes=1000-", 416, "bytes */1000", b""),
        ("bytes=-0", 416, "bytes */1000", b""),
        ("bytes=0-1,5-6", 200, None, BODY),  # multiple ranges: ignored (RFC 9110 allows it)
        ("bytes=9-3", 200, None, BODY),  # invalid: ignored
        ("items=0-3", 200, None, BODY),
    ],
)
def test_cdn_ranges(
    cdn: CdnServer, range_header: str, status: int, content_range: str | None, body: bytes
) -> None:
    url = cdn.add_file("/files/model.bin", BODY)
    with client() as http:
        r = http.get(url, headers={"Range": range_header})
    assert r.status_code == status
    assert r.headers.get("Content-Range") == content_range
    assert r.content == body
    assert r.headers["ETag"] == f'"{hashlib.md5(BODY).hexdigest()}"'
    assert r.headers["Accept-Ranges"] == "bytes"
    assert cdn.log[0].range == range_header and cdn.log[0].bytes_sent == len(body)


def test_cdn_if_range_and_head(cdn: CdnServer) -> None:
    url = cdn.add_file("/files/a b.bin", BODY, etag='"v1"')
    assert url.endswith("/files/a%20b.bin")
    with client() as http:
        head = http.head(url)
        assert (head.status_code, head.headers["Content-Length"], head.content) == (
            200,
            "1000",
            b"",
        )
        assert (
            http.head(url, headers={"Range": "bytes=10-"}).headers["Content-Range"]
            == "bytes 10-999/1000"
        )
        match = http.get(url, headers={"Range": "bytes=10-", "If-Range": '"v1"'})
        assert (match.status_code, match.content) == (206, BODY[10:])
        stale = http.get(url, headers={"Range": "bytes=10-", "If-Range": '"v0"'})
        assert (stale.status_code, stale.content) == (200, BODY)
        weak = http.get(url, headers={"Range": "bytes=10-", "If-Range": 'W/"v1"'})
        assert weak.status_code == 200  # If-Range needs a strong match
        by_date = http.get(
            url, headers={"Range": "bytes=10-", "If-Range": head.headers["Last-Modified"]}
        )
        assert by_date.status_code == 206

        # Re-uploading the object changes its ETag: a resume with the old one gets the new body
        # whole.
        new = make_data(1200, seed=4)
        cdn.add_file("/files/a b.bin", new)
        again = http.get(url, headers={"Range": "bytes=10-", "If-Range": '"v1"'})
        assert (again.status_code, again.content) == (200, new)
    assert cdn.log.records()[2].if_range == '"v1"'


def test_cdn_file_options(cdn: CdnServer, tmp_path: Path) -> None:
    on_disk = tmp_path / "big.bin"
    on_disk.write_bytes(BODY)
    disk_url = cdn.add_file("/disk.bin", on_disk)
    no_etag = cdn.add_file("/plain.bin", b"abc", etag="")
    private = cdn.add_file(
        "/private.bin", b"p", required_headers={"Authorization": "Bearer civitai"}
    )
    with client() as http:
        assert http.get(disk_url, headers={"Range": "bytes=100-199"}).content == BODY[100:200]
        assert "ETag" not in http.get(no_etag).headers
        assert http.get(private).status_code == 401
        assert http.get(private, headers={"Authorization": "Bearer nope"}).status_code == 403
        assert http.get(private, headers={"Authorization": "Bearer civitai"}).content == b"p"
        assert http.get(cdn.url + "/missing").status_code == 404
        assert http.post(disk_url, content=b"x" * 10).status_code == 405
        assert http.get(disk_url).status_code == 200  # the connection survived the 405


def test_keep_alive_reuses_one_connection(cdn: CdnServer) -> None:
    url = cdn.add_file("/k.bin", BODY)
    with client() as http:
        for _ in range(5):
            assert http.get(url, headers={"Range": "bytes=0-99"}).status_code == 206
        http.get(cdn.url + "/missing")
    assert {r.connection for r in cdn.log} == {1}


def test_signed_urls(cdn: CdnServer) -> None:
    signed = cdn.add_file("/jobs/out.safetensors", BODY, signed=True)
    assert "X-Amz-Signature=" in signed and "gen=1" in signed
    with client() as http:
        assert http.get(signed).content == BODY
        unsigned = http.get(cdn.url + "/jobs/out.safetensors")
        assert unsigned.status_code == 403 and b"AccessDenied" in unsigned.content
        tampered = http.get(signed.replace("gen=1", "gen=7"))
        assert tampered.status_code == 403 and b"SignatureDoesNotMatch" in tampered.content
        cdn.expire_signed_urls()
        expired = http.get(signed)
        assert expired.status_code == 403 and b"Request has expired" in expired.content
        assert http.get(cdn.signed_url("/jobs/out.safetensors")).content == BODY


def test_redirect_chain_across_origins(cdn: CdnServer) -> None:
    with CdnServer() as other:
        final = other.add_file("/final.bin", BODY)
        cdn.add_redirect("/r/a", "/r/b", status=301)
        start = cdn.add_redirect("/r/b", final, status=307)
        assert start.endswith("/r/b")
        with client(follow_redirects=True) as http:
            r = http.get(cdn.url + "/r/a")
        assert r.content == BODY and [h.status_code for h in r.history] == [301, 307]
        assert [rec.path for rec in other.log] == ["/final.bin"]


def test_throttle_and_ignore_ranges(cdn: CdnServer) -> None:
    url = cdn.add_file("/slow.bin", make_data(100_000))
    cdn.throttle_bps = 500_000
    started = time.monotonic()
    with client() as http:
        assert len(http.get(url).content) == 100_000
        assert time.monotonic() - started >= 0.15
        cdn.throttle_bps = None
        cdn.ignore_ranges = True
        r = http.get(url, headers={"Range": "bytes=0-9"})
        assert r.status_code == 200 and len(r.content) == 100_000


@pytest.mark.slow  # a 64 MiB body
def test_big_parallel_ranges_add_up_to_the_file(cdn: CdnServer) -> None:
    data = make_data(64 << 20, seed=5)
    url = cdn.add_file("/big.bin", data)
    part = len(data) // 8

    def fetch(i: int) -> bytes:
        end = len(data) - 1 if i == 7 else (i + 1) * part - 1
        with client() as http:
            r = http.get(url, headers={"Range": f"bytes={i * part}-{end}"})
            assert r.status_code == 206
            return r.content

    with ThreadPoolExecutor(8) as pool:
        assert b"".join(pool.map(fetch, range(8))) == data
    assert cdn.log.body_bytes() == len(data)


# ---------------------------------------------------------------------------------------------------------
# Faults
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "retry_after"), [(503, "1"), (429, "1"), (500, None), (408, None)]
)
def test_fault_status(cdn: CdnServer, status: int, retry_after: str | None) -> None:
    url = cdn.add_file("/f.bin", BODY)
    fault = cdn.faults.add(Fault.http_error(status, "try later", times=2, path_prefix="/f"))
    with client() as http:
        assert http.get(cdn.url + "/other").status_code == 404  # other paths are not affected
        for _ in range(2):
            r = http.get(url)
            assert (r.status_code, r.text) == (status, "try later")
            assert r.headers.get("Retry-After") == retry_after
        assert http.get(url).content == BODY
    assert fault.hits == 2 and cdn.faults.pending() == []
    assert [r.fault for r in cdn.log] == [None, "status", "status", None]


def test_fault_skip_lets_requests_through_first(cdn: CdnServer) -> None:
    url = cdn.add_file("/f.bin", BODY)
    cdn.faults.add(Fault.http_error(500, skip=2))
    with client() as http:
        assert [http.get(url).status_code for _ in range(4)] == [200, 200, 500, 200]


@pytest.mark.parametrize("rst", [False, True])
def test_fault_reset_mid_body(cdn: CdnServer, rst: bool) -> None:
    url = cdn.add_file("/f.bin", BODY)
    cdn.faults.add(Fault.reset(after_bytes=300, rst=rst))
    received = bytearray()
    with client() as http:
        with pytest.raises(httpx2.HTTPError), http.stream("GET", url) as r:
            assert r.headers["Content-Length"] == "1000"
            for piece in r.iter_raw():
                received += piece
        if not rst:  # a FIN delivers everything sent before it; a RST may discard buffered bytes
            assert bytes(received) == BODY[:300]
        # The client reconnects and resumes where it stopped.
        resumed = http.get(url, headers={"Range": f"bytes={len(received)}-"})
        assert bytes(received) + resumed.content == BODY
    first = cdn.log[0]
    assert (first.bytes_sent, first.complete, first.fault) == (300, False, "reset")
    assert cdn.log[1].range == f"bytes={len(received)}-"


def test_fault_stall_then_client_times_out(cdn: CdnServer) -> None:
    url = cdn.add_file("/f.bin", BODY)
    cdn.faults.add(Fault.stall(after_bytes=100))  # silent until the server stops
    received = bytearray()
    http = httpx2.Client(timeout=httpx2.Timeout(5, read=0.3))
    with http, pytest.raises(httpx2.ReadTimeout), http.stream("GET", url) as r:
        for piece in r.iter_raw():
            received += piece
    assert bytes(received) == BODY[:100]


def test_fault_stall_that_recovers(cdn: CdnServer) -> None:
    url = cdn.add_file("/f.bin", BODY)
    cdn.faults.add(Fault.stall(after_bytes=100, seconds=0.3, resume=True))
    started = time.monotonic()
    with client() as http:
        assert http.get(url).content == BODY
    assert time.monotonic() - started >= 0.3
    assert wait_until(lambda: cdn.log[0].complete)


def test_a_request_given_up_before_its_answer_counts_no_bytes_sent(cdn: CdnServer) -> None:
    # A client that stops waiting for an answer (its --timeout) and asks again has fetched nothing
    # twice: the bytes the server then fails to write into the abandoned socket are not "sent" (they
    # once made an overlapping-runs test see 5 MiB fetched twice on a busy machine).
    url = cdn.add_file("/f.bin", make_data(3 << 20, seed=9))
    gate = threading.Event()
    held = cdn.faults.add(Fault.call(lambda: gate.wait(HANG), path_prefix="/f"))
    with socket.create_connection(("127.0.0.1", cdn.port)) as sock:
        sock.sendall(f"GET {urlsplit(url).path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        assert wait_until(lambda: held.seen == 1)
    gate.set()  # the server answers a client that is gone
    assert wait_until(lambda: len(cdn.log) == 1 and cdn.log[0].error is not None)
    assert (cdn.log[0].status, cdn.log[0].bytes_sent, cdn.log[0].complete) == (200, 0, False)


def test_fault_full_body_answers_a_range_with_200(cdn: CdnServer) -> None:
    url = cdn.add_file("/f.bin", BODY)
    fault = cdn.faults.add(Fault.full_body())
    with client() as http:
        assert http.get(url).status_code == 200  # no Range: not what the fault waits for
        assert fault.hits == 0
        r = http.get(url, headers={"Range": "bytes=10-19"})
        assert (r.status_code, r.content, r.headers.get("Content-Range")) == (200, BODY, None)
        assert http.get(url, headers={"Range": "bytes=10-19"}).status_code == 206


def test_fault_signed_urls_expire_and_hub_reissues(tiny: HubServer) -> None:
    url = tiny.file_url("org/tiny", "model.safetensors")
    tiny.cdn.faults.add(Fault.expire_urls(skip=2, path_prefix="/blobs/"))
    with client() as http:
        location = http.head(url).headers["Location"]
        assert "gen=1" in location
        assert http.get(location, headers={"Range": "bytes=0-99"}).status_code == 206
        assert http.get(location, headers={"Range": "bytes=100-199"}).status_code == 206
        expired = http.get(location, headers={"Range": "bytes=200-"})
        assert expired.status_code == 403
        assert b"<Code>AccessDenied</Code><Message>Request has expired</Message>" in expired.content
        fresh = http.head(url).headers["Location"]  # re-resolve at the Hub
        assert "gen=2" in fresh
        assert http.get(fresh, headers={"Range": "bytes=200-"}).content == WEIGHTS[200:]


def test_fault_call_replaces_the_file_between_requests(tiny: HubServer) -> None:
    new_weights = make_data(7000, seed=6)
    fault = tiny.cdn.faults.add(
        Fault.call(lambda: tiny.replace_file("org/tiny", "model.safetensors", new_weights), skip=1)
    )
    url = tiny.file_url("org/tiny", "model.safetensors")
    with client() as http:
        first = http.head(url)
        location = first.headers["Location"]
        assert http.get(location, headers={"Range": "bytes=0-99"}).status_code == 206
        http.get(location, headers={"Range": "bytes=100-"})  # the file changes upstream now
        again = http.head(url)
    assert fault.hits == 1
    assert again.headers["X-Linked-Etag"] == f'"{hashlib.sha256(new_weights).hexdigest()}"'
    assert again.headers["X-Linked-Etag"] != first.headers["X-Linked-Etag"]
    assert again.headers["X-Repo-Commit"] != first.headers["X-Repo-Commit"]


def test_hub_faults_too(tiny: HubServer) -> None:
    tiny.faults.add(Fault.http_error(503, retry_after=0, path_prefix="/api/"))
    with client() as http:
        r = http.get(f"{tiny.url}/api/models/org/tiny")
        assert (r.status_code, r.headers["Retry-After"]) == (503, "0")
        assert http.get(f"{tiny.url}/api/models/org/tiny").json()["id"] == "org/tiny"


def test_stop_does_not_wait_for_stalled_or_idle_connections() -> None:
    server = CdnServer().start()
    url = server.add_file("/f.bin", BODY)
    idle = client()
    idle.get(url, headers={"Range": "bytes=0-0"})  # this connection stays open, idle
    server.faults.add(Fault.stall(after_bytes=10))
    errors: list[BaseException] = []

    def stalled_download() -> None:
        # its own timeout is far beyond HANG: only the server's stop can end this download in time
        try:
            with client(timeout=10 * HANG) as http, http.stream("GET", url) as r:
                for _ in r.iter_raw():
                    pass
        except httpx2.HTTPError as exc:
            errors.append(exc)

    worker = threading.Thread(target=stalled_download)
    worker.start()
    assert wait_until(lambda: len(server.log) == 2)
    server.stop()
    worker.join(timeout=HANG)
    assert not worker.is_alive() and errors
    idle.close()
    assert server.errors == []


def test_request_log_is_thread_safe_and_filterable() -> None:
    log = RequestLog()
    assert len(log) == 0 and log.records() == []
    with CdnServer() as server:
        url = server.add_file("/x/y.bin", BODY)
        with client(headers={"Authorization": "Bearer t"}) as http, ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda _: http.get(url), range(40)))
        assert len(server.log) == 40
        assert len(server.log.records(path_prefix="/x/", method="GET", status=200)) == 40
        assert server.log.body_bytes() == 40 * len(BODY)
        assert {r.authorization for r in server.log} == {"Bearer t"}
        server.log.clear()
        assert len(server.log) == 0


@pytest.mark.slow  # a 32 MiB body
def test_client_disconnects_are_quiet(cdn: CdnServer, capfd: pytest.CaptureFixture[str]) -> None:
    url = cdn.add_file("/big.bin", make_data(32 << 20, seed=7))
    for _ in range(3):
        with client() as http, http.stream("GET", url) as r:
            next(r.iter_raw())  # read a little, then hang up mid-body
    assert wait_until(lambda: len(cdn.log) == 3 and all(r.error for r in cdn.log))
    assert not any(r.complete for r in cdn.log)
    assert cdn.errors == []
    assert capfd.readouterr().err == ""


def test_paths_info_and_expanded_tree(tiny: HubServer) -> None:
    api = HfApi(endpoint=tiny.url)
    infos = api.get_paths_info("org/tiny", ["model.safetensors", "nested", "missing.txt", ODD_PATH])
    assert [(type(i).__name__, i.path) for i in infos] == [
        ("RepoFile", "model.safetensors"),
        ("RepoFolder", "nested"),
        ("RepoFile", ODD_PATH),
    ]
    weights = infos[0]
    assert (
        isinstance(weights, RepoFile) and weights.lfs is not None and weights.size == len(WEIGHTS)
    )
    expanded = [e for e in api.list_repo_tree("org/tiny", expand=True) if isinstance(e, RepoFile)]
    assert expanded and all(
        e.last_commit and e.last_commit.oid == tiny.repo("org/tiny").sha for e in expanded
    )
