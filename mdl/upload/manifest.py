"""The manifest of a published model: ``<prefix>/.mdl/<model>.json``, written after all its files are up.

Deterministic (sorted, no timestamps: the object's Last-Modified says when), so a re-run that changes nothing
writes nothing. It names the commit and each file's size and sha256 — the catalog.lock entry when the model is
locked — so a node, a script or a person can check the bucket without asking the Hub.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from mdl.lockfile import LockedModel
from mdl.redact import record_text
from mdl.upload.local import ReadyFile
from mdl.version import __version__

MANIFEST_VERSION = 1
MANIFEST_FOLDER = ".mdl"  # beside the model folders, as <dest>/.mdl/ is on disk: no model folder holds it


def manifest_key(model: str) -> tuple[str, str]:
    """The manifest's key parts under the prefix."""
    return MANIFEST_FOLDER, f"{model}.json"


def manifest_bytes(
    model: str,
    files: Sequence[ReadyFile],
    *,
    revision: str | None,
    commit: str | None,
    locked: LockedModel | None,
) -> bytes:
    """The manifest of ``model`` as published (UTF-8 JSON, sorted, one trailing newline)."""
    doc: dict[str, Any] = {
        "version": MANIFEST_VERSION,
        "model": model,
        "revision": record_text(locked.revision if locked is not None else revision),
        "commit": record_text(locked.commit if locked is not None else commit),
        "files": [
            {"path": f.path, "size": f.size, "sha256": f.sha256, "source": record_text(f.source)}
            for f in sorted(files, key=lambda f: f.path)
        ],
        "published_by": f"mdl {__version__}",
    }
    if locked is not None:
        doc["lock"] = {
            "fingerprint": locked.fingerprint,
            "files": [
                {
                    key: value
                    for key, value in {
                        "path": f.path,
                        "size": f.size,
                        "sha256": f.sha256,
                        "source": f.source,
                        "git_oid": f.git_oid,
                        "revision": f.revision,
                    }.items()
                    if value is not None
                }
                for f in sorted(locked.files, key=lambda f: f.path)
            ],
        }
    return (json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")
