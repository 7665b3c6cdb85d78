"""Restore fidelity, the heart of the product: after a restore the database is exactly what the snapshot
captured. Measured the way a Postgres engineer would: a pg_dump of the whole database, with owners and
privileges, before the snapshot and after the restore must be equal (``\\restrict`` keys and the server's own
column stamps aside: ``helpers.comparable``)."""

from __future__ import annotations

import re

import pytest

from services.server import dump, restore
from services.snapshots.store import SnapshotStore
from tests.helpers import FIXTURES, SQL, assert_same, comparable, full_dump, has_extension, load_fixture, server_major

#: Restore fidelity depends on the server version (and the bundled tools' against it): each test runs on each.
pytestmark = pytest.mark.every_version


async def roundtrip(server, conn, snapdir, mutate_sql: str, *, schema_only: bool = False):
    """Snapshot, mutate, restore; returns (dump at snapshot time, dump after restore, result)."""
    store = SnapshotStore(snapdir)
    before = full_dump(conn)
    snap = await dump.snapshot(conn, store, "before-change", schema_only=schema_only)
    server.psql(mutate_sql, conn.dbname)
    assert full_dump(conn) != before, "the mutation should change the database"
    result = await restore.restore(conn, store, snap)
    return before, full_dump(conn), result


PAGILA_MUTATIONS = """
    CREATE TABLE public.created_later (id int PRIMARY KEY, note text);
    CREATE SCHEMA scratch; CREATE TABLE scratch.t (x int);
    DROP VIEW public.actor_info;
    ALTER TABLE public.actor ALTER COLUMN first_name SET DEFAULT 'nobody';
    ALTER TABLE public.film DROP COLUMN special_features CASCADE;
    CREATE INDEX actor_last_first ON public.actor (last_name, first_name);
    GRANT SELECT ON public.film TO anon; REVOKE ALL ON public.customer FROM PUBLIC;
    GRANT CREATE ON SCHEMA public TO app_reader;
    ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO app_reader;
    ALTER DEFAULT PRIVILEGES GRANT EXECUTE ON FUNCTIONS TO app_reader;
    CREATE OR REPLACE FUNCTION public.last_day(timestamp with time zone) RETURNS date
        LANGUAGE sql IMMUTABLE STRICT AS $$ SELECT now()::date $$;
    DROP TABLE public.payment_p2022_07;
    CREATE TYPE public.mood AS ENUM ('ok', 'sad');
    CREATE SEQUENCE public.later_seq;
    COMMENT ON SCHEMA public IS 'changed comment';
"""


def pagila_for(server, tmp_path):
    """Pagila as shipped; on a server without pgvector (Debian's PostgreSQL 15) its one vector column
    becomes real[], the hnsw index goes and PostgreSQL 18's uuidv7() and VIRTUAL columns become 15's equivalents, so
    partitions, domains and triggers are still covered there."""
    src = FIXTURES / "pagila-schema.sql"
    if has_extension(server, "vector") and server_major(server) >= 18:
        return src
    text = src.read_text()
    for line in ("CREATE EXTENSION IF NOT EXISTS vector WITH SCHEMA public;",
                 "COMMENT ON EXTENSION vector IS 'vector data type and ivfflat and hnsw access methods';"):
        text = text.replace(line, "")
    text = text.replace("public.vector(20)", "real[]").replace("uuidv7()", "gen_random_uuid()")
    text = text.replace(") VIRTUAL", ") STORED")
    text = "\n".join(ln for ln in text.splitlines() if "USING hnsw" not in ln)
    out = tmp_path / "pagila-novector.sql"
    out.write_text(text)
    return out


async def test_pagila_schema_restores_exactly(pg, db, snapdir, tmp_path):
    """Pagila: partitions, domains, enums, triggers, a materialized view, full-text search. A naive
    psql -f of a --clean dump fails on its partitions; ours must restore it exactly."""
    load_fixture(pg, db, pagila_for(pg, tmp_path))
    before, after, result = await roundtrip(pg, db, snapdir, PAGILA_MUTATIONS)
    assert_same(before, after)
    assert result.smoke_ok, result.checks
    assert result.pre_snapshot is not None and result.pre_snapshot.path.exists()


