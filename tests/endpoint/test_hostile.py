"""``mdl serve`` under attack: a real process on 127.0.0.1, pulling a model whose origin holds one
file half-sent forever and serves another corrupt, read by raw sockets, botocore's signers, boto3
and the AWS CLI. Each test holds one promise: only verified bytes leave; nothing outside the served
files is readable by any spelling of a key or Host; only the run's key reads; nothing is written;
hostile HTTP gets an S3 error or a closed connection and the endpoint goes on serving without
spinning; a signal ends it promptly; its environment is enough for a loader and its secret stays
off stderr and the log; a bad flag is a short error naming it.

A test that fails here names a defect (see each one's docstring): the promise is written as the
test, not bent to what the code does today."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
import unittest.mock
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial as partial_fn
from pathlib import Path

import pytest
from botocore.auth import HmacV1QueryAuth, S3SigV4Auth, S3SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError
from runfixtures import HANG, wait_for
from serveproc import (
    AWS_ISOLATION,
    ServeProcess,
    UnsignedFlood,
    aws_cli,
    isolated,
    model_catalog,
    serve_in_process,
)
from servers import CdnServer, Fault, make_data

from mdl.endpoint.server import MOST_CONNECTIONS, REFUSALS_SAID

pytestmark = pytest.mark.slow

FILES = {
    "config.json": b'{"model_type": "bert"}',
    "big.bin": make_data(24 << 20, seed=21),  # more than loopback's socket buffers hold
    "empty.txt": b"",
    "sub/dir/tokenizer.json": b"{}" * 100,
    "caf\u00e9.txt": b"a name in NFC",
}
# the origin sends half of it, then nothing while the module runs: a file forever downloading
STALLED = make_data(2 << 20, seed=22)
# the catalog expects BAD; the origin sends CORRUPT (same size, other bytes)
BAD = make_data(1 << 20, seed=23)
CORRUPT = make_data(1 << 20, seed=24)
OUTSIDE = b"OUTSIDE-THE-MODEL: never served " * 8
# a stretch of each set of bytes that must never be in an answer
FORBIDDEN = (OUTSIDE[:32], STALLED[:64], STALLED[-64:], CORRUPT[:64], b"[models.m]", b'"files"')


# ------------------------------------------------------------------------------------------------
# the wire
# ------------------------------------------------------------------------------------------------


@dataclass
class Reply:
    """One HTTP answer as it came off the wire (status 0: closed without a byte)."""

    status: int
    reason: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    def s3_error(self, *codes: str) -> str:
        """The S3 error code of this answer, asserting it is an S3 XML error document."""
        assert self.headers.get("content-type") == "application/xml", (self.status, self.headers)
        assert self.body.startswith(b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>'), (
            self.body[:200]
        )
        code = self.body.split(b"<Code>", 1)[1].split(b"</Code>", 1)[0].decode()
        if codes:
            assert code in codes, (code, self.body[:300])
        return code


def _replies(raw: bytes, heads: Sequence[bool] = ()) -> list[Reply]:
    """The answers in ``raw`` (one after another on a connection); ``heads[i]``: the i-th answers
    a HEAD (its Content-Length says the object's, and no body follows)."""
    found: list[Reply] = []
    while raw:
        head, sep, rest = raw.partition(b"\r\n\r\n")
        if not sep:
            raise AssertionError(f"a cut answer: {raw[:200]!r}")
        lines = head.decode("latin-1").split("\r\n")
        version, status, *reason = lines[0].split(" ", 2)
        assert version.startswith("HTTP/"), lines[0]
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        is_head = heads[len(found)] if len(found) < len(heads) else False
        length = 0 if is_head else int(headers.get("content-length", len(rest)))
        found.append(Reply(int(status), reason[0] if reason else "", headers, rest[:length]))
        raw = rest[length:]
    return found


def _reply(raw: bytes, *, head: bool = False) -> Reply:
    if not raw:
        return Reply(0)
    (only,) = _replies(raw, [head])
    return only


def _request(
    method: str,
    target: str,
    headers: Sequence[tuple[str, str]] = (),
    *,
    version: str = "HTTP/1.1",
    close: bool = True,
    body: bytes = b"",
) -> bytes:
    lines = [f"{method} {target} {version}", *(f"{k}: {v}" for k, v in headers)]
    if close:
        lines.append("Connection: close")
    return ("\r\n".join([*lines, "", ""])).encode("latin-1") + body


# ------------------------------------------------------------------------------------------------
# the served process, shared by the module
# ------------------------------------------------------------------------------------------------


@dataclass
class Site:
    """The module's ``mdl serve m --pull``: its process, folder, environment and origin."""

    serve: ServeProcess
    folder: Path
    env: dict[str, str]
    cdn: CdnServer

    @property
    def netloc(self) -> str:
        return self.serve.url.removeprefix("http://")

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.netloc.split(":")
        return host, int(port)

    @property
    def credentials(self) -> Credentials:
        env = self.serve.environment
        return Credentials(env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"])

    @property
    def secret(self) -> str:
        return self.serve.environment["AWS_SECRET_ACCESS_KEY"]

    @property
    def log(self) -> str:
        path = self.folder / "mdl.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def exchange(self, data: bytes, *, timeout: float = HANG) -> bytes:
        """Send ``data`` on a fresh connection and read until the endpoint closes it."""
        chunks = []
        with socket.create_connection(self.address, timeout=timeout) as sock:
            with contextlib.suppress(OSError):  # it may close before all is sent
                sock.sendall(data)
            while True:
                try:
                    chunk = sock.recv(1 << 20)
                except ConnectionResetError:
                    break
                if not chunk:
                    break
                chunks.append(chunk)
        return b"".join(chunks)

    def signed(
        self,
        method: str,
        target: str,
        *,
        host: str | None = None,
        headers: dict[str, str] | None = None,
        when: datetime | None = None,
        credentials: Credentials | None = None,
    ) -> list[tuple[str, str]]:
        """The headers botocore sends for ``method target`` (SigV4 with the run's key)."""
        host = host or self.netloc
        request = AWSRequest(method, f"http://{host}{target}", headers=dict(headers or {}))
        signer = S3SigV4Auth(credentials or self.credentials, "s3", "us-east-1")
        with _clock(when):
            signer.add_auth(request)
        return [("Host", host), *request.headers.items()]

    def get(self, target: str, *, method: str = "GET", **headers: str) -> Reply:
        """A signed request of ``target``, its one answer."""
        data = _request(method, target, self.signed(method, target, headers=headers))
        return _reply(self.exchange(data), head=method == "HEAD")

    def presigned(
        self, target: str, *, expires: int = 300, when: datetime | None = None, v2: bool = False
    ) -> str:
        """``target`` with a presigned query (SigV4, or V2 as boto3's generate_presigned_url)."""
        request = AWSRequest("GET", f"http://{self.netloc}{target}")
        signer = (
            HmacV1QueryAuth(self.credentials, expires=expires)
            if v2
            else S3SigV4QueryAuth(self.credentials, "s3", "us-east-1", expires=expires)
        )
        with _clock(when):
            signer.add_auth(request)
        parts = urllib.parse.urlsplit(request.url)
        return f"{parts.path}?{parts.query}"

    def plain(self, target: str, headers: Sequence[tuple[str, str]] = ()) -> Reply:
        """An unsigned GET (only Host besides ``headers``)."""
        return _reply(self.exchange(_request("GET", target, [("Host", self.netloc), *headers])))


@contextlib.contextmanager
def _clock(when: datetime | None) -> Iterator[None]:
    """botocore's signing clock at ``when`` (UTC), or left alone."""
    if when is None:
        yield
        return
    naive = when.astimezone(UTC).replace(tzinfo=None)
    with unittest.mock.patch("botocore.auth.get_current_datetime", return_value=naive):
        yield


def _verified(site: Site, name: str) -> bool:
    reply = site.get(f"/mdl/m/{urllib.parse.quote(name)}")
    return reply.status == 200 and reply.body == FILES[name]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """``mdl serve m --pull --wait 1 -v``: every file of FILES verified, ``zz-stalled.bin`` half
    on disk and never more, ``bad.bin`` corrupt at the origin. Stopped at the end by Ctrl-C while
    its pull still runs: exit 130, no traceback."""
    folder = tmp_path_factory.mktemp("hostile")
    held = threading.Event()
    with CdnServer() as cdn:
        try:
            files = {
                name: (cdn.add_file(f"/o/f{i}", data), data)
                for i, (name, data) in enumerate(FILES.items())
            }
            files["bad.bin"] = (cdn.add_file("/o/bad", CORRUPT), BAD)
            files["zz-stalled.bin"] = (cdn.add_file("/o/stalled", STALLED), STALLED)
            cdn.faults.add(
                Fault.stall(after_bytes=len(STALLED) // 2, until=held, times=None,
                            path_prefix="/o/stalled")
            )  # fmt: skip
            (folder / "outside.txt").write_bytes(OUTSIDE)
            env = isolated(folder, model_catalog(folder, files))
            serve = ServeProcess(folder, "m", "--pull", "--wait", "1", "--stall-timeout", "600",
                                 "-v", env=env)  # fmt: skip
            with serve:
                serve.ready()
                site = Site(serve, folder, env, cdn)
                for name in FILES:
                    wait_for(partial_fn(_verified, site, name), what=f"{name} verified")
                partial = folder / "models" / ".mdl" / "partial"
                wait_for(
                    lambda: any(
                        p.stat().st_size >= len(STALLED) // 2
                        for p in partial.glob("*stalled*.part")
                    ),
                    what="half of zz-stalled.bin on disk",
                )
                yield site
                assert serve.stop(signal.SIGINT) == 130, serve.stderr  # its pull still runs
                assert "Traceback" not in serve.stderr
        finally:
            held.set()


# ------------------------------------------------------------------------------------------------
# the environment
# ------------------------------------------------------------------------------------------------


def test_the_printed_environment_alone_is_enough_for_boto3_and_the_aws_cli(site: Site) -> None:
    """stdout is exactly the export lines, the env file holds the same (mode 600), and a shell that
    sources it, with no other AWS setting, reads with boto3 (no endpoint passed in code) and the
    AWS CLI; the secret is not on stderr."""
    aws = aws_cli()
    exports = site.serve.stdout.splitlines()
    assert exports == site.serve.env_file.read_text().splitlines()
    assert all(line.startswith("export ") for line in exports)
    assert site.serve.env_file.stat().st_mode & 0o777 == 0o600
    assert site.secret not in site.serve.stderr
    assert site.secret not in site.log
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MDL_"))}
    base = {**base, **AWS_ISOLATION, "HOME": str(site.folder / "home")}
    base["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), base.get("PATH", "")])
    script = (
        f". {shlex.quote(str(site.serve.env_file))}\n"
        f"{shlex.quote(sys.executable)} -c 'import boto3, sys; "
        'sys.stdout.buffer.write(boto3.client("s3").get_object(Bucket="mdl", '
        'Key="m/config.json")["Body"].read())\'\n'
        "echo\n"
        f"{shlex.quote(aws)} s3 cp s3://mdl/m/sub/dir/tokenizer.json -\n"
    )
    done = subprocess.run(
        ["bash", "-c", script], env=base, capture_output=True, timeout=HANG, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == FILES["config.json"] + b"\n" + FILES["sub/dir/tokenizer.json"]


# ------------------------------------------------------------------------------------------------
# only verified bytes
# ------------------------------------------------------------------------------------------------


def test_a_file_still_downloading_is_a_503_after_the_wait_and_never_a_byte(site: Site) -> None:
    for reply in (
        site.get("/mdl/m/zz-stalled.bin"),
        site.get("/mdl/m/zz-stalled.bin", Range="bytes=0-0"),
        site.get("/mdl/m/zz-stalled.bin", Range="bytes=-1"),
        site.plain(site.presigned("/mdl/m/zz-stalled.bin", v2=True)),
    ):
        assert reply.status == 503
        reply.s3_error("ServiceUnavailable")
        assert b"not verified yet" in reply.body
        assert not any(piece in reply.body for piece in FORBIDDEN)
    head = site.get("/mdl/m/zz-stalled.bin", method="HEAD")
    assert head.status == 200 and head.body == b""
    assert head.headers["content-length"] == str(len(STALLED))  # the size, known beforehand


def test_a_corrupt_origin_never_yields_a_byte(site: Site) -> None:
    for ask in ({}, {"Range": "bytes=0-1023"}):
        reply = site.get("/mdl/m/bad.bin", **ask)
        assert reply.status in (403, 503), reply
        reply.s3_error("ServiceUnavailable", "InvalidObjectState")
        assert CORRUPT[:64] not in reply.body and BAD[:64] not in reply.body
    assert not (site.folder / "models" / "m" / "bad.bin").exists()


def test_no_file_on_disk_is_readable_by_its_own_path_but_the_verified_ones(site: Site) -> None:
    """Every file under the run's folder (the catalog, mdl's records and partial downloads, the
    log, the env file, a file beside the models), asked for by its path from the folder, from the
    destination, from the model and by its name alone: only a verified file's own key answers, with
    its own bytes."""
    served = {f"m/{name}": data for name, data in FILES.items()}
    models = site.folder / "models"
    asked: set[str] = set()
    for path in site.folder.rglob("*"):
        if not path.is_file() or (site.folder / "home") in path.parents:
            continue
        rel, name = path.relative_to(site.folder).as_posix(), path.name
        keys = {rel, f"m/{rel}", f"m/../{rel}", f"m/{name}", name}
        if models in path.parents:
            in_dest = path.relative_to(models).as_posix()
            keys |= {in_dest, f"m/{in_dest}", f"m/../{in_dest}"}
        for key in keys - asked:
            asked.add(key)
            if key in ("m/zz-stalled.bin", "m/bad.bin"):
                continue  # waited on: the tests above
            reply = site.get("/mdl/" + urllib.parse.quote(key))
            if key in served:
                assert (reply.status, reply.body) == (200, served[key]), key
                continue
            assert reply.status == 404, (key, reply.status)
            reply.s3_error("NoSuchKey")
            assert not any(piece in reply.body for piece in FORBIDDEN), key
            assert site.secret.encode() not in reply.body
    assert len(asked) > 20


def _other_file(site: Site, size: int, stamp: os.stat_result) -> Path:
    other = site.folder / "planted.bin"
    other.unlink(missing_ok=True)
    other.write_bytes(b"P" * size)
    os.utime(other, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    return other


def _swap_fifo(final: Path, site: Site, stamp: os.stat_result) -> None:
    os.mkfifo(final)


def _swap_directory(final: Path, site: Site, stamp: os.stat_result) -> None:
    final.mkdir()


def _swap_symlink(final: Path, site: Site, stamp: os.stat_result) -> None:
    final.symlink_to(_other_file(site, stamp.st_size, stamp))


def _swap_hardlink(final: Path, site: Site, stamp: os.stat_result) -> None:
    os.link(_other_file(site, stamp.st_size, stamp), final)


def _swap_truncated(final: Path, site: Site, stamp: os.stat_result) -> None:
    final.write_bytes(FILES["sub/dir/tokenizer.json"][:10])


def _swap_grown(final: Path, site: Site, stamp: os.stat_result) -> None:
    final.write_bytes(FILES["sub/dir/tokenizer.json"] + b"P" * 10)


@pytest.mark.parametrize(
    "swap",
    [_swap_fifo, _swap_directory, _swap_symlink, _swap_hardlink, _swap_truncated, _swap_grown],
    ids=lambda swap: swap.__name__.removeprefix("_swap_"),
)  # fmt: skip
def test_a_verified_file_replaced_after_it_verified_is_never_served(site: Site, swap) -> None:  # type: ignore[no-untyped-def]
    """The file replaced by a FIFO, a folder, a link to another file of its size and mtime (soft
    or hard), truncated or grown (all with the mtime it verified with): its key answers an S3 error (no byte of the other
    file), and its own bytes again once it is back."""
    final = site.folder / "models" / "m" / "sub" / "dir" / "tokenizer.json"
    stamp = final.stat()
    aside = final.with_name("tokenizer.json.aside")
    os.rename(final, aside)
    try:
        swap(final, site, stamp)
        with contextlib.suppress(OSError):  # the mtime it verified with, where it can be set
            os.utime(final, ns=(stamp.st_atime_ns, stamp.st_mtime_ns), follow_symlinks=False)
        with ThreadPoolExecutor(2) as pool:  # both wait --wait (1 s) at once
            asked = [{}, {"Range": "bytes=0-3"}]
            replies = list(pool.map(lambda ask: site.get("/mdl/m/sub/dir/tokenizer.json", **ask),
                                    asked))  # fmt: skip
        for reply in replies:
            assert reply.status == 503, (reply.status, reply.body[:100])
            reply.s3_error("ServiceUnavailable")
            assert b"PPPP" not in reply.body
    finally:
        if final.is_dir() and not final.is_symlink():
            final.rmdir()
        else:
            final.unlink(missing_ok=True)
        os.rename(aside, final)
    assert _verified(site, "sub/dir/tokenizer.json")


@pytest.mark.xfail(
    strict=True,
    reason="known limit: a verified file is told by its record's (size, mtime), as pull, list and "
    "verify --quick tell it; bytes rewritten with both kept back are not caught",
)
@pytest.mark.parametrize("how", ["in-place", "renamed-over"])
def test_a_file_rewritten_with_its_size_and_mtime_kept_is_not_served(site: Site, how: str) -> None:
    """KNOWN LIMIT (xfail). The bytes of a verified file changed after it verified, with its size kept and its
    mtime set back (``os.utime``; ``cp -p``, ``rsync --inplace -t`` and ``touch -r`` do so), are
    served as verified: the endpoint tells "the file that verified" by (size, mtime) alone, though
    the ctime (which no user can set) and, when renamed over, the inode both changed."""
    final = site.folder / "models" / "m" / "config.json"
    stamp = final.stat()
    original = final.read_bytes()
    aside = final.with_name("config.json.aside")
    try:
        if how == "in-place":
            with final.open("r+b") as handle:
                handle.write(b"P" * len(original))
        else:
            os.rename(final, aside)
            final.write_bytes(b"P" * len(original))
        os.utime(final, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
        ranged = site.get("/mdl/m/config.json", Range="bytes=0-3")
        whole = site.get("/mdl/m/config.json")
    finally:
        if how == "in-place":
            final.write_bytes(original)
            os.utime(final, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
        else:
            final.unlink()
            os.rename(aside, final)
    assert _verified(site, "config.json")
    assert b"PPPP" not in ranged.body, f"{ranged.status}: unverified bytes {ranged.body!r} served"
    assert b"PPPP" not in whole.body, f"{whole.status}: unverified bytes {whole.body!r} served"


@pytest.mark.skipif(os.geteuid() != 0, reason="gives a file to another user: needs root")
def test_another_users_file_in_a_verified_files_place_is_not_served(site: Site) -> None:
    """The limit above does not reach a file another user owns that a co-tenant who may write the
    model's folder put in a verified file's place, its size and mtime kept: it is not served."""
    final = site.folder / "models" / "m" / "config.json"
    stamp, original = final.stat(), final.read_bytes()
    aside = final.with_name("config.json.aside")
    os.rename(final, aside)
    try:
        final.write_bytes(b"P" * len(original))
        os.chown(final, 12345, 12345)
        os.utime(final, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
        whole = site.get("/mdl/m/config.json")
    finally:
        final.unlink()
        os.rename(aside, final)
    assert b"PPPP" not in whole.body, f"{whole.status}: another user's bytes {whole.body!r} served"
    assert _verified(site, "config.json")


# ------------------------------------------------------------------------------------------------
# nothing outside by any key spelling
# ------------------------------------------------------------------------------------------------


def _spellings() -> list[tuple[str, str | None, str | None]]:
    """(target, Host (None: the endpoint's), the served file it names or None)."""
    return [
        ("/mdl/m/%2e%2e/%2e%2e/outside.txt", None, None),
        ("/mdl/m/%2E%2E%2F%2E%2E%2Foutside.txt", None, None),
        ("/mdl/m/..%2f..%2foutside.txt", None, None),
        ("/mdl/m/..%5c..%5coutside.txt", None, None),
        ("/mdl/m/..\\..\\outside.txt", None, None),
        ("/mdl/m\\..\\..\\outside.txt", None, None),
        ("/mdl/m/%00/../../outside.txt", None, None),
        ("/mdl/m/config.json%00", None, None),
        ("/mdl/m/config.json%00.txt", None, None),
        ("/mdl/m/%EF%BC%8E%EF%BC%8E/%EF%BC%8E%EF%BC%8E/outside.txt", None, None),  # fullwidth ．．
        ("/mdl/m/%E2%80%A5/%E2%80%A5/outside.txt", None, None),  # ‥ (two dot leader)
        ("/mdl/m/..%E2%88%95..%E2%88%95outside.txt", None, None),  # ∕ (division slash)
        ("/mdl/m/..%C0%AF..%C0%AFoutside.txt", None, None),  # overlong UTF-8 "/"
        ("/mdl/m/cafe%CC%81.txt", None, None),  # NFD of the served NFC name
        ("/mdl/m/CONFIG.JSON", None, None),
        ("/mdl/m/caf%C3%A9.txt", None, "caf\u00e9.txt"),
        ("/mdl/m%2Fconfig.json", None, "config.json"),  # an encoded "/" is a "/" in a key
        ("/mdl/m//config.json", None, None),
        ("/mdl//m/config.json", None, None),
        ("/mdl/m/./config.json", None, None),
        ("/mdl/m/sub/./dir/tokenizer.json", None, None),
        ("/mdl/m/sub//dir/tokenizer.json", None, None),
        ("/mdl//etc/passwd", None, None),
        ("/mdl/m//etc/passwd", None, None),
        ("/mdl/m/%2Fetc%2Fpasswd", None, None),
        ("/mdl/%2Fetc%2Fpasswd", None, None),
        ("/mdl/m/.mdl/records/m.json", None, None),
        ("/mdl/.mdl/records/m.json", None, None),
        ("/mdl/m/../.mdl/records/m.json", None, None),
        ("/mdl/m/" + "a" * 60000, None, None),
        ("/mdl/m/" + "../" * 20000 + "outside.txt", None, None),
        ("/mdl/m/config.json/", None, None),
        ("/mdl/m/config.json/.", None, None),
        ("/mdl/m/sub", None, None),
        ("/mdl/m/sub/", None, None),
        ("/mdl/m/", None, None),
        # virtual-hosted names: the whole path is the key
        ("/m/config.json", "mdl.127.0.0.1:{port}", "config.json"),
        ("/../outside.txt", "mdl.127.0.0.1:{port}", None),
        ("/m/../../outside.txt", "mdl.127.0.0.1:{port}", None),
        ("/%2e%2e/outside.txt", "mdl.localhost:{port}", None),
        ("/mdl/m/config.json", "mdl.localhost:{port}", None),
        ("/mdl/../outside.txt", "other.localhost:{port}", None),
        ("/mdl/m/config.json", "other.localhost:{port}", "config.json"),
        ("/config.json", "m.mdl.localhost", None),
        ("/mdl/m/../../outside.txt", "localhost:{port}", None),
    ]


@pytest.mark.parametrize(
    ("target", "host", "names"), _spellings(), ids=lambda v: str(v)[:40] if v else "-"
)
def test_no_key_spelling_and_no_host_reads_anything_but_the_file_it_names_exactly(
    site: Site, target: str, host: str | None, names: str | None
) -> None:
    netloc = host.format(port=site.address[1]) if host else site.netloc
    data = _request("GET", target, site.signed("GET", target, host=netloc))
    reply = _reply(site.exchange(data))
    assert not any(piece in reply.body for piece in FORBIDDEN)
    if names is not None:
        assert (reply.status, reply.body) == (200, FILES[names])
        return
    # signed right, so refused only by the lookup: the key is not a served file's
    assert reply.status == 404, (reply.status, reply.body[:200])
    reply.s3_error("NoSuchKey", "NoSuchBucket")
    assert not any(data and data in reply.body for data in FILES.values() if len(data) > 4)


def test_an_absolute_form_request_target_reads_nothing_outside(site: Site) -> None:
    """``GET http://host/path`` (the AWS CRT client's form) is read as its path: the file it names
    when it names one exactly, nothing outside by any spelling, another host in it changes
    nothing."""
    for netloc, path, names in (
        (site.netloc, "/mdl/m/config.json", "config.json"),
        (site.netloc, "/mdl/../outside.txt", None),
        (site.netloc, "/mdl/m/../../catalog.toml", None),
        (site.netloc, "/mdl/m/%2e%2e/%2e%2e/outside.txt", None),
        ("evil.example:80", "/mdl/m/../../outside.txt", None),
        (site.netloc, "//mdl/m/../../outside.txt", None),
    ):
        target = f"http://{netloc}{path}"
        reply = _reply(site.exchange(_request("GET", target, site.signed("GET", path))))
        assert not any(piece in reply.body for piece in FORBIDDEN), target
        if names is not None:
            assert (reply.status, reply.body) == (200, FILES[names])
            continue
        assert reply.status == 404, (target, reply.status)
        reply.s3_error("NoSuchKey", "NoSuchBucket")


# ------------------------------------------------------------------------------------------------
# only the run's key
# ------------------------------------------------------------------------------------------------


def _refused(reply: Reply, *codes: str) -> None:
    assert reply.status == 403, (reply.status, reply.body[:300])
    reply.s3_error(*codes)
    assert FILES["config.json"] not in reply.body
    assert not any(piece in reply.body for piece in FORBIDDEN)


def test_unsigned_requests_are_403_for_every_operation(site: Site) -> None:
    for target in ("/", "/mdl", "/mdl/", "/mdl?list-type=2", "/mdl?location", "/mdl/m/config.json",
                   "/other/x", "/mdl/m/absent"):  # fmt: skip
        _refused(site.plain(target), "AccessDenied")
    head = _reply(
        site.exchange(_request("HEAD", "/mdl/m/config.json", [("Host", site.netloc)])), head=True
    )
    assert head.status == 403 and head.body == b""


def test_another_key_or_the_right_id_with_another_secret_is_refused(site: Site) -> None:
    ident = site.credentials.access_key
    for credentials, code in (
        (Credentials("MDL0123456789ABCDEF", site.secret), "InvalidAccessKeyId"),
        (Credentials(ident, "x" * 40), "SignatureDoesNotMatch"),
        (Credentials(ident, site.secret[:-1]), "SignatureDoesNotMatch"),
        (Credentials(ident.lower(), site.secret), "InvalidAccessKeyId"),
    ):
        target = "/mdl/m/config.json"
        headers = site.signed("GET", target, credentials=credentials)
        _refused(_reply(site.exchange(_request("GET", target, headers))), code)


def test_a_replayed_request_with_anything_signed_changed_is_refused(site: Site) -> None:
    target = "/mdl/m/big.bin"
    good = site.signed("GET", target, headers={"Range": "bytes=0-0"})
    ok = _reply(site.exchange(_request("GET", target, good)))
    assert (ok.status, ok.body) == (206, FILES["big.bin"][:1])
    # the same request again is accepted (as S3 does within its clock skew)
    assert _reply(site.exchange(_request("GET", target, good))).status == 206

    def changed(name: str, value: str) -> list[tuple[str, str]]:
        return [(k, value if k.lower() == name else v) for k, v in good]

    for method, path, headers in (
        ("GET", target, changed("range", "bytes=0-1048575")),
        ("GET", "/mdl/m/config.json", good),
        ("GET", target + "?x=1", good),
        ("GET", "/mdl/m/big.bin/", good),
        ("GET", "/mdl/m/big%2Ebin", good),
        ("GET", target, changed("host", f"localhost:{site.address[1]}")),
        ("GET", target, changed("x-amz-date", "20300101T000000Z")),
        ("GET", target, [(k, v) for k, v in good if k.lower() != "range"]),
        ("DELETE", target, good),
        ("PUT", target, good),
    ):
        _refused(_reply(site.exchange(_request(method, path, headers))),
                 "SignatureDoesNotMatch", "AccessDenied", "RequestTimeTooSkewed",
                 "AuthorizationHeaderMalformed")  # fmt: skip
    head = _reply(site.exchange(_request("HEAD", target, good)), head=True)
    assert head.status == 403


def test_a_request_signed_out_of_the_clock_skew_is_refused(site: Site) -> None:
    for shift in (timedelta(minutes=-20), timedelta(minutes=20), timedelta(days=-400)):
        target = "/mdl/m/config.json"
        headers = site.signed("GET", target, when=datetime.now(UTC) + shift)
        _refused(_reply(site.exchange(_request("GET", target, headers))), "RequestTimeTooSkewed")


@pytest.mark.parametrize(
    "authorization",
    [
        "",
        "AWS4-HMAC-SHA256",
        "AWS4-HMAC-SHA256 Credential=",
        "aws4-hmac-sha256 Credential={ident}/20260101/us-east-1/s3/aws4_request, "
        "SignedHeaders=host, Signature=" + "0" * 64,
        "AWS {ident}:c2lnbmF0dXJl",
        "Bearer {secret}",
        "Basic " + "QUtJRDpzZWNyZXQ=",
        "AWS4-HMAC-SHA256 Credential={ident}/x/y/z/w, SignedHeaders=host, Signature=" + "f" * 64,
        "AWS4-HMAC-SHA256 Credential={ident}/20260101/us-east-1/s3/aws4_request, "
        "SignedHeaders=, Signature=" + "0" * 64,
        "AWS4-HMAC-SHA256 " + "A" * 60000,
        "AWS4-HMAC-SHA256 Credential=\u00e9\u00e9, SignedHeaders=host, Signature=" + "0" * 64,
    ],
    ids=lambda v: v[:30] or "empty",
)
def test_a_broken_or_odd_authorization_header_is_refused(site: Site, authorization: str) -> None:
    value = authorization.format(ident=site.credentials.access_key, secret=site.secret)
    signed = dict(site.signed("GET", "/mdl/m/config.json"))
    headers = [(k, v) for k, v in signed.items() if k != "Authorization"]
    reply = _reply(
        site.exchange(_request("GET", "/mdl/m/config.json", [*headers, ("Authorization", value)]))
    )
    _refused(reply)


def test_a_duplicated_authorization_header_is_refused(site: Site) -> None:
    """Two Authorization headers, whichever comes first, are refused: an ambiguous request (a proxy
    in front may read the first) is never read as one of them."""
    signed = dict(site.signed("GET", "/mdl/m/config.json"))
    good = signed.pop("Authorization")
    broken = "AWS4-HMAC-SHA256 Credential=someone-else"
    headers = list(signed.items())
    for order, pair in (
        ("signed, then broken", (good, broken)),
        ("broken, then signed", (broken, good)),
        ("signed twice", (good, good)),
    ):
        sent = [*headers, *(("Authorization", value) for value in pair)]
        reply = _reply(site.exchange(_request("GET", "/mdl/m/config.json", sent)))
        assert reply.status == 403, f"{reply.status} to two Authorization headers ({order})"
        _refused(reply)


def test_presigned_urls_work_and_tampered_or_expired_ones_are_refused(site: Site) -> None:
    target = "/mdl/m/config.json"
    for v2 in (False, True):
        url = site.presigned(target, v2=v2)
        assert site.plain(url).body == FILES["config.json"]
        path, _, query = url.partition("?")
        params = urllib.parse.parse_qsl(query, keep_blank_values=True)

        def with_param(
            name: str, value: str, params: list[tuple[str, str]] = params, path: str = path
        ) -> str:
            return (
                path
                + "?"
                + urllib.parse.urlencode([(n, value if n == name else v) for n, v in params])
            )

        signature = "Signature" if v2 else "X-Amz-Signature"
        flipped = dict(params)[signature]
        flipped = ("B" if flipped[0] != "B" else "C") + flipped[1:]
        tampered = [
            url.replace("config.json", "sub/dir/tokenizer.json"),
            url.replace("/mdl/m/", "/mdl/m/../m/"),
            with_param(signature, flipped),
            with_param(signature, ""),
        ]
        if v2:
            tampered += [
                with_param("Expires", str(int(time.time()) + 3600)),
                with_param("AWSAccessKeyId", "MDL0123456789ABCDEF"),
                site.presigned(target, v2=True, expires=-60),  # expired
                site.presigned(target, v2=True, expires=8 * 24 * 3600),  # over a week
            ]
        else:
            tampered += [
                with_param("X-Amz-Expires", "604800"),
                with_param(
                    "X-Amz-Date",
                    (datetime.now(UTC) - timedelta(hours=1)).strftime("%Y%m%dT%H%M%SZ"),
                ),
                with_param("X-Amz-Algorithm", "AWS4-HMAC-SHA1"),
                with_param("X-Amz-SignedHeaders", "host;range"),
                with_param(
                    "X-Amz-Credential", "MDL0123456789ABCDEF/20260101/us-east-1/s3/aws4_request"
                ),
                with_param("X-Amz-Expires", "604801"),
                with_param("X-Amz-Expires", "0"),
                with_param("X-Amz-Expires", "-5"),
                site.presigned(target, expires=60, when=datetime.now(UTC) - timedelta(hours=2)),
                url + "&list-type=2",
            ]
        for bad in tampered:
            _refused(site.plain(bad))
        # the presigned GET used as a HEAD, or with a method it did not sign
        for method in ("HEAD", "DELETE", "PUT"):
            raw = site.exchange(_request(method, url, [("Host", site.netloc)]))
            assert _reply(raw, head=method == "HEAD").status == 403, (method, v2)


def test_a_presigned_url_dated_in_the_future_does_not_outlive_a_week(site: Site) -> None:
    """Fixed defect, as found: A SigV4 presigned URL whose X-Amz-Date is a year ahead is accepted now, and stays
    valid for a year and a week: the endpoint checks only that it has not expired, never that it is
    not valid yet (S3: AccessDenied "Request is not valid yet"), so "of at most 7 days" does not
    hold. (The skew check covers the Authorization header only.)"""
    for ahead in (timedelta(days=365), timedelta(days=8)):
        url = site.presigned("/mdl/m/config.json", expires=604800, when=datetime.now(UTC) + ahead)
        reply = site.plain(url)
        assert reply.status == 403, f"a URL dated {ahead.days} days ahead: {reply.status}"
        _refused(reply)


@pytest.mark.parametrize(
    "query",
    [
        "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Signature=00&X-Amz-Expires=%C2%B2",
        "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Signature=00&X-Amz-Expires=" + "9" * 5000,
        "AWSAccessKeyId={ident}&Signature=00&Expires=%C2%B2",
        "AWSAccessKeyId={ident}&Signature=00&Expires=" + "9" * 5000,
    ],
    ids=["v4-expires-superscript-2", "v4-expires-5000-digits", "v2-expires-superscript-2",
         "v2-expires-5000-digits"],
)  # fmt: skip
def test_a_presigned_query_with_a_number_python_cannot_parse_is_a_403(
    site: Site, query: str
) -> None:
    """Fixed defect, as found: ``X-Amz-Expires`` (or V2 ``Expires``) that ``str.isdigit`` accepts but ``int``
    does not (``²``, or more than 4300 digits) raises ValueError inside the signature check: an
    unsigned client gets the connection closed without the S3 403, and the -v log a traceback."""
    before = len(site.log)
    target = "/mdl/m/config.json?" + query.format(ident=site.credentials.access_key)
    reply = site.plain(target)
    assert reply.status == 403, f"answered {reply.status} (0: closed without a byte)"
    _refused(reply)
    assert "Traceback" not in site.log[before:]


# ------------------------------------------------------------------------------------------------
# never a write
# ------------------------------------------------------------------------------------------------


def _tree(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


def test_writes_of_every_kind_are_405_or_403_and_change_nothing(site: Site) -> None:
    model = site.folder / "models" / "m"
    before = _tree(model)
    s3 = site.serve.boto3()
    calls: list[Callable[[], object]] = [
        lambda: s3.put_object(Bucket="mdl", Key="m/config.json", Body=b"evil"),
        lambda: s3.put_object(Bucket="mdl", Key="m/new.bin", Body=b"e" * (2 << 20)),
        lambda: s3.put_object(Bucket="mdl", Key="m/../../outside.txt", Body=b"evil"),
        lambda: s3.delete_object(Bucket="mdl", Key="m/config.json"),
        lambda: s3.delete_objects(Bucket="mdl", Delete={"Objects": [{"Key": "m/config.json"}]}),
        lambda: s3.copy_object(Bucket="mdl", Key="m/copy.bin", CopySource="mdl/m/config.json"),
        lambda: s3.create_multipart_upload(Bucket="mdl", Key="m/x"),
        lambda: s3.upload_part(Bucket="mdl", Key="m/x", UploadId="1", PartNumber=1, Body=b"x"),
        lambda: s3.complete_multipart_upload(
            Bucket="mdl",
            Key="m/x",
            UploadId="1",
            MultipartUpload={"Parts": [{"ETag": '"x"', "PartNumber": 1}]},
        ),
        lambda: s3.abort_multipart_upload(Bucket="mdl", Key="m/x", UploadId="1"),
        lambda: s3.create_bucket(Bucket="mdl2"),
        lambda: s3.delete_bucket(Bucket="mdl"),
        lambda: s3.put_bucket_policy(Bucket="mdl", Policy="{}"),
        lambda: s3.put_object_acl(Bucket="mdl", Key="m/config.json", ACL="public-read"),
    ]
    for call in calls:
        with pytest.raises(ClientError) as refused:
            call()
        assert refused.value.response["Error"]["Code"] == "MethodNotAllowed"
        assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 405
    # unsigned writes, and a chunked body, are refused before anything is looked at
    for method, headers, body in (
        ("PUT", [("Content-Length", "4")], b"evil"),
        ("PUT", [("Transfer-Encoding", "chunked")], b"4\r\nevil\r\n0\r\n\r\n"),
        ("POST", [("Content-Length", "0")], b""),
        ("DELETE", [], b""),
    ):
        raw = site.exchange(
            _request(method, "/mdl/m/config.json", [("Host", site.netloc), *headers], body=body)
        )
        _refused(_reply(raw), "AccessDenied")
    assert _tree(model) == before
    planted = [p for p in site.folder.rglob("*") if p.name in ("new.bin", "copy.bin", "x")]
    assert planted == []
    assert (site.folder / "outside.txt").read_bytes() == OUTSIDE


# ------------------------------------------------------------------------------------------------
# hostile HTTP
# ------------------------------------------------------------------------------------------------


def _serves_still(site: Site) -> None:
    assert _verified(site, "config.json")


def test_ranges_huge_multiple_or_malformed_get_an_s3_answer(site: Site) -> None:
    data = FILES["big.bin"]
    size = len(data)
    cases = {
        "bytes=0-99999999999999999999": (206, data),
        "bytes=-99999999999999999999": (206, data),
        f"bytes={size - 1}-99999999999999999999": (206, data[-1:]),
        "bytes=99999999999999999999-": (416, None),
        "bytes=99999999999999999999-99999999999999999999": (416, None),
        f"bytes={size}-": (416, None),
        "bytes=-0": (416, None),
        "bytes=0-1,4-5": (200, data),
        "bytes=0-0,-1": (200, data),
        "bytes=abc": (200, data),
        "bytes=": (200, data),
        "bytes=-": (200, data),
        "bytes=--1": (200, data),
        "bytes=0-1-2": (200, data),
        "items=0-1": (200, data),
        "bytes=\u0661-\u0662": (200, data),  # Arabic-Indic digits are not digits of a range
        "bytes=1\u00b2-": (200, data),
    }
    for asked, (status, body) in cases.items():
        target = "/mdl/m/big.bin"
        encoded = asked.encode("utf-8").decode("latin-1")
        headers = site.signed("GET", target, headers={"Range": encoded})
        reply = _reply(site.exchange(_request("GET", target, headers)))
        assert reply.status == status, (asked, reply.status, reply.body[:200])
        if body is None:
            reply.s3_error("InvalidRange")
        else:
            assert reply.body == body, asked
    _serves_still(site)


@pytest.mark.parametrize(
    ("name", "target", "headers"),
    [
        ("range-5000-digits", "/mdl/m/config.json", {"Range": "bytes=0-" + "9" * 5000}),
        ("max-keys-superscript", "/mdl?list-type=2&max-keys=%C2%B2", {}),
        ("max-keys-5000-digits", "/mdl?list-type=2&max-keys=" + "9" * 5000, {}),
    ],
    ids=["range-5000-digits", "max-keys-superscript-2", "max-keys-5000-digits"],
)
def test_a_signed_number_python_cannot_parse_gets_an_s3_answer(
    site: Site, name: str, target: str, headers: dict[str, str]
) -> None:
    """Fixed defect, as found: A Range end or a ``max-keys`` that ``str.isdigit``/``\\d`` accept but ``int`` does
    not (``²``, over 4300 digits) raises ValueError in the S3 answer: the loader's connection is
    closed without an answer (S3 ignores such a Range; a bad ``max-keys`` is 400 InvalidArgument,
    as docs/serving.md says), and the -v log gets a traceback."""
    before = len(site.log)
    reply = _reply(
        site.exchange(_request("GET", target, site.signed("GET", target, headers=headers)))
    )
    assert reply.status in (200, 206, 400, 416), f"{name}: {reply.status} (0: closed)"
    if reply.status >= 400:
        reply.s3_error()
    assert "Traceback" not in site.log[before:]
    _serves_still(site)


@pytest.mark.parametrize(
    ("name", "data"),
    [
        # (Connection: close: the answer is read to the end, not to the idle deadline)
        ("PATCH", _request("PATCH", "/mdl/m/config.json", [("Host", "h"), ("Content-Length", "0")])),
        ("OPTIONS", _request("OPTIONS", "/mdl/m/config.json", [("Host", "h")])),
        ("COPY", _request("COPY", "/mdl/m/config.json", [("Host", "h"), ("Destination", "/mdl/m/x")])),
        ("MKCOL", _request("MKCOL", "/mdl/m/newdir", [("Host", "h")])),
        ("many-headers", b"GET / HTTP/1.1\r\n" + b"".join(b"X-%d: y\r\n" % i for i in range(150))
         + b"\r\n"),
        ("header-too-long", b"GET / HTTP/1.1\r\nX-Big: " + b"a" * 70000 + b"\r\n\r\n"),
    ],
    ids=["PATCH", "OPTIONS", "COPY", "MKCOL", "many-headers", "header-too-long"],
)  # fmt: skip
def test_what_the_http_layer_refuses_is_an_s3_error_or_a_close(
    site: Site, name: str, data: bytes
) -> None:
    """Fixed defect, as found: A method the endpoint has no handler for (PATCH, OPTIONS, WebDAV's COPY, MKCOL) gets
    http.server's 501 HTML page, and too many or too long headers its 431 HTML page: not an S3
    error document ("Every refusal is an S3 XML error document"), nor a 405 for a write."""
    reply = _reply(site.exchange(data))
    assert reply.status != 200
    if reply.status:
        assert "html" not in reply.headers.get("content-type", ""), (
            f"{name}: {reply.status} {reply.reason} as {reply.headers.get('content-type')}"
        )
        reply.s3_error()
    _serves_still(site)


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("http-2.0", b"GET /mdl/m/config.json HTTP/2.0\r\n\r\n"),
        ("bad-version", b"GET /mdl/m/config.json HTTP/1.x\r\n\r\n"),
        ("tls-hello", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(256))
         + b"\r\n\r\n"),
        ("request-line-too-long", b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n"),
        ("one-word", b"HELLO\r\n\r\n"),
    ],
    ids=["http-2.0", "bad-version", "tls-hello", "request-line-too-long", "one-word"],
)  # fmt: skip
def test_a_malformed_request_line_is_refused_without_a_crash(
    site: Site, name: str, data: bytes
) -> None:
    """Fixed defect, as found: A request line http.server cannot parse (HTTP/2.0, a bad version, TLS bytes, one
    over 64 KiB) makes its send_error call the endpoint's ``log_request``, which reads
    ``self.path`` before it exists: AttributeError, the connection dropped without the answer
    the endpoint says on stderr it gave ("code 414, message Request-URI Too Long"), and a
    traceback in the -v log."""
    before = len(site.log)
    reply = _reply(site.exchange(data))
    assert reply.status != 200 and FILES["config.json"] not in reply.body
    _serves_still(site)
    new = site.log[before:]
    if "Traceback" in new:
        lines = new[new.index("Traceback") :].splitlines()
        block = lines[: next((i for i, line in enumerate(lines) if line[:2] == "20"), None)]
        raised = [line for line in block if re.match(r"\w+(Error|Exception): ", line)][-1:]
        raise AssertionError(f"{name}: the endpoint crashed answering it: {raised}")


def test_garbage_and_binary_bytes_are_refused_and_it_goes_on(site: Site) -> None:
    for data in (b"\x00" * 100 + b"\r\n\r\n", b"\r\n\r\n", b"GET\r\n\r\n",
                 b"GET / HTTP/1.1\r\n: x\r\nConnection: close\r\n\r\n",
                 # binary ended by a blank line: refused as the block ends, not closed at the
                 # 10 s request deadline (a block that never ends: the slowloris test here, and
                 # test_serve_face's cut request)
                 bytes(range(256)) * 10 + b"\r\n\r\n"):  # fmt: skip
        reply = _reply(site.exchange(data, timeout=HANG))
        assert reply.status != 200 and FILES["config.json"] not in reply.body
    _serves_still(site)


def test_a_body_on_a_get_is_never_read_nor_taken_for_another_request(site: Site) -> None:
    """A signed GET carrying a body (Content-Length, or chunked) that is itself a signed request:
    one answer, then the connection closes; the request in the body is never answered."""
    inner_target = "/mdl/m/sub/dir/tokenizer.json"
    inner = _request("GET", inner_target, site.signed("GET", inner_target))
    target = "/mdl/m/config.json"
    chunked = b"%x\r\n" % len(inner) + inner + b"\r\n0\r\n\r\n"
    for extra, body in (
        ([("Content-Length", str(len(inner)))], inner),
        ([("Transfer-Encoding", "chunked")], chunked),
        ([("Content-Length", str(len(inner))), ("Content-Length", "0")], inner),
    ):
        headers = [*site.signed("GET", target), *extra]
        replies = _replies(site.exchange(_request("GET", target, headers, close=False, body=body)))
        answered = [(r.status, r.body) for r in replies]
        if len([name for name, _ in extra if name == "Content-Length"]) > 1:
            # two lengths: refused whole (RFC 9112 6.3: an error), the body never a request
            assert [status for status, _ in answered] == [400], extra
        else:
            assert answered == [(200, FILES["config.json"])], extra
    _serves_still(site)


def test_a_body_behind_a_duplicated_content_length_is_not_taken_for_a_request(site: Site) -> None:
    """Fixed defect (low), as found: ``Content-Length: 0`` then ``Content-Length: N``: the endpoint reads the
    first to decide the connection may go on, so the N body bytes are parsed as the next request
    and answered (here a signed GET of another file). A request whose length is ambiguous should
    be refused (400) or end the connection, as a body with one Content-Length does: a proxy in
    front that reads the other length sees other requests than the endpoint (smuggling)."""
    inner_target = "/mdl/m/sub/dir/tokenizer.json"
    inner = _request("GET", inner_target, site.signed("GET", inner_target))
    target = "/mdl/m/config.json"
    headers = [*site.signed("GET", target), ("Content-Length", "0"),
               ("Content-Length", str(len(inner)))]  # fmt: skip
    replies = _replies(site.exchange(_request("GET", target, headers, close=False, body=inner)))
    assert len(replies) <= 1, [(r.status, r.body[:40]) for r in replies]
    assert all(r.body != FILES["sub/dir/tokenizer.json"] for r in replies)


def test_pipelined_requests_are_answered_in_order_until_one_is_refused(site: Site) -> None:
    """Pipelined requests are answered in order; a refused one (unsigned, a bad argument…) is
    answered with ``Connection: close`` and ends the connection: what follows it is never read."""
    sent = [
        ("GET", "/mdl/m/config.json", True),
        ("HEAD", "/mdl/m/big.bin", True),
        ("GET", "/mdl/m/sub/dir/tokenizer.json", True),
        ("GET", "/mdl/m/config.json", False),  # unsigned: refused, the connection ends
        ("GET", "/mdl/m/sub/dir/tokenizer.json", True),
    ]
    data = b""
    for i, (method, target, signed) in enumerate(sent):
        headers = site.signed(method, target) if signed else [("Host", site.netloc)]
        data += _request(method, target, headers, close=i == len(sent) - 1)
    replies = _replies(site.exchange(data), [m == "HEAD" for m, _, _ in sent])
    assert [r.status for r in replies] == [200, 200, 200, 403]
    assert replies[0].body == FILES["config.json"]
    assert replies[1].headers["content-length"] == str(len(FILES["big.bin"]))
    assert replies[2].body == FILES["sub/dir/tokenizer.json"]
    replies[3].s3_error("AccessDenied")
    assert replies[3].headers["connection"] == "close"
    signed_404 = _request("GET", "/mdl/m/absent", site.signed("GET", "/mdl/m/absent"), close=False)
    again = _request("GET", "/mdl/m/config.json", site.signed("GET", "/mdl/m/config.json"))
    # a key that is not there is a client's everyday question, no refusal: the connection goes on
    replies = _replies(site.exchange(signed_404 + again))
    assert [r.status for r in replies] == [404, 200]
    assert replies[1].body == FILES["config.json"]


def test_http_1_0_and_0_9_requests(site: Site) -> None:
    target = "/mdl/m/config.json"
    raw = site.exchange(_request("GET", target, site.signed("GET", target), version="HTTP/1.0",
                                 close=False))  # fmt: skip
    assert (_reply(raw).status, _reply(raw).body) == (200, FILES["config.json"])  # then closed
    # HTTP/0.9 (no version, no headers): no key, so refused, never the bytes
    raw = site.exchange(f"GET {target}\r\n\r\n".encode())
    assert FILES["config.json"] not in raw
    _serves_still(site)


def test_hundreds_of_connections_at_once_are_answered_or_closed_and_it_goes_on(site: Site) -> None:
    """MOST_CONNECTIONS + 60 connections held open without a word: a signed loader is served
    meanwhile, on a connection of its own; then every held one sends a signed GET at once and
    gets its bytes, SlowDown, or its connection closed (the oldest silent ones made room for
    newer; the rest closed past their deadline), never anything else and never a hang; and the
    endpoint serves afterwards. Which ones are which is the kernel's accept order: not asserted."""
    target = "/mdl/m/config.json"
    socks = [
        socket.create_connection(site.address, timeout=HANG) for _ in range(MOST_CONNECTIONS + 60)
    ]
    outcomes: list[str] = []
    lock = threading.Lock()

    def one(sock: socket.socket) -> None:
        chunks = []
        try:
            sock.sendall(_request("GET", target, site.signed("GET", target)))
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except (ConnectionResetError, BrokenPipeError):
            pass
        finally:
            sock.close()
        reply = _reply(b"".join(chunks))
        if reply.status == 200:
            assert reply.body == FILES["config.json"]
        elif reply.status == 503:
            reply.s3_error("SlowDown")
        else:
            assert reply.status == 0, reply
        with lock:
            outcomes.append(str(reply.status))

    try:
        s3 = site.serve.boto3(attempts=1)
        assert (
            s3.get_object(Bucket="mdl", Key="m/config.json")["Body"].read() == FILES["config.json"]
        )
        with ThreadPoolExecutor(64) as pool:
            list(pool.map(one, socks))
    finally:
        for sock in socks:
            sock.close()
    assert len(outcomes) == len(socks) and set(outcomes) <= {"200", "503", "0"}
    wait_for(lambda: _verified(site, "config.json"), what="the endpoint to serve again")


def test_unsigned_connections_of_another_process_never_keep_a_signed_loader_out(site: Site) -> None:
    """Fixed defect (issue 68 B), as found: another local user without the key opens
    MOST_CONNECTIONS connections and sends an unsigned ``HEAD /`` on each every few seconds:
    every slot stays taken (a 403 kept the connection and restarted its deadline), and the loader
    with the key gets 503 SlowDown for as long as they like. Now the refused request ends its
    connection, unsigned ones are bounded apart from the loader's: a signed client (one attempt,
    a new connection each time) reads every file right, twice, while MOST_CONNECTIONS + 8 of them
    go on."""
    with UnsignedFlood(site.serve.url, count=MOST_CONNECTIONS + 8, every=2.0) as flood:
        for _ in range(2):
            for name, data in FILES.items():
                s3 = site.serve.boto3(attempts=1)
                assert s3.get_object(Bucket="mdl", Key=f"m/{name}")["Body"].read() == data, name
    # each of its connections got a 403 and was closed, or was closed for a newer one unasked
    assert flood.closes >= flood.answers and flood.closes >= 8
    wait_for(lambda: _verified(site, "config.json"), what="the endpoint to serve again")


def test_five_hundred_refused_requests_are_a_few_lines(
    offline: tuple[Path, dict[str, str]],
) -> None:
    """Fixed defect (issue 68 B), as found: each refused request was a line on stderr and in the
    log: 500 unsigned requests, 500 lines (2,355 in the issue's run). Now at most REFUSALS_SAID
    lines each REFUSAL_WINDOW seconds, the rest counted in one line as the window ends (or the
    endpoint stops): each refusal is said once, as a line or in a count, and a refused
    connection is closed."""
    folder, env = offline
    with ServeProcess(folder, "m", env=env) as serve:
        host, port = serve.ready().url.removeprefix("http://").split(":")
        for i in range(500):
            with socket.create_connection((host, int(port)), timeout=HANG) as sock:
                sent = f"GET /mdl/m/flood-{i} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n"
                sock.sendall(sent.encode())
                raw = b""
                while chunk := sock.recv(65536):  # closed after the one answer
                    raw += chunk
                assert _reply(raw).status == 403
        assert serve.stop() == 0
        lines = serve.stderr.splitlines()
    said = [line for line in lines if "GET /mdl/m/flood-" in line]
    counted = [
        int(found.group(1))
        for line in lines
        if (found := re.search(r"(\d+) more requests refused within", line))
    ]
    assert len(said) + sum(counted) == 500, (len(said), counted)
    assert counted and len(said) <= REFUSALS_SAID * (len(counted) + 1)
    assert all("403 AccessDenied" in line for line in lines if "more requests refused" in line)


def test_slowloris_connections_do_not_keep_a_signed_loader_out(site: Site) -> None:
    """Fixed defect, as found: Connections that never finish their headers (a byte every half second, no key
    needed) each hold one of the MOST_CONNECTIONS slots for as long as they drip: the idle timeout
    (120 s) is per read, and no deadline bounds a request's headers. A few more of them than
    there are slots keep a loader with the run's key getting 503 SlowDown for as long as the
    attacker likes. Now they are unsigned connections, bounded apart from the loader's: its
    first signed request is answered while they drip (one attempt, no patience loop)."""
    socks = []
    for _ in range(MOST_CONNECTIONS + 8):
        sock = socket.create_connection(site.address, timeout=HANG)
        with contextlib.suppress(OSError):  # (an older one may be closed for a newer already)
            sock.sendall(b"GET /mdl/m/config.json HTTP/1.1\r\nX-Slow: ")
        socks.append(sock)
    stop = threading.Event()

    def drip() -> None:
        while not stop.wait(0.5):
            for sock in socks:
                with contextlib.suppress(OSError):
                    sock.sendall(b"a")

    dripper = threading.Thread(target=drip)
    dripper.start()
    try:
        reply = site.get("/mdl/m/config.json")
    finally:
        stop.set()
        dripper.join(timeout=HANG)
        for sock in socks:
            sock.close()
    assert (reply.status, reply.body) == (200, FILES["config.json"]), reply.status
    wait_for(lambda: _verified(site, "config.json"), what="the endpoint to serve again")


def _running(pid: int) -> set[str]:
    """The threads of ``pid`` running or ready to run now (state R)."""
    found = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            if (task / "stat").read_text().rsplit(")", 1)[1].split()[0] == "R":
                found.add(task.name)
    return found


def test_failed_and_hostile_requests_leave_nothing_spinning(site: Site) -> None:
    """After a burst of everything hostile (crashing parses, refusals, 416s, cut connections,
    half-sent headers closed at once), the idle process uses next to no CPU: no thread loops."""
    target = "/mdl/m/config.json"
    burst = [
        b"\x16\x03\x01\x02\x00\x01\r\n\r\n",
        b"GET / HTTP/2.0\r\n\r\n",
        b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n",
        _request(
            "GET",
            target + "?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Signature=0&X-Amz-Expires=%C2%B2",
            [("Host", site.netloc)],
        ),
        _request(
            "GET", target, site.signed("GET", target, headers={"Range": "bytes=0-" + "9" * 5000})
        ),
        _request("GET", target, site.signed("GET", target, headers={"Range": "bytes=999999-"})),
        _request("GET", "/mdl/m/big.bin", site.signed("GET", "/mdl/m/big.bin")),
    ]
    for _ in range(5):
        for data in burst:
            with socket.create_connection(site.address, timeout=HANG) as sock:
                sock.sendall(data)
                with contextlib.suppress(OSError):
                    sock.recv(100)  # then leave: big.bin's answer is cut short
        with socket.create_connection(site.address, timeout=HANG) as sock:
            sock.sendall(b"GET /mdl/m/config.json HTTP/1.1\r\nHost: x\r\n")  # left unfinished
    _serves_still(site)
    # a thread that spins is running (or ready to) whenever it is looked at; one that waits is not:
    # 20 looks apart, no thread in all of them (no time is measured or compared)
    spinning = _running(site.serve.process.pid)
    for _ in range(20):
        threading.Event().wait(0.05)  # (looks apart, not a wait for anything)
        spinning &= _running(site.serve.process.pid)
    assert not spinning, f"threads {sorted(spinning)} ran at every look: something spins"


# ------------------------------------------------------------------------------------------------
# the secret
# ------------------------------------------------------------------------------------------------


def test_the_secret_sent_back_by_a_client_stays_off_stderr_and_the_log(site: Site) -> None:
    secret = site.secret
    encoded = "".join(f"%{b:02X}" for b in secret.encode())
    for target, headers in (
        (f"/mdl/m/{secret}", []),
        (f"/mdl/{secret}/x", []),
        (f"/mdl/m/{encoded}", []),
        (f"/mdl/m/x?key={secret}", []),
        ("/mdl/m/x", [("Authorization", f"AWS4-HMAC-SHA256 Credential={secret}")]),
        ("/mdl/m/x", [("X-Secret", secret)]),
    ):
        assert site.plain(target, headers).status == 403
    assert secret not in site.serve.stderr
    assert secret not in site.log


def test_the_secret_glued_into_a_request_stays_off_stderr_and_the_log(site: Site) -> None:
    """Fixed defect (low: the client sending it holds the key), as found: The secret glued to other characters in
    the path or the method of a refused request ("/mdl/m/x<secret>", "GET<secret>") is written as
    is on stderr and in the log: redaction takes the secret out only as a whole word, though this
    one is 40 random characters no word could be."""
    secret = site.secret
    site.plain(f"/mdl/m/config.json{secret}")
    site.exchange(_request(f"GET{secret}", "/mdl/m/config.json", [("Host", site.netloc)]))
    assert secret not in site.serve.stderr
    assert secret not in site.log


# ------------------------------------------------------------------------------------------------
# stopping
# ------------------------------------------------------------------------------------------------


def test_sigterm_while_a_loader_downloads_slowly_ends_it_promptly_with_0(site: Site) -> None:
    """A second endpoint on the same destination (no pull): a loader that reads a few bytes of
    big.bin then stops reading, and another waiting on zz-stalled.bin; SIGTERM ends the process
    with 0, no traceback, within the grace given to answers in flight; the slow loader got only a
    prefix of the verified bytes."""
    second = ServeProcess(site.folder / "second", "m", "--wait", "600", env=site.env)
    with second:
        second.ready()
        netloc = second.url.removeprefix("http://")
        host, port = netloc.split(":")
        env = second.environment
        credentials = Credentials(env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"])

        def signed(target: str) -> bytes:
            request = AWSRequest("GET", f"http://{netloc}{target}")
            S3SigV4Auth(credentials, "s3", "us-east-1").add_auth(request)
            return _request("GET", target, [("Host", netloc), *request.headers.items()])

        slow = socket.create_connection((host, int(port)), timeout=HANG)
        waiting = socket.create_connection((host, int(port)), timeout=HANG)
        try:
            slow.sendall(signed("/mdl/m/big.bin"))
            first = slow.recv(4096)
            assert first.startswith(b"HTTP/1.1 200")
            logged = len(site.log)
            waiting.sendall(signed("/mdl/m/zz-stalled.bin"))
            wait_for(
                lambda: "a loader waits for m/zz-stalled.bin" in site.log[logged:], what="a wait"
            )
            code = second.stop(signal.SIGTERM)  # (within HANG, or it fails saying so)
            assert code == 0, second.stderr
            waited = b""
            while chunk := waiting.recv(65536):
                waited += chunk
            told = _reply(waited)
            assert told.status == 503 and STALLED[:64] not in told.body
            rest = first
            with contextlib.suppress(OSError):
                while chunk := slow.recv(1 << 20):
                    rest += chunk
            body = rest.partition(b"\r\n\r\n")[2]
            assert FILES["big.bin"].startswith(body)
        finally:
            slow.close()
            waiting.close()
    assert "Traceback" not in second.stderr
    assert "stopped serving" in second.stderr


# ------------------------------------------------------------------------------------------------
# exit codes and flags
# ------------------------------------------------------------------------------------------------


def _run_until_ready_or_exit(
    folder: Path, env: dict[str, str], *args: str
) -> tuple[int | None, str]:
    """(exit code, stderr) of the real ``mdl serve ARGS``; (None, stderr) when it started serving
    instead (then stopped)."""
    with ServeProcess(folder, *args, env=env) as serve:
        wait_for(lambda: serve.env_file.exists() or serve.process.poll() is not None,
                 what="mdl serve to listen or exit")  # fmt: skip
        if serve.process.poll() is None:
            serve.stop()
            return None, serve.stderr
        return serve.process.returncode, serve.stderr


def _start_refused(folder: Path, env: dict[str, str], *args: str) -> tuple[int | None, str]:
    """(exit code, stderr) of ``mdl serve ARGS`` run in this process (its start is the proof, not
    its process); (None, stderr) when it started serving instead (then stopped)."""
    return serve_in_process(*args, env=env, env_file=folder / "loader.env")


@pytest.fixture
def offline(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A catalog of one model ``m`` whose origin is never asked (no --pull)."""
    catalog = model_catalog(tmp_path, {"w.bin": ("http://127.0.0.1:9/w", b"x" * 10)})
    return tmp_path, isolated(tmp_path, catalog)


def test_an_unknown_model_is_exit_2_naming_it(offline: tuple[Path, dict[str, str]]) -> None:
    folder, env = offline
    code, stderr = _start_refused(folder, env, "m", "nosuch-model")
    assert code == 2 and "nosuch-model" in stderr and "Traceback" not in stderr


def test_a_port_another_endpoint_holds_is_exit_2_naming_it(
    site: Site, offline: tuple[Path, dict[str, str]]
) -> None:
    folder, env = offline
    port = site.address[1]
    code, stderr = _start_refused(folder, env, "m", "--port", str(port))
    assert code == 2, stderr
    assert f"port {port} on 127.0.0.1 is in use" in stderr and "--port 0" in stderr


BAD_FLAGS = [
    (("--port", "70000"), "--port"),
    (("--port", "-1"), "--port"),
    (("--wait", "-1"), "--wait"),
    (("--wait", "soon"), "--wait"),
    (("--wait", "nan"), "--wait"),
    (("--wait", "inf"), "--wait"),
    (("--bucket", ""), "--bucket"),
    (("--bucket", "a/b"), "--bucket"),
    (("--bucket", "two words"), "--bucket"),
]


@pytest.mark.parametrize(
    ("args", "flag"),
    BAD_FLAGS,
    ids=["port-70000", "port-minus-1", "wait-minus-1", "wait-soon", "wait-nan", "wait-inf",
         "bucket-empty", "bucket-slash", "bucket-space"],
)  # fmt: skip
def test_a_bad_flag_value_is_exit_2_naming_the_flag(
    offline: tuple[Path, dict[str, str]], args: tuple[str, str], flag: str
) -> None:
    """Fixed defect for two of them, as found: ``--wait inf`` passes the flag's check, then the environment's
    ``int((wait + 30) * 1000)`` raises OverflowError: exit 1, "internal error". ``--bucket ''``,
    ``--bucket a/b`` or ``--bucket 'two words'`` are taken, and it serves a bucket no S3 client
    can name (``s3:///m``, ``s3://a/b/m``): every request is NoSuchBucket. (In this process: the
    flag's check is the proof; the real command's exit is the next test's.)"""
    folder, env = offline
    code, stderr = _start_refused(folder, env, "m", *args)
    assert code is not None, f"mdl serve m {' '.join(args)!r} was accepted and served"
    assert code == 2, f"exit {code}: {stderr[-300:]}"
    assert flag in stderr and "Traceback" not in stderr


def test_a_bad_flag_value_ends_the_real_command_with_exit_2(
    offline: tuple[Path, dict[str, str]],
) -> None:
    """The exit code a shell sees from the real ``mdl serve`` (``--wait inf``, the one that was
    an internal error), as a process: one case for all of the flags above."""
    folder, env = offline
    code, stderr = _run_until_ready_or_exit(folder, env, "m", "--wait", "inf")
    assert code is not None, "mdl serve m --wait inf was accepted and served"
    assert code == 2, f"exit {code}: {stderr[-300:]}"
    assert "--wait" in stderr and "Traceback" not in stderr


def test_a_host_it_cannot_listen_on_is_exit_2_naming_it(
    offline: tuple[Path, dict[str, str]],
) -> None:
    folder, env = offline
    # 192.0.2.1 (TEST-NET-1) is on no interface here: the bind fails, nothing is sent anywhere
    code, stderr = _start_refused(folder, env, "m", "--host", "192.0.2.1")
    assert code == 2 and "cannot listen on 192.0.2.1" in stderr


def test_the_env_file_is_mode_600_even_when_its_temporary_name_exists(tmp_path: Path) -> None:
    """Fixed defect, as found: The env file is written through ``.NAME.PID.tmp`` opened with O_CREAT but not
    O_EXCL, and never chmod-ed: a file already at that name (left by an earlier run whose PID came
    back, or planted in a shared folder) keeps its mode, and the secret lands in a file others may
    read (here 0644), renamed into place as the env file."""
    from mdl import serve

    catalog = model_catalog(tmp_path, {"w.bin": ("http://127.0.0.1:9/w", b"x" * 10)})
    env = isolated(tmp_path, catalog)
    target = tmp_path / "loader.env"
    planted = tmp_path / f".loader.env.{os.getpid()}.tmp"
    planted.write_text("planted\n")
    planted.chmod(0o644)
    stop = threading.Event()
    seen = []

    def ready(served: object) -> None:
        seen.append(served)
        stop.set()

    report = serve("m", port=0, env_file=target, environ=env, on_ready=ready, stop=stop)
    assert seen and report.exit_code == 0
    text = target.read_text()
    assert "AWS_SECRET_ACCESS_KEY=" in text and "planted" not in text
    assert target.stat().st_mode & 0o777 == 0o600, oct(target.stat().st_mode & 0o777)


def _presigned_by_boto3(site: Site, version: str, **credentials: str) -> str:
    """A GET of config.json presigned by boto3 itself (``s3``: V2, what ``generate_presigned_url``
    makes by default; ``s3v4``: V4), with the run's key and ``credentials`` besides."""
    import boto3
    from botocore.config import Config

    env = site.serve.environment
    client = boto3.session.Session(
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        region_name="us-east-1",
        **credentials,
    ).client("s3", endpoint_url=site.serve.url, config=Config(signature_version=version))
    url: str = client.generate_presigned_url(
        "get_object", Params={"Bucket": "mdl", "Key": "m/config.json"}, ExpiresIn=600
    )
    return url


def test_presigned_urls_leave_no_signature_or_credential_in_the_log_or_on_stderr(
    site: Site,
) -> None:
    """Fixed defect (issue 68 D), as found: ``mdl -v serve`` logged each request target whole,
    query included: a V2 presigned URL (boto3's default) sat in the log with its signature, and a
    V4 one was cut only by a 200-character truncation. Every secret-bearing parameter of a target
    (signatures, credentials, a session token, the V2 access key id) is out of the log and stderr,
    whether the request was answered or refused; and the log is this user's alone (0600)."""
    urls = [
        _presigned_by_boto3(site, "s3"),
        _presigned_by_boto3(site, "s3v4"),
        _presigned_by_boto3(site, "s3v4", aws_session_token="FwoGZXIvYXdzEJr" + "T0KEN" * 20),
    ]
    secret_params = {"Signature", "AWSAccessKeyId", "X-Amz-Signature", "X-Amz-Credential",
                     "X-Amz-Security-Token"}  # fmt: skip
    values = set()
    for url in urls:
        parts = urllib.parse.urlsplit(url)
        target = f"{parts.path}?{parts.query}"
        for name, value in urllib.parse.parse_qsl(parts.query):
            if name in secret_params:
                values |= {value, urllib.parse.quote(value, safe="")}
        site.plain(target)  # answered (or refused: the token is no key of the run's)
        site.plain(target.replace("config.json", "absent.json"))  # refused: signature
        site.exchange(  # (cut mid-request: the server's own error path)
            f"GET {target} HTTP/1.1\r\nHost: {site.netloc}\r\n".encode() + b"X" * 70000
        )
    assert len(values) >= 6
    wait_for(lambda: "/mdl/m/config.json?REDACTED" in site.log, what="the targets logged")
    for value in values:
        assert value not in site.log, value
        assert value not in site.serve.stderr, value
    assert (site.folder / "mdl.log").stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize("plant", ["another-owner", "symlink", "group-readable", "not-an-env-file"])
def test_an_env_file_mdl_did_not_write_is_refused_and_left_alone(
    offline: tuple[Path, dict[str, str]], plant: str
) -> None:
    """Fixed defect (issue 68 D), as found: with ``--env-file`` in a sticky shared folder
    (``/tmp``), a file another user planted at the name was sourced by the documented script
    (mdl exited 7, ``rm -f`` failed, the wait loop read theirs). mdl now takes the name by an
    exclusive create and replaces only a file an earlier run of this user wrote (a regular file
    of its own, mode 600, one name, of export lines naming the endpoint): anything else there is
    refused, exit 7, in a line naming it, and left as it was."""
    folder, env = offline
    shared = folder / "shared"
    shared.mkdir()
    shared.chmod(0o1777)  # as /tmp
    target = shared / "mdl.env"
    planted = "export AWS_ENDPOINT_URL=http://127.0.0.1:9\n"
    if plant == "another-owner":
        if os.geteuid() != 0:
            pytest.skip("making a file another user's needs root")
        target.write_text(planted)
        target.chmod(0o600)
        os.chown(target, 4242, 4242)
    elif plant == "symlink":
        theirs = folder / "theirs.env"
        theirs.write_text(planted)
        target.symlink_to(theirs)
    elif plant == "group-readable":
        target.write_text(planted)
        target.chmod(0o644)
    else:
        target.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\n")
        target.chmod(0o600)

    def left_alone() -> tuple[object, ...]:
        # all but the access time, which reading the file (ours or mdl's) may move (relatime)
        st = target.lstat()
        return (st.st_mode, st.st_ino, st.st_uid, st.st_size, st.st_mtime_ns, st.st_ctime_ns,
                target.read_text())  # fmt: skip

    before = left_alone()
    code, stderr = serve_in_process("m", env=env, env_file=target)  # (its start is the proof)
    assert code == 7, stderr
    assert f"--env-file {target}" in stderr and "Traceback" not in stderr
    assert left_alone() == before
    assert list(shared.iterdir()) == [target]  # no temporary left beside it


def test_an_earlier_runs_env_file_is_replaced(offline: tuple[Path, dict[str, str]]) -> None:
    """A restart with the same ``--env-file`` (after a ``kill -9``) replaces the file the earlier
    run left, with the new key."""
    from mdl import serve

    folder, env = offline
    target = folder / "private" / "mdl.env"
    target.parent.mkdir(mode=0o700)
    stop = threading.Event()
    serve("m", port=0, env_file=target, environ=env, on_ready=lambda _: stop.set(), stop=stop)
    first = target.read_text()
    stop.clear()
    serve("m", port=0, env_file=target, environ=env, on_ready=lambda _: stop.set(), stop=stop)
    second = target.read_text()
    assert first.startswith("export AWS_ENDPOINT_URL=") and second.startswith(
        "export AWS_ENDPOINT_URL="
    )
    assert first != second  # a new key
    assert target.stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in target.parent.iterdir()) == ["mdl.env"]


def test_the_documented_start_up_script_runs_as_written_beside_a_planted_file(
    tmp_path: Path,
) -> None:
    """docs/serving.md's script, as written (``mdl`` and ``vllm`` stand-ins: this tree's mdl, and
    boto3 reading the model with the sourced environment alone), in a TMPDIR shared with others
    (sticky, a planted env file in it): it serves the loader, and reads no file it did not make."""
    docs = (Path(__file__).resolve().parents[2] / "docs" / "serving.md").read_text()
    script = docs.split("```sh\n", 1)[1].split("```", 1)[0]
    shared = tmp_path / "tmp"
    shared.mkdir()
    shared.chmod(0o1777)
    (shared / "mdl.env").write_text("export AWS_ENDPOINT_URL=http://127.0.0.1:9\n")
    with CdnServer() as cdn:
        data = FILES["config.json"]
        files = {"config.json": (cdn.add_file("/c", data), data)}
        catalog = model_catalog(tmp_path, files, model="my-model")
        done = _run_documented(script, tmp_path, catalog, shared)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == f"read {len(FILES['config.json'])}"
    assert (shared / "mdl.env").read_text() == "export AWS_ENDPOINT_URL=http://127.0.0.1:9\n"


def _run_documented(
    script: str, tmp_path: Path, catalog: Path, shared: Path
) -> subprocess.CompletedProcess[str]:
    env = {**isolated(tmp_path, catalog), "TMPDIR": str(shared)}
    env = {k: v for k, v in env.items() if not k.startswith("AWS_")}  # the script's alone
    python = shlex.quote(sys.executable)
    reader = (
        "import boto3, os; assert os.environ['AWS_ENDPOINT_URL'].startswith('http://127.0.0.1:');"
        "b = boto3.client('s3').get_object(Bucket='mdl', Key='my-model/config.json');"
        "print('read', len(b['Body'].read()))"
    )
    stand_ins = (
        f'mdl() {{ exec {python} -m mdl "$@" --port 0 --no-progress; }}\n'
        f"vllm() {{ {python} -c {shlex.quote(reader)}; }}\n"
        "trap 'kill $(jobs -p) 2>/dev/null' EXIT\n"
    )
    return subprocess.run(
        ["bash", "-c", stand_ins + script], env=env, capture_output=True, text=True,
        timeout=HANG, check=False,
    )  # fmt: skip


@pytest.mark.parametrize("through", ["folder", "link", "open"])
def test_an_env_file_in_another_users_folder_is_refused(
    offline: tuple[Path, dict[str, str]], through: str
) -> None:
    """An env file whose folder (or a folder its name goes through, after a link planted in a
    shared folder) is another user's, or open to all without the sticky bit: they could swap it,
    once written, for one naming their endpoint. Refused, exit 7's LocalFSError naming it, and
    nothing written there."""
    from mdl import serve
    from mdl.errors import LocalFSError

    if os.geteuid() != 0:
        pytest.skip("making a folder another user's needs root")
    folder, env = offline
    theirs = folder / "theirs"
    theirs.mkdir(mode=0o777)
    os.chown(theirs, 4242, 4242)
    if through == "folder":
        target = theirs / "mdl.env"
    elif through == "open":  # this user's (root's) folder, but anyone may rename in it
        theirs = folder / "open"
        theirs.mkdir()
        theirs.chmod(0o777)
        target = theirs / "mdl.env"
    else:
        shared = folder / "shared"
        shared.mkdir()
        shared.chmod(0o1777)  # as /tmp, a link planted in it
        (shared / "run").symlink_to(theirs)
        target = shared / "run" / "mdl.env"
    stop = threading.Event()
    with pytest.raises(LocalFSError, match=r"another user's|written by anyone") as refused:
        serve("m", port=0, env_file=target, environ=env, on_ready=lambda _: stop.set(), stop=stop)
    assert str(target) in str(refused.value)
    assert list(theirs.iterdir()) == []
