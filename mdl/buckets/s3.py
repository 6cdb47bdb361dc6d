"""``s3://`` through boto3 (``mdl[s3]``, imported on use): a HEAD, then the engine fetches a
presigned GET URL (the store for the registry: ``mdl/buckets/_s3store.py``; writes:
``mdl/buckets/_s3write.py``).
"""

from __future__ import annotations

import base64
import logging
import os
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

from mdl.buckets.protocol import Mark, authorship, mark_text
from mdl.errors import AuthError, MdlError, NetworkError, NotFoundError, UsageError
from mdl.redact import Secrets, printable, safe_text

log = logging.getLogger("mdl.s3")
_T = TypeVar("_T")

EXTRA_HINT = "pip install 'mdl[s3]'"
# A presigned link must outlive the slowest download of one file (the engine cannot sign again);
# SigV4 allows up to 7 days, and temporary credentials end the link earlier anyway.
PRESIGN_SECONDS = 12 * 3600
# botocore's "standard" retries (503 SlowDown, 500s, resets, with backoff): 5 attempts unless
# AWS_MAX_ATTEMPTS says
RETRY_ATTEMPTS = 5
# Bucket names as S3 defines them (3-63 lowercase letters, digits, dots and hyphens, a letter or
# digit at both ends); compatibles that allow more (uppercase, underscores) are served by the same
# rule relaxed a little.
_BUCKET = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{1,61}[A-Za-z0-9]$")
# x-amz-meta-sha256: the full SHA-256 of what mdl uploads, for readers; never trusted to skip an
# upload (whoever can write the object can set it)
SHA256_META = "sha256"
# x-amz-meta-mdl: the mark of every object mdl uploads (a fill's, publish's), bound to its URI and
# bytes (protocol.mark_text): prune --mirror removes only objects whose mark is theirs
MARK_META = "mdl"


def mdl_metadata(uri: str, *, sha256: str, size: int, side: str) -> dict[str, str]:
    """The metadata of every object mdl uploads at ``uri``: its SHA-256 for readers, and mdl's
    mark (``side``: whose, ``side_of`` its model's origin)."""
    return {SHA256_META: sha256, MARK_META: mark_text(uri, sha256=sha256, size=size, side=side)}


def mark_of(uri: str, metadata: dict[str, str] | None, *, size: int) -> Mark | None:
    """mdl's mark on the S3 object ``uri`` (``size`` bytes) as its metadata says
    (``protocol.authorship`` decides). Names compare without case, as HTTP's fields do (RFC 9110
    §5.1): rclone's S3 answers ``Mdl``, AWS ``mdl``."""
    said = {name.lower(): value for name, value in (metadata or {}).items()}
    return authorship(said.get(MARK_META), where=uri, size=size, sha256=said.get(SHA256_META))


_MULTIPART_ETAG = re.compile(r'^"?[0-9a-fA-F]{32}-\d+"?$')
_NOT_FOUND = {"NoSuchBucket", "NoSuchKey", "NotFound", "404", "410"}
_DENIED = re.compile(
    r"AccessDenied|Forbidden|401|403|InvalidAccessKeyId|SignatureDoesNotMatch|ExpiredToken|InvalidToken"
    r"|TokenRefreshRequired|AllAccessDisabled|AccountProblem"
)


def is_bucket_name(name: str) -> bool:
    """Whether ``name`` can be a bucket (S3's rule, relaxed a little for compatibles)."""
    return bool(_BUCKET.match(name)) and ".." not in name


@dataclass(frozen=True)
class S3Object:
    bucket: str
    key: str

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


def parse_s3_uri(uri: str) -> S3Object:
    """``s3://bucket/key`` → the object; anything else (no key, a folder, a bad bucket name) is
    refused (exit 2).
    """
    shown = safe_text(uri)
    if not uri.startswith("s3://"):
        raise UsageError(f"{shown}: expected s3://bucket/key")
    bucket, _, key = uri[len("s3://") :].partition("/")
    if not _BUCKET.match(bucket) or ".." in bucket:
        raise UsageError(
            f"{shown}: {printable(bucket)!r} is not a bucket name; expected s3://bucket/key"
        )
    if not key:
        raise UsageError(f"{shown}: names a bucket, not an object; expected s3://bucket/key")
    if key.endswith("/"):
        raise UsageError(f"{shown}: names a folder, not an object; give the object's key")
    if printable(key) != key or len(key.encode("utf-8", "surrogatepass")) > 1024:
        raise UsageError(
            f"{shown}: not a valid object key (control characters, or longer than 1024 bytes)"
        )
    return S3Object(bucket, key)


