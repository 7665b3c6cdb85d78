"""The top line: which app, which database (never its password), which server, and whether it is the
sandbox. The screen fills in the server facts once it has connected."""

from __future__ import annotations

from textual.content import Content
from textual.widgets import Static

SEP = (" │ ", "$text-muted")


class TargetHeader(Static):
    """One line naming the target. ``target`` is ``ConnInfo.display`` (user@host:port/db) or None."""

    def show(self, target: str | None, *, server: str | None = None, supabase: bool = False,
             sandbox: bool = False, problem: str | None = None) -> None:
        parts: list = [("dbsage-tui", "bold $accent")]
        if sandbox:  # first, so that a narrow terminal can never cut it off
            parts += [" ", (" SANDBOX ", "bold reverse $warning")]
        parts.append(SEP)
        if target is None:
            parts.append(("no database configured: set SUPABASE_DB_URL or DATABASE_URL, or run with --demo",
                          "$text-warning"))
        else:
            parts.append((target, "bold"))
            parts.append(SEP)
            if problem:
                parts.append((f"⚠ {problem}", "$text-error"))
            else:
                parts.append((server or "connecting…", "" if server else "$text-muted"))
            if supabase:
                parts += [SEP, ("Supabase", "bold $text-success")]
        self.update(Content.assemble(*parts))
