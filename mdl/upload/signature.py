"""``mdl publish --sign KEY.pem``: a model.sig (OpenSSF model signing) beside a model's objects, made from the sha256
each file was checked by before it went up (nothing is read again), where a pull from the mirror looks for it."""

from __future__ import annotations

import hashlib
import logging
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from mdl.errors import IntegrityError, MdlError, UsageError
from mdl.report import FileOutcome, failed
from mdl.signing import SIGNATURE_FILE, Trust, public_key_of, sign_digests, skipped_by_signature, verify_signature
from mdl.upload.bucket import Bucket, ReadyFile

log = logging.getLogger("mdl.publish")
# What a signature leaves out, as model_signing's own `sign` and `verify` do: itself and the .git* files.
LEFT_OUT = (SIGNATURE_FILE,)


@dataclass(frozen=True)
class Signature:
    """A model's model.sig and the digests it signs (path → sha256)."""

    model: str
    digests: dict[str, str]
    data: bytes


class Signer:
    """Signs with one EC private key (PEM): refused at once (exit 2 naming it, or ``mdl[sign]``) when not usable."""

    def __init__(self, key: Path, *, force: bool) -> None:
        sign_digests({}, private_key=key, model_name="")  # the library and the key, before anything is read or sent
        self.key = key
        self.force = force
        self.public_key = public_key_of(key)  # to check a model.sig already in the bucket

    def leaves_out_own(self, model: str, paths: Iterable[str | None]) -> bool:
        """Whether the model's own model.sig (from its source) is left out for ours: with ``--force``; without it,
        UsageError (exit 2), as our signature would replace it in the bucket. False when it has none."""
        if SIGNATURE_FILE not in set(paths):
            return False
        if not self.force:
            raise UsageError(
                f"{model}/{SIGNATURE_FILE}: the model has a signature of its own (from its source), "
                f"which --sign would replace in the bucket",
                hint="--force publishes mdl's signature in its place; without --sign the model's own is published",
            )
        return True

    def sign(self, model: str, files: Sequence[ReadyFile]) -> Signature:
        """The signature over every file published but those a signature leaves out (model.sig, ``.git*``)."""
        digests = {f.path: f.sha256 for f in files if not skipped_by_signature(f.path, LEFT_OUT)}
        return Signature(model, digests, sign_digests(digests, private_key=self.key, model_name=model))

    def there(self, bucket: Bucket, signature: Signature) -> Signature | None:
        """The bucket's model.sig when it already signs these digests for this model with this key (a re-run then
        writes nothing): verified with the key, never taken for its looks. Another key's, another statement's or a
        damaged one is None: replaced."""
        data = bucket.read_small(bucket.target.key(signature.model, SIGNATURE_FILE))
        if data is None:
            return None
        with tempfile.TemporaryDirectory(prefix="mdl-publish-") as folder:
            public = Path(folder, "key.pub")
            public.write_bytes(self.public_key)
            try:
                signed = verify_signature(data, Trust(key=public), what=bucket.target.uri(signature.model))
            except IntegrityError:
                return None
        files = {path: f.sha256 for path, f in signed.files.items()}
        same = signed.model_name == signature.model and signed.free and files == signature.digests
        return replace(signature, data=data) if same else None

    def outcome(self, bucket: Bucket, signature: Signature, action: str) -> FileOutcome:
        """The model.sig's row: ``uploaded``, ``skipped`` (already there), or a dry run's ``upload``/``skip``."""
        data = signature.data
        reason = f"signed with {self.key}"
        if action.startswith("skip"):
            reason = "already in the bucket (verified: this key signed these files)"
        fetched = len(data) if action == "uploaded" else 0
        dest = bucket.target.uri(signature.model, SIGNATURE_FILE)
        sha256 = hashlib.sha256(data).hexdigest()
        return FileOutcome(
            signature.model, SIGNATURE_FILE, dest, len(data), sha256, action, reason=reason, fetched=fetched
        )

    def publish(self, bucket: Bucket, signature: Signature) -> FileOutcome:
        """Put the model.sig at ``<prefix>/<model>/model.sig``, unless the one there already signs the same."""
        dest = bucket.target.uri(signature.model, SIGNATURE_FILE)
        try:
            kept = self.there(bucket, signature)
            if kept is not None:
                return self.outcome(bucket, kept, "skipped")
            key = bucket.target.key(signature.model, SIGNATURE_FILE)
            bucket.put_small(key, signature.data, content_type="application/json")
        except MdlError as exc:
            return replace(failed(signature.model, SIGNATURE_FILE, exc), dest=dest)
        log.info("%s: signature written to %s", signature.model, dest)
        return self.outcome(bucket, signature, "uploaded")
