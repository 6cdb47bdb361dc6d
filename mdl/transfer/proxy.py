"""Which proxy a URL goes through, read from the run's environment as curl reads it: ``<scheme>_proxy`` then
``all_proxy``, lowercase before uppercase; ``no_proxy`` lists ``*``, host names (with their subdomains), ``.domain``,
IP addresses or CIDR blocks, each optionally with ``:port``."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from mdl.errors import UsageError
from mdl.redact import REDACTED


@dataclass(frozen=True)
class Proxy:
    url: str
    source: str  # e.g. "HTTPS_PROXY"

    @property
    def shown(self) -> str:
        parts = urlsplit(self.url)
        if "@" not in parts.netloc:
            return self.url
        userinfo, host = parts.netloc.rsplit("@", 1)
        user = userinfo.split(":", 1)[0]
        return urlunsplit((parts.scheme, f"{user}:{REDACTED}@{host}", parts.path, parts.query, parts.fragment))

    def describe(self) -> str:
        return f"proxy {self.shown} (from {self.source})"


def _lookup(environ: Mapping[str, str], name: str) -> tuple[str, str] | None:
    for spelling in (name.lower(), name.upper()):
        value = (environ.get(spelling) or "").strip()
        if value:
            return value, spelling
    return None


def proxy_for(url: str, environ: Mapping[str, str]) -> Proxy | None:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        return None
    found = _lookup(environ, f"{scheme}_proxy") or _lookup(environ, "all_proxy")
    if found is None:
        return None
    value, source = found
    no_proxy = _lookup(environ, "no_proxy")
    if no_proxy is not None and bypasses(
        parts.hostname or "", parts.port or (443 if scheme == "https" else 80), no_proxy[0]
    ):
        return None
    if "://" not in value:
        value = f"http://{value}"  # curl's default proxy scheme
    proxy_parts = urlsplit(value)
    if proxy_parts.scheme.lower() not in ("http", "https") or not proxy_parts.hostname:
        shown = Proxy(value, source).shown
        raise UsageError(f"${source}: expected an http:// or https:// proxy URL, got {shown!r}")
    return Proxy(value, source)


def bypasses(host: str, port: int, no_proxy: str) -> bool:
    host = host.lower().strip("[]")
    for raw in no_proxy.split(","):
        entry = raw.strip().lower()
        if not entry:
            continue
        if entry == "*":
            return True
        entry_host, entry_port = _split_port(entry)
        if entry_port is not None and entry_port != port:
            continue
        if _matches(host, entry_host):
            return True
    return False


def _split_port(entry: str) -> tuple[str, int | None]:
    if entry.startswith("["):  # [v6]:port
        end = entry.find("]")
        rest = entry[end + 1 :]
        port = int(rest[1:]) if rest.startswith(":") and _is_port(rest[1:]) else None
        return entry[1:end], port
    if entry.count(":") == 1:
        name, _, digits = entry.partition(":")
        if _is_port(digits):
            return name, int(digits)
    return entry, None


def _is_port(text: str) -> bool:
    return text.isascii() and text.isdigit() and len(text) <= 5  # int() takes '²' and chokes on 5000 digits


def _matches(host: str, entry: str) -> bool:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    if address is not None:
        try:
            return address in ipaddress.ip_network(entry, strict=False)
        except ValueError:
            return False
    entry = entry.lstrip(".")
    if entry.startswith("*."):
        entry = entry[2:]
    return host == entry or host.endswith("." + entry)
