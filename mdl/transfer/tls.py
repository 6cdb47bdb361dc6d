"""Which CAs a connection trusts (the run's environment, as requests, curl and OpenSSL read it), one
shared context per CA setting, and what a certificate failure says."""

from __future__ import annotations

import re
import ssl
import threading
from collections.abc import Mapping
from pathlib import Path

import httpx2

from mdl.errors import UsageError
from mdl.setting import CA_HINT, ca_locations

_OPENSSL_SOURCE = r"\s*\(_ssl\.c:\d+\)"


# The process's contexts, one per CA setting: loading the CAs costs ~30 ms of CPU, paid at the first
# TLS connection of the first client that needs them and never again (a context is shared between
# threads and clients as it is between one pool's connections; nothing changes it once built).
_CONTEXTS: dict[tuple[object, ...], ssl.SSLContext] = {}
_CONTEXTS_LOCK = threading.Lock()


def _stamp(path: str | None) -> tuple[int, int, int] | None:
    """What tells a CA file or folder rewritten in place from the one a context was built from."""
    if path is None:
        return None
    try:
        found = Path(path).stat()
    except OSError:  # gone since ca_locations looked: loading it says why
        return None
    return found.st_ino, found.st_size, found.st_mtime_ns


def shared_ssl_context(environ: Mapping[str, str]) -> ssl.SSLContext:
    """The process's context for the CAs ``environ`` names (see :func:`ssl_context`), built once per
    CA setting (and per version of its file or folder), by one thread while the others wait."""
    cafile, capath, where = ca_locations(environ)
    if where is None:  # the system's store: a long-lived process sees update-ca-certificates too
        system = ssl.get_default_verify_paths()
        cafile, capath = system.cafile, system.capath
    key = (where, cafile, capath, _stamp(cafile), _stamp(capath))
    with _CONTEXTS_LOCK:
        context = _CONTEXTS.get(key)
        if context is None:
            context = _CONTEXTS[key] = ssl_context(environ)
        return context


def ssl_context(environ: Mapping[str, str]) -> ssl.SSLContext:
    """A new context trusting the CAs ``environ`` names (``CA_FILE_VARIABLES``, ``SSL_CERT_DIR``),
    else the system's (httpx2's default, without reading the process's own environment)."""
    cafile, capath, where = ca_locations(environ)
    if where is None:
        return httpx2.create_ssl_context(trust_env=False)
    try:
        return ssl.create_default_context(cafile=cafile, capath=capath)
    except (ssl.SSLError, OSError, ValueError) as exc:
        raise UsageError(
            f"${where}: cannot load the CA certificates: {exc}", hint=CA_HINT
        ) from None


def certificate_problem(exc: BaseException) -> str | None:
    """The verification failure behind a transport error (``certificate has expired``, ...), if
    it is one.
    """
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and all(current is not seen for seen in chain):
        chain.append(current)
        current = current.__cause__ or current.__context__
    for link in chain:
        if isinstance(link, ssl.SSLCertVerificationError):
            return str(link.verify_message or link.reason or "certificate verify failed")
    for link in chain:  # wrapped without its cause: only the text is left
        text = str(link)
        if "CERTIFICATE_VERIFY_FAILED" in text:
            detail = text.split("certificate verify failed:", 1)[-1]
            return re.sub(_OPENSSL_SOURCE, "", detail).strip(" ()_") or "certificate verify failed"
    return None
