"""A registry's authorization, as registry clients do it: anonymous first; a 401's challenge
answered (``Bearer realm=…,service=…,scope=…``: a token asked of the realm; ``Basic``: the login);
the login found where users keep it (containers' ``auth.json``, Docker's ``config.json`` and its
credential helpers). A token refused mid-blob is renewed by the engine's redirect follower, which
asks again for the same range (``Credentials.renew``): the blob is not restarted."""

from __future__ import annotations

import base64
import logging
import re
import subprocess
import tempfile
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import httpx2

from mdl.errors import AuthError, NetworkError, OutsideJSONError, RegistryReplyError
from mdl.outsidejson import read_json
from mdl.paths import home_expanded, is_loopback, read_small_file
from mdl.redact import Secrets, printable, redact_url
from mdl.sources.ocimanifest import read_registry_json
from mdl.transfer.connection import origin
from mdl.transfer.failures import read_reply
from mdl.transfer.http import Credentials, RetryPolicy, error_for_status, follow

log = logging.getLogger("mdl.oci")
MAX_AUTH_FILE = 1 << 20  # an auth.json or config.json: a few kB
MAX_TOKEN_REPLY = 1 << 20  # a token service's JSON: a few kB
NO_LOGIN = "log in (docker login, podman login), or add the registry to an auth.json"
HELPER_SECONDS = 30.0  # a docker-credential-* helper that says nothing in this long is not asked
# one auth-param of a challenge (RFC 9110 §11.2): name=token or name="quoted string"
_TOKEN = re.compile(
    r"[\x21-\x7e]{1,65536}"
)  # a token: visible ASCII (a header value), at most 64 KiB
_PARAM = re.compile(r'\s*([A-Za-z0-9_.-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))\s*,?')


@dataclass(frozen=True)
class Login:
    """A user name and password (or token) for one registry, and the file or helper it came from."""

    username: str
    password: str
    where: str

    @property
    def basic(self) -> str:
        pair = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(pair).decode("ascii")


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """``WWW-Authenticate``'s first challenge: its scheme (lowercase) and parameters."""
    scheme, _, rest = header.strip().partition(" ")
    params: dict[str, str] = {}
    for found in _PARAM.finditer(rest):
        value = found[2] if found[2] is not None else found[3]
        params[found[1].lower()] = re.sub(r"\\(.)", r"\1", value or "")
    return scheme.lower(), params


def auth_files(environ: Mapping[str, str]) -> list[Path]:
    """Where logins are kept, in the order podman and skopeo read them, then Docker's."""
    home = home_expanded(environ.get("HOME") or "~")
    config = Path(environ.get("XDG_CONFIG_HOME") or home / ".config")
    files: list[Path] = []
    if given := environ.get("REGISTRY_AUTH_FILE"):
        files.append(Path(given))
    if runtime := environ.get("XDG_RUNTIME_DIR"):
        files.append(Path(runtime, "containers", "auth.json"))
    files.append(config / "containers" / "auth.json")
    docker = Path(environ["DOCKER_CONFIG"]) if environ.get("DOCKER_CONFIG") else home / ".docker"
    files.append(docker / "config.json")
    return files


def find_login(registry: str, environ: Mapping[str, str]) -> Login | None:
    """The login for ``registry`` (host[:port]) from the first file that has one (its ``auths``
    ``auth``, or its credential helper), or None: anonymous."""
    for path in auth_files(environ):
        doc = _read_auth_file(path)
        if doc is None:
            continue
        login = _login_in(doc, registry, where=str(path), environ=environ)
        if login is not None:
            log.debug("%s: the login in %s", registry, path)
            return login
    return None


def _read_auth_file(path: Path) -> dict[str, object] | None:
    """An auth file's JSON object, or None (missing; unreadable or not JSON: said, then skipped)."""
    try:
        raw = read_small_file(path, limit=MAX_AUTH_FILE)
    except FileNotFoundError:
        return None
    except OSError as exc:
        log.warning("%s: not read: %s", path, exc.strerror)
        return None
    try:
        doc = read_json(raw, source=str(path), limit=MAX_AUTH_FILE)
    except OutsideJSONError as exc:
        log.warning("%s", exc.message)
        return None
    return doc if isinstance(doc, dict) else None


def _host_of(key: str) -> str:
    """An ``auths`` key (``host:port``, ``https://host/v1/``) → host[:port]."""
    return (urlsplit(key).netloc if "://" in key else key.split("/")[0]).lower()


