"""Instant local snapshots (``--type clone``): the server copies the database, no pg_dump, no psql replay.

A clone snapshot is a database on the same server, made with ``CREATE DATABASE clone TEMPLATE db STRATEGY
FILE_COPY`` (a file-level copy; STRATEGY exists from PostgreSQL 15), created with ``ALLOW_CONNECTIONS
false IS_TEMPLATE true`` so that nobody can change what was captured while any CREATEDB role can still copy
it. In the snapshot directory it is a small pointer file ``{YYYYmmddHHMMSS}_{label}.clone`` (it names the
database and says how to restore it) plus the usual ``{file}.meta.yaml``.

Restoring copies the clone to a new database and swaps names in one transaction (ALTER DATABASE ... RENAME
is transactional: verified on PostgreSQL 15 and 18), carrying over the database-level properties of the
current database (owner, grants, settings, comment, connection limit), which live in shared catalogs keyed
by the database's OID. The database renamed away becomes the pre-rollback snapshot, at no cost.

Only for local development servers: hosted databases (and Supabase) must use file snapshots. Every
statement runs over a connection to the *maintenance* database (``postgres``, else ``template1``):
``CREATE DATABASE ... TEMPLATE`` and ``RENAME`` both require that nobody is connected to the database, us
included. Other sessions are listed in the refusal, never terminated.

Errors and exit codes (services.errors):
  * ``CloneNotAllowed`` (BadInput, exit 2): not a local server, a Supabase server, a role that may not
    create databases or does not own the database, a server before 15 or a template database. Retrying
    will not help; use a file snapshot.
  * ``DatabaseBusy`` (OperationFailed, exit 1): other sessions are connected; close them and retry.
  * ``InvalidSnapshot`` (exit 3): the pointer or metadata is damaged, or its clone database is gone or is
    not the one it names.
  * ``OperationFailed`` (exit 1): anything else; the target database is left as it was.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import hashlib
import socket
import time
from pathlib import Path

import asyncpg

from . import __version__, inspect
from .clonefile import (  # noqa: F401 - POINTER_HEADER, clone_name, check_pointer: also this module's interface
    POINTER_HEADER,
    CloneNotAllowed,
    check_local,
    check_pointer,
    clone_name,
    is_local_host,
    pointer_text,
    read_pointer,
    remove_files,
    write_pointer,
)
from .config import ConnInfo
from .dbprops import carry_over_commands
from .errors import BadInput, DbsageError, InvalidSnapshot, OperationFailed, audit_outcome
from .events import Log, Progress, Reporter, Step, null_reporter
from .locks import other_sessions
from .restore import RestoreResult, SmokeCheck, report_checks
from .store import (
    CLONE_SUFFIX,
    Snapshot,
    SnapshotStore,
    check_label,
    format_ts,
    free_name,
    human_size,
    os_user,
    utcnow,
)

#: Where clone work connects, in order: never the database being copied or replaced.
MAINTENANCE_DBS = ("postgres", "template1")
#: Seconds to wait for a session of ours to leave pg_stat_activity after it was closed.
SESSION_GONE_TIMEOUT = 10.0


class DatabaseBusy(OperationFailed):
    """Other sessions are connected to a database that must be idle (exit 1): close them, then retry."""


# -- connections and checks -------------------------------------------------------------------------------

async def connect_maintenance(conn: ConnInfo) -> asyncpg.Connection:
    """A connection to ``postgres`` (or ``template1`` when that is missing or is the target itself)."""
    last: DbsageError | None = None
    for name in MAINTENANCE_DBS:
        if name == conn.dbname:
            continue
        try:
            return await inspect.connect(conn.with_dbname(name))
        except OperationFailed as exc:
            if "does not exist" not in exc.one_line():
                raise
            last = exc
    assert last is not None
    raise last


async def _server_id(con: asyncpg.Connection) -> str | None:
    """The cluster's system identifier (proves a later connection reaches the same server), if readable."""
    try:
        val = await con.fetchval("SELECT system_identifier::text FROM pg_control_system()")
    except asyncpg.PostgresError:
        return None
    return str(val) if val is not None else None


