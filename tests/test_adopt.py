"""``dbsage-tui adopt FILE``: a pg_dump made by hand and put in the snapshot directory gets metadata that
the quick check and ``validate`` accept, and restores exactly; what is not a complete dump is refused with
nothing written. And ``list``'s text table: the Flags header and legend, ``…`` where it cuts, a File
column when the terminal is wide enough, bold recent rows on a TTY only."""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import json
import os
import pty
import shutil
import subprocess
from pathlib import Path

from services.display import utcnow
from services.server.processes import embedded_bindir
from services.snapshots.store import TS_FORMAT, SnapshotStore
from tests.helpers import assert_clean_error, assert_same, full_dump, run_cli, url, write_snapshot


def seed(pg, db) -> None:
    pg.psql("""CREATE SCHEMA billing;
               CREATE TABLE items (id int PRIMARY KEY, name text);
               INSERT INTO items SELECT i, 'item ' || i FROM generate_series(1, 500) i;
               CREATE TABLE billing.invoices (id serial PRIMARY KEY, item int REFERENCES items, total numeric);
               INSERT INTO billing.invoices (item, total) SELECT i, i * 1.5 FROM generate_series(1, 40) i;
               CREATE VIEW billing.big AS SELECT * FROM billing.invoices WHERE total > 30;""", db.dbname)


