"""The S3 answers' parsers and pages: a Range header (untrusted) read as S3 reads it, a
listing walked page by page (any page size, prefix, delimiter) giving every key and common
prefix once, in order, as one whole listing would; and a GET answering one version."""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, replace
from pathlib import Path
from xml.etree import ElementTree

from hypothesis import given, settings
from hypothesis import strategies as st
from profiles import examples
from runfixtures import HANG

from mdl.catalog.settings import build_settings
from mdl.catalog.specs import FileSpec, ModelSpec
from mdl.endpoint import s3api
from mdl.endpoint.shelf import Shelf, ShelfObject, _Looks
from mdl.store.layout import Layout


@settings(max_examples=examples(500))
@given(header=st.none() | st.text(max_size=40), size=st.integers(0, 1 << 40))
def test_a_range_is_within_the_object_or_refused(header: str | None, size: int) -> None:
    span = s3api._range(header, size)
    if span is None:
        return
    first, last, partial = span
    assert first >= 0 and last < size and (first <= last or size == 0)
    if not partial:
        assert (first, last) == (0, size - 1)


@given(start=st.integers(0, 10**6), end=st.integers(0, 10**6), size=st.integers(1, 10**6))
def test_a_well_formed_range_is_what_http_says(start: int, end: int, size: int) -> None:
    span = s3api._range(f"bytes={start}-{end}", size)
    if end < start:  # not a valid range: ignored (RFC 9110 14.1.1), the whole object, as S3
        assert span == (0, size - 1, False)
    elif start >= size:
        assert span is None
    else:
        assert span == (start, min(end, size - 1), True)
    assert s3api._range(f"bytes=-{end}", size) == (
        None if end == 0 else (max(0, size - end), size - 1, True)
    )


@given(start=st.integers(0, 10**6), end=st.integers(0, 10**6), zeros=st.integers(0, 80))
def test_leading_zeros_are_the_same_number(start: int, end: int, zeros: int) -> None:
    pad = "0" * zeros
    assert s3api._range(f"bytes={pad}{start}-{pad}{end}", 10**6 + 1) == s3api._range(
        f"bytes={start}-{end}", 10**6 + 1
    )


@dataclass
class _Shelf:
    """The objects a listing pages through (the shelf's own tests hold what is on it)."""

    keys: list[str]

    def settle(self, wait: object) -> None:
        """Nothing to wait for: no pull is resolving these."""

    def objects(self) -> list[ShelfObject]:
        return [
            ShelfObject(key, *key.partition("/")[::2], 1, '"x"', 0, True, "installed", None, None)  # type: ignore[arg-type]
            for key in sorted(self.keys, key=str.encode)
        ]


_NS = {"s3": "http://s3.amazonaws.com/doc/2006-03-01/"}
_segment = st.text(alphabet="ab/-.é", min_size=1, max_size=6)


@settings(max_examples=examples(200), deadline=None)
@given(
    keys=st.lists(_segment.map(lambda k: "m/" + k), min_size=0, max_size=25, unique=True),
    prefix=st.sampled_from(["", "m/", "m/a", "m/b/"]),
    delimiter=st.sampled_from(["", "/", "-"]),
    page=st.integers(1, 7),
)
def test_pages_walk_the_whole_listing_once(
    keys: list[str], prefix: str, delimiter: str, page: int
) -> None:
    shelf = _Shelf(keys)
    endpoint = s3api.BucketFacts("mdl", wait=0)
    whole = _page(endpoint, shelf, {"prefix": prefix, "delimiter": delimiter})
    assert not whole["truncated"]
    walked: list[str] = []
    token: str | None = None
    for _ in range(len(keys) + 2):
        params = {"prefix": prefix, "delimiter": delimiter, "max-keys": str(page)}
        if token:
            params["continuation-token"] = token
        one = _page(endpoint, shelf, params)
        assert len(one["entries"]) <= page
        walked += one["entries"]
        token = one["token"]
        if not one["truncated"]:
            break
    assert walked == whole["entries"]
    expected = sorted({_rolled(k, prefix, delimiter) for k in keys if k.startswith(prefix)},
                      key=str.encode)  # fmt: skip
    assert sorted(whole["entries"], key=str.encode) == expected


def _rolled(key: str, prefix: str, delimiter: str) -> str:
    at = key.find(delimiter, len(prefix)) if delimiter else -1
    return key if at < 0 else key[: at + len(delimiter)]


def _page(endpoint: s3api.BucketFacts, shelf: _Shelf, params: dict[str, str]) -> dict[str, object]:
    answer = s3api.answer(
        endpoint, shelf, method="GET", bucket="mdl", key="",  # type: ignore[arg-type]
        params={"list-type": "2", **params}, headers={}, cancel=threading.Event(),
    )  # fmt: skip
    assert answer.status == 200, answer.body
    root = ElementTree.fromstring(answer.body)
    keys = [e.text or "" for e in root.findall("s3:Contents/s3:Key", _NS)]
    prefixes = [e.text or "" for e in root.findall("s3:CommonPrefixes/s3:Prefix", _NS)]
    token = root.findtext("s3:NextContinuationToken", None, _NS)
    truncated = root.findtext("s3:IsTruncated", "", _NS) == "true"
    assert int(root.findtext("s3:KeyCount", "0", _NS)) == len(keys) + len(prefixes)
    return {"entries": sorted(keys + prefixes, key=str.encode), "token": token,
            "truncated": truncated}  # fmt: skip


