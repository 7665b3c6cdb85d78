"""Keys, palette commands, marks and the retention policy, generated from the main screen's bindings, the
workflow file and the configured policy so that the help can never disagree with what the app does. It
scrolls from the keyboard (arrows, PgUp/PgDn, Home/End): at 80x24 it is taller than the terminal."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Footer, Label, Static

from app.workflow import Workflow
from services.config import Policy
from services.snapshots.retention import policy_text
from widgets.snapshot_table import LEGEND


def key_name(binding: Binding) -> str:
    return binding.key_display or {"question_mark": "?", "slash": "/"}.get(binding.key, binding.key)


class HelpScreen(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q,question_mark", "dismiss", "Close", tooltip="Close the help")]

    def __init__(self, bindings: list[Binding], workflow: Workflow, policy: Policy) -> None:
        super().__init__()
        self.bindings = bindings
        self.workflow = workflow
        self.policy = policy

    def compose(self) -> ComposeResult:
        lines = [Content.styled("Keys", "bold"),
                 *(Content.assemble((f"  {key_name(b):<8}", "bold $text-accent"), f"{b.description:<11}",
                                    (b.tooltip, "$text-muted")) for b in self.bindings),
                 Content.assemble(("  ↑ ↓ j k", "bold $text-accent"), " move   ",
                                  ("g G", "bold $text-accent"), " first, last   ",
                                  ("12 or :12", "bold $text-accent"), " go to #12   ",
                                  ("ctrl+p", "bold $text-accent"), " palette"),
                 Content(""), Content.styled("Palette commands (ctrl+p)", "bold"),
                 *(Content.assemble((f"  {op.palette:<18}", "bold $text-accent"), (op.help, "$text-muted"))
                   for op in self.workflow.operations if op.palette)]
        lines += [Content(""), Content.styled("Marks", "bold"), Content("  " + LEGEND), Content(""),
                  Content.styled("Cleanup (c) keeps", "bold"), Content("  " + policy_text(self.policy)),
                  Content(""),
                  Content.styled("The same work from a shell", "bold"),
                  Content("  dbsage-tui snapshot --label NAME · list · restore N · rollback --emergency")]
        with VerticalScroll(id="dialog", classes="dialog -wide"):
            yield Label(f"dbsage-tui — {self.workflow.name}", classes="dialog-title")
            yield Static(Content("\n").join(lines), id="help-body")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one("#dialog").focus()  # its scroll keys work at once
