"""OpenSSF model signatures (model.sig): whom to trust, what a verified signature says, and
making one.
"""

from typing import TYPE_CHECKING

from mdl.lazy import export_lazily

if TYPE_CHECKING:
    from mdl.signing.library import (
        MAX_SIGNATURE_BYTES,
        import_ahead,
        public_key_of,
        require_library,
        sign_digests,
        verify_signature,
    )
    from mdl.signing.statement import (
        SIGNATURE_FILE,
        SignedFile,
        SignedManifest,
        Trust,
        git_path,
        key_id,
        skipped_by_signature,
    )

__all__ = [
    "MAX_SIGNATURE_BYTES",
    "SIGNATURE_FILE",
    "SignedFile",
    "SignedManifest",
    "Trust",
    "git_path",
    "import_ahead",
    "key_id",
    "public_key_of",
    "require_library",
    "sign_digests",
    "skipped_by_signature",
    "verify_signature",
]

export_lazily(
    __name__,
    {
        "MAX_SIGNATURE_BYTES": "library",
        "import_ahead": "library",
        "public_key_of": "library",
        "require_library": "library",
        "sign_digests": "library",
        "verify_signature": "library",
        "SIGNATURE_FILE": "statement",
        "SignedFile": "statement",
        "SignedManifest": "statement",
        "Trust": "statement",
        "git_path": "statement",
        "key_id": "statement",
        "skipped_by_signature": "statement",
    },
)
