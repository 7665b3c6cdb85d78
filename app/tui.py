"""Placeholder until the Textual app lands (issue 3)."""

from services.errors import BadInput


def run_tui(ws) -> int:
    raise BadInput("The full-screen app is not built yet.", "Use the subcommands: dbsage-tui --help")
