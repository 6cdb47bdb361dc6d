"""A token service for a real distribution registry's ``auth: token`` (the Docker token spec): an
in-process HTTP server that answers ``GET /token?service=…&scope=…`` with a JWT signed by its own
RSA key (RS256, the certificate in the ``x5c`` header), which the registry checks against the
certificate bundle it is configured with. A login (Basic) may be required of the asker."""

from __future__ import annotations

import base64
import datetime
import json
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

ISSUER = "mdl-test-issuer"
SERVICE = "mdl-test-registry"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class TokenService:
    """Signs tokens for the scopes asked (a login, if set, required as Basic)."""

    key: rsa.RSAPrivateKey
    certificate: x509.Certificate
    login: tuple[str, str] | None = None
    url: str = ""
    asked: list[tuple[str, str | None]] = field(default_factory=list)  # (scope, Authorization)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def bundle(self, folder: Path) -> Path:
        path = folder / "token-ca.pem"
        path.write_bytes(self.certificate.public_bytes(serialization.Encoding.PEM))
        return path

    def token(self, scopes: list[str], *, seconds: int = 600) -> str:
        """A JWT granting each ``repository:NAME:ACTIONS`` scope."""
        access = []
        for scope in scopes:
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            access.append({"type": kind, "name": name, "actions": actions.split(",")})
        now = int(time.time())
        der = self.certificate.public_bytes(serialization.Encoding.DER)
        header = {"typ": "JWT", "alg": "RS256", "x5c": [base64.b64encode(der).decode()]}
        claims = {"iss": ISSUER, "sub": "tester", "aud": SERVICE, "exp": now + seconds,
                  "nbf": now - 60, "iat": now - 60, "jti": secrets.token_hex(8), "access": access}  # fmt: skip
        signing = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
        signature = self.key.sign(signing.encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{signing}.{_b64(signature)}"

    def registry_config(self, folder: Path) -> str:
        """The ``auth:`` section of a registry's config that trusts this service."""
        return (
            "auth:\n  token:\n"
            f"    realm: {self.url}/token\n    service: {SERVICE}\n    issuer: {ISSUER}\n"
            f"    rootcertbundle: {self.bundle(folder)}\n"
        )


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _TokenServer

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        service = self.server.service
        query = parse_qs(urlsplit(self.path).query)
        given = self.headers.get("Authorization")
        scopes = query.get("scope", [])
        with service.lock:
            service.asked.extend((scope, given) for scope in scopes)
        if service.login is not None:
            user, password = service.login
            if given != "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode():
                return self._answer(401, {"details": "incorrect username or password"})
        if query.get("service") != [SERVICE]:
            return self._answer(400, {"details": "unknown service"})
        return self._answer(200, {"token": service.token(scopes), "expires_in": 600})

    def _answer(self, status: int, doc: dict[str, object]) -> None:
        body = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class _TokenServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, service: TokenService) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.service = service


def _self_signed() -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mdl test token signer")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return key, certificate


@contextmanager
def token_service(login: tuple[str, str] | None = None) -> Iterator[TokenService]:
    key, certificate = _self_signed()
    service = TokenService(key, certificate, login=login)
    server = _TokenServer(service)
    service.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield service
    finally:
        server.shutdown()
        server.server_close()
