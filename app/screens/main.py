"""The main screen: the snapshot list, the preview of the highlighted snapshot, and the log pane.

Keys start work here; it runs in the workers of ``Jobs`` (jobs.py), ``Recovery`` (r, E) and ``Housekeeping``
(p, delete, c), which post what they found as typed messages. The directory is checked every second, so
snapshots taken from another terminal appear, and ages tick. Dialogs are imported where they are first
opened: the first paint of the list pays only for what it shows.
"""

from __future__ import annotations

import datetime as dt
import gc
from collections.abc import Callable
from typing import TYPE_CHECKING, ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import Footer

from app.common import progress_text
from app.screens.confirm import ConfirmModal
from app.screens.housekeeping import Housekeeping
from app.screens.jobs import Jobs, file_stamp
from app.screens.keys import BINDINGS
from app.screens.messages import (
    DiffReady,
    EngineLog,
    EngineProgress,
    EngineStep,
    Scanned,
    ServerProbed,
    SnapshotTaken,
    Validated,
    bridge,
)
from app.screens.recovery import Recovery
from app.workflow import Workflow
from services.display import human_size
from services.errors import DbsageError
from services.snapshots.listing import order_key
from services.snapshots.store import Snapshot
from services.snapshots.validation import Validation
from services.workspace import Workspace
from widgets.activity_log import ActivityLog
from widgets.header import TargetHeader
from widgets.preview import SnapshotPreview
from widgets.snapshot_list import SnapshotList
from widgets.snapshot_table import SnapshotTable
from widgets.steps import GLYPHS

if TYPE_CHECKING:
    from app.screens.create import CreateRequest
    from services.server.catalog import ServerInfo

#: Seconds between checks of the snapshot directory (and age updates).
SCAN_EVERY = 1.0
#: Below this many lines the log pane starts collapsed to its last line (``l`` opens it), so that the
#: list keeps the room.
LOG_OPEN_FROM = 32
#: Actions that need a database: dimmed in the footer without one.
NEEDS_DB = frozenset({"new_snapshot", "restore", "emergency", "psql"})


