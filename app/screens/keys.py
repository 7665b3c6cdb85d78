"""The main screen's keys, as data: each with an id (the config file's ``keymap:`` rebinds it) and a
tooltip (the footer, the palette and the help explain it with the same words)."""

from __future__ import annotations

from textual.binding import Binding

BINDINGS = [
    Binding("n", "new_snapshot", "New", id="new-snapshot",
            tooltip="Take a labeled snapshot of the database"),
    Binding("r", "restore", "Restore", id="restore",
            tooltip="Restore the highlighted snapshot (validates, then asks)"),
    Binding("E", "emergency", "Emergency", id="emergency",
            tooltip="Roll back to the newest valid full snapshot at once, no question asked"),
    Binding("v", "validate", "Validate", id="validate",
            tooltip="Full check of the highlighted snapshot (sha256)"),
    Binding("p", "protect", "Protect", id="protect", show=False,
            tooltip="Protect or unprotect the highlighted snapshot"),
    Binding("slash", "filter", "Filter", id="filter",
            tooltip="Filter the list by label, purpose, file name or type"),
    Binding("space", "mark", "Mark", id="mark", show=False,
            tooltip="Mark the highlighted snapshot for a diff"),
    Binding("d", "diff", "Diff", id="diff", show=False,
            tooltip="Compare the marked snapshot with the highlighted one"),
    Binding("c", "cleanup", "Cleanup", id="cleanup", show=False,
            tooltip="Delete snapshots past the retention policy"),
    Binding("delete", "delete", "Delete", id="delete", show=False,
            tooltip="Delete the highlighted snapshot (asks first)"),
    Binding("s", "psql", "psql", id="psql", show=False,
            tooltip="Open psql on the database (the app waits until you quit psql with \\q)"),
    Binding("l", "toggle_log", "Log", id="toggle-log", show=False,
            tooltip="Open or close the log pane (closed to its last line on short terminals)"),
    Binding("ctrl+r", "refresh", "Refresh", id="refresh", show=False,
            tooltip="Re-read the snapshot directory now"),
    Binding("escape", "cancel", "Cancel", id="cancel",
            tooltip="Cancel the running work, or close the filter"),
    Binding("question_mark", "help", "Help", id="help", tooltip="Keys, commands and marks"),
    Binding("q", "quit", "Quit", id="quit", tooltip="Quit dbsage-tui"),
]