NORTHWIND_MUTATIONS = """
    DELETE FROM order_details WHERE order_id < 10300;
    UPDATE products SET unit_price = unit_price * 2;
    INSERT INTO region VALUES (99, 'Atlantis');
    ALTER TABLE customers ADD COLUMN loyalty int DEFAULT 0;
    DROP TABLE us_states;
    CREATE TABLE audit_trail (id serial PRIMARY KEY, at timestamptz DEFAULT now());
    REVOKE ALL ON SCHEMA public FROM PUBLIC;
    CREATE PUBLICATION created_later FOR TABLE region;
    ALTER PUBLICATION orders_feed ADD TABLE products;
"""


async def test_northwind_data_restores_exactly(pg, db, snapdir):
    """Northwind, with data: deleted, updated and inserted rows all come back as they were; and its
    publication (a whole-database snapshot has them all) as it was, one made since gone."""
    load_fixture(pg, db, FIXTURES / "northwind.sql")
    pg.psql("CREATE PUBLICATION orders_feed FOR TABLE orders WITH (publish = 'insert')", db.dbname)
    before, after, result = await roundtrip(pg, db, snapdir, NORTHWIND_MUTATIONS)
    assert_same(before, after)
    assert result.smoke_ok
    rows = {c.name: c for c in result.checks}["row counts"]
    assert rows.ok and "14 tables" in rows.detail


BACKSLASH_DATA = r"""
    CREATE TABLE public.paths (id int PRIMARY KEY, p text, b bytea);
    -- Values whose COPY lines end in backslash-dot (C:\. is written C:\\.), a value that is a lone
    -- backslash-dot, NULLs (\N), tabs and newlines (escaped): none of them ends the COPY data.
    INSERT INTO public.paths SELECT i, CASE i % 4 WHEN 0 THEN 'C:\.' WHEN 1 THEN E'\\.' WHEN 2 THEN NULL
        ELSE E'a\tb\nc\\.' END, CASE WHEN i % 3 = 0 THEN NULL ELSE decode(md5(i::text), 'hex') END
        FROM generate_series(1, 5000) i;
    -- Far more backslashes than rows: the scanner's backslash-by-backslash search hands over to find.
    CREATE TABLE public.dense (id int, v text);
    INSERT INTO public.dense SELECT i, repeat(E'\\', 300) || '.' FROM generate_series(1, 3000) i;
"""


async def test_backslash_heavy_data_counts_and_restores_exactly(pg, db, snapdir):
    """COPY data full of backslashes (look-alikes of the end-of-data line, NULLs, escapes, one table with
    300 per row): the row counts the snapshot records are the tables' real counts, and the restore is exact."""
    pg.psql(BACKSLASH_DATA, db.dbname)
    assert pg.psql("SELECT count(*) FROM public.paths WHERE right(p, 2) = '\\.'", db.dbname).strip() == "3750"
    before, after, result = await roundtrip(pg, db, snapdir, "DELETE FROM public.dense WHERE id > 10; "
                                            "UPDATE public.paths SET p = 'x';")
    assert_same(before, after)
    snap = SnapshotStore(snapdir).list()[-1]
    assert snap.meta["row_counts"] == {"public.dense": 3000, "public.paths": 5000}
    assert {c.name: c for c in result.checks}["row counts"].ok


SUPABASE_MUTATIONS = """
    DROP TRIGGER on_auth_user_created ON auth.users;
    CREATE TRIGGER on_auth_user_created AFTER INSERT ON auth.users
        FOR EACH ROW EXECUTE PROCEDURE public.handle_new_user();
    CREATE TABLE public.secrets (id int);
    SET client_min_messages = error;
    ALTER PUBLICATION supabase_realtime ADD TABLE public.secrets;
    RESET client_min_messages;
    DROP POLICY "Users can update own profile." ON public.profiles;
    ALTER TABLE public.todos DISABLE ROW LEVEL SECURITY;
    GRANT ALL ON public.todos TO anon;
    ALTER DEFAULT PRIVILEGES IN SCHEMA public REVOKE ALL ON TABLES FROM anon;
    CREATE OR REPLACE FUNCTION public.handle_new_user() RETURNS trigger LANGUAGE plpgsql
        SECURITY DEFINER SET search_path = '' AS $$ BEGIN RETURN new; END; $$;
    DELETE FROM public.todos WHERE id % 2 = 0;
    ALTER TABLE auth.users ADD CONSTRAINT users_email_check CHECK (email LIKE '%@%');
    INSERT INTO auth.users (email) VALUES ('late@example.com');
"""


