"""Plain helpers shared by the test modules: fixture files, loading SQL, comparing dumps, running the CLI,
writing snapshot files. Fixtures live in ``conftest.py``; no test module imports another one."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import difflib
import hashlib
import os
import re
import shutil
import subprocess
import threading
import time
from pathlib import Path
from urllib.parse import quote

import asyncpg
import pytest
from textual.widgets import RichLog

from app.screens.main import MainScreen
from app.screens.restore import RestoreModal
from services.config import ConnInfo
from services.display import human_size
from services.server.catalog import ServerInfo, connect_kwargs
from services.snapshots.listing import format_ts
from services.snapshots.record import restore_instructions
from services.snapshots.store import TS_FORMAT, SnapshotStore
from widgets.snapshot_table import SnapshotTable

#: ../shared/fixtures beside the repository (CI clones main next to a copy of shared/).
FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures"
SQL = Path(__file__).parent / "sql"
SYSTEM_PG15 = Path("/usr/lib/postgresql/15/bin")
#: The hosted-Supabase shape's scripts and SQL (``conftest.Platform`` builds it).
PLATFORM = FIXTURES / "supabase-platform"


# -- databases ---------------------------------------------------------------------------------------------

def load_sql(server, conn: ConnInfo, path: Path) -> None:
    """Load a SQL file the way the fixtures' README says: psql -v ON_ERROR_STOP=1 -f FILE."""
    res = subprocess.run([str(server.bindir / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", str(path)],
                         env=conn.child_env(), capture_output=True, text=True)
    assert res.returncode == 0, res.stderr


_templates: set[tuple[Path, str]] = set()


def copy_template(server, conn: ConnInfo, key: str, build) -> None:
    """The new, empty database of ``conn`` becomes a copy (``CREATE DATABASE … TEMPLATE``) of the template
    database ``key`` of this server, which ``build(conninfo)`` fills on first use: each test starts from the
    same database (objects, rows, owners, privileges) for a fraction of what building it again costs."""
    template = f"tpl_{key}"
    if (server.datadir, template) not in _templates:
        server.psql(f'DROP DATABASE IF EXISTS "{template}"')
        server.psql(f'CREATE DATABASE "{template}"')
        build(server.conninfo(template))
        _templates.add((server.datadir, template))
    server.psql(f'DROP DATABASE "{conn.dbname}"')
    server.psql(f'CREATE DATABASE "{conn.dbname}" TEMPLATE "{template}"')


def load_fixture(server, conn: ConnInfo, path: Path) -> None:
    """``load_sql`` of ``path`` into the new, empty database of ``conn``, by way of a template database that
    holds the file loaded once per server (``copy_template``)."""
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    copy_template(server, conn, digest, lambda template: load_sql(server, template, path))


def server_major(server) -> int:
    """The major version of a ``LocalServer``'s cluster."""
    return int((server.datadir / "PG_VERSION").read_text())


def has_extension(server, name: str) -> bool:
    return server.psql(f"SELECT count(*) FROM pg_available_extensions WHERE name = '{name}'").strip() == "1"


_SERVER_STAMP = re.compile(r"\bpg_attver=\d+")


def comparable(dump_text: str) -> str:
    """A pg_dump's text minus what no restore can carry over: pg_dump 17.6+'s random ``\\restrict`` keys,
    and the ``pg_attver`` stamp Debian's PostgreSQL 15.20 gives every new column itself (a restore's SET
    of it is accepted and ignored, as the server picks the value, like an OID). The stamp's presence is
    kept, only its value masked."""
    lines = (ln for ln in dump_text.splitlines() if not ln.startswith(("\\restrict", "\\unrestrict")))
    return _SERVER_STAMP.sub("pg_attver=N", "\n".join(lines))


def full_dump(conn: ConnInfo, bindir: Path | None = None) -> str:
    """A pg_dump of the whole database *with* owners and privileges, made ``comparable``: what "the
    database is exactly as before" is measured by."""
    from services.server.processes import embedded_bindir
    tool = str((bindir or embedded_bindir()) / "pg_dump")
    res = subprocess.run([tool, "--no-password"], env=conn.child_env(), capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    return comparable(res.stdout)


def assert_same(before: str, after: str) -> None:
    """Two ``full_dump`` texts are equal; else the test fails with their first differences."""
    if before != after:
        diff = "\n".join(list(difflib.unified_diff(before.splitlines(), after.splitlines(), "snapshot-time",
                                                   "after-restore", lineterm=""))[:80])
        pytest.fail(f"database differs from the snapshot after restore:\n{diff}")


# -- the CLI -----------------------------------------------------------------------------------------------

def url(conn: ConnInfo, password: str | None = None) -> str:
    """The connection as a ``postgresql://`` URL with its password, as users put it in DATABASE_URL."""
    pw = quote(password if password is not None else conn.password or "", safe="")
    return f"postgresql://{conn.user}:{pw}@{conn.host}:{conn.port}/{conn.dbname}"


def run_cli(*args: str, env: dict | None = None, input: str | None = None, timeout: float = 300):
    """Run the installed ``dbsage-tui`` console script as a user would (a real process)."""
    exe = shutil.which("dbsage-tui")
    assert exe, "dbsage-tui is not installed (pip install -e .)"
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run([exe, *args], env=full_env, capture_output=True, text=True, input=input,
                          timeout=timeout)


def assert_clean_error(res, code: int, *phrases: str) -> None:
    """Exit ``code``, no traceback, exactly one ``error:`` line, holding each of ``phrases``."""
    assert res.returncode == code, (res.returncode, res.stdout, res.stderr)
    assert "Traceback" not in res.stderr + res.stdout
    errors = [ln for ln in res.stderr.splitlines() if ln.startswith("error: ")]
    assert len(errors) == 1, res.stderr
    for p in phrases:
        assert p in errors[0], errors[0]


def wait_for(predicate, timeout: float = 20.0, step: float = 0.02):
    """Poll ``predicate`` until it returns something true, and return that: a test waits for the condition
    it needs, never a fixed time."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    raise AssertionError("condition not reached in time")


@contextlib.contextmanager
def watch_cmdlines():
    """The argv of every process this test run starts (children of the CLI it runs), sampled every 2 ms
    while the block runs: what ``ps`` shows every user of the machine."""
    seen: set[str] = set()
    stop = threading.Event()

    def descendants() -> list[int]:
        """This test run's processes, found from its own through /proc/PID/task/TID/children: a few reads
        per look instead of a walk of every process on the machine (a psql of 50 ms was missed that way)."""
        found, todo = [], [os.getpid()]
        while todo:
            pid = todo.pop()
            with contextlib.suppress(OSError):  # the process ended while we looked
                for tid in os.listdir(f"/proc/{pid}/task"):
                    with contextlib.suppress(OSError, ValueError):
                        kids = [int(k) for k in Path(f"/proc/{pid}/task/{tid}/children").read_text().split()]
                        found += kids
                        todo += kids
        return found

    def watch():
        while not stop.is_set():
            for pid in descendants():
                with contextlib.suppress(OSError):
                    seen.add(Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode())
            time.sleep(0.002)

    w = threading.Thread(target=watch)
    w.start()
    try:
        yield seen
    finally:
        stop.set()
        w.join()


# -- snapshots ----------------------------------------------------------------------------------------------

async def snapshots_in_one_second(conn: ConnInfo, store: SnapshotStore, labels: list[str], prepare=None,
                                  tries: int = 10) -> list:
    """Real snapshots labeled ``labels``, taken one after the other, whose names all carry the same second
    (taken again until they do): what a loop or a script makes. ``prepare(i)`` runs before the i-th, to put
    the database in the state that snapshot should hold."""
    from services.server import dump
    for _ in range(tries):
        snaps = []
        for i, label in enumerate(labels):
            if prepare is not None:
                prepare(i)
            snaps.append(await dump.snapshot(conn, store, label))
        if len({s.filename[:14] for s in snaps}) == 1:
            return snaps
        for snap in snaps:
            store.delete(snap)
    pytest.fail(f"no {len(labels)} snapshots in one second in {tries} tries: the machine is too slow for this test")


# -- snapshot files written by hand (no database) -----------------------------------------------------------

#: The fixed clock of the app's pictures and of the tests that write snapshots by hand.
NOW = dt.datetime(2024, 10, 27, 15, 0, 0, tzinfo=dt.UTC)
#: Server facts given to the app instead of fetched, so that no database is contacted.
SERVER = ServerInfo(version="PostgreSQL 15.8", version_num=150008, current_user="postgres", superuser=True,
                    supabase=True, supabase_version="2024-10-01", database="postgres")


def dump_text(rows: int, schema_only: bool = False, extra_ddl: str = "") -> bytes:
    """A small plain-format dump with the header, one COPY block and the dump-complete trailer."""
    data = "" if schema_only else (
        "COPY public.items (id, name) FROM stdin;\n"
        + "".join(f"{i}\titem {i}\n" for i in range(1, rows + 1)) + "\\.\n\n")
    return ("--\n-- PostgreSQL database dump\n--\n\n-- Dumped from database version 15.8\n"
            "-- Dumped by pg_dump version 18.1\n\nSET statement_timeout = 0;\n\n"
            "CREATE TABLE public.items (id integer NOT NULL, name text);\n\n" + extra_ddl + data
            + "--\n-- PostgreSQL database dump complete\n--\n\n").encode()


def write_snapshot(store: SnapshotStore, label: str, when: dt.datetime, *, purpose: str = "", rows: int = 3,
                   schema_only: bool = False, protected: bool = False, truncate: bool = False,
                   extra_ddl: str = "") -> Path:
    """Write ``{ts}_{label}.sql`` and its metadata the way a real snapshot has them (``truncate`` cuts the
    trailer off afterwards, which the quick check reports as incomplete)."""
    store.directory.mkdir(parents=True, exist_ok=True)
    body = dump_text(rows, schema_only, extra_ddl)
    path = store.directory / f"{when.strftime(TS_FORMAT)}_{label}.sql"
    path.write_bytes(body)
    meta = {"label": label, "purpose": purpose, "timestamp": format_ts(when),
            "database_version": "PostgreSQL 15.8", "supabase_version": "2024-10-01",
            "type": "schema-only" if schema_only else "full",
            "size_bytes": len(body), "size_human": human_size(len(body)), "tables_count": 1,
            "restore_instructions": restore_instructions(path.name, 15, 18, ConnInfo(source="SUPABASE_DB_URL")),
            "notes": "",
            "filename": path.name,
            "sha256": hashlib.sha256(body).hexdigest(), "database": "postgres",
            "host": "db.example.supabase.co:5432", "schemas": ["public"],
            "row_counts": None if schema_only else {"public.items": rows}, "protected": protected}
    store.write_meta(path, meta)
    if truncate:
        path.write_bytes(body[: len(body) // 2])
        meta["size_bytes"] = len(body) // 2
        store.write_meta(path, meta)
    return path


# -- shared by several test modules: the lock tests' base snapshot, the TUI tests' pilots --------------

def tamper(path: Path, old: bytes, new: bytes) -> None:
    """Replace the first ``old`` in the file by ``new`` of the same length: the size stays, the sha256 does not."""
    assert len(old) == len(new)
    data = path.read_bytes()
    i = data.index(old)
    path.write_bytes(data[:i] + new + data[i + len(old):])


def main_screen(app) -> MainScreen:
    return next(s for s in app.screen_stack if isinstance(s, MainScreen))


def log_text(app) -> str:
    """What the main screen's log pane holds, as plain text."""
    return "\n".join(strip.text for strip in main_screen(app).query_one("#log", RichLog).lines)


def cli(conn: ConnInfo, snapdir, *args: str):
    return run_cli(*args, "--dir", str(snapdir), env={"DATABASE_URL": url(conn)})


def seed_base_snapshot(pg, db, snapdir, conn: ConnInfo | None = None) -> str:
    """A table, a snapshot of it, then a change: what a restore would undo. The dump of the snapshot's state."""
    pg.psql("CREATE TABLE IF NOT EXISTS items (id int PRIMARY KEY, name text);"
            "INSERT INTO items SELECT i, 'item ' || i FROM generate_series(1, 200) i;", db.dbname)
    res = cli(conn or db, snapdir, "snapshot", "--label", "base")
    assert res.returncode == 0, res.stderr
    at_snapshot = full_dump(db)
    pg.psql("DELETE FROM items WHERE id > 100", db.dbname)
    return at_snapshot


async def idle_in_transaction(conn: ConnInfo) -> tuple[asyncpg.Connection, int]:
    """What application pools often leave: a transaction that read the table, then went idle."""
    con = await asyncpg.connect(**connect_kwargs(conn))
    await con.execute("BEGIN; SELECT count(*) FROM items;")
    return con, await con.fetchval("SELECT pg_backend_pid()")


#: A target that is never contacted (``SERVER``'s facts stand in for the connection).
TARGET = ConnInfo(host="db.example.supabase.co", port=5432, user="postgres", dbname="postgres",
                  password="never-shown-pw-1")


def seed_store(directory: Path) -> SnapshotStore:
    """Five snapshots: recent ones (highlighted), a schema-only one, a protected one, an incomplete one."""
    store = SnapshotStore(directory)
    write_snapshot(store, "v1.0", NOW - dt.timedelta(hours=2), purpose="Release v1.0 production snapshot",
                   rows=40)
    write_snapshot(store, "before-migration", NOW - dt.timedelta(hours=3), schema_only=True,
                   purpose="Pre-migration safety snapshot")
    write_snapshot(store, "nightly", NOW - dt.timedelta(hours=20, minutes=30), purpose="Cron", truncate=True)
    write_snapshot(store, "baseline", NOW - dt.timedelta(days=1, hours=5),
                   purpose="Initial production baseline", rows=30, protected=True)
    write_snapshot(store, "emergency-backup", NOW - dt.timedelta(days=2, hours=20, minutes=30),
                   purpose="Emergency backup before hotfix", rows=25)
    return store


async def settle(pilot) -> None:
    """Wait until the listing (a thread worker) and any validation have finished and been shown, and the
    log has scrolled to its last line (RichLog scrolls after the refresh that follows a write)."""
    for _ in range(100):
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()
        tables = pilot.app.screen.query("SnapshotTable")
        logs = [log for screen in pilot.app.screen_stack for log in screen.query(RichLog)]  # under dialogs too
        if (not tables or tables.first().row_count) and all(log.scroll_y >= log.max_scroll_y for log in logs):
            break
    await pilot.pause()


def seed_items(pg, db, rows: int = 50) -> None:
    pg.psql("CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL);"
            f"INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, {rows}) g;", db.dbname)


async def until(pilot, condition, timeout: float = 15.0, what: str = "condition") -> None:
    """Poll with short pauses (the app keeps running) instead of sleeping a fixed time."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await pilot.pause(0.05)


async def listed(pilot, n: int | None = None) -> SnapshotTable:
    """Wait until the first listing is on screen (and holds ``n`` rows when given)."""
    main = main_screen(pilot.app)
    table = main.query_one(SnapshotTable)
    await until(pilot, lambda: main._last_scan is not None and (n is None or table.row_count == n),
                what=f"{n} rows listed")
    await pilot.pause()  # and laid out: the empty-list message the rows replace gives the table its lines
    return table


async def open_restore(pilot) -> RestoreModal:
    await pilot.press("r")
    await until(pilot, lambda: isinstance(pilot.app.screen, RestoreModal), what="the restore dialog")
    await pilot.pause()
    return pilot.app.screen
