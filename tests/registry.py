"""A real CNCF distribution registry (Debian's ``docker-registry``) on 127.0.0.1 for the oci://
tests: one process per test module, filesystem storage in a temporary folder, artifacts pushed with
plain HTTP (monolithic blob uploads, manifests by PUT). In front of it, when a test needs to see or
shape the traffic, an in-process gate (``RegistryGate``): it logs every request, can ignore
``Range``, answer a blob with a 307 to another origin (its storage, served by the gate itself on a
second port), and ask for a Bearer token from its own token service (``WWW-Authenticate: Bearer
realm=…``), whose tokens it can expire after a number of requests."""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import secrets
import shutil
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx2
import pytest
from registrytokens import TokenService
from runfixtures import wait_for

REGISTRY_BIN = shutil.which("docker-registry") or "/usr/bin/docker-registry"
HAVE_REGISTRY = Path(REGISTRY_BIN).is_file()
NEEDS_REGISTRY = pytest.mark.skipif(
    not HAVE_REGISTRY,
    reason="docker-registry (Debian's CNCF distribution package) is not installed: apt-get install"
    " docker-registry (.ci/run does)",
)
MANIFEST = "application/vnd.oci.image.manifest.v1+json"
INDEX = "application/vnd.oci.image.index.v1+json"
MODELPACK = "application/vnd.cncf.model.manifest.v1+json"
WEIGHT_RAW = "application/vnd.cncf.model.weight.v1.raw"
EMPTY_CONFIG = b"{}"


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class DistributionRegistry:
    """``docker-registry serve`` on a free loopback port, its storage under ``folder``."""

    def __init__(
        self, folder: Path, *, tokens: TokenService | None = None, delete: bool = True
    ) -> None:
        self.folder, self.tokens = folder, tokens
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.url = f"http://{self.host}"
        config = folder / "config.yml"
        config.write_text(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n"
            f"storage:\n  filesystem:\n    rootdirectory: {folder / 'data'}\n"
            f"  delete:\n    enabled: {'true' if delete else 'false'}\n"
            f"http:\n  addr: {self.host}\n"
            + (tokens.registry_config(folder) if tokens is not None else "")
        )
        self.log = folder / "registry.log"
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [REGISTRY_BIN, "serve", str(config)],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        wait_for(self._answers, what="docker-registry to listen")

    def _answers(self) -> bool:
        assert self.process.poll() is None, f"docker-registry ended: {self.log.read_text()}"
        try:
            return httpx2.get(f"{self.url}/v2/", timeout=5).status_code in (200, 401)
        except httpx2.TransportError:
            return False

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def blob_file(self, digest: str) -> Path:
        """Where the registry keeps a blob's bytes (its filesystem driver's layout)."""
        hexa = digest.removeprefix("sha256:")
        return self.folder / f"data/docker/registry/v2/blobs/sha256/{hexa[:2]}/{hexa}/data"

    def pusher(self, repository: str) -> dict[str, str]:
        """What a push carries: nothing, or a token for the repository (with token auth)."""
        if self.tokens is None:
            return {}
        return {
            "Authorization": f"Bearer {self.tokens.token([f'repository:{repository}:pull,push'])}"
        }

    def push_blob(self, repository: str, data: bytes) -> str:
        """A monolithic upload (POST, then PUT with the digest); the blob's digest."""
        digest = sha256_digest(data)
        auth = self.pusher(repository)
        started = httpx2.post(
            f"{self.url}/v2/{repository}/blobs/uploads/", headers=auth, timeout=30
        )
        assert started.status_code == 202, started.text
        location = started.headers["Location"]
        location = location if "://" in location else f"{self.url}{location}"
        sep = "&" if "?" in location else "?"
        put = httpx2.put(
            f"{location}{sep}digest={digest}",
            content=data,
            headers={"Content-Type": "application/octet-stream", **auth},
            timeout=60,
        )
        assert put.status_code == 201, put.text
        return digest

    def push_manifest(
        self, repository: str, reference: str, body: bytes, media_type: str = MANIFEST
    ) -> str:
        put = httpx2.put(
            f"{self.url}/v2/{repository}/manifests/{reference}",
            content=body,
            headers={"Content-Type": media_type, **self.pusher(repository)},
            timeout=30,
        )
        assert put.status_code == 201, put.text
        return sha256_digest(body)

    def push_model(
        self,
        repository: str,
        tag: str,
        files: Mapping[str, bytes],
        *,
        style: str = "modelpack",
        layer_media_type: str | None = None,
    ) -> str:
        """``files`` as one raw layer each (ModelPack's filepath, or oras's title), tagged; the
        manifest's digest."""
        config = self.push_blob(repository, EMPTY_CONFIG)
        layers = []
        for path, data in files.items():
            digest = self.push_blob(repository, data)
            if style == "modelpack":
                kind, notes = WEIGHT_RAW, {"org.cncf.model.filepath": path}
            else:
                kind, notes = (
                    "application/vnd.oci.image.layer.v1.tar",
                    {"org.opencontainers.image.title": path},
                )
            layers.append(
                {
                    "mediaType": layer_media_type or kind,
                    "digest": digest,
                    "size": len(data),
                    "annotations": notes,
                }
            )
        return self.push_manifest(repository, tag, model_manifest(config, layers))


