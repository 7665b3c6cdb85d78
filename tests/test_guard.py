"""``dbsage-tui guard -- COMMAND``: the real CLI process guarding real migrations (psql -f of a file, a shell
script) on a real server. What a user checks: the database dump before and after, the snapshot and its
metadata on disk, the command's own output and exit code, and that the password is nowhere it should not be."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from services.guard import EXIT_ROLLBACK_FAILED, default_label, redact
from services.server.processes import embedded_bindir
from services.snapshots.store import SnapshotStore
from tests.helpers import full_dump, run_cli, url, watch_cmdlines

PSQL = str(embedded_bindir() / "psql")
BAD_MIGRATION = """CREATE TABLE audit_trail (id int PRIMARY KEY, what text);
ALTER TABLE items DROP COLUMN name;
INSERT INTO items VALUES (9001);
SELECT no_such_function();
CREATE TABLE never_made (id int);
"""
GOOD_MIGRATION = """CREATE TABLE audit_trail (id int PRIMARY KEY, what text);
ALTER TABLE items ADD COLUMN price numeric DEFAULT 1;
INSERT INTO supabase_migrations.schema_migrations VALUES ('20260102000000', 'audit trail');
"""


def seed(pg, db) -> None:
    pg.psql("""CREATE TABLE items (id int PRIMARY KEY, name text);
               INSERT INTO items SELECT i, 'item ' || i FROM generate_series(1, 300) i;
               CREATE SCHEMA supabase_migrations;
               CREATE TABLE supabase_migrations.schema_migrations (version text PRIMARY KEY, name text);
               INSERT INTO supabase_migrations.schema_migrations VALUES ('20260101000000', 'init');
               CREATE TABLE alembic_version (version_num varchar(32) PRIMARY KEY);
               INSERT INTO alembic_version VALUES ('ae1027a6acf');""", db.dbname)


@pytest.fixture
def project(tmp_path) -> Path:
    """A project directory under git, as a migration is run from."""
    path = tmp_path / "project"
    path.mkdir()
    for args in (["init", "-q", "-b", "main"], ["config", "user.email", "t@example.com"],
                 ["config", "user.name", "t"]):
        subprocess.run(["git", *args], cwd=path, check=True)
    (path / "bad.sql").write_text(BAD_MIGRATION)
    (path / "good.sql").write_text(GOOD_MIGRATION)
    (path / "migrate.sh").write_text(
        "#!/bin/sh\nset -e\n"
        'test -n "$DATABASE_URL" && test "$SUPABASE_DB_URL" = "$DATABASE_URL"\n'
        f'{PSQL} -X -q -v ON_ERROR_STOP=1 -c "CREATE TABLE audit_trail (id int)"\n'
        f'{PSQL} -X -q -v ON_ERROR_STOP=1 -c "ALTER TABLE items DROP COLUMN name"\n'
        f'{PSQL} -X -q -v ON_ERROR_STOP=1 -c "SELECT 1/0"\n')
    (path / "migrate.sh").chmod(0o755)
    subprocess.run(["git", "add", "."], cwd=path, check=True)
    subprocess.run(["git", "commit", "-q", "-m", "migrations"], cwd=path, check=True)
    return path


@pytest.fixture
def guard_cli(db, snapdir, project):
    """``dbsage-tui guard ...`` run from the project directory, the URL in DATABASE_URL."""
    def run(*args, env=None, **kw):
        full_env = {**os.environ, "DATABASE_URL": url(db), **(env or {})}
        return subprocess.run(["dbsage-tui", "--dir", str(snapdir), "guard", *args], env=full_env, cwd=project,
                              capture_output=True, text=True, timeout=300, **kw)
    return run


def only_snapshot(snapdir: Path, label: str):
    snaps = [s for s in SnapshotStore(snapdir).list() if s.label == label]
    assert len(snaps) == 1, [s.filename for s in SnapshotStore(snapdir).list()]
    return snaps[0]


@pytest.mark.parametrize("how", ["psql", "script"])
def test_failed_migration_keeps_its_state_and_says_how_back(pg, db, snapdir, guard_cli, how):
    seed(pg, db)
    before = full_dump(db)
    command = [PSQL, "-X", "-v", "ON_ERROR_STOP=1", "-f", "bad.sql"] if how == "psql" else ["./migrate.sh"]
    res = guard_cli("--", *command)
    assert res.returncode == 3 if how == "psql" else res.returncode == 1, res.stderr
    label = "before-psql" if how == "psql" else "before-migrate.sh"
    snap = only_snapshot(snapdir, label)
    hint = f"dbsage-tui --dir {snapdir} restore {snap.filename}"
    assert hint in res.stderr and "Traceback" not in res.stderr
    # The half-applied migration is as the command left it: the table made, the column gone.
    assert full_dump(db) != before
    assert pg.psql("SELECT to_regclass('public.audit_trail') IS NOT NULL", db.dbname).strip() == "t"
    guard = snap.meta["guard"]
    assert guard["outcome"] == "failed" and guard["exit_code"] == res.returncode
    assert guard["duration_seconds"] > 0 and guard["git"]["branch"] == "main" and guard["git"]["dirty"] is False
    # The printed command is the way back, exactly.
    again = run_cli(*hint.split()[1:], "--yes", env={"DATABASE_URL": url(db)})
    assert again.returncode == 0, again.stderr
    assert full_dump(db) == before


@pytest.mark.parametrize("how", ["psql", "script"])
def test_failed_migration_rolled_back_leaves_the_database_as_before(pg, db, snapdir, guard_cli, how):
    seed(pg, db)
    before = full_dump(db)
    command = [PSQL, "-X", "-v", "ON_ERROR_STOP=1", "-f", "bad.sql"] if how == "psql" else ["./migrate.sh"]
    res = guard_cli("--rollback-on-failure", "--label", "pre-push", "--", *command)
    assert res.returncode == (3 if how == "psql" else 1), res.stderr
    assert "RECOVERY STATUS: OK" in res.stderr
    assert full_dump(db) == before
    snap = only_snapshot(snapdir, "pre-push")
    failed = only_snapshot(snapdir, "pre-rollback")
    assert snap.meta["guard"]["outcome"] == "failed, rolled back"
    assert snap.meta["guard"]["failed_state"] == failed.filename
    # The failed state is kept: the pre-rollback snapshot has the half-made table.
    assert "CREATE TABLE public.audit_trail" in failed.path.read_text()
    audit = [e for e in SnapshotStore(snapdir).read_audit() if e["action"] == "guard"]
    assert audit[-1]["outcome"] == "failed, rolled back" and audit[-1]["exit_code"] == res.returncode


def test_successful_migration_keeps_new_state_snapshot_and_heads(pg, db, snapdir, guard_cli, project):
    seed(pg, db)
    before = full_dump(db)
    (project / "untracked-change.txt").write_text("x")
    (project / "good.sql").write_text(GOOD_MIGRATION + "-- edited\n")
    res = guard_cli("--purpose", "add audit trail", "--", PSQL, "-X", "-v", "ON_ERROR_STOP=1", "-f", "good.sql")
    assert res.returncode == 0, res.stderr
    snap = only_snapshot(snapdir, "before-psql")
    lines = [ln for ln in res.stderr.splitlines() if "succeeded" in ln]
    assert lines == [f"guard: the command succeeded in {snap.meta['guard']['duration_seconds']:.1f}s; snapshot "
                     f"{snap.filename} is kept. Roll back with: dbsage-tui --dir {snapdir} restore {snap.filename}"]
    assert pg.psql("SELECT count(*) FROM items WHERE price = 1", db.dbname).strip() == "300"
    guard = snap.meta["guard"]
    assert snap.purpose == "add audit trail" and guard["outcome"] == "succeeded" and guard["exit_code"] == 0
    assert guard["migrations"] == {"supabase": {"version": "20260101000000", "name": "init"},
                                   "alembic": {"version": "ae1027a6acf", "name": None}}
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=project, capture_output=True, text=True).stdout.strip()
    assert guard["git"] == {"commit": head, "branch": "main", "dirty": True}
    assert guard["command"] == f"{PSQL} -X -v ON_ERROR_STOP=1 -f good.sql" and guard["cwd"] == str(project)
    # The snapshot is the state before: restoring it gives the dump from before the migration.
    assert run_cli("--dir", str(snapdir), "restore", snap.filename, "--yes", "--no-pre-snapshot",
                   env={"DATABASE_URL": url(db)}).returncode == 0
    assert full_dump(db) == before


def test_io_passes_through_and_the_password_goes_nowhere(pg, db, snapdir, guard_cli):
    seed(pg, db)
    script = ('read answer; echo "you said $answer"; echo "to stderr" >&2; '
              f'{PSQL} -X -At -c "SELECT count(*) FROM items"; echo "url set: ${{DATABASE_URL:+yes}}"')
    with watch_cmdlines() as cmdlines:
        res = guard_cli("--", "sh", "-c", script, input="yes\n")
    assert res.returncode == 0, res.stderr
    assert res.stdout == "you said yes\n300\nurl set: yes\n"  # the command's stdout, unchanged
    assert "to stderr" in res.stderr
    snap = only_snapshot(snapdir, "before-sh")
    assert snap.meta["guard"]["command"].startswith("sh -c 'read answer;")
    password = db.password
    assert not [c for c in cmdlines if password in c]
    on_disk = "".join(p.read_text(errors="replace") for p in snapdir.iterdir() if p.is_file())
    assert password not in on_disk and password not in res.stdout + res.stderr


def test_secrets_in_the_command_line_are_redacted(pg, db, snapdir, guard_cli):
    seed(pg, db)
    # The command line holds a URL with the password (as `supabase db push --db-url "$URL"` would).
    res = guard_cli("--", "sh", "-c", "exit 0", url(db), f"password={db.password}")
    assert res.returncode == 0, res.stderr
    snap = only_snapshot(snapdir, "before-sh")
    text = snap.meta_path.read_text()
    assert db.password not in text and db.password not in res.stderr
    assert f"postgresql://{db.user}:****@" in snap.meta["guard"]["command"] and "password=****" in snap.purpose


def test_ctrl_c_goes_to_the_command_first(pg, db, snapdir, guard_cli, project):
    seed(pg, db)
    script = 'trap "echo interrupted; exit 7" INT; echo ready; while :; do sleep 0.1; done'
    env = {**os.environ, "DATABASE_URL": url(db)}
    proc = subprocess.Popen(["dbsage-tui", "--dir", str(snapdir), "guard", "--", "sh", "-c", script], env=env,
                            cwd=project, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        assert proc.stdout.readline() == "ready\n"
        time.sleep(0.3)
        os.killpg(proc.pid, signal.SIGINT)  # what the terminal does on Ctrl-C: the whole foreground group
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 7, err
    assert out == "interrupted\n" and "Cancelled" not in err
    assert "failed with exit code 7" in err
    assert only_snapshot(snapdir, "before-sh").meta["guard"]["exit_code"] == 7


def test_rollback_that_fails_has_its_own_exit_code(pg, db, snapdir, guard_cli):
    seed(pg, db)
    # The "migration" leaves a session holding a lock the restore needs, then fails.
    holder = (f'{PSQL} -X -q -c "BEGIN; LOCK TABLE items; SELECT pg_sleep(60)" >/dev/null 2>&1 & '
              "sleep 1; exit 5")
    try:
        res = guard_cli("--rollback-on-failure", "--lock-timeout", "2", "--", "sh", "-c", holder)
    finally:
        pg.psql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(60)%' "
                "AND pid <> pg_backend_pid()", db.dbname)
    assert res.returncode == EXIT_ROLLBACK_FAILED == 4, res.stderr
    assert "ROLLBACK FAILED" in res.stderr and "failed with exit code 5" in res.stderr
    snap = only_snapshot(snapdir, "before-sh")
    assert snap.meta["guard"]["outcome"] == "failed, rollback failed" and snap.meta["guard"]["exit_code"] == 5


def test_nothing_runs_without_a_snapshot(db, snapdir, guard_cli, tmp_path):
    marker = tmp_path / "ran"
    # No database reachable: the snapshot fails, so the command must not run.
    res = guard_cli("--", "touch", str(marker), env={"DATABASE_URL": "postgresql://x:y@127.0.0.1:1/nope"})
    assert res.returncode == 1 and not marker.exists() and "Traceback" not in res.stderr
    res = guard_cli("--", "no-such-migration-tool", "up")
    assert res.returncode == 2 and "command not found" in res.stderr
    assert not any(snapdir.glob("*.sql")) if snapdir.exists() else True
    res = guard_cli("--type", "schema", "--rollback-on-failure", "--", "true")
    assert res.returncode == 2 and "needs a full snapshot" in res.stderr


def test_default_labels_and_redaction():
    assert default_label(["supabase", "db", "push"]) == "before-db-push"
    assert default_label(["npx", "supabase", "migration", "up", "--local"]) == "before-migration-up"
    assert default_label(["alembic", "upgrade", "head"]) == "before-alembic-upgrade-head"
    assert default_label(["/usr/bin/psql", "-f", "m.sql"]) == "before-psql"
    assert default_label(["./scripts/migrate.sh"]) == "before-migrate.sh"
    assert redact("x postgresql://u:p%40ss@h:5432/db y") == "x postgresql://u:****@h:5432/db y"
    assert redact("PGPASSWORD=hunter2 psql --password hunter3 -c 'password=abc'") == \
        "PGPASSWORD=**** psql --password **** -c 'password=****"
    assert redact("uses s3cret inside", ("s3cret",)) == "uses **** inside"
