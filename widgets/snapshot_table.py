"""The snapshot list: a DataTable kept in step with the directory by keyed diff.

Rows are keyed by file name. ``show`` adds, updates and removes rows by key inside one batch update and
never clears the table for a live change, so the cursor stays on the snapshot it was on and the view does
not jump when another terminal adds a snapshot. Each cell is rebuilt only when what it shows changed, and
``tick`` touches only the rows whose age text (or 24-hour highlight) is due to change, so a directory of
10,000 snapshots costs nothing per second. The widget only renders what it is given: the screen lists the
directory and passes the snapshots in.
"""

from __future__ import annotations

import datetime as dt
import heapq
from collections.abc import Callable, Sequence
from typing import ClassVar

from rich.text import Text
from textual import events
from textual.binding import Binding, BindingType
from textual.widgets import DataTable
from textual.widgets.data_table import CellDoesNotExist

from services.store import Snapshot, age_text, human_size

#: Snapshots younger than this are highlighted (the story: "highlight recent snapshots (< 24 hours)").
RECENT = dt.timedelta(hours=24)
#: (header, key) of each column, in order. "#" is the list number of the CLI (1 = newest).
COLUMNS = (("#", "index"), ("Label", "label"), ("Date (UTC)", "date"), ("Age", "age"), ("Type", "type"),
           ("Size", "size"), ("Purpose", "purpose"))
#: Glyphs in front of a label; the help screen and the table's subtitle explain them.
INVALID_MARK, PROTECTED_MARK, DIFF_MARK = "✗", "◆", "●"
#: Labels longer than this are shortened in the table (the preview shows them whole).
MAX_LABEL = 32
MIN_PURPOSE = 4
DEFAULT_PURPOSE = 40  # until the table knows its width
#: Removing more rows than this at once rebuilds the table: DataTable.remove_row is linear in the row count.
BULK_REMOVE = 500
LEGEND = f"{INVALID_MARK} invalid  {PROTECTED_MARK} protected  {DIFF_MARK} marked  bold: last 24 h"


def is_recent(snap: Snapshot, now: dt.datetime) -> bool:
    return now - snap.timestamp < RECENT


