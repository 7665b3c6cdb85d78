"""A restore or an emergency rollback as it happens: steps, progress, output, then the outcome.

The work itself runs in a worker of the main screen (the one place worker failures are handled); this
screen receives the engine's events as messages and is told how it ended (``finish``, ``fail``,
``cancelled``). Escape while work runs cancels it: the restore runs in one transaction, so the database
stays as it was unless the restore step had already committed.
"""

from __future__ import annotations

from collections.abc import Callable

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Button, Label, ProgressBar, RichLog, Static

from app.cli import progress_text
from app.screens.messages import EngineLog, EngineProgress, EngineStep
from services.restore import RestoreResult
from widgets.steps import StepList

#: The steps the engine reports for a restore, in order.
RESTORE_STEPS = ["validate", "pre-rollback snapshot", "restore", "smoke test"]


class OperationScreen(ModalScreen[RestoreResult | None]):
    """Live view of one restore (``emergency=False``) or emergency rollback (``emergency=True``)."""

    BINDINGS = [Binding("escape", "cancel_or_close", "Cancel / close",
                        tooltip="Cancel the running restore (the database stays as it was), or close")]

    def __init__(self, title: str, subject: str, *, emergency: bool, cancel_work: Callable[[], None],
                 audit_path: str, done: dict[str, tuple[str, str]] | None = None) -> None:
        super().__init__(classes="-emergency" if emergency else "")
        self.done = done or {}
        self.title_text = title
        self.subject = subject
        self.emergency = emergency
        self.cancel_work = cancel_work
        self.audit_path = audit_path
        self.result: RestoreResult | None = None
        self.running = True

    def compose(self) -> ComposeResult:
        steps = ["choose snapshot", *RESTORE_STEPS[1:]] if self.emergency else RESTORE_STEPS
        with VerticalScroll(id="dialog", classes="dialog -wide", can_focus=False):
            yield Label(self.title_text, classes="dialog-title", markup=False)
            yield Static(self.subject, id="subject", markup=False)
            yield StepList(steps, id="steps")
            with Horizontal(id="op-progress"):
                yield ProgressBar(total=None, show_eta=False)
                yield Label("", id="op-progress-text")
            yield Static("", id="summary")
            yield RichLog(max_lines=2000, wrap=True, markup=False, min_width=20, id="op-log")
            with Horizontal(classes="buttons"):
                yield Button("Cancel", id="cancel", variant="warning", compact=True)
                yield Button("Close", id="close", variant="primary", compact=True)

    def on_mount(self) -> None:
        self.query_one("#close", Button).display = False
        self.query_one("#summary", Static).display = False
        for name, (status, detail) in self.done.items():
            self.query_one(StepList).set(name, status, detail)

    # -- engine events ---------------------------------------------------------------------------------
    def set_subject(self, text: str) -> None:
        self.query_one("#subject", Static).update(text)

    def on_engine_step(self, message: EngineStep) -> None:
        ev = message.event
        detail = "skipped: you chose not to take one" if ev.status == "skipped" else ev.detail
        self.query_one(StepList).set(ev.name, ev.status, detail)

    def on_engine_progress(self, message: EngineProgress) -> None:
        p = message.event
        bar = self.query_one(ProgressBar)
        if p.fraction is None:
            bar.update(total=None)
        else:
            bar.update(total=1000, progress=int(p.fraction * 1000))
        self.query_one("#op-progress-text", Label).update(Content(progress_text(p)))

    def on_engine_log(self, message: EngineLog) -> None:
        ev = message.event
        prefix = "" if ev.source == "dbsage" or ev.text.startswith(f"{ev.source}:") else f"{ev.source}: "
        style = {"error": "$text-error", "warning": "$text-warning"}.get(ev.level, "")
        self.query_one("#op-log", RichLog).write(Content.styled(prefix + ev.text, style))

    # -- outcome ---------------------------------------------------------------------------------------
    def finish(self, result: RestoreResult) -> None:
        self.result = result
        ok = result.smoke_ok
        if self.emergency:
            head = "RECOVERY STATUS: OK" if ok else "RECOVERY STATUS: CHECK NEEDED (smoke test failed)"
        else:
            head = "RESTORE OK" if ok else "RESTORED, BUT THE SMOKE TEST FAILED"
        lines = [Content.styled(head, "bold $text-success" if ok else "bold $text-error"),
                 Content(f"{result.snapshot.filename} restored in {result.duration:.1f}s.")]
        for c in result.checks:
            lines.append(Content.assemble(("✔ " if c.ok else "✘ ", "$text-success" if c.ok else "$text-error"),
                                          f"{c.name}: {c.detail}"))
        for w in result.warnings:
            lines.append(Content.styled(f"! {w}", "$text-warning"))
        lines.append(Content.styled("Next:", "bold"))
        if result.pre_snapshot is not None:
            name = result.pre_snapshot.filename
            lines.append(Content(f"• To undo, restore {name}: highlight it and press r "
                                 f"(or run: dbsage-tui restore {name})."))
        else:
            lines.append(Content("• No pre-rollback snapshot was taken: this restore cannot be undone from here."))
        if not ok:
            lines.append(Content("• Some checks failed: compare the counts above with what you expect "
                                 "before using the database."))
        lines.append(Content(f"• Check your application. The restore is recorded in {self.audit_path}."))
        self._done(Content("\n").join(lines))

    def fail(self, message: str) -> None:
        self.query_one(StepList).end_running("failed", "")
        head = "RECOVERY STATUS: FAILED" if self.emergency else "RESTORE FAILED"
        committed = self._committed()
        lines = [Content.styled(head, "bold $text-error"), Content(message)]
        if committed:
            lines.append(Content("The restore itself was committed; only the checks after it failed."))
        lines.append(Content.styled("Next:", "bold"))
        lines.append(Content("• Read the output below and the log pane for the full detail."))
        if self.emergency:
            lines.append(Content("• Pick another snapshot in the list and press r, or fix the cause and press E "
                                 "again."))
        self._done(Content("\n").join(lines))

    def cancelled(self) -> None:
        self.query_one(StepList).end_running("cancelled", "cancelled")
        if self._committed():
            text = "Cancelled after the restore committed: the database holds the snapshot; the checks did not run."
        else:
            text = "Cancelled: nothing was committed, the database is as it was. Partial files were removed."
        self._done(Content.assemble(("CANCELLED\n", "bold $text-warning"), text))

    def _committed(self) -> bool:
        step = self.query_one(StepList).get("restore")
        return step is not None and step.status == "ok"

    def _done(self, summary: Content) -> None:
        self.running = False
        self.query_one("#op-progress").display = False
        self.query_one("#op-log").display = False  # the log pane behind keeps every line
        box = self.query_one("#summary", Static)
        box.update(summary)
        box.display = True
        self.query_one("#cancel", Button).display = False
        close = self.query_one("#close", Button)
        close.display = True
        close.focus()

    # -- keys and buttons ------------------------------------------------------------------------------
    @on(Button.Pressed, "#cancel")
    def _cancel_pressed(self) -> None:
        self.action_cancel_or_close()

    @on(Button.Pressed, "#close")
    def _close_pressed(self) -> None:
        self.dismiss(self.result)

    def action_cancel_or_close(self) -> None:
        if self.running:
            self.notify("Cancelling…", severity="warning")
            self.cancel_work()
        else:
            self.dismiss(self.result)
