"""Clone snapshots on a real PostgreSQL 18: exact round trips through the rename swap, database-level
properties carried over, refusals that leave everything untouched, cleanup after failures."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import socket

import asyncpg
import pytest

from services.errors import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_INVALID_SNAPSHOT, InvalidSnapshot
from services.events import Log
from services.sandbox import LocalServer
from services.server import clone, db_properties
from services.server.catalog import connect_kwargs
from services.snapshots.store import SnapshotStore, load_meta
from tests.helpers import FIXTURES, full_dump, load_fixture


def _databases(server, dbname: str) -> list[str]:
    """Databases made for ``dbname`` by clone snapshots and restores (they all start with its name)."""
    out = server.psql(f"SELECT datname FROM pg_database WHERE datname LIKE '{dbname}\\_\\_dbsage%' ORDER BY 1")
    return out.split()


def _props(server, dbname: str) -> str:
    """Database-level properties as the catalogs hold them (what a plain pg_dump leaves out)."""
    return server.psql(f"""
        SELECT d.datdba::regrole, d.datacl, d.datconnlimit, shobj_description(d.oid, 'pg_database'),
               ARRAY(SELECT s.setrole::regrole::text || ':' || array_to_string(s.setconfig, '|')
                     FROM pg_db_role_setting s WHERE s.setdatabase = d.oid ORDER BY 1)
        FROM pg_database d WHERE d.datname = '{dbname}'""")


def _drop_all(server, dbname: str) -> None:
    for name in _databases(server, dbname):
        server.psql(f'ALTER DATABASE "{name}" IS_TEMPLATE false; DROP DATABASE "{name}" WITH (FORCE)')


@pytest.fixture
def clones(pg18, db18):
    """Drops every database a test made for db18 (the session's server is shared), even on failure."""
    yield
    _drop_all(pg18, db18.dbname)


@pytest.mark.every_version
async def test_swap_on_each_server_version(pg, db, snapdir):
    """CREATE DATABASE ... STRATEGY FILE_COPY and the transactional RENAME swap, on 18 and (when installed) 15."""
    try:
        pg.psql("CREATE TABLE t (x int PRIMARY KEY); INSERT INTO t SELECT generate_series(1, 100)", db.dbname)
        before = full_dump(db)
        store = SnapshotStore(snapdir)
        snap = await clone.create_clone(db, store, "v")
        pg.psql("DELETE FROM t WHERE x > 50; CREATE TABLE u ()", db.dbname)
        res = await clone.restore_clone(db, store, snap)
        assert full_dump(db) == before and res.smoke_ok
        assert len(_databases(pg, db.dbname)) == 2
    finally:
        _drop_all(pg, db.dbname)


async def test_round_trip_is_exact_and_the_pre_rollback_clone_brings_the_mutation_back(pg18, db18, snapdir, clones):
    db = db18.dbname
    load_fixture(pg18, db18, FIXTURES / "northwind.sql")
    pg18.psql(f"""
        CREATE VIEW big_orders AS SELECT order_id, customer_id FROM orders WHERE freight > 100;
        ALTER DATABASE "{db}" SET work_mem = '7MB';
        ALTER DATABASE "{db}" SET search_path = '$user', public, "Odd Schema";
        ALTER ROLE app_reader IN DATABASE "{db}" SET statement_timeout = '5s';
        GRANT CONNECT, TEMPORARY ON DATABASE "{db}" TO app_reader;
        COMMENT ON DATABASE "{db}" IS 'northwind''s dev copy';
        ALTER DATABASE "{db}" CONNECTION LIMIT 40;""", db)
    pg18.psql("GRANT SELECT ON customers TO app_reader", db)
    before, props = full_dump(db18), _props(pg18, db)
    store = SnapshotStore(snapdir)
    events: list = []

    snap = await clone.create_clone(db18, store, "base", purpose="round trip", report=events.append)

    assert snap.filename.endswith("_base.clone") and (snap.path.stat().st_mode & 0o777) == 0o600
    assert snap.path.read_text().startswith(clone.POINTER_HEADER + "\n")
    meta = load_meta(snap.meta_path)
    assert meta["type"] == "clone" and meta["clone_database"] in _databases(pg18, db)
    assert meta["tables_count"] == 14 and meta["row_counts"] is None and meta["clone_bytes"] > 1_000_000
    assert clone.check_pointer(snap) is None
    assert any(isinstance(e, Log) and "Saved" in e.text for e in events)

    pg18.psql("""
        DELETE FROM order_details WHERE order_id < 10300;
        CREATE TABLE added_later (x int); INSERT INTO added_later VALUES (1);
        DROP VIEW big_orders;
        REVOKE SELECT ON customers FROM app_reader; GRANT SELECT ON orders TO app_reader;""", db)
    mutated = full_dump(db18)
    assert mutated != before

    res = await clone.restore_clone(db18, store, snap)

    assert full_dump(db18) == before
    assert _props(pg18, db) == props, "owner, grants, settings, comment and limit carried over"
    assert res.smoke_ok, res.checks
    pre = res.pre_snapshot
    assert pre is not None and pre.label == "pre-rollback" and pre.filename.endswith("_pre-rollback.clone")
    assert pre.path.exists() and pre.meta_path.exists() and clone.check_pointer(pre) is None
    assert load_meta(pre.meta_path)["purpose"] == f"before restoring {snap.filename}"
    assert load_meta(pre.meta_path)["tables_count"] == 15
    assert sorted(_databases(pg18, db)) == sorted([meta["clone_database"], pre.get("clone_database")])

    res2 = await clone.restore_clone(db18, store, pre, pre_snapshot=False)

    assert res2.pre_snapshot is None and res2.smoke_ok and not res2.warnings
    assert full_dump(db18) == mutated
    assert _props(pg18, db) == props
    # Without a pre-rollback snapshot, the database swapped out is dropped; both clones stay.
    assert sorted(_databases(pg18, db)) == sorted([meta["clone_database"], pre.get("clone_database")])
    assert [e["outcome"] for e in store.read_audit()] == ["ok", "ok", "ok"]


async def test_clone_database_is_sealed_and_drop_clone_removes_it(pg18, db18, snapdir, clones):
    pg18.psql("CREATE TABLE t (x int); INSERT INTO t VALUES (1)", db18.dbname)
    snap = await clone.create_clone(db18, SnapshotStore(snapdir), "sealed")
    name = snap.get("clone_database")
    assert pg18.psql(f"SELECT datallowconn, datistemplate FROM pg_database WHERE datname = '{name}'").strip() \
        == "f|t"
    with pytest.raises(asyncpg.PostgresError, match="not currently accepting connections"):
        await asyncpg.connect(**connect_kwargs(db18.with_dbname(name)))
    assert await clone.drop_clone(db18, snap) is True
    assert _databases(pg18, db18.dbname) == []
    assert await clone.drop_clone(db18, snap) is False, "already gone is fine"


async def test_refusals_are_one_line_and_touch_nothing(pg18, db18, snapdir, clones):
    pg18.psql("CREATE TABLE t (x int); INSERT INTO t VALUES (1)", db18.dbname)
    store = SnapshotStore(snapdir)
    before = full_dump(db18)

    # A non-local host is refused before any connection is tried.
    remote = dataclasses.replace(db18, host="db.example.com")
    with pytest.raises(clone.CloneNotAllowed) as exc:
        await clone.create_clone(remote, store, "remote")
    assert exc.value.exit_code == EXIT_BAD_INPUT and "not local" in exc.value.message
    assert "file snapshot" in exc.value.hint

    # Another session connected: named, never terminated.
    other = await asyncpg.connect(**connect_kwargs(db18))
    try:
        pid = other.get_server_pid()
        with pytest.raises(clone.DatabaseBusy) as exc:
            await clone.create_clone(db18, store, "busy")
        assert exc.value.exit_code == EXIT_FAILED and f"pid {pid}" in exc.value.message
        assert "\n" not in exc.value.one_line() and "never terminates" in exc.value.hint
        assert await other.fetchval("SELECT 1") == 1, "the other session is alive"
    finally:
        await other.close()

    # A role without CREATEDB.
    role = f"nocreate_{os.getpid()}"
    pg18.psql(f"CREATE ROLE {role} LOGIN PASSWORD 'pw-{role}'")
    try:
        weak = dataclasses.replace(db18, user=role, password=f"pw-{role}")
        with pytest.raises(clone.CloneNotAllowed, match="may not create databases") as exc:
            await clone.create_clone(weak, store, "weak")
        assert exc.value.exit_code == EXIT_BAD_INPUT
    finally:
        pg18.psql(f"DROP ROLE {role}")

    assert full_dump(db18) == before
    assert _databases(pg18, db18.dbname) == []
    assert sorted(p.name for p in snapdir.iterdir() if not p.name.startswith(".")) == ["audit.log"]

    # Restoring while someone is connected is refused the same way, and the database is untouched.
    snap = await clone.create_clone(db18, store, "base")
    pg18.psql("INSERT INTO t VALUES (2)", db18.dbname)
    changed = full_dump(db18)
    other = await asyncpg.connect(**connect_kwargs(db18))
    try:
        with pytest.raises(clone.DatabaseBusy, match="Cannot restore"):
            await clone.restore_clone(db18, store, snap)
    finally:
        await other.close()
    assert full_dump(db18) == changed
    assert _databases(pg18, db18.dbname) == [snap.get("clone_database")]
    assert sorted(p.name for p in snapdir.glob("*.clone")) == [snap.filename]


async def test_failures_mid_way_leave_the_database_and_directory_as_they_were(pg18, db18, snapdir, clones):
    pg18.psql("CREATE TABLE t (x int); INSERT INTO t VALUES (1)", db18.dbname)
    store = SnapshotStore(snapdir)

    # Taking: a failure after the clone and its files exist removes both.
    def fail_when_saved(event):
        if isinstance(event, Log) and event.text.startswith("Saved"):
            raise RuntimeError("disk gone")

    with pytest.raises(RuntimeError):
        await clone.create_clone(db18, store, "doomed", report=fail_when_saved)
    assert _databases(pg18, db18.dbname) == []
    assert list(snapdir.glob("*.clone*")) == []

    snap = await clone.create_clone(db18, store, "base")
    pg18.psql("INSERT INTO t VALUES (2)", db18.dbname)
    changed = full_dump(db18)

    # Restoring: a failure just before the swap drops the copy and the pre-rollback files.
    def fail_before_swap(event):
        if isinstance(event, Log) and event.text.startswith("Swapping"):
            raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        await clone.restore_clone(db18, store, snap, report=fail_before_swap)
    assert full_dump(db18) == changed
    assert _databases(pg18, db18.dbname) == [snap.get("clone_database")]
    assert [p.name for p in snapdir.glob("*.clone")] == [snap.filename]

    # The clone database dropped by hand: a clear error, nothing touched.
    name = snap.get("clone_database")
    pg18.psql(f'ALTER DATABASE "{name}" IS_TEMPLATE false; DROP DATABASE "{name}"')
    with pytest.raises(InvalidSnapshot, match="no longer exists") as exc:
        await clone.restore_clone(db18, store, snap)
    assert exc.value.exit_code == EXIT_INVALID_SNAPSHOT and "not touched" in exc.value.hint
    assert full_dump(db18) == changed
    assert _databases(pg18, db18.dbname) == []
    assert [p.name for p in snapdir.glob("*.clone")] == [snap.filename]

    # A pointer edited by hand no longer matches its metadata.
    snap.path.write_text(snap.path.read_text().replace(name, "postgres"))
    with pytest.raises(InvalidSnapshot, match="does not match its metadata"):
        await clone.restore_clone(db18, store, snap)
    outcomes = [(e["action"], e["outcome"]) for e in store.read_audit()]
    assert outcomes == [("snapshot", "failed"), ("snapshot", "ok"), ("restore", "failed"), ("restore", "failed")]


async def _cancel_when_blocked(task, server, query_start: str) -> None:
    """Wait until our backend is waiting on a lock in a statement starting with ``query_start``, then
    cancel ``task`` as Ctrl-C or Escape would, and wait for it to finish."""
    sql = ("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
           f"AND query LIKE '{query_start}%'")
    for _ in range(200):
        if task.done() or server.psql(sql).strip() == "1":
            break
        await asyncio.sleep(0.05)
    assert not task.done(), "the restore should be waiting on the lock held by the test"
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


@pytest.mark.parametrize("blocked_in", ["copy", "swap"])
async def test_cancelled_mid_restore_leaves_the_database_as_it_was(pg18, db18, snapdir, clones, blocked_in):
    """Cancelled while CREATE DATABASE waits to copy the clone, or inside the swap transaction: the database
    is untouched, the half-made copy and the pre-rollback files are gone, the clone stays, audit says so."""
    pg18.psql("CREATE TABLE t (x int); INSERT INTO t SELECT generate_series(1, 1000)", db18.dbname)
    store = SnapshotStore(snapdir)
    snap = await clone.create_clone(db18, store, "base")
    pg18.psql("DELETE FROM t WHERE x > 10; CREATE TABLE later ()", db18.dbname)
    changed = full_dump(db18)
    # A COMMENT in an open transaction holds a lock on the database object: CREATE DATABASE ... TEMPLATE
    # (on the clone) and ALTER DATABASE ... RENAME (on the target) wait for it.
    locked = snap.get("clone_database") if blocked_in == "copy" else db18.dbname
    holder = await asyncpg.connect(**_asyncpg_args(pg18.conninfo("postgres")))
    try:
        await holder.execute("BEGIN")
        await holder.execute(f'COMMENT ON DATABASE "{locked}" IS \'held by the test\'')
        task = asyncio.ensure_future(clone.restore_clone(db18, store, snap))
        await _cancel_when_blocked(task, pg18, "CREATE DATABASE" if blocked_in == "copy" else "ALTER DATABASE")
        await holder.execute("ROLLBACK")
    finally:
        await holder.close()
    assert full_dump(db18) == changed
    assert _databases(pg18, db18.dbname) == [snap.get("clone_database")]
    assert sorted(p.name for p in snapdir.iterdir() if not p.name.startswith((".", "audit"))) == [
        snap.filename, snap.filename + ".meta.yaml"]
    assert [(e["action"], e["outcome"]) for e in store.read_audit()][-1] == ("restore", "cancelled")
    res = await clone.restore_clone(db18, store, snap, pre_snapshot=False)  # and it still restores
    assert res.smoke_ok and "later" not in full_dump(db18)


def _asyncpg_args(c) -> dict:
    return {"host": c.host, "port": c.port, "user": c.user, "password": c.password, "database": c.dbname}


def test_clone_names_are_valid_identifiers():
    import datetime as dt
    ts = dt.datetime(2025, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    assert clone.clone_name("Shop-DB", ts) == "shop_db__dbsage_20250102030405"
    long = clone.clone_name("x" * 63, ts)
    assert len(long.encode()) <= 63 and long.endswith("__dbsage_20250102030405")
    assert clone.clone_name("app", ts, {"app__dbsage_20250102030405"}) == "app__dbsage_20250102030405_2"
    assert clone.clone_name("épicerie", ts).isascii()
    assert db_properties.split_guc_list('"$user", public, "Odd ""q"" Schema"') == ["$user", "public", 'Odd "q" Schema']
    assert db_properties.set_command("d", None, 'search_path="$user", public') == \
        "ALTER DATABASE \"d\" SET \"search_path\" = '$user', 'public'"
    assert db_properties.set_command("d", "app_reader", "statement_timeout=5s") == \
        "ALTER ROLE app_reader IN DATABASE \"d\" SET \"statement_timeout\" = '5s'"


@pytest.mark.pg
async def test_a_clone_follows_its_server_to_a_new_port_and_is_refused_on_another_server(tmp_path, pg18, db18):
    """A server is known by its system identifier: after a restart on another port (the demo's case) its
    clone snapshots restore and delete; on another server (pg18 here) they are refused, untouched."""
    own = LocalServer(tmp_path / "pgdata", password="s3cr3t-Test-pw-7Q")
    own.ensure_running()
    try:
        own.psql("CREATE DATABASE shop")
        own.psql("CREATE TABLE t (x int); INSERT INTO t VALUES (1)", "shop")
        store = SnapshotStore(tmp_path / "snapshots")
        snap = await clone.create_clone(own.conninfo("shop"), store, "before")
        old_port = own.port
        own.stop()
        with socket.socket() as busy:  # someone else took the port meanwhile: the restart moves
            busy.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            busy.bind(("127.0.0.1", old_port))
            busy.listen()
            own.start()
        assert own.port != old_port
        own.psql("INSERT INTO t VALUES (2)", "shop")
        with pytest.raises(clone.BadInput, match="another PostgreSQL server"):
            await clone.drop_clone(db18, snap)
        await clone.restore_clone(own.conninfo("shop"), store, snap, pre_snapshot=False)
        assert own.psql("SELECT array_agg(x) FROM t", "shop").strip() == "{1}"
        assert await clone.drop_clone(own.conninfo("shop"), snap) is True
        moved = own.port
        own.stop()
        own.start()
        assert own.port == moved, "a free port is kept across restarts: the address a user noted still works"
    finally:
        own.stop("immediate")
