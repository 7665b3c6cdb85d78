"""Faults on a bad day: real processes, real signals, a real server stopped under our feet. Each case checks
that nothing is lost: a one-line error and the right exit code, no traceback, nothing that lists as a valid
snapshot unless it is one, the database untouched or exactly restored, the audit log telling the truth.

Run alone with ``pytest -m faults``."""

from __future__ import annotations

import contextlib
import json
import os
import resource
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from services.sandbox import LocalServer
from services.snapshots.store import SnapshotStore
from tests.helpers import assert_clean_error, copy_template, full_dump, run_cli, url, wait_for

pytestmark = pytest.mark.faults

BIG_ROWS = 300_000  # ~40 MB of dump: long enough to interrupt mid-stream, quick to build


BIG_SQL = f"""CREATE TABLE big (id int PRIMARY KEY, payload text, doc jsonb);
              INSERT INTO big SELECT i, repeat(md5(i::text), 3), jsonb_build_object('i', i)
              FROM generate_series(1, {BIG_ROWS}) i;
              CREATE TABLE small (id int); INSERT INTO small VALUES (1), (2);"""


def make_big(pg, db) -> None:
    """``db`` (new and empty) gets ``big`` and ``small``: a copy of a template built once per server."""
    copy_template(pg, db, "big", lambda template: pg.psql(BIG_SQL, template.dbname))


