"""Check an S3 request's signature against the run's one key: AWS Signature Version 4 in the
Authorization header or a presigned URL's query, or the Version 2 query of a presigned URL (what
boto3's ``generate_presigned_url`` makes by default). Verifying is the signer's arithmetic done
again (AmazonS3/latest/API/sig-v4-header-based-auth.html and RESTAuthentication.html in
the AWS docs); no library offers the verifying side, and it is a few lines of hmac."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from urllib.parse import quote, unquote

ALGORITHM = "AWS4-HMAC-SHA256"
# S3 refuses a request signed further than this from its clock (RequestTimeTooSkewed)
SKEW = timedelta(minutes=15)
# a presigned URL lives at most a week, as S3 allows
MOST_EXPIRES = 7 * 24 * 3600
UNSIGNED = "UNSIGNED-PAYLOAD"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
_HEADER = re.compile(
    r"AWS4-HMAC-SHA256\s+Credential=([^,\s]+),\s*SignedHeaders=([a-z0-9;_.-]+),\s*"
    r"Signature=([0-9a-f]{64})\s*"
)
_SPACES = re.compile(r"\s+")
_DIGITS = re.compile(r"[0-9]{1,12}")


@dataclass(frozen=True)
class Key:
    """The run's one credential: what the loader's environment carries."""

    access_key: str
    secret_key: str = field(repr=False)

    @classmethod
    def fresh(cls) -> Key:
        """A new random key for one run (nobody else can know it: only the printed environment)."""
        return cls("MDL" + secrets.token_hex(8).upper(), secrets.token_urlsafe(30))


class Refused(Exception):
    """Why a request is not authenticated: its S3 error code and message."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


@dataclass(frozen=True)
class Request:
    """What the signature covers of one request, as it came: the path and query undecoded."""

    method: str
    path: str  # as sent (percent-encoded), without the query
    query: str
    headers: Mapping[str, str]  # names in lower case


def check(request: Request, key: Key, *, now: datetime) -> None:
    """Raise Refused unless ``request`` is signed with ``key`` (header or presigned query)."""
    params = _params(request.query)
    fields = dict(params)
    if "X-Amz-Signature" in fields:
        _check_presigned(request, params, fields, key, now=now)
        return
    if "Signature" in fields and "AWSAccessKeyId" in fields:
        _check_presigned_v2(request, fields, key, now=now)
        return
    auth = request.headers.get("authorization")
    if auth is None:
        raise Refused("AccessDenied", "anonymous access is not allowed: sign with the run's key")
    found = _HEADER.fullmatch(auth)
    if found is None:
        raise Refused("AuthorizationHeaderMalformed", "the Authorization header is not SigV4")
    credential, signed_headers, signature = found.groups()
    payload = request.headers.get("x-amz-content-sha256", "")
    if not payload:
        raise Refused("InvalidRequest", "missing x-amz-content-sha256")
    _check_signature(
        request, params, key, credential, signed_headers.split(";"), signature,
        stamp=request.headers.get("x-amz-date", ""), payload=payload, now=now, presigned=False,
    )  # fmt: skip


def _check_presigned(
    request: Request,
    params: list[tuple[str, str]],
    fields: dict[str, str],
    key: Key,
    *,
    now: datetime,
) -> None:
    if fields.get("X-Amz-Algorithm") != ALGORITHM:
        raise Refused("AuthorizationQueryParametersError", "X-Amz-Algorithm must be " + ALGORITHM)
    stamp = fields.get("X-Amz-Date", "")
    expires = _seconds(fields.get("X-Amz-Expires", ""))
    if expires is None or not 0 < expires <= MOST_EXPIRES:
        raise Refused("AuthorizationQueryParametersError", "X-Amz-Expires is not 1..604800")
    when = _when(stamp)
    if now > when + timedelta(seconds=expires):
        raise Refused("AccessDenied", "Request has expired")
    if when > now + SKEW:  # dated ahead: it would outlive its week
        raise Refused("AccessDenied", "the URL is dated in the future")
    unsigned = [(name, value) for name, value in params if name != "X-Amz-Signature"]
    _check_signature(
        Request(request.method, request.path, "", request.headers), unsigned, key,
        fields.get("X-Amz-Credential", ""), fields.get("X-Amz-SignedHeaders", "").split(";"),
        fields["X-Amz-Signature"], stamp=stamp, payload=UNSIGNED, now=now, presigned=True,
    )  # fmt: skip


# the subresources a V2 signature covers, when in the query (RESTAuthentication.html)
_V2_SUBRESOURCES = frozenset(
    {"acl", "location", "logging", "torrent", "versionId", "versioning", "uploads", "partNumber",
     "uploadId", "response-content-type", "response-content-language", "response-expires",
     "response-cache-control", "response-content-disposition", "response-content-encoding"}
)  # fmt: skip


def _check_presigned_v2(
    request: Request, fields: dict[str, str], key: Key, *, now: datetime
) -> None:
    _own_key(fields["AWSAccessKeyId"], key)
    _v2_in_time(fields.get("Expires", ""), now)
    signature = fields["Signature"].encode()
    if not any(
        hmac.compare_digest(ours, signature) for ours in _v2_signatures(request, fields, key)
    ):
        raise _mismatch()


def _v2_in_time(expires: str, now: datetime) -> None:
    """Refuse a V2 URL that has expired or lives longer than a week from now."""
    until = _seconds(expires)
    if until is None or now.timestamp() > until:
        raise Refused("AccessDenied", "Request has expired")
    if until - now.timestamp() > MOST_EXPIRES:
        raise Refused("AccessDenied", "a presigned URL lives a week at most")


