"""Hypothesis properties for the Hub's replies: any bytes, JSON or headers are parsed or refused as
HubReplyError.

Whatever a Hub, a mirror or a captive portal sends as a revision reply, a tree page, a HEAD's
headers or a `Link` header, `mdl.sources._hubreplies` returns validated data or raises HubReplyError
(exit 5) with a printable message — never another exception. The last property sends the bytes over
a real loopback Hub.
"""

from __future__ import annotations

import json
import re
import string
from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest
from hostile import HostileHub
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from profiles import examples
from servers import Exchange

from mdl.errors import ExitCode, HubReplyError, MdlError
from mdl.sources._hubreplies import (
    FileMetadata,
    TreeEntry,
    name_problem,
    next_page_url,
    parse_file_metadata,
    parse_revision,
    parse_tree_page,
)
from mdl.sources.hub import Hub
from mdl.transfer.connection import origin
from mdl.transfer.http import RetryPolicy

URL = "http://127.0.0.1:9/api/models/org/m/tree/" + "a" * 40
HUB_ORIGIN = origin(URL)
HEX = "0123456789abcdef"
# What a printable message may not hold (mdl.redact.printable's set, tab and newline included).
UNPRINTABLE = re.compile(
    "[\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2028\u2029\u2060-\u2069\ufeff]"
)

json_scalars = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
hexes = st.text(HEX, min_size=38, max_size=42) | st.text(min_size=0, max_size=70)
sizes = (
    st.integers(min_value=-2, max_value=2**70)
    | st.text(string.digits, max_size=5)
    | st.none()
    | st.floats()
)
# Entries that are nearly right, so the properties reach the per-field checks and not only "not a
# list".
entries = st.fixed_dictionaries(
    {},
    optional={
        "type": st.sampled_from(["file", "directory", "symlink", 1, None]),
        "path": st.text(max_size=40) | st.integers(),
        "size": sizes,
        "oid": hexes,
        "lfs": (
            st.none()
            | st.fixed_dictionaries(
                {}, optional={"oid": st.text(HEX, min_size=63, max_size=65), "size": sizes}
            )
        ),
        "lastCommit": json_values,
    },
)
# And entries that are right, so the properties also see pages that parse (and check what they
# hold).
valid_entries = st.fixed_dictionaries(
    {
        "type": st.sampled_from(["file", "directory"]),
        "path": st.text(max_size=40),
        "size": st.integers(min_value=0, max_value=2**63),
        "oid": st.text(HEX, min_size=40, max_size=40),
    },
    optional={
        "lfs": (
            st.none()
            | st.fixed_dictionaries(
                {"oid": st.text(HEX, min_size=64, max_size=64), "size": st.integers(0, 2**40)}
            )
        ),
        "xetHash": st.text(max_size=10),
    },
)
tree_documents = st.lists(valid_entries | entries, max_size=5) | json_values
revision_documents = (
    st.fixed_dictionaries({}, optional={"sha": hexes, "id": json_values}) | json_values
)


def _bodies(documents: st.SearchStrategy[Any]) -> st.SearchStrategy[bytes]:
    return st.binary(max_size=300) | documents.map(lambda doc: json.dumps(doc).encode())


def assert_printable_refusal(exc: HubReplyError) -> None:
    assert exc.exit_code == ExitCode.NETWORK == 5
    assert not UNPRINTABLE.search(exc.message), exc.message


@given(_bodies(tree_documents))
def test_any_tree_page_is_parsed_or_refused(body: bytes) -> None:
    try:
        page = parse_tree_page(body, what="m", url=URL)
    except HubReplyError as exc:
        assert_printable_refusal(exc)
        assert exc.message.startswith(f"m: unexpected reply from {URL}")
        return
    for entry in page:
        assert isinstance(entry, TreeEntry) and entry.type in ("file", "directory")
        assert isinstance(entry.path, str) and name_problem(entry.path) is None
        assert isinstance(entry.size, int) and entry.size >= 0
        assert re.fullmatch("[0-9a-f]{40}", entry.oid)
        assert entry.lfs is None or re.fullmatch("[0-9a-f]{64}", entry.lfs.oid)


