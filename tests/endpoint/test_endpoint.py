"""``mdl serve`` as S3 clients see it: a real process on loopback serving a pulled model, read by
boto3 and the AWS CLI with nothing but the environment it printed. Listings, heads, ranges and
errors as S3 answers them; a request without the run's key, a write, a key that climbs out or a
file changed since it verified gets an S3 error and never a byte."""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest
from botocore.exceptions import ClientError
from runfixtures import HANG, wait_for
from serveproc import ServeProcess, isolated, model_catalog
from servers import CdnServer, make_data
from zygote import shared

from mdl.endpoint.server import MOST_CONNECTIONS

pytestmark = pytest.mark.slow

FILES = {
    "config.json": b'{"model_type": "bert"}',
    "model-00001-of-00002.safetensors": make_data(3 << 20, seed=1),
    "model-00002-of-00002.safetensors": make_data(2 << 20, seed=2),
    "sub/dir/tokenizer.json": b"{}" * 100,
}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    """A model pulled and served: every file verified before the first test asks."""
    folder = tmp_path_factory.mktemp("served")
    with CdnServer() as cdn:
        files = {name: (cdn.add_file(f"/o/{name}", data), data) for name, data in FILES.items()}
        env = isolated(folder, model_catalog(folder, files))
        with ServeProcess(folder, "m", "--pull", "--wait", "2", env=env) as serve:
            serve.ready()
            client = serve.boto3()
            for name in FILES:  # the pull ends: every file verified
                client.get_object(Bucket="mdl", Key=f"m/{name}", Range="bytes=0-0")
            yield serve
            assert serve.pulled().stop() == 0, serve.stderr


def test_the_environment_is_printed_on_stdout_and_in_a_file_only_the_user_reads(
    served: ServeProcess,
) -> None:
    assert served.stdout.splitlines()[0].startswith("export AWS_ENDPOINT_URL=http://127.0.0.1:")
    env = served.environment
    assert env["RUNAI_STREAMER_S3_USE_VIRTUAL_ADDRESSING"] == "0"
    assert int(env["RUNAI_STREAMER_S3_REQUEST_TIMEOUT_MS"]) > 2000  # past --wait 2
    assert served.env_file.stat().st_mode & 0o777 == 0o600
    assert env["AWS_SECRET_ACCESS_KEY"] not in served.stderr
    assert env["AWS_SECRET_ACCESS_KEY"] not in (served.folder / "mdl.log").read_text()
    assert "serving s3://mdl/m at http://127.0.0.1:" in served.stderr


def test_listings_as_s3_gives_them(served: ServeProcess) -> None:
    s3 = served.boto3()
    assert [b["Name"] for b in s3.list_buckets()["Buckets"]] == ["mdl"]
    listed = s3.list_objects_v2(Bucket="mdl", Prefix="m/")
    assert {o["Key"]: o["Size"] for o in listed["Contents"]} == {
        f"m/{name}": len(data) for name, data in FILES.items()
    }
    rolled = s3.list_objects_v2(Bucket="mdl", Prefix="m/", Delimiter="/")
    assert [p["Prefix"] for p in rolled["CommonPrefixes"]] == ["m/sub/"]
    assert len(rolled["Contents"]) == 3
    # one key a page: the continuation token walks them all, in order, once each
    keys, token = [], None
    while True:
        extra = {"ContinuationToken": token} if token else {}
        page = s3.list_objects_v2(Bucket="mdl", MaxKeys=1, **extra)
        keys += [o["Key"] for o in page.get("Contents", [])]
        if not page["IsTruncated"]:
            break
        token = page["NextContinuationToken"]
    assert keys == sorted(f"m/{name}" for name in FILES)
    assert s3.list_objects_v2(Bucket="mdl", Prefix="nothing/")["KeyCount"] == 0
    with pytest.raises(ClientError, match="NoSuchBucket"):
        s3.list_objects_v2(Bucket="other")


def test_heads_gets_and_ranges_are_the_verified_bytes(served: ServeProcess) -> None:
    s3 = served.boto3()
    name = "model-00001-of-00002.safetensors"
    data = FILES[name]
    head = s3.head_object(Bucket="mdl", Key=f"m/{name}")
    assert head["ContentLength"] == len(data)
    assert head["ETag"] == f'"{hashlib.sha256(data).hexdigest()}"'
    # boto3 checks the whole object's sha256 against the body, and a ranged answer carries none
    whole = s3.get_object(Bucket="mdl", Key=f"m/{name}", ChecksumMode="ENABLED")
    assert whole["Body"].read() == data
    assert whole["ChecksumSHA256"]
    for asked, want in (
        ("bytes=0-7", data[:8]),
        ("bytes=100-", data[100:]),
        ("bytes=-10", data[-10:]),
        (f"bytes=10-{1 << 40}", data[10:]),  # a huge end is the object's end
    ):
        got = s3.get_object(Bucket="mdl", Key=f"m/{name}", Range=asked, ChecksumMode="ENABLED")
        assert got["Body"].read() == want, asked
        assert "ChecksumSHA256" not in got
    with pytest.raises(ClientError, match="InvalidRange"):
        s3.get_object(Bucket="mdl", Key=f"m/{name}", Range=f"bytes={len(data)}-")
    with pytest.raises(ClientError, match="NoSuchKey"):
        s3.get_object(Bucket="mdl", Key="m/absent.bin")


