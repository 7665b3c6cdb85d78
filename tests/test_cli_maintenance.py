"""``cleanup`` and ``diff`` as users run them: real snapshots, real files deleted (or not), real dumps compared."""

from __future__ import annotations

import datetime as dt
import json
import shutil

from services.snapshots.listing import format_ts
from services.snapshots.store import SnapshotStore, load_meta, utcnow
from tests.helpers import assert_clean_error, run_cli, url, write_snapshot


def copy_as(snapdir, src, label: str, ts: dt.datetime, **meta_changes) -> str:
    """A copy of a real snapshot under another label and time (metadata kept consistent)."""
    store = SnapshotStore(snapdir)
    name = f"{ts.strftime('%Y%m%d%H%M%S')}_{label}.sql"
    shutil.copyfile(src.path, snapdir / name)
    meta = dict(load_meta(src.meta_path))
    meta.update(label=label, timestamp=format_ts(ts), filename=name, **meta_changes)
    store.write_meta(snapdir / name, meta)
    return name


def test_cleanup_plan_confirm_and_idempotence(pg18, db18, snapdir):
    pg18.psql("CREATE TABLE t (x int); INSERT INTO t VALUES (1);", db18.dbname)
    env = {"DATABASE_URL": url(db18)}
    assert run_cli("snapshot", "--label", "now", "--dir", str(snapdir), env=env).returncode == 0
    src = SnapshotStore(snapdir).list()[0]
    now = utcnow()
    day = (now - dt.timedelta(days=10)).replace(hour=12)
    morning = copy_as(snapdir, src, "morning", day.replace(hour=8))
    evening = copy_as(snapdir, src, "evening", day.replace(hour=20))
    release = copy_as(snapdir, src, "v1.0", day.replace(hour=9))
    pinned = copy_as(snapdir, src, "pinned", day.replace(hour=10), protected=True)
    old = copy_as(snapdir, src, "ancient", now - dt.timedelta(days=400))
    (snapdir / "20200101000000_stale.sql.partial").write_text("half")

    res = run_cli("cleanup", "--dry-run", "--json", "--dir", str(snapdir))
    assert res.returncode == 0, res.stderr
    plan = json.loads(res.stdout)
    assert [d["filename"] for d in plan["delete"]] == [morning]
    assert plan["delete"][0]["reason"] == (f"delete: older snapshot of {day:%Y-%m-%d} superseded by {evening}")
    reasons = {d["filename"]: d["reason"] for d in plan["keep"]}
    assert reasons[release] == "kept: protected label v1.0"
    assert reasons[pinned] == "kept: protected (metadata)"
    assert reasons[old].startswith("kept: newest of ")
    assert reasons[src.filename] == "kept: < 7 days"
    assert plan["leftovers"] == ["20200101000000_stale.sql.partial"]
    assert (snapdir / morning).exists(), "a dry run deletes nothing"

    assert_clean_error(run_cli("cleanup", "--dir", str(snapdir)), 2, "--yes")
    assert (snapdir / morning).exists()

    res = run_cli("cleanup", "--yes", "--json", "--dir", str(snapdir))
    assert json.loads(res.stdout)["deleted"] == [morning]
    assert not (snapdir / morning).exists() and not (snapdir / (morning + ".meta.yaml")).exists()
    assert (snapdir / "20200101000000_stale.sql.partial").exists(), "leftovers only go when asked"
    again = json.loads(run_cli("cleanup", "--yes", "--json", "--dir", str(snapdir)).stdout)
    assert again["deleted"] == [] and again["delete"] == []
    res = run_cli("cleanup", "--yes", "--remove-invalid", "--json", "--dir", str(snapdir))
    assert json.loads(res.stdout)["deleted"] == ["20200101000000_stale.sql.partial"]
    audit = SnapshotStore(snapdir).read_audit()
    assert [e["snapshot"] for e in audit if e["action"] == "delete"] == [morning,
                                                                        "20200101000000_stale.sql.partial"]


def test_diff_cli_reports_exactly_the_changes(pg18, db18, snapdir):
    env = {"DATABASE_URL": url(db18)}
    pg18.psql("CREATE TABLE items (id int PRIMARY KEY, name text, price numeric DEFAULT 1);"
              "INSERT INTO items SELECT i, 'n' || i FROM generate_series(1, 10) i;", db18.dbname)
    assert run_cli("snapshot", "--label", "a", "--dir", str(snapdir), env=env).returncode == 0
    pg18.psql("ALTER TABLE items DROP COLUMN name; CREATE TABLE tags (t text);"
              "ALTER TABLE items ALTER COLUMN price SET DEFAULT 2; DELETE FROM items WHERE id > 7;",
              db18.dbname)
    assert run_cli("snapshot", "--label", "b", "--dir", str(snapdir), env=env).returncode == 0
    res = run_cli("diff", "2", "1", "--json", "--dir", str(snapdir))
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["schema"]["added"] == [{"kind": "table", "name": "public.tags"}]
    assert out["schema"]["removed"] == [{"kind": "column", "name": "public.items.name"}]
    assert [(c["kind"], c["name"]) for c in out["schema"]["changed"]] == [("column", "public.items.price")]
    assert {"table": "public.items", "before": 10, "after": 7, "delta": -3} in out["rows"]
    text = run_cli("diff", "2", "1", "--dir", str(snapdir)).stdout
    assert "+ table public.tags" in text and "- column public.items.name" in text
    assert_clean_error(run_cli("diff", "1", "9", "--dir", str(snapdir)), 2, "no snapshot #9")


def test_protection_by_label_shows_in_list_json_and_show(tmp_path):
    """A label such as v1.0 protects a snapshot from cleanup as the metadata flag does: every face says so."""
    store = SnapshotStore(tmp_path)
    now = utcnow()
    write_snapshot(store, "v1.0", now - dt.timedelta(hours=2))
    write_snapshot(store, "nightly", now - dt.timedelta(hours=1))
    rows = json.loads(run_cli("list", "--json", "--dir", str(tmp_path)).stdout)
    assert [(r["label"], r["protected"]) for r in rows] == [("nightly", False), ("v1.0", True)]
    table = run_cli("list", "--dir", str(tmp_path)).stdout
    assert [ln.rstrip().endswith("P") for ln in table.splitlines() if "| v1.0 " in ln or "| nightly " in ln] \
        == [False, True]
    assert "Label:     v1.0  [protected]" in run_cli("show", "2", "--dir", str(tmp_path)).stdout
