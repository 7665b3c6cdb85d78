"""The diff screen: schema changes between two snapshots as a tree grouped by kind, row counts as a table.
Below 120 columns the row counts go under the tree, so that their after and delta columns are never cut.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Footer, Label, Static, Tree

if TYPE_CHECKING:  # the module imports pglast: loaded only when a diff is actually run
    from services.diff.compare import DiffResult

_SIGNS = {"added": ("+", "green"), "removed": ("-", "red"), "changed": ("~", "yellow")}


class DiffScreen(ModalScreen[None]):
    HORIZONTAL_BREAKPOINTS: ClassVar[list[tuple[int, str]]] = [(0, "-narrow"), (120, "-wide")]
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q", "dismiss", "Close", tooltip="Back to the snapshot list"),
    ]

    def __init__(self, result: DiffResult) -> None:
        super().__init__()
        self.result = result

    def compose(self) -> ComposeResult:
        r = self.result
        with Vertical(id="dialog", classes="dialog -full"):
            yield Label(f"Diff: {r.a} → {r.b}", classes="dialog-title", markup=False)
            summary = f"Schema: {len(r.added)} added, {len(r.removed)} removed, {len(r.changed)} changed"
            yield Static(summary if r.added or r.removed or r.changed else "Schema: no changes", id="diff-summary",
                         markup=False)
            with Horizontal(id="diff-body"):
                yield Tree("schema changes", id="diff-tree")
                yield DataTable(id="diff-rows", cursor_type="row", zebra_stripes=True)
            for note in r.notes:
                yield Static(f"Note: {note}", classes="dialog-target", markup=False)
        yield Footer(compact=True)

    def on_mount(self) -> None:
        r = self.result
        tree = self.query_one(Tree)
        tree.show_root = False
        by_kind: dict[str, list[tuple[str, object]]] = {}
        for what in ("added", "removed", "changed"):
            for change in getattr(r, what):
                by_kind.setdefault(change.kind, []).append((what, change))
        for kind in sorted(by_kind):
            entries = by_kind[kind]
            node = tree.root.add(Text(f"{kind.replace('_', ' ')} ({len(entries)})", style="bold"),
                                 expand=True)
            for what, change in sorted(entries, key=lambda e: (e[0], e[1].name)):
                sign, style = _SIGNS[what]
                label = Text(f"{sign} {change.name}", style=style)
                if change.detail:
                    label.append(f"  {change.detail}", style="dim")
                node.add_leaf(label)
        if not by_kind:
            tree.root.add_leaf(Text("no schema changes", style="dim"))
        table = self.query_one(DataTable)
        table.add_columns("table", "before", "after", "delta")
        if not r.data or not r.rows:
            table.add_row(Text("no row count changed" if r.data else "schema-only: no rows", style="dim"), "", "", "")
        for row in r.rows:
            delta = Text(f"{row.delta:+,}", style="green" if row.delta > 0 else "red" if row.delta < 0 else "")
            table.add_row(row.table, "-" if row.before is None else f"{row.before:,}",
                          "-" if row.after is None else f"{row.after:,}", delta)
        tree.focus()
