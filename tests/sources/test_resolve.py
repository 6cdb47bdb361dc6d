"""Resolving catalog models against the loopback Hub with mdl's own Hub client (huggingface_hub's
requests).
"""

from __future__ import annotations

import hashlib
import time
from urllib.parse import quote

import pytest
from runfixtures import HANG
from servers import TOKEN, Fault, HubServer, closed_port, git_blob_sha1, make_data

from mdl.catalog.load import parse_catalog
from mdl.catalog.specs import FileSpec, ModelSpec
from mdl.errors import (
    AuthError,
    CatalogError,
    ExitCode,
    HubReplyError,
    IntegrityError,
    NetworkError,
    NotFoundError,
)
from mdl.sources.hub import Hub
from mdl.sources.resolve import (
    RemoteFile,
    ResolvedModel,
    resolve_model,
    resolve_offline,
    with_probe,
)
from mdl.store.layout import hub_source
from mdl.store.records import FileRecord, ModelRecord
from mdl.transfer.http import RetryPolicy

WEIGHTS = make_data(20_000, seed=1)
CONFIG = b'{"model_type": "bert"}\n'
VOCAB = b"[PAD]\n[UNK]\nhello\n"
README = b"# tiny\n"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def tiny(hub: HubServer) -> HubServer:
    hub.add_repo(
        "org/tiny",
        {
            "config.json": CONFIG,
            "model.safetensors": WEIGHTS,
            "nested/vocab.txt": VOCAB,
            "README.md": README,
            "flax_model.msgpack": b"msgpack",
        },
    )
    return hub


def snapshot(name: str = "tiny", repo: str = "org/tiny", **kwargs: object) -> ModelSpec:
    return ModelSpec(name=name, repo=repo, **kwargs)  # type: ignore[arg-type]


def files_model(*files: FileSpec, name: str = "z") -> ModelSpec:
    return ModelSpec(name=name, files=files)


def hub_file(repo: str, path: str, index: int = 0, **kwargs: object) -> FileSpec:
    return FileSpec(key_path=f"models.z.files[{index}]", repo=repo, path=path, **kwargs)  # type: ignore[arg-type]


def resolve(hub: HubServer, spec: ModelSpec, token: str | None = None) -> ResolvedModel:
    return resolve_model(spec, hub=Hub(hub.url, token), environ={})


def no_downloads(hub: HubServer) -> None:
    """Resolution never fetches file bodies: no GET on resolve URLs but of a first byte (what a
    HEAD would say, and where it redirects), nothing at all on the CDN."""
    assert hub.cdn.log.records() == []
    gets = hub.log.records(method="GET")
    assert [r for r in gets if "/resolve/" in r.url_path and not r.asks_metadata] == []


# -- snapshots
# -------------------------------------------------------------------------------------------


def test_snapshot_pins_every_file_to_one_commit(tiny: HubServer) -> None:
    sha = tiny.repo("org/tiny").sha
    model = resolve(tiny, snapshot())
    assert (model.name, model.revision, model.commit) == ("tiny", "main", sha)
    by_path = {f.path: f for f in model.files}
    assert list(by_path) == sorted(by_path)
    assert set(by_path) == {
        "README.md",
        "config.json",
        "flax_model.msgpack",
        "model.safetensors",
        "nested/vocab.txt",
    }
    for f in model.files:
        assert f.commit == sha
        assert f.url == tiny.file_url("org/tiny", f.path, revision=sha)
        assert f"/resolve/{sha}/" in f.url
        assert f.source == f"hf://org/tiny@{sha}/{f.path}"
        assert f.hub is True
        assert f.model == "tiny"
    weights = by_path["model.safetensors"]
    assert (weights.size, weights.sha256, weights.git_oid) == (len(WEIGHTS), sha256(WEIGHTS), None)
    config = by_path["config.json"]
    assert (config.size, config.sha256, config.git_oid) == (
        len(CONFIG),
        None,
        git_blob_sha1(CONFIG),
    )
    assert by_path["nested/vocab.txt"].git_oid == git_blob_sha1(VOCAB)
    no_downloads(tiny)


def test_snapshot_of_a_branch_or_tag_pins_its_commit(tiny: HubServer) -> None:
    first = tiny.repo("org/tiny").sha
    tiny.create_tag("org/tiny", "v1")
    tiny.replace_file("org/tiny", "config.json", b"{}")
    second = tiny.repo("org/tiny").sha
    old = resolve(tiny, snapshot(revision="v1"))
    new = resolve(tiny, snapshot())
    assert old.commit == first != second == new.commit
    assert {f.path: f.git_oid for f in old.files}["config.json"] == git_blob_sha1(CONFIG)
    assert {f.path: f.git_oid for f in new.files}["config.json"] == git_blob_sha1(b"{}")
    assert all(f"/resolve/{first}/" in f.url for f in old.files)


