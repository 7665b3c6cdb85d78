"""The snapshot list: a DataTable kept in step with the directory by keyed diff.

Rows are keyed by file name. ``show`` adds, updates and removes rows by key inside one batch update and
never clears the table for a small live change, so the cursor stays on the snapshot it was on and the view
does not jump when another terminal adds a snapshot. A row that did not change costs one comparison; a cell
is rebuilt only when what it shows changed; ``tick`` touches only the rows whose age text (or 24-hour
highlight) is due to change, and repaints only those rows (``_put_cells``). So a directory of 10,000
snapshots costs nothing per second, and a listing that did not change costs a few milliseconds. The "#"
cell reads its row's list number when rendered (``NumberCell``): a new snapshot at the top renumbers
every row, and that costs an int per row and one repaint, not 10,000 new cells.

Every column has a fixed width that the table computes itself from the widths of the cells it built (a
count of rows per width, per column), instead of letting DataTable measure each cell with Rich: measuring
was most of the time it took to show 10,000 rows. The widths are the ones DataTable would have chosen
(the widest cell or the header), except that a column narrows again when its widest rows go. The purpose
column takes the room left, and Rich cuts its cells with an ellipsis when it renders them, so a resize
sets one number and rebuilds nothing. The widget only renders what it is given: the screen lists the
directory and passes the snapshots in.
"""

from __future__ import annotations

import datetime as dt
import heapq
from collections import Counter
from collections.abc import Iterable, Sequence
from itertools import repeat
from typing import ClassVar

from rich.text import Text
from textual import events
from textual.binding import Binding, BindingType
from textual.geometry import Size
from textual.widgets import DataTable
from textual.widgets.data_table import CellDoesNotExist, Column, ColumnKey, DuplicateKey, Row, RowKey

from services.display import age_changes_at
from services.store import Snapshot
from widgets.snapshot_cells import (
    BUILT,
    COLUMNS,
    DIFF_MARK,
    INVALID_MARK,
    KEYS,
    PROTECTED_MARK,
    Cell,
    NumberCell,
    cached_age_text,
    cell_widths,
    number_width,
)

#: Snapshots younger than this are highlighted (the story: "highlight recent snapshots (< 24 hours)").
RECENT = dt.timedelta(hours=24)
MIN_PURPOSE = 4
DEFAULT_PURPOSE = 40  # until the table knows its width
#: Removing more rows than this at once rebuilds the table: DataTable.remove_row is linear in the row
#: count (about 8 ms per row among 10,000), re-adding a row costs about 20 µs.
BULK_REMOVE = 20
#: Up to this many changed rows are repainted one by one (``_put_cells``); more, and the table is repainted
#: whole, once (each row costs a pass over DataTable's cell cache, the whole table about 40 ms).
FEW_ROWS = 20
#: Column widths while no row is shown (a first launch, a filter that matches nothing): those of a typical
#: row, so that the header reads as a table and does not jump when the first snapshot comes in.
EMPTY_WIDTHS = dict(zip(KEYS[1:-1], cell_widths(("before-migration", True, False, False, False), "3 min ago",
                                                "schema-only", 150_000), strict=True))
EMPTY_WIDTHS["index"] = number_width(1)
LEGEND = f"{INVALID_MARK} invalid  {PROTECTED_MARK} protected  {DIFF_MARK} marked  bold: last 24 h"


def next_change(ts: dt.datetime, now: dt.datetime, text: str | None = None) -> dt.datetime:
    """When the age text of ``ts`` (``text`` now, if known) or its 24 h highlight can next change."""
    due = age_changes_at(ts, now, text)
    return min(due, ts + RECENT) if now < ts + RECENT else due


