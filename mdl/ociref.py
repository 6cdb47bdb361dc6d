"""``oci://`` names: a registry, a repository in it, a tag or a manifest digest (the distribution
spec's grammar), and the pinned source a file of such a model is recorded and locked by
(``oci://REGISTRY/REPOSITORY@sha256:DIGEST/PATH``, as ``hf://owner/name@commit/path``)."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from mdl.errors import RegistryReplyError, UsageError
from mdl.paths import SHA256_HEX, path_problem, shown
from mdl.redact import printable

_HOST = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*"
_REGISTRY = rf"(?P<registry>(?:{_HOST}|\[[0-9A-Fa-f:.]+\])(?::[0-9]{{1,5}})?)"
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REPOSITORY = rf"(?P<repository>{_COMPONENT}(?:/{_COMPONENT})*)"
_TAG = r"(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9._-]{0,127}))?"
_DIGEST = r"(?:@(?P<digest>[A-Za-z0-9_+.-]+:[A-Za-z0-9=_-]+))?"
_REFERENCE = re.compile(f"oci://{_REGISTRY}/{_REPOSITORY}{_TAG}{_DIGEST}")
_SOURCE = re.compile(f"oci://{_REGISTRY}/{_REPOSITORY}@sha256:(?P<hex>[0-9a-f]{{64}})/(?P<path>.+)")
MAX_REFERENCE = 4096  # characters: longer is no reference (distribution caps a name at 255)
OCI_FORM = "oci://REGISTRY/REPOSITORY:TAG or oci://REGISTRY/REPOSITORY@sha256:DIGEST"


@dataclass(frozen=True)
class OciRef:
    """An ``oci://`` reference: a registry, a repository in it, and a tag or a manifest digest."""

    registry: str  # host[:port]
    repository: str
    tag: str | None
    digest: str | None  # "sha256:<64 hex>"

    @property
    def reference(self) -> str:
        """What the manifest is asked by: the digest when pinned, else the tag (``latest``)."""
        return self.digest or self.tag or "latest"

    @property
    def given(self) -> str:
        """The reference as mdl writes it (the tag and the digest, when both are known)."""
        tag = f":{self.tag}" if self.tag else ""
        digest = f"@{self.digest}" if self.digest else ""
        return f"oci://{self.registry}/{self.repository}{tag}{digest}"

    @property
    def scheme(self) -> str:
        """https; plain http for a registry on this machine (localhost, 127.x, [::1]), as Docker
        and oras treat one."""
        host = self.registry.rpartition("]")[0].lstrip("[") or self.registry.split(":")[0]
        try:
            loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
        except ValueError:  # a name, not an address
            loopback = False
        return "http" if loopback else "https"

    @property
    def base(self) -> str:
        """The repository's API URL: ``{scheme}://{registry}/v2/{repository}``."""
        return f"{self.scheme}://{self.registry}/v2/{self.repository}"

    def blob_url(self, digest: str) -> str:
        return f"{self.base}/blobs/{digest}"

    def source(self, path: str) -> str:
        """A file of the model at this (pinned) manifest, as records and locks name it."""
        assert self.digest is not None, "a source names the manifest's digest"
        return f"oci://{self.registry}/{self.repository}@{self.digest}/{path}"


def parse_oci_ref(text: str, *, where: str | None = None) -> OciRef:
    """``oci://REGISTRY/REPOSITORY[:TAG][@sha256:DIGEST]``, or UsageError naming ``where``; a
    digest must be sha256 (the one hash mdl verifies)."""
    where = where or shown(text)
    found = _REFERENCE.fullmatch(text) if len(text) <= MAX_REFERENCE else None
    if found is None:
        raise UsageError(f"{where}: not an OCI reference", hint=f"write {OCI_FORM}")
    digest = found["digest"]
    if digest is not None:
        check_digest(digest, what=f"{where}: its digest", error=UsageError)
    return OciRef(found["registry"], found["repository"], found["tag"], digest)


def parse_oci_source(source: str) -> tuple[OciRef, str] | None:
    """A pinned source (``oci://REG/REPO@sha256:HEX/PATH``): the reference and the file's path;
    None for anything else."""
    found = _SOURCE.fullmatch(source) if len(source) <= MAX_REFERENCE else None
    if found is None:
        return None
    ref = OciRef(found["registry"], found["repository"], None, f"sha256:{found['hex']}")
    return ref, found["path"]


def oci_source_problem(source: str) -> str | None:
    """Why ``source`` is no pinned oci:// source of a file a model can have, or None."""
    parsed = parse_oci_source(source)
    if parsed is None:
        return "an OCI source must be oci://REGISTRY/REPOSITORY@sha256:<64 hex>/PATH"
    if (problem := path_problem(parsed[1])) is None:
        return None
    return f"unsafe path {printable(parsed[1], limit=120)!r}: {problem}"


def check_digest(
    digest: object, *, what: str, error: type[UsageError | RegistryReplyError] = RegistryReplyError
) -> str:
    """A ``sha256:<64 lowercase hex>`` digest, or ``error`` naming ``what``: another algorithm
    (sha512, blake3) is refused, as mdl checks every byte by sha256."""
    if not isinstance(digest, str):
        raise error(f"{what} is not a digest")
    algorithm, _, value = digest.partition(":")
    if algorithm != "sha256":
        raise error(
            f"{what} is {printable(digest, limit=100)!r}, not a sha256 digest; mdl verifies"
            " sha256 only, so it is refused"
        )
    if SHA256_HEX.fullmatch(value) is None:
        raise error(f"{what}: {printable(digest, limit=100)!r} is not 64 lowercase hex digits")
    return digest
