"""Clone snapshots through the CLI as a user runs them: take, list, restore (with its instant pre-rollback
clone), refuse what does not apply, and delete with its database (cleanup)."""

from __future__ import annotations

import asyncio
import json

import pytest

from services.errors import OperationFailed
from services.server import clone
from services.snapshots import retention
from services.snapshots.store import SnapshotStore
from services.snapshots.validation import CLONE_HEADER
from tests.helpers import FIXTURES, full_dump, load_fixture, run_cli, url


def databases(pg) -> set[str]:
    return set(pg.psql("SELECT datname FROM pg_database").split())


def test_pointer_header_is_what_the_store_checks():
    assert CLONE_HEADER == (clone.POINTER_HEADER + "\n").encode()


def test_clone_snapshot_round_trip_from_the_cli(pg18, db18, snapdir):
    load_fixture(pg18, db18, FIXTURES / "northwind.sql")
    env = {"DATABASE_URL": url(db18)}
    before_dbs = databases(pg18)
    res = run_cli("snapshot", "--label", "instant", "--type", "clone", "--json", "--dir", str(snapdir), env=env)
    assert res.returncode == 0, res.stderr
    meta = json.loads(res.stdout)
    assert meta["type"] == "clone" and meta["filename"].endswith("_instant.clone")
    assert databases(pg18) - before_dbs == {meta["clone_database"]}
    state = full_dump(db18)

    listed = json.loads(run_cli("list", "--json", "--dir", str(snapdir), env=env).stdout)
    assert [(r["label"], r["type"], r["valid"]) for r in listed] == [("instant", "clone", True)]
    assert listed[0]["size_bytes"] == meta["clone_bytes"] > 1_000_000, "the size of the copy, not the pointer"
    assert run_cli("validate", "1", "--dir", str(snapdir), env=env).returncode == 0

    pg18.psql("DELETE FROM order_details; DROP VIEW IF EXISTS customer_orders; CREATE TABLE later (x int);",
              db18.dbname)
    mutated = full_dump(db18)
    res = run_cli("restore", "1", "--yes", "--dir", str(snapdir), env=env)
    assert res.returncode == 0, res.stderr
    assert full_dump(db18) == state
    snaps = SnapshotStore(snapdir).list()
    assert [s.label for s in snaps] == ["pre-rollback", "instant"] and all(s.is_clone for s in snaps)

    # The pre-rollback clone is the mutated database itself: restoring it brings the mutation back.
    res = run_cli("restore", snaps[0].filename, "--yes", "--no-pre-snapshot", "--dir", str(snapdir), env=env)
    assert res.returncode == 0, res.stderr
    assert full_dump(db18) == mutated

    # The password went to the server only: not into the pointer, the metadata, the audit log or output.
    assert db18.password and all(db18.password.encode() not in f.read_bytes() for f in snapdir.iterdir())
    assert db18.password not in res.stdout + res.stderr

    # Not for clones: a diff, compression.
    res = run_cli("diff", "1", "2", "--dir", str(snapdir), env=env)
    assert res.returncode == 3 and "clone snapshot" in res.stderr and "Traceback" not in res.stderr
    res = run_cli("snapshot", "--label", "x", "--type", "clone", "--compress", "zstd", "--dir", str(snapdir),
                  env=env)
    assert res.returncode == 2 and "--compress" in res.stderr

    # Deleting a clone snapshot (cleanup's apply) drops its database first; without a connection it stops.
    pre = snaps[0]
    plan = retention.Plan(keep=[], delete=[retention.Decision(pre.filename, "test")])
    store = SnapshotStore(snapdir)
    with pytest.raises(OperationFailed, match="needs the database connection"):
        retention.apply(store, plan, store.list())
    assert pre.get("clone_database") in databases(pg18) and pre.path.exists()
    deleted = retention.apply(store, plan, store.list(),
                              drop_clone=lambda snap: asyncio.run(clone.drop_clone(db18, snap)))
    assert deleted == [pre.filename] and not pre.path.exists()
    assert pre.get("clone_database") not in databases(pg18)
    assert snaps[1].get("clone_database") in databases(pg18)
    asyncio.run(clone.drop_clone(db18, snaps[1]))


def test_clone_refused_while_another_session_is_connected(pg18, db18, snapdir):
    import subprocess
    holder = subprocess.Popen([str(pg18.bindir / "psql"), "-X", "-q"], stdin=subprocess.PIPE, text=True,
                              env=db18.child_env(), stdout=subprocess.DEVNULL)
    try:
        holder.stdin.write("SELECT 1;\n")
        holder.stdin.flush()
        import time
        deadline = time.monotonic() + 10
        while pg18.psql(f"SELECT count(*) FROM pg_stat_activity WHERE datname = '{db18.dbname}'").strip() == "0":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        res = run_cli("snapshot", "--label", "busy", "--type", "clone", "--dir", str(snapdir),
                      env={"DATABASE_URL": url(db18)})
        assert res.returncode == 1 and "other session" in res.stderr and "psql" in res.stderr
        assert len(res.stderr.strip().splitlines()) <= 2 and "Traceback" not in res.stderr
        assert not list(snapdir.glob("*.clone*"))
    finally:
        holder.stdin.close()
        holder.wait(timeout=10)
