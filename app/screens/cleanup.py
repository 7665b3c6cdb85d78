"""The cleanup dialog: the retention plan as a table, every row with its reason, rows toggled one by one.

The screen only lets the user keep more than the policy would delete, never delete what the policy
protects. Invalid snapshots and leftovers (stale partial files, metadata without a file) are listed
unchecked. Ctrl+D or the button deletes with the same operation as the CLI's ``cleanup``. A reason is cut
to the room left in its row; the line under the table holds the highlighted row's file name and whole
reason, so that nothing is lost at 80 columns.
"""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, DataTable, Footer, Label, Static
from textual.worker import Worker, WorkerState

from app.common import cut, failure_text
from services.snapshots.maintenance import CleanupPlan, CleanupResult, cleanup
from services.workspace import Workspace

#: The dialog's widest (styles/maintenance.tcss) and the longest label shown whole in the table.
MAX_WIDTH, MAX_LABEL = 140, 24


class CleanupModal(ModalScreen[CleanupResult | None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q", "dismiss", "Cancel", tooltip="Close without deleting anything"),
        Binding("space", "toggle", "Toggle", tooltip="Keep or delete the highlighted row"),
        Binding("ctrl+d", "confirm", "Delete", tooltip="Delete the rows marked for deletion"),
    ]

    def __init__(self, planned: CleanupPlan, ws: Workspace) -> None:
        super().__init__()
        self.planned = planned
        self.plan = planned.plan
        self.ws = ws
        #: Why each row is listed; leftovers get a reason of their own.
        self.reasons = {d.filename: d.reason for d in self.plan.delete + self.plan.invalid}
        self.reasons.update({p.name: "invalid: leftover, not a snapshot" for p in planned.leftovers})
        # Rows the user may toggle: the policy's deletions (checked), invalid snapshots and leftovers (not).
        self.chosen: dict[str, bool] = {name: name in {d.filename for d in self.plan.delete} for name in self.reasons}
        self.reasons.update({d.filename: d.reason for d in self.plan.keep})

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="dialog -wide"):
            yield Label("Cleanup: retention plan", classes="dialog-title")
            yield Static(f"Directory: {self.ws.store.directory}", classes="dialog-target", markup=False)
            yield DataTable(id="plan", cursor_type="row", zebra_stripes=True)
            yield Static("", id="plan-detail", markup=False)
            yield Static("", id="plan-summary")
            with Horizontal(classes="buttons"):
                yield Button("Cancel", id="cancel", compact=True)
                yield Button("Delete", id="confirm", variant="error", compact=True)
        yield Footer(compact=True)

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        snaps = {s.filename: s for s in self.planned.snapshots}
        self.labels = {name: (f"{snaps[name].timestamp:%Y-%m-%d %H:%M}", snaps[name].label) if name in snaps
                       else ("", name) for name in self.reasons}
        label_width = min(max((len(label) for _, label in self.labels.values()), default=8), MAX_LABEL)
        # The dialog's inner width (borders, padding, scrollbar) less the other columns and their padding.
        room = min(self.app.size.width, MAX_WIDTH) - 6 - (6 + 16 + label_width + 4 * 2)
        self.widths = {"label": label_width, "reason": max(room, 16)}
        table.add_column("", key="action", width=6)
        table.add_column("Taken (UTC)", key="taken", width=16)
        table.add_column("Snapshot", key="label", width=label_width)
        table.add_column("Why", key="reason", width=self.widths["reason"])
        for name in self.reasons:
            table.add_row(*self._cells(name), key=name)
        self._refresh_summary()
        (self.query_one("#cancel", Button) if not self.chosen else table).focus()

    def _reason(self, filename: str) -> str:
        reason = self.reasons[filename]
        if self.chosen.get(filename) is False and not reason.startswith("invalid"):
            return "kept by you: " + reason
        return reason

    def _cells(self, filename: str) -> tuple:
        """keep (green: the policy's), DELETE, or keep (yellow: deletable, kept by the user)."""
        chosen = self.chosen.get(filename)
        action = Text("DELETE", style="bold red") if chosen else \
            Text("keep", style="green" if chosen is None else "yellow")
        taken, label = self.labels[filename]
        return action, taken, cut(label, self.widths["label"]), cut(self._reason(filename), self.widths["reason"])

    @on(DataTable.RowHighlighted)
    def _row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        name = event.row_key.value
        self.query_one("#plan-detail", Static).update(f"{name}: {self._reason(name)}")

    def _refresh_summary(self) -> None:
        n = sum(self.chosen.values())
        kept = len(self.plan.keep) + len(self.chosen) - n
        self.query_one("#plan-summary", Static).update(
            f"{n} to delete, {kept} to keep." if n or self.chosen else
            f"Nothing to delete: the policy keeps all {kept} snapshot(s).")
        button = self.query_one("#confirm", Button)
        button.label = f"Delete {n}" if n else "Nothing to delete"
        button.disabled = n == 0

    def action_toggle(self) -> None:
        table = self.query_one(DataTable)
        if table.row_count == 0:
            return
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        if key not in self.chosen:
            self.notify("The policy keeps this one; only rows it would delete, or invalid ones, can be toggled.",
                        severity="warning")
            return
        self.chosen[key] = not self.chosen[key]
        action, _, _, why = self._cells(key)
        table.update_cell(key, "action", action)
        table.update_cell(key, "reason", why)
        self.query_one("#plan-detail", Static).update(f"{key}: {self._reason(key)}")
        self._refresh_summary()

    def action_confirm(self) -> None:
        if any(self.chosen.values()) and not self.workers:
            self.query_one("#confirm", Button).disabled = True
            self.delete_chosen([name for name, on in self.chosen.items() if on])

    @work(thread=True, exclusive=True, group="files", exit_on_error=False,
          description="Deleting the snapshots the cleanup plan chose")
    def delete_chosen(self, names: list[str]) -> CleanupResult:
        """What the user confirmed: a subset of the policy's plan, never more."""
        return cleanup(self.ws.store, self.planned, self.ws.conn, delete=names, remove=names)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state == WorkerState.SUCCESS:
            self.dismiss(event.worker.result)
        elif event.state == WorkerState.ERROR:
            text, _ = failure_text(event.worker.error)
            self.notify(text, title="Cleanup failed", severity="error", timeout=12, markup=False)
            self.dismiss(None)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "confirm":
            self.action_confirm()
        else:
            self.dismiss(None)
