"""Packing a training run into a deterministic zip, and unpacking archives safely, from a file or
a pipe.
"""

from typing import TYPE_CHECKING

from mdl.lazy import export_lazily

if TYPE_CHECKING:
    from mdl.archive.collect import PackOptions
    from mdl.archive.packer import PackResult, pack_run
    from mdl.archive.staging import recover as recover_unpacks
    from mdl.archive.unpack import UnpackResult, unpack_archive, unpack_stream
    from mdl.archive.zipread import DEFAULT_MAX_RATIO

__all__ = [
    "DEFAULT_MAX_RATIO",
    "PackOptions",
    "PackResult",
    "UnpackResult",
    "pack_run",
    "recover_unpacks",
    "unpack_archive",
    "unpack_stream",
]

export_lazily(
    __name__,
    {
        "PackOptions": "collect",
        "PackResult": "packer",
        "pack_run": "packer",
        "recover_unpacks": "staging:recover",
        "UnpackResult": "unpack",
        "unpack_archive": "unpack",
        "unpack_stream": "unpack",
        "DEFAULT_MAX_RATIO": "zipread",
    },
)
