"""For ``mdl lock``: the size and sha256 of every file a lock pins, where upstream did not say them: from a verified
local record of the same bytes, else a probe (size only), else one download to a temp file under ``<dest>/.mdl``
that is hashed and removed — as ``pip-compile --generate-hashes`` does."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace

from mdl.download.planner import Planner, identity_of, label_of
from mdl.download.session import PullSession
from mdl.errors import InterruptedByUserError, MdlError
from mdl.report import FileOutcome, failed
from mdl.sources import RemoteFile, ResolvedModel
from mdl.store import unlink
from mdl.transfer import TransferJob

log = logging.getLogger("mdl.lock")


@dataclass(frozen=True)
class _Missing:
    """A file whose sha256 (or size) only its bytes can tell."""

    model: int
    index: int
    remote: RemoteFile


class LockHasher:
    """Completes resolved models so that every file has a size and a sha256 (engine and records reused)."""

    def __init__(self, session: PullSession, planner: Planner, *, blobs: Mapping[str, tuple[int, str]]) -> None:
        self.session = session
        self.planner = planner
        self.blobs = blobs  # git blob id → (size, sha256), from the lock as it was: the same bytes, hashed before

    def complete(self, models: list[ResolvedModel]) -> tuple[list[ResolvedModel], list[FileOutcome]]:
        """The models with every size and sha256 known; a model with a file that cannot be hashed fails whole."""
        files = [list(m.files) for m in models]
        failures: dict[int, FileOutcome] = {}
        todo: list[_Missing] = []
        for m, model in enumerate(models):
            for i, remote in enumerate(model.files):
                try:
                    known = self._known(remote)
                except MdlError as exc:
                    failures.setdefault(m, failed(model.name, remote.path, exc))
                    continue
                if known is not None:
                    files[m][i] = known
                else:
                    todo.append(_Missing(m, i, remote))
        todo = [t for t in todo if t.model not in failures]
        unique = {_same_bytes(t.remote): t.remote.size for t in todo}  # the same bytes twice in a run: fetched once
        if unique:
            sizes = list(unique.values())
            total = None if None in sizes else sum(s or 0 for s in sizes)
            self.session.progress.begin(total_bytes=total, files=len(unique))
        hashed: dict[tuple[str, str], RemoteFile] = {}
        for item in todo:
            if item.model in failures:
                continue
            same = _same_bytes(item.remote)
            try:
                if same not in hashed:
                    hashed[same] = self._download(item.remote)
                files[item.model][item.index] = replace(item.remote, size=hashed[same].size, sha256=hashed[same].sha256)
            except InterruptedByUserError:
                raise
            except MdlError as exc:
                failures[item.model] = failed(models[item.model].name, item.remote.path, exc)
        done = [replace(m, files=tuple(files[i])) for i, m in enumerate(models) if i not in failures]
        return done, [failures[i] for i in sorted(failures)]

    def _known(self, remote: RemoteFile) -> RemoteFile | None:
        """The file with size and sha256 filled in without fetching it, or None when only its bytes can tell."""
        if remote.sha256 and remote.size is not None:
            return remote
        if remote.git_oid and remote.git_oid in self.blobs:
            size, sha256 = self.blobs[remote.git_oid]
            if remote.size is None or remote.size == size:
                return replace(remote, size=size, sha256=sha256)
        recorded = self._from_record(remote)
        if recorded is not None:
            return recorded
        if remote.sha256 and not remote.hub:  # a URL the catalog gives a sha256 but no size for: one request
            probed = self.planner.probe(remote)
            if probed.size is not None:
                return replace(remote, size=probed.size)
        return None

    def _from_record(self, remote: RemoteFile) -> RemoteFile | None:
        """What a verified local record says about the same bytes: same sha256, same git blob id, or (a URL
        without either) the same source."""
        record = self.session.store.read_record(remote.model)
        entry = record.files.get(remote.path) if record is not None else None
        if entry is None or (remote.size is not None and entry.size != remote.size):
            return None
        if remote.sha256:
            same = entry.sha256 == remote.sha256
        elif remote.git_oid:  # a git blob id names the bytes: the record's sha256 is of those very bytes
            same = entry.git_oid == remote.git_oid
        else:
            same = not remote.hub and entry.source == remote.source
        if not same:
            return None
        log.info("%s: sha256 from the verified local record", label_of(remote))
        return replace(remote, size=entry.size, sha256=entry.sha256)

    def _download(self, remote: RemoteFile) -> RemoteFile:
        """Fetch the file once into a temp file beside the partial downloads, under the file's lock; hash it."""
        session = self.session
        store = session.store
        label = label_of(remote)
        store.ensure_dirs()
        part, state = store.part_paths(remote.model, remote.path)
        # Ends in .tmp: should a crash leave it, `mdl clean` removes it like any stray temp file.
        target = part.with_name(part.name.removesuffix(".part") + ".hash.tmp")

        def on_wait(holder: str) -> None:
            by = f" (held by {holder})" if holder else ""
            session.progress.waiting(label, f"another mdl run is fetching it; waiting{by}")

        held = store.acquire_file_lock(
            remote.model, remote.path, timeout=session.settings.lock_timeout, on_wait=on_wait, cancel=session.cancel
        )
        try:
            job = TransferJob(
                label=label,
                url=remote.url,
                identity=identity_of(remote),
                credentials=session.credentials(remote),
                final_path=target,
                part_path=part,
                root=store.dest,
                state_path=state,
                source=remote.source,
                verify=True,
                size_pinned=remote.size_pinned,
                renewable=remote.hub,
                model=remote.model,
                path=remote.path,
            )
            log.info("%s: downloading it once to learn its sha256", label)
            try:
                result = session.engine.fetch(job)
            except MdlError as exc:
                session.progress.finish(label, ok=False, message=exc.message.removeprefix(f"{label}: "))
                raise
            session.progress.finish(label, ok=True, message="hashed")
        finally:
            with contextlib.suppress(OSError):
                unlink(store.dest, target)
            held.release()
        return replace(remote, size=result.size, sha256=result.sha256)


def _same_bytes(remote: RemoteFile) -> tuple[str, str]:
    """What names a file's bytes before they are fetched: its git blob id, else its URL."""
    return (remote.git_oid, "") if remote.git_oid else ("", remote.url)
