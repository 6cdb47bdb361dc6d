"""Live bars on a terminal (rich): a row per file in flight and the total, laid out for the
terminal's width.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, TextIO

# rich comes with this module: it is imported only where the display is made (mdl.cli.run)
from rich.console import Console as RichConsole
from rich.live import Live
from rich.text import Text

from mdl.cli.render.console import ELLIPSIS, display_width, head
from mdl.cli.render.progress import Item, Reporter, resuming, said_alone
from mdl.progress import Event
from mdl.redact import safe_text
from mdl.units import human_clock, human_rate, human_size, plural

if TYPE_CHECKING:
    from rich.console import ConsoleOptions, RenderResult

SIZE_WIDTH = 17  # "1023 MiB/1023 MiB"
RATE_WIDTH = 10  # "1023 MiB/s"
ETA_WIDTH = 7  # "1:02:03"
PERCENT_WIDTH = 4  # "100%"
MOVED_WIDTH = 8  # "1023 MiB": what the percentage column shows for a file of unknown size
BAR_MIN, BAR_MAX = 10, 40
LABEL_MIN = 16
# As the terminal narrows: the bar goes first, then the rate, then the size (a percentage stands in
# for it while it fits); the time left stays.
LAYOUTS: tuple[tuple[str, ...], ...] = (
    ("bar", "size", "rate", "eta"),
    ("size", "rate", "eta"),
    ("size", "eta"),
    ("percent", "eta"),
    ("eta",),
)
_WIDTHS = {"size": SIZE_WIDTH, "rate": RATE_WIDTH, "eta": ETA_WIDTH, "percent": PERCENT_WIDTH}
_SEPARATORS = "/-_."


class RichReporter(Reporter):
    """Rows for the items in flight and the batch's total, redrawn by rich's Live from a snapshot
    of the counts.
    """

    def __init__(
        self, *, stream: TextIO, no_color: bool, console: RichConsole | None = None, **common: Any
    ) -> None:
        super().__init__(**common)
        # The caller chose rich because stderr is a terminal; forcing it keeps that decision in one
        # place.
        self.console = console or RichConsole(
            file=stream, force_terminal=True, no_color=no_color, highlight=False
        )
        self.color, self._closed = not no_color, False
        self._rows: list[Row] = []
        # Never redirect: rich would route the command's stdout (data, JSON) to the stderr console.
        self._live = Live(
            self,
            console=self.console,
            refresh_per_second=10,
            redirect_stdout=False,
            redirect_stderr=False,
        )

    def show(self, event: Event, item: Item | None, now: float) -> None:
        if said_alone(event):
            self._print(event.message)
        elif event.kind == "start" and event.completed:
            self._print(resuming(event))
        # On the first row: a run with nothing to show (an empty batch) draws nothing. A failure
        # prints nothing either: the final report names each failed file once.
        drawn = self._live.is_started or self._closed
        if (self._tally.files or self._tally.items) and not drawn:
            self._live.start()

    def _print(self, text: str) -> None:
        """A redacted, control-free line above the live display (markup off: file names may hold
        "[").
        """
        self.console.print(
            safe_text(text, multiline=True, secrets=self._secrets), markup=False, highlight=False
        )

    def __rich_console__(self, console: RichConsole, options: ConsoleOptions) -> RenderResult:
        """The rows in the width of each redraw; the last snapshot while a worker holds the lock
        (never waited on).
        """
        if self._lock.acquire(blocking=False):
            try:
                self._rows = self._snapshot(self._clock())
            finally:
                self._lock.release()
        yield from render_rows(self._rows, options.max_width, color=self.color)
        if not self._closed:
            # The cursor waits on a blank line below the rows, not after the last one: a rows' line
            # may fill the width, and the terminal's echo of a Ctrl-C (``^C``) there wraps onto a
            # new line, shifting where rich's next redraw begins: the final frame would leave the
            # first row (the total) twice on screen.
            yield Text("")

    def _snapshot(self, now: float) -> list[Row]:
        """The total first, then the items in the order they started."""
        tally, rows = self._tally, []
        if tally.files:
            # never cut on screen; a failed file is no file done (``8/8 files``, 2 failed, misled)
            label = f"total {tally.done - tally.failed}/{plural(tally.files, 'file')}"
            label += f", {tally.failed} failed" if tally.failed else ""
            rate, left = tally.rate(now), tally.seconds_left(now)
            rows.append(Row(label, tally.moved, tally.total, rate, left, whole=True))
        for item in tally.items.values():
            waiting = None
            if item.waiting is not None:
                since = human_clock(now - item.waiting_since)
                waiting = f"waiting ({since}): {self._safe(item.waiting)}"
            rate, left = item.meter.rate(now), item.seconds_left(now)
            label = self._safe(item.label)
            rows.append(Row(label, item.completed, item.total, rate, left, waiting))
        return rows

    def close(self) -> None:
        """Stop the live display, leaving its last frame on screen (without the blank line below
        it).
        """
        with self._lock:
            self._closed = True
            self._live.stop()  # (a display never started stays undrawn)


class Row(NamedTuple):
    """What one line shows: an item, or the total (``whole``: its label is never cut)."""

    label: str
    completed: int
    total: int | None
    rate: float | None
    left: float | None
    waiting: str | None = None
    whole: bool = False


class Layout(NamedTuple):
    """The columns a width allows and how wide the label and the bar are."""

    columns: tuple[str, ...]
    label: int
    bar: int


def choose_layout(rows: Sequence[Row], width: int) -> Layout:
    """The richest column set that leaves the label its minimum (the total's label whole)."""
    need = max((display_width(r.label) for r in rows), default=LABEL_MIN)
    # the total's whole
    minimum = min(need, max([LABEL_MIN, *(display_width(r.label) for r in rows if r.whole)]))
    need = min(need, max(minimum, width * 3 // 5))  # a narrow terminal keeps room for the numbers
    widths = {**_WIDTHS, "percent": _percent_width(rows)}
    for columns in LAYOUTS:
        room = width - sum(widths.get(c, 0) + 1 for c in columns if c != "bar")
        if "bar" in columns and room - BAR_MIN - 1 >= minimum:
            label = min(need, room - BAR_MIN - 1)
            return Layout(columns, label, min(BAR_MAX, room - label - 1))
        if "bar" not in columns and room >= minimum:
            return Layout(columns, min(need, room), 0)
    return Layout(("eta",), max(width - ETA_WIDTH - 1, 1), 0)


def _percent_width(rows: Sequence[Row]) -> int:
    """The share done ("42%"), or the bytes so far where no size is known (a server that never
    says it).
    """
    unknown = any(row.total is None and row.waiting is None for row in rows)
    return MOVED_WIDTH if unknown else PERCENT_WIDTH


def render_rows(rows: Sequence[Row], width: int, *, color: bool) -> list[Text]:
    """Each row as one line of at most ``width`` columns."""
    layout = choose_layout(rows, width)
    percent_width = _percent_width(rows)
    labels = fit_labels([r.label for r in rows], layout.label)
    lines = []
    for row, label in zip(rows, labels, strict=True):
        padded = label + " " * max(layout.label - display_width(label), 0)
        line = Text(padded, style="bold" if row.whole else "", no_wrap=True)
        if row.waiting is not None:
            message = Text(f" {row.waiting}", style="yellow", no_wrap=True)
            message.truncate(max(width - layout.label - 1, 0) + 1, overflow="ellipsis")
            lines.append(line + message)
            continue
        for column in layout.columns:
            line.append(" ")
            if column == "bar":
                line.append_text(_bar(row, layout.bar, color=color))
            else:
                line.append(*_figure(row, column, percent_width=percent_width))
        lines.append(line)
    return lines


def _figure(row: Row, column: str, *, percent_width: int) -> tuple[str, str]:
    """A row's figure for ``column`` (size, percent, rate or time left), right-aligned in its
    width, and its colour."""
    if column == "size":
        return f"{human_size(row.completed)}/{human_size(row.total)}".rjust(SIZE_WIDTH), "green"
    if column == "percent":
        return _share(row).rjust(percent_width), "green"
    if column == "rate":
        return human_rate(row.rate).rjust(RATE_WIDTH), "red"
    eta = "-:--" if row.left is None else human_clock(row.left)
    return eta.rjust(ETA_WIDTH), "cyan"


def _share(row: Row) -> str:
    """``45%`` done; no share without a size: the bytes so far show it moves."""
    if row.total is None:
        return human_size(row.completed)
    if not row.total:
        return "100%"
    return f"{min(100 * row.completed // row.total, 100)}%"


def _bar(row: Row, width: int, *, color: bool) -> Text:
    """``━━━━━━    `` filled by the share done (empty while the size is unknown)."""
    filled = round(width * (min(max(row.completed / row.total, 0.0), 1.0) if row.total else 0.0))
    bar = Text("━" * filled, style="magenta" if row.whole else "green")
    # Without colour the background would look like done work: leave it blank, as rich does.
    bar.append(("━" if color else " ") * (width - filled), style="grey23")
    return bar


def _tail(text: str, width: int) -> str:
    return head(text[::-1], width)[::-1]


def shorten(text: str, width: int, *, keep: int | None = None) -> str:
    """``text`` in at most ``width`` columns, cut in the middle (``big/model-0…02.safetensors``);
    the character at ``keep`` (where it differs from another label) stays seen: the tail starts at
    its word, or the head reaches it."""
    if display_width(text) <= width:
        return text
    if width <= 1:
        return ELLIPSIS[:width]
    room = width - 1
    head_room = room * 2 // 5  # the tail holds the file name and its shard number: give it more
    first, tail = head(text, head_room), _tail(text, room - head_room)
    if keep is None or len(first) > keep >= 0 or keep >= len(text) - len(tail):
        return first + ELLIPSIS + tail
    start = keep
    while start > 0 and keep - start < 6 and text[start - 1] not in _SEPARATORS:
        start -= 1  # show the word the difference is in ("00001"), not half of it
    if display_width(text[start:]) <= room - min(4, room // 3):
        tail = text[start:]
        return head(text, room - display_width(tail)) + ELLIPSIS + tail
    first = text[: keep + 1]
    if display_width(first) < room:
        return first + ELLIPSIS + _tail(text, room - display_width(first))
    # Neither end reaches the difference: a window around it between two ellipses.
    window = _tail(text[: keep + 1], max(room - 1, 1) // 2 + 1)
    window += head(text[keep + 1 :], max(room - 1 - display_width(window), 0))
    return ELLIPSIS + window + ELLIPSIS


def _first_difference(text: str, other: str) -> int:
    """The first index where ``text`` and ``other`` differ (the last character if one starts the
    other).
    """
    common = len(os.path.commonprefix([text, other]))  # noqa: RUF071 - characters, not path parts, are meant
    return common if common < len(text) else len(text) - 1


def fit_labels(labels: Sequence[str], width: int) -> list[str]:
    """Each label in ``width`` columns, cut so that distinct labels stay distinct on screen where
    possible.
    """
    shown: list[str] = []
    for i, text in enumerate(labels):
        keep = max(
            (_first_difference(text, o) for j, o in enumerate(labels) if j != i and o != text),
            default=None,
        )
        shown.append(shorten(text, width, keep=keep))
    seen: dict[str, int] = {}
    for i, text in enumerate(shown):
        if text in seen and labels[seen[text]] != labels[i]:
            # still alike: the plain tail, where shards differ
            shown[i] = ELLIPSIS + _tail(labels[i], width - 1)
        seen.setdefault(shown[i], i)
    return shown
