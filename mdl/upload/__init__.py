"""Publishing: the verified local files of catalog models, uploaded to S3-compatible storage with a
manifest each, so a fleet pulls from its own bucket instead of the Hub; and that mirror pruned."""

from typing import TYPE_CHECKING

from mdl.lazy import export_lazily

if TYPE_CHECKING:
    from mdl.upload.mirrorprune import (
        KEEP_DAYS,
        MirrorEntry,
        MirrorPruneReport,
        prune_mirror,
        prune_mirror_models,
    )
    from mdl.upload.publisher import PublishReport, publish_models

__all__ = [
    "KEEP_DAYS",
    "MirrorEntry",
    "MirrorPruneReport",
    "PublishReport",
    "prune_mirror",
    "prune_mirror_models",
    "publish_models",
]

export_lazily(
    __name__,
    {
        "KEEP_DAYS": "mirrorprune",
        "MirrorEntry": "mirrorprune",
        "MirrorPruneReport": "mirrorprune",
        "prune_mirror": "mirrorprune",
        "prune_mirror_models": "mirrorprune",
        "PublishReport": "publisher",
        "publish_models": "publisher",
    },
)
