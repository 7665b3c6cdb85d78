"""The database being worked on: one open connection, the server's facts, the matching pg tools, the TLS
relay they go through, and the advisory lock that keeps a second dbsage-tui off the same database."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

import asyncpg

from services.config import ConnInfo
from services.errors import LockHeld
from services.server import catalog
from services.server.locks import LockPolicy
from services.server.processes import PgTools, candidate_bindirs, find_tools, probe
from services.server.tls import TlsRelay
from services.snapshots.store import SnapshotStore

#: A key for pg_try_advisory_lock: one dbsage-tui operation per database at a time, whatever the directory.
ADVISORY_KEY = 0x6462736167  # "dbsag"


@dataclass
class Target:
    """An open connection to the database being worked on, with what we learned about it."""

    conn: ConnInfo
    con: asyncpg.Connection
    info: catalog.ServerInfo
    tools: PgTools
    #: Where pg_dump/psql connect when our session is encrypted (``services.server.tls``), else None.
    relay: TlsRelay | None = None
    locks: LockPolicy = field(default_factory=LockPolicy)

    def child_env(self, app: str | None = None) -> dict[str, str]:
        """pg_dump/psql's environment: through the TLS relay whenever our own session uses TLS; ``app``
        names the session (``LockWatch`` finds it by that name)."""
        env = self.relay.child_env() if self.relay else self.conn.child_env()
        if app:
            env["PGAPPNAME"] = app
        return env

    @property
    def tls(self) -> dict:
        """What the metadata and ``show`` say about encryption: never a secret."""
        protocols = self.relay.protocols if self.relay and self.relay.protocols else [self.info.tls or "none"]
        return {"protocol": protocols[-1], "sslmode": self.conn.sslmode}

    async def close(self) -> None:
        await catalog.close_quietly(self.con)
        if self.relay:
            await asyncio.to_thread(self.relay.close)


async def open_target(conn: ConnInfo, locks: LockPolicy | None = None) -> Target:
    # Ask the first candidate pg_dump its version (a short process; cached) while we connect.
    first = candidate_bindirs()[:1]
    probing = asyncio.ensure_future(asyncio.to_thread(probe, first[0])) if first else None
    locks = locks or LockPolicy()
    try:
        # Our own session's queries are catalog reads; should one ever wait for a lock, never forever.
        con = await catalog.connect(conn, {"lock_timeout": str(locks.timeout_ms)})
    finally:
        if probing is not None:
            await asyncio.wait({probing})
            if not probing.cancelled():
                probing.exception()  # retrieved: find_tools probes again and reports any error
    try:
        info = await catalog.server_info(con)
        tools = find_tools(info.major)
        relay = await asyncio.to_thread(TlsRelay(conn).start) if info.tls and conn.uses_tcp else None
    except BaseException:
        await con.close()
        raise
    return Target(conn=conn, con=con, info=info, tools=tools, relay=relay, locks=locks)


@contextlib.asynccontextmanager
async def database_lock(target: Target):
    """Session advisory lock: a second dbsage-tui working on the same database is refused at once."""
    got = await target.con.fetchval("SELECT pg_try_advisory_lock($1)", ADVISORY_KEY)
    if not got:
        holder = await target.con.fetchval(
            """SELECT format('pid %s (%s, from %s) since %s', a.pid, a.application_name,
                             coalesce(a.client_addr::text, 'local'), to_char(a.backend_start, 'HH24:MI:SS'))
               FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
               WHERE l.locktype = 'advisory' AND l.objid = $1 AND l.granted LIMIT 1""", ADVISORY_KEY & 0xFFFFFFFF)
        raise LockHeld(f"Another dbsage-tui is working on database {target.conn.dbname}: backend {holder}.",
                       "Wait for it to finish, then try again.")
    try:
        yield
    finally:
        with contextlib.suppress(Exception):
            await target.con.execute("SELECT pg_advisory_unlock($1)", ADVISORY_KEY)


@contextlib.asynccontextmanager
async def opened(conn: ConnInfo, store: SnapshotStore, operation: str, locks: LockPolicy | None):
    """A standalone operation's target: under the directory lock, connected, under the database lock, closed
    on the way out."""
    with store.lock(operation, conn.display):
        target = await open_target(conn, locks)
        try:
            async with database_lock(target):
                yield target
        finally:
            await target.close()
