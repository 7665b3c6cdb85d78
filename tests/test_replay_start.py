"""A restore's psql is started before the restore's last checks, and its rows are held against the metadata.

psql connects while the pre-flight runs; a refusal must then end it having run nothing, and leave no psql
and no session behind. A file whose sha256 matches its metadata is not counted again: psql's ``COPY n``
tags are matched with the row counts the metadata recorded from those very bytes.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from services.server import dump, restore
from services.snapshots.scanner import DumpScanner
from services.snapshots.store import SnapshotStore
from tests.helpers import full_dump


def _children() -> list[str]:
    """The names of this process' live children."""
    names = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            pid_comm, rest = stat.read_text().rsplit(")", 1)
        except OSError:
            continue
        fields = rest.split()
        if int(fields[1]) == os.getpid() and fields[0] != "Z":
            names.append(pid_comm.split("(", 1)[1])
    return names


async def test_a_refused_restore_ends_its_early_psql_having_run_nothing(pg, db, snapdir):
    pg.psql("CREATE SCHEMA app; CREATE TABLE app.t (id int); INSERT INTO app.t VALUES (1), (2);", db.dbname)
    store = SnapshotStore(snapdir)
    snap = await dump.snapshot(db, store, "app-only", schemas=["app"])
    # A view outside the scope on a table inside it: the pre-flight refuses (it could not be re-created).
    pg.psql("INSERT INTO app.t VALUES (3); CREATE VIEW public.v AS SELECT id FROM app.t;", db.dbname)
    state = full_dump(db)
    with pytest.raises(restore.OperationFailed) as err:
        await restore.restore(db, store, store.resolve(snap.filename), pre_snapshot=False)
    assert "Cannot restore" in err.value.one_line() and "public.v" in err.value.one_line()
    assert "psql" not in _children()
    app = f"dbsage-tui restore {os.getpid()}"
    deadline = time.monotonic() + 5
    while pg.psql(f"SELECT count(*) FROM pg_stat_activity WHERE application_name = '{app}'").strip() != "0":
        assert time.monotonic() < deadline, "the early psql's session outlived the refusal"
        time.sleep(0.05)
    assert full_dump(db) == state
    assert store.read_audit()[-1]["outcome"] == "refused"


async def test_rows_are_matched_with_the_metadata_when_the_file_is_not_counted(pg, db, snapdir):
    """The restore does not count the file's rows (its metadata has them): a table with rows and an empty
    one come back as the metadata recorded them."""
    pg.psql("CREATE TABLE a (id int); INSERT INTO a SELECT generate_series(1, 1000); CREATE TABLE b (x text);",
            db.dbname)
    store = SnapshotStore(snapdir)
    snap = await dump.snapshot(db, store, "counted")
    assert snap.meta["row_counts"] == {"public.a": 1000, "public.b": 0}
    pg.psql("TRUNCATE a; INSERT INTO b VALUES ('new');", db.dbname)
    result = await restore.restore(db, store, store.resolve(snap.filename), pre_snapshot=False)
    assert {c.name: c.ok for c in result.checks}["row counts"]
    assert pg.psql("SELECT (SELECT count(*) FROM a) || ',' || (SELECT count(*) FROM b)", db.dbname).strip() == "1000,0"


def test_a_scan_without_row_counts_still_finds_every_copy_block():
    data = (b"--\n-- PostgreSQL database dump\n--\n\nCOPY public.a (id) FROM stdin;\n1\n2\n\\.\n\n"
            b"COPY public.b (x) FROM stdin;\n\\.\n\n-- PostgreSQL database dump complete\n\n")
    for size in (1, 7, len(data)):
        counted, found = DumpScanner(), DumpScanner(count_rows=False)
        for i in range(0, len(data), size):
            counted.feed(data[i:i + size])
            found.feed(data[i:i + size])
        assert counted.finish().copies == [("public.a", 2), ("public.b", 0)]
        res = found.finish()
        assert res.copies == [("public.a", 0), ("public.b", 0)] and res.complete