def test_the_aws_cli_lists_copies_and_reads_a_range(served: ServeProcess, tmp_path: Path) -> None:
    listed = served.aws("s3", "ls", "--recursive", "s3://mdl/m/")
    assert listed.returncode == 0, listed.stderr
    assert "m/sub/dir/tokenizer.json" in listed.stdout
    copied = served.aws(
        "s3", "cp", "s3://mdl/m/model-00002-of-00002.safetensors", str(tmp_path / "w")
    )
    assert copied.returncode == 0, copied.stderr
    assert (tmp_path / "w").read_bytes() == FILES["model-00002-of-00002.safetensors"]
    ranged = served.aws("s3api", "get-object", "--bucket", "mdl", "--key", "m/config.json",
                        "--range", "bytes=2-11", str(tmp_path / "r"))  # fmt: skip
    assert ranged.returncode == 0, ranged.stderr
    assert (tmp_path / "r").read_bytes() == FILES["config.json"][2:12]
    synced = served.aws("s3", "sync", "s3://mdl/m/", str(tmp_path / "all"))
    assert synced.returncode == 0, synced.stderr
    assert (tmp_path / "all/sub/dir/tokenizer.json").read_bytes() == FILES["sub/dir/tokenizer.json"]


def test_another_key_an_unsigned_request_and_an_expired_url_are_refused(
    served: ServeProcess,
) -> None:
    import boto3

    env = served.environment
    for access, secret, code in (
        ("AKIDOTHERUSER", env["AWS_SECRET_ACCESS_KEY"], "InvalidAccessKeyId"),
        (env["AWS_ACCESS_KEY_ID"], "not-the-secret", "SignatureDoesNotMatch"),
    ):
        other = boto3.session.Session(
            aws_access_key_id=access, aws_secret_access_key=secret, region_name="us-east-1"
        ).client("s3", endpoint_url=served.url)
        with pytest.raises(ClientError, match=code):
            other.get_object(Bucket="mdl", Key="m/config.json")
    plain = httpx2.get(f"{served.url}/mdl/m/config.json")
    assert plain.status_code == 403
    assert b"<Code>AccessDenied</Code>" in plain.content
    assert FILES["config.json"] not in plain.content
    s3 = served.boto3()
    signed = s3.generate_presigned_url(
        "get_object", Params={"Bucket": "mdl", "Key": "m/config.json"}, ExpiresIn=60
    )
    assert httpx2.get(signed).content == FILES["config.json"]
    tampered = signed.replace("m/config.json", "m/sub/dir/tokenizer.json")
    assert httpx2.get(tampered).status_code == 403
    assert "AccessDenied" in served.stderr or "SignatureDoesNotMatch" in served.stderr


def test_writes_are_refused_and_change_nothing(served: ServeProcess) -> None:
    s3 = served.boto3()
    dest = served.folder / "models" / "m" / "config.json"
    before = dest.read_bytes()
    for call in (
        lambda: s3.put_object(Bucket="mdl", Key="m/config.json", Body=b"evil"),
        lambda: s3.put_object(Bucket="mdl", Key="m/new.bin", Body=b"evil"),
        lambda: s3.delete_object(Bucket="mdl", Key="m/config.json"),
        lambda: s3.create_multipart_upload(Bucket="mdl", Key="m/x"),
    ):
        with pytest.raises(ClientError, match="MethodNotAllowed"):
            call()
    assert dest.read_bytes() == before
    assert not (served.folder / "models" / "m" / "new.bin").exists()


@pytest.mark.parametrize(
    "path",
    [
        "/mdl/m/../m/config.json",
        "/mdl/m/%2e%2e/%2e%2e/catalog.toml",
        "/mdl/../catalog.toml",
        "/mdl/m//config.json",
        "/mdl/m/sub/dir/../../config.json",
        "/mdl/.mdl/records/m.json",
        "/mdl/m/%00",
        "/mdl/" + "a" * 5000,
    ],
)
def test_a_key_that_climbs_out_or_is_not_a_served_file_is_no_such_key(
    served: ServeProcess, path: str
) -> None:
    """Keys are matched against the served files, never joined to a path: nothing outside the
    model's files (the catalog, mdl's records) is readable by any spelling."""
    answer = _signed_get(served, path)
    assert answer.status_code in (400, 404, 414), answer.text
    if answer.status_code == 404:
        assert b"<Code>NoSuchKey</Code>" in answer.content
    assert b"[models.m]" not in answer.content and b'"files"' not in answer.content


