"""The main screen's keys, as data: each with an id (the config file's ``keymap:`` rebinds it) and a
tooltip (the footer, the palette and the help explain it with the same words)."""

from __future__ import annotations

from textual.binding import Binding


def _key(key: str, action: str, description: str, tooltip: str, show: bool = True) -> Binding:
    """A binding whose id is its action's name with ``-`` for ``_`` (``new-snapshot``)."""
    return Binding(key, action, description, id=action.replace("_", "-"), show=show, tooltip=tooltip)


BINDINGS = [
    _key("n", "new_snapshot", "New", "Take a labeled snapshot of the database"),
    _key("r", "restore", "Restore", "Restore the highlighted snapshot (validates, then asks)"),
    _key("E", "emergency", "Emergency", "Roll back to the newest valid full snapshot at once, no question asked"),
    _key("v", "validate", "Validate", "Full check of the highlighted snapshot (sha256)"),
    _key("p", "protect", "Protect", "Protect or unprotect the highlighted snapshot", show=False),
    _key("slash", "filter", "Filter", "Filter the list by label, purpose, file name or type"),
    _key("space", "mark", "Mark", "Mark the highlighted snapshot for a diff", show=False),
    _key("d", "diff", "Diff", "Compare the marked snapshot with the highlighted one", show=False),
    _key("c", "cleanup", "Cleanup", "Delete snapshots past the retention policy", show=False),
    _key("delete", "delete", "Delete", "Delete the highlighted snapshot (asks first)", show=False),
    _key("s", "psql", "psql", "Open psql on the database (the app waits until you quit psql with \\q)", show=False),
    _key("l", "toggle_log", "Log", "Open or close the log pane (closed to its last line on short terminals)",
         show=False),
    _key("ctrl+r", "refresh", "Refresh", "Re-read the snapshot directory now", show=False),
    _key("escape", "cancel", "Cancel", "Cancel the running work, or close the filter"),
    _key("question_mark", "help", "Help", "Keys, commands and marks"),
    _key("q", "quit", "Quit", "Quit dbsage-tui"),
]
