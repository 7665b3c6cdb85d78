"""Shared fixtures: real PostgreSQL servers (embedded 18, plus the system's 15 when installed), a fresh
database per test, hermetic settings. Nothing here fakes pg_dump, psql or the server."""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

from services.config import ConnInfo
from services.sandbox import LocalServer

#: ../shared/fixtures beside the repository (CI clones main next to a copy of shared/).
FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures"
SQL = Path(__file__).parent / "sql"
SYSTEM_PG15 = Path("/usr/lib/postgresql/15/bin")

_counter = itertools.count(1)


#: Fixtures that start a real PostgreSQL: a test that uses one is in the "pg" lane.
PG_FIXTURES = {"pg", "pg18", "pg15", "platform", "supa"}


def pytest_collection_modifyitems(items) -> None:
    """The lanes: ``-m "not pg"`` runs what needs no PostgreSQL (seconds), ``-m tui`` the app's pilot and
    picture tests. A test that starts a server without a fixture (the demo) carries the mark itself."""
    for item in items:
        if PG_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.pg)
        if item.module.__name__.split(".")[-1].startswith("test_tui"):
            item.add_marker(pytest.mark.tui)


def server_versions() -> list[str]:
    versions = ["18"]
    if (SYSTEM_PG15 / "postgres").exists() and os.environ.get("DBSAGE_TEST_PG15", "1") != "0":
        versions.append("15")
    return versions


@pytest.fixture(scope="session")
def server_root():
    root = Path(tempfile.mkdtemp(prefix="dbsage-test-"))
    yield root
    # Stop the servers before their data directories go: without postmaster.pid, pg_ctl cannot stop them
    # (a pytest_sessionfinish hook did this after the rmtree, and left every server running).
    for srv in _servers.values():
        srv.stop("immediate")
    shutil.rmtree(root, ignore_errors=True)


_servers: dict[str, LocalServer] = {}


def _server(version: str, root: Path) -> LocalServer:
    if version not in _servers:
        bindir = None if version == "18" else SYSTEM_PG15
        srv = LocalServer(root / f"pg{version}", bindir=bindir, password="s3cr3t-Test-pw-7Q")
        srv.ensure_running()
        # Roles a Supabase project has; cluster-wide, so created once per server.
        srv.psql("""
            DO $$ BEGIN
              IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'anon') THEN
                CREATE ROLE anon NOLOGIN; CREATE ROLE authenticated NOLOGIN;
                CREATE ROLE service_role NOLOGIN BYPASSRLS; CREATE ROLE supabase_auth_admin NOLOGIN;
                CREATE ROLE app_reader NOLOGIN;
              END IF;
            END $$;""")
        _servers[version] = srv
    return _servers[version]


@pytest.fixture(scope="session", params=server_versions(), ids=lambda v: f"pg{v}")
def pg(request, server_root) -> LocalServer:
    """Each server version in turn (tests using it run once per version)."""
    return _server(request.param, server_root)


@pytest.fixture(scope="session")
def pg18(server_root) -> LocalServer:
    return _server("18", server_root)


@pytest.fixture(scope="session")
def pg15(server_root) -> LocalServer:
    """The system's PostgreSQL 15, for tests that move a snapshot between server versions."""
    if "15" not in server_versions():
        pytest.skip("the system's PostgreSQL 15 is not installed")
    return _server("15", server_root)


def _new_db(server: LocalServer) -> ConnInfo:
    name = f"t{os.getpid()}_{next(_counter)}"
    server.psql(f'CREATE DATABASE "{name}"')
    return server.conninfo(name)


@pytest.fixture
def db(pg) -> ConnInfo:
    """A fresh empty database on each server version."""
    conn = _new_db(pg)
    yield conn
    _drop(pg, conn.dbname)


@pytest.fixture
def db18(pg18) -> ConnInfo:
    conn = _new_db(pg18)
    yield conn
    _drop(pg18, conn.dbname)


@pytest.fixture
def db15(pg15) -> ConnInfo:
    conn = _new_db(pg15)
    yield conn
    _drop(pg15, conn.dbname)


def _drop(server: LocalServer, name: str) -> None:
    try:
        server.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    except Exception:  # noqa: BLE001 - a stopped server in a fault test; the session cleans up
        pass


@pytest.fixture(autouse=True)
def hermetic(tmp_path, monkeypatch):
    """No user configuration leaks in: connection variables unset, config and data dirs in tmp."""
    for var in list(os.environ):
        if var.startswith("PG") or var in ("SUPABASE_DB_URL", "DATABASE_URL", "DBSAGE_SNAPSHOT_DIR",
                                           "DBSAGE_PG_BINDIR", "DBSAGE_CONFIG"):
            monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("DBSAGE_DATA_DIR", str(tmp_path / "data"))


