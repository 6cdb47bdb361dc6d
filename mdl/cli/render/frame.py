"""One frame of the live display laid out for a width: labels cut in the middle, columns dropped as it shrinks."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mdl.cli.render.labels import display_width, fit_labels
from mdl.units import human_clock, human_rate, human_size

if TYPE_CHECKING:
    from rich.text import Text

SIZE_WIDTH = 17  # "1023 MiB/1023 MiB"
RATE_WIDTH = 10  # "1023 MiB/s"
ETA_WIDTH = 7  # "1:02:03"
PERCENT_WIDTH = 4  # "100%"
MOVED_WIDTH = 8  # "1023 MiB": what the percentage column shows for a file of unknown size
BAR_MIN, BAR_MAX = 10, 40
LABEL_MIN = 16
# As the terminal narrows: the bar goes first, then the rate, then the size (a percentage stands in for it
# while it fits); the time left stays.
LAYOUTS: tuple[tuple[str, ...], ...] = (
    ("bar", "size", "rate", "eta"),
    ("size", "rate", "eta"),
    ("size", "eta"),
    ("percent", "eta"),
    ("eta",),
)
_WIDTHS = {"size": SIZE_WIDTH, "rate": RATE_WIDTH, "eta": ETA_WIDTH, "percent": PERCENT_WIDTH}


@dataclass(frozen=True)
class Row:
    """What one line shows: an item, or the total (``whole``: its label is never cut)."""

    label: str
    completed: int
    total: int | None
    rate: float | None
    left: float | None
    waiting: str | None = None
    whole: bool = False


@dataclass(frozen=True)
class Layout:
    """The columns a width allows and how wide the label and the bar are."""

    columns: tuple[str, ...]
    label: int
    bar: int


def choose_layout(rows: Sequence[Row], width: int) -> Layout:
    """The richest column set that leaves the label its minimum (the total's label whole)."""
    need = max((display_width(r.label) for r in rows), default=LABEL_MIN)
    whole = max((display_width(r.label) for r in rows if r.whole), default=0)
    minimum = min(need, max(LABEL_MIN, whole))
    need = min(need, max(minimum, width * 3 // 5))  # a narrow terminal keeps room for the numbers
    widths = {**_WIDTHS, "percent": _percent_width(rows)}
    for columns in LAYOUTS:
        room = width - sum(widths.get(c, 0) + 1 for c in columns if c != "bar")
        if "bar" in columns:
            if room - BAR_MIN - 1 < minimum:
                continue
            label = min(need, room - BAR_MIN - 1)
            return Layout(columns, label, min(BAR_MAX, room - label - 1))
        if room >= minimum:
            return Layout(columns, min(need, room), 0)
    return Layout(("eta",), max(width - ETA_WIDTH - 1, 1), 0)


def _percent_width(rows: Sequence[Row]) -> int:
    """The share done ("42%"), or the bytes so far where no size is known (a server that never says it)."""
    return MOVED_WIDTH if any(row.total is None and row.waiting is None for row in rows) else PERCENT_WIDTH


def _pad(text: str, width: int) -> str:
    return text + " " * max(width - display_width(text), 0)


def render_rows(rows: Sequence[Row], width: int, *, color: bool) -> list[Text]:
    """Each row as one line of at most ``width`` columns."""
    from rich.text import Text

    layout = choose_layout(rows, width)
    percent_width = _percent_width(rows)
    labels = fit_labels([r.label for r in rows], layout.label)
    lines = []
    for row, label in zip(rows, labels, strict=True):
        line = Text(_pad(label, layout.label), style="bold" if row.whole else "", no_wrap=True)
        if row.waiting is not None:
            rest = max(width - layout.label - 1, 0)
            message = Text(f" {row.waiting}", style="yellow", no_wrap=True)
            message.truncate(rest + 1, overflow="ellipsis")
            lines.append(line + message)
            continue
        for column in layout.columns:
            line.append(" ")
            if column == "bar":
                line.append_text(_bar(row, layout.bar, color=color))
            elif column == "size":
                line.append(f"{human_size(row.completed)}/{human_size(row.total)}".rjust(SIZE_WIDTH), "green")
            elif column == "percent":
                if row.total is None:
                    percent = human_size(row.completed)  # no share without a size: the bytes show it moves
                else:
                    percent = f"{min(100 * row.completed // row.total, 100)}%" if row.total else "100%"
                line.append(percent.rjust(percent_width), "green")
            elif column == "rate":
                line.append(human_rate(row.rate).rjust(RATE_WIDTH), "red")
            else:
                eta = "-:--" if row.left is None else human_clock(row.left)
                line.append(eta.rjust(ETA_WIDTH), "cyan")
        lines.append(line)
    return lines


def _bar(row: Row, width: int, *, color: bool) -> Text:
    """``━━━━━━    `` filled by the share done (empty while the size is unknown)."""
    from rich.text import Text

    share = 0.0 if not row.total else min(max(row.completed / row.total, 0.0), 1.0)
    filled = round(width * share)
    bar = Text("━" * filled, style="magenta" if row.whole else "green")
    # Without colour the background would look like done work: leave it blank, as rich does.
    bar.append(("━" if color else " ") * (width - filled), style="grey23")
    return bar