def _busy(dbname: str, sessions: list[str], what: str) -> DatabaseBusy:
    shown = "; ".join(sessions[:5]) + (f"; and {len(sessions) - 5} more" if len(sessions) > 5 else "")
    return DatabaseBusy(f"Cannot {what}: {len(sessions)} other session(s) are connected to database {dbname}: "
                        f"{shown}.",
                        "Close them (psql, your app, the IDE), then try again; dbsage-tui never terminates "
                        "sessions.")


async def check_clone_allowed(conn: ConnInfo, con_maint: asyncpg.Connection, *,
                              what: str = "take a clone snapshot") -> inspect.ServerInfo:
    """Refuse, with one sentence and a hint, whatever would make cloning ``conn.dbname`` fail or unsafe:
    a non-local or Supabase server, a server before PostgreSQL 15, a missing or template database, a role
    that may not create databases or does not own this one, other sessions connected to it. Runs on the
    maintenance connection ``con_maint``; returns the server's facts (``database`` is ``conn.dbname``)."""
    check_local(conn)
    info = await inspect.server_info(con_maint)
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
    sessions = [b.text() for b in await other_sessions(con_maint, conn.dbname)]
    if sessions:
        raise _busy(conn.dbname, sessions, what)
    return dataclasses.replace(info, database=conn.dbname)


async def _probe_tables(conn: ConnInfo, con_maint: asyncpg.Connection) -> int:
    """Tables in the database's schemas, counted over a short connection of its own that is fully gone
    (out of pg_stat_activity) before we return, so that it never blocks the copy or the rename."""
    con = await inspect.connect(conn)
    try:
        pid = con.get_server_pid()
        scope = await inspect.resolve_scope(con, False, None)
        tables = await inspect.tables_count(con, scope.schemas)
    finally:
        await con.close()
    deadline = time.monotonic() + SESSION_GONE_TIMEOUT
    while await con_maint.fetchval("SELECT count(*) FROM pg_stat_activity WHERE pid = $1", pid):
        if time.monotonic() > deadline:
            break  # CREATE DATABASE waits 5 s more for it, then says who is connected
        await asyncio.sleep(0.02)
    return tables


def _explain(exc: asyncpg.PostgresError, dbname: str, what: str) -> DbsageError:
    text = str(exc)
    if "is being accessed by other users" in text or "is being used by" in text:
        return DatabaseBusy(f"Cannot {what}: a session connected to database {dbname} meanwhile.",
                            "Close the other sessions, then try again; dbsage-tui never terminates sessions.",
                            detail=text)
    if "No space left on device" in text or "could not extend" in text or "could not write" in text:
        return OperationFailed(f"Cannot {what}: no space left on the server's disk.",
                               "Free up disk space or delete old clone snapshots.", detail=text)
    return OperationFailed(f"Cannot {what}: {text}", "See the server log.", detail=text)


async def _database_names(con: asyncpg.Connection) -> set[str]:
    return {r["datname"] for r in await con.fetch("SELECT datname FROM pg_database")}


async def _create_copy(con: asyncpg.Connection, new: str, template: str, major: int) -> None:
    """CREATE DATABASE as a file copy, sealed from the start (no window in which anyone can connect).
    From PostgreSQL 18, ``file_copy_method = clone`` copies with copy_file_range()/copyfile(): a reflink,
    nearly free, on Btrfs, XFS and APFS, an in-kernel copy elsewhere; platforms without it keep ``copy``."""
    if major >= 18:
        with contextlib.suppress(asyncpg.PostgresError):
            await con.execute("SET file_copy_method = clone")
    strategy = " STRATEGY FILE_COPY" if major >= 15 else ""
    await con.execute(f"CREATE DATABASE {inspect.quote_ident(new)} TEMPLATE {inspect.quote_ident(template)}"
                      f"{strategy} ALLOW_CONNECTIONS false IS_TEMPLATE true")


async def _settle(conn: ConnInfo, con: asyncpg.Connection | None) -> asyncpg.Connection:
    """After a failure or a cancellation: close our working connection, cancel what its backend may still
    be running (a CREATE DATABASE in flight, a transaction holding locks) and wait until that backend has
    exited, so that nothing of ours can still commit; return a fresh maintenance connection for the
    cleanup. Only our own backend is ever cancelled."""
    pid = con.get_server_pid() if con is not None else None
    if con is not None:
        con.terminate()
    fresh = await connect_maintenance(conn)
    if pid is not None:
        with contextlib.suppress(asyncpg.PostgresError):
            await fresh.execute("SELECT pg_cancel_backend($1)", pid)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and \
                await fresh.fetchval("SELECT count(*) FROM pg_stat_activity WHERE pid = $1", pid):
            await asyncio.sleep(0.05)
    return fresh


