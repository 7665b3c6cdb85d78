"""Everything the main screen runs in a worker, and the one handler that sees every worker end.

Each job calls one engine operation (services/) and returns its result; ``on_worker_state_changed`` hands
the result to the screen's ``_<name>_done`` method, or turns a failure into one notice (the engine's
``one_line()``) with the full detail in the log pane. Async jobs run on the event loop and are cancelled
by cancelling their worker (the engine then kills pg_dump/psql and cleans up); jobs that read whole files
run in threads so the screen stays live.

The engine's operations (and the dialogs they report to) are imported by the job that runs them: start-up
pays only for listing the directory (asyncpg alone is about 25 ms).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from textual import work
from textual.worker import Worker, WorkerCancelled, WorkerFailed, WorkerState

from app.cli import debug_log
from app.screens.messages import bridge
from services.config import lock_timeout_setting
from services.errors import DbsageError
from services.events import Log, Reporter, Step
from services.listing import Signature, directory_signature
from services.locks import DEFAULT_LOCK_TIMEOUT, LockPolicy
from services.store import META_SUFFIX, Snapshot

if TYPE_CHECKING:
    from app.screens.cleanup import CleanupRequest
    from app.screens.create import CreateRequest
    from app.screens.operation import OperationScreen
    from app.screens.restore import RestoreRequest
    from services import retention
    from services.diff import DiffResult
    from services.inspect import ServerInfo
    from services.restore import RestoreResult

#: Notice titles by job name.
TITLES = {"dump": "Snapshot failed", "restore": "Restore failed", "emergency": "Emergency rollback failed",
          "validate": "Validation failed", "probe": "Database not reachable", "scan": "Cannot list snapshots",
          "files": "Could not change the snapshot", "cleanup_plan": "Cannot plan the cleanup",
          "cleanup": "Cleanup failed", "diff": "Cannot compare the snapshots"}


#: The whole directory is re-stat'ed at least this often (seconds), and no more often than one second per
#: ENTRIES_PER_SECOND entries; in between, the directory's own mtime (one stat) catches every file that
#: is added, removed or replaced by rename, which is how the engine and the usual tools write.
FULL_CHECK_EVERY = 2.0
ENTRIES_PER_SECOND = 2000
#: From this many snapshots, the first listing is shown from names and sizes alone (no file opened), then
#: filled in by the listing that reads every file: the list is on the screen while its metadata is read.
NAMES_FIRST = 1000


@dataclass
class Scan:
    """One look at the directory: per-entry (size, mtime) (``listing.directory_signature``), the
    directory's mtime, when, and the new listing when something changed (None when nothing did)."""

    signature: Signature
    dir_mtime: int | None
    at: float
    snapshots: list[Snapshot] | None


def dir_mtime(directory: Path) -> int | None:
    try:
        return os.stat(directory).st_mtime_ns
    except OSError:
        return None


def file_stamp(signature: Signature, filename: str) -> tuple:
    """What identifies one version of a snapshot: its file's and its metadata's (size, mtime)."""
    return signature.get(filename), signature.get(filename + META_SUFFIX)


def current_stamp(directory: Path, filename: str) -> tuple:
    """``file_stamp`` read from the disk now (two stats, not a whole directory)."""
    out = []
    for name in (filename, filename + META_SUFFIX):
        try:
            st = os.stat(directory / name, follow_symlinks=False)
            out.append((st.st_size, st.st_mtime_ns))
        except OSError:
            out.append(None)
    return tuple(out)


