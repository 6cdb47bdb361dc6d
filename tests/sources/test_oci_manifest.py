"""A registry's manifests, indexes and references are untrusted input: whatever the bytes, parsing
ends in files whose paths are paths under the model folder, sizes and sha256 as the descriptors say,
or a RegistryReplyError (exit 5) naming what is wrong; never another exception."""

from __future__ import annotations

import json
from typing import Any

import httpx2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from profiles import examples

from mdl.errors import ExitCode, IntegrityError, RegistryReplyError, UsageError
from mdl.paths import parse_oci_ref, parse_oci_source, path_problem
from mdl.redact import Secrets
from mdl.sources.oci import Registry
from mdl.sources.ocimanifest import (
    MAX_MANIFEST_BYTES,
    MODELPACK_PATH,
    ORAS_UNPACK,
    TITLE,
    layer_files,
    parse_manifest,
    pick_artifact,
)
from mdl.transfer.http import make_client

FUZZ = settings(
    max_examples=examples(300), deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
MANIFEST = "application/vnd.oci.image.manifest.v1+json"
HEX = "ab" * 32


def layer(path: str, *, key: str = MODELPACK_PATH, **over: Any) -> dict[str, Any]:
    return {
        "mediaType": "application/vnd.cncf.model.weight.v1.raw",
        "digest": f"sha256:{HEX}",
        "size": 5,
        "annotations": {key: path},
        **over,
    }


def manifest(*layers: dict[str, Any], **over: Any) -> bytes:
    doc = {"schemaVersion": 2, "mediaType": MANIFEST, "layers": list(layers), **over}
    return json.dumps(doc).encode()


def files_of(raw: bytes) -> list[tuple[str, int, str]]:
    parsed = parse_manifest(raw, content_type=None, what="m")
    return [(f.path, f.size, f.sha256) for f in layer_files(parsed, what="m")]


def test_a_manifest_names_its_files() -> None:
    raw = manifest(layer("a/b.bin"), layer("c.json", key=TITLE, digest=f"sha256:{'cd' * 32}"))
    assert files_of(raw) == [("a/b.bin", 5, HEX), ("c.json", 5, "cd" * 32)]


@pytest.mark.parametrize(
    ("raw", "said"),
    [
        (b"\xff", "JSON ("),
        (b"[]", "not a JSON object"),
        (manifest(schemaVersion=1), "schemaVersion is not 2"),
        (manifest(schemaVersion=True), "schemaVersion is not 2"),
        (manifest(mediaType="text/html"), "no OCI manifest or index"),
        (manifest(layer("x", size=-1)), "out of range"),
        (manifest(layer("x", size=True)), "out of range"),
        (manifest(layer("x", size=1.5)), "out of range"),
        (manifest(layer("x", digest="sha512:" + "ab" * 64)), "not a sha256 digest"),
        (manifest(layer("x", digest="sha256:" + "AB" * 32)), "not 64 lowercase hex"),
        (manifest(layer("x", annotations={MODELPACK_PATH: 1})), "annotations are not strings"),
        (manifest(layer("../x")), "climbs out"),
        (manifest(layer("/x")), "absolute"),
        (manifest(layer("a\\b")), "backslash"),
        (manifest(layer("x"), layer("x")), "twice"),
        (manifest(layer("x"), layer("x/y")), "as the folder of"),
        (manifest({"mediaType": "a", "digest": f"sha256:{HEX}", "size": 1}), "names no file path"),
        (manifest(layer("w", mediaType="application/vnd.cncf.model.weight.v1.tar")), "tar"),
        (
            manifest(layer("w", key=TITLE, mediaType="application/vnd.cncf.model.weight.v1.tar")),
            "tar",
        ),
        (manifest(layer("w", annotations={MODELPACK_PATH: "w", ORAS_UNPACK: "true"})), "tar"),
        (
            manifest(
                layer(
                    "w", key=TITLE, annotations={TITLE: "w", "io.deis.oras.content.unpack": "true"}
                )
            ),
            "tar",
        ),
        (b"[" * 100_000, "nested too deeply"),
        (b'{"schemaVersion": 2, "n": ' + b"9" * 5000 + b"}", "JSON ("),
        (b" " * (MAX_MANIFEST_BYTES + 1), "larger than 4 MiB"),
    ],
)
def test_a_bad_manifest_is_refused_naming_why(raw: bytes, said: str) -> None:
    with pytest.raises(RegistryReplyError) as caught:
        files_of(raw)
    assert said in caught.value.message
    assert caught.value.exit_code == ExitCode.NETWORK


@FUZZ
@given(
    media_type=st.sampled_from(
        [
            f"application/vnd.cncf.model.{kind}.v1.{packing}"
            for kind in ("weight", "weight.config", "doc", "code", "dataset")
            for packing in ("tar", "tar+gzip", "tar+zstd", "raw")
        ]
        + ["application/vnd.oci.image.layer.v1.tar", "application/octet-stream"]
    ),
    keys=st.sampled_from([(MODELPACK_PATH,), (TITLE,), (MODELPACK_PATH, TITLE)]),
    unpack=st.sampled_from([None, "true", "false"]),
    upper=st.booleans(),
)
def test_a_tar_layer_is_refused_whatever_annotation_names_it(
    media_type: str, keys: tuple[str, ...], unpack: str | None, upper: bool
) -> None:
    annotations = dict.fromkeys(keys, "w.bin") | ({ORAS_UNPACK: unpack} if unpack else {})
    raw = manifest(layer("w.bin", mediaType=media_type.upper() if upper else media_type,
                         annotations=annotations))  # fmt: skip
    # a tar: ModelPack's tar media types, any tar one under ModelPack's path, oras's unpack;
    # oras's tar media type under its title alone is what `oras push FILE` writes for a file
    modelpack = media_type.startswith("application/vnd.cncf.") or MODELPACK_PATH in keys
    if unpack == "true" or (modelpack and ".tar" in media_type):
        with pytest.raises(RegistryReplyError, match="is a tar archive"):
            files_of(raw)
    else:
        assert files_of(raw) == [("w.bin", 5, HEX)]


def test_an_index_never_picks_a_platform_image() -> None:
    image = {"mediaType": MANIFEST, "digest": f"sha256:{HEX}", "size": 9,
             "platform": {"os": "linux", "architecture": "amd64"}}  # fmt: skip
    art = {**image, "digest": f"sha256:{'cd' * 32}", "artifactType": "application/x-model"}
    del art["platform"]
    index = "application/vnd.oci.image.index.v1+json"

    def parsed(*entries: dict[str, Any]) -> Any:
        raw = json.dumps({"schemaVersion": 2, "mediaType": index, "manifests": list(entries)})
        return parse_manifest(raw.encode(), content_type=None, what="i")

    assert pick_artifact(parsed(image, art), what="i").digest == art["digest"]
    with pytest.raises(RegistryReplyError, match="names no model artifact"):
        pick_artifact(parsed(image), what="i")
    with pytest.raises(RegistryReplyError, match="names 2 model artifacts"):
        pick_artifact(parsed(art, {**art, "digest": f"sha256:{'ef' * 32}"}), what="i")
    with pytest.raises(RegistryReplyError, match="whose model artifact is another index"):
        pick_artifact(parsed({**art, "mediaType": index}), what="i")
    modelpack = {**art, "digest": f"sha256:{'ef' * 32}",
                 "artifactType": "application/vnd.cncf.model.manifest.v1+json"}  # fmt: skip
    assert pick_artifact(parsed(art, modelpack), what="i").digest == modelpack["digest"]


def json_values() -> st.SearchStrategy[Any]:
    leaves = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
    return st.recursive(
        leaves,
        lambda inner: (
            st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
        ),
        max_leaves=20,
    )


def descriptors() -> st.SearchStrategy[Any]:
    """Descriptors near the valid ones: each field valid, missing or of another shape."""
    paths = st.sampled_from(["a", "a/b.bin", "../x", "/x", "", ".", "a//b", "x\x00", "é/ß"])
    return st.fixed_dictionaries(
        {},
        optional={
            "mediaType": st.sampled_from(["application/vnd.cncf.model.weight.v1.raw",
                                          "application/vnd.oci.image.layer.v1.tar+gzip"]) | json_values(),
            "digest": st.sampled_from([f"sha256:{HEX}", "sha512:ab", "sha256:zz"]) | json_values(),
            "size": st.integers(min_value=-2, max_value=2**60) | json_values(),
            "annotations": st.dictionaries(st.sampled_from([MODELPACK_PATH, TITLE, "x"]), paths | json_values(), max_size=3)
            | json_values(),
        },
    )  # fmt: skip


@FUZZ
@given(
    layers=st.lists(descriptors(), max_size=5),
    media_type=st.sampled_from([MANIFEST, "application/vnd.oci.image.index.v1+json", "x"]),
    extra=st.dictionaries(
        st.sampled_from(["artifactType", "config", "schemaVersion"]), json_values()
    ),
)
def test_any_manifest_is_files_under_the_folder_or_refused(
    layers: list[Any], media_type: str, extra: dict[str, Any]
) -> None:
    raw = manifest(*layers, mediaType=media_type, **{"schemaVersion": 2, **extra})
    try:
        found = files_of(raw)
    except RegistryReplyError as exc:
        assert exc.message.startswith("m")
        return
    for path, size, sha256 in found:
        assert path_problem(path) is None
        assert size >= 0 and len(sha256) == 64


@FUZZ
@given(st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_any_bytes_are_a_manifest_or_refused(raw: bytes) -> None:
    try:
        files_of(raw)
    except RegistryReplyError:
        pass


@pytest.mark.parametrize(
    ("text", "parts"),
    [
        ("oci://ghcr.io/org/model:v1", ("ghcr.io", "org/model", "v1", None)),
        ("oci://127.0.0.1:5000/a/b/c", ("127.0.0.1:5000", "a/b/c", None, None)),
        (f"oci://r.io/m@sha256:{HEX}", ("r.io", "m", None, f"sha256:{HEX}")),
        (f"oci://r.io/m:v2@sha256:{HEX}", ("r.io", "m", "v2", f"sha256:{HEX}")),
        ("oci://[::1]:5000/m:t", ("[::1]:5000", "m", "t", None)),
    ],
)
def test_references(text: str, parts: tuple[str, str, str | None, str | None]) -> None:
    ref = parse_oci_ref(text)
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == parts


@pytest.mark.parametrize(
    "text",
    ["oci://r.io", "oci://r.io/", "oci://r.io/UP", "oci://r.io/m:", "oci://r.io/m@sha256:ab",
     f"oci://r.io/m@sha512:{'ab' * 64}", "oci://r.io/../m", "oci://user:pw@r.io/m", "oci://r.io/m:v1 "],
)  # fmt: skip
def test_not_references(text: str) -> None:
    with pytest.raises(UsageError):
        parse_oci_ref(text)


def test_scheme_is_http_only_on_this_machine() -> None:
    assert parse_oci_ref("oci://localhost:5000/m").scheme == "http"
    assert parse_oci_ref("oci://127.0.0.1/m").scheme == "http"
    assert parse_oci_ref("oci://[::1]:5000/m").scheme == "http"
    assert parse_oci_ref("oci://registry.local:5000/m").scheme == "https"
    assert parse_oci_ref("oci://127.0.0.1.nip.io/m").scheme == "https"


def test_a_pinned_source_round_trips() -> None:
    ref = parse_oci_ref(f"oci://r.io:5000/a/b@sha256:{HEX}")
    parsed = parse_oci_source(ref.source("w/x.bin"))
    assert parsed is not None and parsed[0].given == ref.given and parsed[1] == "w/x.bin"
    assert parse_oci_source("oci://r.io/a:v1/x") is None


HEADER_TEXT = st.text(max_size=200) | st.sampled_from(["0-0", "0-1", "bytes=0-41", "0-", "5-9"])


@FUZZ
@given(HEADER_TEXT)
def test_an_upload_sessions_range_is_a_count_or_nothing(said: str) -> None:
    """The registry's ``Range`` of an upload session, whatever it says: the bytes held (at least
    2: ``0-0`` may mean none or one) or None, never an error of its own."""
    import httpx2

    from mdl.sources.ocipush import _end, _Reply

    try:
        headers = httpx2.Headers({"Range": said})
    except (UnicodeEncodeError, ValueError):
        return  # (not a header value httpx2 carries)
    held = _end(_Reply(202, headers, "http://127.0.0.1:9/u"))
    assert held is None or held >= 2


@FUZZ
@given(
    HEADER_TEXT
    | st.builds(
        lambda u: f'<{u}>; rel="next"',
        st.text(max_size=80)
        | st.sampled_from(["http://[::1", "//h:99999999/a", "http://127.0.0.1:5000:1/a", "/v2/x"]),
    )
)
def test_a_tag_lists_next_page_is_on_the_registry_or_refused(link: str) -> None:
    """A ``Link`` header of a tag list, whatever it says: no next page, one on the registry's own
    origin, or exit 5 naming it; never a page elsewhere, never another error."""
    from mdl.sources.oci import _next_page
    from mdl.transfer.connection import origin

    ref = parse_oci_ref("oci://127.0.0.1:5000/team/m", where="t")
    try:
        url = _next_page(link, ref, what="tags")
    except RegistryReplyError as exc:
        assert exc.exit_code == ExitCode.NETWORK and exc.message.startswith("tags: "), exc.message
        return
    assert url is None or origin(url) == origin(ref.base)


@FUZZ
@given(
    HEADER_TEXT | st.sampled_from(["http://[::1/x", "//h:99999999/a", "/v2/a/u?s=1", "ftp://h/u"])
)
def test_an_upload_location_is_one_mdl_sends_to_or_refused(said: str) -> None:
    """An upload's ``Location``, whatever the registry says: an http(s) URL (never https to
    http) or exit 5 naming it; never another error."""
    import httpx2

    from mdl.sources.ocipush import _Reply

    try:
        headers = httpx2.Headers({"Location": said})
    except (UnicodeEncodeError, ValueError):
        return  # (not a header value httpx2 carries)
    reply = _Reply(202, headers, "https://127.0.0.1:5000/v2/a/blobs/uploads/")
    try:
        where = reply.location(what="w.bin")
    except RegistryReplyError as exc:
        assert exc.exit_code == ExitCode.NETWORK and exc.message.startswith("w.bin: "), exc.message
        return
    assert where.startswith("https://")


def test_a_digest_the_registry_misstates_names_the_tag_asked() -> None:
    raw = manifest(layer("w.bin"))

    def answer(request: httpx2.Request) -> httpx2.Response:
        lie = {"Content-Type": MANIFEST, "Docker-Content-Digest": "sha256:" + "0" * 64}
        return httpx2.Response(200, content=raw, headers=lie)

    with make_client(pool_size=1, environ={}, transport=httpx2.MockTransport(answer)) as client:
        registry = Registry(client, environ={}, secrets=Secrets())
        for given, tag in (("oci://127.0.0.1:9/t/x", "latest"), ("oci://127.0.0.1:9/t/x:v1", "v1")):
            with pytest.raises(IntegrityError) as caught:
                registry.manifest(parse_oci_ref(given), what="x")
            assert f"for tag {tag}, but sent one" in caught.value.message, caught.value.message
