"""What one invocation works on: the target database (if any) and the snapshot directory.

The CLI and the TUI both build it here, from the same layered settings (see ``config``)."""

from __future__ import annotations

from dataclasses import dataclass

from .config import ConnInfo, resolve_snapshot_dir, resolve_target
from .errors import BadInput
from .store import SnapshotStore


@dataclass
class Workspace:
    conn: ConnInfo | None
    store: SnapshotStore
    demo: bool = False
    #: This process started the demo sandbox's server, and stops it when it ends (``services.demo``).
    demo_started: bool = False

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
    if demo:
        from .demo import demo_snapshot_dir, ensure_demo
        conn, started = ensure_demo()
        store = SnapshotStore(demo_snapshot_dir() if snapshot_dir is None else resolve_snapshot_dir(snapshot_dir))
        return Workspace(conn=conn, store=store, demo=True, demo_started=started)
    return Workspace(conn=resolve_target(db_url), store=SnapshotStore(resolve_snapshot_dir(snapshot_dir)))