class SnapshotTable(DataTable):
    """Snapshots newest first, one row per ``.sql`` file, with validity, protection and recency marks."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("j", "cursor_down", "Down", show=False),
        Binding("k", "cursor_up", "Up", show=False),
    ]

    def __init__(self, **kwargs) -> None:
        # One space between columns instead of DataTable's two (each cell starts with a space), so that
        # all seven columns fit 80 terminal columns.
        #: (column keys, ordered columns): see ``ordered_columns`` (DataTable's __init__ reads both).
        self._column_order: tuple[tuple, list[Column]] = ((), [])
        #: The rows in order while none is added, removed or moved, and their lines: see ``ordered_rows``.
        self._order: list[Row] | None = None
        self._lines: _Lines | None = None
        super().__init__(cursor_type="row", zebra_stripes=True, cell_padding=0, **kwargs)
        #: The rows shown, by file name: what each shows and the cells built for it.
        self._rows: dict[str, _Row] = {}
        #: Rows taken out (filtered, or removed): showing them again builds nothing that did not change.
        self._spare: dict[str, _Row] = {}
        self._marked: str | None = None
        #: (when, key): rows whose age text or highlight is due to change (stale entries are skipped).
        self._due: list[tuple[dt.datetime, str]] = []
        #: Per column (but the number and the purpose): how many shown rows have a cell of each width.
        self.cell_widths: dict[str, Counter[int]] = {key: Counter() for _, key in COLUMNS[1:-1]}
        #: The width of the "#" column's cells: that of the largest list number shown.
        self._number_width = 0

    def on_mount(self) -> None:
        for header, key in COLUMNS:
            label = Text(" " + header, justify="right" if key in ("index", "size") else "left")
            self.add_column(label, width=label.cell_len, key=key)
        self._fit()

    def on_resize(self, event: events.Resize) -> None:
        # Only the width changes what fits: the purpose column gets the room left.
        self._fit()

    @property
    def highlighted_key(self) -> str | None:
        """File name of the row under the cursor, or None when the table is empty."""
        if not self.row_count:
            return None
        try:
            return self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value
        except CellDoesNotExist:
            return None

    def select_key(self, key: str) -> None:
        """Put the cursor on a snapshot's row (if it is shown)."""
        if key in self.rows:
            self.move_cursor(row=self.get_row_index(key))

    # -- updating ----------------------------------------------------------------------------------------
    def show(self, entries: Sequence[tuple[int, Snapshot]], now: dt.datetime,
             marked: str | None = None) -> None:
        """Make the rows match ``entries`` ((list number, snapshot), newest first) by key."""
        self._marked = marked
        wanted = {snap.filename: (index, snap) for index, snap in entries}
        keep = self.highlighted_key
        scroll_y = self.scroll_y
        gone = [key for key in self._rows if key not in wanted]
        colors = self.app.theme_variables
        self._number_width = number_width(max(index for index, _ in entries)) if entries else 0
        with self.app.batch_update():
            rebuild = len(gone) > BULK_REMOVE
            if rebuild:
                self.clear()
                for key in list(self._rows):
                    self._take_out(key)
            else:
                for key in gone:
                    self.remove_row(key)
                    self._take_out(key)
            # Rows kept keep their order (newest first, by name) and new rows go at the bottom: the order is
            # wrong only if a kept row comes after a new one.
            moved = renumbered = adding = False
            added: list[tuple[str, dict[str, Cell]]] = []
            changes: dict[str, dict[str, Cell]] = {}
            for key, (index, snap) in wanted.items():
                row = self._rows.get(key)
                if row is None:
                    row = self._rows[key] = self._spare.pop(key, None) or _Row()
                    self._update(row, key, index, snap, now, colors)
                    self._count(row, 1)
                    added.append((key, row.cells))
                    adding = not rebuild
                else:
                    moved = moved or adding
                    if row.index != index:  # its cell reads it: see NumberCell
                        row.index = index
                        renumbered = True
                    if not row.current(snap, key == marked, now):
                        self._count(row, -1)
                        changes[key] = self._update(row, key, index, snap, now, colors)
                        self._count(row, 1)
            self._add_rows(added)
            self._put_cells(changes)
            if moved:
                # "#" is the list position, so sorting by it restores newest-first without touching keys.
                self.sort("index", key=lambda cell: cell.row.index)
            elif renumbered:
                self._render_anew()
            self._fit(force=rebuild)
            if rebuild:
                self.scroll_to(y=scroll_y, animate=False, immediate=True)
            if keep in self.rows:
                self.move_cursor(row=self.get_row_index(keep), scroll=False)
            if len(self._due) > 2 * len(self._rows) + 100:
                self._due = [(row.age_until, key) for key, row in self._rows.items()]
                heapq.heapify(self._due)

    def tick(self, now: dt.datetime) -> None:
        """Time passed: update the ages (and 24 h highlights) that changed, and only those."""
        if not self._due or self._due[0][0] > now:
            return
        colors = self.app.theme_variables
        changes: dict[str, dict[str, Cell]] = {}
        with self.app.batch_update():
            while self._due and self._due[0][0] <= now:
                when, key = heapq.heappop(self._due)
                row = self._rows.get(key)
                if row is None or row.age_until != when:
                    continue  # taken out, or already updated by ``show``
                self._count(row, -1)
                changes[key] = self._update(row, key, row.index, row.snap, now, colors)
                self._count(row, 1)
            self._put_cells(changes)
            # "9 minutes ago" -> "10 minutes ago" widens the age column: the purpose gets less room.
            self._fit()

    def _add_rows(self, rows: list[tuple[str, dict[str, Cell]]]) -> None:
        """Add rows (key, cells by column in COLUMNS order) at the bottom. DataTable.add_row, once per
        row, also re-sets the cursor (a reactive: validation and watchers), asks for an idle pass and
        invalidates its caches: a third of the time it took to show 10,000 rows. Many rows are put in
        DataTable's row structures the way add_row puts them (one line high, no label), and those steps
        run once."""
        if len(rows) <= FEW_ROWS:
            for key, cells in rows:
                self.add_row(*cells.values(), key=key)
            return
        # Cells by column name: DataTable looks them up by ColumnKey, which hashes and compares as its
        # name (StringKey: "lookups using the object behave the same as lookups using the string
        # itself"), and a str key is hashed once, where a ColumnKey is hashed in Python at every insert.
        # The rows' dicts are in the table's column order already (a copy each: DataTable changes its own).
        if [column.key.value for column in self.ordered_columns] != list(KEYS):
            raise ValueError("the table's columns are not COLUMNS")
        first = not self.row_count
        for key, cells in rows:
            row_key = RowKey(key)
            if row_key in self._row_locations:
                raise DuplicateKey(f"The row key {row_key!r} already exists.")
            self._row_locations[row_key] = self.row_count
            self._data[row_key] = cells.copy()
            self.rows[row_key] = Row(row_key, 1)
            self._new_rows.add(row_key)
        self._order = None
        self._require_update_dimensions = True
        self.cursor_coordinate = self.cursor_coordinate
        if first and rows and self.columns and self.show_cursor and self.cursor_type != "none":
            self._highlight_cursor()  # as add_row does for the first row: a row is highlighted now
        self._update_count += 1
        self.check_idle()

    def _put_cells(self, changes: dict[str, dict[str, Cell]]) -> None:
        """Put the changed cells (by row key, then column) in the table and repaint the rows they are in.

        DataTable.update_cell counts every change in a number that is part of the key of each of its render
        caches, so one changed age re-rendered every visible cell (about 40 ms at 160x50, one to a few
        times a minute, and longer on a busy machine: the longest stall of the event loop during a dump) and
        rebuilt lists over every row. Here only the caches of the changed rows are dropped and only those
        rows repainted; many changed rows still repaint the table once."""
        changes = {key: cells for key, cells in changes.items() if cells}
        if len(changes) <= FEW_ROWS:
            try:
                self._repaint_rows(changes)
                return
            except (AttributeError, KeyError, TypeError):
                pass  # DataTable's private caches are not what this Textual had: slower, never wrong
        for key, cells in changes.items():
            for column, cell in cells.items():
                self.update_cell(key, column, cell)

    def _repaint_rows(self, changes: dict[str, dict[str, Cell]]) -> None:
        rows = []
        for key, cells in changes.items():
            index = self._row_locations.get(RowKey(key))
            if index is None:
                continue
            row_key = self._row_locations.get_key(index)
            data = self._data[row_key]
            for column, cell in cells.items():
                data[ColumnKey(column)] = cell
            rows.append((row_key, index))
        if not rows:
            return
        keys = {row_key.value for row_key, _ in rows}
        indexes = {index for _, index in rows}
        for cache in (self._cell_render_cache, self._row_render_cache):  # keyed (row key, column?, ...)
            for cache_key in [k for k in cache.keys() if k[0].value in keys]:
                cache.discard(cache_key)
        for cache_key in [k for k in self._row_renderable_cache.keys() if k[1] in indexes]:
            self._row_renderable_cache.discard(cache_key)  # keyed (update count, row index)
        self._line_cache.clear()  # keyed by line: at most a screenful, rebuilt from the rows' caches
        for _, index in rows:
            self.refresh_row(index)

    @property
    def ordered_rows(self) -> list[Row]:
        """DataTable rebuilds this list (and ``_y_offsets``, a tuple per line) whenever any cell changes
        or the table is resized, then looks up every row again: 15-40 ms for 10,000 rows. The list only
        changes when rows are added, removed or sorted (here, where this table does it), so it is kept
        until then."""
        return self._kept_order()[0]

    @property
    def _y_offsets(self) -> Sequence[tuple[RowKey, int]]:
        lines = self._kept_order()[1]
        return lines if lines is not None else super()._y_offsets

    def _kept_order(self) -> tuple[list[Row], _Lines | None]:
        if self._order is None or len(self._order) != self.row_count:
            self._order = super().ordered_rows
            self._lines = _Lines(self._order) if all(row.height == 1 for row in self._order) else None
        return self._order, self._lines

    def add_row(self, *cells, **kwargs) -> RowKey:
        row_key = super().add_row(*cells, **kwargs)
        self._order = None
        return row_key

    def remove_row(self, row_key: RowKey | str) -> None:
        super().remove_row(row_key)
        self._order = None

    def sort(self, *columns, **kwargs):
        self._order = None
        result = super().sort(*columns, **kwargs)
        self._order = None
        return result

    def clear(self, columns: bool = False):
        result = super().clear(columns)  # clears the list ``_y_offsets`` returned, in place
        self._order = None
        return result

    def _update(self, row: _Row, key: str, index: int, snap: Snapshot, now: dt.datetime,
                colors: dict) -> dict[str, Cell]:
        """Bring ``row`` up to date; returns the cells (by column) that had to be rebuilt."""
        marked = key == self._marked
        row.index = index
        if row.age_until <= now or row.snap is None or row.snap.timestamp != snap.timestamp:
            row.age = cached_age_text(snap.timestamp, now)
            row.age_until = next_change(snap.timestamp, now, row.age)
            heapq.heappush(self._due, (row.age_until, key))
        row.snap, row.shown = snap, _shown(snap, marked)
        marked, label, valid, protected, ts, kind, size, purpose, problem = row.shown
        recent = now - ts < RECENT
        # Each column's inputs, in COLUMNS order, but the number's (its cell reads ``row.index``).
        inputs = ((label, valid, protected, marked, recent), (ts, recent), (row.age, recent), (kind,),
                  (size,), (purpose, problem))
        cells = row.cells
        if not cells:  # a new row (10,000 of them when a directory is first shown): no comparisons
            cells["index"] = NumberCell(row)
            cells.update(zip(KEYS[1:], map(Cell, BUILT[1:], inputs, repeat(colors)), strict=True))
            changed = cells
        else:
            changed = {}
            for column, build, args in zip(KEYS[1:], BUILT[1:], inputs, strict=True):
                if cells[column].args != args:
                    changed[column] = cells[column] = Cell(build, args, colors)
        if changed:
            row.widths = cell_widths(inputs[0], row.age, kind, size)
        return changed

    def _take_out(self, key: str) -> None:
        """A row left the table: its cells are kept (a filter brings them back), its widths no longer count."""
        row = self._rows.pop(key)
        self._count(row, -1)
        self._spare[key] = row
        if len(self._spare) > max(len(self._rows), 10_000):
            del self._spare[next(iter(self._spare))]  # the longest gone

    def _count(self, row: _Row, sign: int) -> None:
        for counts, width in zip(self.cell_widths.values(), row.widths, strict=False):  # () until built
            counts[width] += sign
            if not counts[width]:
                del counts[width]

    def _fit(self, force: bool = False) -> None:
        """Set each column's width from the cells it holds, and give the purpose the room left (so that
        the table fits its width: a horizontal scroll would hide the purpose at 80 columns, and the
        preview has the whole text). DataTable has no setter for a column's width: the public
        ``Column.width`` is set, and one cell re-put so that the table renders anew."""
        if "purpose" not in self.columns:
            return
        changed = force
        used = 0
        for column in self.ordered_columns[:-1]:
            key = column.key.value
            if not self._rows:
                cells = EMPTY_WIDTHS[key]
            else:
                cells = self._number_width if key == "index" else max(self.cell_widths[key], default=0)
            width = max(column.label.cell_len, cells)
            if column.width != width:
                column.width = width
                changed = True
            used += width
        room = (max(self.size.width - used - self.styles.scrollbar_size_vertical, MIN_PURPOSE)
                if self.size.width else DEFAULT_PURPOSE)
        purpose = self.columns["purpose"]
        if purpose.width != room:
            purpose.width = room
            changed = True
        if changed:
            self._set_virtual_size()
            self._render_anew()

    def _render_anew(self) -> None:
        """Have every cell on the screen rendered again: one cell re-put (DataTable's render caches are
        keyed by its count of changes)."""
        if self.row_count:
            first = self.ordered_rows[0].key
            self.update_cell(first, "index", self.get_cell(first, "index"))

    def _set_virtual_size(self) -> None:
        header = self.header_height if self.show_header else 0
        self.virtual_size = Size(sum(column.get_render_width(self) for column in self.columns.values()),
                                 self.row_count + header)

    @property
    def ordered_columns(self) -> list[Column]:
        """DataTable rebuilds this list twice per ``add_row`` (a quarter of its time); the columns here
        are added once, in order, and never move, so the list is kept while they stay the same."""
        keys = tuple(self.columns)
        if self._column_order[0] != keys:
            self._column_order = (keys, super().ordered_columns)
        return self._column_order[1]

    def _update_dimensions(self, new_rows: Iterable[RowKey]) -> None:
        """DataTable measures every cell of every new row here (with Rich: 7 measures per row, most of
        the time it took to show 10,000 rows) to widen auto-width columns. Every column here has a fixed
        width that ``_fit`` set from the cells as they were built, and every row is one line high, so
        only the scrollable size is left to set. (Should Textual rename this hook, the table measures
        again: slower, never wrong, since fixed-width columns ignore what is measured.)"""
        self._set_virtual_size()


