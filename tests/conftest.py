"""Fixtures: real PostgreSQL servers (embedded 18, plus the system's 15 when installed), a fresh database
per test, hermetic settings. Nothing here fakes pg_dump, psql or the server. Plain helpers are in
``tests/helpers.py``.

``pytest`` runs the tests in two pytest-xdist workers (``addopts`` in pyproject.toml), each with servers of
its own, started in a background thread as its tests ask for them; the worker that runs the hosted-Supabase
platform tests (``GROUPED``) builds the next version's platform, the slowest part of the setup, while the
first version's tests run. In one process (``-n 0``), every server the selected tests use is queued as soon
as they are collected, in the order the tests need them."""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import tempfile
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest

from services.config import ConnInfo
from services.sandbox import LocalServer
from tests.helpers import PLATFORM, SQL, SYSTEM_PG15, load_sql

_counter = itertools.count(1)


#: Fixtures that start a real PostgreSQL: a test that uses one is in the "pg" lane.
PG_FIXTURES = {"pg", "pg18", "pg15", "platform", "supa"}
#: Fixtures that stand for "each server version": parametrized by ``pytest_generate_tests``.
VERSIONED = ("pg", "platform")
#: Fixtures too slow to build twice (the platforms, the TLS server): pytest-xdist runs the tests that use
#: one in a single worker (``--dist loadgroup``), which builds it once.
GROUPED = ("platform", "tls")


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist's, which reads the groups
def pytest_collection_modifyitems(items) -> None:
    """The lanes: ``-m "not pg"`` runs what needs no PostgreSQL (seconds), ``-m tui`` the app's pilot and
    picture tests. A test that starts a server without a fixture (the demo) carries the mark itself."""
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        if PG_FIXTURES & names:
            item.add_marker(pytest.mark.pg)
        if item.module.__name__.split(".")[-1].startswith("test_tui"):
            item.add_marker(pytest.mark.tui)
        for name in GROUPED:
            if name in names:
                item.add_marker(pytest.mark.xdist_group(name))


def server_versions() -> list[str]:
    versions = ["18"]
    if (SYSTEM_PG15 / "postgres").exists() and os.environ.get("DBSAGE_TEST_PG15", "1") != "0":
        versions.append("15")
    return versions


def pytest_generate_tests(metafunc) -> None:
    """``pg`` and ``platform`` are every server version in a test marked ``every_version`` (where the version
    matters: restore fidelity, tool compatibility, the platform's shape), PostgreSQL 18 elsewhere."""
    every = metafunc.definition.get_closest_marker("every_version") is not None
    for name in VERSIONED:
        if name in metafunc.fixturenames:
            metafunc.parametrize(name, server_versions() if every else ["18"], indirect=True, scope="session",
                                 ids=lambda v: f"pg{v}")


# -- servers, started in the background --------------------------------------------------------------------

_root: Path | None = None
_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="test-servers")
_started: dict[str, Future] = {}


def _server_root() -> Path:
    global _root
    if _root is None:
        _root = Path(tempfile.mkdtemp(prefix="dbsage-test-"))
    return _root


def _start(key: str) -> Future:
    """The server ``key`` ("pg18", "pg15", "platform18", ...): queued once, started in the background."""
    if key not in _started:
        make = Platform if key.startswith("platform") else _make_server
        _started[key] = _pool.submit(make, key[-2:], _server_root())
    return _started[key]


def _needs(item) -> list[str]:
    names = set(getattr(item, "fixturenames", ()))
    params = getattr(getattr(item, "callspec", None), "params", {})
    keys = [name for name in ("pg18", "pg15") if name in names]
    keys += [f"{name}{params[name]}" for name in VERSIONED if name in params]
    return [k for k in keys if not k.endswith("15") or "15" in server_versions()]


def pytest_collection_finish(session) -> None:
    """Queue the servers the selected tests use, in the order of the tests. (Not in a pytest-xdist worker,
    which collects every test but runs those it is sent: it starts what its tests ask for.)"""
    if not session.config.option.collectonly and not hasattr(session.config, "workerinput"):
        _queue(session.items)


def _queue(items, kind: str = "") -> None:
    for item in items:
        for key in _needs(item):
            if key.startswith(kind):
                _start(key)


def pytest_sessionfinish(session) -> None:
    """Stop every server (before its directory goes: without postmaster.pid, pg_ctl cannot stop it)."""
    _pool.shutdown(wait=True, cancel_futures=True)
    for future in _started.values():
        if future.done() and future.exception() is None:
            server = future.result()
            if isinstance(server, LocalServer):
                server.stop("immediate")
            else:
                server.stop()
    if _root is not None:
        shutil.rmtree(_root, ignore_errors=True)


def _make_server(version: str, root: Path) -> LocalServer:
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
    return srv


def _server(version: str) -> LocalServer:
    return _start(f"pg{version}").result()


@pytest.fixture(scope="session")
def pg(request) -> LocalServer:
    """A server version (every one in turn in tests marked ``every_version``; see ``pytest_generate_tests``)."""
    return _server(request.param)


@pytest.fixture(scope="session")
def pg18() -> LocalServer:
    return _server("18")


@pytest.fixture(scope="session")
def pg15() -> LocalServer:
    """The system's PostgreSQL 15, for tests that move a snapshot between server versions."""
    if "15" not in server_versions():
        pytest.skip("the system's PostgreSQL 15 is not installed")
    return _server("15")


def _new_db(server: LocalServer) -> ConnInfo:
    name = f"t{os.getpid()}_{next(_counter)}"
    server.psql(f'CREATE DATABASE "{name}"')
    return server.conninfo(name)


@pytest.fixture
def db(pg) -> ConnInfo:
    """A fresh empty database on the server ``pg``."""
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


# -- hosted-Supabase shape: ../shared/fixtures/supabase-platform, the app applied as the non-superuser postgres

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


@pytest.fixture(scope="session")
def platform(request) -> Platform:
    """The hosted-Supabase shape on a server version (built once per version, in the background). In an
    xdist worker, which runs every platform test (``GROUPED``), the first one queues the other versions'."""
    _queue(request.session.items, "platform")
    return _start(f"platform{request.param}").result()


@pytest.fixture
def supa(platform) -> ConnInfo:
    """A fresh copy of the platform's database with the app, as the non-superuser postgres connects to it."""
    name = f"sb{os.getpid()}_{next(_counter)}"
    platform.psql(f'CREATE DATABASE "{name}" TEMPLATE platform_tpl OWNER postgres')
    yield platform.conn(name)
    platform.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
