"""The registry push primitives (``mdl.sources.ocipush``) against a real distribution registry:
a blob sent once (HEAD first), in chunks, mounted across repositories, a manifest by tag and by
digest, and a token registry's push scope."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest
from registry import MANIFEST, NEEDS_REGISTRY, DistributionRegistry, distribution, registry_gate
from registrytokens import token_service
from servers import make_data

from mdl.paths import parse_oci_ref
from mdl.redact import Secrets
from mdl.sources.oci import Registry
from mdl.sources.ocipush import MOUNTED, THERE, UPLOADED, Blob, RegistryWriter
from mdl.transfer.http import make_client

pytestmark = NEEDS_REGISTRY


@pytest.fixture
def client() -> Iterator[httpx2.Client]:
    with make_client(pool_size=4, environ={}) as made:
        yield made


def writer(client: httpx2.Client, reference: str, *, chunk: int = 1 << 20) -> RegistryWriter:
    registry = Registry(client, environ={}, secrets=Secrets())
    return RegistryWriter(registry, parse_oci_ref(reference), chunk_size=chunk)


def test_a_file_goes_up_in_chunks_once_and_mounts_elsewhere(
    plain_registry: DistributionRegistry, client: httpx2.Client, tmp_path: Path
) -> None:
    data = make_data((3 << 20) + 12345, seed=7)
    (tmp_path / "w.bin").write_bytes(data)
    blob = Blob(Blob.of(data).digest, len(data), path=tmp_path / "w.bin")
    told: list[int] = []
    push = writer(client, f"oci://{plain_registry.host}/push/a")
    assert push.push_blob(blob, what="w.bin", sent=told.append) == UPLOADED
    assert sum(told) == len(data) and max(told) <= 1 << 20
    assert plain_registry.blob_file(blob.digest).read_bytes() == data
    assert push.push_blob(blob, what="w.bin") == THERE
    other = writer(client, f"oci://{plain_registry.host}/push/b")
    assert other.push_blob(blob, what="w.bin", mount_from="push/a") == MOUNTED
    got = httpx2.get(f"{plain_registry.url}/v2/push/b/blobs/{blob.digest}")
    assert got.content == data


def test_a_manifest_by_tag_and_by_digest(
    plain_registry: DistributionRegistry, client: httpx2.Client
) -> None:
    push = writer(client, f"oci://{plain_registry.host}/push/m")
    config = Blob.of(b"{}")
    assert push.push_blob(config, what="config") == UPLOADED
    body = (
        b'{"schemaVersion":2,"mediaType":"%s","config":{"mediaType":"application/vnd.oci.empty.v1+json",'
        b'"digest":"%s","size":2},"layers":[]}' % (MANIFEST.encode(), config.digest.encode())
    )
    digest = push.push_manifest(body, media_type=MANIFEST, what="manifest", tag="v1")
    assert push.push_manifest(body, media_type=MANIFEST, what="manifest") == digest
    got = httpx2.get(f"{plain_registry.url}/v2/push/m/manifests/v1", headers={"Accept": MANIFEST})
    assert got.content == body
    assert got.headers["Docker-Content-Digest"] == digest
    by_digest = f"{plain_registry.url}/v2/push/m/manifests/{digest}"
    assert httpx2.get(by_digest, headers={"Accept": MANIFEST}).content == body


def test_a_token_registry_gives_push_when_asked(client: httpx2.Client, tmp_path: Path) -> None:
    with token_service() as tokens, distribution(tmp_path, tokens=tokens) as registry:
        push = writer(client, f"oci://{registry.host}/team/x")
        blob = Blob.of(make_data(2_500_000, seed=3))
        assert push.push_blob(blob, what="x") == UPLOADED
        other = writer(client, f"oci://{registry.host}/team/y")
        assert other.push_blob(blob, what="x", mount_from="team/x") == MOUNTED
        scopes = {scope for scope, _ in tokens.asked}
        actions = {tuple(sorted(s.rpartition(":")[2].split(","))) for s in scopes if "/x:" in s}
        assert ("pull", "push") in actions  # the push's scope (in the registry's own order)
        assert "repository:team/x:pull" in scopes  # the mount's source, asked beside its target


@pytest.mark.parametrize(
    ("said", "held"),
    [("0-262143", 262144), ("bytes=0-9", 10), ("0-0", None), ("", None), ("5-9", None)],
)
def test_the_registrys_range_says_what_a_session_holds(said: str, held: int | None) -> None:
    from mdl.sources.ocipush import _end, _Reply

    reply = _Reply(204, httpx2.Headers({"Range": said} if said else {}), "http://r/")
    assert _end(reply) == held  # "0-0" is none or one byte (distribution says both): a new start


def test_a_files_media_type_is_modelpacks_for_what_it_is() -> None:
    from mdl.upload.ocipublish import CODE, DOC, WEIGHT, WEIGHT_CONFIG, media_type_of

    assert media_type_of("sub/model-00001-of-00002.safetensors") == WEIGHT
    assert media_type_of("model.gguf") == WEIGHT
    assert media_type_of("LICENSE") == DOC
    assert media_type_of("docs/usage.md") == DOC
    assert media_type_of("modeling_tiny.py") == CODE
    assert media_type_of("config.json") == WEIGHT_CONFIG
    assert media_type_of("tokenizer.model") == WEIGHT_CONFIG


@pytest.mark.parametrize(
    ("url", "location", "named"),
    [
        ("https://r/v2/a/blobs/uploads/", "/v2/a/blobs/uploads/u?_state=1", "https://r/v2/a/"),
        ("http://127.0.0.1:5/v2/a/", "http://127.0.0.1:5/next", "http://127.0.0.1:5/next"),
        ("https://r/v2/a/", "http://r/next", None),  # never https to http
        ("https://r/v2/a/", "file:///etc/passwd", None),
        ("https://r/v2/a/", None, None),
    ],
)
def test_an_upload_location_is_http_and_never_a_downgrade(
    url: str, location: str | None, named: str | None
) -> None:
    from mdl.errors import RegistryReplyError
    from mdl.sources.ocipush import _Reply

    reply = _Reply(202, httpx2.Headers({"Location": location} if location else {}), url)
    if named is None:
        with pytest.raises(RegistryReplyError, match="upload location"):
            reply.location(what="w.bin")
    else:
        assert reply.location(what="w.bin").startswith(named)


def test_bytes_sent_again_after_a_cut_are_told_once(
    plain_registry: DistributionRegistry, client: httpx2.Client
) -> None:
    data = make_data((1 << 20) + 5, seed=11)
    blob = Blob.of(data)
    told: list[int] = []
    with registry_gate(plain_registry.url) as gate:
        gate.cut_patch_after, gate.patches_before_cut = 200_000, 1  # the second chunk's PATCH
        push = writer(client, f"oci://{gate.url.removeprefix('http://')}/push/cut", chunk=300_000)
        assert push.push_blob(blob, what="w.bin", sent=told.append) == UPLOADED
        ranges = [s.range for s in gate.seen if s.method == "PATCH"]
    assert ranges == ["0-299999", "300000-599999", "300000-599999", "600000-899999"]
    assert sum(told) == len(data)  # the 200 kB sent before the cut are not told twice
    got = httpx2.get(f"{plain_registry.url}/v2/push/cut/blobs/{blob.digest}")
    assert got.content == data


@pytest.mark.parametrize("cut", [False, True], ids=["after-a-chunk", "on-resume"])
def test_a_registry_that_misstates_what_an_upload_holds_is_refused_not_sent_to_forever(
    cut: bool, tmp_path: Path
) -> None:
    """After a chunk the registry must hold what was sent; on a resume, no more than the blob: a
    registry saying it holds 100 bytes after every chunk (or 10 past the blob) is exit 5, named,
    after one request of each kind, not a loop sending the same chunk again."""
    from mdl.errors import RegistryReplyError

    data = make_data((2 << 20) + 7, seed=11)
    (tmp_path / "w.bin").write_bytes(data)
    blob = Blob(Blob.of(data).digest, len(data), path=tmp_path / "w.bin")
    asked: list[str] = []
    upload = "http://127.0.0.1:9/v2/push/h/blobs/uploads/u1"

    def answer(request: httpx2.Request) -> httpx2.Response:
        asked.append(request.method)
        if request.method == "HEAD":
            return httpx2.Response(404)
        if request.method == "PATCH" and cut:
            request.read()
            raise httpx2.ReadError("cut", request=request)
        held = f"0-{len(data) + 9}" if cut else "0-99"
        return httpx2.Response(202 if request.method != "GET" else 204,
                               headers={"Location": upload, "Range": held})  # fmt: skip

    with make_client(pool_size=1, environ={}, transport=httpx2.MockTransport(answer)) as client:
        push = writer(client, "oci://127.0.0.1:9/push/h")
        with pytest.raises(RegistryReplyError) as caught:
            push.push_blob(blob, what="w.bin")
    message = caught.value.message
    assert message.startswith("w.bin: the registry says the upload holds"), message
    if cut:
        assert f"holds {len(data) + 10} bytes of a {len(data)}-byte blob" in message, message
    else:
        assert "holds 100 bytes after a chunk that ended at byte" in message, message
    assert asked.count("PATCH") == 1 and asked.count("POST") == 1, asked
