"""``lock --check`` asks nothing it need not: the signature a lock pins is taken by its sha256 from
where a pull installed it on this machine (the model's ``model.sig``) before any mirror or source
is asked; only a signature not here is fetched, and that is said."""

from __future__ import annotations

import hashlib
import logging

from mdl.download.session import PullSession, label_of
from mdl.errors import MdlError
from mdl.sources.resolve import RemoteFile
from mdl.store.verify import read_signature

log = logging.getLogger("mdl.lock")


def signature_here(session: PullSession, sig: RemoteFile) -> bytes | None:
    """The bytes of the signature file ``sig`` pins (by its sha256) when they are installed here,
    read as mdl's own state (bounded, no link followed); None: not here, or other bytes."""
    if sig.sha256 is None:
        return None
    try:
        placement = session.layout.place(
            sig.model, sig.path, source=sig.source, sha256=sig.sha256, git_oid=sig.git_oid
        )
        data = read_signature(placement.store.dest, placement.final, what=label_of(sig))
    except MdlError:  # not here (or not readable as mdl's): fetched
        return None
    if hashlib.sha256(data).hexdigest() != sig.sha256:
        return None
    log.info("%s: the signature the lock pins, read where it is installed here", label_of(sig))
    return data


def fetching_said(session: PullSession, sig: RemoteFile) -> None:
    """Why a check that changes nothing asks the network: the pinned signature is not here, and
    only its bytes can tell whether it covers the files the lock pins."""
    note = (
        f"{label_of(sig)}: not on this machine; fetching it by its pinned sha256 to check that it"
        " covers the files the lock pins"
    )
    log.info("%s", note)
    session.progress.note(note)
