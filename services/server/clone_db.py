"""Clone snapshots, the server side: the maintenance connection, the checks that refuse what cannot work,
and the database-level operations (copy, cancel and settle, drop) that ``services.server.clone`` composes."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time

import asyncpg

from services.config import ConnInfo
from services.errors import BadInput, DbsageError, InvalidSnapshot, OperationFailed
from services.server import catalog
from services.server.clone_file import CloneNotAllowed, check_local, is_local_host
from services.server.locks import other_sessions
from services.snapshots.store import Snapshot

#: Where clone work connects, in order: never the database being copied or replaced.
MAINTENANCE_DBS = ("postgres", "template1")
#: Seconds to wait for a session of ours to leave pg_stat_activity after it was closed.
SESSION_GONE_TIMEOUT = 10.0


class DatabaseBusy(OperationFailed):
    """Other sessions are connected to a database that must be idle (exit 1): close them, then retry."""


async def connect_maintenance(conn: ConnInfo) -> asyncpg.Connection:
    """A connection to ``postgres`` (or ``template1`` when that is missing or is the target itself)."""
    *first, last = [name for name in MAINTENANCE_DBS if name != conn.dbname]
    for name in first:
        try:
            return await catalog.connect(conn.with_dbname(name))
        except OperationFailed as exc:
            if "does not exist" not in exc.one_line():
                raise
    return await catalog.connect(conn.with_dbname(last))


async def read_server_id(con: asyncpg.Connection) -> str | None:
    """The cluster's system identifier (proves a later connection reaches the same server), if readable."""
    with contextlib.suppress(asyncpg.PostgresError):
        return await con.fetchval("SELECT system_identifier::text FROM pg_control_system()")
    return None


async def check_clone_allowed(conn: ConnInfo, con_maint: asyncpg.Connection, *,
                              what: str = "take a clone snapshot") -> catalog.ServerInfo:
    """Refuse, with one sentence and a hint, whatever would make cloning ``conn.dbname`` fail or unsafe:
    a non-local or Supabase server, a server before PostgreSQL 15, a missing or template database, a role
    that may not create databases or does not own this one, other sessions connected to it. Runs on the
    maintenance connection ``con_maint``; returns the server's facts (``database`` is ``conn.dbname``)."""
    check_local(conn)
    info = await catalog.server_info(con_maint)
    supabase_role = await con_maint.fetchval("SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'supabase_admin')")
    if info.supabase or supabase_role:
        raise CloneNotAllowed("Clone snapshots are not available on Supabase servers.",
                              "Take a file snapshot instead (leave out --type clone).")
    if info.major < 15:
        raise CloneNotAllowed(f"Clone snapshots need PostgreSQL 15 or later; this server runs {info.version}.",
                              "Take a file snapshot instead (leave out --type clone).")
    row = await con_maint.fetchrow(
        """SELECT r.rolsuper, r.rolcreatedb, d.oid IS NOT NULL AS found, d.datistemplate,
                  coalesce(pg_has_role(d.datdba, 'USAGE'), false) AS owns
           FROM pg_roles r LEFT JOIN pg_database d ON d.datname = $1
           WHERE r.rolname = current_user""", conn.dbname)
    if row is None or not row["found"]:
        raise OperationFailed(f"The database {conn.dbname} does not exist on the server.",
                              "Check the database name in the connection URL.")
    if row["datistemplate"] or conn.dbname in ("template0", "template1"):
        # (``postgres`` itself is fine: the work then runs over template1.)
        raise CloneNotAllowed(f"Database {conn.dbname} is a template database; clone snapshots are for "
                              "application databases.", "Take a file snapshot instead.")
    if not row["rolsuper"] and not (row["rolcreatedb"] and row["owns"]):
        why = "may not create databases" if not row["rolcreatedb"] else f"does not own database {conn.dbname}"
        raise CloneNotAllowed(f"Role {info.current_user} {why}, which clone snapshots need.",
                              f"Connect as a superuser or as the database's owner with CREATEDB (ALTER ROLE "
                              f"{info.current_user} CREATEDB), or take a file snapshot instead.")
    if sessions := [b.text() for b in await other_sessions(con_maint, conn.dbname)]:
        shown = "; ".join(sessions[:5]) + (f"; and {len(sessions) - 5} more" if len(sessions) > 5 else "")
        raise DatabaseBusy(f"Cannot {what}: {len(sessions)} other session(s) are connected to database "
                           f"{conn.dbname}: {shown}.", "Close them (psql, your app, the IDE), then try again; "
                           "dbsage-tui never terminates sessions.")
    return dataclasses.replace(info, database=conn.dbname)


async def probe_tables(conn: ConnInfo, con_maint: asyncpg.Connection) -> int:
    """Tables in the database's schemas, counted over a short connection of its own that is fully gone
    (out of pg_stat_activity) before we return, so that it never blocks the copy or the rename."""
    async with catalog.closing(catalog.connect(conn)) as con:
        pid = con.get_server_pid()
        tables = await catalog.tables_count(con, (await catalog.resolve_scope(con, False, None)).schemas)
    deadline = time.monotonic() + SESSION_GONE_TIMEOUT
    while await con_maint.fetchval("SELECT count(*) FROM pg_stat_activity WHERE pid = $1", pid):
        if time.monotonic() > deadline:
            break  # CREATE DATABASE waits a little longer for it, then says who is connected
        await asyncio.sleep(0.02)
    return tables


