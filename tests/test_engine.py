"""The engine called directly, as the TUI calls it: progress events, the demo sandbox."""

from __future__ import annotations

import json

import pytest

from services.events import Log, Progress
from services.server import dump
from services.snapshots.store import SnapshotStore
from tests.helpers import run_cli


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


@pytest.mark.pg
def test_demo_sandbox_end_to_end(tmp_path):
    """`--demo` starts an embedded server in the data dir, seeds the shop database once, keeps its own
    snapshot directory and says SANDBOX. Each command stops the server it started (no postgres is left
    running after trying the demo), and the next one finds the data as it was; a server already running
    (the app open elsewhere) is reused and left running."""
    from services.demo import demo_root, ensure_demo
    from services.sandbox import LocalServer

    env = {"DBSAGE_DATA_DIR": str(tmp_path / "data")}  # as the hermetic fixture sets it
    server = LocalServer(tmp_path / "data" / "demo" / "pgdata")
    try:
        res = run_cli("--demo", "snapshot", "--label", "demo-first", "--json", env=env)
        assert res.returncode == 0, res.stderr
        assert "SANDBOX" in res.stderr
        assert (tmp_path / "data" / "demo" / "snapshots").is_dir()
        assert not server.is_running()
        pid = server.datadir / "postmaster.pid"
        assert not pid.exists()
        res = run_cli("--demo", "list", "--json", env=env)
        assert [r["label"] for r in json.loads(res.stdout)] == ["demo-first"]
        # What a new user tries next: break the sandbox from psql (its options after ours, or ours after
        # the command), then get it back.
        res = run_cli("--demo", "psql", "-v", "ON_ERROR_STOP=1", "-c", "DROP TABLE order_items", env=env)
        assert res.returncode == 0 and "DROP TABLE" in res.stdout, res.stderr
        res = run_cli("psql", "--demo", "-v", "ON_ERROR_STOP=1", "-c", "SELECT count(*) FROM order_items",
                      env=env)
        assert res.returncode == 1 and 'relation "order_items" does not exist' in res.stderr, res.stderr
        res = run_cli("--demo", "restore", "1", "--yes", "--no-pre-snapshot", env=env)
        assert res.returncode == 0, res.stderr
        assert "4 tables, 4,300 rows loaded as recorded" in res.stdout
        res = run_cli("--demo", "psql", "-At", "-c", "SELECT count(*) FROM order_items", env=env)
        assert (res.returncode, res.stdout) == (0, "3000\n"), res.stderr
        assert not server.is_running()
        assert not server.is_running()
        # Started by someone else (here: this test, as an open app would have): used, and left running.
        assert demo_root() == tmp_path / "data" / "demo"
        ensure_demo()
        running = pid.read_text().split()[0]
        res = run_cli("--demo", "list", "--json", env=env)
        assert res.returncode == 0, res.stderr
        assert server.is_running() and pid.read_text().split()[0] == running
    finally:
        server.stop()


@pytest.mark.pg
def test_the_demo_app_on_a_terminal_hands_it_to_psql_and_quits_stopping_its_server(tmp_path):
    """The full-screen app on a real terminal (a pty), as a new user runs it: ``dbsage-tui --demo``, the
    screen shows the sandbox; ``s`` gives the terminal to psql on the sandbox (a table created there is
    in the database) and ``\\q`` gives it back to the app; ``q`` quits with 0, and no PostgreSQL is left
    running."""
    import fcntl
    import os
    import pty
    import select
    import shutil
    import struct
    import subprocess
    import termios
    import time

    from services.sandbox import LocalServer

    server = LocalServer(tmp_path / "data" / "demo" / "pgdata")
    main, child = pty.openpty()
    fcntl.ioctl(child, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 140, 0, 0))
    env = {**os.environ, "DBSAGE_DATA_DIR": str(tmp_path / "data"), "TERM": "xterm-256color"}
    proc = subprocess.Popen([shutil.which("dbsage-tui"), "--demo"], stdin=child, stdout=child, stderr=child,
                            env=env, start_new_session=True)
    os.close(child)
    seen = b""

    def read_until(pred, timeout: float) -> bool:
        nonlocal seen
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not pred():
            ready, _, _ = select.select([main], [], [], 0.1)
            if ready:
                try:
                    seen += os.read(main, 65536)
                except OSError:  # the app exited: the pty is closed
                    break
        return pred()

    try:
        assert read_until(lambda: b"SANDBOX" in seen and b"snapshot" in seen.lower(), 60), seen[-2000:]
        assert server.is_running()
        time.sleep(0.5)  # let the first listing settle, as a person would look first
        os.write(main, b"s")
        assert read_until(lambda: b"shop=#" in seen, 30), seen[-2000:]
        os.write(main, b"CREATE TABLE made_in_psql (); SELECT 40 + 2 AS answer;\n")
        assert read_until(lambda: b"42" in seen.split(b"answer")[-1], 30), seen[-2000:]
        mark = len(seen)
        os.write(main, b"\\q\n")
        assert read_until(lambda: b"exited" in seen[mark:], 30), seen[-2000:]  # the app's log says so
        server.load_password()  # the app started it: its password is in the file beside the data
        assert server.psql("SELECT to_regclass('public.made_in_psql') IS NOT NULL", "shop").strip() == "t"
        os.write(main, b"q")
        read_until(lambda: proc.poll() is not None, 30)
        assert proc.wait(timeout=30) == 0
        assert not server.is_running() and not (server.datadir / "postmaster.pid").exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(main)
        server.stop()