def _v2_signatures(request: Request, fields: dict[str, str], key: Key) -> list[bytes]:
    """The V2 signature (base64) of the path as sent and as decoded: signers differ in which they
    sign; either is bound to the key."""
    amz = sorted(
        (name, _trimmed(value)) for name, value in request.headers.items()
        if name.startswith("x-amz-")
    )  # fmt: skip
    sub = sorted((name, value) for name, value in fields.items() if name in _V2_SUBRESOURCES)
    query = "?" + "&".join(f"{n}={v}" if v else n for n, v in sub) if sub else ""
    head = (
        request.method,
        request.headers.get("content-md5", ""),
        request.headers.get("content-type", ""),
        fields.get("Expires", ""),
        *(f"{name}:{value}" for name, value in amz),
    )
    return [
        base64.b64encode(
            hmac.digest(key.secret_key.encode(), "\n".join((*head, path + query)).encode(), "sha1")
        )
        for path in dict.fromkeys((request.path, unquote(request.path)))
    ]


def _check_signature(
    request: Request,
    params: list[tuple[str, str]],
    key: Key,
    credential: str,
    signed_headers: list[str],
    signature: str,
    *,
    stamp: str,
    payload: str,
    now: datetime,
    presigned: bool,
) -> None:
    access_key, _, scope = credential.partition("/")
    _own_key(access_key, key)
    when = _when(stamp)
    parts = _scope_parts(scope, stamp)
    if not presigned and abs(now - when) > SKEW:
        raise Refused("RequestTimeTooSkewed", "the request's time is over 15 minutes from ours")
    canonical = _canonical_request(request, params, signed_headers, payload)
    string_to_sign = "\n".join(
        (ALGORITHM, stamp, scope, hashlib.sha256(canonical.encode()).hexdigest())
    )
    signing_key = f"AWS4{key.secret_key}".encode()
    for part in parts:
        signing_key = hmac.digest(signing_key, part.encode(), "sha256")
    expected = hmac.new(signing_key, string_to_sign.encode(), "sha256").hexdigest()
    if not hmac.compare_digest(expected.encode(), signature.encode()):
        raise _mismatch()


def _own_key(access_key: str, key: Key) -> None:
    """Refuse an access key that is not the run's (compared in constant time)."""
    if not hmac.compare_digest(access_key.encode(), key.access_key.encode()):
        raise Refused("InvalidAccessKeyId", "the access key is not this run's")


def _mismatch() -> Refused:
    return Refused(
        "SignatureDoesNotMatch",
        "The request signature we calculated does not match the signature you provided",
    )


def _scope_parts(scope: str, stamp: str) -> tuple[str, str, str, str]:
    """A SigV4 credential scope's day, region, service and terminator, checked against the
    request's date."""
    day, region, service, terminator = [*scope.split("/"), "", "", "", ""][:4]
    if day != stamp[:8] or service != "s3" or terminator != "aws4_request" or not region:
        raise Refused("AuthorizationHeaderMalformed", f"bad credential scope {scope!r}")
    return day, region, service, terminator


def _canonical_request(
    request: Request, params: list[tuple[str, str]], signed_headers: list[str], payload: str
) -> str:
    """SigV4's canonical request, once every signed header is there (host among them)."""
    if "host" not in signed_headers or any(name not in request.headers for name in signed_headers):
        raise Refused("AccessDenied", "a signed header is missing (host must be signed)")
    return "\n".join(
        (
            request.method,
            request.path or "/",
            _canonical_query(params),
            "".join(f"{name}:{_trimmed(request.headers[name])}\n" for name in signed_headers),
            ";".join(signed_headers),
            payload,
        )
    )


def _seconds(text: str) -> int | None:
    """A whole number of ASCII digits, at most 12 of them (never ``int()`` of a client's text:
    it reads ``²`` and 5,000 digits too), or None."""
    return int(text) if _DIGITS.fullmatch(text) else None


def _when(stamp: str) -> datetime:
    try:
        return datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    except ValueError:
        raise Refused("AccessDenied", "missing or malformed x-amz-date") from None


def _params(query: str) -> list[tuple[str, str]]:
    """The query's name/value pairs, decoded (``a&b=`` gives ``("a", "")`` twice over)."""
    pairs = (item.partition("=") for item in (query.split("&") if query else ()))
    return [(unquote(name), unquote(value)) for name, _, value in pairs]


def _canonical_query(params: list[tuple[str, str]]) -> str:
    encoded = sorted((_encode(name), _encode(value)) for name, value in params)
    return "&".join(f"{name}={value}" for name, value in encoded)


def _encode(text: str) -> str:
    return quote(text, safe="-_.~")


def _trimmed(value: str) -> str:
    return _SPACES.sub(" ", value.strip())


# a signature's own query parameters (a presigned URL's, V4 and V2): checked here, no part of
# the operation asked for
_SIGNING = frozenset(
    {"X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Date", "X-Amz-Expires", "X-Amz-SignedHeaders",
     "X-Amz-Signature", "X-Amz-Security-Token", "AWSAccessKeyId", "Signature", "Expires"}
)  # fmt: skip


def query_params(query: str) -> dict[str, str]:
    """The query as the S3 API reads it (the last value of a name wins), without a signature's
    own parameters."""
    return {name: value for name, value in _params(query) if name not in _SIGNING}