def test_snapshot_revision_by_commit_sha(tiny: HubServer) -> None:
    sha = tiny.repo("org/tiny").sha
    tiny.replace_file("org/tiny", "config.json", b"{}")
    model = resolve(tiny, snapshot(revision=sha))
    assert model.commit == sha


@pytest.mark.parametrize(
    ("include", "exclude", "expected"),
    [
        (("*.json", "*.safetensors"), (), {"config.json", "model.safetensors"}),
        ((), ("*.msgpack", "*.md"), {"config.json", "model.safetensors", "nested/vocab.txt"}),
        (("*.json", "*.txt", "*.msgpack"), ("*.msgpack",), {"config.json", "nested/vocab.txt"}),
        (("nested/*",), (), {"nested/vocab.txt"}),
    ],
)
def test_snapshot_include_exclude(
    tiny: HubServer, include: tuple[str, ...], exclude: tuple[str, ...], expected: set[str]
) -> None:
    model = resolve(tiny, snapshot(include=include, exclude=exclude))
    assert {f.path for f in model.files} == expected


def test_snapshot_filter_matching_nothing_is_not_found(tiny: HubServer) -> None:
    with pytest.raises(
        NotFoundError, match=r"no files in org/tiny@main match include = \[\*\.gguf\]"
    ) as info:
        resolve(tiny, snapshot(include=("*.gguf",)))
    assert info.value.exit_code == ExitCode.NOT_FOUND


@pytest.mark.parametrize(("repo_type", "prefix"), [("dataset", "datasets/"), ("space", "spaces/")])
def test_datasets_and_spaces(hub: HubServer, repo_type: str, prefix: str) -> None:
    data = make_data(3000, seed=2)
    hub.add_repo(
        "org/thing", {"data/train.parquet": data, "app.py": b"print()\n"}, repo_type=repo_type
    )  # type: ignore[arg-type]
    sha = hub.repo("org/thing", repo_type).sha  # type: ignore[arg-type]
    model = resolve(hub, snapshot(name="t", repo="org/thing", repo_type=repo_type))
    by_path = {f.path: f for f in model.files}
    parquet = by_path["data/train.parquet"]
    assert parquet.url == f"{hub.url}/{prefix}org/thing/resolve/{sha}/data/train.parquet"
    assert parquet.source == f"hf://{prefix}org/thing@{sha}/data/train.parquet"
    assert parquet.sha256 == sha256(data)
    assert by_path["app.py"].git_oid == git_blob_sha1(b"print()\n")


@pytest.mark.parametrize("evil", ["../evil", "../../etc/cron.d/x", "a/../../x"])
def test_listing_with_an_unsafe_path_is_refused(hub: HubServer, evil: str) -> None:
    hub.add_repo("org/evil", {"ok.txt": b"ok", evil: b"pwned"}, allow_unsafe_paths=True)
    # A listing name is server bytes: refused like any bad reply (exit 5), by the one name rule
    # (item 13).
    with pytest.raises(HubReplyError) as info:
        resolve(hub, snapshot(name="e", repo="org/evil"))
    assert info.value.exit_code == ExitCode.NETWORK == 5
    assert "e: the listing of org/evil" in info.value.message
    assert f"'{evil}'" in info.value.message
    assert hub.cdn.log.records() == []


def test_odd_file_names_are_quoted_in_urls(hub: HubServer) -> None:
    name = "sub dir/ünï #1.txt"
    hub.add_repo("org/odd", {name: b"odd"})
    (f,) = resolve(hub, snapshot(name="o", repo="org/odd")).files
    assert f.path == name
    assert f.url.endswith("/" + quote(name))


# -- explicit files
# ----------------------------------------------------------------------------------------


