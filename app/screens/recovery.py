"""Restoring from the main screen: ``r`` (validate, ask, then restore) and ``E`` (the emergency rollback).

Both run in the operation screen, which owns their worker and shows how they ended; this part opens it
and re-reads the list when it closes. Mixed into the main screen, which provides ``ws``, ``say``,
``activity``, ``_chosen``, ``_can_run`` and the validation job.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from services.snapshots.store import AUDIT_NAME, Snapshot
from services.snapshots.validation import Validation

if TYPE_CHECKING:
    from app.screens.restore import RestoreRequest
    from services.server.restore import RestoreResult


class Recovery:
    def action_restore(self) -> None:
        snap = self._chosen(conn=True, idle=True)
        if snap:
            self.say(f"Validating {snap.filename} before restoring…")
            self.validate_snapshot(snap, then_restore=True)

    def _ask_restore(self, snap: Snapshot, validation: Validation) -> None:
        """The confirmation, once the full check ran (an invalid snapshot is shown, and refused)."""
        if self.app.screen is not self:
            self.say("The restore dialog was not opened: another dialog is open. Press r again.", "warning")
            return
        from app.screens.restore import RestoreModal
        modal = RestoreModal(self.workflow.operation("restore"), snap, validation, self.ws, self.clock,
                             self._by_name.get(snap.filename))
        self.app.push_screen(modal, lambda request: self._restore_answered(request, validation))

    def _restore_answered(self, request: RestoreRequest | None, validation: Validation) -> None:
        if request is None:
            self.say("Restore cancelled: nothing was changed." if validation.ok else
                     f"Not restored: the snapshot is invalid ({validation.reason}).")
            return
        if not self._can_run(conn=True, idle=True):
            return
        snap = request.snapshot
        self.activity.start(f"restoring {snap.filename}…")
        self._open_operation(f"Restore {snap.label}", f"{snap.filename} → {self.ws.target_label}", request)

    def action_emergency(self) -> None:
        if not self._can_run(conn=True, idle=True):
            return
        self.activity.start("emergency rollback…")
        self._open_operation("EMERGENCY ROLLBACK", "Choosing the snapshot to restore…", None)

    def _open_operation(self, title: str, subject: str, request: RestoreRequest | None) -> None:
        """The operation screen runs the restore (the emergency rollback without ``request``) and shows how it
        ended; the list is re-read when it closes."""
        from app.screens.operation import OperationScreen
        done = {"validate": ("ok", "sha256, size and structure match")} if request else None
        op = OperationScreen(title, subject, emergency=request is None, ws=self.ws, request=request, done=done,
                             audit_path=str(self.ws.store.directory / AUDIT_NAME), also_to=self)
        self.app.push_screen(op, self._operation_closed)

    def _operation_closed(self, _result: RestoreResult | None) -> None:
        self.activity.stop()
        self.refresh_bindings()
        self.scan(force=True)
