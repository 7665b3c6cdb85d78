"""Compressed snapshots (``--compress gzip|zstd``): the same SQL inside, restored exactly by dbsage-tui and
by hand with the standard tools, and damage or truncation refused before the database is touched."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess

import pytest

from services.diff import compare
from services.errors import InvalidSnapshot
from services.server import dump, restore
from services.snapshots import compression
from services.snapshots.store import SnapshotStore
from tests.helpers import FIXTURES, full_dump, load_fixture, run_cli, url

METHODS = ["gzip", "zstd"]


def sql_lines(data: bytes) -> list[bytes]:
    """The dump's SQL without what differs between two dumps of the same database: pg_dump 17.6+'s random
    ``\\restrict`` keys and --verbose's start and end times."""
    return [ln for ln in data.splitlines()
            if not ln.startswith((b"\\restrict", b"\\unrestrict", b"-- Started on", b"-- Completed on"))]


def _unpack(method: str, path) -> bytes:
    tool = {"gzip": ["gzip", "-dc"], "zstd": ["zstd", "-q", "-dc"]}[method]
    if not shutil.which(tool[0]):
        pytest.skip(f"{tool[0]} is not installed")
    return subprocess.run([*tool, str(path)], capture_output=True, check=True).stdout


@pytest.mark.parametrize("method", METHODS)
async def test_compressed_snapshot_holds_the_same_sql_and_restores_exactly(pg, db, snapdir, method):
    load_fixture(pg, db, FIXTURES / "northwind.sql")
    store = SnapshotStore(snapdir)
    plain = await dump.snapshot(db, store, "plain")
    packed = await dump.snapshot(db, store, "packed", compress=method)
    before = full_dump(db)

    m = packed.meta
    assert packed.filename.endswith(compression.SUFFIXES[method]) and m["compression"] == method
    raw = packed.path.read_bytes()
    assert raw.startswith(compression.MAGIC[method])
    assert m["size_bytes"] == len(raw) and m["sha256"] == hashlib.sha256(raw).hexdigest()
    assert m["size_bytes"] < plain.meta["size_bytes"] / 2, "Northwind's SQL compresses well"
    assert m["row_counts"] == plain.meta["row_counts"] and m["sql_bytes"] == plain.meta["size_bytes"]
    assert 0 < m["pg_dump_seconds"] <= m["duration_seconds"]
    # The standard tool gives back the very SQL of the plain snapshot.
    assert sql_lines(_unpack(method, packed.path)) == sql_lines(plain.path.read_bytes())
    assert store.validate(store.resolve(packed.filename)).ok
    assert {s.filename for s in store.list() if s.valid} == {packed.filename, plain.filename}

    pg.psql("DELETE FROM order_details WHERE quantity > 10; UPDATE customers SET city = 'X'; "
            "CREATE TABLE later (id int);", db.dbname)
    result = await restore.restore(db, store, store.resolve(packed.filename), pre_snapshot=False)
    assert result.smoke_ok
    assert full_dump(db) == before


