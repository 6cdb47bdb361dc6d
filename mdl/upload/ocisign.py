"""``mdl publish --to oci://… --sign KEY.pem``: the version's model.sig (an OpenSSF model signature
over its published files, as a bucket's publish makes) attached to its manifest as an OCI referrer
(mdl.sources.ocisigs). A signature this key already made over these very files, attached to that
manifest, is kept: a re-publish attaches nothing."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence

from mdl.errors import MdlError
from mdl.paths import OciRef
from mdl.report import FileOutcome
from mdl.signing.library import MAX_SIGNATURE_BYTES
from mdl.signing.statement import SIGNATURE_FILE
from mdl.sources.ocimanifest import manifest_digest
from mdl.sources.ocipush import RegistryWriter
from mdl.sources.ocisigs import attach_signature, signature_layers
from mdl.upload._bucket import ReadyFile
from mdl.upload.publisher import Signer

log = logging.getLogger("mdl.publish")


def sign_artifact(
    writer: RegistryWriter,
    signer: Signer,
    model: str,
    files: Sequence[ReadyFile],
    manifest: bytes,
    *,
    dry_run: bool,
) -> FileOutcome:
    """The signature of the artifact whose manifest ``manifest`` (its bytes, pushed to
    ``writer``'s repository) lists ``files``: kept when one this key made over them is attached
    already, else made and attached (a dry run: said only); its row."""
    ref = writer.ref._replace(tag=None, digest=manifest_digest(manifest))
    made = signer.sign(model, files)
    kept = _attached(writer, signer, ref, made.digests, model)
    data = kept or made.data
    sha256 = hashlib.sha256(data).hexdigest()
    url = ref.blob_url(f"sha256:{sha256}")
    if kept is not None:
        reason = "a signature this key made over these files is attached already"
        action = "skip" if dry_run else "skipped"
    elif dry_run:
        reason, action = f"to be signed with {signer.key}, as a referrer of the manifest", "upload"
    else:
        referrer = attach_signature(writer, manifest, data, what=model)
        reason, action = f"signed with {signer.key}; referrer {referrer}", "uploaded"
    return FileOutcome(model, SIGNATURE_FILE, url, len(data), sha256, action, reason=reason)


def _attached(
    writer: RegistryWriter, signer: Signer, ref: OciRef, digests: dict[str, str], model: str
) -> bytes | None:
    """The bytes of a signature referrer of ``ref``'s manifest that this key made over exactly
    ``digests`` (path → sha256), or None (none; the manifest not there yet; any not readable)."""
    registry = writer.registry
    try:
        layers = signature_layers(registry, ref, what=model)
    except MdlError as exc:  # (a manifest the registry lacks yet has no referrer)
        log.info("%s: its signature referrers not read: %s", model, exc.message)
        return None
    for layer in layers:
        if layer.size > MAX_SIGNATURE_BYTES:
            continue
        got = registry.small_reply(ref, ref.blob_url(layer.digest), what=model)
        if got is None or hashlib.sha256(got[0]).hexdigest() != layer.sha256:
            continue
        statement = signer.verified(got[0], what=f"{model}: referrer {layer.digest}")
        if statement is not None and {p: f.sha256 for p, f in statement.files.items()} == digests:
            return got[0]
    return None
