"""The snapshot list: a ``ScrollView`` that renders only the rows on the screen (Textual's Line API, as
toolong's log view does), kept in step with the directory by key.

Rows are keyed by file name. ``show`` takes the listing (filtered or not) and keeps, per snapshot, the
plain values its row shows; nothing is drawn until a line is asked for (``render_line``), so a directory of
10,000 snapshots costs what a screenful costs to paint. The cursor follows its snapshot's key across
listings, so a snapshot added from another terminal or a filter typed and cleared leaves it where it was.
Ages tick by themselves: ``tick`` updates only the rows whose age text (or 24-hour highlight) is due to
change. Every column is as wide as its widest cell or header (computed from the values, without building a
cell), except the purpose, which gets the room left and is cut with an ellipsis.
"""

from __future__ import annotations

import datetime as dt
import heapq
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from rich.segment import Segment
from rich.text import Text
from textual import events
from textual.binding import Binding, BindingType
from textual.geometry import Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

from services.display import compact_age, compact_age_changes_at
from services.snapshots.retention import is_protected
from services.snapshots.store import Snapshot
from widgets.snapshot_cells import (
    BUILT,
    COLUMNS,
    DIFF_MARK,
    GUARD_MARK,
    INVALID_MARK,
    PROTECTED_MARK,
    cell_widths,
    guard_state,
    number_width,
)

#: Snapshots younger than this are highlighted (the story: "highlight recent snapshots (< 24 hours)").
RECENT = dt.timedelta(hours=24)
MIN_PURPOSE = 4
DEFAULT_PURPOSE = 40  # until the table knows its width
#: Column widths while no row is shown (a first launch, a filter that matches nothing): those of a typical
#: row, so that the header reads as a table and does not jump when the first snapshot comes in.
EMPTY_WIDTHS = (number_width(1), *cell_widths(("before-migration", True, False, None, False, False), "59m",
                                              "schema-only", 150_000))
LEGEND = (f"{INVALID_MARK} invalid  {PROTECTED_MARK} protected  {GUARD_MARK} guarded (red: failed)  "
          f"{DIFF_MARK} marked  bold: < 24 h")
HEADERS = tuple(Text(" " + header, justify="right" if key in ("index", "size") else "left")
                for header, key in COLUMNS)


def next_change(ts: dt.datetime, now: dt.datetime) -> dt.datetime:
    """When the compact age of ``ts`` or its 24 h highlight can next change."""
    due = compact_age_changes_at(ts, now)
    return min(due, ts + RECENT) if now < ts + RECENT else due