def model_manifest(config: str, layers: list[dict[str, Any]]) -> bytes:
    """A ModelPack-shaped manifest over ``layers`` (the config descriptor is the empty JSON)."""
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": MANIFEST,
            "artifactType": MODELPACK,
            "config": {
                "mediaType": "application/vnd.cncf.model.config.v1+json",
                "digest": config,
                "size": len(EMPTY_CONFIG),
            },
            "layers": layers,
        }
    ).encode()


@contextmanager
def distribution(
    folder: Path, *, tokens: TokenService | None = None, delete: bool = True
) -> Iterator[DistributionRegistry]:
    registry = DistributionRegistry(folder, tokens=tokens, delete=delete)
    try:
        yield registry
    finally:
        registry.stop()


@dataclass
class Seen:
    """One request the gate relayed: its method, path, and the headers that matter here."""

    method: str
    path: str
    authorization: str | None
    range: str | None
    port: int
    admitted: bool = True  # False: the gate answered 401 (no token, or one used up)


@dataclass
class RegistryGate:
    """What the gate in front of the registry does; ``seen`` lists every request it had."""

    upstream: str
    seen: list[Seen] = field(default_factory=list)
    ignore_range: bool = False
    redirect_blobs: bool = False  # a blob GET: 307 to the gate's second port ("storage")
    token_auth: bool = False  # Bearer tokens from the gate's /token, needed for /v2/…
    login: tuple[str, str] | None = None  # what /token needs as Basic (None: anyone)
    token_uses: int = 1_000_000  # requests a token is good for
    token_given: str | None = None  # what /token answers as the token (None: a fresh one)
    basic: tuple[str, str] | None = None  # HTTP Basic with this login, asked by a Basic challenge
    cut_after: int | None = None  # the next blob body is cut after this many bytes (then not)
    tokens: dict[str, int] = field(default_factory=dict)  # token -> requests left
    url: str = ""
    storage_url: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)
    manifests: dict[str, bytes] = field(default_factory=dict)  # path -> a manifest answered as is
    # pushes (POST, PATCH, PUT, DELETE) are relayed with their bodies; these shape them:
    cut_patch_after: int | None = None  # a PATCH: cut after this many body bytes, unrelayed
    patches_before_cut: int = 0  # PATCHes relayed whole before the one cut
    max_body: int | None = None  # a PATCH or PUT body past this: 413, as a registry's size limit
    fail_pushes: int = 0  # the next pushes answered 503 (their bodies read, not relayed)
    # a push whose body this accepts: answered 503 (read, not relayed), as a proxy's policy
    refuse_body: Callable[[bytes], bool] | None = None
    lying_heads: bool = False  # a blob HEAD: 200 stating another size and digest, held or not

    def requests(self, method: str | None = None) -> list[Seen]:
        with self.lock:
            return [s for s in self.seen if method is None or s.method == method]

    def clear(self) -> None:
        with self.lock:
            self.seen.clear()

    def issue(self) -> str:
        token = self.token_given or secrets.token_urlsafe(24)
        with self.lock:
            self.tokens[token] = self.token_uses
        return token

    def admits(self, authorization: str | None) -> bool:
        """Whether a request carrying ``authorization`` passes (a use of its token spent)."""
        if self.basic is not None:
            pair = ":".join(self.basic).encode()
            return authorization == "Basic " + base64.b64encode(pair).decode()
        if not self.token_auth:
            return True
        token = (authorization or "").removeprefix("Bearer ")
        with self.lock:
            left = self.tokens.get(token, 0)
            if left <= 0:
                return False
            self.tokens[token] = left - 1
            return True


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _GateServer

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self._serve()

    def do_HEAD(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._push()

    def do_PATCH(self) -> None:
        self._push()

    def do_PUT(self) -> None:
        self._push()

    def do_DELETE(self) -> None:
        self._push()

    def _push(self) -> None:
        """A push request relayed with its body (the registry sees the gate's host, so the upload
        locations it names lead back through the gate), or cut, or refused as too large."""
        gate, length = self.server.gate, int(self.headers.get("Content-Length") or 0)
        told = self.headers.get("Content-Range")  # seen as its range
        seen = Seen(self.command, self.path, self.headers.get("Authorization"), told, 0)
        with gate.lock:
            gate.seen.append(seen)
            cut = gate.cut_patch_after if self.command == "PATCH" else None
            if cut is not None and gate.patches_before_cut > 0:
                gate.patches_before_cut, cut = gate.patches_before_cut - 1, None
            elif cut is not None:
                gate.cut_patch_after = None
        if cut is not None:  # as a proxy that buffers a body (nginx) loses one: nothing relayed
            self.rfile.read(min(cut, length))
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return None
        with gate.lock:
            failing, gate.fail_pushes = gate.fail_pushes > 0, max(gate.fail_pushes - 1, 0)
        if failing:
            self.rfile.read(length)
            return self._answer(503, b'{"errors":[{"code":"UNAVAILABLE","message":"busy"}]}')
        if gate.max_body is not None and length > gate.max_body and self.command != "POST":
            self.rfile.read(length)
            limit = f"blob upload exceeds the size limit of {gate.max_body} bytes"
            body = json.dumps({"errors": [{"code": "SIZE_INVALID", "message": limit}]})
            return self._answer(413, body.encode())
        body = self.rfile.read(length)
        if gate.refuse_body is not None and gate.refuse_body(body):
            return self._answer(503, b'{"errors":[{"code":"UNAVAILABLE","message":"refused"}]}')
        return self._relay(self.path, keep_range=True, body=body)

    def _serve(self) -> None:
        gate, port = self.server.gate, self.server.server_address[1]
        path = urlsplit(self.path).path
        storage, token = self.server.storage, path == "/token"
        admitted = storage or token or gate.admits(self.headers.get("Authorization"))
        seen = Seen(
            self.command,
            self.path,
            self.headers.get("Authorization"),
            self.headers.get("Range"),
            int(port),
            admitted,
        )
        with gate.lock:
            gate.seen.append(seen)
        if storage:
            return self._relay(self.path.replace("/storage", "", 1), keep_range=True)
        if token:
            return self._token()
        if (canned := gate.manifests.get(path)) is not None:
            return self._answer(200, canned, content_type=MANIFEST)
        if not admitted:
            scope = (
                "repository:"
                + path.removeprefix("/v2/").split("/blobs/")[0].split("/manifests/")[0]
                + ":pull"
            )
            challenge = f'Bearer realm="{gate.url}/token",service="gate",scope="{scope}"'
            if gate.basic is not None:
                challenge = 'Basic realm="gate"'
            return self._answer(401, b'{"errors":[{"code":"UNAUTHORIZED"}]}', challenge)
        if gate.lying_heads and "/blobs/sha256:" in path and self.command == "HEAD":
            self.send_response(200)
            self.send_header("Content-Length", "1")
            self.send_header("Docker-Content-Digest", "sha256:" + "0" * 64)
            self.end_headers()
            return None
        if gate.redirect_blobs and "/blobs/" in path and self.command == "GET":
            self.send_response(307)
            self.send_header("Location", f"{gate.storage_url}/storage{self.path}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return None
        return self._relay(self.path, keep_range=not gate.ignore_range)

    def _token(self) -> None:
        gate = self.server.gate
        if gate.login is not None:
            user, password = gate.login
            want = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
            if self.headers.get("Authorization") != want:
                return self._answer(401, b'{"details":"bad login"}')
        query = parse_qs(urlsplit(self.path).query)
        if not query.get("scope"):
            return self._answer(400, b'{"details":"no scope"}')
        body = json.dumps({"token": gate.issue(), "expires_in": 300}).encode()
        return self._answer(200, body)

    def _answer(
        self,
        status: int,
        body: bytes,
        challenge: str | None = None,
        content_type: str = "application/json",
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        if challenge is not None:
            self.send_header("WWW-Authenticate", challenge)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _relay(self, path: str, *, keep_range: bool, body: bytes | None = None) -> None:
        up = urlsplit(self.server.gate.upstream)
        connection = http.client.HTTPConnection(up.hostname or "", up.port, timeout=60)
        # an upload's requests keep the gate's host: the locations the registry names lead back
        dropped = {"authorization", "connection"} | ({"host"} if "/uploads/" not in path else set())
        dropped -= {"authorization"} if body is not None else set()
        headers = {
            k: v
            for k, v in self.headers.items()
            if k.lower() not in dropped and (keep_range or k.lower() not in {"range", "if-range"})
        }
        try:
            connection.request(self.command, path, body=body, headers=headers)
            reply = connection.getresponse()
            self.send_response(reply.status)
            for name, value in reply.getheaders():
                if name.lower() not in {"connection", "transfer-encoding", "keep-alive"}:
                    self.send_header(name, value)
            self.end_headers()
            cut = self._cut(path)
            sent = 0
            while self.command != "HEAD" and (chunk := reply.read(1 << 16)):
                if cut is not None and sent + len(chunk) >= cut:
                    self.wfile.write(chunk[: cut - sent])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self.wfile.write(chunk)
                sent += len(chunk)
        finally:
            connection.close()

    def _cut(self, path: str) -> int | None:
        """Where this blob body is cut (once), or None."""
        gate = self.server.gate
        with gate.lock:
            cut, gate.cut_after = (
                (gate.cut_after, None) if "/blobs/" in path else (None, gate.cut_after)
            )
        return cut


class _GateServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, gate: RegistryGate, *, storage: bool) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.gate, self.storage = gate, storage


@contextmanager
def registry_gate(upstream: str) -> Iterator[RegistryGate]:
    """The gate on one loopback port and its "storage" on another (a 307 leaves the origin)."""
    gate = RegistryGate(upstream)
    front, storage = _GateServer(gate, storage=False), _GateServer(gate, storage=True)
    gate.url = f"http://127.0.0.1:{front.server_address[1]}"
    gate.storage_url = f"http://localhost:{storage.server_address[1]}"
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in (front, storage)]
    for thread in threads:
        thread.start()
    try:
        yield gate
    finally:
        for server in (front, storage):
            server.shutdown()
            server.server_close()