def _login_in(
    doc: Mapping[str, object], registry: str, *, where: str, environ: Mapping[str, str]
) -> Login | None:
    """The login a file holds for ``registry``: its credential helper's (``credHelpers``), else
    its ``auths`` entry's ``auth``, else the ``credsStore`` helper's."""
    wanted = {registry.lower()}
    if registry in ("docker.io", "registry-1.docker.io"):
        wanted |= {"index.docker.io", "docker.io", "registry-1.docker.io"}
    helper = _named(doc.get("credHelpers"), wanted)
    entry = _named(doc.get("auths"), wanted)
    encoded = entry.get("auth") if isinstance(entry, dict) else None
    if helper is None and not (isinstance(encoded, str) and encoded):
        # the default helper (Docker leaves an empty auths entry for a login kept there)
        helper = doc.get("credsStore")
    if isinstance(helper, str):
        return _from_helper(helper, registry, environ=environ)
    return _decoded(encoded, where=where) if isinstance(encoded, str) and encoded else None


def _named(table: object, wanted: set[str]) -> object:
    """The value a table (``auths``, ``credHelpers``) keeps for one of the ``wanted`` hosts."""
    if not isinstance(table, dict):
        return None
    return next((value for key, value in table.items() if _host_of(str(key)) in wanted), None)


def _decoded(encoded: str, *, where: str) -> Login | None:
    """An ``auth`` value: base64 of ``user:password`` (anything else: said, then not used)."""
    try:
        user, sep, password = base64.b64decode(encoded, validate=True).decode().partition(":")
    except ValueError:
        sep = ""
    if not sep:
        log.warning("%s: an auth that is not base64 of user:password was not used", where)
        return None
    return Login(user, password, where)