class MainScreen(Recovery, Housekeeping, Jobs, Screen):
    HORIZONTAL_BREAKPOINTS: ClassVar[list[tuple[int, str]]] = [(0, "-narrow"), (130, "-wide")]
    VERTICAL_BREAKPOINTS: ClassVar[list[tuple[int, str]]] = [(0, "-tiny"), (20, "-tall")]
    BINDINGS: ClassVar[list[BindingType]] = BINDINGS
    #: Whether this process has frozen a first listing (once: ``gc.get_freeze_count`` counts it, slowly).
    froze: ClassVar[bool] = False

    def __init__(self, ws: Workspace, workflow: Workflow, clock: Callable[[], dt.datetime],
                 server_info: ServerInfo | None = None) -> None:
        super().__init__()
        self.ws = ws
        self.workflow = workflow
        self.clock = clock
        self.server_info = server_info
        #: The last listing, newest first (the "#" of a snapshot is its position here, as in the CLI).
        self.snapshots: list[Snapshot] = []
        #: File name -> list number: looked up on every cursor move and every second. Numbers only, so that
        #: the dict is nothing for the garbage collector to walk.
        self._by_name: dict[str, int] = {}
        #: Full validation results by file name, with the file's (size, mtime) when it was validated.
        self.validations: dict[str, tuple[Validation, tuple]] = {}
        self.marked: str | None = None
        self._last_scan: Scanned | None = None
        self._select_next: str | None = None
        self._last_scan_error: str | None = None
        #: The log pane opened or closed with ``l`` (None: by the terminal's height).
        self.log_open: bool | None = None
        self.report = bridge(self)

    def compose(self) -> ComposeResult:
        yield TargetHeader(id="header")
        with Horizontal(id="body"):
            yield SnapshotList(str(self.ws.store.directory), self.clock, id="list-pane")
            yield SnapshotPreview(id="preview")
        yield ActivityLog(id="activity")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one("#preview").border_title = "Snapshot"
        self._show_header()
        self.say(f"Snapshot directory: {self.ws.store.directory}")
        if self.ws.conn is None:
            self.say("No database is configured: the list works, snapshots and restores need one. Set "
                     "SUPABASE_DB_URL or DATABASE_URL, pass --db-url, or try the sandbox with --demo.",
                     "warning")
        self.scan(force=True)
        self.set_interval(SCAN_EVERY, self._tick)
        self.query_one(SnapshotTable).focus()

    # -- small helpers ---------------------------------------------------------------------------------
    @property
    def table(self) -> SnapshotTable:
        return self.query_one(SnapshotTable)

    @property
    def list_pane(self) -> SnapshotList:
        return self.query_one(SnapshotList)

    @property
    def activity(self) -> ActivityLog:
        return self.query_one(ActivityLog)

    def say(self, text: str, level: str = "info") -> None:
        self.activity.say(text, level, self.clock())

    def _show_header(self, problem: str | None = None) -> None:
        info = self.server_info
        conn = self.ws.conn
        self.query_one(TargetHeader).show(
            conn.display if conn else None, server=info.version if info else None,
            supabase=bool(info and info.supabase), sandbox=self.ws.demo, problem=problem)

    def _highlighted(self) -> Snapshot | None:
        index = self._by_name.get(self.table.highlighted_key)
        return self.snapshots[index - 1] if index else None

    def _can_run(self, conn: bool = False, idle: bool = False) -> bool:
        """Whether an action may start; when not, a notice says why (and what to do)."""
        if idle and self._busy():
            self.notify("Other work is running: wait for it, or press escape to cancel it.",
                        severity="warning")
            return False
        if conn:
            try:
                self.ws.require_conn()
            except DbsageError as exc:
                self.notify(exc.one_line(), title="No database", severity="warning", timeout=8)
                return False
        return True

    def _chosen(self, conn: bool = False, idle: bool = False) -> Snapshot | None:
        """The highlighted snapshot, if the action may run on it."""
        if not self._can_run(conn, idle):
            return None
        snap = self._highlighted()
        if snap is None:
            self.notify("No snapshot is highlighted. Press n to take one.", severity="warning")
        return snap

    # -- the list --------------------------------------------------------------------------------------
    def _tick(self) -> None:
        self.table.tick(self.clock())
        self._update_preview()
        # A listing of a large directory (every file is read) can take a while: let it finish
        # rather than replace it every tick (scan is exclusive, so a new one would cancel it).
        if not any(w.group == "scan" and not w.is_finished for w in self.workers):
            self.scan()

    @on(Scanned)
    def _scanned(self, scan: Scanned) -> None:
        if self._last_scan is None:
            self.probe_later()
        self._last_scan = scan
        if scan.snapshots is None:
            return
        self._last_scan_error = None
        for name, (_, stamp) in list(self.validations.items()):
            if file_stamp(scan.signature, name) != stamp:
                del self.validations[name]
        self.snapshots = scan.snapshots
        self._verdicts = scan.verdicts or (None, {})
        self._by_name = {s.filename: i for i, s in enumerate(self.snapshots, 1)}
        if self.marked and self.marked not in self._by_name:
            self.marked = None
        self._render_rows()  # rows that did not change cost one comparison each
        if self.snapshots and not self.snapshots[0].pending and not MainScreen.froze:
            # The app and the first listing live as long as the process and make no reference cycles:
            # moved out of the collector's sight (the standard ``gc.freeze``), its full passes, which
            # run on the event loop, no longer walk every snapshot's metadata again.
            gc.freeze()
            MainScreen.froze = True
        if self.snapshots and self.snapshots[0].pending:
            self.call_after_refresh(self.scan, force=True)
        if self._select_next:
            self.table.select_key(self._select_next)
            self._select_next = None

    def probe_later(self) -> None:
        """Read the server's version once the first listing is on the screen (or failed): connecting, and
        loading the driver, would hold up its first paint."""
        if self.ws.conn is not None and self.server_info is None:
            self.call_after_refresh(self.probe_server)

    def _render_rows(self) -> None:
        where = f"No snapshots in {self.ws.store.directory} yet."
        self.list_pane.show(self.snapshots, self.marked, f"{where} Press n to take the first one." if self.ws.conn
                            else f"{where} Taking one needs a database: see the log.")
        self._update_preview()

    @on(SnapshotTable.Highlighted)
    def _update_preview(self) -> None:
        snap = self._highlighted()
        cached = self.validations.get(snap.filename) if snap else None
        self.query_one(SnapshotPreview).show(
            snap, self.clock(), cached[0] if cached else None, self._by_name.get(snap.filename) if snap else None,
            verdict=self.verdict(snap) if snap else None, empty="No snapshot selected." if self.snapshots else
            "No snapshot here yet." + (" Press n to take one." if self.ws.conn else ""))

    # -- engine events ---------------------------------------------------------------------------------
    def on_engine_log(self, message: EngineLog) -> None:
        self.activity.write_event(message.event, self.clock())

    def on_engine_progress(self, message: EngineProgress) -> None:
        self.activity.progress(message.event.fraction, progress_text(message.event))

    def on_engine_step(self, message: EngineStep) -> None:
        ev = message.event
        glyph = GLYPHS.get(ev.status, ("·", ""))[0]
        level = {"failed": "error", "warning": "warning"}.get(ev.status, "info")
        self.say(f"{glyph} {ev.name}" + (f": {ev.detail}" if ev.detail else ""), level)

    # -- server ----------------------------------------------------------------------------------------
    @on(ServerProbed)
    def _probed(self, message: ServerProbed) -> None:
        self.server_info = message.info
        self._show_header()

    # -- new snapshot ----------------------------------------------------------------------------------
    def action_new_snapshot(self) -> None:
        if not self._can_run(conn=True, idle=True):
            return
        from app.screens.create import CreateSnapshotModal
        modal = CreateSnapshotModal(self.workflow.operation("snapshot"), self.ws.target_label,
                                    self.ws.settings.compress)
        self.app.push_screen(modal, self._create_answered)

    def _create_answered(self, request: CreateRequest | None) -> None:
        if request is None:
            return
        kind = "clone" if request.clone else "schema-only" if request.schema_only else "full"
        start = "copying the database on the server" if request.clone else "starting pg_dump"
        self.activity.start(f"{kind} snapshot “{request.label}”: {start}…")
        self.take_snapshot(request)
        self.refresh_bindings()

    @on(SnapshotTaken)
    def _snapshot_taken(self, message: SnapshotTaken) -> None:
        snap = message.snapshot
        self.notify(f"Saved {snap.filename} ({human_size(snap.size_bytes)}).", title="Snapshot taken",
                    markup=False)
        self._select_next = snap.filename
        self.scan(force=True)

    # -- validate / restore ----------------------------------------------------------------------------
    def action_validate(self) -> None:
        snap = self._chosen()
        if snap:
            self.say(f"Validating {snap.filename} (reading every byte)…")
            self.validate_snapshot(snap)

    @on(Validated)
    def _validated(self, message: Validated) -> None:
        snap, validation, then_restore = message.snapshot, message.validation, message.then_restore
        self.validations[snap.filename] = (validation, message.stamp)
        for name, ok, detail in validation.checks:
            self.say(f"{'✔' if ok else '✘'} {name}: {detail}", "info" if ok else "error")
        self._update_preview()
        if then_restore:  # once the log is painted scrolled to the checks (one refresh to scroll, one to paint),
            # which then stay in sight behind the dialog
            self.call_after_refresh(self.call_after_refresh, self._ask_restore, snap, validation)
        elif validation.ok:
            self.notify(f"{snap.filename} is valid: size, sha256 and structure match.", title="Valid",
                        markup=False)
        else:
            self.notify(f"{snap.filename} is INVALID: {validation.reason}.", title="Invalid snapshot",
                        severity="error", markup=False)

    # -- mark / diff -------------------------------------------------------------------------------
    def action_mark(self) -> None:
        snap = self._chosen()
        if snap:
            self.marked = None if self.marked == snap.filename else snap.filename
            self._render_rows()
            if self.marked:
                self.notify(f"Marked {snap.label}. Highlight another snapshot and press d to compare.",
                            markup=False)

    def action_diff(self) -> None:
        snap = self._chosen()
        if not snap:
            return
        marked = next((s for s in self.snapshots if s.filename == self.marked), None)
        if marked is None or marked.filename == snap.filename:
            self.notify("Mark one snapshot with space, then press d on another one.", severity="warning")
            return
        older, newer = sorted((marked, snap), key=order_key)
        self.say(f"Comparing {older.filename} → {newer.filename} …")
        self.run_diff(older, newer)

    @on(DiffReady)
    def _diff_ready(self, message: DiffReady) -> None:
        from app.screens.diff import DiffScreen
        self.app.push_screen(DiffScreen(message.result))

    # -- psql ------------------------------------------------------------------------------------------
    def action_psql(self) -> None:
        if self._can_run(conn=True, idle=True):
            from app.screens.psql import hand_over_to_psql
            hand_over_to_psql(self)

    # -- list handling -----------------------------------------------------------------------------------
    def action_filter(self) -> None:
        self.list_pane.open_filter()

    def action_show_list(self) -> None:
        self.list_pane.close_filter()
        self.scan(force=True)

    def action_toggle_log(self) -> None:
        self.log_open = self.activity.has_class("-collapsed")
        self._fit_log()

    def on_resize(self) -> None:
        self._fit_log()

    def on_screen_suspend(self) -> None:
        self.query_one(Footer).visible = False  # a dialog on top shows its own keys in its own footer

    def on_screen_resume(self) -> None:
        self.query_one(Footer).visible = True

    def _fit_log(self) -> None:
        log_open = self.log_open if self.log_open is not None else self.size.height >= LOG_OPEN_FROM
        self.activity.set_class(not log_open, "-collapsed")
        self.activity.border_title = "Log" if log_open else "Log · l opens it"

    def action_refresh(self) -> None:
        self.scan(force=True)
        self.say("Re-read the snapshot directory.")

    def action_cancel(self) -> None:
        pane = self.list_pane
        if pane.filter_open and (getattr(self.focused, "id", None) == "filter" or not self._busy()):
            pane.close_filter()
        elif self._busy():
            self.say("Cancelling…", "warning")
            self._cancel_work()

    def action_help(self) -> None:
        from app.screens.help import HelpScreen
        self.app.push_screen(HelpScreen(self.keys(), self.workflow, self.ws.settings.retention))

    def keys(self) -> list[Binding]:
        """The screen's bindings with the keys they have now (the config's keymap applied), for the
        help and the palette."""
        remapped = {ab.binding.id: ab.binding for ab in self.active_bindings.values() if ab.binding.id}
        return [remapped.get(b.id, b) for b in BINDINGS]

    def action_quit(self) -> None:
        if not self._busy():
            self.app.exit(0)
            return
        modal = ConfirmModal("Quit?", "Work is running. Quitting cancels it: a snapshot in progress is "
                             "removed, a restore is rolled back.",
                             yes="Cancel it and quit", no="Keep working")
        self.app.push_screen(modal, lambda yes: yes and self.cancel_and_quit())

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "cancel":  # (asked before the list pane is mounted, too)
            return self._busy() or any(pane.filter_open for pane in self.query(SnapshotList))
        if action in NEEDS_DB and self.ws.conn is None:
            return None  # dimmed: the header and the log say how to configure a database
        return True
