"""When the Hub cannot be asked, keep what is installed and verified — as ``hf_hub_download`` serves its cache.

A model whose check for updates fails because the Hub is down (cannot connect, no answer in time, 5xx after the
retries) or refuses a check made without a token (401/403 and no token), and that is installed at a verified
commit, is kept: each file is ``skipped`` with one warning, and counts as present. A model never installed (or
not completely, or whose files changed since they were verified) fails as before.
"""

from __future__ import annotations

import logging
import stat as st

from mdl.catalog import ModelSpec
from mdl.errors import AuthError, MdlError, NetworkError
from mdl.report import FileOutcome
from mdl.store import FileRecord, Layout, LocalFile, hash_file, model_status, stat_file
from mdl.transfer import UnreachableError

log = logging.getLogger("mdl.pull")


def is_outage(exc: MdlError, *, token: str | None) -> bool:
    """A failure to check with the Hub that says nothing about the installed files."""
    if isinstance(exc, AuthError):
        return token is None  # a check without a token refused; with a token, a refusal is news to report
    return isinstance(exc, NetworkError)


def is_unreachable(exc: MdlError) -> bool:
    """The Hub did not answer at all (no connection, or no answer in time): asking again in this run is futile."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, UnreachableError):
            return True
        cause = cause.__cause__
    return False


def keep_installed(spec: ModelSpec, exc: MdlError, layout: Layout, *, token: str | None) -> list[FileOutcome] | None:
    """The model's files as ``skipped`` with a warning, if ``exc`` is an outage and the model is installed and
    verified; None when it must fail as before."""
    if not is_outage(exc, token=token):
        return None
    status = model_status(spec, layout)
    record = status.record
    if status.status != "installed" or record is None or not status.files:
        return None
    if not all(_still_verified(f, record.files.get(f.path)) for f in status.files):
        return None
    commits = {entry.commit for entry in record.files.values() if entry.commit} | (
        {record.commit} if record.commit else set()
    )
    kept = f"commit {commits.pop()[:12]}" if len(commits) == 1 else "the installed files"
    warning = f"could not check {spec.name} for updates: {_reason(exc, spec.name)}; keeping {kept}"
    log.warning("%s", warning)
    return [
        FileOutcome(
            model=spec.name,
            path=f.path,
            dest=str(f.dest),
            size=f.size,
            sha256=f.sha256,
            action="skipped",
            reason="Hub unreachable: kept the verified copy",
            warning=warning,
        )
        for f in status.files
    ]


def _still_verified(file: LocalFile, entry: FileRecord | None) -> bool:
    """The file is what its record says it verified: same size and mtime, or (touched since) the same sha256."""
    if entry is None:
        return False
    found = stat_file(file.final)
    if found is None or not st.S_ISREG(found.st_mode) or found.st_size != entry.size:
        return False
    if found.st_mtime_ns == entry.mtime_ns:
        return True
    try:
        _, sha256, _ = hash_file(file.final)
    except OSError:
        return False
    return sha256 == entry.sha256


def _reason(exc: MdlError, name: str) -> str:
    """The error's message without its leading ``<model>[/path]:`` (the warning names the model already)."""
    message = exc.message
    head, sep, rest = message.partition(": ")
    return rest if sep and (head == name or head.startswith(f"{name}/")) else message


def relabel(exc: MdlError, spec: ModelSpec) -> MdlError:
    """The same outage, told for another model that needed the Hub in this run (it was not asked again)."""
    return type(exc)(f"{spec.name}: {_reason(exc, _model_of(exc))}", hint=exc.hint)


def _model_of(exc: MdlError) -> str:
    return exc.message.partition(": ")[0].split("/", 1)[0]
