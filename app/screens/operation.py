"""A restore or an emergency rollback as it happens: steps, progress, output, then the outcome.

The screen runs the work in its own worker and shows how it ended: the engine's events and the worker's
end arrive through the same message queue, so the outcome is never shown before the last step. Escape
(or q) while work runs asks once whether to stop it: the restore runs in one transaction, so the database
stays as it was unless the restore step had already committed. After an emergency rollback, a second
worker tells what the rollback undid (``show_undone``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, VerticalScroll
from textual.content import Content
from textual.message_pump import MessagePump
from textual.screen import ModalScreen
from textual.widgets import Button, Footer, Label, Static
from textual.worker import Worker, WorkerState

from app.common import failure_text, progress_text
from app.screens.confirm import ConfirmModal
from app.screens.messages import EngineBlocked, EngineLog, EngineProgress, EngineStep, bridge
from services.events import Blocked, Log
from services.server import migrations, restore
from services.server.locks import LockPolicy
from services.server.restore import RestoreResult
from services.snapshots.store import Snapshot
from services.workspace import Workspace
from widgets.activity_log import ActivityLog
from widgets.steps import StepList

if TYPE_CHECKING:
    from app.screens.restore import RestoreRequest
    from services.server.preview import Preview, TableRows

#: The steps the engine reports for a restore, in order.
RESTORE_STEPS = ["validate", "pre-rollback snapshot", "restore", "analyze", "smoke test"]


class OperationScreen(ModalScreen[RestoreResult | None]):
    """Live view of one restore (``request``) or emergency rollback (``emergency=True``) on ``ws``. Without
    ``ws`` the screen only shows what it is told (pictures of the screen in tests)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q", "cancel_or_close", "Stop / close",
                tooltip="Stop the running restore (asks first; the database stays as it was), or close"),
        Binding("k", "terminate_blockers", "Terminate blockers",
                tooltip="Terminate exactly the sessions whose locks the restore waits for (audited)")]

    def __init__(self, title: str, subject: str, *, emergency: bool, audit_path: str, ws: Workspace | None = None,
                 request: RestoreRequest | None = None, done: dict[str, tuple[str, str]] | None = None,
                 also_to: MessagePump | None = None) -> None:
        super().__init__(classes="-emergency" if emergency else "")
        self.ws = ws
        self.request = request
        #: How the user runs dbsage-tui on this database (``--demo`` included).
        self.command = ws.conn.command if ws else "dbsage-tui"
        self.done = done or {}  # steps already done before the work started (validated before asking)
        self.title_text = title
        self.subject = subject
        self.emergency = emergency
        self.job: Worker | None = None  # the restore's worker (the other one tells what a rollback undid)
        #: The engine's events go to this screen and to ``also_to`` (the main screen's log).
        self.report = bridge(self, *([also_to] if also_to else []))
        self.audit_path = audit_path
        self.result: RestoreResult | None = None
        self.running = True
        #: The restore's lock policy: ``k`` switches on the termination of the sessions in the way.
        self.locks = LockPolicy(timeout=ws.settings.lock_timeout) if ws else LockPolicy()
        self.blocked: Blocked | None = None

    def compose(self) -> ComposeResult:
        steps = ["choose snapshot", *RESTORE_STEPS[1:]] if self.emergency else RESTORE_STEPS
        with VerticalScroll(id="dialog", classes="dialog -wide", can_focus=False):
            yield Label(self.title_text, classes="dialog-title", markup=False)
            yield Static(self.subject, id="subject", markup=False)
            yield Static("", id="blocked", markup=False)
            yield StepList(steps, initial=self.done, id="steps")
            yield Static("", id="summary")
            yield Static("", id="undone", markup=False)
            yield ActivityLog(id="op-activity")
            with Horizontal(classes="buttons"):
                yield Button("Cancel", id="cancel", variant="warning", compact=True)
                yield Button("Close", id="close", variant="primary", compact=True)
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one(ActivityLog).start("starting…")
        self.query_one("#blocked").display = False  # shown only while sessions are in the way
        if self.ws is not None:
            self.job = self.run_work()

    @work(exclusive=True, group="work", exit_on_error=False, description="Restoring a snapshot")
    async def run_work(self) -> RestoreResult:
        """A restore, validated in full just before its confirmation (as the CLI does), so not read a
        second time; or the emergency rollback, the CLI's ``rollback --emergency``."""
        conn, store = self.ws.require_conn(), self.ws.store
        if self.request is not None:
            return await restore.restore(conn, store, self.request.snapshot, pre_snapshot=self.request.pre_snapshot,
                                         report=self.report, validated=True, locks=self.locks)

        def chosen(snap: Snapshot, why: str) -> None:
            self.query_one("#subject", Static).update(f"Restoring {snap.filename} ({why}) into {self.ws.target_label}")
        return await restore.emergency_rollback(conn, store, report=self.report, locks=self.locks, chosen=chosen)

    @on(Worker.StateChanged)
    def _work_changed(self, event: Worker.StateChanged) -> None:
        if event.worker is not self.job:
            return
        if event.state == WorkerState.SUCCESS:
            self.finish(event.worker.result)
        elif event.state == WorkerState.ERROR:
            text, detail = failure_text(event.worker.error)
            title = "Emergency rollback failed" if self.emergency else "Restore failed"
            self.notify(text, title=title, severity="error", timeout=12, markup=False)
            self.report(Log(text + (f"\n{detail.strip()}" if detail else ""), level="error"))
            self.fail(text)
        elif event.state == WorkerState.CANCELLED:
            self.report(Log("Restore cancelled.", level="warning"))
            self.cancelled()

    # -- engine events ---------------------------------------------------------------------------------
    def on_engine_step(self, message: EngineStep) -> None:
        ev = message.event
        detail = "skipped: you chose not to take one" if ev.status == "skipped" else ev.detail
        self.query_one(StepList).set(ev.name, ev.status, detail)

    def on_engine_progress(self, message: EngineProgress) -> None:
        self.query_one(ActivityLog).progress(message.event.fraction, progress_text(message.event))

    def on_engine_log(self, message: EngineLog) -> None:
        self.query_one(ActivityLog).write_event(message.event)

    def on_engine_blocked(self, message: EngineBlocked) -> None:
        self.blocked = ev = message.event
        box = self.query_one("#blocked", Static)
        box.display = True
        who = "; ".join(b.text() for b in ev.blockers)
        box.update(f"Waiting {ev.waited:.0f} s (gives up at {self.locks.timeout:g} s) for a lock held by {who}. "
                   f"k terminates {'it' if len(ev.blockers) == 1 else 'them'}.")
        self.refresh_bindings()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "terminate_blockers":
            return self.running and self.blocked is not None and not self.locks.terminate
        return True

    def action_terminate_blockers(self) -> None:
        self.locks.terminate = True  # the lock watch reads it on its next look
        self.query_one(ActivityLog).write_event(Log("terminating the sessions in the way…", level="warning"))
        self.refresh_bindings()

    # -- outcome ---------------------------------------------------------------------------------------
    def finish(self, result: RestoreResult) -> None:
        self.result = result
        ok = result.smoke_ok
        undo = f"; undo with {result.pre_snapshot.filename}" if result.pre_snapshot else ""
        self.report(Log(f"{'Restored' if ok else 'Restored, but the smoke test failed:'} {result.snapshot.filename} "
                        f"in {result.duration:.1f}s{undo}", level="info" if ok else "error"))
        if self.emergency:
            head = "RECOVERY STATUS: OK" if ok else "RECOVERY STATUS: CHECK NEEDED (smoke test failed)"
        else:
            head = "RESTORE OK" if ok else "RESTORED, BUT THE SMOKE TEST FAILED"
        lines = [Content.styled(head, "bold $text-success" if ok else "bold $text-error"),
                 Content(f"{result.snapshot.filename} restored in {result.duration:.1f}s."),
                 *(Content.assemble(("✔ ", "$text-success") if c.ok else ("✘ ", "$text-error"),
                                    f"{c.name}: {c.detail}") for c in result.checks),
                 *(Content.styled(f"! {w}", "$text-warning") for w in result.warnings),
                 Content.styled("Next:", "bold")]
        if result.pre_snapshot is not None:
            name = result.pre_snapshot.filename
            lines.append(Content(f"• To undo, restore {name}: highlight it and press r "
                                 f"(or run: {self.command} restore {name})."))
        else:
            lines.append(Content("• No pre-rollback snapshot was taken: this restore cannot be undone "
                                 "from here."))
        if not ok:
            lines.append(Content("• Some checks failed: compare the counts above with what you expect "
                                 "before using the database."))
        lines.append(Content(f"• Check your application. The restore is recorded in {self.audit_path}."))
        self._done(lines, "-ok" if ok else "-failed")
        if self.emergency and result.pre_snapshot is not None and self.ws is not None:
            self.show_undone(result)

    @work(exclusive=True, group="undone", exit_on_error=False, description="Telling what the rollback undid")
    async def show_undone(self, result: RestoreResult) -> None:
        """What the rollback undid, worked out after it: its pre-rollback snapshot compared with the database
        now (the comparison ``restore --dry-run`` makes). The recovery status is already on screen, and
        stays whether or not this comparison succeeds."""
        from services.server.preview import preview_restore
        box = self.query_one("#undone", Static)
        box.update(f"Rollback undid: comparing {result.pre_snapshot.filename} with the database…")
        box.display = True
        try:
            preview = await preview_restore(self.ws.require_conn(), self.ws.store, result.pre_snapshot)
        except Exception as exc:  # noqa: BLE001 - the rollback is done; say why its changes are not told
            text, _ = failure_text(exc)
            box.update(f"What the rollback undid is not known: {text}")
            return
        box.update(Content("\n").join(undone_lines(preview)))
        self.call_after_refresh(self._show_end)

    def fail(self, message: str) -> None:
        self.query_one(StepList).end_running("failed", "")
        head = "RECOVERY STATUS: FAILED" if self.emergency else "RESTORE FAILED"
        lines = [Content.styled(head, "bold $text-error"), Content(message)]
        if self._committed():
            lines.append(Content("The restore itself was committed; only the checks after it failed."))
        lines += [Content.styled("Next:", "bold"), Content("• The log pane holds the full output.")]
        if self.emergency:
            lines.append(Content("• Pick another snapshot in the list and press r, or fix the cause and "
                                 "press E again."))
        self._done(lines, "-failed")

    def cancelled(self) -> None:
        self.query_one(StepList).end_running("cancelled", "cancelled")
        text = ("Cancelled after the restore committed: the database holds the snapshot; the checks did not run."
                if self._committed() else
                "Cancelled: nothing was committed, the database is as it was. Partial files were removed.")
        self._done([Content.styled("CANCELLED", "bold $text-warning"), Content(text)], "-cancelled")

    def _committed(self) -> bool:
        step = self.query_one(StepList).get("restore")
        return step is not None and step.status == "ok"

    def _done(self, summary: list[Content], outcome: str) -> None:
        """Show the outcome: ``-done`` swaps progress, output and Cancel for the summary and Close (the
        log pane behind keeps every line of output); ``outcome`` (``-ok``, ``-failed``, ``-cancelled``)
        colours the summary's edge."""
        self.running = False
        blocked = self.query_one("#blocked", Static)
        blocked.update("\n".join(f"Terminated {b.text()}: it blocked the restore." for b in self.locks.terminated))
        blocked.display = bool(self.locks.terminated)
        self.query_one("#summary", Static).update(Content("\n").join(summary))
        self.add_class("-done", outcome)
        self.query_one("#close", Button).focus()
        self.call_after_refresh(self._show_end)

    def _show_end(self) -> None:
        """The outcome and Close in view: on a short terminal (80x24) the steps scroll up out of sight,
        the status, what a rollback undid and the buttons stay together on screen."""
        self.query_one("#dialog", VerticalScroll).scroll_end(animate=False, immediate=True)

    # -- keys and buttons ------------------------------------------------------------------------------
    @on(Button.Pressed)
    def _pressed(self) -> None:
        """Cancel (shown while the work runs) or Close (shown after it): what escape does then."""
        self.action_cancel_or_close()

    def action_cancel_or_close(self) -> None:
        if not self.running:
            self.dismiss(self.result)
            return
        what = "emergency rollback" if self.emergency else "restore"
        if self._committed():
            question = (f"The {what} has committed: stopping now only skips the checks that follow. "
                        "The database keeps the snapshot.")
        else:
            question = (f"Stop the {what}? It is safe: the database stays unchanged (the {what} runs in "
                        "one transaction, which is rolled back).")
        self.app.push_screen(ConfirmModal(f"Stop the {what}?", question, yes=f"Stop the {what}",
                                          no="Keep going"), self._stop_answered)

    def _stop_answered(self, stop: bool | None) -> None:
        if stop and self.running:
            self.notify("Stopping…", severity="warning")
            self.workers.cancel_node(self)