class SnapshotTable(ScrollView, can_focus=True):
    """Snapshots newest first, one row per snapshot file, with validity, protection, guard and recency marks,
    under a header line that stays put while the rows scroll."""

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "snapshot-table--header", "snapshot-table--cursor", "snapshot-table--even-row",
        "snapshot-table--odd-row"}
    DEFAULT_CSS = """
    SnapshotTable {
        background: $surface;
        color: $foreground;
        height: auto;
        max-height: 100%;
        &:focus {
            background-tint: $foreground 5%;
            & > .snapshot-table--cursor {
                background: $block-cursor-background;
                color: $block-cursor-foreground;
                text-style: $block-cursor-text-style;
            }
            & > .snapshot-table--header { background-tint: $foreground 5%; }
        }
        &:dark > .snapshot-table--even-row { background: $surface-darken-1 40%; }
        & > .snapshot-table--header { text-style: bold; background: $panel; color: $foreground; }
        & > .snapshot-table--even-row { background: $surface-lighten-1 50%; }
        & > .snapshot-table--cursor {
            background: $block-cursor-blurred-background;
            color: $block-cursor-blurred-foreground;
            text-style: $block-cursor-blurred-text-style;
        }
    }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up,k", "cursor(-1)", "Up", show=False),
        Binding("down,j", "cursor(1)", "Down", show=False),
        Binding("pageup", "page(-1)", "Page up", show=False),
        Binding("pagedown", "page(1)", "Page down", show=False),
        Binding("home,ctrl+home,g", "cursor_to(0)", "First", show=False),
        Binding("end,ctrl+end,G", "cursor_to(-1)", "Last", show=False),
    ]

    @dataclass
    class Highlighted(Message):
        """The cursor is on another snapshot (``key``: its file name; None when the list is empty)."""

        table: SnapshotTable
        key: str | None

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        #: Every row built so far, by file name (a filter that hides rows keeps them for its way back).
        self._known: dict[str, _Row] = {}
        #: The file names shown, in order (newest first).
        self._order: list[str] = []
        self.cursor_row = 0
        self._cursor_key: str | None = None
        self._marked: str | None = None
        #: (when, key): rows whose age text or highlight is due to change (stale entries are skipped).
        self._due: list[tuple[dt.datetime, str]] = []
        self._widths: tuple[int, ...] = (*EMPTY_WIDTHS, DEFAULT_PURPOSE)
        #: Row key -> (what the row was drawn from, its segments): a row is drawn once until it changes.
        self._drawn: dict[str, tuple[tuple, list[Segment]]] = {}

    # -- what callers read ---------------------------------------------------------------------------
    @property
    def row_count(self) -> int:
        return len(self._order)

    @property
    def keys(self) -> list[str]:
        """The file names shown, top to bottom."""
        return list(self._order)

    @property
    def highlighted_key(self) -> str | None:
        """File name of the row under the cursor, or None when the table is empty."""
        return self._order[self.cursor_row] if self._order else None

    def select_key(self, key: str) -> None:
        """Put the cursor on a snapshot's row (if it is shown)."""
        if key in self._known and key in self._order:
            self._move_cursor(self._order.index(key))

    def select_index(self, number: int) -> bool:
        """Put the cursor on the row of list number ``number``; False when no shown row has it."""
        key = next((k for k in self._order if self._known[k].index == number), None)
        if key is not None:
            self._move_cursor(self._order.index(key))
        return key is not None

    def get_row_at(self, index: int) -> list[Text]:
        """The cells of the row at ``index`` as they are drawn (before they are cut to their widths)."""
        return self._texts(self._known[self._order[index]])

    # -- updating ------------------------------------------------------------------------------------
    def show(self, entries: Sequence[tuple[int, Snapshot]], now: dt.datetime, marked: str | None = None) -> None:
        """Make the rows ``entries`` ((list number, snapshot), newest first); the cursor stays on its
        snapshot if that is still shown, else at its place."""
        self._marked = marked
        order = []
        for index, snap in entries:
            key = snap.filename
            row = self._known.get(key)
            if row is None:
                row = self._known[key] = _Row()
            row.index = index
            basis = _basis(snap, key == marked)
            if now >= row.age_until or basis != row.basis:  # else only its number may have changed
                row.basis = basis
                self._update(row, key, snap, now)
            order.append(key)
        self._order = order
        if len(self._known) > 2 * len(order) + 10_000:  # snapshots long gone
            shown = set(order)
            self._known = {key: row for key, row in self._known.items() if key in shown}
        if len(self._due) > 2 * len(self._known) + 100:
            self._due = [(row.age_until, key) for key, row in self._known.items()]
            heapq.heapify(self._due)
        keep = self._cursor_key
        self._fit()
        self._move_cursor(order.index(keep) if keep in self._known and keep in order else self.cursor_row)

    def tick(self, now: dt.datetime) -> None:
        """Time passed: update the ages (and 24 h highlights) that changed, and only those."""
        changed = False
        while self._due and self._due[0][0] <= now:
            when, key = heapq.heappop(self._due)
            row = self._known.get(key)
            if row is not None and row.age_until == when and row.snap is not None:
                self._update(row, key, row.snap, now)
                changed = True
        if changed:
            self._fit()  # "9m" -> "10m" widens the age column

    def _update(self, row: _Row, key: str, snap: Snapshot, now: dt.datetime) -> None:
        """Bring ``row`` up to date with ``snap`` at ``now``."""
        if row.age_until <= now or row.snap is None or row.snap.timestamp != snap.timestamp:
            row.age = compact_age(snap.timestamp, now)
            row.age_until = next_change(snap.timestamp, now)
            heapq.heappush(self._due, (row.age_until, key))
        row.snap = snap
        marked, label, valid, protected, guard, ts, kind, size, purpose, problem = _shown(snap, key == self._marked)
        recent = now - ts < RECENT
        # Each column's inputs, in COLUMNS order, but the number's (read from ``row.index`` when drawn).
        row.inputs = ((label, valid, protected, guard, marked, recent), (ts, recent), (row.age, recent), (kind,),
                      (size,), (purpose, problem))
        row.widths = cell_widths(row.inputs[0], row.age, kind, size)

    def _fit(self) -> None:
        """Size each column to its widest cell or header, give the purpose the room left (a horizontal
        scroll would hide it at 80 columns; the preview has the whole text), and repaint."""
        rows = [self._known[key].widths for key in self._order]
        # Rows are shown in the order of their numbers: the last one's is the widest.
        cells = ((number_width(self._known[self._order[-1]].index),
                  *(max(column) for column in zip(*rows, strict=True))) if rows else EMPTY_WIDTHS)
        widths = [max(header.cell_len, width) for header, width in zip(HEADERS, cells, strict=False)]
        room = (max(self.size.width - sum(widths) - self.styles.scrollbar_size_vertical, MIN_PURPOSE)
                if self.size.width else DEFAULT_PURPOSE)
        self._widths = (*widths, room)
        self.virtual_size = Size(sum(self._widths), len(self._order) + 1)  # + 1: the header line
        self.refresh()

    def on_resize(self, event: events.Resize) -> None:
        self._fit()
        self.call_after_refresh(self._scroll_to_cursor)  # a shorter list keeps its highlighted row in sight

    # -- the cursor ----------------------------------------------------------------------------------
    def action_cursor(self, step: int) -> None:
        self._move_cursor(self.cursor_row + step)

    def action_page(self, pages: int) -> None:
        self._move_cursor(self.cursor_row + pages * max(self.scrollable_content_region.height - 1, 1))

    def action_cursor_to(self, row: int) -> None:
        self._move_cursor(row if row >= 0 else len(self._order) - 1)

    def on_click(self, event: events.Click) -> None:
        offset = event.get_content_offset(self)
        if offset is not None and offset.y > 0:  # line 0 is the header
            row = int(self.scroll_y) + offset.y - 1
            if row < len(self._order):
                self._move_cursor(row)

    def _move_cursor(self, row: int) -> None:
        """Put the cursor on ``row`` (clamped to the rows), scroll it into view, say so if the snapshot
        under it changed."""
        self.cursor_row = max(0, min(row, len(self._order) - 1))
        self._scroll_to_cursor()
        self.refresh()
        if self.highlighted_key != self._cursor_key:
            self._cursor_key = self.highlighted_key
            self.post_message(self.Highlighted(self, self._cursor_key))

    def _scroll_to_cursor(self) -> None:
        if not self._order:
            return
        visible = max(self.scrollable_content_region.height - 1, 1)
        if self.cursor_row < self.scroll_y:
            self.scroll_to(y=self.cursor_row, animate=False, immediate=True)
        elif self.cursor_row >= self.scroll_y + visible:
            self.scroll_to(y=self.cursor_row - visible + 1, animate=False, immediate=True)

    # -- drawing -------------------------------------------------------------------------------------
    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        base = self.rich_style
        if y == 0:
            segments = self._draw(HEADERS)
            style = base + self.get_component_rich_style("snapshot-table--header")
        elif (index := scroll_y + y - 1) < len(self._order):
            segments = self._row_segments(self._order[index])
            style = base + self.get_component_rich_style(
                "snapshot-table--odd-row" if index % 2 else "snapshot-table--even-row")
            if index == self.cursor_row:  # over the cells' own colours, as DataTable's cursor
                cursor = self.get_component_rich_style("snapshot-table--cursor")
                segments, style = Segment.apply_style(segments, post_style=cursor), style + cursor
        else:
            return Strip.blank(self.size.width, base)
        # The line's style fills the width beyond the last column too.
        return Strip(Segment.apply_style(segments, style)).crop_extend(scroll_x, scroll_x + self.size.width, style)

    def _row_segments(self, key: str) -> list[Segment]:
        row = self._known[key]
        made_of = (row.index, row.inputs, self._widths)
        drawn = self._drawn.get(key)
        if drawn is None or drawn[0] != made_of:
            if len(self._drawn) > 4 * max(self.size.height, 50):
                self._drawn.clear()  # what scrolled out of sight long ago
            drawn = self._drawn[key] = (made_of, self._draw(self._texts(row)))
        return drawn[1]

    def _texts(self, row: _Row) -> list[Text]:
        colors = self.app.theme_variables
        return [BUILT[0](row.index, colors), *(build(*args, colors) for build, args in zip(BUILT[1:], row.inputs,
                                                                                            strict=True))]

    def _draw(self, texts: Sequence[Text]) -> list[Segment]:
        """One line of cells, each cut or padded to its column's width."""
        line = Text(no_wrap=True, end="")
        for text, width in zip(texts, self._widths, strict=True):
            cell = text.copy()
            cell.align(text.justify or "left", width)  # cuts, with "…" where the cell says so
            line.append_text(cell)
        return list(line.render(self.app.console))


