"""``restore SNAPSHOT --dry-run`` and the preview in the restore's confirmation: what a restore would do,
against the live database, exactly, while nothing changes (the database's dump is compared before/after).
And the migration-version check (issue 31 §3) with a real migration tool, Alembic."""

from __future__ import annotations

import json
import os
import pty
import subprocess
from pathlib import Path

import pytest

from services.diff.schema import load_model
from services.server.preview import schema_model
from services.snapshots.store import SnapshotStore
from tests.helpers import full_dump, url


def dbsage(db, snapdir, *args, cwd=None, **kw):
    env = {**os.environ, "DATABASE_URL": url(db)}
    return subprocess.run(["dbsage-tui", "--dir", str(snapdir), *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=300, **kw)


def snapshot(db, snapdir, label: str) -> str:
    res = dbsage(db, snapdir, "snapshot", "--label", label, "--json")
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)["filename"]


def confirm_with_tty(db, snapdir, *args, answer: str = "n\n", cwd=None):
    """The restore's confirmation as on a terminal: stdin is a pty, ``answer`` typed into it."""
    master, slave = pty.openpty()
    try:
        os.write(master, answer.encode())
        return dbsage(db, snapdir, "restore", *args, stdin=slave, cwd=cwd)
    finally:
        os.close(master)
        os.close(slave)


def test_dry_run_lists_exactly_what_changes_and_touches_nothing(pg, db, snapdir, tmp_path):
    pg.psql("""CREATE TABLE items (id int PRIMARY KEY, name text, price numeric DEFAULT 0);
               INSERT INTO items SELECT i, 'item ' || i, i FROM generate_series(1, 300) i;
               CREATE TABLE orders (id int PRIMARY KEY, item int REFERENCES items);
               INSERT INTO orders SELECT i, i FROM generate_series(1, 40) i;
               CREATE FUNCTION public.total() RETURNS bigint LANGUAGE sql AS 'SELECT count(*) FROM orders';
               CREATE SCHEMA supabase_migrations;
               CREATE TABLE supabase_migrations.schema_migrations (version text PRIMARY KEY, name text);
               INSERT INTO supabase_migrations.schema_migrations VALUES ('20260101000000', 'init');""", db.dbname)
    pg.psql("""CREATE INDEX items_name ON items (name); ALTER TABLE items ENABLE ROW LEVEL SECURITY;
               CREATE POLICY mine ON items USING (id > 0);
               CREATE FUNCTION public.touch() RETURNS trigger LANGUAGE plpgsql AS $$
               BEGIN
                 NEW.id := NEW.id; RETURN NEW;
               END $$;
               CREATE TRIGGER t BEFORE UPDATE ON orders FOR EACH ROW EXECUTE FUNCTION public.touch();""",
            db.dbname)
    name = snapshot(db, snapdir, "before-change")
    # The preview reads only the schema's two ends of the file: the same model as reading it whole.
    snap = SnapshotStore(snapdir).list()[0]
    assert schema_model(snap).objects == load_model(snap.path).objects
    pg.psql("""CREATE TABLE added (id int); INSERT INTO added SELECT generate_series(1, 7);
               ALTER TABLE items DROP COLUMN price;
               CREATE OR REPLACE FUNCTION public.total() RETURNS bigint LANGUAGE sql AS 'SELECT 42::bigint';
               DELETE FROM orders WHERE id > 30; DELETE FROM items WHERE id > 290;
               INSERT INTO supabase_migrations.schema_migrations VALUES ('20260105000000', 'added'),
                                                                        ('20260106000000', 'prices');""",
            db.dbname)
    project = tmp_path / "project"
    (project / "supabase" / "migrations").mkdir(parents=True)
    for f in ("20260101000000_init.sql", "20260105000000_added.sql", "20260106000000_prices.sql", "README"):
        (project / "supabase" / "migrations" / f).write_text("-- migration\n")
    before = full_dump(db)
    res = dbsage(db, snapdir, "restore", name, "--dry-run", "--json", cwd=project)
    assert res.returncode == 0, res.stderr
    assert full_dump(db) == before  # the dry run changed nothing
    out = json.loads(res.stdout)
    assert out["schema"]["gone"] == [{"kind": "table", "name": "public.added"}]
    assert {"kind": "column", "name": "public.items.price"} in out["schema"]["back"]
    assert out["schema"]["changed"] == [{"kind": "function", "name": "public.total()", "detail": "body changed"}]
    moved = {r["table"]: (r["now"], r["snapshot"], r["delta"], r["exact"]) for r in out["rows"] if r["delta"]}
    assert moved == {"public.added": (7, None, -7, True), "public.items": (290, 300, 10, True),
                     "public.orders": (30, 40, 10, True), "supabase_migrations.schema_migrations": (3, 1, -2, True)}
    undone = out["migrations"]["supabase"]
    assert undone["undone"] == [{"version": "20260105000000", "name": "added"},
                                {"version": "20260106000000", "name": "prices"}]
    assert undone["snapshot_head"] == {"version": "20260101000000", "name": "init"}
    assert out["local_migration_files"] == ["supabase/migrations/20260105000000_added.sql",
                                            "supabase/migrations/20260106000000_prices.sql"]
    assert out["estimate_seconds"] is None  # no restore yet to learn from
    # The text says the same, briefly.
    res = dbsage(db, snapdir, "restore", name, "--dry-run", cwd=project)
    assert res.returncode == 0, res.stderr
    for line in ("Gone after the restore (1):", "  table public.added", "  public.items: 290 → 300 (+10)",
                 "  public.added: 7 → gone (-7)", "  function public.total(): body changed",
                 "Migrations undone (supabase, back to 20260101000000 init):", "  20260106000000 prices"):
        assert line in res.stdout.splitlines(), res.stdout
    assert full_dump(db) == before
    # After a real restore, the next preview finds nothing to change and estimates the duration.
    assert dbsage(db, snapdir, "restore", name, "--yes").returncode == 0
    out = json.loads(dbsage(db, snapdir, "restore", name, "--dry-run", "--json").stdout)
    assert out["schema"] == {"gone": [], "back": [], "changed": []} and out["migrations"] == {}
    assert all(r["delta"] == 0 for r in out["rows"]) and out["estimate_seconds"] > 0