def spawn(args, db, snapdir, **kw) -> subprocess.Popen:
    env = {**os.environ, "DATABASE_URL": url(db)}
    return subprocess.Popen([shutil.which("dbsage-tui"), *args, "--dir", str(snapdir)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def children(pid: int, name: str) -> list[int]:
    """The working ``name`` children of ``pid``. The tool probe (``pg_dump --version``, run before the dump
    in a process without a cached probe) is a child with the same name that ends at once; a zombie has an
    empty command line. Neither is the process a test wants to stop or kill."""
    out = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text()
            comm = stat[stat.index("(") + 1: stat.rindex(")")]
            ppid = int(stat[stat.rindex(")") + 2:].split()[1])
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            continue
        if ppid == pid and comm == name and argv[0] and b"--version" not in argv:
            out.append(int(proc.name))
    return out


def partial_size(snapdir: Path) -> int:
    return sum(p.stat().st_size for p in snapdir.glob("*.partial")) if snapdir.exists() else 0


def freeze_mid_stream(pid: int, snapdir: Path, min_bytes: int) -> None:
    """Stop pg_dump, then let it run in tiny steps until the partial file (which pg_dump writes itself)
    holds ``min_bytes``. A step is a SIGCONT followed at once by a SIGSTOP, which takes effect at pg_dump's
    next system call, so even a loaded machine that preempts us between the two lets it write only a
    little, never the whole dump."""
    os.kill(pid, signal.SIGSTOP)
    deadline = time.monotonic() + 60
    while partial_size(snapdir) < min_bytes:
        assert time.monotonic() < deadline, "pg_dump made no progress"
        os.kill(pid, signal.SIGCONT)
        os.kill(pid, signal.SIGSTOP)
        time.sleep(0.002)


def spawn_frozen_dump(pg, db, snapdir: Path, label: str, min_bytes: int) -> tuple[subprocess.Popen, int]:
    """``dbsage-tui snapshot`` with its pg_dump frozen mid-COPY, whatever the machine's speed: a session
    holds a lock on ``big`` until pg_dump waits for it, pg_dump is stopped, the lock released, and then
    pg_dump is stepped to ``min_bytes``. (Without the lock, a fast moment can finish the whole 40 MB dump
    before the first SIGSTOP lands.) Returns the dbsage-tui process and pg_dump's pid."""
    holder = subprocess.Popen([str(pg.bindir / "psql"), "-X", "-q"], stdin=subprocess.PIPE, text=True,
                              env=db.child_env(), stdout=subprocess.DEVNULL)
    # Precise lock modes: autovacuum (busy after make_big) holds other locks on big, granted or not.
    locks = "SELECT count(*) FROM pg_locks WHERE relation = 'big'::regclass AND mode = '{}' AND {} granted"
    try:
        holder.stdin.write("BEGIN; LOCK TABLE big IN ACCESS EXCLUSIVE MODE;\n")
        holder.stdin.flush()
        wait_for(lambda: pg.psql(locks.format("AccessExclusiveLock", ""), db.dbname).strip() != "0")
        proc = spawn(["snapshot", "--label", label], db, snapdir)
        dump_pid = wait_for(lambda: children(proc.pid, "pg_dump"))[0]
        wait_for(lambda: pg.psql(locks.format("AccessShareLock", "NOT"), db.dbname).strip() != "0")
        os.kill(dump_pid, signal.SIGSTOP)
    finally:
        holder.stdin.write("COMMIT;\n")
        holder.stdin.close()
        holder.wait(timeout=30)
    freeze_mid_stream(dump_pid, snapdir, min_bytes)
    return proc, dump_pid


def assert_no_valid_snapshot(snapdir: Path, label: str) -> None:
    assert not [s for s in SnapshotStore(snapdir).list() if s.label == label and s.valid]


# -- snapshots interrupted -------------------------------------------------------------------------------

@pytest.mark.parametrize("point", ["before-data", "mid-stream"])
def test_kill_9_of_dbsage_during_snapshot(pg18, db18, snapdir, point):
    make_big(pg18, db18)
    holder = None
    if point == "before-data":
        # pg_dump waits for a lock held elsewhere: killed before any data was written.
        holder = subprocess.Popen([str(pg18.bindir / "psql"), "-X", "-q"], stdin=subprocess.PIPE, text=True,
                                  env=db18.child_env(), stdout=subprocess.DEVNULL)
        holder.stdin.write("BEGIN; LOCK TABLE small IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(30);\n")
        holder.stdin.flush()
    if point == "mid-stream":
        proc, dump_pid = spawn_frozen_dump(pg18, db18, snapdir, "killed", 1_000_000)  # then kill us
    else:
        proc = spawn(["snapshot", "--label", "killed"], db18, snapdir)
        dump_pid = wait_for(lambda: children(proc.pid, "pg_dump"))[0]
        wait_for(lambda: list(snapdir.glob("*.partial")))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    with contextlib.suppress(ProcessLookupError):  # PR_SET_PDEATHSIG may have ended it already
        os.kill(dump_pid, signal.SIGCONT)
    wait_for(lambda: not Path(f"/proc/{dump_pid}").exists() or
             "Z" in Path(f"/proc/{dump_pid}/stat").read_text().split()[2], timeout=10)
    if holder:
        holder.kill()
        pg18.psql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                  "WHERE query LIKE '%pg_sleep(30)%' AND pid <> pg_backend_pid()", db18.dbname)
    # What is left is a stale .partial: never listed as a snapshot, shown as an orphan.
    assert_no_valid_snapshot(snapdir, "killed")
    store = SnapshotStore(snapdir)
    assert [p.name for p in store.orphans() if p.name.endswith(".partial")]
    # The kernel released the flock with the process: the next snapshot works at once.
    res = run_cli("snapshot", "--label", "after", "--dir", str(snapdir), env={"DATABASE_URL": url(db18)})
    assert res.returncode == 0, res.stderr
    assert [s.label for s in store.list()] == ["after"]


def test_kill_9_of_pg_dump_is_a_clear_failure(pg18, db18, snapdir):
    make_big(pg18, db18)
    proc, dump_pid = spawn_frozen_dump(pg18, db18, snapdir, "victim", 100_000)
    os.kill(dump_pid, signal.SIGKILL)
    out, err = proc.communicate(timeout=30)

    class R:
        returncode, stdout, stderr = proc.returncode, out, err
    assert_clean_error(R, 1, "pg_dump", "signal 9")
    assert not list(snapdir.glob("*.partial")) and not list(snapdir.glob("*.sql"))
    assert SnapshotStore(snapdir).read_audit()[-1]["outcome"] == "failed"


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_sigint_and_sigterm_cancel_cleanly(pg18, db18, snapdir, sig):
    make_big(pg18, db18)
    proc, dump_pid = spawn_frozen_dump(pg18, db18, snapdir, "cancelled", 100_000)
    proc.send_signal(sig)
    os.kill(dump_pid, signal.SIGCONT)
    out, err = proc.communicate(timeout=30)

    class R:
        returncode, stdout, stderr = proc.returncode, out, err
    assert_clean_error(R, 1, "Cancelled")
    assert not list(snapdir.glob("*.partial")) and not list(snapdir.glob("*.sql"))
    assert not Path(f"/proc/{dump_pid}/cmdline").exists() or not Path(f"/proc/{dump_pid}/cmdline").read_bytes()
    assert SnapshotStore(snapdir).read_audit()[-1]["outcome"] == "cancelled"


def test_file_size_limit_while_dumping(pg18, db18, snapdir):
    """The disk fills up (RLIMIT_FSIZE on our writer): the seed's advice, the partial file removed."""
    make_big(pg18, db18)
    before = full_dump(db18)
    limit = 2_000_000
    proc = spawn(["snapshot", "--label", "toobig"], db18, snapdir,
                 preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit)))
    out, err = proc.communicate(timeout=60)

    class R:
        returncode, stdout, stderr = proc.returncode, out, err
    assert_clean_error(R, 1, "Free up disk space", "schema-only", "cleanup")
    assert not list(snapdir.glob("*.partial")) and not list(snapdir.glob("*.sql"))
    assert full_dump(db18) == before


