"""Progress for pack and unpack: every item names its archive (``model``) and its entry (``path``)."""

from __future__ import annotations

from mdl.progress import Progress


class ArchiveProgress:
    """Passes everything on to ``inner``, filling ``model=`` with the archive's name (None: stdin or stdout)."""

    def __init__(self, inner: Progress, archive: str | None) -> None:
        self.inner = inner
        self.archive = archive

    def begin(self, *, total_bytes: int | None, files: int) -> None:
        """A batch starts."""
        self.inner.begin(total_bytes=total_bytes, files=files)

    def start(
        self,
        key: str,
        *,
        label: str,
        total: int | None,
        completed: int = 0,
        model: str | None = None,
        path: str | None = None,
    ) -> None:
        """An entry starts: named by the archive and its path in it."""
        self.inner.start(
            key,
            label=label,
            total=total,
            completed=completed,
            model=model if model is not None else self.archive,
            path=path,
        )

    def waiting(self, key: str, message: str) -> None:
        """An entry waits."""
        self.inner.waiting(key, message)

    def advance(self, key: str, nbytes: int) -> None:
        """Bytes of an entry."""
        self.inner.advance(key, nbytes)

    def finish(self, key: str, *, ok: bool, message: str = "") -> None:
        """An entry is done."""
        self.inner.finish(key, ok=ok, message=message)

    def note(self, message: str) -> None:
        """A line for the user."""
        self.inner.note(message)