async def test_supabase_shape_restores_scope_and_keeps_auth(pg, db, snapdir):
    """On a Supabase-shaped database the managed schemas are out of scope: the public schema comes back
    exactly (policies, RLS, grants, default privileges, the sign-up function), while auth.users keeps its
    rows and its trigger calling public.handle_new_user() survives the restore unchanged."""
    load_fixture(pg, db, SQL / "supabase_shape.sql")
    store = SnapshotStore(snapdir)
    snap = await dump.snapshot(db, store, "before-migration")
    assert snap.meta["schemas"] == ["public", "supabase_migrations"]  # the history rolls back with the schema
    assert "auth" in snap.meta["scope"]["excluded"] and snap.meta["scope"]["supabase"] is True
    assert snap.meta["supabase_version"] == "20241015120000"
    text = snap.path.read_text()
    assert "CREATE TABLE auth.users" not in text and "CREATE EXTENSION" not in text
    assert "EVENT TRIGGER" not in text and "ALTER DEFAULT PRIVILEGES FOR ROLE postgres GRANT" not in text

    pg.psql(SUPABASE_MUTATIONS, db.dbname)
    auth_before_restore = pg.psql("SELECT count(*) FROM auth.users", db.dbname)
    result = await restore.restore(db, store, snap)
    assert result.smoke_ok
    assert any("on_auth_user_created" in p for p in result.preserved)
    # Realtime stays on for the table the snapshot has (the publication is the platform's, not in the
    # dump); the table made since is gone, and with it its membership.
    assert "table public.todos in publication supabase_realtime" in result.preserved
    assert pg.psql("SELECT string_agg(tablename || coalesce(' ' || rowfilter, ''), ',') FROM pg_publication_tables "
                   "WHERE pubname = 'supabase_realtime'", db.dbname).strip() == "todos (id > 0)"

    public_now = _schema_dump(db, "public")
    pg.psql("SELECT 1", db.dbname)
    # Public is exactly as at snapshot time: compare against a fresh load of the same shape + snapshot.
    assert "secrets" not in public_now
    assert 'CREATE POLICY "Users can update own profile."' in public_now
    assert "ALTER TABLE public.todos ENABLE ROW LEVEL SECURITY" in public_now
    # auth kept what happened after the snapshot (it is outside the scope) ...
    assert pg.psql("SELECT count(*) FROM auth.users", db.dbname) == auth_before_restore
    assert "users_email_check" in pg.psql(
        "SELECT string_agg(conname, ',') FROM pg_constraint WHERE conrelid = 'auth.users'::regclass", db.dbname)
    # ... and the sign-up trigger still fires, now calling the restored function body again.
    pg.psql("INSERT INTO auth.users (email, raw_user_meta_data) VALUES ('new@example.com', "
            "'{\"username\": \"newbie\"}')", db.dbname)
    assert pg.psql("SELECT count(*) FROM public.profiles WHERE username = 'newbie'", db.dbname).strip() == "1"


async def test_supabase_shape_full_dump_equal_when_auth_untouched(pg, db, snapdir):
    """The whole-database dump is equal when only in-scope objects changed (auth untouched)."""
    load_fixture(pg, db, SQL / "supabase_shape.sql")
    before, after, result = await roundtrip(pg, db, snapdir, """
        CREATE TABLE public.secrets (id int);
        DROP POLICY "Users can update own profile." ON public.profiles;
        GRANT ALL ON public.todos TO anon;
        ALTER DEFAULT PRIVILEGES IN SCHEMA public REVOKE ALL ON TABLES FROM anon;
        CREATE OR REPLACE FUNCTION public.handle_new_user() RETURNS trigger LANGUAGE plpgsql
            SECURITY DEFINER SET search_path = '' AS $$ BEGIN RETURN new; END; $$;
        DELETE FROM public.todos WHERE id % 2 = 0;
        ALTER TABLE public.profiles DISABLE ROW LEVEL SECURITY;
    """)
    assert_same(before, after)


