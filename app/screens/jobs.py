"""What the main screen runs in a worker, and the one handler that sees a worker fail or be cancelled.

Each job calls one engine operation and posts what it found as a typed message (``messages.py``). A
failure becomes one notice with the full detail in the log pane. Async jobs are cancelled by cancelling
their worker (the engine then kills pg_dump/psql and cleans up); jobs that read whole files run in threads
so the screen stays live. The engine's operations are imported by the job that runs them: start-up pays
only for listing the directory.
"""

from __future__ import annotations

import contextlib
import os
import time
from typing import TYPE_CHECKING

from textual import work
from textual.worker import Worker, WorkerCancelled, WorkerFailed, WorkerState

from app.common import failure_text
from app.screens.messages import (
    DiffReady,
    Scanned,
    ServerProbed,
    SnapshotTaken,
    Validated,
)
from services.snapshots.listing import Signature, directory_signature
from services.snapshots.store import META_SUFFIX, Snapshot

if TYPE_CHECKING:
    from app.screens.create import CreateRequest

#: Notice titles by job name.
TITLES = {"dump": "Snapshot failed", "validate": "Validation failed", "probe": "Database not reachable",
          "scan": "Cannot list snapshots", "files": "Could not change the snapshot",
          "cleanup_plan": "Cannot plan the cleanup", "diff": "Cannot compare the snapshots"}


#: The whole directory is re-stat'ed at least this often (seconds), and no more often than one second per
#: ENTRIES_PER_SECOND entries; in between, the directory's own mtime (one stat) catches every file that
#: is added, removed or replaced by rename, which is how the engine and the usual tools write.
FULL_CHECK_EVERY = 2.0
ENTRIES_PER_SECOND = 2000
#: From this many snapshots, the first listing is shown from names and sizes alone (no file opened), then
#: filled in by the listing that reads every file: the list is on the screen while its metadata is read.
NAMES_FIRST = 1000


def file_stamp(signature: Signature, filename: str) -> tuple:
    """What identifies one version of a snapshot: its file's and its metadata's (size, mtime)."""
    return signature.get(filename), signature.get(filename + META_SUFFIX)


class Jobs:
    """Mixed into the main screen, which provides ``ws``, ``report``, ``say`` and handles the messages the
    jobs post. Work that changes the database is in the group "work": one at a time, app-wide."""

    # -- bookkeeping -------------------------------------------------------------------------------------
    def _busy(self) -> bool:
        return any(w.group == "work" and not w.is_finished for w in self.app.workers)

    def _cancel_work(self) -> list[Worker]:
        workers = [w for w in self.app.workers if w.group == "work" and not w.is_finished]
        for worker in workers:
            worker.cancel()
        return workers

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """The one place where this screen's work fails or is cancelled: one notice, the detail logged."""
        worker = event.worker
        if worker.node is not self or event.state in (WorkerState.PENDING, WorkerState.RUNNING):
            return
        if worker.group == "work":
            self.activity.stop()
            self.refresh_bindings()
        if event.state == WorkerState.CANCELLED and worker.name == "dump":
            self.say("Snapshot cancelled: pg_dump was stopped and the partial file removed.", "warning")
            self.notify("Snapshot cancelled: nothing was saved.", severity="warning")
        if event.state != WorkerState.ERROR:
            return
        text, detail = failure_text(worker.error)
        if worker.name == "scan":
            if self._last_scan is None and self._last_scan_error is None:
                self.probe_later()
            if text == self._last_scan_error:
                return  # the directory is checked every second: say it once
            self._last_scan_error = text
        self.notify(text, title=TITLES.get(worker.name, "Error"), severity="error", timeout=12, markup=False)
        self.say(text + (f"\n{detail.strip()}" if detail else ""), "error")
        if worker.name == "probe":
            self._show_header(problem="not reachable (see the log)")

    # -- the jobs ----------------------------------------------------------------------------------------
    @work(thread=True, exclusive=True, group="scan", name="scan", exit_on_error=False,
          description="Listing the snapshot directory")
    def scan(self, force: bool = False) -> None:
        """Re-list the directory when it changed (or when forced)."""
        directory = self.ws.store.directory
        last = self._last_scan
        mtime = None
        with contextlib.suppress(OSError):
            mtime = os.stat(directory).st_mtime_ns
        now = time.monotonic()
        if not force and last is not None and mtime == last.dir_mtime and \
                now - last.at < max(FULL_CHECK_EVERY, len(last.signature) / ENTRIES_PER_SECOND):
            return
        if not force and last is not None and directory_signature(directory) == last.signature:
            self.post_message(Scanned(last.signature, mtime, now, None))
            return
        if last is None and len(names := self.ws.store.list_names()) >= NAMES_FIRST:
            # Shown first; the screen asks for the listing that reads once these are painted, so that the
            # two do not take turns on one interpreter.
            self.post_message(Scanned({}, None, now, names))
            return
        snapshots, signature = self.ws.store.list_signed()
        self.post_message(Scanned(signature, mtime, now, snapshots, self.plan_verdicts(snapshots)))

    @work(exclusive=True, group="probe", name="probe", exit_on_error=False,
          description="Connecting to read the server version")
    async def probe_server(self) -> None:
        from services.server import dump
        target = await dump.open_target(self.ws.require_conn())
        await target.close()
        self.post_message(ServerProbed(target.info))

    @work(exclusive=True, group="work", name="dump", exit_on_error=False, description="Taking a snapshot")
    async def take_snapshot(self, request: CreateRequest) -> None:
        from services.server import clone, dump
        from services.server.locks import LockPolicy
        if request.clone:
            snap = await clone.create_clone(self.ws.require_conn(), self.ws.store, request.label,
                                            purpose=request.purpose, report=self.report)
        else:
            snap = await dump.snapshot(self.ws.require_conn(), self.ws.store, request.label,
                                       schema_only=request.schema_only, purpose=request.purpose,
                                       compress=request.compression, report=self.report,
                                       locks=LockPolicy(timeout=self.ws.settings.lock_timeout))
        self.post_message(SnapshotTaken(snap))

    @work(thread=True, exclusive=True, group="validate", name="validate", exit_on_error=False,
          description="Validating a snapshot (full sha256 read)")
    def validate_snapshot(self, snap: Snapshot, then_restore: bool = False) -> None:
        # The version the last look at the directory saw: one changed since, or while it is read, differs
        # at the next look, which drops this result.
        stamp = file_stamp(self._last_scan.signature, snap.filename)
        self.post_message(Validated(snap, self.ws.store.validate(snap), stamp, then_restore))

    @work(thread=True, exclusive=True, group="diff", name="diff", exit_on_error=False,
          description="Comparing two snapshots (reads both files)")
    def run_diff(self, older: Snapshot, newer: Snapshot) -> None:
        from services.diff import compare  # pglast is loaded on the first diff, not at start-up
        self.post_message(DiffReady(compare.diff_snapshots(older, newer)))

    @work(group="quit", exit_on_error=False, description="Cancelling the running work before quitting")
    async def cancel_and_quit(self) -> None:
        """Quit only once the engine has cleaned up (pg_dump killed, partial file removed)."""
        for worker in self._cancel_work():
            with contextlib.suppress(WorkerCancelled, WorkerFailed):
                await worker.wait()
        self.app.exit(0)
