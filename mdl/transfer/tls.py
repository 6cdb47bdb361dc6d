"""Which certificate authorities mdl trusts, from the run's environment, and how a refused certificate is told.

A CA bundle file: ``REQUESTS_CA_BUNDLE`` (requests), else ``CURL_CA_BUNDLE`` (curl), else ``SSL_CERT_FILE``
(OpenSSL); a folder of hashed certificates: ``SSL_CERT_DIR``. When none is set, the system's trust store.
The order is ours, explicit, and read from the run's environment (not from ``os.environ`` behind our back).
"""

from __future__ import annotations

import re
import ssl
from collections.abc import Mapping
from pathlib import Path

from mdl.errors import UsageError

CA_FILE_VARIABLES = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE")
CA_DIR_VARIABLE = "SSL_CERT_DIR"
_OPENSSL_SOURCE = re.compile(r"\s*\(_ssl\.c:\d+\)")
CA_HINT = (
    "if a proxy or your company re-signs TLS, point REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE or SSL_CERT_FILE "
    "at its CA bundle (or SSL_CERT_DIR at a folder of hashed certificates); mdl reads them in that order"
)


def ca_locations(environ: Mapping[str, str]) -> tuple[tuple[str, Path] | None, Path | None]:
    """The CA bundle (variable, file) and the CA folder mdl was told to use, if any."""
    bundle: tuple[str, Path] | None = None
    for name in CA_FILE_VARIABLES:
        value = (environ.get(name) or "").strip()
        if value:
            bundle = (name, Path(value).expanduser())
            break
    folder_value = (environ.get(CA_DIR_VARIABLE) or "").strip()
    return bundle, Path(folder_value).expanduser() if folder_value else None


def check_ca_locations(environ: Mapping[str, str]) -> tuple[str | None, str | None]:
    """The (cafile, capath) the environment names, checked to exist: a wrong variable is exit 2 at start, while
    loading the certificates (tens of ms) waits for the first TLS connection."""
    bundle, folder = ca_locations(environ)
    cafile: str | None = None
    capath: str | None = None
    if bundle is not None:
        name, path = bundle
        if path.is_dir():  # requests accepts a folder in REQUESTS_CA_BUNDLE
            capath = str(path)
        elif path.is_file():
            cafile = str(path)
        else:
            raise UsageError(f"${name}: no such CA bundle {str(path)!r}", hint=CA_HINT)
    if folder is not None:
        if not folder.is_dir():
            raise UsageError(f"${CA_DIR_VARIABLE}: no such folder {str(folder)!r}", hint=CA_HINT)
        capath = capath or str(folder)
    return cafile, capath


def ssl_context(environ: Mapping[str, str]) -> ssl.SSLContext:
    """A verifying client context trusting the CAs the environment names, else the system's."""
    bundle, folder = ca_locations(environ)
    if bundle is None and folder is None:
        import httpcore2

        return httpcore2.default_ssl_context(_trust_env=False)
    cafile, capath = check_ca_locations(environ)
    try:
        return ssl.create_default_context(cafile=cafile, capath=capath)
    except (ssl.SSLError, OSError, ValueError) as exc:
        where = bundle[0] if bundle is not None else CA_DIR_VARIABLE
        raise UsageError(f"${where}: cannot load the CA certificates: {exc}", hint=CA_HINT) from None


def certificate_problem(exc: BaseException) -> str | None:
    """The verification failure behind a transport error (``certificate has expired``, ...), if it is one."""
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
            return _OPENSSL_SOURCE.sub("", detail).strip(" ()_") or "certificate verify failed"
    return None
