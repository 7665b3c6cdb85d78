"""The list pane of the main screen: the filter field, the snapshot table and the line shown when no row is.

Digits typed on the list (or ``:`` then digits) go to snapshot #N as they are typed, as the CLI's
``restore N`` names it. Rendering only: the screen hands it the listing.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Sequence

from textual import events, on
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.timer import Timer
from textual.widgets import Input, Static

from services.display import human_size
from services.snapshots.maintenance import disk_use
from services.snapshots.store import Snapshot
from widgets.snapshot_table import LEGEND, SnapshotTable

#: The filter waits for a pause in typing (seconds) once the list has this many snapshots.
DEBOUNCE, DEBOUNCE_FROM = 0.25, 1000
#: Digits typed within this many seconds of each other make one number ("1", "2" -> #12).
JUMP_PAUSE = 1.5


def matches(snap: Snapshot, needle: str) -> bool:
    return any(needle in text.lower() for text in (snap.label, snap.purpose, snap.filename, snap.type or ""))


class SnapshotList(Vertical):
    """Filter field, table and empty-state line; the border says how many snapshots are shown."""

    def __init__(self, directory: str, clock: Callable[[], dt.datetime], **kwargs) -> None:
        super().__init__(**kwargs)
        self.directory = directory
        self.clock = clock
        #: The whole listing (newest first), the marked snapshot's file name, and what the empty list says.
        self._snapshots: Sequence[Snapshot] = ()
        self._on_disk = ""
        self._marked: str | None = None
        self._hint = ""
        self._filter_timer: Timer | None = None
        #: The list number typed so far, and when its last digit came.
        self._jump = ""
        self._jump_at = 0.0

    def compose(self) -> ComposeResult:
        yield Input(placeholder="filter: label, purpose, file name or type · enter keeps it · escape clears",
                    id="filter", compact=True)
        yield SnapshotTable(id="snapshots")
        yield Static("", id="empty", markup=False)

    def on_mount(self) -> None:
        self.border_subtitle = LEGEND

    @property
    def table(self) -> SnapshotTable:
        return self.query_one(SnapshotTable)

    @property
    def filter_open(self) -> bool:
        return self.query_one("#filter", Input).display

    # -- rows ----------------------------------------------------------------------------------------
    def show(self, snapshots: Sequence[Snapshot], marked: str | None, hint: str) -> None:
        """Show ``snapshots`` (the whole listing, newest first) through the filter. ``hint``: what an
        empty directory says."""
        self._snapshots, self._marked, self._hint = snapshots, marked, hint
        self._on_disk = human_size(disk_use(snapshots)[0]) if snapshots else ""  # once per listing, not per keystroke
        self._render_rows()

    def _render_rows(self) -> None:
        text = self.query_one("#filter", Input).value
        needle = text.strip().lower()
        entries = [(i, s) for i, s in enumerate(self._snapshots, 1) if not needle or matches(s, needle)]
        self.table.show(entries, self.clock(), self._marked)
        empty = self.query_one("#empty", Static)
        empty.display = not entries
        if not entries:
            empty.update(f"No snapshot matches “{text}”. Press escape to clear the filter."
                         if self._snapshots else self._hint)
        self.set_class(not entries, "-empty")
        total = len(self._snapshots)
        count = f"{len(entries)} of {total} match “{text}”" if text else str(total)
        on_disk = f"{self._on_disk} · " if self._on_disk else ""
        self.border_title = f"Snapshots ({count}) · {on_disk}{self.directory}"

    # -- the filter ----------------------------------------------------------------------------------
    def open_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.display = True
        self.screen.set_focus(box)  # now, not after a refresh: keys typed right behind "/" go into it
        self.screen.refresh_bindings()

    def close_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.value = ""
        box.display = False
        self._render_rows()
        self.table.focus()
        self.screen.refresh_bindings()

    @on(Input.Changed, "#filter")
    def _filter_changed(self) -> None:
        if self._filter_timer is not None:
            self._filter_timer.stop()
        if len(self._snapshots) < DEBOUNCE_FROM:
            self._render_rows()
        else:  # thousands of rows: re-render once the typing pauses
            self._filter_timer = self.set_timer(DEBOUNCE, self._render_rows)

    @on(Input.Submitted, "#filter")
    def _filter_submitted(self, event: Input.Submitted) -> None:
        if not event.value:
            self.query_one("#filter", Input).display = False
            self.screen.refresh_bindings()
        self.table.focus()

    # -- going to a list number ----------------------------------------------------------------------
    def on_key(self, event: events.Key) -> None:
        if not self.table.has_focus:
            return
        now = time.monotonic()
        if event.character == ":":
            self._jump = ""
        elif event.character and event.character.isdigit():
            typed = (self._jump if now - self._jump_at < JUMP_PAUSE else "") + event.character
            # A number past the end starts a new one: "5" then "1" in a list of 18 goes to #1, not #51.
            self._jump = typed if int(typed) <= len(self._snapshots) else event.character
            self.go_to(int(self._jump))
        else:
            self._jump = ""
            return
        self._jump_at = now
        event.stop()
        event.prevent_default()

    def go_to(self, number: int) -> None:
        """Put the cursor on snapshot #``number``; a notice when it is not in the list (or hidden)."""
        if self.table.select_index(number):
            return
        hidden = 0 < number <= len(self._snapshots)
        self.notify(f"Snapshot #{number} is hidden by the filter: escape clears it." if hidden else
                    f"There is no snapshot #{number}: the list has {len(self._snapshots)}.",
                    severity="warning", timeout=3)