class Jobs:
    """Mixed into the main screen, which provides ``ws``, ``report``, ``say``, ``_operation`` and the
    ``_<job>_done`` handlers. Work that changes the database is in the group "work": one at a time."""

    @property
    def lock_timeout(self) -> float:
        """The config file's ``lock_timeout``; a bad value means the default here (the CLI names it)."""
        try:
            return lock_timeout_setting() or DEFAULT_LOCK_TIMEOUT
        except DbsageError:
            return DEFAULT_LOCK_TIMEOUT

    # -- bookkeeping -------------------------------------------------------------------------------------
    def _busy(self) -> bool:
        return any(w.node is self and w.group == "work" and not w.is_finished for w in self.workers)

    def _cancel_work(self) -> list[Worker]:
        return self.workers.cancel_group(self, "work")

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """The one place where work ends: results are shown, failures become one notice."""
        worker = event.worker
        if worker.node is not self or event.state in (WorkerState.PENDING, WorkerState.RUNNING):
            return
        if worker.group == "work":
            self.activity.stop()
            self.refresh_bindings()
        if event.state == WorkerState.SUCCESS:
            done = getattr(self, f"_{worker.name}_done", None)
            if done is not None:
                done(worker.result)
        elif event.state == WorkerState.ERROR:
            self._failed(worker.name, worker.error)
        elif event.state == WorkerState.CANCELLED and worker.group == "work":
            self._cancelled(worker.name)

    def _failed(self, name: str, error: BaseException | None) -> None:
        if isinstance(error, DbsageError):
            text, detail = error.one_line(), error.detail
        else:
            where = debug_log(error) if error is not None else None
            text = (f"Unexpected error: {error.__class__.__name__}: {str(error).rstrip('.')}."
                    + (f" Details in {where}." if where else ""))
            detail = None
        if name == "scan":
            if text == self._last_scan_error:
                return  # the directory is checked every second: say it once
            self._last_scan_error = text
        self.notify(text, title=TITLES.get(name, "Error"), severity="error", timeout=12, markup=False)
        self.say(text, "error")
        if detail:
            self.say(detail.strip(), "error")
        if name == "probe":
            self._show_header(problem="not reachable (see the log)")
        if name in ("restore", "emergency") and self._operation is not None:
            self._operation.post_message(self._operation.Ended(error=text))

    def _cancelled(self, name: str) -> None:
        if name == "dump":
            self.say("Snapshot cancelled: pg_dump was stopped and the partial file removed.", "warning")
            self.notify("Snapshot cancelled: nothing was saved.", severity="warning")
        elif self._operation is not None:
            self.say("Restore cancelled.", "warning")
            self._operation.post_message(self._operation.Ended())

    # -- the jobs ----------------------------------------------------------------------------------------
    def first_scan(self) -> None:
        """List the directory for the first time, whatever its state."""
        self.scan(force=True)

    @work(thread=True, exclusive=True, group="scan", name="scan", exit_on_error=False,
          description="Listing the snapshot directory")
    def scan(self, force: bool = False) -> Scan | None:
        """Re-list the directory when it changed (or when forced); None when there was nothing to look at."""
        directory = self.ws.store.directory
        last = self._last_scan
        mtime = dir_mtime(directory)
        now = time.monotonic()
        if not force and last is not None and mtime == last.dir_mtime and \
                now - last.at < max(FULL_CHECK_EVERY, len(last.signature) / ENTRIES_PER_SECOND):
            return None
        if not force and last is not None and directory_signature(directory) == last.signature:
            return Scan(last.signature, mtime, now, None)
        if last is None:
            names, _ = self.ws.store.list_signed(sign=False, read=False)
            if len(names) >= NAMES_FIRST:
                self.app.call_from_thread(self._scan_done, Scan({}, None, now, names))
        snapshots, signature = self.ws.store.list_signed()
        return Scan(signature, mtime, now, snapshots)

    @work(exclusive=True, group="probe", name="probe", exit_on_error=False,
          description="Connecting to read the server version")
    async def probe_server(self) -> ServerInfo:
        from services import dump
        target = await dump.open_target(self.ws.require_conn())
        try:
            return target.info
        finally:
            await target.close()

    @work(exclusive=True, group="work", name="dump", exit_on_error=False, description="Taking a snapshot")
    async def take_snapshot(self, request: CreateRequest) -> Snapshot:
        from services import clone, dump
        if request.clone:
            return await clone.create_clone(self.ws.require_conn(), self.ws.store, request.label,
                                            purpose=request.purpose, report=self.report)
        return await dump.snapshot(self.ws.require_conn(), self.ws.store, request.label,
                                   schema_only=request.schema_only, purpose=request.purpose,
                                   compress=request.compression, report=self.report,
                                   locks=LockPolicy(timeout=self.lock_timeout))

    @work(thread=True, exclusive=True, group="validate", name="validate", exit_on_error=False,
          description="Validating a snapshot (full sha256 read)")
    def validate_snapshot(self, snap: Snapshot, then_restore: bool = False):
        stamp = current_stamp(self.ws.store.directory, snap.filename)
        return snap, self.ws.store.validate(snap), then_restore, stamp

    @work(exclusive=True, group="work", name="restore", exit_on_error=False,
          description="Restoring a snapshot")
    async def run_restore(self, request: RestoreRequest, report: Reporter, locks: LockPolicy) -> RestoreResult:
        from services import restore
        # Validated in full just before the confirmation (as the CLI does), so not read a second time.
        return await restore.restore(self.ws.require_conn(), self.ws.store, request.snapshot,
                                     pre_snapshot=request.pre_snapshot, report=report, validated=True,
                                     locks=locks)

    @work(exclusive=True, group="work", name="emergency", exit_on_error=False,
          description="Emergency rollback to the newest valid full snapshot")
    async def run_emergency(self, op: OperationScreen) -> RestoreResult:
        from services import restore
        report = bridge(self, op)
        conn = self.ws.require_conn()
        report(Step("choose snapshot", "running", "newest valid full snapshot (checking sha256)"))
        # emergency_rollback() would choose on the event loop; the choice reads every byte of the candidate,
        # so it runs in a thread here and the rollback itself is the same restore() call it makes.
        snap, why = await asyncio.to_thread(restore.emergency_candidate, self.ws.store)
        report(Step("choose snapshot", "ok", snap.filename))
        op.set_subject(f"Restoring {snap.filename} ({why}) into {self.ws.target_label}")
        report(Log(f"EMERGENCY ROLLBACK to {snap.filename}: {why}", level="warning"))
        return await restore.restore(conn, self.ws.store, snap, pre_snapshot=True,
                                     pre_timeout=restore.EMERGENCY_PRE_TIMEOUT, report=report,
                                     action="rollback", validated=True, locks=op.locks)

    @work(thread=True, exclusive=True, group="files", name="files", exit_on_error=False,
          description="Changing a snapshot")
    def change_snapshot(self, snap: Snapshot, what: str) -> str:
        store = self.ws.store
        if what == "delete":
            with store.lock("delete", self.ws.target_label):
                if snap.is_clone and snap.meta is not None:
                    from services import clone
                    asyncio.run(clone.drop_clone(self.ws.require_conn(), snap))  # its database first
                store.delete(snap)
            store.audit("delete", "ok", snapshot=snap.filename)
            return f"Deleted {snap.filename}."
        store.set_protected(snap, what == "protect")
        store.audit(what, "ok", snapshot=snap.filename)
        return f"{snap.filename} is {'protected' if what == 'protect' else 'no longer protected'}."

    @work(thread=True, exclusive=True, group="files", name="cleanup_plan", exit_on_error=False,
          description="Planning a cleanup (retention policy)")
    def plan_cleanup(self, now) -> tuple[retention.Plan, list[Snapshot]]:
        from app.cli_maintenance import policy_from_config
        from services import retention
        snaps = self.ws.store.list()
        return retention.plan(retention.items_from_snapshots(snaps), now, policy_from_config()), snaps

    @work(thread=True, exclusive=True, group="files", name="cleanup", exit_on_error=False,
          description="Deleting the snapshots the cleanup plan chose")
    def run_cleanup(self, plan: retention.Plan, snaps: list[Snapshot], request: CleanupRequest) -> str:
        """Delete what the user confirmed: a subset of the policy's plan, never more."""
        from app.cli_maintenance import clone_dropper
        from services import retention
        chosen = retention.Plan(
            keep=plan.keep, delete=[d for d in plan.delete if d.filename in request.delete],
            invalid=[d for d in plan.invalid if d.filename in request.remove_invalid])
        store = self.ws.store
        with store.lock("cleanup", str(store.directory)):
            deleted = retention.apply(store, chosen, snaps, include_invalid=True, drop_clone=clone_dropper(self.ws))
            store.audit("cleanup", "ok", deleted=deleted, kept=len(snaps) - len(deleted))
        return f"Cleanup: deleted {len(deleted)} snapshot(s), kept {len(snaps) - len(deleted)}."

    @work(thread=True, exclusive=True, group="diff", name="diff", exit_on_error=False,
          description="Comparing two snapshots (reads both files)")
    def run_diff(self, older: Snapshot, newer: Snapshot) -> DiffResult:
        from services import diff  # pglast costs ~50 ms of start-up: loaded on the first diff
        return diff.diff_snapshots(older, newer)

    @work(group="quit", exit_on_error=False, description="Cancelling the running work before quitting")
    async def cancel_and_quit(self) -> None:
        """Quit only once the engine has cleaned up (pg_dump killed, partial file removed)."""
        for worker in self._cancel_work():
            with contextlib.suppress(WorkerCancelled, WorkerFailed):
                await worker.wait()
        self.app.exit(0)