def explain(exc: asyncpg.PostgresError, dbname: str, what: str) -> DbsageError:
    text = str(exc)
    if "is being accessed by other users" in text or "is being used by" in text:
        return DatabaseBusy(f"Cannot {what}: a session connected to database {dbname} meanwhile.",
                            "Close the other sessions, then try again; dbsage-tui never terminates sessions.",
                            detail=text)
    if "No space left on device" in text or "could not extend" in text or "could not write" in text:
        return OperationFailed(f"Cannot {what}: no space left on the server's disk.",
                               "Free up disk space or delete old clone snapshots.", detail=text)
    return OperationFailed(f"Cannot {what}: {text}", "See the server log.", detail=text)


async def database_names(con: asyncpg.Connection) -> set[str]:
    return {r["datname"] for r in await con.fetch("SELECT datname FROM pg_database")}


async def create_copy(con: asyncpg.Connection, new: str, template: str, major: int) -> int:
    """CREATE DATABASE as a file copy, sealed from the start (no window in which anyone can connect); its OID.
    From PostgreSQL 18, ``file_copy_method = clone`` copies with copy_file_range()/copyfile(): a reflink,
    nearly free, on Btrfs, XFS and APFS, an in-kernel copy elsewhere; platforms without it keep ``copy``."""
    if major >= 18:
        with contextlib.suppress(asyncpg.PostgresError):
            await con.execute("SET file_copy_method = clone")
    await con.execute(f"CREATE DATABASE {catalog.quote_ident(new)} TEMPLATE {catalog.quote_ident(template)}"
                      " STRATEGY FILE_COPY ALLOW_CONNECTIONS false IS_TEMPLATE true")
    return await con.fetchval("SELECT oid FROM pg_database WHERE datname = $1", new)


async def settle(conn: ConnInfo, con: asyncpg.Connection) -> asyncpg.Connection:
    """After a failure or a cancellation: close our working connection, cancel what its backend may still
    be running (a CREATE DATABASE in flight, a transaction holding locks) and wait until that backend has
    exited, so that nothing of ours can still commit; return a fresh maintenance connection for the
    cleanup. Only our own backend is ever cancelled."""
    pid = con.get_server_pid()
    con.terminate()
    fresh = await connect_maintenance(conn)
    with contextlib.suppress(asyncpg.PostgresError):
        await fresh.execute("SELECT pg_cancel_backend($1)", pid)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and \
            await fresh.fetchval("SELECT count(*) FROM pg_stat_activity WHERE pid = $1", pid):
        await asyncio.sleep(0.05)
    return fresh


async def drop_database(con: asyncpg.Connection, name: str, oid: int | None = None) -> bool:
    """Drop ``name`` (only if its OID is ``oid``, when given): template flag off, then DROP. False when
    there was nothing (or something else) by that name."""
    found = await con.fetchval("SELECT oid FROM pg_database WHERE datname = $1", name)
    if found is None or (oid is not None and found != oid):
        return False
    q = catalog.quote_ident(name)
    await con.execute(f"ALTER DATABASE {q} IS_TEMPLATE false")
    try:
        await con.execute(f"DROP DATABASE {q}")
    except BaseException:
        with contextlib.suppress(Exception):
            await con.execute(f"ALTER DATABASE {q} IS_TEMPLATE true")
        raise
    return True


def check_same_server(conn: ConnInfo, snap: Snapshot, server_id: str | None) -> None:
    """Refuse a clone snapshot of another server (its database name means nothing here). A server is
    known by its system identifier, which survives a restart on another port; a pointer that lacks one
    falls back to the address it was taken at."""
    recorded = snap.get("server_id")
    if recorded and server_id:
        if recorded != server_id:
            raise BadInput(f"{snap.filename} was taken on another PostgreSQL server (system identifier "
                           f"{recorded}, this one is {server_id}).", "Connect to the server it was taken on.")
        return
    host, _, port = str(snap.get("host") or "").rpartition(":")
    if not (port == str(conn.port) and (host == conn.host or (is_local_host(host) and is_local_host(conn.host)))):
        raise BadInput(f"{snap.filename} is a clone snapshot on the server at {snap.get('host')}, not on "
                       f"{conn.host}:{conn.port}.", "Connect to the server it was taken on.")


async def check_clone_db(con: asyncpg.Connection, conn: ConnInfo, snap: Snapshot) -> str | None:
    """Check that ``snap``'s clone database is on this server, intact; returns the server's identifier."""
    server_id = await read_server_id(con)
    check_same_server(conn, snap, server_id)
    name, oid = snap.get("clone_database"), snap.get("clone_oid")
    row = await con.fetchrow("SELECT oid, datistemplate FROM pg_database WHERE datname = $1", name)
    if row is None:
        raise InvalidSnapshot(f"The clone database {name} of {snap.filename} no longer exists (it was dropped "
                              "outside dbsage-tui).",
                              "The database was not touched. Delete this snapshot and choose another one.")
    if (isinstance(oid, int) and row["oid"] != oid) or not row["datistemplate"]:
        raise InvalidSnapshot(f"The database {name} is not the clone {snap.filename} was taken into (it was "
                              "replaced or altered outside dbsage-tui).",
                              "The database was not touched. Choose another snapshot.")
    return server_id

