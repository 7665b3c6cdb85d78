"""The restore confirmation: what will be restored, whether it passed validation, and the question.

The snapshot was fully validated (sha256, size, structure) before this screen opened; an invalid one is
shown with its reason and the Yes button stays disabled. "No" has the focus, so a stray Enter cancels.
The workflow file supplies the question, the answers and the pre-rollback option with its default.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import ClassVar

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Checkbox, Label, Static

from app.workflow import Operation
from services.config import ConnInfo
from services.errors import DbsageError
from services.snapshots.store import Snapshot
from services.snapshots.validation import Validation
from widgets.preview import SnapshotPreview


@dataclass(frozen=True)
class RestoreRequest:
    snapshot: Snapshot
    pre_snapshot: bool


class RestoreModal(ModalScreen[RestoreRequest | None]):
    """Metadata, validation verdict, schema-only warning, pre-rollback option, and Yes/No."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel", tooltip="Close without restoring")]
    #: Short terminals get a shorter metadata box, so the question and the answers stay in view.
    VERTICAL_BREAKPOINTS: ClassVar[list[tuple[int, str]]] = [(0, "-short"), (32, "-tall")]

    def __init__(self, operation: Operation, snap: Snapshot, validation: Validation, target: str,
                 now: dt.datetime, index: int | None = None, conn: ConnInfo | None = None,
                 lock_timeout: float | None = None) -> None:
        super().__init__()
        self.operation = operation
        self.snap = snap
        self.validation = validation
        self.target = target
        self.now = now
        self.index = index
        self.conn = conn
        self.lock_timeout = lock_timeout

    def compose(self) -> ComposeResult:
        confirm = self.operation.confirm
        pre = self.operation.field("pre_snapshot")
        with VerticalScroll(id="dialog", classes="dialog -wide", can_focus=False):
            yield Label(f"{self.operation.label}: {self.snap.label}", classes="dialog-title", markup=False)
            yield Static(f"Target database: {self.target}", classes="dialog-target", markup=False)
            yield Static(id="sessions", markup=False)
            yield SnapshotPreview(id="restore-preview")
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
                    return
                for opt in confirm.options:
                    yield Button(opt.label, id=f"answer-{opt.value}",
                                 variant="error" if opt.value == "yes" else "default", compact=True)

    def on_mount(self) -> None:
        self.query_one(SnapshotPreview).show(self.snap, self.now, self.validation, self.index)
        if self.validation.ok and self.conn is not None:
            self.list_sessions(self.conn)
        default = self.operation.confirm.default if self.validation.ok else "no"
        self.query_one(f"#answer-{default}", Button).focus()

    @work(exit_on_error=False, description="Listing the other sessions on the database")
    async def list_sessions(self, conn: ConnInfo) -> None:
        """Who else is connected: the restore waits for their locks. Shown when there are any; the question
        does not wait for this (an unreachable server is reported by the restore itself)."""
        from services.server.locks import sessions_now
        try:
            sessions = await sessions_now(conn)
        except DbsageError:
            return
        if sessions:
            wait = f"up to {self.lock_timeout:g} s" if self.lock_timeout else "as long as they hold them"
            lines = [f"{len(sessions)} other session{'s' if len(sessions) != 1 else ''} connected "
                     f"(the restore waits for their locks, {wait}):", *(f"  {b.text()}" for b in sessions)]
            self.query_one("#sessions", Static).update("\n".join(lines))
            self.query_one("#sessions").display = True

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "answer-yes" and self.validation.ok:
            self.dismiss(RestoreRequest(self.snap, self.query_one("#pre-snapshot", Checkbox).value))
        else:
            self.dismiss(None)

    def action_cancel(self) -> None:
        self.dismiss(None)