def _schema_dump(conn, schema: str) -> str:
    import subprocess

    from services.server.processes import embedded_bindir
    res = subprocess.run([str(embedded_bindir() / "pg_dump"), "--schema-only", f"--schema={schema}"],
                         env=conn.child_env(), capture_output=True, text=True, check=True)
    return res.stdout


async def test_schema_only_snapshot_restores_structure_with_empty_tables(pg, db, snapdir):
    load_fixture(pg, db, FIXTURES / "northwind.sql")
    store = SnapshotStore(snapdir)
    snap = await dump.snapshot(db, store, "schema", schema_only=True)
    structure = _schema_dump(db, "public")
    pg.psql("CREATE TABLE extra (x int); DROP TABLE shippers CASCADE;", db.dbname)
    result = await restore.restore(db, store, snap, pre_snapshot=False)
    assert any("schema-only" in w for w in result.warnings)
    assert result.smoke_ok
    assert comparable(_schema_dump(db, "public")) == comparable(structure)
    assert pg.psql("SELECT count(*) FROM customers", db.dbname).strip() == "0"


async def test_restore_failing_on_last_statement_leaves_database_unchanged(pg, db, snapdir):
    """A snapshot whose trailer is intact but whose SQL needs a role that no longer exists: psql fails on
    the GRANT near the end; the transaction rolls back and the database is exactly as before."""
    pg.psql("DROP ROLE IF EXISTS doomed_role; CREATE ROLE doomed_role NOLOGIN;")
    pg.psql("CREATE TABLE t (id int); INSERT INTO t SELECT generate_series(1, 100); "
            "GRANT SELECT ON t TO doomed_role;", db.dbname)
    store = SnapshotStore(snapdir)
    snap = await dump.snapshot(db, store, "with-role")
    pg.psql("REVOKE ALL ON t FROM doomed_role; DROP ROLE doomed_role; "
            "DELETE FROM t WHERE id > 10; CREATE TABLE newer (x int);", db.dbname)
    state = full_dump(db)
    with pytest.raises(restore.OperationFailed) as err:
        await restore.restore(db, store, snap)
    msg = err.value.one_line()
    assert 'role "doomed_role" does not exist' in msg and "line" in msg and "unchanged" in msg
    assert full_dump(db) == state
    assert [s.label for s in store.list()] == ["with-role"], "no restore happened: its pre-rollback copy went"
    audit = store.read_audit()
    assert [(a["action"], a["outcome"]) for a in audit[-2:]] == [("restore", "failed"), ("delete", "ok")]


async def test_rows_loaded_are_checked_before_commit(pg, db, snapdir):
    """The server must load exactly the rows the metadata records, or nothing is committed. The metadata
    is outside the sha256, so record one row fewer for a table: the replay runs, psql's COPY tag says 100,
    and the restore stops before COMMIT with the database as it was."""
    pg.psql("CREATE TABLE t (id int); INSERT INTO t SELECT generate_series(1, 100); "
            "CREATE TABLE u (id int); INSERT INTO u VALUES (1);", db.dbname)
    store = SnapshotStore(snapdir)
    snap = await dump.snapshot(db, store, "counted")
    assert snap.meta["row_counts"] == {"public.t": 100, "public.u": 1}
    pg.psql("DELETE FROM t WHERE id > 10; CREATE TABLE newer (x int);", db.dbname)
    state = full_dump(db)
    store.write_meta(snap.path, {**snap.meta, "row_counts": {"public.t": 99, "public.u": 1}})
    with pytest.raises(restore.OperationFailed) as err:
        await restore.restore(db, store, store.resolve(snap.filename), pre_snapshot=False)
    msg = err.value.one_line()
    assert "loaded 100 rows into public.t" in msg and "records 99" in msg and "unchanged" in msg
    assert full_dump(db) == state

    store.write_meta(snap.path, snap.meta)  # the true counts: the same file now restores
    result = await restore.restore(db, store, store.resolve(snap.filename), pre_snapshot=False)
    rows = {c.name: c for c in result.checks}["row counts"]
    assert rows.ok and "2 tables, 101 rows loaded" in rows.detail
    assert pg.psql("SELECT count(*) FROM t", db.dbname).strip() == "100"


