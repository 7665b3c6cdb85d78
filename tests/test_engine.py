"""The engine called directly, as the TUI calls it: progress events, the demo sandbox."""

from __future__ import annotations

import json

from services import dump
from services.events import Log, Progress
from services.store import SnapshotStore
from tests.conftest import run_cli


async def test_dump_streams_progress_and_pg_dump_lines(pg18, db18, snapdir):
    pg18.psql("CREATE TABLE t (x int, y text); INSERT INTO t SELECT i, repeat('x', 200) "
              "FROM generate_series(1, 20000) i; ANALYZE t;", db18.dbname)
    events = []
    snap = await dump.snapshot(db18, SnapshotStore(snapdir), "events", report=events.append)
    progress = [e for e in events if isinstance(e, Progress)]
    assert progress and progress[0].done == 0 and progress[-1].done == snap.size_bytes
    assert all(a.done <= b.done for a, b in zip(progress, progress[1:], strict=False))
    assert progress[1].total and progress[1].total > 1_000_000, "an estimate from the table's pages"
    verbose = [e.text for e in events if isinstance(e, Log) and e.source == "pg_dump"]
    assert any("dumping contents of table" in t for t in verbose)


def test_demo_sandbox_end_to_end(tmp_path):
    """`--demo` starts an embedded server in the data dir, seeds the shop database once, keeps its own
    snapshot directory, says SANDBOX, and is reused by the next command."""
    env = {"DBSAGE_DATA_DIR": str(tmp_path / "data")}  # as the hermetic fixture sets it
    try:
        res = run_cli("--demo", "snapshot", "--label", "demo-first", "--json", env=env)
        assert res.returncode == 0, res.stderr
        assert "SANDBOX" in res.stderr
        assert (tmp_path / "data" / "demo" / "snapshots").is_dir()
        res = run_cli("--demo", "list", "--json", env=env)
        assert [r["label"] for r in json.loads(res.stdout)] == ["demo-first"]
        res = run_cli("--demo", "restore", "1", "--yes", "--no-pre-snapshot", env=env)
        assert res.returncode == 0, res.stderr
        assert "4 tables, 4,300 rows loaded as recorded" in res.stdout
    finally:
        from services.demo import stop_demo
        stop_demo()
