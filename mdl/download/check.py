"""``mdl add``'s look before it writes: the repo, revision, file or URL a catalog entry names answers upstream."""

from __future__ import annotations

from collections.abc import Sequence

from mdl.catalog import FileSpec, ModelSpec, Settings
from mdl.download.planner import Planner
from mdl.download.session import PullSession
from mdl.progress import Progress
from mdl.sources import resolve_file, resolve_model


def check_entry(spec: ModelSpec, settings: Settings, *, files: Sequence[FileSpec], progress: Progress) -> None:
    """Raise the error a pull would meet (NotFoundError 4, AuthError 3, NetworkError 5, IntegrityError 6).

    A whole repo is resolved as a pull resolves it (its commit, then one listing, so that an ``include`` that
    matches nothing is found now); each of ``files`` is asked about once: a HEAD of a Hub file (which also pins
    its sha256 against ``--sha256``), a one-byte GET of a direct URL.
    """
    session = PullSession(settings, progress=progress)
    try:
        if spec.is_snapshot:
            resolve_model(spec, hub=session.hub(), environ=session.environ)
            return
        planner = Planner(session)
        for file in files:
            hub = session.hub() if file.url is None else None
            remote = resolve_file(spec.name, file, hub=hub, environ=session.environ)
            if file.url is not None:
                planner.probe(remote)
    finally:
        session.close()