def test_explicit_files_use_file_metadata(tiny: HubServer) -> None:
    sha = tiny.repo("org/tiny").sha
    spec = files_model(
        hub_file("org/tiny", "model.safetensors", 0, save_as="vae/ae.safetensors"),
        hub_file("org/tiny", "config.json", 1),
    )
    model = resolve(tiny, spec)
    weights, config = model.files
    assert model.commit == sha
    # the CDN URL its resolve redirected to: where the download asks, the Hub not asked again
    assert weights.located is not None
    assert weights.located.startswith(f"{tiny.cdn.url}/blobs/{sha256(WEIGHTS)}?")
    assert config.located is None  # answered by the Hub itself: the download asks it
    assert weights._replace(located=None) == RemoteFile(
        model="z",
        path="vae/ae.safetensors",
        url=tiny.file_url("org/tiny", "model.safetensors", revision=sha),
        size=len(WEIGHTS),
        sha256=sha256(WEIGHTS),
        git_oid=None,
        commit=sha,
        source=f"hf://org/tiny@{sha}/model.safetensors",
        hub=True,
        revision="main",
        repo="org/tiny",
    )
    assert (config.path, config.size, config.sha256, config.git_oid) == (
        "config.json",
        len(CONFIG),
        None,
        git_blob_sha1(CONFIG),
    )
    # one ask each, of the first byte (the weights' redirect carries what a HEAD would): no HEAD
    asked = tiny.log.records(path_prefix="/org/tiny/resolve/")
    assert [(r.method, r.range, r.status) for r in asked] == [
        ("GET", "bytes=0-0", 302),
        ("GET", "bytes=0-0", 206),
    ]
    no_downloads(tiny)


def test_explicit_file_at_a_branch_is_pinned_to_its_commit(tiny: HubServer) -> None:
    sha = tiny.repo("org/tiny").sha
    (f,) = resolve(tiny, files_model(hub_file("org/tiny", "config.json", revision="main"))).files
    assert f.commit == sha
    assert f"/resolve/{sha}/config.json" in f.url


def test_files_from_several_repos_have_no_single_commit(tiny: HubServer) -> None:
    tiny.add_repo("org/other", {"other.gguf": make_data(100, seed=3)})
    model = resolve(
        tiny,
        files_model(hub_file("org/tiny", "config.json", 0), hub_file("org/other", "other.gguf", 1)),
    )
    assert model.commit is None
    assert [f.commit for f in model.files] == [
        tiny.repo("org/tiny").sha,
        tiny.repo("org/other").sha,
    ]


def test_dataset_file(hub: HubServer) -> None:
    data = make_data(2000, seed=4)
    hub.add_repo("org/ds", {"train.parquet": data}, repo_type="dataset")
    (f,) = resolve(hub, files_model(hub_file("org/ds", "train.parquet", repo_type="dataset"))).files
    assert "/datasets/org/ds/resolve/" in f.url
    assert f.source.startswith("hf://datasets/org/ds@")
    assert f.sha256 == sha256(data)


def test_catalog_sha256_agreeing_is_kept(tiny: HubServer) -> None:
    (f,) = resolve(
        tiny, files_model(hub_file("org/tiny", "model.safetensors", sha256=sha256(WEIGHTS)))
    ).files
    assert f.sha256 == sha256(WEIGHTS)


def test_catalog_sha256_disagreeing_with_the_hub_fails_before_any_download(tiny: HubServer) -> None:
    wrong = "ab" * 32
    with pytest.raises(IntegrityError) as info:
        resolve(tiny, files_model(hub_file("org/tiny", "model.safetensors", sha256=wrong)))
    assert info.value.exit_code == ExitCode.INTEGRITY == 6
    assert wrong in info.value.message
    assert sha256(WEIGHTS) in info.value.message
    assert "models.z.files[0]" in (info.value.hint or "")
    no_downloads(tiny)


def test_catalog_size_disagreeing_with_the_hub(tiny: HubServer) -> None:
    with pytest.raises(IntegrityError, match=f"expects 5 bytes but org/tiny has {len(WEIGHTS)}"):
        resolve(tiny, files_model(hub_file("org/tiny", "model.safetensors", size=5)))
    no_downloads(tiny)


def test_catalog_sha256_for_a_small_file_is_kept_alongside_the_git_oid(tiny: HubServer) -> None:
    (f,) = resolve(
        tiny, files_model(hub_file("org/tiny", "config.json", sha256=sha256(CONFIG)))
    ).files
    assert (f.sha256, f.git_oid) == (sha256(CONFIG), git_blob_sha1(CONFIG))


def test_direct_url_files_need_no_hub() -> None:
    catalog = parse_catalog(f"""
        [[models.lora.files]]
        url = "https://cdn.example/l/style.safetensors?X-Amz-Signature=s3cr3t&x=1"
        sha256 = "{"c" * 64}"
        size = 10
        headers = {{ Authorization = "Bearer ${{CIVITAI_TOKEN}}" }}
        """)
    (spec,) = catalog.models
    model = resolve_model(spec, hub=None, environ={"CIVITAI_TOKEN": "tok-123"})
    (f,) = model.files
    assert f.path == "style.safetensors"
    assert f.url == "https://cdn.example/l/style.safetensors?X-Amz-Signature=s3cr3t&x=1"
    assert f.source == "https://cdn.example/l/style.safetensors?REDACTED"
    assert (f.size, f.sha256, f.hub) == (10, "c" * 64, False)
    assert f.headers == (("Authorization", "Bearer tok-123"),)
    assert model.commit is None
    with pytest.raises(CatalogError, match="CIVITAI_TOKEN"):
        resolve_model(spec, hub=None, environ={})