async def _drop_database(con: asyncpg.Connection, name: str, oid: int | None = None) -> bool:
    """Drop ``name`` (only if its OID is ``oid``, when given): template flag off, then DROP. False when
    there was nothing (or something else) by that name."""
    found = await con.fetchval("SELECT oid FROM pg_database WHERE datname = $1", name)
    if found is None or (oid is not None and found != oid):
        return False
    q = inspect.quote_ident(name)
    await con.execute(f"ALTER DATABASE {q} IS_TEMPLATE false")
    try:
        await con.execute(f"DROP DATABASE {q}")
    except BaseException:
        with contextlib.suppress(Exception):
            await con.execute(f"ALTER DATABASE {q} IS_TEMPLATE true")
        raise
    return True


def _write_snapshot(store: SnapshotStore, pointer: Path, ts: dt.datetime, label: str, *, conn: ConnInfo,
                    info: inspect.ServerInfo, server_id: str | None, clone_db: str, clone_oid: int,
                    clone_bytes: int, tables: int, purpose: str, notes: str, protected: bool,
                    duration: float) -> Snapshot:
    """Pointer file, then metadata (each atomic): the snapshot lists only once both are complete."""
    server = f"{conn.host}:{conn.port}"
    data = write_pointer(pointer, pointer_text(clone_db, conn.dbname, server, server_id, ts, pointer.name))
    meta = {
        "label": label,
        "purpose": purpose or "",
        "timestamp": format_ts(ts),
        "database_version": info.version,
        "type": "clone",
        "size_bytes": len(data),
        "size_human": human_size(len(data)),
        "clone_database": clone_db,
        "clone_oid": clone_oid,
        "clone_bytes": clone_bytes,
        "clone_size_human": human_size(clone_bytes),
        "server_id": server_id,
        "tables_count": tables,
        # Counting rows would read every table of the database: the opposite of an instant snapshot.
        "row_counts": None,
        "restore_instructions": f"dbsage-tui restore {pointer.name}\n"
                                f"# the data is in database {clone_db} on {server}; it cannot be restored "
                                "by hand with psql\n",
        "notes": notes or "",
        "filename": pointer.name,
        "sha256": hashlib.sha256(data).hexdigest(),
        "database": conn.dbname,
        "host": server,
        "duration_seconds": duration,
        "tool_version": __version__,
        "protected": bool(protected),
        "created_by": f"{os_user()}@{socket.gethostname()}",
    }
    store.write_meta(pointer, meta)
    return Snapshot(path=pointer, label=label, timestamp=ts, meta=meta, file_size=len(data))


# -- create -----------------------------------------------------------------------------------------------

