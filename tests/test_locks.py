"""A restore or a snapshot never hangs behind another session: real sessions holding real locks."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import shutil

import asyncpg
import pytest

from services.server.catalog import connect_kwargs
from tests.helpers import cli, full_dump, idle_in_transaction, seed_base_snapshot, url


def errors(res) -> list[str]:
    assert "Traceback" not in res.stdout + res.stderr
    return [ln for ln in res.stderr.splitlines() if ln.startswith("error: ")]


async def test_restore_names_the_blocker_and_gives_up_at_the_lock_timeout(pg18, db18, snapdir):
    seed_base_snapshot(pg18, db18, snapdir)
    before = full_dump(db18)
    blocker, pid = await idle_in_transaction(db18)
    try:
        res = cli(db18, snapdir, "restore", "1", "--yes", "--no-pre-snapshot", "--lock-timeout", "3", "--json")
    finally:
        await blocker.close()
    assert res.returncode == 1, res.stderr
    lines = res.stderr.splitlines()
    waiting = [i for i, ln in enumerate(lines) if ln.startswith("waiting ") and f"pid {pid} " in ln]
    assert waiting and "idle in transaction" in lines[waiting[0]], res.stderr  # reported live, before giving up
    [error] = errors(res)
    assert waiting[0] < lines.index(error)
    assert f"gave up after waiting 3 s for a lock held by pid {pid} " in error and "--terminate-blockers" in error
    out = json.loads(res.stdout)
    assert [b["pid"] for b in out["blockers"]] == [pid] and out["blockers"][0]["state"] == "idle in transaction"
    assert full_dump(db18) == before


async def test_terminate_blockers_clears_exactly_the_way_and_audits_it(pg18, db18, snapdir):
    at_snapshot = seed_base_snapshot(pg18, db18, snapdir)
    bystander = await asyncpg.connect(**connect_kwargs(db18))  # connected, idle, in nobody's way
    blocker, pid = await idle_in_transaction(db18)
    try:
        res = cli(db18, snapdir, "restore", "1", "--yes", "--no-pre-snapshot", "--lock-timeout", "20",
                  "--terminate-blockers", "--json")
        assert res.returncode == 0, res.stderr
        assert [b["pid"] for b in json.loads(res.stdout)["terminated"]] == [pid]
        with pytest.raises((asyncpg.exceptions.ConnectionDoesNotExistError, asyncpg.exceptions.AdminShutdownError,
                            asyncpg.exceptions.InterfaceError, ConnectionError)):
            await blocker.fetchval("SELECT 1")
        assert await bystander.fetchval("SELECT 1") == 1
    finally:
        await bystander.close()
        await blocker.close()
    assert full_dump(db18) == at_snapshot
    audit = [json.loads(line) for line in (snapdir / "audit.log").read_text().splitlines()]
    [terminated] = [a for a in audit if a["action"] == "terminate"]
    assert terminated["outcome"] == "ok" and terminated["pid"] == pid and terminated["state"] == "idle in transaction"


async def test_a_blocker_the_role_may_not_signal_is_a_clear_refusal(pg18, db18, snapdir):
    """The restore runs as the database's non-superuser owner; the blocker is a superuser's session,
    which only a superuser may terminate."""
    role = f"{db18.dbname}_owner"
    pg18.psql(f"CREATE ROLE {role} LOGIN PASSWORD '{pg18.password}'; "
              f'ALTER DATABASE "{db18.dbname}" OWNER TO {role};')
    pg18.psql(f"ALTER SCHEMA public OWNER TO {role}; SET ROLE {role};"
              "CREATE TABLE items (id int PRIMARY KEY, name text);", db18.dbname)
    owner = dataclasses.replace(db18, user=role)
    try:
        seed_base_snapshot(pg18, db18, snapdir, conn=owner)
        before = full_dump(db18)
        blocker, pid = await idle_in_transaction(db18)  # as the superuser postgres
        try:
            res = cli(owner, snapdir, "restore", "1", "--yes", "--no-pre-snapshot", "--lock-timeout", "3",
                      "--terminate-blockers")
            assert await blocker.fetchval("SELECT 1") == 1  # still there
        finally:
            await blocker.close()
        assert res.returncode == 1, res.stderr
        [error] = errors(res)
        assert f"lock held by pid {pid} " in error and f"could not terminate pid {pid}: permission denied" in error
        assert full_dump(db18) == before
        audit = [json.loads(line) for line in (snapdir / "audit.log").read_text().splitlines()]
        assert [a["outcome"] for a in audit if a["action"] == "terminate"] == ["refused"]
    finally:
        pg18.psql(f'DROP DATABASE IF EXISTS "{db18.dbname}" WITH (FORCE)')
        pg18.psql(f"DROP ROLE IF EXISTS {role}")


async def test_a_snapshot_behind_an_exclusive_lock_fails_at_the_timeout_naming_it(pg18, db18, snapdir):
    pg18.psql("CREATE TABLE items (id int PRIMARY KEY); INSERT INTO items SELECT generate_series(1, 10);",
              db18.dbname)
    migration = await asyncpg.connect(**connect_kwargs(db18))
    pid = await migration.fetchval("SELECT pg_backend_pid()")
    await migration.execute("BEGIN; LOCK TABLE items IN ACCESS EXCLUSIVE MODE;")
    try:
        res = cli(db18, snapdir, "snapshot", "--label", "behind", "--lock-timeout", "2")
    finally:
        await migration.close()
    assert res.returncode == 1, res.stderr
    [error] = errors(res)
    assert error.startswith("error: The snapshot gave up after waiting 2 s for a lock held by "
                            f"pid {pid} "), error
    assert 'LOCK TABLE items IN ACCESS EXCLUSIVE MODE' in error and "--terminate-blockers" not in error
    listed = cli(db18, snapdir, "list", "--json")
    assert json.loads(listed.stdout) == []
    assert not [p for p in snapdir.iterdir() if not p.name.startswith(("audit", "."))] if snapdir.exists() else True


async def test_a_deadlock_with_another_session_leaves_the_database_unchanged(pg18, db18, snapdir):
    """Another session holds one in-scope table and, once the restore waits for it, asks for a table the
    restore already holds: the server aborts the restore (its deadlock check fires first), and the user
    gets one sentence, the database as it was, and the way forward."""
    pg18.psql("CREATE TABLE notes (id int PRIMARY KEY, body text); INSERT INTO notes VALUES (1, 'a');", db18.dbname)
    seed_base_snapshot(pg18, db18, snapdir)
    before = full_dump(db18)
    other = await asyncpg.connect(**connect_kwargs(db18))
    await other.execute("SET deadlock_timeout = '60s'")  # so that the restore's check is the one that fires
    app = None
    try:
        blocker_pid = await other.fetchval("SELECT pg_backend_pid()")
        await other.execute("BEGIN; SELECT count(*) FROM notes;")
        exe = shutil.which("dbsage-tui")
        proc = await asyncio.create_subprocess_exec(
            exe, "restore", "1", "--yes", "--no-pre-snapshot", "--lock-timeout", "30", "--dir", str(snapdir),
            env={**os.environ, "DATABASE_URL": url(db18)}, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE)
        watcher = await asyncpg.connect(**connect_kwargs(db18))
        try:
            for _ in range(200):  # until the restore waits for our session's lock on notes
                held = await watcher.fetchval(
                    """SELECT string_agg(l.relation::regclass::text, ',') FROM pg_stat_activity a
                       JOIN pg_locks l ON l.pid = a.pid AND l.granted AND l.locktype = 'relation'
                                      AND l.mode = 'AccessExclusiveLock'
                       WHERE a.application_name LIKE 'dbsage-tui restore%' AND $1 = ANY(pg_blocking_pids(a.pid))""",
                    blocker_pid)
                if held:
                    break
                await asyncio.sleep(0.05)
        finally:
            await watcher.close()
        assert held and "items" in held.split(","), held  # the restore holds items and waits for notes
        # Waits for the restore: a cycle. The server aborts the restore, and this read then goes through.
        assert await asyncio.wait_for(other.fetchval("SELECT count(*) FROM items"), 30) == 100
        stdout, stderr = await asyncio.wait_for(proc.communicate(), 60)
        app = proc.returncode, stderr.decode()
    finally:
        await other.close()
    code, err = app
    assert code == 1, err
    error = [ln for ln in err.splitlines() if ln.startswith("error: ")]
    assert len(error) == 1 and "deadlock detected" in error[0], err
    assert "the database is unchanged. Retry, or first stop the application" in error[0]
    assert "Traceback" not in err
    assert full_dump(db18) == before