# -- failures
# ----------------------------------------------------------------------------------------------


def test_missing_repo_is_not_found(tiny: HubServer) -> None:
    for spec in (snapshot(repo="org/nope"), files_model(hub_file("org/nope", "config.json"))):
        with pytest.raises(NotFoundError, match="org/nope") as info:
            resolve(tiny, spec)
        assert info.value.exit_code == ExitCode.NOT_FOUND == 4


def test_missing_repo_answered_with_401_is_still_not_found(tiny: HubServer) -> None:
    tiny.missing_repo_status = 401  # what the real Hub tells anonymous callers
    with pytest.raises(NotFoundError, match="repository org/nope not found") as info:
        resolve(tiny, snapshot(repo="org/nope"))
    assert "HF_TOKEN" in (info.value.hint or "")


def test_missing_revision_is_not_found(tiny: HubServer) -> None:
    for spec in (
        snapshot(revision="v9"),
        files_model(hub_file("org/tiny", "config.json", revision="v9")),
    ):
        with pytest.raises(NotFoundError, match="'v9'") as info:
            resolve(tiny, spec)
        assert info.value.exit_code == 4


def test_missing_file_is_not_found(tiny: HubServer) -> None:
    with pytest.raises(NotFoundError, match=r"nope\.bin not found in org/tiny") as info:
        resolve(tiny, files_model(hub_file("org/tiny", "nope.bin")))
    assert info.value.exit_code == 4


def test_gated_file_without_token_is_an_auth_error(hub: HubServer) -> None:
    hub.add_repo("org/gated", {"model.gguf": WEIGHTS}, gated="manual")
    spec = files_model(hub_file("org/gated", "model.gguf"))
    with pytest.raises(AuthError, match="org/gated is gated") as info:
        resolve(hub, spec)
    assert info.value.exit_code == ExitCode.AUTH == 3
    assert "HF_TOKEN" in (info.value.hint or "")
    (f,) = resolve(hub, spec, token=TOKEN).files
    assert f.sha256 == sha256(WEIGHTS)
    assert hub.cdn.log.records() == []


def test_gated_snapshot_with_gated_api(hub: HubServer) -> None:
    hub.add_repo("org/gated", {"model.gguf": WEIGHTS}, gated="auto", gate_api=True)
    with pytest.raises(AuthError) as info:
        resolve(hub, snapshot(name="g", repo="org/gated"))
    assert info.value.exit_code == 3
    assert [
        f.path for f in resolve(hub, snapshot(name="g", repo="org/gated"), token=TOKEN).files
    ] == ["model.gguf"]


def test_gated_repo_not_granted_to_this_token(hub: HubServer) -> None:
    hub.valid_tokens.add("hf_othervalidtoken123")
    hub.add_repo("org/gated", {"model.gguf": WEIGHTS}, gated="manual", granted_tokens=[TOKEN])
    with pytest.raises(AuthError) as info:
        resolve(
            hub, files_model(hub_file("org/gated", "model.gguf")), token="hf_othervalidtoken123"
        )
    assert info.value.exit_code == 3


def test_private_repo_needs_the_token(hub: HubServer) -> None:
    hub.add_repo("org/private", {"config.json": CONFIG}, private=True)
    with pytest.raises(NotFoundError) as info:
        resolve(hub, snapshot(name="p", repo="org/private"))
    assert "HF_TOKEN" in (info.value.hint or "")
    assert [
        f.path for f in resolve(hub, snapshot(name="p", repo="org/private"), token=TOKEN).files
    ] == ["config.json"]


def test_invalid_token_is_an_auth_error(tiny: HubServer) -> None:
    with pytest.raises(AuthError) as info:
        resolve(tiny, snapshot(), token="hf_notavalidtoken0000")
    assert info.value.exit_code == 3
    assert "hf_notavalidtoken0000" not in info.value.message


@pytest.mark.slow
def test_unreachable_endpoint_is_a_network_error_quickly() -> None:
    endpoint = f"http://127.0.0.1:{closed_port()}"
    for spec in (snapshot(), files_model(hub_file("org/tiny", "config.json"))):
        started = time.monotonic()
        with pytest.raises(NetworkError) as info:
            resolve_model(spec, hub=Hub(endpoint, None), environ={})
        assert time.monotonic() - started < HANG  # a safety net, not a measure of speed
        assert info.value.exit_code == ExitCode.NETWORK == 5
        assert endpoint in info.value.message