def _across_versions(dump_text: str) -> str:
    """A dump comparable between server versions: ``comparable``, less the header naming the server's
    version and less the ``pg_attver`` stamps (a server without the option has none to show)."""
    text = re.sub(r"pg_attver=N(, )?", "", comparable(dump_text))
    text = re.sub(r"(?m)^ALTER TABLE ONLY \S+ ALTER COLUMN \S+ SET \(\);\n", "", text)
    return re.sub(r"(?m)^-- Dumped from database version .*\n", "", text)


async def test_a_pg15_snapshot_restores_into_pg18(pg15, db15, pg18, db18, snapdir):
    """A project upgraded from 15 to 18 restores a snapshot taken before the upgrade. Debian's 15.20 stamps
    every column with ``pg_attver``, which pg_dump 18 writes out and PostgreSQL 18 rejects ("unrecognized
    parameter"); the restore leaves the stamps out and keeps options users set, so the database on 18 is
    the one the snapshot captured on 15."""
    load_fixture(pg15, db15, FIXTURES / "northwind.sql")
    pg15.psql("ALTER TABLE customers ALTER COLUMN country SET (n_distinct = 20)", db15.dbname)
    store = SnapshotStore(snapdir)
    snap = await dump.snapshot(db15, store, "on-15")
    if "pg_attver=" not in snap.path.read_text():
        pytest.skip(f"this PostgreSQL 15 ({pg15.psql('SHOW server_version').strip()}) does not stamp columns")
    load_fixture(pg18, db18, FIXTURES / "northwind.sql")
    pg18.psql("CREATE TABLE created_later (x int)", db18.dbname)
    result = await restore.restore(db18, store, snap, pre_snapshot=False)
    assert result.smoke_ok, result.checks
    after = full_dump(db18)
    assert "SET (n_distinct=20)" in after
    assert_same(_across_versions(full_dump(db15)), _across_versions(after))


async def test_a_non_superuser_restore_refuses_to_lose_another_roles_default_privileges(pg, db, snapdir):
    """Outside Supabase too: a schema the restoring role owns holds default privileges of a role it is not
    a member of. The snapshot writes them commented out (no restore as this role could set them); a
    restore would drop the schema and lose them, so the pre-flight refuses, naming schema and role, with
    the database as it was."""
    import dataclasses
    pg.psql(f"""DO $$ BEGIN
                  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'app_owner') THEN
                    CREATE ROLE app_owner LOGIN PASSWORD '{pg.password}'; CREATE ROLE alice NOLOGIN;
                  END IF; END $$;""")
    pg.psql("CREATE SCHEMA app AUTHORIZATION app_owner; GRANT CREATE ON DATABASE "
            f'"{db.dbname}" TO app_owner; ALTER DEFAULT PRIVILEGES FOR ROLE alice IN SCHEMA app '
            "GRANT SELECT ON TABLES TO app_reader; SET ROLE app_owner; CREATE TABLE app.t (id int);", db.dbname)
    owner = dataclasses.replace(db, user="app_owner")
    store = SnapshotStore(snapdir)
    snap = await dump.snapshot(owner, store, "as-owner", schemas=["app"])
    text = snap.path.read_text()
    assert "-- dbsage-tui: another role's, left as it is: ALTER DEFAULT PRIVILEGES FOR ROLE alice" in text
    assert snap.meta["default_privileges_left_alone"] == ["alice"]
    pg.psql("INSERT INTO app.t VALUES (1)", db.dbname)
    state = full_dump(db)
    with pytest.raises(restore.OperationFailed) as err:
        await restore.restore(owner, store, snap)
    assert "schema app holds default privileges of alice" in err.value.one_line()
    assert full_dump(db) == state
