"""The snapshot directory's upkeep from the main screen: protect (``p``), delete (``delete``) and the
retention cleanup (``c``), each a key, a job in a thread worker and the message its job posts.

Mixed into the main screen, which provides ``ws``, ``say``, ``clock``, ``_chosen``, ``scan`` and the
handler that sees a job fail (jobs.py). The jobs share the group "files": one change at a time. Messages
are handled by name (``on_files_changed``): ``@on`` works only in a message pump, which a mixin is not.
"""

from __future__ import annotations

import datetime as dt

from textual import work

from app.screens.confirm import ConfirmModal
from app.screens.messages import CleanupPlanned, FilesChanged
from services.snapshots import maintenance, retention
from services.snapshots.store import Snapshot


def _hour(now: dt.datetime) -> dt.datetime:
    return now.replace(minute=0, second=0, microsecond=0)


class Housekeeping:
    """``p``, ``delete`` and ``c``, and what ``c`` would do with the highlighted snapshot."""

    #: The hour the shown listing's retention verdicts were planned for, and the verdicts by file name.
    _verdicts: tuple[dt.datetime | None, dict[str, str]] = (None, {})

    def plan_verdicts(self, snapshots: list[Snapshot]) -> tuple[dt.datetime, dict[str, str]]:
        """What a cleanup this hour would do with each snapshot, and why (``retention``'s reasons). The
        listing's worker plans them with the listing: for a large directory, too long for the event loop."""
        now = self.clock()
        plan = retention.plan(retention.items_from_snapshots(snapshots), now, self.ws.settings.retention)
        return _hour(now), plan.verdicts()

    def verdict(self, snap: Snapshot) -> str | None:
        """``plan_verdicts`` of ``snap``; None until the listing has read the metadata a plan is made from."""
        if snap.pending:
            return None
        if self._verdicts[0] != _hour(self.clock()):  # ages moved on: planned again, once an hour
            self._verdicts = self.plan_verdicts(self.snapshots)
        return self._verdicts[1].get(snap.filename)

    def action_protect(self) -> None:
        snap = self._chosen()
        if snap:
            self.change_snapshot(snap, "unprotect" if snap.protected else "protect")

    def action_delete(self) -> None:
        snap = self._chosen(idle=True)
        if not snap:
            return
        warn = " It is PROTECTED." if snap.protected else ""
        modal = ConfirmModal("Delete snapshot", f"Delete {snap.filename} and its metadata?{warn} "
                             "This cannot be undone.", yes="Delete", no="Keep it")
        self.app.push_screen(modal, lambda yes: yes and self.change_snapshot(snap, "delete"))

    @work(thread=True, exclusive=True, group="files", name="files", exit_on_error=False,
          description="Changing a snapshot")
    def change_snapshot(self, snap: Snapshot, what: str) -> None:
        if what == "delete":
            maintenance.delete(self.ws.store, snap, self.ws.conn, self.ws.target_label)
            self.post_message(FilesChanged(f"Deleted {snap.filename}."))
        else:
            self.post_message(FilesChanged(maintenance.set_protected(self.ws.store, snap, what == "protect")))

    def on_files_changed(self, message: FilesChanged) -> None:
        self.say(message.text)
        self.notify(message.text, markup=False)
        self.scan(force=True)

    # -- cleanup -------------------------------------------------------------------------------------
    def action_cleanup(self) -> None:
        self.say("Planning a cleanup with the retention policy …")
        self.plan_cleanup(self.clock())

    @work(thread=True, exclusive=True, group="files", name="cleanup_plan", exit_on_error=False,
          description="Planning a cleanup (retention policy)")
    def plan_cleanup(self, now: dt.datetime) -> None:
        self.post_message(CleanupPlanned(maintenance.plan_cleanup(self.ws.store, now, self.ws.settings.retention)))

    def on_cleanup_planned(self, message: CleanupPlanned) -> None:
        """The plan is shown even when it deletes nothing: what the policy keeps, and why, is the point."""
        from app.screens.cleanup import CleanupModal
        self.app.push_screen(CleanupModal(message.planned, self.ws), self._cleaned_up)

    def _cleaned_up(self, result: maintenance.CleanupResult | None) -> None:
        if result is not None:
            self.post_message(FilesChanged(f"Cleanup: {result.text()}"))
