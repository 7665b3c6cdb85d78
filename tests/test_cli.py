"""The CLI as scripts and users run it: the real ``dbsage-tui`` process against a real server. Each test
checks what a user would: exit codes, one-line errors without tracebacks, files on disk, rows in tables."""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from pathlib import Path

import pytest

from services.snapshots.store import SnapshotStore
from tests.helpers import assert_clean_error, full_dump, run_cli, server_major, url, wait_for, watch_cmdlines


@pytest.fixture
def cli(db, snapdir):
    """Run the CLI on the test database, the URL (with its password) in DATABASE_URL as users would."""
    def run(*args, env=None, **kw):
        full_env = {"DATABASE_URL": url(db), **(env or {})}
        return run_cli(*args, "--dir", str(snapdir), env=full_env, **kw)
    return run


def seed(pg, db):
    pg.psql("""CREATE TABLE items (id int PRIMARY KEY, name text);
               INSERT INTO items SELECT i, 'item ' || i FROM generate_series(1, 500) i;
               CREATE VIEW item_names AS SELECT name FROM items;""", db.dbname)


def test_snapshot_files_metadata_and_permissions(pg, db, snapdir, cli):
    seed(pg, db)
    res = cli("snapshot", "--label", "before-migration", "--purpose", "Pre-migration safety snapshot",
              "--notes", "migration 42", "--json")
    assert res.returncode == 0, res.stderr
    meta = json.loads(res.stdout)
    path = snapdir / meta["filename"]
    assert path.name.endswith("_before-migration.sql")
    stamp = path.name[:14]
    assert meta["timestamp"] == f"{stamp[:4]}-{stamp[4:6]}-{stamp[6:8]}T{stamp[8:10]}:{stamp[10:12]}:{stamp[12:]}Z"
    assert meta["type"] == "full" and meta["tables_count"] == 1
    assert meta["row_counts"] == {"public.items": 500}
    assert meta["size_bytes"] == path.stat().st_size
    import hashlib
    assert meta["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert meta["database_version"].startswith(f"PostgreSQL {server_major(pg)}")
    assert meta["supabase_version"] is None and meta["protected"] is False
    assert meta["schemas"] == ["public"] and meta["database"] == db.dbname
    for key in ("label", "purpose", "size_human", "restore_instructions", "notes", "pg_dump_version",
                "host", "duration_seconds", "tool_version"):
        assert key in meta
    # pg_dump's own run (spawn to exit) is part of the snapshot's duration, never more.
    assert 0 < meta["pg_dump_seconds"] <= meta["duration_seconds"]
    # The metadata file holds the same, under snapshot:, and the dump is a plain --clean dump.
    import yaml
    on_disk = yaml.safe_load((snapdir / (path.name + ".meta.yaml")).read_text())["snapshot"]
    assert on_disk == meta
    text = path.read_text()
    assert "DROP TABLE IF EXISTS public.items;" in text and "OWNER TO" not in text
    assert oct(snapdir.stat().st_mode & 0o777) == "0o700"
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert (snapdir / ".gitignore").read_text().strip().endswith("*")
    assert not list(snapdir.glob("*.partial"))


def test_schema_snapshot_and_list_json(pg, db, snapdir, cli):
    seed(pg, db)
    assert cli("snapshot", "--label", "full-one").returncode == 0
    assert cli("snapshot", "--label", "schema-one", "--type", "schema", "--purpose", "fast").returncode == 0
    res = cli("list", "--json")
    assert res.returncode == 0, res.stderr
    rows = json.loads(res.stdout)
    assert [r["label"] for r in rows] == ["schema-one", "full-one"]
    assert rows[0] == {**rows[0], "index": 1, "type": "schema-only", "purpose": "fast", "protected": False,
                       "valid": True}
    assert set(rows[0]) >= {"index", "filename", "label", "timestamp", "type", "size_bytes", "purpose",
                            "protected", "valid"}
    assert "COPY public.items" not in (snapdir / rows[0]["filename"]).read_text()
    human = cli("list")
    assert "schema-one" in human.stdout and "full-one" in human.stdout and "#" in human.stdout


def test_snapshot_argument_forms(pg, db, snapdir, cli, tmp_path):
    seed(pg, db)
    assert cli("snapshot", "--label", "only").returncode == 0
    name = json.loads(cli("list", "--json").stdout)[0]["filename"]
    assert cli("show", "1").returncode == 0
    assert cli("show", name).returncode == 0
    assert cli("show", str(snapdir / name)).returncode == 0
    assert_clean_error(cli("show", "0"), 2, "no snapshot #0")
    assert_clean_error(cli("show", "-1"), 2, "no snapshot #-1")
    assert_clean_error(cli("show", "7"), 2, "no snapshot #7", "1 to 1")
    assert_clean_error(cli("show", "/etc/passwd"), 2, "not in the snapshot directory")
    outside = tmp_path / name
    outside.write_text("x")
    (snapdir / "20250101000000_link.sql").symlink_to(outside)
    assert "not a regular file" in cli("list", "--json").stdout
    res = cli("validate", "20250101000000_link.sql")
    assert res.returncode == 3 and "INVALID: not a regular file" in res.stdout
    assert_clean_error(cli("show", "nothing.sql"), 2, "No snapshot named nothing.sql")


def test_bad_label_is_refused_with_suggestion(cli, snapdir):
    res = cli("snapshot", "--label", "my release/1")
    assert_clean_error(res, 2, "Invalid label", "Try: my-release-1")
    assert not snapdir.exists() or not list(snapdir.glob("*.sql"))


def test_corrupt_and_truncated_snapshots_are_refused_before_touching_the_database(pg, db, snapdir, cli):
    seed(pg, db)
    assert cli("snapshot", "--label", "good").returncode == 0
    snap = SnapshotStore(snapdir).list()[0]
    pg.psql("DELETE FROM items WHERE id > 100; CREATE TABLE later (x int);", db.dbname)
    state = full_dump(db)
    data = snap.path.read_bytes()

    # One byte flipped in the middle of the COPY data: sha256 mismatch.
    i = data.index(b"item 250")
    snap.path.write_bytes(data[:i] + b"J" + data[i + 1:])
    res = cli("validate", "1")
    assert res.returncode == 3 and "sha256 mismatch" in res.stdout
    assert_clean_error(cli("restore", "1", "--yes"), 3, "invalid", "sha256 mismatch", "not touched")

    # Truncated mid-COPY (metadata size no longer matches, and the trailer is gone).
    snap.path.write_bytes(data[: len(data) // 2])
    assert_clean_error(cli("restore", "1", "--yes"), 3, "invalid")
    assert full_dump(db) == state
    assert [s.label for s in SnapshotStore(snapdir).list()] == ["good"], "no pre-rollback snapshot was taken"


def test_restore_needs_confirmation_without_a_terminal(pg, db, snapdir, cli):
    seed(pg, db)
    assert cli("snapshot", "--label", "x").returncode == 0
    pg.psql("DELETE FROM items", db.dbname)
    assert_clean_error(cli("restore", "1"), 2, "--yes")
    assert pg.psql("SELECT count(*) FROM items", db.dbname).strip() == "0"
    res = cli("restore", "1", "--yes", "--json")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["status"] == "ok" and out["pre_snapshot"].endswith("_pre-rollback.sql")
    assert pg.psql("SELECT count(*) FROM items", db.dbname).strip() == "500"
    entry = SnapshotStore(snapdir).read_audit()[-1]
    assert entry["action"] == "restore" and entry["outcome"] == "ok" and entry["pre_snapshot"] == out["pre_snapshot"]


def test_emergency_rollback_picks_newest_valid_full(pg, db, snapdir, cli):
    seed(pg, db)
    assert cli("snapshot", "--label", "emergency-backup").returncode == 0
    assert cli("snapshot", "--label", "newer-schema", "--type", "schema").returncode == 0
    assert cli("snapshot", "--label", "newest-broken").returncode == 0
    broken = SnapshotStore(snapdir).list()[0]
    broken.path.write_bytes(broken.path.read_bytes()[:-200])
    pg.psql("DROP TABLE items CASCADE; CREATE TABLE oops (x int);", db.dbname)
    res = cli("rollback", "--emergency", "--json")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["snapshot"].endswith("_emergency-backup.sql") and out["status"] == "ok"
    assert pg.psql("SELECT count(*) FROM items", db.dbname).strip() == "500"
    assert pg.psql("SELECT to_regclass('public.oops') IS NULL", db.dbname).strip() == "t"
    # The pre-rollback snapshot captured the broken state and is never itself an emergency target.
    again = json.loads(cli("rollback", "--emergency", "--json").stdout)
    assert again["snapshot"].endswith("_emergency-backup.sql")
    actions = [e["action"] for e in SnapshotStore(snapdir).read_audit()]
    assert actions.count("rollback") == 2


def test_no_database_and_unreachable_database(snapdir, tmp_path):
    res = run_cli("snapshot", "--label", "x", "--dir", str(snapdir))
    assert_clean_error(res, 2, "No database is configured", "--demo")
    started = time.monotonic()
    res = run_cli("snapshot", "--label", "x", "--dir", str(snapdir),
                  env={"DATABASE_URL": "postgresql://u:pw@127.0.0.1:1/db"})
    assert_clean_error(res, 1, "Connection", "failed")
    assert time.monotonic() - started < 15
    assert not list(snapdir.glob("*.sql")) if snapdir.exists() else True


def test_wrong_password_and_missing_database(db, snapdir):
    res = run_cli("list", "--dir", str(snapdir), "--db-url", url(db, "wrong"))
    assert res.returncode == 0  # listing needs no database
    res = run_cli("snapshot", "--label", "x", "--dir", str(snapdir), env={"DATABASE_URL": url(db, "wrong")})
    assert_clean_error(res, 1, "Authentication failed")
    assert "wrong" not in res.stderr
    missing = url(db).rsplit("/", 1)[0] + "/no_such_db"
    assert_clean_error(run_cli("snapshot", "--label", "x", "--dir", str(snapdir),
                               env={"DATABASE_URL": missing}), 1, "does not exist")


def test_tools_older_than_the_server_are_named_not_failed_on(pg18, db18, snapdir):
    res = run_cli("snapshot", "--label", "x", "--dir", str(snapdir),
                  env={"DATABASE_URL": url(db18), "DBSAGE_PG_BINDIR": "/usr/lib/postgresql/15/bin"})
    if not Path("/usr/lib/postgresql/15/bin/pg_dump").exists():
        pytest.skip("no PostgreSQL 15 client tools here")
    assert_clean_error(res, 1, "No pg_dump/psql 18 or newer", "DBSAGE_PG_BINDIR")
    assert "server version mismatch" not in res.stderr


def test_lock_refuses_a_second_operation_with_the_holder(pg, db, snapdir, cli):
    seed(pg, db)
    store = SnapshotStore(snapdir)
    with store.lock("restore", "somewhere"):
        res = cli("snapshot", "--label", "second")
    assert_clean_error(res, 1, "Another dbsage-tui is busy", f"pid {os.getpid()}", "restore")
    assert not list(snapdir.glob("*.sql"))
    assert cli("snapshot", "--label", "after").returncode == 0


def test_database_lock_spans_directories(pg, db, tmp_path, snapdir):
    """Two snapshot directories, one database: the advisory lock still refuses the second operation."""
    seed(pg, db)
    pg.psql("CREATE TABLE slow (x int);", db.dbname)
    import subprocess
    locks = "SELECT count(*) FROM pg_locks WHERE relation = 'slow'::regclass AND mode = '{}' AND {} granted"
    # Hold a lock that pg_dump must wait for, so the first snapshot stays in progress until COMMIT.
    holder = subprocess.Popen([str(pg.bindir / "psql"), "-X", "-q"], stdin=subprocess.PIPE, text=True,
                              env=db.child_env())
    holder.stdin.write("BEGIN; LOCK TABLE slow IN ACCESS EXCLUSIVE MODE;\n")
    holder.stdin.flush()
    first: dict = {}
    t = threading.Thread(target=lambda: first.update(res=run_cli(
        "snapshot", "--label", "first", "--dir", str(tmp_path / "a"), env={"DATABASE_URL": url(db)})))
    try:
        wait_for(lambda: pg.psql(locks.format("AccessExclusiveLock", ""), db.dbname).strip() != "0")
        t.start()
        wait_for(lambda: pg.psql(locks.format("AccessShareLock", "NOT"), db.dbname).strip() != "0")  # pg_dump waits
        second = run_cli("snapshot", "--label", "second", "--dir", str(tmp_path / "b"),
                         env={"DATABASE_URL": url(db)})
    finally:
        holder.stdin.write("COMMIT;\n")
        holder.stdin.close()
        holder.wait(timeout=30)
    t.join()
    assert_clean_error(second, 1, "Another dbsage-tui is working on database")
    assert first["res"].returncode == 0, first["res"].stderr


def test_password_never_in_argv_files_logs_or_output(pg, db, snapdir, cli):
    """While a dump and a restore run, no process's argv holds the password; nor does any file in the
    snapshot directory, the audit log, or anything the CLI printed."""
    seed(pg, db)
    password = db.password
    outputs = []
    with watch_cmdlines() as seen_cmdlines:
        for args in (("snapshot", "--label", "secret-check", "--json"), ("list", "--json"), ("show", "1", "--json"),
                     ("restore", "1", "--yes", "--json"), ("rollback", "--emergency", "--json")):
            res = cli(*args)
            assert res.returncode == 0, res.stderr
            outputs += [res.stdout, res.stderr]
    assert any("pg_dump" in c for c in seen_cmdlines), "the watcher saw pg_dump run"
    assert any("psql" in c for c in seen_cmdlines), "the watcher saw psql run"
    assert not [c for c in seen_cmdlines if password in c]
    for f in snapdir.iterdir():
        assert password.encode() not in f.read_bytes(), f
    assert not [o for o in outputs if password in o]


def test_corruption_caught_while_streaming_commits_nothing(pg, db, snapdir, cli):
    """Without a pre-rollback snapshot the sha256 is checked as the bytes stream to psql: a flipped byte
    (same size, so the quick check passes) means no COMMIT, exit 3, and the database unchanged."""
    seed(pg, db)
    assert cli("snapshot", "--label", "good").returncode == 0
    snap = SnapshotStore(snapdir).list()[0]
    pg.psql("DELETE FROM items WHERE id > 100; CREATE TABLE later (x int);", db.dbname)
    state = full_dump(db)
    data = snap.path.read_bytes()
    i = data.index(b"item 250")
    snap.path.write_bytes(data[:i] + b"J" + data[i + 1:])
    res = cli("restore", "1", "--yes", "--no-pre-snapshot")
    assert_clean_error(res, 3, "does not match its metadata", "unchanged")
    assert full_dump(db) == state
    assert SnapshotStore(snapdir).read_audit()[-1]["outcome"] == "failed"


def test_output_into_a_closed_pipe_is_no_traceback(tmp_path):
    """``dbsage-tui list --json | head -c 100``: the reader goes away before the listing is written. The
    process ends with exit 1 and says nothing (no traceback, no error file), like any well-behaved filter."""
    import shutil
    import subprocess
    directory = tmp_path / "snaps"
    directory.mkdir()
    for i in range(200):  # about 40 kB of JSON: more than one write, so the broken pipe is met inside main
        (directory / f"20260101{i // 60:02d}{i % 60:02d}00_x.sql").write_text("")
    data = tmp_path / "data"
    proc = subprocess.Popen([shutil.which("dbsage-tui"), "list", "--json", "--dir", str(directory)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "DBSAGE_DATA_DIR": str(data)})
    proc.stdout.close()  # before the process has written anything: it starts in about 0.1 s
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 1
    assert err == ""
    assert not (data / "last-error.txt").exists()


def test_running_the_module_ends_as_a_profiler_needs(tmp_path):
    """``python -m cProfile -m app.cli ...`` (the benchmark profiles ``list`` so) gets to write its
    profile: only the console script skips the interpreter's exit."""
    import subprocess
    import sys
    prof = tmp_path / "list.prof"
    res = subprocess.run([sys.executable, "-m", "cProfile", "-o", str(prof), "-m", "app.cli", "list", "--json",
                          "--dir", str(tmp_path / "none")], capture_output=True, text=True, timeout=60,
                         cwd=Path(__file__).resolve().parents[1],
                         env={**os.environ, "DBSAGE_DATA_DIR": str(tmp_path / "data")})
    assert res.returncode == 0 and res.stdout.strip() == "[]", res.stderr
    assert prof.stat().st_size > 0


def test_psql_runs_on_the_target_with_the_password_out_of_argv(db, snapdir):
    """`dbsage-tui psql ARGS`: psql on the configured database, ARGS as psql takes them (``-c``, ``-At``),
    its exit code ours. Its argv, which every user sees in ``ps``, carries neither the password nor the
    URL: read from /proc while the query runs."""
    import shutil
    import subprocess

    env = {"DATABASE_URL": url(db)}  # our options before psql's: the rest of the line is psql's
    res = run_cli("--dir", str(snapdir), "psql", "-At", "-c", "SELECT current_database(), current_user", env=env)
    assert (res.returncode, res.stdout) == (0, f"{db.dbname}|{db.user}\n"), res.stderr
    res = run_cli("psql", "--dir", str(snapdir), "-v", "ON_ERROR_STOP=1", "-c", "SELECT 1/0", env=env)
    assert res.returncode == 1 and "division by zero" in res.stderr
    assert db.password and url(db) not in res.stderr
    proc = subprocess.Popen([shutil.which("dbsage-tui"), "--dir", str(snapdir), "psql", "-c", "SELECT pg_sleep(3)"],
                            env={**os.environ, "DATABASE_URL": url(db)}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        # Its first child may be the `pg_dump --version` probe that finds the tools: wait for psql.
        children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children")
        deadline = time.monotonic() + 10
        argv = [b""]
        while not argv[0].endswith(b"psql") and time.monotonic() < deadline:
            for child in children.read_text().split():
                with contextlib.suppress(OSError):
                    argv = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
            time.sleep(0.02)
        assert argv[0].endswith(b"psql") and argv[1:] == [b"-c", b"SELECT pg_sleep(3)", b""], argv
        assert db.password.encode() not in b" ".join(argv)
    finally:
        proc.kill()
        proc.wait()