@given(_bodies(revision_documents))
def test_any_revision_reply_is_a_commit_or_refused(body: bytes) -> None:
    try:
        info = parse_revision(body, what="m", url=URL)
    except HubReplyError as exc:
        assert_printable_refusal(exc)
        return
    assert re.fullmatch("[0-9a-f]{40}", info.sha)


def _pydantic_spec() -> tuple[Any, Any]:
    """The strict pydantic models mdl's Hub replies were read with (before issue 90 wrote the
    checks out: pydantic cost a Hub pull ~80 ms of start-up): the spec the hand checks keep."""
    from typing import Annotated, Literal

    from pydantic import (
        BaseModel,
        ConfigDict,
        Field,
        StrictInt,
        StrictStr,
        TypeAdapter,
        ValidationInfo,
        field_validator,
    )

    from mdl.sources._hubreplies import xet_hash

    class Strict(BaseModel):
        model_config = ConfigDict(extra="ignore", frozen=True, strict=True)

    class RevisionInfo(Strict):
        sha: Annotated[StrictStr, Field(pattern=r"^[0-9a-f]{40}$")]

    class LfsInfo(Strict):
        oid: Annotated[StrictStr, Field(pattern=r"^[0-9a-f]{64}$")]
        size: Annotated[StrictInt, Field(ge=0)]

    class TreeEntry(Strict):
        type: Literal["file", "directory"]
        path: StrictStr
        size: Annotated[StrictInt, Field(ge=0)]
        oid: Annotated[StrictStr, Field(pattern=r"^[0-9a-f]{40}$")]
        lfs: LfsInfo | None = None
        xet_hash: str | None = Field(default=None, alias="xetHash")

        @field_validator("xet_hash", mode="plain")
        @classmethod
        def _xet_hash(cls, value: Any, info: ValidationInfo) -> str | None:
            return xet_hash(value, where="spec")

        @field_validator("path")
        @classmethod
        def _plain_path(cls, value: str) -> str:
            if (problem := name_problem(value)) is not None:
                raise ValueError(f"hostile listing: path {value!r}: {problem}")
            return value

    return TypeAdapter(RevisionInfo), TypeAdapter(list[TreeEntry])


SPEC_REVISION, SPEC_TREE = _pydantic_spec()


def _spec_says(adapter: Any, document: Any) -> tuple[str, Any]:
    """("ok", the fields) or ("refused", where: what) as the pydantic spec reads ``document``."""
    from pydantic import ValidationError

    try:
        found = adapter.validate_python(document)
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        where = ".".join(str(part) for part in first["loc"])
        message = str(first["msg"]).removeprefix("Value error, ")
        return "refused", (where, message.split(" path ")[0])
    if isinstance(found, list):
        return "ok", [
            (e.type, e.path, e.size, e.oid, e.lfs and (e.lfs.oid, e.lfs.size), e.xet_hash)
            for e in found
        ]
    return "ok", found.sha


@given(tree_documents)
@example([{"type": "file", "path": "a", "size": True, "oid": "a" * 40}])
@example([{"type": "file", "path": "a", "size": -1, "oid": "a" * 40}])
@example([{"type": "symlink", "path": "a", "size": 1, "oid": "a" * 40}])
@example([{"type": "file", "size": 1, "oid": "a" * 40}])
@example([{"type": "file", "path": 1, "size": 1, "oid": "a" * 40}])
@example([{"type": "file", "path": "a", "size": 1, "oid": "a" * 40, "lfs": {"oid": "b" * 64}}])
@example({"type": "file"})
@example([{"type": "fi\ud800le", "path": "a", "size": 1, "oid": "a" * 40}])
@example([{"type": "file", "path": "a\ud800", "size": 1, "oid": "a" * 40}])
@example([{"type": "file", "path": "a", "size": "\ud800", "oid": "a" * 40}])
@example([{"type": "file", "path": "a", "size": 1, "oid": "a" * 39 + "\ud800"}])
@example([{"type": "file", "path": "a", "size": 1, "oid": "a" * 40, "xetHash": "\udc00"}])
@example([{"type": "file", "path": "a", "size": 1, "oid": "a" * 40, "lfs": {"oid": "\ud800"}}])
@example([{"type": "file", "path": "a", "size": 1.0, "oid": "a" * 40}])
@example([{"type": "file", "path": "a", "size": 1, "oid": "a" * 40 + "\n"}])
@example([{"type": "file", "path": "a", "size": 1, "oid": "a" * 40, "lfs": False}])
@example([{"type": "file", "path": "x\u202etxt", "size": 1, "oid": "a" * 40}])
@example([{"type": "file", "path": "a", "size": 1, "oid": "a" * 40, "xetHash": "b" * 64}])
def test_a_tree_page_is_read_as_the_strict_pydantic_models_read_it(document: Any) -> None:
    """Taken with the same fields, or refused at the same place for the same reason."""
    verdict, said = _spec_says(SPEC_TREE, document)
    body = json.dumps(document).encode()
    if verdict == "ok":
        page = parse_tree_page(body, what="m", url=URL)
        assert [(*e[:4], e.lfs and tuple(e.lfs), e.xet_hash) for e in page] == said
        return
    with pytest.raises(HubReplyError) as refused:
        parse_tree_page(body, what="m", url=URL)
    where, message = said
    assert f"from {URL}: {where + ': ' if where else ''}{message}" in refused.value.message


