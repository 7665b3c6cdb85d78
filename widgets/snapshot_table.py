"""The snapshot list: a DataTable kept in step with the directory by keyed diff.

Rows are keyed by file name. ``show`` adds, updates and removes rows by key inside one batch update and
never clears the table, so the cursor stays on the snapshot it was on and the view does not jump when
another terminal adds a snapshot or when ages tick. The widget only renders what it is given: the screen
lists the directory and passes the snapshots in.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from rich.text import Text
from textual.binding import Binding
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
LEGEND = f"{INVALID_MARK} invalid  {PROTECTED_MARK} protected  {DIFF_MARK} marked  bold: last 24 h"


def is_recent(snap: Snapshot, now: dt.datetime) -> bool:
    return now - snap.timestamp < RECENT


class SnapshotTable(DataTable):
    """Snapshots newest first, one row per ``.sql`` file, with validity, protection and recency marks."""

    BINDINGS = [
        Binding("j", "cursor_down", "Down", show=False),
        Binding("k", "cursor_up", "Up", show=False),
    ]

    def __init__(self, **kwargs) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)
        self._shown: tuple | None = None

    def _fit_purpose(self, rows: list[tuple[Text, ...]]) -> None:
        """Shorten purposes (with …) so that the table fits its width: the full text is in the preview,
        and a horizontal scroll would hide the purpose column at 80 columns."""
        if not rows or not self.size.width:
            return
        pad = 2 * self.cell_padding
        used = sum(max(len(header), *(row[i].cell_len for row in rows)) + pad
                   for i, (header, _) in enumerate(COLUMNS[:-1]))
        room = self.size.width - used - pad - self.styles.scrollbar_size_vertical
        for row in rows:
            if row[-1].cell_len > room:
                row[-1].truncate(max(room, MIN_PURPOSE), overflow="ellipsis")

    def on_mount(self) -> None:
        for header, key in COLUMNS:
            self.add_column(header, key=key)

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

    def on_resize(self) -> None:
        if self._shown is not None:
            self.show(*self._shown)

    def show(self, entries: Sequence[tuple[int, Snapshot]], now: dt.datetime, marked: str | None = None) -> None:
        """Make the rows match ``entries`` ((list number, snapshot), newest first) by key."""
        self._shown = (entries, now, marked)
        wanted = {snap.filename: self._cells(index, snap, now, marked) for index, snap in entries}
        self._fit_purpose(list(wanted.values()))
        order = [snap.filename for _, snap in entries]
        keep = self.highlighted_key
        with self.app.batch_update():
            for key in [k for k in self.rows if k.value not in wanted]:
                self.remove_row(key)
            for key, cells in wanted.items():
                if key not in self.rows:
                    self.add_row(*cells, key=key)
                    continue
                for (_, column), new, old in zip(COLUMNS, cells, self.get_row(key), strict=True):
                    if not _same(new, old):
                        self.update_cell(key, column, new, update_width=True)
            if [row.key.value for row in self.ordered_rows] != order:
                # "#" is the list position, so sorting by it restores newest-first without touching keys.
                self.sort("index", key=lambda cell: int(cell.plain))
                if keep in self.rows:
                    self.move_cursor(row=self.get_row_index(keep), scroll=False)

    def _cells(self, index: int, snap: Snapshot, now: dt.datetime, marked: str | None) -> tuple[Text, ...]:
        colors = self.app.theme_variables
        recent = is_recent(snap, now)
        fresh = f"bold {colors.get('text-success', 'green')}" if recent else ""
        label = Text(no_wrap=True)
        if not snap.valid:
            label.append(INVALID_MARK + " ", colors.get("text-error", "red"))
        if snap.protected:
            label.append(PROTECTED_MARK + " ", colors.get("text-warning", "yellow"))
        if snap.filename == marked:
            label.append(DIFF_MARK + " ", colors.get("text-accent", "magenta"))
        label.append(snap.label, "bold" if recent else "")
        label.truncate(MAX_LABEL, overflow="ellipsis")
        if snap.valid:
            purpose = Text(snap.purpose, no_wrap=True)
        else:
            purpose = Text(f"invalid: {snap.problem}", colors.get("text-error", "red"), no_wrap=True)
        return (Text(str(index), justify="right"), label,
                Text(snap.timestamp.strftime("%Y-%m-%d %H:%M"), fresh),
                Text(age_text(snap.timestamp, now), fresh),
                Text(snap.type if snap.meta else "?"),
                Text(human_size(snap.size_bytes), justify="right"),
                purpose)


def _same(a: Text, b: object) -> bool:
    """Rich's Text equality ignores the base style; a row turning stale must still repaint."""
    return isinstance(b, Text) and a.plain == b.plain and a.style == b.style and a.spans == b.spans
