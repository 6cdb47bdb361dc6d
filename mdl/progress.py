"""Progress: what the core reports, each call one :class:`Event` handed to one sink, a display's
``emit`` (one form).
"""

# (annotations evaluated, not postponed: typing compiles each string annotation of a NamedTuple
# field at every start)
from typing import Any, Literal, NamedTuple


class Event(NamedTuple):
    """One report from a long operation, immutable; which fields it fills depends on ``kind`` (a
    tuple: built for every 64 KiB chunk, it costs a third of a frozen dataclass)."""

    kind: Literal["begin", "start", "waiting", "advance", "finish", "note"]
    key: str = ""  # the item (a file): start, waiting, advance, finish
    label: str = ""  # start: what people read
    # begin: the batch's bytes still to move; start: the item's size (None: unknown)
    total: int | None = None
    files: int = 0  # begin
    completed: int = 0  # start: bytes already present (a resume)
    nbytes: int = 0  # advance: more bytes (negative: bytes thrown away)
    ok: bool = True  # finish
    message: str = ""  # waiting: what it waits for; finish: why it failed; note: the line
    model: str | None = None  # start: names the item for programs (--progress json)
    path: str | None = None


class Progress:
    """The sink the core reports to: ``emit`` takes each event (discarded here: NullProgress; a
    display overrides it, thread-safe, as streams emit at once); the other methods are shorthands
    that each build one event."""

    def emit(self, event: Event) -> None:
        """Show (or pass on) one event."""

    def begin(self, *, total_bytes: int | None, files: int) -> None:
        """A batch of ``files`` items starts, ``total_bytes`` still to move (None: unknown)."""
        self.emit(Event("begin", total=total_bytes, files=files))

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
        """Item ``key`` starts with ``completed`` bytes present (a resume); starting it again (a
        retry) replaces it.
        """
        self.emit(Event("start", key, label, total, completed=completed, model=model, path=path))

    def waiting(self, key: str, message: str) -> None:
        """Item ``key`` waits for something other than bytes (another run's lock, a retry); key
        ``""``: a wait said on a line of its own, even without a progress display (the whole run's
        on the Hub's rate limit, a wait before a retry: ``transfer.http.say_wait``)."""
        self.emit(Event("waiting", key, message=message))

    def advance(self, key: str, nbytes: int) -> None:
        """``nbytes`` more bytes of item ``key`` arrived (or were processed)."""
        self.emit(Event("advance", key, nbytes=nbytes))

    def finish(self, key: str, *, ok: bool, message: str = "") -> None:
        """Item ``key`` is done, or failed with ``message`` (the final report names failures, not
        the display).
        """
        self.emit(Event("finish", key, ok=ok, message=message))

    def note(self, message: str) -> None:
        """An informational line for the user ("no bytes for 30 s, reconnecting (1/20)")."""
        self.emit(Event("note", message=message))


NullProgress = Progress


class ArchiveProgress(Progress):
    """Pack's and unpack's progress: each call passed on to ``inner`` (any object with Progress's
    methods, as the API takes), a start naming the archive (None: a pipe) unless it names a model.
    """

    def __init__(self, inner: Progress, archive: str | None) -> None:
        self.inner, self.archive = inner, archive
        for name in ("begin", "waiting", "advance", "finish", "note"):  # passed on as they are
            setattr(self, name, getattr(inner, name))

    def start(self, key: str, *, model: str | None = None, **fields: Any) -> None:
        self.inner.start(key, model=self.archive if model is None else model, **fields)