@pytest.mark.every_version  # the by-hand command differs for a server older than the tools
@pytest.mark.parametrize("method", METHODS)
def test_restore_instructions_work_by_hand(pg, db, snapdir, method):
    """The metadata's by-hand command, run in a shell as written, rebuilds the database in an empty one."""
    if not shutil.which({"gzip": "gunzip", "zstd": "zstd"}[method]):
        pytest.skip(f"the {method} tool is not installed")
    load_fixture(pg, db, FIXTURES / "northwind.sql")
    res = run_cli("snapshot", "--label", "by-hand", "--compress", method, "--json", "--dir", str(snapdir),
                  env={"DATABASE_URL": url(db)})
    assert res.returncode == 0, res.stderr
    meta = json.loads(res.stdout)
    command = meta["restore_instructions"].splitlines()[-1]
    assert command.startswith(compression.BY_HAND[method])
    assert '"$DATABASE_URL"' in command, "the hint names the variable the snapshot was taken with"
    before = full_dump(db)
    pg.psql("CREATE DATABASE by_hand_target")
    try:
        target = pg.conninfo("by_hand_target")
        env = {**os.environ, "DATABASE_URL": url(target)}
        done = subprocess.run(["bash", "-o", "pipefail", "-c", command], cwd=snapdir, env=env,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert full_dump(target) == before
    finally:
        pg.psql('DROP DATABASE IF EXISTS by_hand_target WITH (FORCE)')


@pytest.mark.parametrize("method", METHODS)
async def test_damaged_or_truncated_compressed_snapshot_is_refused(pg18, db18, snapdir, method):
    pg18.psql("CREATE TABLE t (id int, note text); "
              "INSERT INTO t SELECT i, md5(i::text) FROM generate_series(1, 20000) i;", db18.dbname)
    store = SnapshotStore(snapdir)
    snap = await dump.snapshot(db18, store, "fragile", compress=method)
    pg18.psql("DELETE FROM t WHERE id > 10; CREATE TABLE newer (x int);", db18.dbname)
    state = full_dump(db18)

    # One flipped byte: validate says so, and a restore commits nothing.
    good = snap.path.read_bytes()
    bad = bytearray(good)
    bad[len(bad) // 2] ^= 0xFF
    snap.path.write_bytes(bytes(bad))
    assert not store.validate(store.resolve(snap.filename)).ok
    with pytest.raises(InvalidSnapshot):
        await restore.restore(db18, store, store.resolve(snap.filename), pre_snapshot=False)
    assert full_dump(db18) == state

    # Truncated, with metadata rewritten to match the shorter file (as if it had been taken that way):
    # the sha256 agrees, but the compressed stream ends early; nothing is committed.
    cut = good[: len(good) * 2 // 3]
    snap.path.write_bytes(cut)
    store.write_meta(snap.path, {**snap.meta, "size_bytes": len(cut), "sha256": hashlib.sha256(cut).hexdigest()})
    fresh = store.resolve(snap.filename)
    v = store.validate(fresh)
    assert not v.ok and v.reason
    with pytest.raises(InvalidSnapshot) as err:
        await restore.restore(db18, store, fresh, pre_snapshot=False)
    assert "damaged" in err.value.message or "incomplete" in err.value.message
    assert full_dump(db18) == state

    # The stream's own checksum at its very end (gzip CRC32, zstd content checksum) is wrong, metadata
    # rewritten to match: every byte of SQL reached psql, and still nothing is committed.
    bad_end = good[:-1] + bytes([good[-1] ^ 0xFF]) if method == "zstd" else good[:-8] + bytes(
        b ^ 0xFF for b in good[-8:-4]) + good[-4:]
    snap.path.write_bytes(bad_end)
    store.write_meta(snap.path, {**snap.meta, "sha256": hashlib.sha256(bad_end).hexdigest()})
    with pytest.raises(InvalidSnapshot) as err:
        await restore.restore(db18, store, store.resolve(snap.filename), pre_snapshot=False)
    assert "damaged" in err.value.message
    assert full_dump(db18) == state


async def test_diff_reads_compressed_snapshots(pg18, db18, snapdir):
    pg18.psql("CREATE TABLE t (id int); INSERT INTO t SELECT generate_series(1, 50);", db18.dbname)
    store = SnapshotStore(snapdir)
    a = await dump.snapshot(db18, store, "a", compress="zstd")
    pg18.psql("CREATE TABLE u (id int); INSERT INTO t VALUES (51);", db18.dbname)
    b = await dump.snapshot(db18, store, "b", compress="gzip")
    result = compare.diff(a.path, b.path)
    assert "public.u" in [c.name for c in result.added]
    rows = {r.table: (r.before, r.after) for r in result.rows}
    assert rows["public.t"] == (50, 51)


def test_cli_compress_flag_and_config_default(db, snapdir, tmp_path):
    env = {"DATABASE_URL": url(db)}
    res = run_cli("snapshot", "--label", "z", "--compress", "zstd", "--dir", str(snapdir), env=env)
    assert res.returncode == 0, res.stderr
    assert "_z.sql.zst" in res.stdout
    cfg = tmp_path / "config.yaml"
    cfg.write_text("compress: gzip\n")
    res = run_cli("snapshot", "--label", "g", "--json", "--dir", str(snapdir), env={**env, "DBSAGE_CONFIG": str(cfg)})
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["filename"].endswith("_g.sql.gz")
    listed = json.loads(run_cli("list", "--json", "--dir", str(snapdir), env=env).stdout)
    assert {r["label"] for r in listed} == {"g", "z"} and all(r["valid"] for r in listed)
    newest = next(r["filename"] for r in listed if r["label"] == "g")
    res = run_cli("show", newest, "--dir", str(snapdir), env=env)
    assert re.search(r"^Type: +full \(schema \+ data\) · [\d.]+ \w+ gzip \([\d.]+ \w+ of SQL\)$", res.stdout, re.M), \
        res.stdout
    cfg.write_text("compress: rar\n")
    res = run_cli("snapshot", "--label", "r", "--dir", str(snapdir), env={**env, "DBSAGE_CONFIG": str(cfg)})
    assert res.returncode == 2 and "compress" in res.stderr and "Traceback" not in res.stderr
