"""The offline diff, on real dumps taken by our own engine from a real PostgreSQL 18: known changes are
reported exactly (nothing more, nothing less), unchanged databases diff empty, schema-only sides say so,
and COPY data streams past without being held."""

from __future__ import annotations

import tracemalloc

import pytest

from services.diff import compare, schema
from services.errors import InvalidSnapshot
from services.server import dump
from services.snapshots.store import SnapshotStore
from tests.helpers import FIXTURES, has_extension, load_fixture


def changes(result: compare.DiffResult) -> dict:
    """The schema part of the result as sets, so that order does not matter to the assertions."""
    js = result.to_json()["schema"]
    return {"added": {(c["kind"], c["name"]) for c in js["added"]},
            "removed": {(c["kind"], c["name"]) for c in js["removed"]},
            "changed": {(c["kind"], c["name"], c["detail"]) for c in js["changed"]}}


def rows(result: compare.DiffResult) -> list[tuple]:
    return [(r["table"], r["before"], r["after"], r["delta"]) for r in result.to_json()["rows"]]


@pytest.fixture
def store(snapdir) -> SnapshotStore:
    return SnapshotStore(snapdir)


@pytest.fixture
def pagila(pg18, db18):
    load_fixture(pg18, db18, FIXTURES / "pagila-schema.sql")
    return db18


@pytest.fixture
def northwind(pg18, db18):
    load_fixture(pg18, db18, FIXTURES / "northwind.sql")
    return db18


async def test_known_changes_on_pagila_are_reported_exactly(pg18, pagila, store):
    pg18.psql("INSERT INTO public.language (name) VALUES ('English'), ('Italian'), ('Japanese')",
              pagila.dbname)
    before = await dump.snapshot(pagila, store, "before")
    pg18.psql("""
        CREATE TABLE public.audit_note (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                                        note text NOT NULL);
        INSERT INTO public.audit_note (note) VALUES ('first');
        ALTER TABLE public.staff DROP COLUMN picture;
        ALTER TABLE public.film ALTER COLUMN rental_duration SET DEFAULT 5;
        CREATE INDEX idx_film_release_year ON public.film (release_year);
        CREATE POLICY staff_self ON public.staff FOR SELECT TO authenticated USING (active);
        CREATE OR REPLACE FUNCTION public.last_updated() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            NEW.last_update = clock_timestamp();
            RETURN NEW;
        END $$;
        DELETE FROM public.language WHERE name = 'Italian';
        INSERT INTO public.category (name) VALUES ('Action'), ('Comedy');
        """, pagila.dbname)
    after = await dump.snapshot(pagila, store, "after")

    result = compare.diff_snapshots(before, after)

    assert changes(result) == {
        # The new table's columns, primary key and identity sequence are part of it, not listed again.
        "added": {("table", "public.audit_note"), ("index", "public.idx_film_release_year"),
                  ("policy", "public.staff.staff_self")},
        "removed": {("column", "public.staff.picture")},
        "changed": {("column", "public.film.rental_duration", "default 3 → 5"),
                    ("function", "public.last_updated()", "body changed")},
    }
    expected_rows = [("public.audit_note", None, 1, 1), ("public.category", 0, 2, 2),
                     ("public.language", 3, 2, -1)]
    assert rows(result) == expected_rows
    assert result.data and result.rows_source == "metadata" and result.notes == []
    # Counting COPY rows in the files gives the same answer as the metadata.
    scanned = compare.diff(before.path, after.path, None, None)
    assert rows(scanned) == expected_rows and scanned.rows_source == "scan"
    assert changes(scanned) == changes(result)

    text = compare.format_text(result)
    for line in ("  + table public.audit_note", "  - column public.staff.picture",
                 "  ~ column public.film.rental_duration: default 3 → 5",
                 "  ~ function public.last_updated(): body changed", "  + index public.idx_film_release_year",
                 "  + policy public.staff.staff_self", "Schema: 3 added, 1 removed, 2 changed"):
        assert line in text.splitlines()
    assert [ln.split() for ln in text.splitlines() if ln.strip().startswith("public.language")] == \
        [["public.language", "3", "2", "-1"]]


