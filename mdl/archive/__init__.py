"""Packing a training run into a deterministic zip, and unpacking archives safely, from a file or
a pipe.
"""

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