def test_confirmation_shows_the_preview_and_no_changes_nothing(pg, db, snapdir):
    pg.psql("CREATE TABLE items (id int); INSERT INTO items SELECT generate_series(1, 5);", db.dbname)
    name = snapshot(db, snapdir, "base")
    pg.psql("CREATE TABLE later (id int); INSERT INTO items VALUES (6);", db.dbname)
    before = full_dump(db)
    res = confirm_with_tty(db, snapdir, name)
    assert res.returncode == 0, res.stderr
    assert "Compared with the database now:" in res.stdout
    assert "    table public.later" in res.stdout and "    public.items: 6 → 5 (-1)" in res.stdout
    assert "Cancelled: nothing was changed." in res.stdout
    assert full_dump(db) == before


def test_dry_run_refuses_a_clone_and_a_missing_snapshot_in_one_line(pg, db, snapdir):
    res = dbsage(db, snapdir, "restore", "5", "--dry-run")
    assert res.returncode == 2 and "Traceback" not in res.stderr and "no snapshot #5" in res.stderr


ALEMBIC_ENV = """import os
from alembic import context
from sqlalchemy import create_engine

url = os.environ["DATABASE_URL"].replace("postgresql://", "postgresql+psycopg://", 1)
with create_engine(url).connect() as connection:
    context.configure(connection=connection, target_metadata=None)
    with context.begin_transaction():
        context.run_migrations()
"""
REVISION = """from alembic import op
revision = {rev!r}
down_revision = {down!r}


def upgrade():
    op.execute({sql!r})


def downgrade():
    pass
"""


@pytest.fixture
def alembic_project(tmp_path) -> Path:
    """A project with two Alembic revisions: 0001 makes items, 0002 adds a column and a table."""
    path = tmp_path / "app"
    versions = path / "migrations" / "versions"
    versions.mkdir(parents=True)
    (path / "alembic.ini").write_text("[alembic]\nscript_location = %(here)s/migrations\n")
    (path / "migrations" / "env.py").write_text(ALEMBIC_ENV)
    (versions / "0001_items.py").write_text(REVISION.format(
        rev="0001", down=None, sql="CREATE TABLE items (id int PRIMARY KEY); INSERT INTO items VALUES (1), (2)"))
    (versions / "0002_price.py").write_text(REVISION.format(
        rev="0002", down="0001", sql="ALTER TABLE items ADD COLUMN price int DEFAULT 1; CREATE TABLE audit (x int)"))
    return path


def test_migration_version_check_and_alembic_reapplies_after_restore(pg, db, snapdir, alembic_project):
    env = {**os.environ, "DATABASE_URL": url(db)}
    alembic = ["alembic", "-c", str(alembic_project / "alembic.ini")]
    res = subprocess.run([*alembic, "upgrade", "0001"], env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    res = dbsage(db, snapdir, "guard", "--", *alembic, "upgrade", "head", cwd=alembic_project)
    assert res.returncode == 0, res.stderr
    snap = SnapshotStore(snapdir).list()[0]
    assert snap.label == "before-alembic" and snap.meta["guard"]["migrations"] == {
        "alembic": {"version": "0001", "name": None}}
    after_migration = full_dump(db)
    # The confirmation says which migration the restore undoes and how to re-apply it; "n" changes nothing.
    res = confirm_with_tty(db, snapdir, snap.filename, cwd=alembic_project)
    assert "Migrations undone (alembic, back to 0001):" in res.stdout and "    0002" in res.stdout
    assert "re-apply afterwards with: alembic upgrade head" in res.stdout
    assert full_dump(db) == after_migration
    # Restored, the history is the snapshot's: alembic re-applies 0002 as it would on a fresh run.
    assert dbsage(db, snapdir, "restore", snap.filename, "--yes").returncode == 0
    assert pg.psql("SELECT version_num FROM alembic_version", db.dbname).strip() == "0001"
    assert pg.psql("SELECT to_regclass('public.audit') IS NULL", db.dbname).strip() == "t"
    res = subprocess.run([*alembic, "upgrade", "head"], env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert pg.psql("SELECT version_num FROM alembic_version", db.dbname).strip() == "0002"
    assert full_dump(db) == after_migration