def _from_helper(name: str, registry: str, *, environ: Mapping[str, str]) -> Login | None:
    """``docker-credential-NAME get`` (the registry on stdin, ``{"Username", "Secret"}`` out), as
    Docker asks one; a helper that is missing, fails or says nothing useful: anonymous."""
    program = f"docker-credential-{name}"
    if re.fullmatch(r"[A-Za-z0-9_.-]+", name) is None:
        return None
    # its output to a file, read bounded: a helper that writes gigabytes costs a bounded read
    with tempfile.TemporaryFile() as out:
        try:
            done = subprocess.run(
                [program, "get"],
                input=registry.encode(),
                stdout=out,
                stderr=subprocess.DEVNULL,
                timeout=HELPER_SECONDS,
                env=dict(environ),
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            log.warning("%s: %s was not asked: %s", registry, program, type(exc).__name__)
            return None
        out.seek(0)
        said = out.read(MAX_AUTH_FILE + 1)
    if done.returncode != 0 or len(said) > MAX_AUTH_FILE:
        log.debug("%s: %s has no login for it", registry, program)
        return None
    try:
        doc = read_json(said, source=program, limit=MAX_AUTH_FILE)
    except OutsideJSONError:
        return None
    user, secret = (doc.get("Username"), doc.get("Secret")) if isinstance(doc, dict) else (0, 0)
    # "<token>": an identity token for Docker's OAuth exchange, which mdl does not do
    if not isinstance(user, str) or not isinstance(secret, str) or user == "<token>":
        return None
    return Login(user, secret, program)


class _Current(Mapping[str, str]):
    """The Authorization header as it stands now (read at each request, so a renewal reaches the
    ranges still to ask)."""

    def __init__(self, auth: RegistryAuth) -> None:
        self.auth = auth

    def __getitem__(self, key: str) -> str:
        value = self.auth.header
        if key != "Authorization" or value is None:
            raise KeyError(key)
        return value

    def __iter__(self) -> Iterator[str]:
        return iter(("Authorization",) if self.auth.header is not None else ())

    def __len__(self) -> int:
        return 1 if self.auth.header is not None else 0


class RegistryAuth:
    """One registry repository's authorization for a run: what requests to it carry, renewed when
    a request carrying it (or none) is refused with a challenge mdl can answer."""

    def __init__(
        self,
        registry_url: str,
        repository: str,
        *,
        client: httpx2.Client,
        login: Login | None,
        secrets: Secrets | None,
        retry: RetryPolicy | None = None,
        cancel: threading.Event | None = None,
    ) -> None:
        self.origin = origin(registry_url)
        self.registry = registry_url
        self.repository = repository
        self.client, self.login, self.secrets = client, login, secrets
        self.retry = retry or RetryPolicy()
        self.cancel = cancel  # the run's: a wait before a retry hears it
        self.header: str | None = None
        self._lock = threading.Lock()
        if login is not None and secrets is not None:
            secrets.add(login.password)
            secrets.add(login.basic.removeprefix("Basic "))

    def credentials(self) -> Credentials:
        """What each request carries: the current Authorization, to the registry's origin only
        (never on a redirect to its storage), and how to renew it."""
        named = (
            f"the registry's Authorization (the login from {self.login.where})"
            if self.login is not None
            else "the registry's Authorization (a token given without a login)"
        )
        return Credentials(
            extra=_Current(self),
            extra_origin=self.origin,
            renew=self.renew,
            named=named,
            refused_hint=self.hint,
        )

    @property
    def hint(self) -> str:
        """What to do when the registry or its token service refuses (401, 403): the login's
        file or helper, else how to log in."""
        if self.login is None:
            return NO_LOGIN
        return f"the login from {self.login.where} was refused, or may not read {self.repository}"

    def renew(self, response: httpx2.Response) -> bool:
        """A 401 from the registry: True when the request is worth sending again (a new token, the
        login where Basic is asked, or another thread renewed meanwhile)."""
        sent = response.request.headers.get("Authorization")
        with self._lock:
            if self.header is not None and sent != self.header:
                return True  # renewed since that request left
            scheme, params = parse_challenge(response.headers.get("WWW-Authenticate", ""))
            if scheme == "basic":
                if self.login is None or sent == self.login.basic:
                    return False
                self.header = self.login.basic
                return True
            if scheme != "bearer" or not params.get("realm"):
                return False
            token = self._token(params)
            self.header = f"Bearer {token}"
            return True

    def refused(self, response: httpx2.Response, *, what: str) -> AuthError:
        """A 401 that stands (no challenge mdl can answer, or the answer refused): exit 3, naming
        where a login is kept."""
        return AuthError(
            f"{what}: not authorised (HTTP 401 from {redact_url(str(response.url))})",
            hint=self.hint,
        )

    def _token(self, params: Mapping[str, str]) -> str:
        """A token from the challenge's realm (its service and scope; the login as Basic, to the
        realm's origin only), as the distribution token spec has it."""
        realm = params["realm"]
        scope = params.get("scope") or f"repository:{self.repository}:pull"
        # several scopes (a push that mounts: this repository's and the source's) are several
        # ``scope`` parameters, as the token spec has them
        query = [("scope", each) for each in scope.split()]
        query += [("service", params["service"])] if "service" in params else []
        url = f"{realm}{'&' if '?' in realm else '?'}{urlencode(query)}"
        what = f"the token service of {self.registry}"
        if urlsplit(realm).scheme not in ("https", "http"):
            raise NetworkError(
                f"{what}: the realm {printable(realm, limit=100)!r} is no http(s) URL"
            )
        login = self.login
        if login is not None and not _may_carry_login(realm, self.origin[0]):
            raise AuthError(
                f"{what}: the registry asks for its login at a plain http realm"
                f" ({redact_url(realm)}); refused: a login goes in the clear only to this machine,"
                " from a registry on it",
                hint="the registry's token service must be https (or on this machine)",
            )
        credentials = (
            Credentials(extra={"Authorization": login.basic}, extra_origin=origin(realm))
            if login is not None
            else Credentials()
        )

        def ask() -> str:
            with follow(self.client, url, credentials=credentials, what=what) as response:
                timeout = self.client.timeout.read
                body = bytes(read_reply(response, MAX_TOKEN_REPLY, what=what, timeout=timeout))
                if response.status_code in (401, 403):
                    raise AuthError(
                        f"{what}: no token for {scope} (HTTP {response.status_code} from"
                        f" {redact_url(str(response.url))})",
                        hint=self.hint,
                    )
                if response.is_error:
                    raise error_for_status(response, what=what)
            return _token_in(body, what=what)

        wait = self.cancel.wait if self.cancel is not None else None
        token = self.retry.run(ask, what=what, wait=wait)
        if self.secrets is not None:
            self.secrets.add(token)
        return token


def _may_carry_login(realm: str, registry_scheme: str) -> bool:
    """Whether a login may go to ``realm``: over https, or over plain http to this machine from a
    registry on it (asked over plain http itself), as the registry may be."""
    parts = urlsplit(realm)
    local = registry_scheme == "http" and is_loopback(parts.hostname or "")
    return parts.scheme == "https" or local


def _token_in(body: bytes, *, what: str) -> str:
    """``token`` (or OAuth's ``access_token``) of a token service's JSON reply: visible ASCII, as
    a header value may be, and bounded."""
    doc = (
        read_registry_json(body, what=f"{what}: its reply")
        if len(body) <= MAX_TOKEN_REPLY
        else None
    )
    token = doc.get("token") or doc.get("access_token") if isinstance(doc, dict) else None
    if not isinstance(token, str) or _TOKEN.fullmatch(token) is None:
        raise RegistryReplyError(f"{what}: the reply holds no token mdl can send")
    return token
