"""Restoring from the main screen: ``r`` (validate, ask, then restore) and ``E`` (the emergency rollback).

Both run in the operation screen, which owns their worker and shows how they ended; this part of the main
screen opens it with the engine call to make and re-reads the list when it closes. Mixed into the main
screen, which provides ``ws``, ``say``, ``activity``, ``_chosen``, ``_can_run`` and the validation job.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from services.snapshots.store import AUDIT_NAME, Snapshot
from services.snapshots.validation import Validation

if TYPE_CHECKING:
    from app.screens.operation import OperationScreen
    from app.screens.restore import RestoreRequest
    from services.server.preview import Preview
    from services.server.restore import RestoreResult


class Recovery:
    """``r`` and ``E``: the confirmation dialog, then the operation screen."""

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
        modal = RestoreModal(self.workflow.operation("restore"), snap, validation, self.ws, self.clock(),
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
        self._open_operation(f"Restore {snap.label}", f"{snap.filename} → {self.ws.target_label}",
                             lambda op: self.restore_job(request, op), emergency=False,
                             done={"validate": ("ok", "sha256, size and structure match")})

    def action_emergency(self) -> None:
        if not self._can_run(conn=True, idle=True):
            return
        self.activity.start("emergency rollback…")
        self._open_operation("EMERGENCY ROLLBACK", "Choosing the snapshot to restore…", self.emergency_job,
                             emergency=True, aftermath=self.undone_job)

    def _open_operation(self, title: str, subject: str, run: Callable[[OperationScreen], Awaitable[RestoreResult]],
                        emergency: bool, done: dict[str, tuple[str, str]] | None = None,
                        aftermath: Callable[[RestoreResult], Awaitable[Preview]] | None = None) -> None:
        """The operation screen runs the work and shows how it ended; the list is re-read when it closes."""
        from app.screens.operation import OperationScreen
        from services.server.locks import LockPolicy
        op = OperationScreen(title, subject, emergency=emergency, run=run, also_to=self,
                             audit_path=str(self.ws.store.directory / AUDIT_NAME), done=done,
                             locks=LockPolicy(timeout=self.ws.settings.lock_timeout), aftermath=aftermath,
                             command=self.ws.conn.command if self.ws.conn else "dbsage-tui")
        self.app.push_screen(op, self._operation_closed)

    def _operation_closed(self, _result: RestoreResult | None) -> None:
        self.activity.stop()
        self.refresh_bindings()
        self.scan(force=True)

    async def restore_job(self, request: RestoreRequest, op: OperationScreen) -> RestoreResult:
        """A restore, run by the operation screen. Validated in full just before the confirmation (as the
        CLI does), so not read a second time."""
        from services.server import restore
        return await restore.restore(self.ws.require_conn(), self.ws.store, request.snapshot,
                                     pre_snapshot=request.pre_snapshot, report=op.report, validated=True,
                                     locks=op.locks)

    async def emergency_job(self, op: OperationScreen) -> RestoreResult:
        """The emergency rollback, run by the operation screen: the CLI's ``rollback --emergency``."""
        from services.server import restore

        def chosen(snap: Snapshot, why: str) -> None:
            op.set_subject(f"Restoring {snap.filename} ({why}) into {self.ws.target_label}")
        return await restore.emergency_rollback(self.ws.require_conn(), self.ws.store, report=op.report,
                                                locks=op.locks, chosen=chosen)

    async def undone_job(self, result: RestoreResult) -> Preview:
        """After an emergency rollback, run by the operation screen: its pre-rollback snapshot compared
        with the database now (the comparison ``restore --dry-run`` makes), i.e. what the rollback undid."""
        from services.server.preview import preview_restore
        return await preview_restore(self.ws.require_conn(), self.ws.store, result.pre_snapshot)