class _Lines(Sequence):
    """``_y_offsets`` (row key, line in row) of each line when every row is one line high, looked up when
    asked: DataTable's list of a tuple per line is rebuilt after any change, and is 10,000 more objects
    for the garbage collector to walk, on the event loop, in every full collection."""

    __slots__ = ("rows",)

    def __init__(self, rows: list[Row]) -> None:
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, y):
        return (self.rows[y].key, 0)

    def clear(self) -> None:
        """DataTable.clear empties the list it got; the table then makes a new one of these."""


def _shown(snap: Snapshot, marked: bool) -> tuple:
    """Everything a row shows of a snapshot but its list number and age, as values: the engine updates a
    Snapshot in place (protect, validate), so the object the row was built from cannot tell whether it
    changed."""
    return (marked, snap.label, snap.valid, snap.protected, snap.timestamp,
            snap.type if snap.meta else "?", snap.size_bytes, snap.purpose, snap.problem)


class _Row:
    """One row: its list number, the snapshot it shows (and ``_shown`` of it), its cells (by column, in
    COLUMNS order) and their widths (``cell_widths``), and its age text until that changes."""

    __slots__ = ("age", "age_until", "cells", "index", "shown", "snap", "widths")

    def __init__(self) -> None:
        self.index = 0
        self.snap: Snapshot | None = None
        self.shown: tuple = ()
        self.cells: dict[str, Cell] = {}
        self.widths: tuple[int, ...] = ()
        self.age = ""
        self.age_until = dt.datetime.min.replace(tzinfo=dt.UTC)

    def current(self, snap: Snapshot, marked: bool, now: dt.datetime) -> bool:
        """Whether the row already shows this but its number (the common case: one comparison of values
        per row)."""
        return now < self.age_until and _shown(snap, marked) == self.shown