def next_change(ts: dt.datetime, now: dt.datetime) -> dt.datetime:
    """When the age text of ``ts`` (or its 24 h highlight) can next change. Within a day the text counts
    seconds, minutes or hours; beyond, whole days (months and years are derived from days)."""
    age = max((now - ts).total_seconds(), 0)
    unit = 1 if age < 60 else 60 if age < 3600 else 3600 if age < 86400 else 86400
    due = ts + dt.timedelta(seconds=(int(age // unit) + 1) * unit)
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
        super().__init__(cursor_type="row", zebra_stripes=True, cell_padding=0, **kwargs)
        #: The last ``show`` arguments, to redo the fit after a resize.
        self._shown: tuple | None = None
        #: Per row: the inputs each cell was built from (a cell is rebuilt only when they change).
        self._rows: dict[str, _Row] = {}
        self._snaps: dict[str, Snapshot] = {}
        self._marked: str | None = None
        #: (when, key): rows whose age text or highlight is due to change.
        self._due: list[tuple[dt.datetime, str]] = []
        self._purpose_width = 0
        self._fitted_width = 0

    def on_mount(self) -> None:
        for header, key in COLUMNS[:-1]:
            justify = "right" if key in ("index", "size") else "left"
            self.add_column(Text(" " + header, justify=justify), key=key)
        self._set_purpose_width(DEFAULT_PURPOSE)

    def on_resize(self, event: events.Resize) -> None:
        # Only the width changes what fits; a taller or shorter table shows the same cells.
        if self._shown is not None and event.size.width != self._fitted_width:
            self.show(*self._shown)

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
        self._shown = (entries, now, marked)
        self._marked = marked
        wanted = {snap.filename: (index, snap) for index, snap in entries}
        keep = self.highlighted_key
        gone = [k.value for k in self.rows if k.value not in wanted]
        with self.app.batch_update():
            if len(gone) > BULK_REMOVE:
                self.clear()
                self._rows.clear()
            else:
                for key in gone:
                    self.remove_row(key)
                    del self._rows[key]
            self._snaps = {key: snap for key, (_, snap) in wanted.items()}
            colors = self.app.theme_variables
            built = {key: self._build(key, index, snap, now, colors) for key, (index, snap) in wanted.items()}
            room = self._purpose_room()
            self._fitted_width = self.size.width
            self._set_purpose_width(room)
            self._due = [(self._rows[key].age_until, key) for key in wanted]
            heapq.heapify(self._due)
            for key, (_, snap) in wanted.items():
                self._put(key, built[key] | self._build_purpose(key, snap, room, colors))
            order = [snap.filename for _, snap in entries]
            if [row.key.value for row in self.ordered_rows] != order:
                # "#" is the list position, so sorting by it restores newest-first without touching keys.
                self.sort("index", key=lambda cell: int(cell.plain))
            if keep in self.rows:
                self.move_cursor(row=self.get_row_index(keep), scroll=False)

    def tick(self, now: dt.datetime) -> None:
        """Time passed: update the ages (and 24 h highlights) that changed, and only those."""
        if not self._due or self._due[0][0] > now:
            return
        widest = max(row.width["age"] for row in self._rows.values())
        colors = self.app.theme_variables
        with self.app.batch_update():
            while self._due and self._due[0][0] <= now:
                _, key = heapq.heappop(self._due)
                snap = self._snaps.get(key)
                if snap is None or key not in self._rows:
                    continue
                self._put(key, self._build(key, self._rows[key].inputs["index"][0], snap, now, colors))
                heapq.heappush(self._due, (self._rows[key].age_until, key))
            if self._shown is not None and max(row.width["age"] for row in self._rows.values()) > widest:
                # The age column grew ("9 minutes ago" -> "10 minutes ago"): shorten the purposes to fit.
                self.show(self._shown[0], now, self._marked)

    def _build(self, key: str, index: int, snap: Snapshot, now: dt.datetime, colors: dict) -> dict[str, Text]:
        """The cells (all but the purpose) whose inputs changed since the row was last shown."""
        recent = is_recent(snap, now)
        row = self._rows.get(key)
        age = row.age if row is not None and row.age_until > now else None
        if age is None:
            age = age_text(snap.timestamp, now)
        inputs = {
            "index": (index,),
            "label": (snap.label, snap.valid, snap.protected, key == self._marked, recent),
            "date": (snap.timestamp, recent),
            "age": (age, recent),
            "type": (snap.type if snap.meta else "?",),
            "size": (snap.size_bytes,),
        }
        if row is None:
            row = self._rows[key] = _Row()
        row.age, row.age_until = age, next_change(snap.timestamp, now)
        changed = {}
        for column, args in inputs.items():
            if row.inputs.get(column) != args:
                row.inputs[column] = args
                changed[column] = cell = CELLS[column](*args, colors)
                row.width[column] = cell.cell_len
        return changed

    def _build_purpose(self, key: str, snap: Snapshot, room: int, colors: dict) -> dict[str, Text]:
        row = self._rows[key]
        args = (snap.purpose, snap.problem, room)
        if row.inputs.get("purpose") == args:
            return {}
        row.inputs["purpose"] = args
        return {"purpose": _purpose_cell(*args, colors)}

    def _put(self, key: str, cells: dict[str, Text]) -> None:
        if key not in self.rows:
            self.add_row(*(cells[column] for _, column in COLUMNS), key=key)
            return
        for column, cell in cells.items():
            # Only a wider cell asks the table to re-measure: for a narrower one DataTable measures the
            # whole column, which is quadratic when thousands of cells change at once (the "#" shift).
            grow = column != "purpose" and cell.cell_len > self.columns[column].content_width
            self.update_cell(key, column, cell, update_width=grow)

    def _set_purpose_width(self, room: int) -> None:
        """The purpose column has a fixed width, the room left (its cells are cut to fit), so that a resize
        sets one number instead of re-measuring every purpose. DataTable has no setter for a column's width:
        the public ``Column.width`` is set, and the one re-measured cell below makes the table recompute
        its scrollable width (re-adding the column would re-measure every row, once per row)."""
        if room == self._purpose_width:
            return
        self._purpose_width = room
        if "purpose" not in self.columns:
            self.add_column(Text(" Purpose"), width=room, key="purpose")
            return
        self.columns["purpose"].width = room
        if self.row_count:
            first = self.ordered_rows[0].key
            self.update_cell(first, "purpose", self.get_cell(first, "purpose"), update_width=True)

    def _purpose_room(self) -> int:
        """Columns left for the purpose so that the table fits its width (the preview has the whole text;
        a horizontal scroll would hide the purpose at 80 columns). A DataTable column never narrows once a
        wide cell was in it, so the widths it has count as well as the widths of the cells coming."""
        if not self.size.width:
            return DEFAULT_PURPOSE
        used = 0
        for column in self.ordered_columns[:-1]:
            name = column.key.value
            used += max([column.get_render_width(self), *(row.width[name] for row in self._rows.values())])
        return max(self.size.width - used - self.styles.scrollbar_size_vertical, MIN_PURPOSE)


class _Row:
    """What one row shows: the inputs of each cell, each cell's width, and its age text until it changes."""

    __slots__ = ("age", "age_until", "inputs", "width")

    def __init__(self) -> None:
        self.inputs: dict[str, tuple] = {}
        self.width: dict[str, int] = {}
        self.age = ""
        self.age_until = dt.datetime.min.replace(tzinfo=dt.UTC)


# -- the cells: one builder per column, from the inputs ``_build`` compares --------------------------------

def _index_cell(index: int, colors: dict) -> Text:
    return Text(f" {index}", justify="right")


def _label_cell(label: str, valid: bool, protected: bool, marked: bool, recent: bool, colors: dict) -> Text:
    text = Text(" ", no_wrap=True)
    if not valid:
        text.append(INVALID_MARK + " ", colors.get("text-error", "red"))
    if protected:
        text.append(PROTECTED_MARK + " ", colors.get("text-warning", "yellow"))
    if marked:
        text.append(DIFF_MARK + " ", colors.get("text-accent", "magenta"))
    text.append(label, "bold" if recent else "")
    text.truncate(MAX_LABEL + 1, overflow="ellipsis")
    return text


def _fresh(recent: bool, colors: dict) -> str:
    return f"bold {colors.get('text-success', 'green')}" if recent else ""


def _date_cell(ts: dt.datetime, recent: bool, colors: dict) -> Text:
    return Text(f" {ts:%Y-%m-%d %H:%M}", _fresh(recent, colors))


def _age_cell(age: str, recent: bool, colors: dict) -> Text:
    return Text(" " + age, _fresh(recent, colors))


def _type_cell(kind: str, colors: dict) -> Text:
    return Text(" " + {"full": "full", "schema-only": "schema"}.get(kind, "?"))  # the preview spells it out


def _size_cell(size: int, colors: dict) -> Text:
    return Text(" " + human_size(size), justify="right")


def _purpose_cell(purpose: str, problem: str | None, room: int, colors: dict) -> Text:
    if problem is None:
        text = Text(" " + purpose, no_wrap=True)
    else:
        text = Text(f" invalid: {problem}", colors.get("text-error", "red"), no_wrap=True)
    if text.cell_len > room:
        text.truncate(room, overflow="ellipsis")
        text.rstrip()
    return text


CELLS: dict[str, Callable[..., Text]] = {
    "index": _index_cell, "label": _label_cell, "date": _date_cell, "age": _age_cell, "type": _type_cell,
    "size": _size_cell, "purpose": _purpose_cell,
}
