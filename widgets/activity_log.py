"""The log pane: pg_dump/psql output and the app's own messages, with a progress bar and its caption
(bytes, rate, ETA) while work runs. Rendering only."""

from __future__ import annotations

import datetime as dt

from rich.text import Text
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.widgets import Label, ProgressBar, RichLog

from services.events import Log

#: Lines kept in the pane; older ones scroll away (the audit log keeps the record that matters).
MAX_LINES = 5000


class ActivityLog(Vertical):
    """A RichLog plus a progress row. ``-busy`` on the widget shows the progress row."""

    def compose(self):
        with Horizontal(id="progress-row"):
            yield ProgressBar(total=None, show_eta=False, show_percentage=False, id="progress-bar")
            yield Label("", id="progress-text")
        yield RichLog(max_lines=MAX_LINES, wrap=True, markup=False, highlight=False, min_width=20, id="log")

    def write_event(self, event: Log, when: dt.datetime | None = None) -> None:
        """One engine line: tool output dimmed, warnings and errors in their colours."""
        colors = self.app.theme_variables
        levels = {"error": colors.get("text-error", "red"), "warning": colors.get("text-warning", "yellow")}
        style = levels.get(event.level, "" if event.source == "dbsage" else "dim")
        text = Text(no_wrap=False)
        if when is not None:
            text.append(f"{when:%H:%M:%S} ", "dim")
        if event.source != "dbsage" and not event.text.startswith(f"{event.source}:"):
            text.append(f"{event.source}: ", "dim")
        text.append(event.text, style)
        self.query_one(RichLog).write(text)

    def say(self, message: str, level: str = "info", when: dt.datetime | None = None) -> None:
        """A message of the app's own (several lines are written as several lines)."""
        for line in message.splitlines() or [""]:
            self.write_event(Log(line, level=level), when)

    def start(self, caption: str) -> None:
        self.add_class("-busy")
        self.query_one(ProgressBar).update(total=None, progress=0)
        self.query_one("#progress-text", Label).update(Content(caption))

    def progress(self, fraction: float | None, caption: str) -> None:
        """Up to ten times a second during a dump or restore. The caption's box is one line of the room
        the bar leaves (styles), whatever it says: it is re-rendered without a layout of the screen."""
        bar = self.query_one(ProgressBar)
        if fraction is None:
            bar.update(total=None)
        else:
            bar.update(total=1000, progress=int(fraction * 1000))
        self.query_one("#progress-text", Label).update(Content(caption), layout=False)

    def stop(self) -> None:
        self.remove_class("-busy")