def _signed_get(
    served: ServeProcess, path: str, *, absolute: bool = False, **headers: str
) -> httpx2.Response:
    """A GET of ``path`` exactly as written (no client normalises it), signed with the run's key
    the way botocore signs."""
    from botocore.auth import S3SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    env = served.environment
    url = served.url + path
    request = AWSRequest("GET", url, headers=headers)
    S3SigV4Auth(
        Credentials(env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]), "s3", "us-east-1"
    ).add_auth(request)
    host, port = served.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        target = served.url + path if absolute else path
        lines = [f"GET {target} HTTP/1.1", f"Host: {host}:{port}",
                 *(f"{k}: {v}" for k, v in request.headers.items()),
                 "Connection: close", "", ""]  # fmt: skip
        sock.sendall("\r\n".join(lines).encode())
        raw = b""
        while chunk := sock.recv(65536):
            raw += chunk
    head, _, body = raw.partition(b"\r\n\r\n")
    status = int(head.split()[1])
    return httpx2.Response(status, content=body)


def test_a_file_changed_or_swapped_for_a_link_after_it_verified_is_not_served(
    served: ServeProcess,
) -> None:
    s3 = served.boto3(attempts=1)  # each refusal waits out --wait 2 once, not again on a retry
    final = served.folder / "models" / "m" / "sub" / "dir" / "tokenizer.json"
    original = final.read_bytes()
    stamp = final.stat()
    try:
        final.write_bytes(b"[]" * 100)  # same size, other bytes, a new mtime
        with pytest.raises(ClientError, match="ServiceUnavailable"):
            s3.get_object(Bucket="mdl", Key="m/sub/dir/tokenizer.json")
        final.unlink()
        final.symlink_to(served.folder / "catalog.toml")
        with pytest.raises(ClientError) as refused:
            s3.get_object(Bucket="mdl", Key="m/sub/dir/tokenizer.json")
        assert b"[models" not in str(refused.value).encode()
    finally:
        final.unlink()
        final.write_bytes(original)
        os.utime(final, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    assert s3.get_object(Bucket="mdl", Key="m/sub/dir/tokenizer.json")["Body"].read() == original
    assert "ServiceUnavailable" in served.stderr  # a line per client error


def test_many_connections_at_once_get_answers_and_the_endpoint_goes_on(
    served: ServeProcess,
) -> None:
    """A loader's pool (run:ai opens ~180) is served; MOST_CONNECTIONS + 20 connections that say
    nothing neither keep a signed client out nor hang the endpoint: each, asked something
    unsigned, gets a 403 or was closed already (the oldest silent ones make room for newer, the
    rest close past their deadline: which is which is the kernel's accept order, not asserted)."""
    host, port = served.url.removeprefix("http://").split(":")
    idle = [
        socket.create_connection((host, int(port)), timeout=30)
        for _ in range(MOST_CONNECTIONS + 20)
    ]
    try:
        s3 = served.boto3(attempts=1)
        for name, data in FILES.items():  # while they are open
            assert s3.get_object(Bucket="mdl", Key=f"m/{name}")["Body"].read() == data
        for sock in idle[::37]:
            with contextlib.suppress(OSError):
                sock.sendall(b"GET /mdl/m/config.json HTTP/1.1\r\nHost: x\r\n\r\n")
            try:
                answer = sock.recv(4096)
            except ConnectionResetError:
                answer = b""
            assert answer.startswith(b"HTTP/1.1 403") or not answer, answer
    finally:
        for sock in idle:
            sock.close()
    # the endpoint serves on at once
    body = served.boto3(attempts=1).get_object(Bucket="mdl", Key="m/config.json")["Body"].read()
    assert body == FILES["config.json"]


def test_an_absolute_form_request_target_is_read_as_its_path(served: ServeProcess) -> None:
    """The AWS CRT client (run:ai's) sends ``GET http://host:port/mdl/key HTTP/1.1``, signed over
    the path: it is served (RFC 9112 3.2.2)."""
    answer = _signed_get(served, "/mdl/m/config.json", absolute=True)
    assert answer.status_code == 200, answer.content
    assert answer.content == FILES["config.json"]


def test_a_port_in_use_is_a_short_error_naming_it(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        catalog = model_catalog(tmp_path, {"a.bin": ("http://127.0.0.1:9/a.bin", b"x")})
        done = shared().spawn(
            ["serve", "m", "--port", str(port)], env=isolated(tmp_path, catalog), cwd=tmp_path,
            stdout=tmp_path / "out", stderr=tmp_path / "err",
        )  # fmt: skip
        out, err = done.communicate(timeout=120)
    assert done.returncode == 2
    assert f"port {port} on 127.0.0.1 is in use" in err.decode()
    assert "Traceback" not in err.decode()
    assert out == b""


def test_sigterm_and_ctrl_c_end_waiting_clients_at_once(tmp_path: Path) -> None:
    """A loader waiting on bytes that never come is answered (503) as soon as the endpoint stops,
    and the process exits 0: stopping a server is its normal end."""
    for sig in (signal.SIGTERM, signal.SIGINT):
        folder = tmp_path / str(int(sig))
        catalog = model_catalog(
            folder.mkdir() or folder, {"w.bin": ("http://127.0.0.1:9/w", b"x" * 10)}
        )
        with ServeProcess(folder, "m", "--wait", "600", env=isolated(folder, catalog)) as serve:
            # one attempt: a retry would find the endpoint gone (its 503 ends the connection)
            s3 = serve.ready().boto3(attempts=1, read_timeout=120)
            import threading

            failures: list[str] = []

            def read() -> None:
                try:
                    s3.get_object(Bucket="mdl", Key="m/w.bin")
                    failures.append("got bytes")
                except ClientError as exc:
                    failures.append(exc.response["Error"]["Code"])

            reader = threading.Thread(target=read)
            reader.start()
            log = folder / "mdl.log"
            wait_for(
                lambda: log.exists() and "a loader waits for m/w.bin" in log.read_text(),
                what="the GET to wait",
            )  # nothing pulls the file
            assert serve.stop(sig) == 0, serve.stderr  # (within HANG, or it fails saying so)
            reader.join(timeout=HANG)
            assert failures == ["ServiceUnavailable"]
            assert "Traceback" not in serve.stderr
            assert "stopped serving" in serve.stderr


def test_a_listing_before_any_byte_names_sizes_from_the_catalog(tmp_path: Path) -> None:
    catalog = model_catalog(tmp_path, {"w.bin": ("http://127.0.0.1:9/w", b"x" * 1234)})
    with ServeProcess(tmp_path, "m", "--wait", "0", env=isolated(tmp_path, catalog)) as serve:
        s3 = serve.ready().boto3()
        assert s3.head_object(Bucket="mdl", Key="m/w.bin")["ContentLength"] == 1234
        listed = s3.list_objects_v2(Bucket="mdl")["Contents"]
        assert [(o["Key"], o["Size"]) for o in listed] == [("m/w.bin", 1234)]
        with pytest.raises(ClientError, match="ServiceUnavailable"):
            s3.get_object(Bucket="mdl", Key="m/w.bin", Range="bytes=0-0")
        assert serve.stop() == 0


@pytest.mark.parametrize("pull", [False, True])
def test_a_stop_as_it_says_where_it_serves_is_a_stop_not_an_interruption(
    tmp_path: Path, pull: bool
) -> None:
    """Found (issue 89): ``serve.stop()`` right after the JSON document below ended 130, an
    interruption: the SIGTERM (a KeyboardInterrupt in mdl's process) came while the ready line
    was still being said. A stop heard once it says where it serves is a stop (0), pull or not."""
    from mdl import serve

    def stopped(served: object) -> None:
        raise KeyboardInterrupt  # the SIGTERM, heard as the endpoint is said

    catalog = model_catalog(tmp_path, {"w.bin": ("http://127.0.0.1:9/w", b"x")})
    try:
        report = serve(
            "m", port=0, pull=pull, environ=isolated(tmp_path, catalog), on_ready=stopped
        )
    except KeyboardInterrupt:  # (caught: one escaping would end the whole test run)
        pytest.fail("the stop escaped serve(): mdl serve ends 130, interrupted, not 0")
    assert (report.exit_code, report.pulled) == (0, None)


def test_the_json_document_names_the_endpoint(tmp_path: Path) -> None:
    import json

    catalog = model_catalog(tmp_path, {"w.bin": ("http://127.0.0.1:9/w", b"x")})
    with ServeProcess(tmp_path, "m", "--json", env=isolated(tmp_path, catalog)) as serve:
        serve.ready()
        wait_for(lambda: serve.stdout.endswith("\n"), what="the JSON document")
        doc = json.loads(serve.stdout)
        assert doc["ok"] is True
        assert doc["models"] == ["s3://mdl/m"]
        assert doc["environment"]["AWS_ENDPOINT_URL"] == doc["endpoint"] == serve.url
        assert serve.stop() == 0
    assert serve.stdout.count("\n") == 1  # the document is all of stdout
