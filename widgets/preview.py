"""What one snapshot is: its metadata, its validation status and how to restore it. Beside the list and in
the restore confirmation, so the user sees the same facts in both places. Rendering only."""

from __future__ import annotations

import datetime as dt

from textual.containers import VerticalScroll
from textual.content import Content
from textual.widgets import Static

from services.snapshots.record import facts
from services.snapshots.retention import is_protected
from services.snapshots.store import Snapshot
from services.snapshots.validation import Validation

#: Row counts listed before "… and N more".
MAX_TABLES = 12
_W = 9  # width of the field names


def _line(name: str, value: str | Content, style: str = "") -> Content:
    value = Content.styled(value, style) if isinstance(value, str) else value
    return Content.assemble((f"{name:<{_W - 1}} ", "$text-muted"), value)


def _status(snap: Snapshot, validation: Validation | None) -> Content:
    """The validation verdict: the full check when one ran, else the quick check done when listing."""
    if validation is not None and not validation.ok:
        return _line("Status", f"✗ INVALID: {validation.reason}", "bold $text-error")
    if validation is not None:
        return _line("Status", "✔ verified: size, sha256 and structure match", "$text-success")
    if not snap.valid:
        return _line("Status", f"✗ INVALID: {snap.problem}", "bold $text-error")
    if snap.pending:
        return _line("Status", "… reading its metadata", "$text-muted")
    return _line("Status", "✔ complete (v checks its sha256)", "$text-success")


def describe(snap: Snapshot, now: dt.datetime, validation: Validation | None = None,
             index: int | None = None, verdict: str | None = None) -> Content:
    """The snapshot's facts (``record.facts``, as ``show`` prints them) as aligned lines, the row counts
    under Tables; ``verdict``: what a cleanup would do with it."""
    m = snap.meta or {}
    protection = "  ◆ protected" if snap.protected else "  ◆ protected (label)" if is_protected(snap) else ""
    lines = [Content.assemble((snap.label, "bold"), (f"  #{index}" if index else "", "$text-muted"),
                              (protection, "$text-warning")),
             Content.styled(snap.filename, "$text-muted")]
    for name, text in facts(snap, now):
        lines.append(_line(name, text, "$text-warning" if name == "Type" and snap.type == "schema-only" else ""))
        if name == "Tables" and snap.is_full and isinstance(m.get("row_counts"), dict):
            lines.extend(_row_lines(m["row_counts"]))
    lines.append(_status(snap, validation))
    if verdict:
        lines.append(_line("Cleanup", verdict, "$text-error" if verdict.startswith("delete") else ""))
    if snap.meta is not None and snap.valid:
        lines.append(_line("Restore", "press r, or from a shell:"))
        for text in str(m.get("restore_instructions", "")).strip().splitlines():
            lines.append(Content.styled(text, "$text-muted"))
    return Content("\n").join(lines)


def _row_lines(row_counts: dict) -> list[Content]:
    items = sorted(row_counts.items())
    lines = [Content.assemble(f"{count:>{_W + 6},}  ", (str(table), "$text-muted"))
             for table, count in items[:MAX_TABLES]]
    if len(items) > MAX_TABLES:
        lines.append(Content.assemble(" " * _W, (f"… and {len(items) - MAX_TABLES} more tables", "$text-muted")))
    return lines


class SnapshotPreview(VerticalScroll):
    """A scrollable panel showing ``describe`` of the highlighted snapshot (or a hint when there is none)."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        #: What the body shows: (text, styles, cell width of each line).
        self._shown: tuple | None = None

    def compose(self):
        yield Static(id="preview-body")

    def show(self, snap: Snapshot | None, now: dt.datetime, validation: Validation | None = None,
             index: int | None = None, verdict: str | None = None, empty: str = "No snapshot selected.") -> None:
        """Show a snapshot (or ``empty``). The screen calls this every second (ages tick) and on every
        cursor move: the same text is not rendered again, and text whose lines keep their widths (an age
        that ticks) is re-rendered without a layout of the whole screen."""
        content = describe(snap, now, validation, index, verdict) if snap is not None else Content(empty)
        widths = tuple(line.cell_length for line in content.split("\n"))
        shown = (content.plain, content.spans, widths)
        if shown == self._shown:
            return
        layout = self._shown is None or self._shown[2] != widths
        self._shown = shown
        self.query_one("#preview-body", Static).update(content, layout=layout)
