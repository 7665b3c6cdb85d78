"""The full-screen app: ``make_app`` builds it (for ``dbsage-tui`` with no command and for the tests),
``run_tui`` runs it. The work happens on the main screen; a broken workflow file stops the start."""

from __future__ import annotations

import datetime as dt
import weakref
from collections.abc import Callable, Iterable
from functools import partial
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from textual import events
from textual.app import App, SystemCommand
from textual.screen import Screen

from app.screens.main import MainScreen
from app.workflow import load_workflow
from services.display import utcnow
from services.workspace import Workspace

if TYPE_CHECKING:
    from services.server.catalog import ServerInfo  # asyncpg: loaded when the app first connects

STYLES = Path(str(resources.files("styles")))


class DbsageApp(App[int]):
    """Snapshots of one database: list, take, validate, protect, restore, roll back."""

    TITLE = "dbsage-tui"
    #: Every stylesheet in styles/ (the package ships styles/*.tcss): a new screen's file needs no edit.
    CSS_PATH: ClassVar[list[Path]] = sorted(STYLES.glob("*.tcss"))

    def __init__(self, main: MainScreen) -> None:
        super().__init__()
        self.main = main
        self.ws = main.ws
        #: Where each key from the terminal was typed (the screen and the focus then), and the keys handed
        #: on to a new focus (see ``on_key``).
        self.key_origins: weakref.WeakKeyDictionary[events.Key, tuple] = weakref.WeakKeyDictionary()
        self.keys_handed_on: weakref.WeakSet[events.Key] = weakref.WeakSet()

    def on_mount(self) -> None:
        if self.ws.settings.keymap:  # the config file's keymap: binding id -> key(s)
            self.set_keymap(self.ws.settings.keymap)

    def get_default_screen(self) -> MainScreen:
        return self.main

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        """The palette: Textual's, then on the main screen the workflow file's ``*snapshot``-style commands
        and every key but escape; each runs exactly what its key runs."""
        yield from super().get_system_commands(screen)
        if not isinstance(screen, MainScreen):
            return
        from app.screens.help import key_name
        for op in screen.workflow.operations:
            if op.palette:
                yield SystemCommand(op.palette, f"{op.label}: {op.help}" if op.help else op.label,
                                    partial(screen.run_action, op.action))
        for b in screen.keys():
            if b.action != "cancel":
                yield SystemCommand(f"{b.description} ({key_name(b)})", b.tooltip, partial(screen.run_action, b.action))

    # -- keys typed ahead ----------------------------------------------------------------------------------
    # A key goes to what has focus when it arrives, and its binding runs once it has bubbled back up here.
    # So keys typed (or pasted) right behind "n" or "/" are already on their way through the list when the
    # create dialog or the filter field opens: they would come back here, match nothing and vanish. A key
    # that comes back after the focus moved is given to what has focus now, as typed-ahead keys are.

    async def on_event(self, event: events.Event) -> None:
        if isinstance(event, events.Key) and event in self.keys_handed_on:
            # A key handed on below, back up here: its bindings run (MessagePump's dispatch, which ends in
            # the App's own key handler), it is not taken for a new key from the terminal.
            await super(App, self).on_event(event)
            return
        if isinstance(event, events.Key) and not event.is_forwarded:
            self.key_origins[event] = (self.screen, self.focused)
        await super().on_event(event)

    def on_key(self, event: events.Key) -> None:
        # Runs before the App's own key handler (the handlers of the classes up the MRO run in turn), which
        # checks the bindings; prevent_default() keeps that from running for a key handed on.
        screen, focus = self.key_origins.get(event, (None, None))
        if screen is None or (screen is self.screen and focus is self.focused) or screen not in self.screen_stack:
            return
        event.prevent_default()
        again = events.Key(event.key, event.character)
        self.key_origins[again] = (self.screen, self.focused)
        self.keys_handed_on.add(again)
        (self.focused or self.screen).post_message(again)


def make_app(ws: Workspace, *, clock: Callable[[], dt.datetime] | None = None,
             server_info: ServerInfo | None = None, workflow_path: Path | None = None) -> DbsageApp:
    """The app as users get it. ``clock`` (aware UTC) drives ages and the 24 h highlight; ``server_info``
    stands in for the connection made at start to read the server version (pictures of the screen in
    tests use both so that they never change); ``workflow_path`` replaces the shipped workflow file."""
    return DbsageApp(MainScreen(ws, load_workflow(workflow_path), clock or utcnow, server_info))


def run_tui(ws: Workspace) -> int:
    app = make_app(ws)
    app.run()
    return app.return_code or 0