async def create_clone(conn: ConnInfo, store: SnapshotStore, label: str, *, purpose: str = "", notes: str = "",
                       protected: bool = False, report: Reporter = null_reporter) -> Snapshot:
    """Take a clone snapshot of ``conn.dbname``: the server copies the database into a new database that
    nobody can connect to, then the pointer file and metadata are written. A failure or cancellation at
    any point drops the half-made database and removes the files. Holds the directory lock throughout."""
    check_label(label)
    check_local(conn)
    store.ensure_dir()
    started = time.monotonic()
    with store.lock("snapshot", conn.display):
        con = await connect_maintenance(conn)
        pointer: Path | None = None
        clone: str | None = None
        clone_oid: int | None = None
        try:
            info = await check_clone_allowed(conn, con)
            server_id = await _server_id(con)
            tables = await _probe_tables(conn, con)
            ts, pointer = free_name(store.directory, label, CLONE_SUFFIX)
            clone = clone_name(conn.dbname, ts, await _database_names(con))
            size = await con.fetchval("SELECT pg_database_size($1)", conn.dbname)
            report(Log(f"Cloning database {conn.dbname} ({human_size(size)}) into {clone} on "
                       f"{conn.host}:{conn.port} (CREATE DATABASE ... TEMPLATE, STRATEGY FILE_COPY)"))
            report(Progress("dump", 0, size, 0.0))
            try:
                await _create_copy(con, clone, conn.dbname, info.major)
            except asyncpg.PostgresError as exc:
                clone = None  # not made: nothing to drop
                raise _explain(exc, conn.dbname, "take a clone snapshot") from None
            clone_oid = await con.fetchval("SELECT oid FROM pg_database WHERE datname = $1", clone)
            clone_bytes = await con.fetchval("SELECT pg_database_size($1::oid)", clone_oid)
            duration = round(time.monotonic() - started, 3)
            report(Progress("dump", size, size, time.monotonic() - started))
            snap = _write_snapshot(store, pointer, ts, label, conn=conn, info=info, server_id=server_id,
                                   clone_db=clone, clone_oid=clone_oid, clone_bytes=clone_bytes, tables=tables,
                                   purpose=purpose, notes=notes, protected=protected, duration=duration)
            report(Log(f"Saved {pointer.name}: database {clone} ({human_size(clone_bytes)}, {tables} tables, "
                       f"{duration:.1f}s)"))
            store.audit("snapshot", "ok", snapshot=pointer.name, type="clone", target=conn.display,
                        clone_database=clone, size_bytes=clone_bytes, duration_seconds=duration)
            return snap
        except BaseException as exc:
            if pointer is not None:
                remove_files(pointer)
            if clone is not None:
                with contextlib.suppress(Exception):
                    fresh = await _settle(conn, con)
                    try:
                        await _drop_database(fresh, clone, clone_oid)
                    finally:
                        await fresh.close()
            outcome, msg = audit_outcome(exc)
            store.audit("snapshot", outcome, snapshot=pointer.name if pointer else None, type="clone",
                        target=conn.display, error=msg)
            if isinstance(exc, asyncpg.PostgresError):
                raise _explain(exc, conn.dbname, "take a clone snapshot") from None
            raise
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(con.close(), 5)


# -- restore ----------------------------------------------------------------------------------------------

def _same_server(conn: ConnInfo, snap: Snapshot) -> None:
    """Refuse to act on a clone snapshot taken on another server (its database name means nothing here)."""
    host, _, port = str(snap.get("host") or "").rpartition(":")
    if not (port == str(conn.port) and (host == conn.host or (is_local_host(host) and is_local_host(conn.host)))):
        raise BadInput(f"{snap.filename} is a clone snapshot on the server at {snap.get('host')}, not on "
                       f"{conn.host}:{conn.port}.", "Connect to the server it was taken on.")


async def _check_clone_db(con: asyncpg.Connection, snap: Snapshot, server_id: str | None) -> None:
    name, oid = snap.get("clone_database"), snap.get("clone_oid")
    recorded = snap.get("server_id")
    if recorded and server_id and recorded != server_id:
        raise BadInput(f"{snap.filename} was taken on another PostgreSQL server (system identifier "
                       f"{recorded}, this one is {server_id}).", "Connect to the server it was taken on.")
    row = await con.fetchrow("SELECT oid, datistemplate FROM pg_database WHERE datname = $1", name)
    if row is None:
        raise InvalidSnapshot(f"The clone database {name} of {snap.filename} no longer exists (it was dropped "
                              "outside dbsage-tui).",
                              "The database was not touched. Delete this snapshot and choose another one.")
    if (isinstance(oid, int) and row["oid"] != oid) or not row["datistemplate"]:
        raise InvalidSnapshot(f"The database {name} is not the clone {snap.filename} was taken into (it was "
                              "replaced or altered outside dbsage-tui).",
                              "The database was not touched. Choose another snapshot.")