def dump_by_hand(db, snapdir: Path, label: str, *args: str) -> Path:
    """``pg_dump --clean --if-exists`` into the snapshot directory under a snapshot's name, as a user would."""
    snapdir.mkdir(parents=True, exist_ok=True)
    path = snapdir / f"{utcnow().strftime(TS_FORMAT)}_{label}.sql"
    res = subprocess.run([str(embedded_bindir() / "pg_dump"), "--clean", "--if-exists", "--no-password", *args,
                          "-f", str(path)], env=db.child_env(), capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    return path


def cli(snapdir: Path, *args: str, db=None):
    return run_cli(*args, "--dir", str(snapdir), env={"DATABASE_URL": url(db)} if db else None)


def test_adopted_dump_validates_and_restores_exactly(pg18, db18, snapdir):
    seed(pg18, db18)
    before = full_dump(db18)
    path = dump_by_hand(db18, snapdir, "by-hand")
    listing = cli(snapdir, "list").stdout
    assert f"metadata file is missing (adopt it with `dbsage-tui --dir {snapdir} adopt {path.name}`)" in listing

    res = cli(snapdir, "adopt", path.name, "--json")
    assert res.returncode == 0, res.stderr
    meta = json.loads(res.stdout)
    on_disk = json.loads(Path(f"{path}.meta.yaml").read_text())["snapshot"]
    assert on_disk == meta
    assert meta["adopted"] is True and meta["adopted_at"].startswith(utcnow().strftime("%Y-%m-%dT"))
    assert meta["type"] == "full" and meta["tables_count"] == 2 and meta["schemas"] == ["billing", "public"]
    assert meta["row_counts"] == {"billing.invoices": 40, "public.items": 500}
    assert meta["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert meta["size_bytes"] == path.stat().st_size
    assert meta["database_version"].startswith("PostgreSQL 18.") and meta["pg_dump_version"].startswith("18.")
    rows = json.loads(cli(snapdir, "list", "--json").stdout)
    assert [(r["filename"], r["valid"], r["type"]) for r in rows] == [(path.name, True, "full")]
    assert cli(snapdir, "validate", path.name).returncode == 0

    pg18.psql("""DELETE FROM items WHERE id > 450; DROP VIEW billing.big; UPDATE billing.invoices SET total = 0;
                 CREATE TABLE public.later (x int); CREATE SCHEMA IF NOT EXISTS billing;
                 ALTER TABLE items ADD COLUMN extra text""", db18.dbname)
    assert full_dump(db18) != before
    res = cli(snapdir, "restore", path.name, "--yes", db=db18)
    assert res.returncode == 0, res.stdout + res.stderr
    assert_same(before, full_dump(db18))

    again = cli(snapdir, "adopt", path.name)
    assert_clean_error(again, 2, "already has metadata")
    assert json.loads(Path(f"{path}.meta.yaml").read_text())["snapshot"] == meta


def test_adopt_schema_only_and_gzip_then_refuses_what_is_not_a_complete_dump(pg18, db18, snapdir):
    seed(pg18, db18)
    schema = dump_by_hand(db18, snapdir, "schema", "--schema-only")
    res = cli(snapdir, "adopt", schema.name)
    assert res.returncode == 0, res.stderr
    assert f"Adopted {schema.name}: schema-only, " in res.stdout and "2 tables, schemas billing, public" in res.stdout
    assert f"Restore with: dbsage-tui --dir {snapdir} restore {schema.name}" in res.stdout
    assert json.loads(cli(snapdir, "show", schema.name, "--json").stdout)["metadata"]["row_counts"] is None
    assert cli(snapdir, "validate", schema.name).returncode == 0

    plain = dump_by_hand(db18, snapdir, "packed")
    packed = plain.with_name(plain.name + ".gz")
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    plain.unlink()
    res = cli(snapdir, "adopt", packed.name, "--json")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["compression"] == "gzip"
    assert cli(snapdir, "validate", packed.name).returncode == 0

    full = dump_by_hand(db18, snapdir, "cut").read_bytes()
    truncated = snapdir / f"{(utcnow() - dt.timedelta(hours=1)).strftime(TS_FORMAT)}_cut.sql"
    truncated.write_bytes(full[: full.index(b"COPY public.items") + 200])
    junk = snapdir / "20240101000000_junk.sql"
    junk.write_text("SELECT 1;\n")
    created = dump_by_hand(db18, snapdir, "created", "--create")
    archive = dump_by_hand(db18, snapdir, "archive", "-Fc")
    for path, why in ((truncated, "truncated"), (junk, "not a plain-format pg_dump"), (created, "--create"),
                      (archive, "pg_restore -f FILE.sql ARCHIVE")):
        assert_clean_error(cli(snapdir, "adopt", path.name), 3, "cannot be adopted", why, "Nothing was written")
        assert not Path(f"{path}.meta.yaml").exists()
    assert_clean_error(cli(snapdir, "adopt", "/etc/passwd"), 2, "not in the snapshot directory")


def test_list_text_flags_ellipsis_and_file_column(tmp_path):
    store = SnapshotStore(tmp_path)
    now = utcnow()
    long_label = "before-migration-of-the-billing-tables"
    purpose = "Before running the big billing migration that rewrites every invoice"
    wide = write_snapshot(store, long_label, now - dt.timedelta(hours=2), purpose=purpose)
    write_snapshot(store, "v1.0", now - dt.timedelta(days=3), purpose="release")

    text = run_cli("list", "--dir", str(tmp_path), env={"COLUMNS": "250"}).stdout
    header = next(ln for ln in text.splitlines() if ln.startswith("# |"))
    assert header.split(" | ")[-2:] == [f"File{' ' * (len(wide.name) - 4)}", "Flags"]
    assert "Flags: ! invalid  P protected" in text
    assert f"| {purpose[:39]}… |" in text and f"| {wide.name} |" in text
    assert max(len(ln) for ln in text.splitlines() if " | " in ln) <= 250

    narrow = run_cli("list", "--dir", str(tmp_path), env={"COLUMNS": "80"}).stdout
    table = [ln for ln in narrow.splitlines() if " | " in ln or ln.startswith("--|")]
    assert table and max(len(ln) for ln in table) <= 80
    assert "File" not in table[0] and "before-migrat…" in narrow and "Before…" in narrow
    assert json.loads(run_cli("list", "--json", "--dir", str(tmp_path)).stdout)[0]["purpose"] == purpose


def list_on_a_tty(directory: Path, **env: str) -> str:
    """``dbsage-tui list`` with its stdout on a pseudo-terminal, as a user's shell gives it: what it printed."""
    main, sub = pty.openpty()
    full_env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"} | env
    proc = subprocess.Popen([shutil.which("dbsage-tui"), "list", "--dir", str(directory)], stdout=sub,
                            stderr=subprocess.PIPE, env=full_env)
    os.close(sub)
    out = b""
    try:
        while chunk := os.read(main, 4096):
            out += chunk
    except OSError:  # EIO: the child closed the terminal
        pass
    finally:
        os.close(main)
    assert proc.wait(timeout=60) == 0, proc.stderr.read()
    return out.decode()


def test_list_bolds_the_last_day_on_a_tty_only(tmp_path):
    store = SnapshotStore(tmp_path)
    now = utcnow()
    write_snapshot(store, "fresh", now - dt.timedelta(hours=3))
    write_snapshot(store, "old", now - dt.timedelta(days=2))
    lines = list_on_a_tty(tmp_path).splitlines()
    assert [ln.startswith("\x1b[1m") for ln in lines if "| fresh " in ln or "| old " in ln] == [True, False]
    assert "\x1b[" not in list_on_a_tty(tmp_path, NO_COLOR="1")
    assert "\x1b[" not in run_cli("list", "--dir", str(tmp_path)).stdout