@dataclass(frozen=True)
class S3Prefix:
    """A place in a bucket: ``s3://bucket`` or ``s3://bucket/some/prefix`` (``prefix`` without
    its slashes).
    """

    bucket: str
    prefix: str

    def key(self, *parts: str) -> str:
        return "/".join(p for p in (self.prefix, *parts) if p)

    def uri(self, *parts: str) -> str:
        return (
            f"s3://{self.bucket}/{self.key(*parts)}"
            if (self.prefix or parts)
            else f"s3://{self.bucket}"
        )


def parse_s3_prefix(uri: str, *, what: str = "--to") -> S3Prefix:
    """``s3://bucket[/prefix]`` → where to publish; a bad bucket, ``..`` or an empty segment is
    refused (exit 2).
    """
    shown = safe_text(uri)
    if not uri.startswith("s3://"):
        raise UsageError(f"{what}: expected s3://bucket/prefix, got {shown!r}")
    bucket, _, prefix = uri[len("s3://") :].partition("/")
    if not _BUCKET.match(bucket) or ".." in bucket:
        raise UsageError(f"{what}: {printable(bucket)!r} is not a bucket name in {shown!r}")
    prefix = prefix.strip("/")
    _check_prefix(S3Prefix(bucket, prefix), shown=shown, what=what)
    return S3Prefix(bucket, prefix)


def _check_prefix(place: S3Prefix, *, shown: str, what: str) -> None:
    """A prefix to publish under: plain segments, no template or URL, room left for keys."""
    prefix = place.prefix
    odd = prefix and any(seg in ("", ".", "..") for seg in prefix.split("/"))
    if odd or printable(prefix) != prefix:
        raise UsageError(
            f"{what}: {shown!r} has an empty, '.' or '..' segment or a control character"
        )
    if any(ch in prefix for ch in "{}?#"):
        there = f"s3://{place.bucket}/{prefix.split('{', 1)[0].rstrip('/')}"
        raise UsageError(
            f"{what}: {shown!r} is a template or a URL, not a place in a bucket",
            hint=f"publish to {there}; nodes pull with {there.rstrip('/')}/{{model}}/{{path}}",
        )
    # room left for <model>/<path> in a 1024-byte key
    if len(prefix.encode("utf-8", "surrogatepass")) > 512:
        raise UsageError(f"{what}: the prefix of {shown!r} is too long (at most 512 bytes)")


def s3_client(
    *,
    endpoint: str | None = None,
    secrets: Secrets | None = None,
    timeout: float = 60.0,
    retries: int | None = None,
) -> Any:
    """A botocore S3 client (boto3's own) from the standard credential chain (unsigned without
    credentials: public buckets; the secret ones registered in the run's ``secrets``).
    ``timeout``: to connect (at most 10 s) and to read; ``retries``: botocore's tries after the
    first, over AWS_MAX_ATTEMPTS."""
    try:
        import botocore.exceptions
        from botocore import UNSIGNED
        from botocore.config import Config
    except ImportError:
        raise UsageError(
            f"s3:// sources need boto3, which is not installed: {EXTRA_HINT}", hint=EXTRA_HINT
        ) from None
    try:
        session = _session()
        credentials = session.get_credentials()
    except botocore.exceptions.ProfileNotFound as exc:
        raise UsageError(f"S3: {exc}", hint="check AWS_PROFILE and ~/.aws/config") from None
    except botocore.exceptions.BotoCoreError as exc:
        raise AuthError(f"S3: cannot read the AWS credentials: {exc}") from None
    retrying: dict[str, Any] = {"mode": "standard"}
    if retries is not None or not os.environ.get("AWS_MAX_ATTEMPTS"):
        # botocore's max_attempts counts the tries after the first
        retrying["max_attempts"] = RETRY_ATTEMPTS if retries is None else retries
    options: dict[str, Any] = {
        "retries": retrying,
        "connect_timeout": min(timeout, 10.0),
        "read_timeout": timeout,
    }
    if credentials is None:
        log.info("S3: no AWS credentials found; asking unsigned (public buckets only)")
        options["signature_version"] = UNSIGNED
    else:
        frozen = credentials.get_frozen_credentials()
        if secrets is not None:
            secrets.add(frozen.secret_key)
            secrets.add(frozen.token)
        options["signature_version"] = "s3v4"
    try:
        client = session.create_client("s3", endpoint_url=endpoint, config=Config(**options))
    except ValueError as exc:  # botocore's "Invalid endpoint: …"
        where = "the endpoint" if endpoint else "AWS_ENDPOINT_URL[_S3] / ~/.aws/config"
        raise UsageError(f"S3: {where} is not a usable URL: {exc}") from None
    from mdl.buckets._s3replies import bound_replies

    bound_replies(client)
    return client