async def test_each_kind_of_object_is_compared(pg18, db18, store):
    trgm = has_extension(pg18, "pg_trgm")
    pg18.psql("""
        CREATE TYPE public.mood AS ENUM ('sad', 'ok');
        CREATE DOMAIN public.posint AS integer CHECK (VALUE > 0);
        CREATE TABLE public.t (id serial PRIMARY KEY, name text, qty public.posint, m public.mood);
        CREATE VIEW public.v AS SELECT id, name FROM public.t;
        CREATE MATERIALIZED VIEW public.mv AS SELECT count(*) AS n FROM public.t;
        CREATE TABLE public.parted (k int, d date) PARTITION BY RANGE (d);
        CREATE TABLE public.parted_2024 PARTITION OF public.parted
            FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
        CREATE TABLE public.parted_2025 PARTITION OF public.parted
            FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
        CREATE INDEX ON public.parted (k);
        CREATE FUNCTION public.f(a integer, OUT b text) LANGUAGE sql AS 'select a::text';
        CREATE FUNCTION public.g(a integer) RETURNS integer LANGUAGE sql AS 'select a';
        CREATE FUNCTION public.h(a integer) RETURNS integer LANGUAGE sql AS 'select a';
        COMMENT ON TABLE public.t IS 'things';
        GRANT SELECT ON public.t TO app_reader;
        INSERT INTO public.t (name, qty, m) VALUES ('a', 1, 'ok');
        """, db18.dbname)
    before = await dump.snapshot(db18, store, "before")
    pg18.psql(f"""
        CREATE SCHEMA extra;
        {"CREATE EXTENSION pg_trgm;" if trgm else ""}
        CREATE TABLE extra.u (id serial, t_id int REFERENCES public.t (id));
        ALTER TYPE public.mood ADD VALUE 'happy';
        ALTER TABLE public.t ALTER COLUMN name SET NOT NULL, ALTER COLUMN qty TYPE integer;
        ALTER TABLE public.t ADD CONSTRAINT t_name_check CHECK (length(name) > 0);
        ALTER TABLE public.t ADD CONSTRAINT t_name_key UNIQUE (name);
        ALTER TABLE public.t ENABLE ROW LEVEL SECURITY;
        CREATE OR REPLACE VIEW public.v AS SELECT id, name, qty FROM public.t;
        COMMENT ON TABLE public.t IS 'things, renamed';
        COMMENT ON COLUMN public.t.qty IS 'how many';
        GRANT INSERT ON public.t TO app_reader;
        ALTER TABLE public.parted DETACH PARTITION public.parted_2025;
        CREATE OR REPLACE FUNCTION public.f(a integer, OUT b text) LANGUAGE sql STABLE AS 'select a::text';
        DROP FUNCTION public.g(integer);
        CREATE FUNCTION public.g(a integer, b text) RETURNS integer LANGUAGE sql AS 'select a';
        DROP FUNCTION public.h(integer);
        CREATE FUNCTION public.h(a integer) RETURNS bigint LANGUAGE sql AS 'select a';
        CREATE TRIGGER t_touch BEFORE UPDATE ON public.t FOR EACH ROW
            EXECUTE FUNCTION suppress_redundant_updates_trigger();
        DROP MATERIALIZED VIEW public.mv;
        """, db18.dbname)
    after = await dump.snapshot(db18, store, "after")

    result = compare.diff_snapshots(before, after)

    assert changes(result) == {
        "added": {("schema", "extra"), ("table", "extra.u"), ("constraint", "public.t.t_name_check"),
                  ("constraint", "public.t.t_name_key"),
                  ("function", "public.g(integer, text)"), ("trigger", "public.t.t_touch"),
                  ("comment", "column public.t.qty")} | ({("extension", "pg_trgm")} if trgm else set()),
        "removed": {("materialized_view", "public.mv"), ("function", "public.g(integer)")},
        "changed": {
            ("type", "public.mood", ("definition CREATE TYPE public.mood AS ENUM ('sad', 'ok') → "
                                     "CREATE TYPE public.mood AS ENUM ('sad', 'ok', 'happy')")),
            ("table", "public.parted_2025",
             "partition of public.parted FOR VALUES FROM ('2025-01-01') TO ('2026-01-01') → none"),
            ("table", "public.t", "row level security disabled → enabled"),
            ("column", "public.t.name", "nullable NULL → NOT NULL"),
            ("column", "public.t.qty", "type public.posint → integer"),
            ("view", "public.v", "definition changed"),
            ("function", "public.f(integer)", "definition changed"),
            ("function", "public.h(integer)", "returns integer → bigint"),
            ("comment", "table public.t", "text things → things, renamed"),
            ("grant", "table public.t", "privileges changed"),
        },
    }
    assert rows(result) == [("extra.u", None, 0, 0)]  # a new, empty table appears in the row list


async def test_unchanged_database_and_self_diff_are_empty(pg18, northwind, store):
    first = await dump.snapshot(northwind, store, "first")
    pg18.psql("ANALYZE", northwind.dbname)  # new planner statistics: the second snapshot carries them, no change
    second = await dump.snapshot(northwind, store, "second")
    assert second.path.read_bytes().count(b"pg_restore_attribute_stats") > \
        first.path.read_bytes().count(b"pg_restore_attribute_stats")
    for a, b in ((first, first), (first, second)):
        result = compare.diff_snapshots(a, b)
        assert result.empty, result.to_json()
        assert result.to_json()["schema"] == {"added": [], "removed": [], "changed": []}
        assert result.to_json()["rows"] == [] and result.data
        text = compare.format_text(result)
        assert "Schema: no changes." in text and "Rows: no table's row count changed." in text


