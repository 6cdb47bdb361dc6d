"""The S3 API's readers of request input, on any input: an HTTP-date in each of its three forms
(else ignored), an ``x-amz-object-attributes`` list, an entity-tag list, and the query's names
held to each operation's allow-list (any other is 501 before anything is looked up)."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from profiles import examples

from mdl.endpoint import s3api
from mdl.endpoint.shelf import ShelfObject

_WHEN = st.datetimes(
    min_value=datetime(1970, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)
).map(lambda when: when.replace(microsecond=0))


@settings(max_examples=examples(500))
@given(text=st.none() | st.text(max_size=80))
def test_any_text_is_an_http_date_or_ignored(text: str | None) -> None:
    found = s3api.http_date(text)
    assert found is None or isinstance(found, int)


@given(when=_WHEN)
def test_each_form_of_an_http_date_is_its_second(when: datetime) -> None:
    second = int(when.timestamp())
    assert s3api.http_date(format_datetime(when, usegmt=True)) == second  # IMF-fixdate
    assert s3api.http_date(time.asctime(when.utctimetuple())) == second  # asctime
    if 1969 < when.year < 2069:  # RFC 850's two-digit year: 69-99 are 19xx, 00-68 are 20xx
        assert s3api.http_date(when.strftime("%A, %d-%b-%y %H:%M:%S GMT")) == second


@settings(max_examples=examples(500))
@given(text=st.none() | st.text(max_size=300))
def test_any_attribute_list_is_some_attributes_or_refused(text: str | None) -> None:
    found = s3api.object_attributes(text)
    assert found is None or (found and found <= set(s3api.ATTRIBUTES))


@given(
    names=st.lists(st.sampled_from(s3api.ATTRIBUTES), min_size=1, max_size=8),
    spaces=st.lists(st.sampled_from(["", " ", "  ", "\t"]), min_size=16, max_size=16),
)
def test_a_list_of_attributes_is_read_whatever_its_spaces(
    names: list[str], spaces: list[str]
) -> None:
    header = ",".join(f"{spaces[2 * i]}{name}{spaces[2 * i + 1]}" for i, name in enumerate(names))
    assert s3api.object_attributes(header) == set(names)


_TAG = st.text(alphabet="0123456789abcdef", min_size=1, max_size=8).map(lambda t: f'"{t}"')


@given(etag=_TAG, tags=st.lists(_TAG, max_size=5), weak_marks=st.lists(st.booleans(), min_size=5))
def test_an_entity_tag_list_names_the_etag_as_rfc_9110_compares(
    etag: str, tags: list[str], weak_marks: list[bool]
) -> None:
    marked = [f"W/{tag}" if weak else tag for tag, weak in zip(tags, weak_marks, strict=False)]
    header = " , ".join(marked)
    strong = [tag for tag in marked if not tag.startswith("W/")]
    assert s3api._etag_listed(etag, header, weak=False) == (etag in strong)
    assert s3api._etag_listed(etag, header, weak=True) == (etag in tags)
    assert s3api._etag_listed(etag, "*", weak=False) and s3api._etag_listed(etag, " * ", weak=True)


class _Untouched:
    """A shelf any look at fails the test: a query refused is refused before anything is read."""

    def __getattr__(self, name: str) -> object:
        raise AssertionError(f"the shelf was asked {name}")


_TARGETS = [("GET", "", ""), ("GET", "mdl", ""), ("HEAD", "mdl", ""), ("GET", "mdl", "m/a.bin"),
            ("HEAD", "mdl", "m/a.bin"), ("GET", "mdl", "m/")]  # fmt: skip
_KNOWN = sorted(set().union(*s3api._TAKES.values()))


@settings(max_examples=examples(500))
@given(
    target=st.sampled_from(_TARGETS),
    names=st.lists(st.sampled_from(_KNOWN) | st.text(min_size=1, max_size=12), max_size=4),
)
def test_a_query_name_its_operation_does_not_take_is_501_before_any_look(
    target: tuple[str, str, str], names: list[str]
) -> None:
    method, bucket, key = target
    params = dict.fromkeys(names, "")
    operation = s3api._operation(method, bucket, key, params)
    if all(name in s3api._TAKES[operation] or name.lower().startswith("x-amz-") for name in names):
        return  # (an operation's own parameters, or hoisted headers: their tests read them)
    reply = s3api.answer(
        s3api.BucketFacts("mdl", wait=0), _Untouched(),  # type: ignore[arg-type]
        method=method, bucket=bucket, key=key, params=params, headers={},
        cancel=threading.Event(),
    )  # fmt: skip
    assert (reply.status, reply.code) == (501, "NotImplemented")
    assert reply.fd is None and b"<Code>NotImplemented</Code>" in reply.body


@settings(max_examples=examples(300))
@given(
    size=st.integers(0, 1 << 40),
    header=st.none()
    | st.text(max_size=30)
    | st.from_regex(r"bytes=[0-9]{0,3}-[0-9]{0,3}", fullmatch=True),
    part=st.none() | st.integers(1, 10000),
)
def test_every_416_says_the_objects_size(size: int, header: str | None, part: int | None) -> None:
    obj = ShelfObject("m/x", "m", "x", size, '"e"', 0, True, "installed", Path("x"), None)
    asked = {} if header is None or part is not None else {"range": header}
    reply = s3api._answer_for(obj, part, asked, {}, "GET")
    if reply.status != 416:
        assert reply.status in (200, 206) and reply.offset + reply.count <= size
        return
    assert reply.headers["Content-Range"] == f"bytes */{size}"
    assert f"<ActualObjectSize>{size}</ActualObjectSize>".encode() in reply.body


@pytest.mark.parametrize(
    ("method", "bucket", "key", "x_id"),
    [("GET", "", "", "ListDirectoryBuckets"), ("GET", "mdl", "m/a", "GetObjectTagging"),
     ("HEAD", "mdl", "m/a", "GetObject"), ("GET", "mdl", "", "ListObjectVersions")],
)  # fmt: skip
def test_an_x_id_naming_another_operation_is_501(
    method: str, bucket: str, key: str, x_id: str
) -> None:
    reply = s3api.answer(
        s3api.BucketFacts("mdl", wait=0), _Untouched(),  # type: ignore[arg-type]
        method=method, bucket=bucket, key=key, params={"x-id": x_id}, headers={},
        cancel=threading.Event(),
    )  # fmt: skip
    assert (reply.status, reply.code) == (501, "NotImplemented")


@pytest.mark.parametrize(
    ("method", "bucket", "key", "params"),
    [("GET", "mdl", "m/a", {"X-Amz-Content-Sha256": "UNSIGNED-PAYLOAD", "x-id": "GetObject"}),
     ("HEAD", "mdl", "m/a", {"x-amz-checksum-mode": "ENABLED"}),
     ("GET", "mdl", "m/a", {"t": "1"}), ("GET", "mdl", "", {"list-type": "2", "metadata": "true"}),
     ("GET", "", "", {"_": "1700000000"})],
)  # fmt: skip
def test_a_parameter_s3_ignores_is_ignored_not_501(
    method: str, bucket: str, key: str, params: dict[str, str]
) -> None:
    """A hoisted header (JavaScript v3's presigned URLs carry ``X-Amz-Content-Sha256``), a cache
    buster, minio-py's ``metadata=true``: S3 reads none of them as a sub-resource, nor does mdl."""
    operation = s3api._operation(method, bucket, key, params)
    assert s3api._refused_query(operation, params, "/r") is None


@pytest.mark.parametrize(
    "params", [{"tagging": "1"}, {"uploadId": "u"}, {"versions": "x"}, {"anything": ""}]
)
def test_a_sub_resource_with_a_value_or_a_bare_name_is_still_501(params: dict[str, str]) -> None:
    refused = s3api._refused_query("GetObject", params, "/r")
    assert refused is not None and (refused.status, refused.code) == (501, "NotImplemented")
