"""``catalog.lock``: each model's commit, files, sizes and sha256, pinned so every machine pulls the
same bytes without a Hub listing; and how a run uses it (LockUse: --locked, --frozen)."""

from typing import TYPE_CHECKING

from mdl.lazy import export_lazily

if TYPE_CHECKING:
    from mdl.lockfile.io import (
        ModelChange,
        diff_locks,
        exclusive,
        parse_lock,
        read_lock,
        write_lock,
    )
    from mdl.lockfile.model import (
        Lock,
        LockedFile,
        LockedModel,
        fingerprint,
        locked_from_resolved,
        resolved_from_locked,
    )
    from mdl.lockfile.policy import LockUse, frozen_models

__all__ = [
    "Lock",
    "LockUse",
    "LockedFile",
    "LockedModel",
    "ModelChange",
    "diff_locks",
    "exclusive",
    "fingerprint",
    "frozen_models",
    "locked_from_resolved",
    "parse_lock",
    "read_lock",
    "resolved_from_locked",
    "write_lock",
]

export_lazily(
    __name__,
    {
        "ModelChange": "io",
        "diff_locks": "io",
        "exclusive": "io",
        "parse_lock": "io",
        "read_lock": "io",
        "write_lock": "io",
        "Lock": "model",
        "LockedFile": "model",
        "LockedModel": "model",
        "fingerprint": "model",
        "locked_from_resolved": "model",
        "resolved_from_locked": "model",
        "LockUse": "policy",
        "frozen_models": "policy",
    },
)
