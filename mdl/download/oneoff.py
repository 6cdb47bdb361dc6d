"""What a one-off ``mdl get`` leaves in a folder's ``.mdl/``: nothing once done, and nobody else's state touched.

Lock files go with their release (``mdl.store.locks``). What is left are the state folders: get removes those
that are empty, never a tree (``rmdir`` fails on a folder that is not empty, so nothing another run keeps
there is lost). A run that needs a folder again (a ``pull --dest D`` beside the get) creates it anew: every
write under ``.mdl`` walks its folders afresh (``mdl.store.confined``).
"""

from __future__ import annotations

from mdl.store import Store, rmdir_empty

_SUBFOLDERS = ("partial", "locks", "records")


def tidy_after(store: Store) -> None:
    """Remove the empty state folders under ``<dest>/.mdl`` (deepest first), and ``.mdl`` itself if empty."""
    for sub in _SUBFOLDERS:
        rmdir_empty(store.dest, store.state_dir / sub)
    rmdir_empty(store.dest, store.state_dir)
