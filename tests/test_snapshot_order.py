"""Snapshots taken within one second (a loop, a script, a restore's pre-rollback right after a snapshot):
their names carry the same second, so the list orders them by the metadata's ``created`` time. "Newest" is
then the last one taken, for the list, the emergency rollback and diff's direction (``loop-10`` is newer than
``loop-9``, although its name sorts first)."""

from __future__ import annotations

import json

from services.snapshots.store import SnapshotStore
from tests.helpers import run_cli, snapshots_in_one_second, url


async def test_snapshots_of_one_second_list_and_roll_back_in_the_order_taken(pg18, db18, snapdir):
    def rows(i: int) -> None:  # loop-9 holds 9 rows, loop-10 holds 10
        pg18.psql(f"DROP TABLE IF EXISTS t; CREATE TABLE t AS SELECT generate_series(1, {9 + i}) AS x", db18.dbname)

    store = SnapshotStore(snapdir)
    first, second = await snapshots_in_one_second(db18, store, ["loop-9", "loop-10"], rows)
    assert first.filename > second.filename, "the names sort the other way round from the order taken"
    assert first.meta["created"] < second.meta["created"]
    env = {"DATABASE_URL": url(db18)}
    listed = json.loads(run_cli("list", "--json", "--dir", str(snapdir), env=env).stdout)
    assert [(r["index"], r["label"]) for r in listed] == [(1, "loop-10"), (2, "loop-9")]

    pg18.psql("DROP TABLE t", db18.dbname)
    res = run_cli("rollback", "--emergency", "--json", "--dir", str(snapdir), env=env)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["snapshot"] == second.filename
    assert pg18.psql("SELECT count(*) FROM t", db18.dbname).strip() == "10"


async def test_diff_shows_older_to_newer_whatever_the_argument_order(pg18, db18, snapdir):
    def state(i: int) -> None:  # "before" (20 items), then "after" (a new table, 5 items fewer)
        pg18.psql("DROP TABLE IF EXISTS extra, items; CREATE TABLE items (id int PRIMARY KEY, name text);"
                  "INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 20) g;"
                  + ("CREATE TABLE extra (x int); DELETE FROM items WHERE id > 15;" if i else ""), db18.dbname)

    store = SnapshotStore(snapdir)
    before, after = await snapshots_in_one_second(db18, store, ["before", "after"], state)
    by_number = {r["label"]: r["index"] for r in json.loads(run_cli("list", "--json", "--dir", str(snapdir)).stdout)}
    assert by_number == {"after": 1, "before": 2}
    results = {}
    for args in (["2", "1"], ["1", "2"], [before.filename, after.filename], [after.filename, before.filename]):
        res = run_cli("diff", *args, "--json", "--dir", str(snapdir))
        assert res.returncode == 0, res.stderr
        results[tuple(args)] = json.loads(res.stdout)
    for args, out in results.items():
        assert (out["a"], out["b"]) == (before.filename, after.filename), args
        assert out["schema"]["added"] == [{"kind": "table", "name": "public.extra"}] and not out["schema"]["removed"]
        assert out["rows"] == [{"table": "public.extra", "before": None, "after": 0, "delta": 0},
                               {"table": "public.items", "before": 20, "after": 15, "delta": -5}]
    assert [out["swapped"] for out in results.values()] == [False, True, False, True]

    text = run_cli("diff", "1", "2", "--dir", str(snapdir)).stdout
    assert text.startswith(f"{before.filename} → {after.filename}\n")
    assert "from the older snapshot to the newer (given newest first" in text
    assert "+ table public.extra" in text and "public.items" in text and "-5" in text
    in_order = run_cli("diff", "2", "1", "--dir", str(snapdir)).stdout
    assert "from the older snapshot to the newer." in in_order and "given newest first" not in in_order