def test_no_space_left_on_a_small_tmpfs(pg18, db18, tmp_path):
    """A real full disk: a 1 MB tmpfs as the snapshot directory."""
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        make_big(pg18, db18)
        res = run_cli("snapshot", "--label", "full-disk", "--dir", str(mnt / "snaps"),
                      env={"DATABASE_URL": url(db18)})
        assert_clean_error(res, 1, "No space left on device", "Free up disk space")
        assert not [p for p in (mnt / "snaps").iterdir() if p.suffix in (".sql", ".partial")]
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


# -- restores interrupted --------------------------------------------------------------------------------

def _snapshot_then_mutate(pg, db, snapdir):
    make_big(pg, db)
    res = run_cli("snapshot", "--label", "base", "--dir", str(snapdir), env={"DATABASE_URL": url(db)})
    assert res.returncode == 0, res.stderr
    pg.psql("DELETE FROM big WHERE id % 3 = 0; CREATE TABLE newer (x int);", db.dbname)
    return full_dump(db)


def _copy_running(pg, db) -> bool:
    return pg.psql("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                   "AND query LIKE 'COPY public.big%'", db.dbname).strip() != "0"


@pytest.mark.parametrize("victim", ["dbsage-tui", "psql"])
def test_kill_9_during_restore_leaves_database_unchanged(pg18, db18, snapdir, victim):
    state = _snapshot_then_mutate(pg18, db18, snapdir)
    proc = spawn(["restore", "1", "--yes", "--no-pre-snapshot"], db18, snapdir)
    psql_pid = wait_for(lambda: children(proc.pid, "psql"))[0]
    wait_for(lambda: _copy_running(pg18, db18))
    os.kill(proc.pid if victim == "dbsage-tui" else psql_pid, signal.SIGKILL)
    proc.communicate(timeout=30)
    assert proc.returncode != 0
    wait_for(lambda: not _copy_running(pg18, db18))
    time.sleep(0.5)
    assert full_dump(db18) == state, "a killed restore must leave the database exactly as it was"
    res = run_cli("restore", "1", "--yes", "--no-pre-snapshot", "--dir", str(snapdir),
                  env={"DATABASE_URL": url(db18)})
    assert res.returncode == 0, res.stderr


def _own_server(tmp_path) -> LocalServer:
    srv = LocalServer(tmp_path / "own-pg", password="own-Secret-9")
    srv.ensure_running()
    srv.psql("CREATE DATABASE app")
    return srv


@pytest.mark.pg
def test_server_stops_during_dump_and_restore(tmp_path):
    srv = _own_server(tmp_path)
    snapdir = tmp_path / "snaps"
    try:
        db = srv.conninfo("app")
        srv.psql(BIG_SQL, db.dbname)
        env = {"DATABASE_URL": url(db)}
        # During a dump.
        proc, dump_pid = spawn_frozen_dump(srv, db, snapdir, "server-died", 100_000)  # before the stop
        srv.stop("immediate")
        os.kill(dump_pid, signal.SIGCONT)
        out, err = proc.communicate(timeout=60)

        class R:
            returncode, stdout, stderr = proc.returncode, out, err
        assert_clean_error(R, 1, "pg_dump failed")
        assert not list(snapdir.glob("*.partial")) and not list(snapdir.glob("*.sql"))
        # The next command works once the server is back (on a new port: re-read the URL).
        srv.start()
        db = srv.conninfo("app")
        env = {"DATABASE_URL": url(db)}
        assert run_cli("snapshot", "--label", "ok", "--dir", str(snapdir), env=env).returncode == 0
        srv.psql("DELETE FROM big WHERE id < 1000", "app")
        state = full_dump(db)
        # During a restore.
        proc = spawn(["restore", "1", "--yes", "--no-pre-snapshot"], db, snapdir)
        wait_for(lambda: _copy_running(srv, db))
        srv.stop("immediate")
        out, err = proc.communicate(timeout=60)

        class R2:
            returncode, stdout, stderr = proc.returncode, out, err
        assert_clean_error(R2, 1, "unchanged")
        srv.start()
        db = srv.conninfo("app")
        assert full_dump(db) == state
        audit = SnapshotStore(snapdir).read_audit()
        assert audit[-1]["action"] == "restore" and audit[-1]["outcome"] == "failed"
        res = run_cli("restore", "1", "--yes", "--dir", str(snapdir), env={"DATABASE_URL": url(db)})
        assert res.returncode == 0, res.stderr
    finally:
        srv.destroy()


# -- hostile files and arguments -------------------------------------------------------------------------

def _one_snapshot(pg, db, snapdir):
    pg.psql("CREATE TABLE t (id int); INSERT INTO t SELECT generate_series(1, 50);", db.dbname)
    res = run_cli("snapshot", "--label", "good", "--dir", str(snapdir), "--json", env={"DATABASE_URL": url(db)})
    assert res.returncode == 0, res.stderr
    return SnapshotStore(snapdir).list()[0]


def _rewrite_meta(snap, **changes):
    import yaml
    data = yaml.safe_load(snap.meta_path.read_text())
    data["snapshot"].update(changes)
    snap.meta_path.write_text(yaml.safe_dump(data))


@pytest.mark.parametrize("damage, reason", [
    ("truncate-before-trailer", "truncated"),
    ("empty", ""),
    ("junk", ""),
    ("not-a-dump", "not a pg_dump file"),
    ("meta-wrong-types", "size_bytes"),
    ("meta-other-file", "another file"),
    ("meta-malformed", "not valid YAML"),
    ("meta-missing", "metadata file is missing"),
    ("meta-bomb", "aliases"),
])
def test_damaged_snapshots_are_refused_and_the_database_untouched(pg18, db18, snapdir, damage, reason):
    snap = _one_snapshot(pg18, db18, snapdir)
    pg18.psql("DELETE FROM t WHERE id > 5", db18.dbname)
    state = full_dump(db18)
    data = snap.path.read_bytes()
    if damage == "truncate-before-trailer":
        i = data.rindex(b"-- PostgreSQL database dump complete")
        snap.path.write_bytes(data[:i])
        _rewrite_meta(snap, size_bytes=i)
    elif damage == "empty":
        snap.path.write_bytes(b"")
    elif damage == "junk":
        snap.path.write_bytes(os.urandom(5000))
    elif damage == "not-a-dump":
        text = b"DROP TABLE t;\n"
        snap.path.write_bytes(text)
        import hashlib
        _rewrite_meta(snap, size_bytes=len(text), sha256=hashlib.sha256(text).hexdigest())
    elif damage == "meta-wrong-types":
        _rewrite_meta(snap, size_bytes="big")
    elif damage == "meta-other-file":
        _rewrite_meta(snap, filename="20200101000000_other.sql")
    elif damage == "meta-malformed":
        snap.meta_path.write_text("snapshot: {label: [unclosed\n")
    elif damage == "meta-missing":
        snap.meta_path.unlink()
    elif damage == "meta-bomb":
        snap.meta_path.write_text("a: &a ['x','x','x','x','x','x','x','x','x']\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\n"
                                  "c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\nsnapshot: {label: *c}\n")
    rows = json.loads(run_cli("list", "--json", "--dir", str(snapdir)).stdout)
    assert rows[0]["valid"] is False and reason in rows[0]["problem"]
    res = run_cli("restore", "1", "--yes", "--dir", str(snapdir), env={"DATABASE_URL": url(db18)})
    assert_clean_error(res, 3, "invalid")
    assert full_dump(db18) == state
    assert run_cli("rollback", "--emergency", "--dir", str(snapdir),
                   env={"DATABASE_URL": url(db18)}).returncode == 3
    assert full_dump(db18) == state


def test_directory_fifo_and_orphans_as_snapshot_arguments(snapdir):
    snapdir.mkdir(parents=True)
    (snapdir / "20240101000000_dir.sql").mkdir()
    os.mkfifo(snapdir / "20240101000001_fifo.sql")
    (snapdir / "20240101000002_orphan.sql.meta.yaml").write_text("snapshot: {label: orphan}\n")
    res = run_cli("list", "--json", "--dir", str(snapdir), timeout=10)
    rows = {r["label"]: r for r in json.loads(res.stdout)}
    assert rows["dir"]["valid"] is False and rows["fifo"]["valid"] is False
    assert "orphan" not in rows
    for arg in ("20240101000000_dir.sql", "20240101000001_fifo.sql"):
        res = run_cli("validate", arg, "--dir", str(snapdir), timeout=10)
        assert res.returncode == 3 and "Traceback" not in res.stderr
    assert_clean_error(run_cli("show", "20240101000002_orphan.sql", "--dir", str(snapdir)), 2, "No snapshot")


def test_snapshot_directory_is_a_file(tmp_path, db18):
    f = tmp_path / "file"
    f.write_text("x")
    assert_clean_error(run_cli("list", "--dir", str(f)), 2, "is a file")
    assert_clean_error(run_cli("snapshot", "--label", "x", "--dir", str(f), env={"DATABASE_URL": url(db18)}),
                       2, "is a file")


def test_special_characters_in_password_and_ssl_required(pg18, db18, snapdir):
    pw = "p@ss:w/rd%?&#='\" x"
    pg18.psql("DROP ROLE IF EXISTS weird_pw; CREATE ROLE weird_pw LOGIN SUPERUSER PASSWORD "
              + "'" + pw.replace("'", "''") + "'")
    conn = db18.__class__(host=db18.host, port=db18.port, user="weird_pw", dbname=db18.dbname, password=pw)
    res = run_cli("snapshot", "--label", "weird", "--dir", str(snapdir), env={"DATABASE_URL": url(conn)})
    assert res.returncode == 0, res.stderr
    assert pw not in res.stderr + res.stdout
    res = run_cli("snapshot", "--label", "ssl", "--dir", str(snapdir),
                  env={"DATABASE_URL": url(conn) + "?sslmode=require"})
    assert res.returncode == 1 and "Traceback" not in res.stderr
    assert "SSL" in res.stderr and pw not in res.stderr


def test_role_without_permission_on_a_schema(pg18, db18, snapdir):
    pg18.psql("DROP ROLE IF EXISTS limited; CREATE ROLE limited LOGIN PASSWORD 'limited-pw';")
    pg18.psql("""CREATE SCHEMA private; CREATE TABLE private.secret (x int);
                 CREATE TABLE public.open (x int); INSERT INTO public.open VALUES (1);
                 GRANT SELECT ON public.open TO limited;
                 CREATE TABLE public.closed (x int);""", db18.dbname)
    conn = db18.__class__(host=db18.host, port=db18.port, user="limited", dbname=db18.dbname,
                          password="limited-pw")
    # A schema the role cannot use is out of scope; a table it cannot read is a clear error.
    res = run_cli("snapshot", "--label", "limited", "--dir", str(snapdir), env={"DATABASE_URL": url(conn)})
    assert_clean_error(res, 1, "Permission denied for table", "closed")
    pg18.psql("GRANT SELECT ON public.closed TO limited;", db18.dbname)
    res = run_cli("snapshot", "--label", "limited", "--dir", str(snapdir), "--json",
                  env={"DATABASE_URL": url(conn)})
    assert res.returncode == 0, res.stderr
    meta = json.loads(res.stdout)
    assert meta["schemas"] == ["public"] and "private" in meta["scope"]["excluded"]


def test_unwritable_snapshot_directory(db18, tmp_path):
    """A snapshot directory nobody may write to (a read-only mount: root included)."""
    mnt = tmp_path / "ro"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(mnt)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        for target in (mnt, mnt / "sub"):
            res = run_cli("snapshot", "--label", "x", "--dir", str(target), env={"DATABASE_URL": url(db18)})
            assert_clean_error(res, 1, "not writable", "--dir")
        assert not any(mnt.iterdir())
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


def test_stale_partial_is_reported_by_list(snapdir):
    snapdir.mkdir(parents=True)
    (snapdir / "20260101000000_x.sql.partial").write_text("half a dump")
    res = run_cli("list", "--dir", str(snapdir))
    assert "unfinished snapshot file" in res.stdout and "cleanup --remove-invalid" in res.stdout
    assert json.loads(run_cli("list", "--json", "--dir", str(snapdir)).stdout) == []