# AWS_DATA_PATH -> botocore's Loader, shared by every session of the process: each new session
# parses the endpoints and the S3 model again (~150 ms CPU a client, most of an s3:// command's
# CPU before its first request); botocore's own way to share them (register_component).
_LOADERS: dict[str | None, Any] = {}


def _session() -> Any:
    """A fresh botocore session (the environment and credential chain read now, as a new boto3
    session reads them), with the process's parsed models."""
    import botocore.loaders
    import botocore.session

    session = botocore.session.get_session()
    path = session.get_config_variable("data_path")
    loader = _LOADERS.get(path) or _LOADERS.setdefault(path, botocore.loaders.create_loader(path))
    session.register_component("data_loader", loader)
    return session


_THROTTLED = {"SlowDown", "Throttling", "ThrottlingException", "RequestLimitExceeded"}


def s3_error(exc: BaseException, *, what: str) -> MdlError:
    """A botocore failure as our error: missing bucket/key 4, denied 3, anything else 5."""
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        if type(exc).__name__ == "NoCredentialsError":
            return AuthError(
                f"{what}: no AWS credentials", hint="set AWS_PROFILE or AWS_ACCESS_KEY_ID"
            )
        if type(exc).__name__ == "Uncredentialed":  # (mdl.buckets._s3replies)
            return AuthError(
                f"{what}: {safe_text(str(exc), limit=300)}",
                hint="check the profile's credential_process, or log in again (aws sso login)",
            )
        return NetworkError(f"{what}: {safe_text(str(exc), limit=300)}")
    code, status = reply_code(exc)
    message = (response.get("Error") or {}).get("Message")
    detail = safe_text(str(message or code or status), limit=200)
    made = _error_for(code, status, what=what, detail=detail)
    made.status = status
    made.server_text = detail
    return made


