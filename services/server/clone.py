"""Instant local snapshots (``--type clone``): the server copies the database, no pg_dump, no psql replay.

A clone snapshot is a database on the same server, made with ``CREATE DATABASE clone TEMPLATE db STRATEGY
FILE_COPY`` (a file-level copy; STRATEGY exists from PostgreSQL 15), created with ``ALLOW_CONNECTIONS
false IS_TEMPLATE true`` so that nobody can change what was captured while any CREATEDB role can still copy
it. In the snapshot directory it is a small pointer file ``{YYYYmmddHHMMSS}_{label}.clone`` (it names the
database and says how to restore it) plus the usual ``{file}.meta.yaml``.

Restoring copies the clone to a new database and swaps names in one transaction (ALTER DATABASE ... RENAME is
transactional: verified on PostgreSQL 15 and 18), carrying over the current database's properties
(``db_properties``). The database renamed away becomes the pre-rollback snapshot, at no cost.

Only for local development servers: hosted databases (and Supabase) must use file snapshots. Every
statement runs over a connection to the *maintenance* database (``postgres``, else ``template1``):
``CREATE DATABASE ... TEMPLATE`` and ``RENAME`` both require that nobody is connected to the database, us
included. Other sessions are listed in the refusal (``DatabaseBusy``), never terminated. The server-side
checks (``CloneNotAllowed``: use a file snapshot) and database operations are ``services.server.clone_db``;
the pointer file, ``services.server.clone_file``. A damaged pointer, or a clone database gone or replaced,
is an ``InvalidSnapshot``; any other failure leaves the target database as it was.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import time
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from services.config import ConnInfo
from services.display import human_size, utcnow
from services.errors import BadInput, DbsageError, InvalidSnapshot, audit_failure, in_words
from services.events import Log, Progress, Reporter, Step, null_reporter
from services.server import catalog, clone_db, clone_file
from services.server.clone_db import DatabaseBusy
from services.server.clone_file import POINTER_HEADER, CloneNotAllowed, check_local, check_pointer, clone_name
from services.server.db_properties import carry_over_commands
from services.server.smoke import RestoreResult, seal_restore
from services.snapshots.record import snapshot_record
from services.snapshots.store import CLONE_SUFFIX, Snapshot, SnapshotStore, check_label, free_name

__all__ = ["POINTER_HEADER", "BadInput", "CloneNotAllowed", "DatabaseBusy", "check_pointer", "clone_name",
           "create_clone", "drop_clone", "restore_clone"]


def _write_snapshot(store: SnapshotStore, pointer: Path, ts: dt.datetime, label: str, *, conn: ConnInfo,
                    info: catalog.ServerInfo, server_id: str | None, clone_db: str, clone_oid: int,
                    clone_bytes: int, tables: int, purpose: str, notes: str, protected: bool,
                    duration: float) -> Snapshot:
    """Pointer file, then metadata (each atomic): the snapshot lists only once both are complete."""
    server = f"{conn.host}:{conn.port}"
    data = clone_file.write_pointer(pointer, clone_db, conn.dbname, server, server_id, ts)
    meta = snapshot_record(
        label=label, purpose=purpose, notes=notes, ts=ts, kind="clone", filename=pointer.name, size=len(data),
        sha256=hashlib.sha256(data).hexdigest(), database_version=info.version, database=conn.dbname,
        host=server, tables=tables,
        # Counting rows would read every table of the database: the opposite of an instant snapshot.
        row_counts=None,
        instructions=f"{conn.command} restore {pointer.name}\n# the data is in database {clone_db} on {server}; "
                     "it cannot be restored by hand with psql\n",
        duration=duration, protected=protected,
        details={"clone_database": clone_db, "clone_oid": clone_oid, "clone_bytes": clone_bytes,
                 "clone_size_human": human_size(clone_bytes), "server_id": server_id})
    store.write_meta(pointer, meta)
    return Snapshot(path=pointer, label=label, timestamp=ts, meta=meta, file_size=len(data))


@dataclass
class _Made:
    """What a clone snapshot or restore in the making has left on disk and on the server so far: the pointer
    file (of the snapshot, or of the restore's pre-rollback snapshot), the database being made and its OID,
    and the name the current database goes to (a restore)."""

    pointer: Path | None = None
    db: str | None = None
    oid: int | None = None
    old: str = ""


async def _undo(conn: ConnInfo, con: asyncpg.Connection, made: _Made) -> bool:
    """After a failure or a cancellation: drop the database being made and remove the pointer files, unless
    a restore's swap committed after all (a cancellation can land after COMMIT reached the server): True
    then."""
    committed = False
    if made.db is not None or made.pointer is not None:
        with contextlib.suppress(Exception):
            async with catalog.closing(clone_db.settle(conn, con)) as fresh:
                committed = made.oid is not None and made.oid == await fresh.fetchval(
                    "SELECT oid FROM pg_database WHERE datname = $1", conn.dbname)
                if not committed and made.db is not None:
                    await clone_db.drop_database(fresh, made.db, made.oid)
    if made.pointer is not None and not committed:
        clone_file.remove_files(made.pointer)
    return committed


# -- create -----------------------------------------------------------------------------------------------


async def create_clone(conn: ConnInfo, store: SnapshotStore, label: str, *, purpose: str = "", notes: str = "",
                       protected: bool = False, report: Reporter = null_reporter) -> Snapshot:
    """Take a clone snapshot of ``conn.dbname`` under the directory lock: the database copy, then the pointer
    file and metadata. A failure or cancellation at any point drops the copy and removes the files."""
    check_label(label)
    check_local(conn)
    store.ensure_dir()
    started = time.monotonic()
    with store.lock("snapshot", conn.display):
        made = _Made()
        async with catalog.closing(clone_db.connect_maintenance(conn)) as con:
            try:
                with audit_failure(store.audit, "snapshot", snapshot=None, type="clone",
                                   target=conn.display) as fields:
                    try:
                        return await _take(conn, con, store, label, made, started, report,
                                           purpose=purpose, notes=notes, protected=protected)
                    except BaseException:
                        fields["snapshot"] = made.pointer.name if made.pointer else None
                        await _undo(conn, con, made)
                        raise
            except asyncpg.PostgresError as exc:
                raise clone_db.explain(exc, conn.dbname, "take a clone snapshot") from None


async def _take(conn: ConnInfo, con: asyncpg.Connection, store: SnapshotStore, label: str, made: _Made,
                started: float, report: Reporter, **about) -> Snapshot:
    info = await clone_db.check_clone_allowed(conn, con)
    server_id = await clone_db.read_server_id(con)
    tables = await clone_db.probe_tables(conn, con)
    ts, made.pointer = free_name(store.directory, label, CLONE_SUFFIX)
    made.db = clone = clone_name(conn.dbname, ts, await clone_db.database_names(con))
    size = await con.fetchval("SELECT pg_database_size($1)", conn.dbname)
    report(Log(f"Cloning database {conn.dbname} ({human_size(size)}) into {clone} on "
               f"{conn.host}:{conn.port} (CREATE DATABASE ... TEMPLATE, STRATEGY FILE_COPY)"))
    report(Progress("dump", 0, size, 0.0))
    try:
        made.oid = await clone_db.create_copy(con, clone, conn.dbname, info.major)
    except asyncpg.PostgresError as exc:
        made.db = None  # not made: nothing to drop
        raise clone_db.explain(exc, conn.dbname, "take a clone snapshot") from None
    clone_bytes = await con.fetchval("SELECT pg_database_size($1::oid)", made.oid)
    duration = round(time.monotonic() - started, 3)
    report(Progress("dump", size, size, time.monotonic() - started))
    snap = _write_snapshot(store, made.pointer, ts, label, conn=conn, info=info, server_id=server_id, clone_db=clone,
                           clone_oid=made.oid, clone_bytes=clone_bytes, tables=tables, duration=duration, **about)
    report(Log(f"Saved {made.pointer.name}: database {clone} ({human_size(clone_bytes)}, {tables} tables, "
               f"{duration:.1f}s)"))
    store.audit("snapshot", "ok", snapshot=made.pointer.name, type="clone", target=conn.display,
                clone_database=clone, size_bytes=clone_bytes, duration_seconds=duration)
    return snap


# -- restore ----------------------------------------------------------------------------------------------

async def restore_clone(conn: ConnInfo, store: SnapshotStore, snap: Snapshot, *, pre_snapshot: bool = True,
                        report: Reporter = null_reporter, action: str = "restore") -> RestoreResult:
    """Make ``conn.dbname`` exactly the clone snapshot ``snap`` (a copy swapped in: see the module docstring);
    the database renamed away becomes the pre-rollback snapshot, or is dropped after COMMIT. Until COMMIT, any
    failure or cancellation leaves the target database exactly as it was."""
    started = time.monotonic()
    if problem := check_pointer(snap):
        raise InvalidSnapshot(f"Snapshot {snap.filename} is invalid: {problem}.",
                              "The database was not touched. Choose another snapshot (`dbsage-tui list`).")
    check_local(conn)
    result = RestoreResult(snapshot=snap, pre_snapshot=None)
    with store.lock(action, conn.display):
        swap = _Made()
        async with catalog.closing(clone_db.connect_maintenance(conn)) as con:
            try:
                with audit_failure(store.audit, action, report=report, step="restore", started=started,
                                   snapshot=snap.filename, type="clone", target=conn.display):
                    try:
                        await _swap_in(conn, con, store, snap, swap, result, report, action, pre_snapshot, started)
                    except BaseException:
                        if not await _undo(conn, con, swap):
                            result.pre_snapshot = None
                        raise
            except asyncpg.PostgresError as exc:
                raise clone_db.explain(exc, conn.dbname, "restore") from None
        report(Step("restore", "ok", f"{snap.filename} swapped in"))
        report(Step("analyze", "skipped", "the clone's statistics came with it"))
        if pre_snapshot:
            report(Step("pre-rollback snapshot", "ok", result.pre_snapshot.filename))
        else:
            report(Step("pre-rollback snapshot", "skipped", "--no-pre-snapshot"))
            await _drop_replaced(conn, swap.old, result, report)
    return await seal_restore(store, conn, result, report, action=action, started=started, type="clone")


async def _swap_in(conn: ConnInfo, con: asyncpg.Connection, store: SnapshotStore, snap: Snapshot, swap: _Made,
                   result: RestoreResult, report: Reporter, action: str, pre_snapshot: bool, started: float) -> None:
    report(Step("validate", "running", snap.filename))
    info = await clone_db.check_clone_allowed(conn, con, what="restore")
    server_id = await clone_db.check_clone_db(con, conn, snap)
    report(Step("validate", "ok", f"clone database {snap.get('clone_database')} is present"))
    tables = await clone_db.probe_tables(conn, con) if pre_snapshot else 0
    ts = utcnow()
    names = await clone_db.database_names(con)
    if pre_snapshot:
        ts, swap.pointer = free_name(store.directory, "pre-rollback", CLONE_SUFFIX)
    swap.old = clone_name(conn.dbname, ts, names)
    swap.db = clone_name(conn.dbname, ts, names | {swap.old}, tag="dbsage_new")
    report(Step("restore", "running", snap.filename))
    source = snap.get("clone_database")
    total = snap.get("clone_bytes") if isinstance(snap.get("clone_bytes"), int) else None
    report(Log(f"Copying clone {source} into {swap.db} (STRATEGY FILE_COPY)"))
    report(Progress("restore", 0, total, 0.0))
    try:
        swap.oid = await clone_db.create_copy(con, swap.db, source, info.major)
    except asyncpg.PostgresError as exc:
        swap.db = None
        raise clone_db.explain(exc, str(source), "restore") from None
    report(Progress("restore", total or 0, total, time.monotonic() - started))
    commands = await carry_over_commands(con, conn.dbname, swap.db)
    if pre_snapshot:
        size = await con.fetchval("SELECT pg_database_size($1)", conn.dbname)
        old_oid = await con.fetchval("SELECT oid FROM pg_database WHERE datname = $1", conn.dbname)
        result.pre_snapshot = _write_snapshot(
            store, swap.pointer, ts, "pre-rollback", conn=conn, info=info, server_id=server_id, clone_db=swap.old,
            clone_oid=old_oid, clone_bytes=size, tables=tables, purpose=f"before restoring {snap.filename}",
            notes=f"Taken automatically by dbsage-tui {action} (the database as it was, renamed away).",
            protected=False, duration=0.0)
    qt, qo, qn = (catalog.quote_ident(x) for x in (conn.dbname, swap.old, swap.db))
    commands += [f"ALTER DATABASE {qt} RENAME TO {qo}", f"ALTER DATABASE {qn} RENAME TO {qt}",
                 f"ALTER DATABASE {qo} WITH ALLOW_CONNECTIONS false IS_TEMPLATE true"]
    report(Log(f"Swapping in one transaction: {conn.dbname} -> {swap.old}, {swap.db} -> {conn.dbname}"))
    try:
        async with con.transaction():
            for stmt in commands:
                await con.execute(stmt)
    except asyncpg.PostgresError as exc:
        raise clone_db.explain(exc, conn.dbname, "restore") from None
    swap.db = None  # it is the target now


async def _drop_replaced(conn: ConnInfo, old: str, result: RestoreResult, report: Reporter) -> None:
    """Without a pre-rollback snapshot, the database swapped out is dropped; failing that is a warning."""
    try:
        async with catalog.closing(clone_db.connect_maintenance(conn)) as con:
            await clone_db.drop_database(con, old)
        report(Log(f"Dropped the replaced database {old}"))
    except (DbsageError, asyncpg.PostgresError, OSError) as exc:
        warn = (f"The replaced database {old} could not be dropped ({in_words(exc)}); drop it by hand: "
                f"ALTER DATABASE {old} IS_TEMPLATE false; DROP DATABASE {old};")
        result.warnings.append(warn)
        report(Log("WARNING: " + warn, level="warning"))


# -- drop -------------------------------------------------------------------------------------------------

async def drop_clone(conn: ConnInfo, snap: Snapshot) -> bool:
    """Drop the clone database of ``snap`` (for delete and cleanup; the caller removes the files after).
    Refuses a snapshot of another server or a database that is not the recorded clone (BadInput /
    InvalidSnapshot); True if dropped, False if it was already gone."""
    name = snap.get("clone_database")
    if snap.get("type") != "clone" or not isinstance(name, str) or not name:
        raise InvalidSnapshot(f"{snap.filename} is not a clone snapshot.")
    check_local(conn)
    async with catalog.closing(clone_db.connect_maintenance(conn)) as con:
        clone_db.check_same_server(conn, snap, await clone_db.read_server_id(con))
        oid = snap.get("clone_oid")
        found = await con.fetchval("SELECT oid FROM pg_database WHERE datname = $1", name)
        if found is None:
            return False
        if isinstance(oid, int) and found != oid:
            raise InvalidSnapshot(f"The database {name} is not the clone {snap.filename} was taken into; "
                                  "it was left alone.", "Delete the snapshot's files only.")
        try:
            return await clone_db.drop_database(con, name, found)
        except asyncpg.PostgresError as exc:
            raise clone_db.explain(exc, name, f"drop the clone database {name}") from None