#: Items listed under the rollback's headline (more are counted), so that it fits 80x24 with the status.
UNDONE_ITEMS = 3


def undone_lines(p: Preview, limit: int = UNDONE_ITEMS) -> list[Content]:
    """What an emergency rollback undid, from ``p``: the preview of restoring its pre-rollback snapshot
    over the database after it. What that restore would bring back, the rollback removed ("gone"); what it
    would remove, the rollback brought back ("back"); rows go from the snapshot's counts (before the
    rollback) to the database's (now). One headline, then the first ``limit`` items."""
    moved = [r for r in p.rows if r.delta]
    items = [*(f"migrations ({tool}): {migrations.text(then)} → {migrations.text(now)}; to apply them again: "
               f"{migrations.TOOLS[tool][1]}" for tool, (then, now) in p.heads.items() if tool not in p.undone),
             *(f"gone: {c.kind.replace('_', ' ')} {c.name}" for c in p.back),
             *(f"back: {c.kind.replace('_', ' ')} {c.name}" for c in p.gone),
             *(f"redefined: {c.kind.replace('_', ' ')} {c.name}" for c in p.changed),
             *(_rows_undone(r) for r in moved)]
    if not items:
        return [Content.assemble(("Rollback undid: ", "bold"), "nothing (schema and row counts as before it).")]
    head = (f"{len(p.back)} gone · {len(p.gone)} back · {len(p.changed)} redefined · "
            f"rows in {len(moved)} of {len(p.rows)} tables")
    shown = items if len(items) <= limit else [*items[:limit - 1], f"… and {len(items) - limit + 1} more"]
    return [Content.assemble(("Rollback undid: ", "bold"), head), *(Content("  " + i) for i in shown)]


def _rows_undone(r: TableRows) -> str:
    """``rows public.items: 20 → 30 (+10)``: before the rollback (the snapshot) → now; ``~`` an estimate."""
    before = "none" if r.snapshot is None else f"{r.snapshot:,}"
    approx = "" if r.exact else "~"
    after = "gone" if r.now is None else f"{approx}{r.now:,}"
    return f"rows {r.table}: {before} → {after}" + (f" ({approx}{-r.delta:+,})" if r.delta else "")
