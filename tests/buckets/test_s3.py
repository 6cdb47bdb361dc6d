"""mdl/buckets/s3.py: s3:// URIs, the client from the standard AWS chain, checksums and secrets
(real moto server).
"""

from __future__ import annotations

import base64
import hashlib

import pytest
from s3server import S3, SECRET_KEY, s3, s3_server  # noqa: F401

from mdl.buckets.s3 import S3Object, head_s3, parse_s3_uri, s3_client, s3_error, sha256_of_head
from mdl.errors import AuthError, NetworkError, NotFoundError, UsageError
from mdl.redact import REDACTED, Secrets, safe_text
from mdl.sources.joboutput import UrlFile
from mdl.sources.oneoff import parse_sources


def s3_source(uri: str, *, named: bool = False) -> UrlFile:
    """``mdl get``'s reading of one s3:// SOURCE (through the store registry)."""
    [item] = parse_sources([uri], read_text=str, named=named)
    assert isinstance(item, UrlFile)
    return item


@pytest.mark.parametrize(
    ("uri", "bucket", "key"),
    [
        ("s3://my-bucket/a.bin", "my-bucket", "a.bin"),
        (
            "s3://my.bucket/deep/er/key with space.safetensors",
            "my.bucket",
            "deep/er/key with space.safetensors",
        ),
        ("s3://abc/x?y#z", "abc", "x?y#z"),  # keys are literal, as for the AWS CLI
    ],
)
def test_parse(uri: str, bucket: str, key: str) -> None:
    assert parse_s3_uri(uri) == S3Object(bucket, key)
    assert parse_s3_uri(uri).uri == uri


@pytest.mark.parametrize(
    "uri",
    [
        *(
            "s3:/b/k",
            "S3://bucket/k",
            "s3://",
            "s3://bucket",
            "s3://bucket/",
            "s3://ab/k",
            "s3://-ab/k",
            "s3://a..b/k",
        ),
        *(
            "s3://bucket/dir/",
            "s3://bucket/a\x1bb",
            "s3://bucket/" + "k" * 1025,
            "s3://" + "b" * 64 + "/k",
        ),
    ],
)
def test_parse_refuses(uri: str) -> None:
    with pytest.raises(UsageError):
        parse_s3_uri(uri)


def test_sha256_of_head() -> None:
    digest = hashlib.sha256(b"x").digest()
    value = base64.b64encode(digest).decode()
    assert sha256_of_head({"ChecksumSHA256": value}) == digest.hex()
    assert sha256_of_head({"ChecksumSHA256": value, "ChecksumType": "FULL_OBJECT"}) == digest.hex()
    assert sha256_of_head({"ChecksumSHA256": value + "-3"}) is None, (
        "a composite of parts is not the file's sha256"
    )
    assert sha256_of_head({"ChecksumSHA256": value, "ChecksumType": "COMPOSITE"}) is None
    assert sha256_of_head({"ChecksumSHA256": "not base64!"}) is None
    assert sha256_of_head({}) is None


def test_source_from_a_real_head(s3: S3) -> None:  # noqa: F811
    s3.put("bucket-a", "m/w.bin", b"weights", ChecksumAlgorithm="SHA256")
    item = s3_source("s3://bucket-a/m/w.bin")
    assert (item.filename, item.size, item.sha256, item.where) == (
        "w.bin",
        7,
        hashlib.sha256(b"weights").hexdigest(),
        "s3://bucket-a/m/w.bin",
    )
    assert item.url is not None and "X-Amz-Signature=" in item.url
    assert safe_text(item.url).endswith("?" + REDACTED)
    assert s3_source("s3://bucket-a/m/w.bin", named=True).filename == ""


def test_secret_key_and_session_token_are_registered(
    s3: S3,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_SESSION_TOKEN", "session-token-value-123456")
    s3_client(secrets=(secrets := Secrets()))
    assert SECRET_KEY not in safe_text(f"oops {SECRET_KEY}", secrets=secrets)
    assert "session-token-value-123456" not in safe_text(
        "token session-token-value-123456 here", secrets=secrets
    )


def test_a_second_client_parses_no_model_yet_reads_the_environment_anew(
    s3: S3,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each client is a new session (credentials and endpoint read from the environment as it is
    now), but botocore's models are parsed once a process: the files it opens are counted."""
    import botocore.loaders

    opened: list[str] = []
    load_file = botocore.loaders.JSONFileLoader.load_file

    def counted(self: object, file_path: str) -> object:
        opened.append(file_path)
        return load_file(self, file_path)  # type: ignore[arg-type]

    monkeypatch.setattr(botocore.loaders.JSONFileLoader, "load_file", counted)
    s3.put("bucket-n", "k", b"v")
    assert head_s3(s3_client(), S3Object("bucket-n", "k"))["ContentLength"] == 1
    opened.clear()
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "another-secret-key/0123456789abcdefghij")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # the discard port
    client = s3_client(secrets=(secrets := Secrets()))
    said = safe_text("a another-secret-key/0123456789abcdefghij", secrets=secrets)
    assert "another-secret-key" not in said  # the credential as the environment says it now
    assert client.meta.endpoint_url == "http://127.0.0.1:9"
    assert opened == []  # no endpoints.json, no S3 model read again


def test_endpoint_override_wins(s3: S3, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    s3.put("bucket-b", "k", b"v")
    # the discard port: nothing answers there
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    client = s3_client(endpoint=s3.endpoint)
    assert head_s3(client, S3Object("bucket-b", "k"))["ContentLength"] == 1


def test_endpoint_for_s3_only(s3: S3, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    s3.put("bucket-c", "k", b"v")
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3.endpoint)
    assert head_s3(s3_client(), S3Object("bucket-c", "k"))["ContentLength"] == 1


def test_no_credentials_asks_unsigned(s3: S3, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    s3.put("bucket-d", "public.bin", b"open data", ACL="public-read")
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    item = s3_source("s3://bucket-d/public.bin")
    assert item.url is not None and "X-Amz-Signature" not in item.url
    assert item.size == 9
    s3.put("bucket-d", "private.bin", b"closed")
    with pytest.raises(AuthError) as denied:
        s3_source("s3://bucket-d/private.bin")
    assert "no AWS credentials were found" in (denied.value.hint or "")


def test_error_mapping() -> None:
    def client_error(code: str, status: int) -> Exception:
        import botocore.exceptions

        response = {
            "Error": {"Code": code, "Message": "msg"},
            "ResponseMetadata": {"HTTPStatusCode": status},
        }
        return botocore.exceptions.ClientError(response, "GetObject")  # type: ignore[arg-type]

    assert isinstance(s3_error(client_error("NoSuchKey", 404), what="w"), NotFoundError)
    assert isinstance(s3_error(client_error("NoSuchBucket", 404), what="w"), NotFoundError)
    assert isinstance(s3_error(client_error("AccessDenied", 403), what="w"), AuthError)
    assert isinstance(s3_error(client_error("InvalidAccessKeyId", 403), what="w"), AuthError)
    slow = s3_error(client_error("SlowDown", 503), what="w")
    assert type(slow) is NetworkError and slow.status == 503
    assert type(s3_error(client_error("InternalError", 500), what="w")) is NetworkError