def _shown(snap: Snapshot, marked: bool) -> tuple:
    """Everything a row shows of a snapshot but its list number and age."""
    return (marked, snap.label, snap.valid, is_protected(snap), guard_state(snap.meta), snap.timestamp,
            "…" if snap.pending else snap.type if snap.meta else "?", snap.size_bytes, snap.purpose, snap.problem)


def _basis(snap: Snapshot, marked: bool) -> tuple:
    """What ``_shown`` is made from, but the name (the row's key): a row whose basis is unchanged shows the
    same. The engine updates a Snapshot in place (protect, validate) by replacing its metadata dict, never
    by changing one, so a row keeps the basis it was built from and compares it, the unchanged dict by
    identity."""
    return snap.meta, snap.problem, snap.file_size, snap.pending, marked


_LONG_AGO = dt.datetime.min.replace(tzinfo=dt.UTC)


class _Row:
    """One row: its list number, the snapshot it shows (and ``_basis`` of it), each column's inputs and
    the widths of their cells (``cell_widths``), and its age text until that changes."""

    __slots__ = ("age", "age_until", "basis", "index", "inputs", "snap", "widths")

    def __init__(self) -> None:
        self.index = 0
        self.snap: Snapshot | None = None
        self.basis: tuple = ()
        self.inputs: tuple = ()
        self.widths: tuple[int, ...] = ()
        self.age = ""
        self.age_until = _LONG_AGO
