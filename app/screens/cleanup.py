"""The cleanup dialog: the retention plan as a table, every row with its reason, rows toggled one by one.

The plan comes from ``services.retention`` (the single source of the policy); this screen only lets the
user keep more than the policy would delete, never delete what the policy protects. Enter or the button
confirms; the caller deletes in a worker and reports the outcome.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, DataTable, Label, Static

from services.retention import Plan


@dataclass(frozen=True)
class CleanupRequest:
    delete: list[str]  # file names the user confirmed for deletion
    remove_invalid: list[str]  # invalid snapshots the user chose to remove too


class CleanupModal(ModalScreen[CleanupRequest | None]):
    """The plan: keep / delete / invalid rows with reasons. Space toggles a deletable row."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel", tooltip="Close without deleting anything"),
        Binding("space", "toggle", "Toggle", tooltip="Keep or delete the highlighted row"),
        Binding("ctrl+d", "confirm", "Delete", tooltip="Delete the rows marked for deletion"),
    ]

    def __init__(self, plan: Plan, directory: str) -> None:
        super().__init__()
        self.plan = plan
        self.directory = directory
        # Rows the user may toggle: the policy's deletions (checked) and invalid snapshots (unchecked).
        self.chosen: dict[str, bool] = {d.filename: True for d in plan.delete}
        self.chosen.update({d.filename: False for d in plan.invalid})

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="dialog -wide"):
            yield Label("Cleanup: retention plan", classes="dialog-title")
            yield Static(f"Directory: {self.directory}   ·   space: toggle a row   ·   ctrl+d: delete",
                         classes="dialog-target", markup=False)
            yield DataTable(id="plan", cursor_type="row", zebra_stripes=True)
            yield Static("", id="plan-summary")
            with Horizontal(classes="buttons"):
                yield Button("Cancel", id="cancel", compact=True)
                yield Button("Delete", id="confirm", variant="error", compact=True)

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_column("", key="action", width=8)
        table.add_column("Snapshot", key="file")
        table.add_column("Why", key="reason")
        for d in self.plan.delete + self.plan.invalid + self.plan.keep:
            table.add_row(*self._cells(d.filename, d.reason), key=d.filename)
        self._refresh_summary()
        (self.query_one("#cancel", Button) if not self.chosen else table).focus()

    def _cells(self, filename: str, reason: str) -> tuple:
        if filename not in self.chosen:
            action = Text("keep", style="green")
        elif self.chosen[filename]:
            action = Text("DELETE", style="bold red")
        else:
            action = Text("keep", style="yellow")
            reason = "kept by you: " + reason if not reason.startswith("invalid") else reason
        return action, filename, reason

    def _refresh_summary(self) -> None:
        n = sum(self.chosen.values())
        kept = len(self.plan.keep) + len(self.chosen) - n
        self.query_one("#plan-summary", Static).update(f"{n} to delete, {kept} to keep.")
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
        reason = next(d.reason for d in self.plan.delete + self.plan.invalid if d.filename == key)
        action, _, why = self._cells(key, reason)
        table.update_cell(key, "action", action)
        table.update_cell(key, "reason", why)
        self._refresh_summary()

    def action_confirm(self) -> None:
        if not any(self.chosen.values()):
            return
        invalid = {d.filename for d in self.plan.invalid}
        self.dismiss(CleanupRequest(
            delete=[f for f, on in self.chosen.items() if on and f not in invalid],
            remove_invalid=[f for f, on in self.chosen.items() if on and f in invalid]))

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "confirm":
            self.action_confirm()
        else:
            self.dismiss(None)

    def action_cancel(self) -> None:
        self.dismiss(None)
