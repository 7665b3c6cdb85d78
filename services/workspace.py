"""What one invocation works on: the target database (if any) and the snapshot directory.

The CLI and the TUI both build it here, from the same layered settings (see ``config``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from services.config import ConnInfo, Settings, load_settings, resolve_snapshot_dir, resolve_target
from services.errors import BadInput
from services.snapshots.store import SnapshotStore


@dataclass
class Workspace:
    conn: ConnInfo | None
    store: SnapshotStore
    demo: bool = False
    #: This process started the demo sandbox's server, and stops it when it ends (``services.demo``).
    demo_started: bool = False
    #: The config file, read once for the whole run.
    settings: Settings = field(default_factory=Settings)

    def require_conn(self) -> ConnInfo:
        if self.conn is None:
            raise BadInput("No database is configured.",
                           "Set SUPABASE_DB_URL or DATABASE_URL, pass --db-url, or try the sandbox with --demo.")
        return self.conn

    @property
    def target_label(self) -> str:
        if self.conn is None:
            return "no database configured"
        return ("SANDBOX " if self.demo else "") + self.conn.display


def open_workspace(db_url: str | None, snapshot_dir: str | None, demo: bool) -> Workspace:
    settings = load_settings()
    if demo:
        from services.demo import demo_snapshot_dir, ensure_demo
        conn, started = ensure_demo()
        directory = demo_snapshot_dir() if snapshot_dir is None else resolve_snapshot_dir(snapshot_dir, None, settings)
        return Workspace(conn=conn, store=SnapshotStore(directory), demo=True, demo_started=started, settings=settings)
    directory = resolve_snapshot_dir(snapshot_dir, None, settings)
    return Workspace(conn=resolve_target(db_url), store=SnapshotStore(directory), settings=settings)