def test_a_bad_continuation_token_or_max_keys_is_an_s3_error() -> None:
    """An empty token too: none this endpoint gives is empty (one answered the first page again,
    for ever, to a client that sent it back)."""
    endpoint = s3api.BucketFacts("mdl", wait=0)
    for params in ({"continuation-token": "%%%"}, {"max-keys": "many"}, {"continuation-token": ""}):
        answer = s3api.answer(
            endpoint, _Shelf(["m/a"]), method="GET", bucket="mdl", key="",  # type: ignore[arg-type]
            params={"list-type": "2", **params}, headers={}, cancel=threading.Event(),
        )  # fmt: skip
        assert answer.status == 400
        assert re.search(rb"<Code>InvalidArgument</Code>", answer.body)


def test_max_keys_0_is_an_empty_page_with_nothing_more_to_ask() -> None:
    """As S3 and MinIO answer it (it said more follow, with an empty token)."""
    page = _page(s3api.BucketFacts("mdl", wait=0), _Shelf(["m/a", "m/b"]), {"max-keys": "0"})
    assert page == {"entries": [], "token": None, "truncated": False}


def test_a_get_whose_file_became_another_verified_version_is_a_503_saying_so(
    tmp_path: Path,
) -> None:
    """A GET answers one version of its object: when the file it was answered for turns out
    another by the time its bytes are opened (a file of another size and sha256 verified in its
    place), it is a 503 saying so, at once (a client retries and reads the new one), never the
    other file's bytes under this version's ETag and length."""
    final = tmp_path / "models" / "m" / "w.bin"
    final.parent.mkdir(parents=True)
    final.write_bytes(b"the new version")  # (what the first look said was 11 bytes)
    mtime = final.stat().st_mtime_ns
    old = ShelfObject(
        "m/w", "m", "w", 11, f'"{"a" * 64}"', mtime, True, "installed", final, "a" * 64
    )
    new = replace(old, size=15, etag=f'"{"b" * 64}"', sha256="b" * 64)
    looks = iter([[old], [new]])
    settings_ = build_settings(environ={}, dest=tmp_path / "models")
    shelf = Shelf([ModelSpec(name="m")], Layout(settings_), stop=threading.Event())
    shelf._look = lambda model: next(looks)  # type: ignore[method-assign]
    shelf._looks = _Looks(shelf._look, threading.Event())
    answer = s3api.answer(
        s3api.BucketFacts("mdl", wait=HANG), shelf, method="GET", bucket="mdl", key="m/w",
        params={}, headers={}, cancel=threading.Event(),
    )  # fmt: skip
    assert (answer.status, answer.code) == (503, "ServiceUnavailable")
    assert answer.message == "m/w changed: try again" and answer.fd is None


def test_a_model_folder_planted_on_the_way_is_an_access_denied_naming_it(tmp_path: Path) -> None:
    """A link (or a co-tenant's folder) where a served model's folder is: every command refuses it
    (exit 2); the endpoint answers an S3 error naming it, which the run says, never a connection
    closed with nothing said, and never a byte through it."""
    dest, elsewhere = tmp_path / "models", tmp_path / "elsewhere"
    (elsewhere / "m").mkdir(parents=True)
    (elsewhere / "m" / "w.bin").write_bytes(b"outside")
    dest.mkdir()
    (dest / "m").symlink_to(elsewhere / "m")
    settings_ = build_settings(environ={}, dest=dest)
    url = FileSpec(key_path="models.m.files[0]", url="http://127.0.0.1:9/w.bin", size=7)
    other = FileSpec(key_path="models.n.files[0]", url="http://127.0.0.1:9/x.bin", size=7)
    specs = [ModelSpec(name="m", files=(url,)), ModelSpec(name="n", files=(other,))]
    shelf = Shelf(specs, Layout(settings_), stop=threading.Event())
    answer = s3api.answer(
        s3api.BucketFacts("mdl", wait=HANG), shelf, method="GET", bucket="mdl", key="m/w.bin",
        params={}, headers={}, cancel=threading.Event(),
    )  # fmt: skip
    assert (answer.status, answer.code) == (403, "AccessDenied"), answer.body
    assert f"{dest / 'm'} is a symbolic link" in (answer.message or "")
    assert answer.fd is None
    # the other model's loaders list on: the planted one is left out of every listing
    listed = s3api.answer(
        s3api.BucketFacts("mdl", wait=HANG), shelf, method="GET", bucket="mdl", key="",
        params={"list-type": "2"}, headers={}, cancel=threading.Event(),
    )  # fmt: skip
    assert listed.status == 200, listed.body
    keys = [e.text for e in ElementTree.fromstring(listed.body).findall("s3:Contents/s3:Key", _NS)]
    assert keys == ["n/x.bin"]
