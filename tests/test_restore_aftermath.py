"""What a restore leaves behind: fresh statistics, no pre-rollback snapshot for a restore that did not
happen, and no pile of pre-rollback snapshots (they have a retention tier of their own)."""

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