@given(revision_documents)
@example({"sha": "a" * 40 + "\n"})
@example(["not", "an", "object"])
@example({"sha": "\ud800"})
def test_a_revision_reply_is_read_as_the_strict_pydantic_model_reads_it(document: Any) -> None:
    verdict, said = _spec_says(SPEC_REVISION, document)
    body = json.dumps(document).encode()
    if verdict == "ok":
        assert parse_revision(body, what="m", url=URL).sha == said
        return
    with pytest.raises(HubReplyError) as refused:
        parse_revision(body, what="m", url=URL)
    where, message = said
    assert f"from {URL}: {where + ': ' if where else ''}{message}" in refused.value.message


header_values = (
    st.text(max_size=50)
    | st.text(HEX, min_size=40, max_size=40)
    | st.text(string.digits, max_size=25)
)
header_sets = st.dictionaries(
    st.sampled_from(
        ["X-Repo-Commit", "X-Linked-Etag", "ETag", "X-Linked-Size", "Content-Length", "X-Other"]
    ),
    header_values,
)


@given(header_sets, st.none() | st.integers(min_value=0, max_value=1 << 50))
def test_any_head_headers_are_metadata_or_refused(
    headers: dict[str, str], total: int | None
) -> None:
    try:
        meta = parse_file_metadata(headers, total=total, what="m/f", url=URL)
    except HubReplyError as exc:
        assert_printable_refusal(exc)
        return
    assert isinstance(meta, FileMetadata)
    assert meta.commit is None or re.fullmatch("[0-9a-f]{40}", meta.commit)
    assert meta.size is None or (isinstance(meta.size, int) and meta.size >= 0)
    assert meta.etag is None or name_problem(meta.etag) is None


content_ranges = st.text(
    st.characters(min_codepoint=32, max_codepoint=126), max_size=30
) | st.builds(
    lambda space, star, total: f"bytes{space}{star}/{total}",
    st.sampled_from([" ", "\t", "", "  "]),
    st.sampled_from(["*", "0-0", "1-2", "**"]),
    st.sampled_from(["0", "00", "1", "*", "", "-0", "0x0", "0 "]),
)


@given(content_ranges, st.sampled_from([416, 206, 200, 404, 500]))
@example("bytes */0", 416)
@example("BYTES 0-0/0", 416)  # a range of an empty file: contradicts itself, refused
def test_only_an_empty_files_416_answers_a_first_bytes_get(value: str, status: int) -> None:
    """A first byte's GET is answered by a 2xx or 3xx, or by the 416 of a file that has no byte 0
    (``bytes */0``); any other 416 (or 4xx, 5xx) is a refusal, whatever its Content-Range."""
    import httpx2

    from mdl.sources.hub import _refused

    response = httpx2.Response(status, headers={"Content-Range": value})
    empty = re.fullmatch(r"[ \t]*bytes[ \t]+\*/0+[ \t]*", value, re.IGNORECASE) is not None
    assert _refused(response) == (status >= 400 and not (status == 416 and empty))
    if status == 416 and value == "bytes */0":  # (RFC 9110 §14.4: a space after the unit)
        assert not _refused(response)