async def restore_clone(conn: ConnInfo, store: SnapshotStore, snap: Snapshot, *, pre_snapshot: bool = True,
                        report: Reporter = null_reporter, action: str = "restore") -> RestoreResult:
    """Make ``conn.dbname`` exactly the clone snapshot ``snap``: copy the clone to a new database, then in
    one transaction give it the current database's properties and swap the names. The current database,
    renamed away, becomes the pre-rollback clone snapshot (``pre_snapshot``) or is dropped after COMMIT.
    Until COMMIT, any failure or cancellation leaves the target database exactly as it was."""
    started = time.monotonic()
    problem = check_pointer(snap)
    if problem:
        raise InvalidSnapshot(f"Snapshot {snap.filename} is invalid: {problem}.",
                              "The database was not touched. Choose another snapshot (`dbsage-tui list`).")
    check_local(conn)
    _same_server(conn, snap)
    result = RestoreResult(snapshot=snap, pre_snapshot=None)
    with store.lock(action, conn.display):
        con = await connect_maintenance(conn)
        tmp: str | None = None
        tmp_oid: int | None = None
        pointer: Path | None = None
        old = ""
        try:
            report(Step("validate", "running", snap.filename))
            info = await check_clone_allowed(conn, con, what="restore")
            server_id = await _server_id(con)
            await _check_clone_db(con, snap, server_id)
            report(Step("validate", "ok", f"clone database {snap.get('clone_database')} is present"))
            tables = await _probe_tables(conn, con) if pre_snapshot else 0
            ts = utcnow()
            names = await _database_names(con)
            if pre_snapshot:
                ts, pointer = free_name(store.directory, "pre-rollback", CLONE_SUFFIX)
            old = clone_name(conn.dbname, ts, names)
            tmp = clone_name(conn.dbname, ts, names | {old}, tag="dbsage_new")
            report(Step("restore", "running", snap.filename))
            report(Log(f"Copying clone {snap.get('clone_database')} into {tmp} (STRATEGY FILE_COPY)"))
            total = snap.get("clone_bytes") if isinstance(snap.get("clone_bytes"), int) else None
            report(Progress("restore", 0, total, 0.0))
            try:
                await _create_copy(con, tmp, snap.get("clone_database"), info.major)
            except asyncpg.PostgresError as exc:
                tmp = None
                raise _explain(exc, str(snap.get("clone_database")), "restore") from None
            tmp_oid = await con.fetchval("SELECT oid FROM pg_database WHERE datname = $1", tmp)
            report(Progress("restore", total or 0, total, time.monotonic() - started))
            swap = await carry_over_commands(con, conn.dbname, tmp)
            if pre_snapshot:
                size = await con.fetchval("SELECT pg_database_size($1)", conn.dbname)
                old_oid = await con.fetchval("SELECT oid FROM pg_database WHERE datname = $1", conn.dbname)
                result.pre_snapshot = _write_snapshot(
                    store, pointer, ts, "pre-rollback", conn=conn, info=info, server_id=server_id, clone_db=old,
                    clone_oid=old_oid, clone_bytes=size, tables=tables, purpose=f"before restoring {snap.filename}",
                    notes=f"Taken automatically by dbsage-tui {action} (the database as it was, renamed away).",
                    protected=False, duration=0.0)
            qt, qo, qn = (inspect.quote_ident(x) for x in (conn.dbname, old, tmp))
            swap += [f"ALTER DATABASE {qt} RENAME TO {qo}", f"ALTER DATABASE {qn} RENAME TO {qt}",
                     f"ALTER DATABASE {qo} WITH ALLOW_CONNECTIONS false IS_TEMPLATE true"]
            report(Log(f"Swapping in one transaction: {conn.dbname} -> {old}, {tmp} -> {conn.dbname}"))
            try:
                async with con.transaction():
                    for stmt in swap:
                        await con.execute(stmt)
            except asyncpg.PostgresError as exc:
                raise _explain(exc, conn.dbname, "restore") from None
            tmp = None  # it is the target now
        except BaseException as exc:
            committed = False
            if tmp is not None or pointer is not None:
                with contextlib.suppress(Exception):
                    fresh = await _settle(conn, con)
                    try:
                        # A cancellation can land after COMMIT reached the server: then the swap stands.
                        committed = tmp_oid is not None and tmp_oid == await fresh.fetchval(
                            "SELECT oid FROM pg_database WHERE datname = $1", conn.dbname)
                        if not committed and tmp is not None:
                            await _drop_database(fresh, tmp, tmp_oid)
                    finally:
                        await fresh.close()
            if pointer is not None and not committed:
                remove_files(pointer)
                result.pre_snapshot = None
            outcome, msg = audit_outcome(exc)
            report(Step("restore", "failed", msg))
            store.audit(action, outcome,
                        snapshot=snap.filename, type="clone", target=conn.display,
                        duration_seconds=round(time.monotonic() - started, 3), error=msg)
            if isinstance(exc, asyncpg.PostgresError):
                raise _explain(exc, conn.dbname, "restore") from None
            raise
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(con.close(), 5)
        report(Step("restore", "ok", f"{snap.filename} swapped in"))
        if pre_snapshot:
            report(Step("pre-rollback snapshot", "ok", result.pre_snapshot.filename))
        else:
            report(Step("pre-rollback snapshot", "skipped", "--no-pre-snapshot"))
            await _drop_replaced(conn, old, result, report)
    report(Step("smoke test", "running", ""))
    result.checks = await _smoke(conn, snap)
    report_checks(result, report)
    result.duration = round(time.monotonic() - started, 3)
    store.audit(action, "ok" if result.smoke_ok else "smoke-test-failed", snapshot=snap.filename, type="clone",
                target=conn.display, pre_snapshot=result.pre_snapshot.filename if result.pre_snapshot else None,
                duration_seconds=result.duration, checks={c.name: c.ok for c in result.checks},
                warnings=result.warnings or None)
    return result


