"""What an S3 listing says is believed only once checked (``_s3conditional.listing``, every
caller's): a page naming a key outside the prefix asked, one that says more follow with no token to
ask for them, and a listing that never ends are each a network error naming the prefix (exit 5),
never "this is everything"."""

from __future__ import annotations

import itertools

import pytest
from s3server import S3, endless, naming, s3, s3_server, tokened, truncated  # noqa: F401

from mdl.buckets import _s3conditional
from mdl.buckets._s3write import S3Writer
from mdl.errors import NetworkError


@pytest.fixture
def writer(s3: S3) -> S3Writer:  # noqa: F811
    s3.client().create_bucket(Bucket="mirror")
    for key in ("hub/m/a", "hub/m/b", "hubnot/m/c"):
        s3.client().put_object(Bucket="mirror", Key=key, Body=b"12345678")
    return S3Writer(s3.endpoint)


def test_an_honest_listing_is_everything(writer: S3Writer) -> None:
    assert [i.uri for i in writer.listing("s3://mirror/hub/")] == [
        "s3://mirror/hub/m/a",
        "s3://mirror/hub/m/b",
    ]


def test_an_honest_listing_of_many_pages_is_everything_in_order(s3: S3, writer: S3Writer) -> None:  # noqa: F811
    """Three pages (S3's thousand names each), their tokens followed; the checks refuse none."""
    keys = [f"hub/many/{n:05d}" for n in range(2100)]
    s3.plant("mirror", keys, b"1")
    assert [i.uri for i in writer.listing("s3://mirror/hub/many/")] == [
        f"s3://mirror/{key}" for key in keys
    ]


def test_a_key_outside_the_prefix_asked_is_refused(s3: S3, writer: S3Writer) -> None:  # noqa: F811
    s3.cutter.listings = naming("hub/", "hubnot/m/c")
    with pytest.raises(NetworkError, match=r"s3://mirror/hub/: a hostile listing .*hubnot/m/c"):
        list(writer.listing("s3://mirror/hub/"))


def test_truncated_without_a_token_is_incomplete(s3: S3, writer: S3Writer) -> None:  # noqa: F811
    s3.cutter.listings = truncated
    with pytest.raises(NetworkError, match=r"s3://mirror/hub/: an incomplete listing.*no contin"):
        list(writer.listing("s3://mirror/hub/"))


def test_a_listing_that_names_its_keys_again_is_refused(s3: S3, writer: S3Writer) -> None:  # noqa: F811
    s3.cutter.listings = endless
    with pytest.raises(NetworkError, match=r"s3://mirror/hub/: a hostile listing .*hub/m/a.*again"):
        list(writer.listing("s3://mirror/hub/"))


@pytest.mark.parametrize(
    ("bound", "said"),
    [
        ("EMPTY_PAGES", r"an incomplete listing.*4 pages"),  # pages in a row that name nothing
        ("LISTED_PAGES", r"a listing of more than 3 pages"),  # pages in all
    ],
)
def test_an_endless_listing_is_bounded(
    s3: S3,  # noqa: F811
    writer: S3Writer,
    monkeypatch: pytest.MonkeyPatch,
    bound: str,
    said: str,
) -> None:
    monkeypatch.setattr(_s3conditional, bound, 3)
    s3.cutter.listings = endless
    with pytest.raises(NetworkError, match=rf"s3://mirror/none/: {said}"):
        list(writer.listing("s3://mirror/none/"))


