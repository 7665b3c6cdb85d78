"""psql on the target in this terminal, the app suspended until it exits (as lazygit hands the terminal
to an editor). Only when nothing runs: the work's events would wait for psql."""

from __future__ import annotations

from textual.app import SuspendNotSupported
from textual.screen import Screen

from services.errors import DbsageError
from services.server.processes import psql_command, run_psql


def hand_over_to_psql(screen: Screen) -> None:
    """``screen`` is the main screen: its workspace, its log (``say``) and its listing (``scan``)."""
    try:
        argv, relay = psql_command(screen.ws.conn, [])
    except DbsageError as exc:
        screen.notify(exc.one_line(), title="psql", severity="error", markup=False)
        return
    failed: OSError | None = None
    try:
        # Nothing may escape this block: App.suspend would not give the screen back.
        with screen.app.suspend():
            print(f"\npsql on {screen.ws.target_label}. \\q returns to dbsage-tui.\n", flush=True)
            try:
                code = run_psql(argv, screen.ws.conn, relay)
            except OSError as exc:
                failed = exc
    except SuspendNotSupported:
        screen.notify("This terminal cannot hand the screen over: run dbsage-tui psql in a shell.",
                      severity="warning")
        return
    if failed is not None:
        screen.notify(f"psql did not start: {failed}", title="psql", severity="error", markup=False)
        return
    screen.say(f"psql on {screen.ws.target_label} exited" + (f" with code {code}." if code else "."))
    screen.scan(force=True)