@pytest.fixture
def snapdir(tmp_path) -> Path:
    return tmp_path / "snapshots"


def load_sql(server: LocalServer, conn: ConnInfo, path: Path) -> None:
    """Load a SQL file the way the fixtures' README says: psql -v ON_ERROR_STOP=1 -f FILE."""
    res = subprocess.run([str(server.bindir / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", str(path)],
                         env=conn.child_env(), capture_output=True, text=True)
    assert res.returncode == 0, res.stderr


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


def has_extension(server: LocalServer, name: str) -> bool:
    return server.psql(f"SELECT count(*) FROM pg_available_extensions WHERE name = '{name}'").strip() == "1"


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
            for children in Path(f"/proc/{todo.pop()}/task").glob("*/children"):
                with contextlib.suppress(OSError, ValueError):
                    kids = [int(k) for k in children.read_text().split()]
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


def run_cli(*args: str, env: dict | None = None, input: str | None = None, timeout: float = 300):
    """Run the installed ``dbsage-tui`` console script as a user would (a real process)."""
    exe = shutil.which("dbsage-tui")
    assert exe, "dbsage-tui is not installed (pip install -e .)"
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run([exe, *args], env=full_env, capture_output=True, text=True, input=input,
                          timeout=timeout)


# -- hosted-Supabase shape: ../shared/fixtures/supabase-platform, the app applied as the non-superuser postgres

PLATFORM = FIXTURES / "supabase-platform"
PLATFORM_PASSWORD = "Pl4tform-s3cret-pw"


class Platform:
    """A cluster built by the fixture's own scripts: superuser supabase_admin, the platform's schemas,
    roles and migrations in a template database, and ``tests/sql/supabase_app.sql`` applied on top as
    the non-superuser ``postgres``, as ``supabase db push`` would."""

    def __init__(self, version: str, root: Path) -> None:
        from services.sandbox import _free_port
        from services.server.processes import embedded_bindir
        self.bindir = embedded_bindir() if version == "18" else SYSTEM_PG15
        self.datadir = root / f"platform{version}"
        self.port = _free_port()
        for parent in [root, *root.parents]:  # the server runs as an unprivileged user: let it reach its dir
            parent.chmod(parent.stat().st_mode | 0o001)
        self._script("cluster.sh", "start", str(self.bindir), str(self.datadir), str(self.port), PLATFORM_PASSWORD)
        su_url = f"postgresql://supabase_admin:{PLATFORM_PASSWORD}@127.0.0.1:{self.port}/postgres"
        self._script("build-platform.sh", str(self.bindir), su_url, "platform_tpl")
        load_sql(self, self.conn("platform_tpl"), SQL / "supabase_app.sql")

    def _script(self, name: str, *args: str) -> str:
        res = subprocess.run([str(PLATFORM / name), *args], capture_output=True, text=True, timeout=300)
        assert res.returncode == 0, f"{name} failed: {res.stderr[-2000:]}"
        return res.stdout

    def conn(self, dbname: str, user: str = "postgres") -> ConnInfo:
        return ConnInfo(host="127.0.0.1", port=self.port, user=user, dbname=dbname, password=PLATFORM_PASSWORD,
                        source="test")

    def psql(self, sql: str, dbname: str = "postgres", user: str = "supabase_admin") -> str:
        res = subprocess.run([str(self.bindir / "psql"), "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1"], input=sql,
                             capture_output=True, text=True, env=self.conn(dbname, user).child_env(), timeout=120)
        if res.returncode != 0:
            raise AssertionError(f"psql as {user} failed: {res.stderr.strip()}")
        return res.stdout

    def stop(self) -> None:
        subprocess.run([str(PLATFORM / "cluster.sh"), "stop", str(self.bindir), str(self.datadir)],
                       capture_output=True, timeout=120)


_platforms: dict[str, Platform] = {}


@pytest.fixture(scope="session", params=server_versions(), ids=lambda v: f"pg{v}")
def platform(request, server_root) -> Platform:
    """The hosted-Supabase shape on each server version (built once per version, about 10 s)."""
    if request.param not in _platforms:
        _platforms[request.param] = Platform(request.param, server_root)
        request.addfinalizer(lambda: _platforms.pop(request.param).stop())
    return _platforms[request.param]


@pytest.fixture
def supa(platform) -> ConnInfo:
    """A fresh copy of the platform's database with the app, as the non-superuser postgres connects to it."""
    name = f"sb{os.getpid()}_{next(_counter)}"
    platform.psql(f'CREATE DATABASE "{name}" TEMPLATE platform_tpl OWNER postgres')
    yield platform.conn(name)
    platform.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