def reply_code(exc: BaseException) -> tuple[str, int | None]:
    """A ClientError's S3 error code and HTTP status."""
    response = getattr(exc, "response", None) or {}
    code = str((response.get("Error") or {}).get("Code") or "")
    status = (response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
    return code, status if isinstance(status, int) else None


def given(reply: dict[str, Any], name: str, kind: type[_T], *, where: str) -> _T:
    """A field of a store's reply (botocore's parse of it), or NetworkError (exit 5) naming
    ``where``: a store that leaves out what S3 always sends, or sends something else, is not
    believed."""
    value = reply.get(name)
    if not isinstance(value, kind) or (isinstance(value, int) and value < 0):
        said = "no" if value is None else f"{printable(repr(value), limit=60)} for its"
        raise NetworkError(f"{where}: the store's reply has {said} {name}; nothing is done on it")
    return value


def reply_headers(reply: dict[str, Any]) -> dict[str, str]:
    """A reply's HTTP headers (lower-case names), as botocore keeps them."""
    headers = (reply.get("ResponseMetadata") or {}).get("HTTPHeaders") or {}
    return headers if isinstance(headers, dict) else {}


def reply_date(reply: dict[str, Any]) -> float | None:
    """The store's clock when it answered: the reply's ``Date`` (RFC 9110, every S3 reply has
    one); None: none, or not a date."""
    said = reply_headers(reply).get("date")
    try:
        return parsedate_to_datetime(said).timestamp() if said else None
    except (TypeError, ValueError):
        return None


def b64_of_hex(hex_digest: str) -> str:
    """A hex digest as S3's checksum headers carry it (base64)."""
    return base64.b64encode(bytes.fromhex(hex_digest)).decode("ascii")


def _error_for(code: str, status: object, *, what: str, detail: str) -> MdlError:
    """The error a store's reply (its error code, its HTTP status) stands for."""
    if code in _NOT_FOUND or status in (404, 410):
        return NotFoundError(f"{what}: not found ({detail})")
    if _DENIED.fullmatch(code) or status in (401, 403):
        return AuthError(
            f"{what}: access denied ({detail})",
            hint="check the credentials (AWS_PROFILE, AWS_ACCESS_KEY_ID) and the bucket's policy",
        )
    if code in _THROTTLED or status == 503:
        return NetworkError(f"{what}: the store is still throttling after its retries ({detail})")
    return NetworkError(f"{what}: the store refused ({detail})")


@contextmanager
def s3_errors(
    what: str, adjust: Callable[[BaseException, MdlError], MdlError] | None = None
) -> Iterator[None]:
    """botocore's failures as ours (``s3_error``), each passed through ``adjust``."""
    import botocore.exceptions

    try:
        yield
    except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
        error = s3_error(exc, what=what)
        raise (adjust(exc, error) if adjust else error) from None


def head_s3(client: Any, obj: S3Object) -> dict[str, Any]:
    """The object's metadata (size, ETag, checksum); a 404 says whether the bucket or the key is
    missing.
    """
    import botocore.exceptions

    def adjust(_: BaseException, error: MdlError) -> MdlError:
        # a HEAD reply has no body to say whether the bucket or the key is missing
        if isinstance(error, NotFoundError):
            try:
                client.head_bucket(Bucket=obj.bucket)
                missing = f"no such key in bucket {printable(obj.bucket)!r}"
            except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
                missing = "not found (no such key, or the bucket cannot be seen)"
                if isinstance(s3_error(exc, what=""), NotFoundError):
                    missing = f"no such bucket {printable(obj.bucket)!r}"
            error.message = f"{obj.uri}: {missing}"
            error.args = (error.message,)
        if (
            isinstance(error, AuthError)
            and client.meta.config.signature_version is botocore.UNSIGNED
        ):
            error.hint = (
                "no AWS credentials were found: set AWS_PROFILE, or"
                " AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY"
            )
        return error

    with s3_errors(obj.uri, adjust):
        head: dict[str, Any] = client.head_object(
            Bucket=obj.bucket, Key=obj.key, ChecksumMode="ENABLED"
        )
    return head


def sha256_of_head(head: dict[str, Any]) -> str | None:
    """The object's SHA-256 as hex when the store keeps a full-object one (a multipart object's
    is of its parts').
    """
    value = head.get("ChecksumSHA256")
    if not isinstance(value, str) or "-" in value or head.get("ChecksumType") == "COMPOSITE":
        return None
    # compatibles may leave both marks out: "<md5>-N" says it
    if _MULTIPART_ETAG.match(str(head.get("ETag") or "")):
        return None
    try:
        digest = base64.b64decode(value, validate=True)
    except ValueError:  # binascii.Error is one
        return None
    return digest.hex() if len(digest) == 32 else None


def presign_get(client: Any, obj: S3Object) -> str:
    with s3_errors(obj.uri):
        url: str = client.generate_presigned_url(
            "get_object", Params={"Bucket": obj.bucket, "Key": obj.key}, ExpiresIn=PRESIGN_SECONDS
        )
    return url


class S3Signer:
    """Presigned GETs for ``s3://`` mirror URLs at one endpoint: one client for the run (one costs
    tens of ms), made at the first.
    """

    def __init__(self, endpoint: str | None = None, *, secrets: Secrets | None = None) -> None:
        self._endpoint = endpoint
        self._secrets = secrets
        self._client: Any = None
        self._lock = threading.Lock()

    def presign(self, uri: str) -> str:
        """A presigned GET of ``uri`` (a bad key refused before boto3 is asked for)."""
        obj = parse_s3_uri(uri)
        with self._lock:
            if self._client is None:
                self._client = s3_client(endpoint=self._endpoint, secrets=self._secrets)
            client = self._client
        return presign_get(client, obj)