def test_an_upload_outside_the_prefix_asked_is_never_aborted(s3: S3, writer: S3Writer) -> None:  # noqa: F811
    """prune's look at abandoned uploads (``abandoned``): a listing of hub/'s uploads that names
    another prefix's upload aborts nothing."""
    client = s3.client()
    theirs = client.create_multipart_upload(Bucket="mirror", Key="hubnot/m/d")["UploadId"]
    upload = (
        b"<Upload><Key>hubnot/m/d</Key><UploadId>%s</UploadId>"
        b"<Initiated>2020-01-01T00:00:00.000Z</Initiated><StorageClass>STANDARD</StorageClass>"
        b"</Upload></ListMultipartUploadsResult>" % theirs.encode()
    )
    s3.cutter.listings = lambda query, body: body.replace(b"</ListMultipartUploadsResult>", upload)
    with pytest.raises(NetworkError, match=r"s3://mirror/hub/: a hostile listing .*hubnot/m/d"):
        writer.abandoned("s3://mirror/hub/", before=float("inf"), remove=True)
    s3.cutter.listings = None
    left = client.list_multipart_uploads(Bucket="mirror").get("Uploads", [])
    assert [u["UploadId"] for u in left] == [theirs]


def test_a_token_given_again_is_refused(s3: S3, writer: S3Writer) -> None:  # noqa: F811
    """Pages that loop by their tokens (1, 2, 1, …) end at the first token given again, not at a
    bound."""
    given = itertools.cycle([1, 2])
    s3.cutter.listings = lambda query, body: tokened(next(given))(query, body)
    with pytest.raises(NetworkError, match=r"s3://mirror/none/: an incomplete .*a token it gave"):
        list(writer.listing("s3://mirror/none/"))


@pytest.fixture
def upload(s3: S3, writer: S3Writer) -> str:  # noqa: F811
    """An upload under hub/ begun long before any ``before``: abandoned, to abort."""
    return str(s3.client().create_multipart_upload(Bucket="mirror", Key="hub/m/e")["UploadId"])


def _uploads(s3: S3) -> list[str]:  # noqa: F811
    return [u["UploadId"] for u in s3.client().list_multipart_uploads(Bucket="mirror")["Uploads"]]


def test_uploads_truncated_without_their_markers_are_incomplete(
    s3: S3,  # noqa: F811
    writer: S3Writer,
    upload: str,
) -> None:
    """prune's look at abandoned uploads is the one checked listing too: a page that says more
    follow with no markers to ask for them aborts nothing (boto's paginator ended quietly)."""
    s3.cutter.listings = truncated
    with pytest.raises(NetworkError, match=r"s3://mirror/hub/: an incomplete listing.*no contin"):
        writer.abandoned("s3://mirror/hub/", before=float("inf"), remove=True)
    s3.cutter.listings = None
    assert _uploads(s3) == [upload]


def test_uploads_named_again_are_refused_and_nothing_is_aborted(
    s3: S3,  # noqa: F811
    writer: S3Writer,
    upload: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """New markers every page, the same upload again: a loop, never "this is everything" (the
    page bound cut such a listing quietly)."""
    monkeypatch.setattr(_s3conditional, "LISTED_PAGES", 3)
    s3.cutter.listings = endless
    with pytest.raises(NetworkError, match=r"s3://mirror/hub/: a hostile listing .*hub/m/e.*again"):
        writer.abandoned("s3://mirror/hub/", before=float("inf"), remove=True)
    s3.cutter.listings = None
    assert _uploads(s3) == [upload]


def test_uploads_past_the_page_bound_are_refused(
    s3: S3,  # noqa: F811
    writer: S3Writer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_s3conditional, "LISTED_PAGES", 3)
    s3.cutter.listings = endless
    with pytest.raises(NetworkError, match=r"s3://mirror/none/: a listing of more than 3 pages"):
        writer.abandoned("s3://mirror/none/", before=float("inf"), remove=True)


def test_a_page_of_more_names_than_s3_gives_is_refused(s3: S3, writer: S3Writer) -> None:  # noqa: F811
    """S3 gives at most a thousand names a page (asked for as ``MaxKeys``): a page of more is no
    store's (a proxy's hundreds of MiB, held whole), refused before any of it is believed."""
    s3.cutter.listings = naming("hub/", *(f"hub/x/{n:05d}" for n in range(1001)))
    with pytest.raises(NetworkError, match=r"s3://mirror/hub/: a hostile listing: a page of 1003"):
        list(writer.listing("s3://mirror/hub/"))
