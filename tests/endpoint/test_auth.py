"""The endpoint's request check against the real signer: every request botocore signs with the
run's key passes (header SigV4, presigned SigV4 and V2), and a change to anything the signature
covers, another key, or any garbage is refused with an S3 error code, never an exception of
another kind."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import quote, urlsplit

from hypothesis import given, settings
from hypothesis import strategies as st
from profiles import examples

from mdl.endpoint.auth import Key, Refused, Request, check

KEY = Key("MDLTESTKEY0123456", "s3cr3t/with+chars=")
HOST = "127.0.0.1:8390"
_key_text = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=1, max_size=40
)
_params = st.dictionaries(
    st.sampled_from(["prefix", "delimiter", "max-keys", "list-type", "continuation-token", "x"]),
    _key_text,
    max_size=4,
)


def _signed(
    method: str, key: str, params: dict[str, str], headers: dict[str, str], *, how: str = "header"
) -> Request:
    """``method /mdl/<key>?params`` signed by botocore as an S3 client signs it; the request as
    the endpoint reads it off the wire."""
    # botocore's signers here, not at the module's top: a worker that runs no endpoint test never
    # imports botocore
    from botocore.auth import HmacV1QueryAuth, S3SigV4Auth, S3SigV4QueryAuth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    query = "&".join(f"{quote(n, safe='')}={quote(v, safe='')}" for n, v in params.items())
    url = f"http://{HOST}/mdl/{quote(key, safe='/~')}" + (f"?{query}" if query else "")
    request = AWSRequest(method, url, headers={"host": HOST, **headers})
    credentials = Credentials(KEY.access_key, KEY.secret_key)
    if how == "header":
        S3SigV4Auth(credentials, "s3", "us-east-1").add_auth(request)
    elif how == "presigned":
        S3SigV4QueryAuth(credentials, "s3", "us-east-1", expires=60).add_auth(request)
    else:
        HmacV1QueryAuth(credentials, expires=60).add_auth(request)
    sent = urlsplit(request.url)
    wire = {name.lower(): value for name, value in request.headers.items()}
    return Request(method, sent.path, sent.query, wire)


@settings(max_examples=examples(150), deadline=None)
@given(
    method=st.sampled_from(["GET", "HEAD"]),
    key=_key_text,
    params=_params,
    range_header=st.none() | st.from_regex(r"bytes=\d{1,5}-\d{0,5}", fullmatch=True),
    how=st.sampled_from(["header", "presigned", "v2"]),
)
def test_what_botocore_signs_with_the_key_passes_and_a_change_is_refused(
    method: str, key: str, params: dict[str, str], range_header: str | None, how: str
) -> None:
    headers = {"range": range_header} if range_header else {}
    request = _signed(method, key, params, headers, how=how)
    check(request, KEY, now=datetime.now(UTC))  # passes
    changed = [
        Request(method, request.path + "x", request.query, request.headers),
        Request("PUT" if method == "GET" else "GET", request.path, request.query, request.headers),
    ]
    if how == "header":
        changed.append(Request(method, request.path, request.query + "&extra=1", request.headers))
    for other in changed:
        try:
            check(other, KEY, now=datetime.now(UTC))
        except Refused as refused:
            assert refused.code in ("SignatureDoesNotMatch", "AccessDenied")
        else:
            raise AssertionError(f"a changed request passed: {other}")
    stranger = Key(KEY.access_key, "another secret")
    try:
        check(request, stranger, now=datetime.now(UTC))
    except Refused as refused:
        assert refused.code == "SignatureDoesNotMatch"
    else:
        raise AssertionError("another secret passed")


def test_an_old_or_expired_signature_is_refused() -> None:
    request = _signed("GET", "m/a.bin", {}, {})
    later = datetime.now(UTC) + timedelta(minutes=20)
    try:
        check(request, KEY, now=later)
    except Refused as refused:
        assert refused.code == "RequestTimeTooSkewed"
    for how in ("presigned", "v2"):
        presigned = _signed("GET", "m/a.bin", {}, {}, how=how)
        try:
            check(presigned, KEY, now=datetime.now(UTC) + timedelta(minutes=2))
        except Refused as refused:
            assert "expired" in refused.message
        else:
            raise AssertionError(f"an expired {how} URL passed")


def test_another_access_key_is_named_as_such() -> None:
    request = _signed("GET", "m/a.bin", {}, {})
    try:
        check(request, Key("SOMEONEELSE", KEY.secret_key), now=datetime.now(UTC))
    except Refused as refused:
        assert refused.code == "InvalidAccessKeyId"
    else:
        raise AssertionError("another access key passed")


@settings(max_examples=examples(300), deadline=None)
@given(
    authorization=st.none() | st.text(max_size=300),
    query=st.text(max_size=200),
    headers=st.dictionaries(
        st.sampled_from(["x-amz-date", "x-amz-content-sha256", "host", "range"]),
        st.text(max_size=60),
    ),
    path=st.text(max_size=80),
)
def test_any_garbage_is_refused_with_an_s3_code(
    authorization: str | None, query: str, headers: dict[str, str], path: str
) -> None:
    """Untrusted input: whatever arrives, the check refuses it (no other exception escapes)."""
    sent = dict(headers)
    if authorization is not None:
        sent["authorization"] = authorization
    try:
        check(Request("GET", path, query, sent), KEY, now=datetime.now(UTC))
    except Refused as refused:
        assert refused.code and refused.message
    else:
        raise AssertionError("garbage passed")


def test_a_fresh_key_is_new_each_run() -> None:
    assert Key.fresh() != Key.fresh()
    assert len(Key.fresh().secret_key) >= 40
