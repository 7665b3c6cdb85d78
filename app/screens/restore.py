"""The restore confirmation: what will be restored, whether it passed validation, what the restore will
change in the database as it is now, and the question (its words and default from the workflow file).

The snapshot was fully validated before this screen opened; an invalid one is shown with its reason and
no Yes button. "No" has the focus, so a stray Enter cancels. What the restore changes is worked out by a
worker of the dialog's own: the question can be answered before it arrives.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Checkbox, Footer, Label, Static

from app.common import failure_text
from app.workflow import Operation
from services.config import ConnInfo
from services.display import how_many
from services.errors import DbsageError
from services.server.locks import sessions_now
from services.snapshots.store import Snapshot
from services.snapshots.validation import Validation
from services.workspace import Workspace
from widgets.preview import SnapshotPreview


@dataclass(frozen=True)
class RestoreRequest:
    snapshot: Snapshot
    pre_snapshot: bool


class RestoreModal(ModalScreen[RestoreRequest | None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q", "dismiss", "Cancel", tooltip="Close without restoring")]
    #: Shorter terminals get shorter metadata and preview boxes (styles/modals.tcss), so that the whole
    #: dialog fits and the question and the answers stay in view.
    VERTICAL_BREAKPOINTS: ClassVar[list[tuple[int, str]]] = [(0, "-short"), (32, "-tall"), (44, "-roomy")]
    #: Items per section of the preview (more are counted, not listed).
    COST_ITEMS = 4

    def __init__(self, operation: Operation, snap: Snapshot, validation: Validation, ws: Workspace,
                 clock: Callable[[], dt.datetime], index: int | None) -> None:
        super().__init__()
        self.operation = operation
        self.snap = snap
        self.validation = validation
        self.ws = ws
        self.clock = clock  # the snapshot's age ticks while the question waits
        self.index = index

    def compose(self) -> ComposeResult:
        confirm = self.operation.confirm
        pre = self.operation.field("pre_snapshot")
        with VerticalScroll(id="dialog", classes="dialog -wide", can_focus=False):
            yield Label(f"{self.operation.label}: {self.snap.label}", classes="dialog-title", markup=False)
            yield Static(f"Target database: {self.ws.target_label}", classes="dialog-target", markup=False)
            yield Static(id="sessions", markup=False)
            yield SnapshotPreview(id="restore-preview")
            with VerticalScroll(id="cost", can_focus=False):
                yield Static(id="cost-body", markup=False)
            if not self.validation.ok:
                yield Static(f"✗ This snapshot cannot be restored: {self.validation.reason}. "
                             "Choose another one.", classes="danger", markup=False)
            elif self.snap.type == "schema-only":
                yield Static("⚠ SCHEMA-ONLY SNAPSHOT: every row in its tables will be lost. The tables come "
                             "back empty. Use a full snapshot to get data back.",
                             classes="danger", markup=False)
            if self.validation.ok:
                yield Checkbox(pre.label, value=bool(pre.default), id="pre-snapshot", compact=True)
                yield Static(confirm.question, classes="question", markup=False)
            with Horizontal(classes="buttons"):
                if not self.validation.ok:
                    yield Button("Close", id="answer-no", compact=True)
                else:
                    for opt in confirm.options:
                        yield Button(opt.label, id=f"answer-{opt.value}",
                                     variant="error" if opt.value == "yes" else "default", compact=True)
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self._show_snapshot()
        self.set_interval(1.0, self._show_snapshot)
        cost = self.query_one("#cost")
        cost.display = self.validation.ok and not self.snap.is_clone
        if cost.display:
            self.query_one("#cost-body", Static).update("Comparing the snapshot with the database now…")
        if self.validation.ok:
            self.inspect_database(self.ws.require_conn(), cost.display)
        default = self.operation.confirm.default if self.validation.ok else "no"
        self.query_one(f"#answer-{default}", Button).focus()

    def _show_snapshot(self) -> None:
        self.query_one(SnapshotPreview).show(self.snap, self.clock(), self.validation, self.index)

    @work(exclusive=True, exit_on_error=False, description="Looking at the database the restore replaces")
    async def inspect_database(self, conn: ConnInfo, cost: bool) -> None:
        """Who else is connected (the restore waits for their locks), then (``cost``) what the restore will
        remove, bring back, change and undo: in this order, so that the preview's own connections are not
        listed as others. An unreachable server is reported by the restore itself."""
        from services.server.preview import preview_restore, summary_lines
        body = self.query_one("#cost-body", Static)
        try:
            sessions = await sessions_now(conn)
        except DbsageError as exc:
            body.update(f"What the restore changes is not known: {exc.message}")
            return
        if sessions:
            box = self.query_one("#sessions", Static)
            box.update("\n".join([f"{how_many(len(sessions), 'other session')} connected "
                                  f"(the restore waits for their locks, up to {self.ws.settings.lock_timeout:g} s):",
                                  *(f"  {b.text()}" for b in sessions)]))
            box.display = True
        if not cost:
            return
        try:
            result = await preview_restore(conn, self.ws.store, self.snap)
        except Exception as exc:  # noqa: BLE001 - the question stands without the preview; say why it is missing
            body.update(f"What the restore changes is not known: {failure_text(exc)[0]}")
            return
        body.update("\n".join(summary_lines(result, self.COST_ITEMS)))

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "answer-yes":  # (an invalid snapshot's dialog has no such button)
            self.dismiss(RestoreRequest(self.snap, self.query_one("#pre-snapshot", Checkbox).value))
        else:
            self.dismiss(None)
