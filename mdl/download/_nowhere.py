"""The one rule for a file its origin says it does not have: "not found" (exit 4) only when no
mirror of it was left unread. A mirror that could not be read (down, denied, cut off, skipped as
down earlier in the run) makes it an outage, with the mirror's own exit code and never
integrity's (a later run may find it: a signature kept only in the bucket is not "none" while the
bucket is down); a mirror that holds other bytes of it names them as bad (exit 6)."""

from __future__ import annotations

from mdl.download.session import FileSources
from mdl.errors import AuthError, IntegrityError, MdlError, NetworkError, NotFoundError
from mdl.redact import redact_url
from mdl.sources.resolve import mirror_targets


def not_found_anywhere(sources: FileSources, exc: NotFoundError) -> MdlError:
    """What the fetch of ``sources``' file fails with, its origin having said ``exc``: ``exc``
    itself when every mirror of the file answered that it has none (or it has no mirror)."""
    label = sources.job.label
    origin = exc.message.removeprefix(f"{label}: ")
    bad = next(((u, e) for u, e in sources.missed if isinstance(e, IntegrityError)), None)
    if bad is not None:
        return IntegrityError(
            f"{label}: mirror {redact_url(bad[0])} holds bad bytes of it"
            f" ({_why(bad[1], label)}), and its origin has none ({origin})",
            hint=bad[1].hint,
        )
    unread = [(t, e) for t, e in sources.missed if not isinstance(e, NotFoundError)]
    said = [f"mirror {redact_url(u)} could not be read ({_why(e, label)})" for u, e in unread]
    said += [
        f"mirror {redact_url(t)} is not usable in this run"
        for t in _skipped(sources, {u for u, _ in unread})
    ]
    if not said:
        return exc
    kind = AuthError if unread and isinstance(unread[0][1], AuthError) else NetworkError
    return kind(
        f"{label}: its origin has none ({origin}) and {'; '.join(said)}",
        hint="retry once the mirror answers: the file may be there",
    )


def _skipped(sources: FileSources, tried: set[str]) -> list[str]:
    """The mirrors of the file this run no longer reads (found down earlier in the run) whose URL
    of it was not ``tried``: its place there is not known either."""
    return [
        template
        for template, url in mirror_targets(sources.session.settings.mirrors, sources.remote)
        if template in sources.session.owned.dead_mirrors and url not in tried
    ]


def _why(exc: MdlError, label: str) -> str:
    return exc.message.removeprefix(f"{label}: ")
