"""Progress for pack and unpack: every item names its archive (``model``) and its entry (``path``)."""

from __future__ import annotations

from dataclasses import replace

from mdl.progress import Event, Progress


class ArchiveProgress(Progress):
    """Passes every event on to ``inner``, filling ``model`` with the archive's name (None: stdin or stdout)."""

    def __init__(self, inner: Progress, archive: str | None) -> None:
        self.inner = inner
        self.archive = archive

    def emit(self, event: Event) -> None:
        if event.kind == "start" and event.model is None:
            event = replace(event, model=self.archive)
        event.send(self.inner)