links = st.text(max_size=60) | st.builds(
    lambda scheme, host, port, path: f"{scheme}://{host}:{port}{path}",
    st.sampled_from(["http", "https", "ftp", "HTTP"]),
    st.sampled_from(["127.0.0.1", "localhost", "LOCALHOST", "127.0.0.2", "[::1]"]),
    st.sampled_from(["9", "80", "443", "99999", "x", ""]),
    st.text(max_size=20),
)


@given(st.none() | links)
def test_any_next_link_stays_on_the_hub_origin_or_is_refused(link: str | None) -> None:
    try:
        target = next_page_url(link, current=URL, first=URL, what="m")
    except HubReplyError as exc:
        assert_printable_refusal(exc)
        assert "hostile listing" in exc.message
        return
    # the same listing: its origin, and its path (this repo at this commit); only the query (a
    # cursor) may change
    assert target is None or (
        origin(target) == HUB_ORIGIN and unquote(urlsplit(target).path) == urlsplit(URL).path
    )


# -- the same over the wire: any bytes as the tree reply of a real loopback Hub
# --------------------------


@pytest.fixture(scope="module")
def wire_hub() -> Iterator[HostileHub]:
    with HostileHub() as server:
        server.add_repo("org/m", {"config.json": b"{}"})
        yield server


@settings(
    max_examples=examples(40),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(body=_bodies(tree_documents), link=st.none() | links)
# found by this property: a control character in a next-page link's error text
@example(body=b"[]", link="0\x1f")
def test_any_listing_over_the_wire_ends_in_files_or_an_mdl_error(
    wire_hub: HostileHub, body: bytes, link: str | None
) -> None:
    def rewrite(ex: Exchange, doc: Any) -> Any:
        return body if "/tree/" in ex.path else doc

    wire_hub.rewrite_json = rewrite
    wire_hub.next_link = lambda honest: link
    hub = Hub(wire_hub.url, None, retry=RetryPolicy(retries=0, sleep=lambda s: None))
    try:
        commit = hub.commit_of("org/m", repo_type="model", revision="main", what="m")
        files = hub.list_files("org/m", repo_type="model", commit=commit, what="m")
    except MdlError as exc:
        assert exc.exit_code in (ExitCode.NOT_FOUND, ExitCode.NETWORK), exc.message
        assert not UNPRINTABLE.search(exc.message), exc.message
    else:
        assert all(entry.type == "file" for entry in files)
    finally:
        hub.close()
        wire_hub.rewrite_json = None
        wire_hub.next_link = None


# -- any error answer from the Hub is one of our errors, with printable text
# ----------------------------


@given(
    status=st.integers(min_value=400, max_value=599),
    code=st.none()
    | st.sampled_from(["RepoNotFound", "RevisionNotFound", "EntryNotFound", "GatedRepo"])
    | st.text(st.characters(max_codepoint=255), max_size=20),
    message=st.none() | st.text(st.characters(max_codepoint=255), max_size=80),
    retry_after=st.none() | st.text(string.printable, max_size=20),
    body=st.binary(max_size=300),
)
def test_any_error_answer_is_an_mdl_error_with_printable_text(
    status: int, code: str | None, message: str | None, retry_after: str | None, body: bytes
) -> None:
    import httpx2

    from mdl.sources.hub import _status_error

    headers = {  # bytes, as they come off the wire (latin-1 is what a header can carry)
        name: value.encode("latin-1")
        for name, value in (
            ("X-Error-Code", code),
            ("X-Error-Message", message),
            ("Retry-After", retry_after),
        )
        if value is not None
    }
    response = httpx2.Response(
        status, headers=headers, content=body, request=httpx2.Request("GET", URL)
    )
    hub = Hub("http://127.0.0.1:9", None)
    try:
        error = _status_error(
            response, body, what="m", repo="org/m", revision="main", path=None, hub=hub
        )
    finally:
        hub.close()
    assert isinstance(error, MdlError)
    assert error.exit_code in (ExitCode.AUTH, ExitCode.NOT_FOUND, ExitCode.NETWORK)
    assert not UNPRINTABLE.search(error.message), error.message