async def _drop_replaced(conn: ConnInfo, old: str, result: RestoreResult, report: Reporter) -> None:
    """Without a pre-rollback snapshot, the database swapped out is dropped; failing that is a warning."""
    try:
        con = await connect_maintenance(conn)
        try:
            await _drop_database(con, old)
        finally:
            await con.close()
        report(Log(f"Dropped the replaced database {old}"))
    except (DbsageError, asyncpg.PostgresError, OSError) as exc:
        warn = (f"The replaced database {old} could not be dropped ({exc.__class__.__name__}); drop it by hand: "
                f"ALTER DATABASE {old} IS_TEMPLATE false; DROP DATABASE {old};")
        result.warnings.append(warn)
        report(Log("WARNING: " + warn, level="warning"))


async def _smoke(conn: ConnInfo, snap: Snapshot) -> list[SmokeCheck]:
    """A fresh connection works and the database holds as many tables as the snapshot recorded."""
    try:
        con = await inspect.connect(conn)
    except DbsageError as exc:
        return [SmokeCheck("connection", False, exc.message)]
    try:
        scope = await inspect.resolve_scope(con, False, None)
        got = await inspect.tables_count(con, scope.schemas)
    finally:
        await con.close()
    want = snap.get("tables_count")
    return [SmokeCheck("connection", True, f"connected to {conn.display}"),
            SmokeCheck("tables", got == want, f"{got} tables (snapshot: {want})")]


# -- drop -------------------------------------------------------------------------------------------------

async def drop_clone(conn: ConnInfo, snap: Snapshot) -> bool:
    """Drop the clone database of ``snap`` (for delete and cleanup; the caller removes the files after).
    Refuses a snapshot of another server or a database that is not the recorded clone (BadInput /
    InvalidSnapshot); True if dropped, False if it was already gone."""
    name = snap.get("clone_database")
    if snap.get("type") != "clone" or not isinstance(name, str) or not name:
        raise InvalidSnapshot(f"{snap.filename} is not a clone snapshot.")
    check_local(conn)
    _same_server(conn, snap)
    con = await connect_maintenance(conn)
    try:
        recorded, server_id = snap.get("server_id"), await _server_id(con)
        if recorded and server_id and recorded != server_id:
            raise BadInput(f"{snap.filename} was taken on another PostgreSQL server.",
                           "Connect to the server it was taken on.")
        oid = snap.get("clone_oid")
        found = await con.fetchval("SELECT oid FROM pg_database WHERE datname = $1", name)
        if found is None:
            return False
        if isinstance(oid, int) and found != oid:
            raise InvalidSnapshot(f"The database {name} is not the clone {snap.filename} was taken into; "
                                  "it was left alone.", "Delete the snapshot's files only.")
        try:
            return await _drop_database(con, name, found)
        except asyncpg.PostgresError as exc:
            raise _explain(exc, name, f"drop the clone database {name}") from None
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(con.close(), 5)
