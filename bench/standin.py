"""A stand-in for the real app, built from the real widgets and the real engine, used only by the benchmark.

Why it exists: while ``app.tui.make_app`` is not there yet, the TUI targets (first paint with 10,000
snapshots, a key press during a 1 GB dump) can still be measured on the parts that decide them — the
``SnapshotTable`` keyed-diff fill, the ``ActivityLog`` progress row, and ``services.dump`` streaming inside
the same asyncio loop as the UI, its events bridged as coalescing messages. Its numbers are reported as
"stand-in", never as the app's; once ``make_app`` exists the probe measures the real app instead.
"""

from __future__ import annotations

import asyncio

from textual.app import App, ComposeResult
from textual.containers import Vertical

from app.cli import progress_text
from app.screens.messages import EngineLog, EngineProgress, bridge
from services import dump
from services.store import utcnow
from services.workspace import Workspace
from widgets.activity_log import ActivityLog
from widgets.snapshot_table import SnapshotTable


class StandInApp(App):
    """Snapshot table above a log pane; lists the directory in a worker on mount, like the real screen."""

    CSS = "SnapshotTable { height: 2fr; } ActivityLog { height: 1fr; }"

    def __init__(self, ws: Workspace) -> None:
        super().__init__()
        self.ws = ws

    def compose(self) -> ComposeResult:
        with Vertical():
            yield SnapshotTable(id="snapshots")
            yield ActivityLog(id="activity")

    def on_mount(self) -> None:
        self.query_one(SnapshotTable).focus()
        self.run_worker(self._refresh(), group="list", exclusive=True, exit_on_error=False)

    async def _refresh(self) -> None:
        snaps = await asyncio.to_thread(self.ws.store.list)
        self.query_one(SnapshotTable).show(list(enumerate(snaps, 1)), utcnow())

    def start_snapshot(self, label: str) -> None:
        """Take a full snapshot in an async worker, its events posted to this app as messages."""
        self.query_one(ActivityLog).start("dumping")
        self.run_worker(dump.snapshot(self.ws.require_conn(), self.ws.store, label, report=bridge(self)),
                        group="dump", exclusive=True, exit_on_error=False, description="bench dump")

    def on_engine_progress(self, message: EngineProgress) -> None:
        p = message.event
        self.query_one(ActivityLog).progress(p.fraction, progress_text(p))

    def on_engine_log(self, message: EngineLog) -> None:
        self.query_one(ActivityLog).write_event(message.event)
