"""``mdl get s3://…`` against a store that answers a ranged GET as ``rclone serve s3`` does: ``200
OK``, a Content-Range and only the range (issue 37). moto on 127.0.0.1 behind a WSGI filter that
turns its 206s into such 200s; a multipart object (its ETag ``"<md5>-N"``, no SHA-256), so mdl
probes the size and fetches ranges."""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from runfixtures import mdl
from s3server import REGION, aws_environ
from servers import make_data

MiB = 1 << 20


class RcloneStatus:
    """WSGI filter: a 206 from the store goes out as a 200 (headers and body unchanged);
    ``statuses`` lists the status of every presigned object GET as sent."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.statuses: list[tuple[str | None, str]] = []

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        presigned = environ["REQUEST_METHOD"] == "GET" and "X-Amz-Signature=" in environ.get(
            "QUERY_STRING", ""
        )

        def start(status: str, headers: Any, *exc: Any) -> Any:
            if status.startswith("206"):
                status = "200 OK"
            if presigned:
                self.statuses.append((environ.get("HTTP_RANGE"), status))
            return start_response(status, headers, *exc)

        return self.app(environ, start)


@pytest.fixture(scope="module")
def rclone_s3() -> Iterator[tuple[str, RcloneStatus]]:
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import make_server

    app = RcloneStatus(DomainDispatcherApplication(create_backend_app))
    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=MotoRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", app
    finally:
        server.shutdown()
        thread.join()


def put_multipart(endpoint: str, bucket: str, key: str, data: bytes, part: int) -> None:
    import boto3

    client = boto3.client("s3", endpoint_url=endpoint, region_name=REGION)
    client.create_bucket(Bucket=bucket)
    upload = client.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    parts = []
    for number, start in enumerate(range(0, len(data), part), start=1):
        reply = client.upload_part(
            Bucket=bucket,
            Key=key,
            UploadId=upload,
            PartNumber=number,
            Body=data[start : start + part],
        )
        parts.append({"ETag": reply["ETag"], "PartNumber": number})
    client.complete_multipart_upload(
        Bucket=bucket, Key=key, UploadId=upload, MultipartUpload={"Parts": parts}
    )


@pytest.mark.slow
@pytest.mark.parametrize("size", [12 * MiB, 40 * MiB], ids=["one-stream", "parallel"])
def test_get_of_a_multipart_object_from_a_store_answering_ranges_with_200(
    rclone_s3: tuple[str, RcloneStatus], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, size: int
) -> None:
    endpoint, app = rclone_s3
    for name in [n for n in os.environ if n.startswith("AWS_")]:
        monkeypatch.delenv(name)
    # test keys, the loopback endpoint, no metadata service
    for name, value in aws_environ(endpoint).items():
        monkeypatch.setenv(name, value)
    data = make_data(size, seed=3710 + size % 97)
    bucket = f"rclone-{size // MiB}"
    put_multipart(endpoint, bucket, "model.bin", data, part=6 * MiB)
    app.statuses.clear()
    out = tmp_path / "out" / "model.bin"
    result = mdl(
        "get", f"s3://{bucket}/model.bin", "-o", str(out), "--connections", "4", "--no-progress"
    )
    assert result.exit_code == 0, result.stderr
    assert hashlib.sha256(out.read_bytes()).digest() == hashlib.sha256(data).digest()
    ranged = [status for asked, status in app.statuses if asked is not None]
    streams = 2 if size > 32 * MiB else 1  # one stream: its one request asks bytes=0- all the same
    assert len(ranged) >= streams and all(status.startswith("200") for status in ranged), (
        app.statuses
    )
    assert "descriptor" not in result.stderr
