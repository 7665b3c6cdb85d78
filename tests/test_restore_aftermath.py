"""What a restore leaves behind: the planner's statistics (those the snapshot carried on PostgreSQL 18, fresh
ones for the rest), no pre-rollback snapshot for a restore that did not happen, and no pile of pre-rollback
snapshots (they have a retention tier of their own)."""

from __future__ import annotations

import datetime as dt

from services.config import Policy
from services.display import human_size
from services.snapshots.retention import Item, plan
from tests.helpers import cli, full_dump, idle_in_transaction, seed_base_snapshot


def test_only_the_newest_pre_rollback_snapshots_are_kept_whatever_their_age():
    now = dt.datetime(2026, 12, 7, 12, tzinfo=dt.UTC)
    items = [Item(f"2026120{d}120000_pre-rollback.sql", "pre-rollback", now - dt.timedelta(days=7 - d))
             for d in range(1, 7)] + [Item("20261201120000_nightly.sql", "nightly", now - dt.timedelta(days=6))]
    result = plan(items, now, Policy(pre_rollback=2))
    assert [d.filename for d in result.keep] == ["20261206120000_pre-rollback.sql", "20261205120000_pre-rollback.sql",
                                                 "20261201120000_nightly.sql"]
    assert {d.reason for d in result.delete} == {"delete: pre-rollback snapshot older than the newest 2"}


async def test_a_restore_that_did_not_happen_leaves_no_pre_rollback_snapshot(pg18, db18, snapdir):
    seed_base_snapshot(pg18, db18, snapdir)
    before = full_dump(db18)
    blocker, _ = await idle_in_transaction(db18)
    try:
        res = cli(db18, snapdir, "restore", "1", "--yes", "--lock-timeout", "2")
    finally:
        await blocker.close()
    assert res.returncode == 1 and "gave up after waiting" in res.stderr, res.stderr
    assert "the restore did not happen, the database is unchanged" in res.stderr
    assert [p.name.split("_", 1)[1] for p in snapdir.iterdir() if p.suffix == ".sql"] == ["base.sql"]
    assert full_dump(db18) == before


async def test_a_restore_leaves_fresh_statistics_and_list_shows_what_pre_rollbacks_take(pg18, db18, snapdir):
    # Tables without an index too: an index build sets reltuples, only ANALYZE writes column statistics.
    pg18.psql("CREATE TABLE notes (body text); INSERT INTO notes SELECT 'note ' || i FROM generate_series(1, 30) i;"
              "CREATE TABLE tags (tag text); INSERT INTO tags VALUES ('a'), ('b');", db18.dbname)
    seed_base_snapshot(pg18, db18, snapdir)
    res = cli(db18, snapdir, "restore", "1", "--yes")
    assert res.returncode == 0, res.stderr
    stats = pg18.psql("SELECT reltuples::int, relpages > 0 FROM pg_class WHERE oid = 'items'::regclass", db18.dbname)
    assert stats.strip() == "200|t", "the planner (and our size estimates) see the restored rows"
    analyzed = pg18.psql("SELECT string_agg(DISTINCT tablename, ',' ORDER BY tablename) FROM pg_stats "
                         "WHERE schemaname = 'public'", db18.dbname)
    assert analyzed.strip() == "items,notes,tags", "every restored table has column statistics"
    sizes = {p.name.split("_", 1)[1]: p.stat().st_size for p in snapdir.iterdir() if p.suffix == ".sql"}
    listed = cli(db18, snapdir, "list").stdout
    assert (f"2 snapshots, {human_size(sum(sizes.values()))} on disk ({human_size(sizes['pre-rollback.sql'])} "
            "in pre-rollback snapshots; cleanup keeps the newest 3)") in listed, listed


STATS = ("SELECT tablename, attname, null_frac, n_distinct, most_common_vals::text, histogram_bounds::text "
         "FROM pg_stats WHERE schemaname = 'public' ORDER BY 1, 2")


async def test_a_postgres_18_snapshot_brings_back_the_statistics_it_was_taken_with(pg18, db18, snapdir):
    pg18.psql("CREATE TABLE facts (n int, kind text);"
              "INSERT INTO facts SELECT i, 'k' || (i % 7) FROM generate_series(1, 5000) i; ANALYZE facts;"
              "CREATE TABLE fresh (x int); INSERT INTO fresh VALUES (1), (2);", db18.dbname)
    at_snapshot = pg18.psql(STATS, db18.dbname)
    assert cli(db18, snapdir, "snapshot", "--label", "stats").returncode == 0
    pg18.psql("INSERT INTO facts SELECT i, 'z' FROM generate_series(1, 20000) i; ANALYZE facts;", db18.dbname)
    assert pg18.psql(STATS, db18.dbname) != at_snapshot
    res = cli(db18, snapdir, "restore", "1", "--yes", "--no-pre-snapshot")
    assert res.returncode == 0, res.stderr
    assert "analyze: 1 table analyzed; the statistics of 1 table came with the snapshot" in res.stderr
    restored = pg18.psql(STATS, db18.dbname)
    # facts: exactly the statistics of the snapshot's moment, not sampled again; fresh had none: analyzed now.
    assert [ln for ln in restored.splitlines() if ln.startswith("facts|")] == at_snapshot.splitlines()
    assert {ln.split("|")[0] for ln in restored.splitlines()} == {"facts", "fresh"}
    assert pg18.psql("SELECT string_agg(relname || ':' || analyze_count, ',' ORDER BY relname) "
                     "FROM pg_stat_user_tables", db18.dbname).strip() == "facts:0,fresh:1"


async def test_an_older_server_s_snapshot_carries_no_statistics_and_its_restore_analyzes(pg15, db15, snapdir):
    pg15.psql("CREATE TABLE facts (n int); INSERT INTO facts SELECT generate_series(1, 500); ANALYZE facts;",
              db15.dbname)
    assert cli(db15, snapdir, "snapshot", "--label", "old").returncode == 0
    snap = next(snapdir.glob("*_old.sql"))
    assert b"pg_restore_" not in snap.read_bytes()
    assert '"statistics": false' in snap.with_name(snap.name + ".meta.yaml").read_text()
    res = cli(db15, snapdir, "restore", "1", "--yes", "--no-pre-snapshot")
    assert res.returncode == 0 and "analyze: 1 table analyzed\n" in res.stderr, res.stderr
    assert pg15.psql("SELECT count(*) > 0 FROM pg_stats WHERE tablename = 'facts'", db15.dbname).strip() == "t"


async def test_a_postgres_18_snapshot_restores_on_an_older_server_without_its_statistics(pg18, db18, pg15, db15,
                                                                                         snapdir):
    pg18.psql("CREATE TABLE facts (n int PRIMARY KEY); INSERT INTO facts SELECT generate_series(1, 500); "
              "ANALYZE facts;", db18.dbname)
    assert cli(db18, snapdir, "snapshot", "--label", "on-18").returncode == 0
    assert b"pg_restore_attribute_stats" in next(snapdir.glob("*_on-18.sql")).read_bytes()
    res = cli(db15, snapdir, "restore", "1", "--yes", "--no-pre-snapshot")
    assert res.returncode == 0 and "analyze: 1 table analyzed\n" in res.stderr, res.stderr
    assert pg15.psql("SELECT count(*), max(n) FROM facts", db15.dbname).strip() == "500|500"
    assert pg15.psql("SELECT count(*) > 0 FROM pg_stats WHERE tablename = 'facts'", db15.dbname).strip() == "t"
