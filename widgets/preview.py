"""What one snapshot is: its metadata, its validation status and how to restore it.

Used beside the list on the main screen and inside the restore confirmation, so the user sees the same
facts in both places. Rendering only: the screen passes the snapshot and any validation result it has.
"""

from __future__ import annotations

import datetime as dt

from textual.containers import VerticalScroll
from textual.content import Content
from textual.widgets import Static

from services.store import Snapshot, Validation, age_text, human_size

#: Row counts listed before "… and N more".
MAX_TABLES = 12
_W = 10  # width of the field names


def _line(name: str, value: str | Content, style: str = "") -> Content:
    value = Content.styled(value, style) if isinstance(value, str) else value
    return Content.assemble((f"{name:<{_W}}", "$text-muted"), value)


def status_lines(snap: Snapshot, validation: Validation | None) -> list[Content]:
    """The validation verdict: the full check when one ran, else the quick check done when listing."""
    if validation is not None and not validation.ok:
        return [_line("Status", f"✗ INVALID: {validation.reason}", "bold $text-error")]
    if validation is not None:
        lines = [_line("Status", "✔ verified: metadata, size, sha256 and structure match", "$text-success")]
        return lines
    if not snap.valid:
        return [_line("Status", f"✗ INVALID: {snap.problem}", "bold $text-error")]
    return [_line("Status", "✔ looks complete (press v for the full sha256 check)", "$text-success")]


def describe(snap: Snapshot, now: dt.datetime, validation: Validation | None = None,
             index: int | None = None) -> Content:
    """The snapshot's metadata as aligned lines."""
    m = snap.meta or {}
    title = Content.assemble((snap.label, "bold"), (f"  #{index}" if index else "", "$text-muted"),
                             ("  ◆ protected" if snap.protected else "", "$text-warning"))
    lines = [title, _line("File", snap.filename),
             _line("Purpose", snap.purpose or "-"),
             _line("Taken", f"{snap.timestamp:%Y-%m-%d %H:%M:%S} UTC ({age_text(snap.timestamp, now)})")]
    if snap.meta is not None:
        kind = {"full": "full (schema + data)", "schema-only": "schema-only (no rows)"}.get(snap.type, snap.type)
        lines.append(_line("Type", kind, "$text-warning" if snap.type == "schema-only" else ""))
    lines.append(_line("Size", human_size(snap.size_bytes)))
    if snap.meta is not None:
        server = " · ".join(str(x) for x in (m.get("database_version"),
                                               m.get("supabase_version") and f"Supabase {m['supabase_version']}")
                            if x)
        lines.append(_line("Database", f"{m.get('database', '?')} on {m.get('host', '?')}"))
        lines.append(_line("Version", server or "?"))
        lines.append(_line("Tables", str(m.get("tables_count", "?"))))
        lines.extend(_row_lines(m.get("row_counts"), snap.is_full))
        lines.append(_line("sha256", str(m.get("sha256", "?"))))
    lines.extend(status_lines(snap, validation))
    if snap.meta is not None and snap.valid:
        lines.append(_line("Restore", "press r here, or from a shell:"))
        for text in str(m.get("restore_instructions", "")).strip().splitlines():
            lines.append(Content.assemble(" " * _W, (text, "$text-muted")))
    return Content("\n").join(lines)


def _row_lines(row_counts, full: bool) -> list[Content]:
    if not full or not isinstance(row_counts, dict):
        return [_line("Rows", "none (schema only)" if not full else "?")]
    total = sum(v for v in row_counts.values() if isinstance(v, int))
    lines = [_line("Rows", f"{total:,} in {len(row_counts)} tables")]
    items = sorted(row_counts.items())
    for table, count in items[:MAX_TABLES]:
        lines.append(Content.assemble(" " * _W, f"{count:>10,}  ", (str(table), "$text-muted")))
    if len(items) > MAX_TABLES:
        lines.append(Content.assemble(" " * _W, (f"… and {len(items) - MAX_TABLES} more", "$text-muted")))
    return lines


class SnapshotPreview(VerticalScroll):
    """A scrollable panel showing ``describe`` of the highlighted snapshot (or a hint when there is none)."""

    def compose(self):
        yield Static(id="preview-body")

    def show(self, snap: Snapshot | None, now: dt.datetime, validation: Validation | None = None,
             index: int | None = None, empty: str = "No snapshot selected.") -> None:
        body = self.query_one("#preview-body", Static)
        body.update(describe(snap, now, validation, index) if snap is not None else Content(empty))