@pytest.mark.every_version  # what pg_dump writes of a table's options depends on the server
async def test_a_table_recreated_unchanged_is_no_change_but_its_options_are(pg, db, store):
    """Debian's PostgreSQL 15.20 stamps every new column with a ``pg_attver`` option of its own choosing,
    which pg_dump writes out: recreating a table changes the stamp and nothing a user made. Options the
    user sets still count. (On servers without the stamp the test holds just the same.)"""
    table = "CREATE TABLE t (a int, b text); ALTER TABLE t ALTER COLUMN a SET (n_distinct = 5);"
    pg.psql(table, db.dbname)
    first = await dump.snapshot(db, store, "first")
    pg.psql("DROP TABLE t; " + table, db.dbname)
    second = await dump.snapshot(db, store, "second")
    result = compare.diff_snapshots(first, second)
    assert result.empty, result.to_json()
    pg.psql("ALTER TABLE t ALTER COLUMN b SET (n_distinct = 7)", db.dbname)
    third = await dump.snapshot(db, store, "third")
    found = changes(compare.diff_snapshots(second, third))
    assert not found["added"] and not found["removed"]
    assert [name for _, name, _ in found["changed"]] == ["public.t.b"], found
    assert "n_distinct" in str(found["changed"]) and "pg_attver" not in str(found["changed"])


async def test_schema_only_side_has_no_data(pg18, northwind, store):
    full = await dump.snapshot(northwind, store, "full")
    schema = await dump.snapshot(northwind, store, "schema", schema_only=True)
    for a, b, meta in ((full, schema, True), (schema, full, True), (full, schema, False)):
        result = compare.diff(a.path, b.path, a.meta if meta else None, b.meta if meta else None)
        js = result.to_json()
        # The same schema, with or without data.
        assert js["schema"] == {"added": [], "removed": [], "changed": []}
        assert js["rows"] == [] and js["data"] is False and js["rows_source"] is None
        assert js["notes"] == [f"No data comparison: {schema.filename} is schema-only."]
        assert "Rows: not compared." in compare.format_text(result)


async def test_large_copy_block_streams_past_without_being_held(pg18, db18, store):
    pg18.psql("CREATE TABLE public.big (id int PRIMARY KEY, payload text);"
              "INSERT INTO public.big SELECT g, 'zz-data-marker-' || md5(g::text) "
              "FROM generate_series(1, 250000) g",
              db18.dbname)
    snap = await dump.snapshot(db18, store, "big")
    size = snap.path.stat().st_size
    assert size > 10_000_000

    seen: list[str] = []
    model = schema.load_model(snap.path, on_sql=seen.append)
    assert model.row_counts == {"public.big": 250000}
    assert seen and not any("zz-data-marker" in text for text in seen)
    assert sum(len(text.encode()) for text in seen) < 4096  # the DDL alone went to the parser

    tracemalloc.start()
    try:
        result = compare.diff(snap.path, snap.path, None, None)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.empty
    assert peak < size / 4, f"peak {peak} bytes for a {size}-byte dump"  # two 1 MiB chunks, not the file


async def test_entry_pglast_cannot_parse_is_compared_as_text(pagila, store, tmp_path):
    snap = await dump.snapshot(pagila, store, "before")
    text = snap.path.read_bytes()
    line = b"CREATE INDEX idx_title ON public.film USING btree (title);"
    assert line in text
    broken = tmp_path / "broken.sql"
    broken.write_bytes(text.replace(line, line[:-1] + b" WITH WITH;"))

    result = compare.diff(snap.path, broken, None, None)

    assert [(c.kind, c.name) for c in result.changed] == [("index", "public.idx_title")]
    assert not result.added and not result.removed
    assert result.notes == [("B (broken.sql): 1 entry pglast could not parse was compared as text: "
                             "index public.idx_title")]


async def test_incomplete_or_foreign_files_are_refused(northwind, store, tmp_path):
    snap = await dump.snapshot(northwind, store, "ok")
    data = snap.path.read_bytes()
    truncated = tmp_path / "truncated.sql"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(InvalidSnapshot, match="incomplete"):
        compare.diff(snap.path, truncated)
    foreign = tmp_path / "notes.sql"
    foreign.write_text("SELECT 1;\n")
    with pytest.raises(InvalidSnapshot, match="not a pg_dump file"):
        compare.diff(foreign, snap.path)

