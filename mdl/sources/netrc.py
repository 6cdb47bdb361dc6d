"""Logins for direct URLs from a netrc file (``$NETRC``, ``~/.netrc``), read with the stdlib as
curl, wget and aria2c read it: Basic auth for the URL's host (or the ``default`` entry), never for
Hub, S3 or signed URLs."""

from __future__ import annotations

import base64
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from mdl.paths import read_small_file, shown_path
from mdl.redact import Secrets, is_signed_url

if TYPE_CHECKING:
    import netrc

log = logging.getLogger("mdl.netrc")
_DEFAULT = "default"  # the stdlib keeps netrc's ``default`` entry under this name
MAX_NETRC_BYTES = 1 << 20  # logins for a few thousand hosts: a bigger file is not a netrc


class NetrcLogins:
    """The netrc file's logins by host (lower case), or why it is not used (``problem``: said as
    a warning).
    """

    __slots__ = ("logins", "path", "problem", "secrets")

    def __init__(
        self,
        path: Path | None = None,
        logins: Mapping[str, tuple[str, str]] | None = None,
        *,
        problem: str | None = None,
        secrets: Secrets | None = None,
    ) -> None:
        self.path = path
        self.logins = logins or {}  # host -> (login, password)
        self.problem = problem
        self.secrets = Secrets() if secrets is None else secrets

    def authorization(self, url: str, headers: Mapping[str, str]) -> str | None:
        """The ``Authorization`` value for a direct URL, or None: the netrc names neither its host
        nor a default, or the URL already carries a credential (an Authorization header, which wins
        as with curl -H; userinfo; a signed query such as a presigned S3 URL's, which a second
        credential would break)."""
        if not self.logins or _carries_credential(url, headers):
            return None
        host = (urlsplit(url).hostname or "").lower()
        found = self.logins.get(host) or self.logins.get(_DEFAULT)
        if found is None:
            return None
        login, password = found
        token = base64.b64encode(f"{login}:{password}".encode()).decode("ascii")  # RFC 7617, UTF-8
        self.secrets.add(token)
        return f"Basic {token}"


def _carries_credential(url: str, headers: Mapping[str, str]) -> bool:
    """Whether a request has a credential of its own, or is not one netrc is for (not http(s))."""
    if any(name.lower() == "authorization" for name in headers):
        return True
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https"):
        return True
    return "@" in parts.netloc or is_signed_url(url)


def read_netrc(path: Path | None, secrets: Secrets | None = None) -> NetrcLogins:
    """The logins in ``path``; a missing file is no logins, a broken or unreadable one is no logins
    and a ``problem`` naming the file (and line): mdl reads it unasked, as curl --netrc-optional and
    wget do, so it never stops a run."""
    if path is None:
        return NetrcLogins()
    parsed = _parse(path)
    if isinstance(parsed, NetrcLogins):
        return parsed
    secrets = secrets or Secrets()  # the run's, told each password and each login sent
    return NetrcLogins(path, _logins(parsed, secrets), secrets=secrets)


def _parse(path: Path) -> netrc.netrc | NetrcLogins:
    """The parsed file, or what is used instead: no logins (missing), or none and a problem."""
    try:
        # a FIFO or a device is no netrc: never waited on or read whole
        read_small_file(path, limit=MAX_NETRC_BYTES)
    except FileNotFoundError:
        return NetrcLogins(path)  # (most runs: the parser, and shlex under it, never loaded)
    except (OSError, UnicodeDecodeError) as exc:
        return _unreadable(path, exc)
    import netrc

    try:
        # an explicit file: the stdlib skips its ~/.netrc permission check, as curl
        return netrc.netrc(str(path))
    except FileNotFoundError:
        return NetrcLogins(path)
    except netrc.NetrcParseError as exc:
        # Never the parser's words: they quote the token it stumbled on, which may be a password.
        # (The stdlib counts the line break after the token it stumbled on: "near".)
        near = f" near line {exc.lineno}" if exc.lineno else ""
        return _unused(
            path, f"{shown_path(str(exc.filename or path))}: cannot parse this netrc file{near}"
        )
    except (OSError, UnicodeDecodeError) as exc:
        return _unreadable(path, exc)


def _unreadable(path: Path, exc: OSError | UnicodeDecodeError) -> NetrcLogins:
    why = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not a text file"
    return _unused(path, f"{shown_path(str(path))}: cannot read this netrc file ({why})")


def _logins(parsed: netrc.netrc, secrets: Secrets) -> dict[str, tuple[str, str]]:
    """host (lower case) → (login, password), the first entry for a host winning; each password
    registered in ``secrets``."""
    logins: dict[str, tuple[str, str]] = {}
    for host, (login, _, password) in parsed.hosts.items():
        if login or password:
            secrets.add(password)
            logins.setdefault(host.lower(), (login or "", password or ""))
    return logins


def _unused(path: Path, problem: str) -> NetrcLogins:
    problem += "; not using it"
    log.warning("%s", problem)
    return NetrcLogins(path, problem=problem)
