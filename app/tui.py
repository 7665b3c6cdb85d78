"""The full-screen app: ``make_app`` builds it (for ``dbsage-tui`` with no command and for the tests),
``run_tui`` runs it.

The app itself is thin: it loads the workflow file (a broken one stops the start with one clear error),
applies the styles and shows the main screen, where the work happens.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from textual.app import App

from app.screens.main import MainScreen
from app.workflow import Workflow, load_workflow
from services.gcpause import freeze_start_up, paused_gc
from services.store import utcnow
from services.workspace import Workspace

if TYPE_CHECKING:
    from services.inspect import ServerInfo  # asyncpg: loaded when the app first connects

STYLES = Path(str(resources.files("styles")))


class DbsageApp(App[int]):
    """Snapshots of one database: list, take, validate, protect, restore, roll back."""

    TITLE = "dbsage-tui"
    #: Every stylesheet in styles/ (the package ships styles/*.tcss): a new screen's file needs no edit.
    CSS_PATH: ClassVar[list[Path]] = sorted(STYLES.glob("*.tcss"))

    def __init__(self, ws: Workspace, workflow: Workflow, clock: Callable[[], dt.datetime],
                 server_info: ServerInfo | None = None) -> None:
        super().__init__()
        self.ws = ws
        self.workflow = workflow
        self.clock = clock
        self.server_info = server_info

    def get_default_screen(self) -> MainScreen:
        return MainScreen(self.ws, self.workflow, self.clock, self.server_info)


def make_app(ws: Workspace, *, clock: Callable[[], dt.datetime] | None = None,
             server_info: ServerInfo | None = None, workflow_path: Path | None = None) -> DbsageApp:
    """The app as users get it. ``clock`` (aware UTC) drives ages and the 24 h highlight; ``server_info``
    stands in for the connection made at start to read the server version (pictures of the screen in
    tests use both so that they never change); ``workflow_path`` replaces the shipped workflow file."""
    # A first listing of a large directory is made now, while forking is safe (see prefetch); its objects
    # are kept out of the cycle collector's sight as the app's own listing's are (services.gcpause).
    with paused_gc():
        ws.store.prefetch()
        freeze_start_up()
    return DbsageApp(ws, load_workflow(workflow_path), clock or utcnow, server_info)


def run_tui(ws: Workspace) -> int:
    app = make_app(ws)
    app.run()
    return app.return_code or 0
