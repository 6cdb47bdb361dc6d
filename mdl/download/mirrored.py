"""Mirrors first: a planned file from each mirror in turn (http(s) or presigned ``s3://``), every byte verified
against the origin's hashes; a mirror that fails for the file leaves it to the next source."""

from __future__ import annotations

import logging
from dataclasses import replace

from mdl.download.session import PullSession
from mdl.errors import AuthError, InterruptedByUserError, MdlError, NetworkError, UsageError
from mdl.redact import redact_url, safe_text
from mdl.sources import RemoteFile, mirror_targets, s3_reason
from mdl.transfer import Credentials, RetryLog, TransferJob, TransferResult, discard_partial

log = logging.getLogger("mdl.pull")


def fetch_from_mirrors(
    session: PullSession, job: TransferJob, remote: RemoteFile, *, retries: RetryLog
) -> TransferResult | None:
    """The file from the first mirror that delivers its verified bytes, or None: the origin's turn."""
    label = job.label
    for template, url in mirror_targets(session.settings.mirrors, remote):
        if session.mirror_down(template):
            continue
        s3 = url.startswith("s3://")
        shown = safe_text(url) if s3 else redact_url(url)
        try:
            # A mirror gets no credentials of ours (an s3:// one: a presigned GET, signed with the AWS chain's
            # keys), and its bytes must match the origin's hashes: always verified, and a mismatch is not
            # retried there (the next source is).
            where = session.s3.presign(url, template=template) if s3 else url
            result = session.mirror_engine.fetch(
                replace(
                    job,
                    url=where,
                    credentials=Credentials(),
                    verify=True,
                    retry_on_mismatch=False,
                    renewable=False,
                    located=None,  # the origin's probe says nothing about a mirror
                )
            )
        except InterruptedByUserError:
            raise
        except MdlError as exc:
            if session.cancel.is_set():
                raise InterruptedByUserError("interrupted; partial downloads were kept") from exc
            # Never let the next source resume on a mirror's bytes: only verified bytes may be trusted, and
            # with --no-verify nothing would catch a splice.
            discard_partial(job)
            why = exc.message.removeprefix(f"{label}: ")
            if s3:  # the store's XML error code says it better than the reply to a signed URL does
                why = s3_reason(exc.server_text or exc.message, exc.status) or why
            if _mirror_is_down(exc, s3=s3):
                mirror = safe_text(template)
                if session.mark_mirror_down(template, why):  # said once, with the first file it failed
                    retries.warn(f"mirror {mirror} is not usable ({why}); using the next source")
                else:
                    retries.add(f"mirror {shown} failed ({why})")
                continue
            # A fleet node that silently bypasses its mirror defeats the mirror: every fallback is a warning
            # (stderr in every progress mode, the file's ``warning`` in --json, the log), not only a note.
            retries.warn(f"{label}: mirror {shown} failed ({why}); trying the next source")
            continue
        log.info("%s: fetched from mirror %s", label, shown)
        session.progress.finish(label, ok=True)
        return replace(result, mirror=shown)
    return None


# What an S3 store answers when the mirror as a whole cannot serve us (the keys, the bucket), as opposed to
# AccessDenied / NoSuchKey, which a read-only policy without s3:ListBucket also answers for one missing object.
_S3_DOWN = ("NoSuchBucket", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "AllAccessDisabled")


def _mirror_is_down(exc: MdlError, *, s3: bool) -> bool:
    """Whether a mirror failed as a whole (nothing listens, bad keys, no such bucket, no s3 extra), not only for
    one file (missing there, other bytes, a reset or a 5xx that may pass): then it is left for the run."""
    said = f"{exc.message} {exc.server_text or ''}"
    if isinstance(exc, UsageError):  # the s3 extra missing, or the store's endpoint unusable; a bad key is per file
        return "mdl[s3]" in said or "endpoint" in said.lower()
    if isinstance(exc, NetworkError) and exc.status is None:
        return any(words in said for words in ("cannot connect", "cannot reach", "did not accept a connection"))
    if s3:
        return any(code in said for code in _S3_DOWN)
    return isinstance(exc, AuthError)