def test_hub_api_unexpected_status_is_a_network_error(tiny: HubServer) -> None:
    tiny.faults.add(Fault.http_error(400, body="bad request", times=None, path_prefix="/api/"))
    with pytest.raises(NetworkError, match="HTTP 400") as info:
        resolve(tiny, snapshot())
    assert info.value.exit_code == 5


def test_hub_api_503_is_retried_honouring_retry_after(tiny: HubServer) -> None:
    tiny.faults.add(Fault.http_error(503, retry_after=3, path_prefix="/api/"))
    sleeps: list[float] = []
    hub = Hub(tiny.url, None, retry=RetryPolicy(retries=2, sleep=sleeps.append))
    model = resolve_model(snapshot(), hub=hub, environ={})
    assert model.commit == tiny.repo("org/tiny").sha
    assert sleeps == [3.0]


def test_hub_api_5xx_outlasting_the_retries(tiny: HubServer) -> None:
    tiny.faults.add(Fault.http_error(502, times=None, path_prefix="/org/tiny/resolve/"))
    hub = Hub(tiny.url, None, retry=RetryPolicy(retries=1, sleep=lambda s: None))
    with pytest.raises(NetworkError, match=r"HTTP 502 .*gave up after 2 tries") as info:
        resolve_model(files_model(hub_file("org/tiny", "config.json")), hub=hub, environ={})
    assert info.value.exit_code == 5
    assert len(tiny.log.records(method="GET", path_prefix="/org/tiny/resolve/")) == 2


# -- offline
# -----------------------------------------------------------------------------------------------


def record_for(name: str, *paths: str) -> ModelRecord:
    files = {
        p: FileRecord(
            path=p,
            size=3,
            sha256="0" * 64,
            mtime_ns=1,
            source=f"hf://org/x@c/{p}",
            git_oid="9" * 40,
            commit="c",
        )
        for p in paths
    }
    return ModelRecord(name=name, revision="main", commit="c" * 40, files=files)


def test_offline_resolution_comes_from_the_record() -> None:
    record = record_for("tiny", "config.json", "model.safetensors")
    model = resolve_model(snapshot(), hub=None, environ={}, offline=True, record=record)
    assert (model.revision, model.commit) == ("main", "c" * 40)
    assert sorted(f.path for f in model.files) == ["config.json", "model.safetensors"]
    f = next(f for f in model.files if f.path == "config.json")
    assert (f.size, f.sha256, f.git_oid, f.source, f.url, f.hub) == (
        3,
        "0" * 64,
        "9" * 40,
        "hf://org/x@c/config.json",
        "",
        False,
    )


def test_offline_without_a_record_is_a_network_error() -> None:
    for record in (None, ModelRecord(name="tiny")):
        with pytest.raises(NetworkError, match="HF_HUB_OFFLINE") as info:
            resolve_model(snapshot(), hub=None, environ={}, offline=True, record=record)
        assert info.value.exit_code == 5


def test_offline_resolution_still_lists_catalog_files_never_fetched() -> None:
    spec = files_model(
        FileSpec(key_path="models.z.files[0]", url="https://cdn.example/a.bin"),
        FileSpec(key_path="models.z.files[1]", url="https://cdn.example/b.bin"),
    )
    model = resolve_offline(spec, record_for("z", "a.bin"))
    # b.bin was added to the catalog after the last pull: it must show up (and then fail offline),
    # or `pull` would report exit 0 for a model whose file is missing.
    assert sorted(f.path for f in model.files) == ["a.bin", "b.bin"]


# -- helpers
# -----------------------------------------------------------------------------------------------


def test_hub_source() -> None:
    assert hub_source("org/m", "model", "abc", "a/b.bin") == "hf://org/m@abc/a/b.bin"
    assert hub_source("org/d", "dataset", None, "x") == "hf://datasets/org/d/x"
    assert hub_source("org/s", "space", "c", "app.py") == "hf://spaces/org/s@c/app.py"


def test_with_probe_fills_only_what_is_missing() -> None:
    bare = RemoteFile(model="m", path="p", url="u")
    probed = RemoteFile(model="m", path="p", url="u", size=5, etag='"e"', size_pinned=False)
    # a probed size is advisory, not an integrity pin
    assert with_probe(bare, size=5, etag='"e"') == probed
    known = RemoteFile(model="m", path="p", url="u", size=7, etag='"k"')
    assert with_probe(known, size=5, etag='"e"') == known
