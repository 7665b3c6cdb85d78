"""The ``--demo`` sandbox: an embedded PostgreSQL in the user data dir with a small shop database.

Started when a command needs it and stopped by the same process when it ends (``release_demo``), so that
trying the demo leaves no server running; the data directory stays, so the next ``--demo`` starts where
the last one left off. A server another dbsage-tui started (the app open in another terminal) is reused and
left to it. Its snapshots live in their own directory so that trying the demo never mixes with a real
project's ``supabase/snapshots``.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from services.config import ConnInfo, data_dir
from services.sandbox import LocalServer

DEMO_DB = "shop"

#: The shop database: tables, a trigger, a function and a view, and rows enough to page through.
SEED_SQL = Path(__file__).with_name("demo_seed.sql")


def demo_root() -> Path:
    return data_dir() / "demo"


def _server() -> LocalServer:
    return LocalServer(demo_root() / "pgdata")


def demo_snapshot_dir() -> Path:
    return demo_root() / "snapshots"


def ensure_demo() -> tuple[ConnInfo, bool]:
    """Start (or reuse) the sandbox server and create + seed the demo database once; also whether this
    call started the server (then this process stops it: ``release_demo``)."""
    server = _server()
    started = not server.is_running()
    server.ensure_running()
    if server.psql(f"SELECT count(*) FROM pg_database WHERE datname = '{DEMO_DB}'").strip() == "0":
        server.psql(f"CREATE DATABASE {DEMO_DB}")
        server.psql(SEED_SQL.read_text(encoding="utf-8"), DEMO_DB)
    return dataclasses.replace(server.conninfo(DEMO_DB), source="--demo"), started


def release_demo() -> None:
    """At the end of the process that started the sandbox server: stop it, unless another client is
    connected (a second dbsage-tui that reused it; the server is then left running for it)."""
    server = _server()
    if not server.is_running():
        return
    server.load_password()
    for _ in range(20):  # the backend of a session that just closed (ours) lingers for a moment
        others = server.psql("SELECT count(*) FROM pg_stat_activity "
                             "WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()")
        if others.strip() == "0":
            server.stop()
            return
        time.sleep(0.1)
