"""Clone snapshots (``--type clone``) against the file path they replace on a local server.

Two pairs: ``dbsage-tui snapshot --type clone`` vs ``pg_dump --clean --if-exists --no-owner -f FILE``, and
``dbsage-tui restore FILE.clone --yes`` (its default: the replaced database is kept as the pre-rollback
clone) vs ``psql -1 -f`` of a full snapshot of the same database. The issue's target: the clone restore at
least 3x faster than that replay. Between runs, untimed, the clones made are dropped so the server's disk
does not fill up.
"""

from __future__ import annotations

import json

from bench.measure import Pair, Sample, Series, alternate
from services.snapshots.store import load_meta

DB = "bench"


def _drop_clone_files(b, filename: str) -> None:
    meta_path = b.snapdir / (filename + ".meta.yaml")
    meta = load_meta(meta_path)
    name = meta["clone_database"].replace('"', '""')
    b.server.psql(f'ALTER DATABASE "{name}" IS_TEMPLATE false')
    b.server.psql(f'DROP DATABASE "{name}"')
    meta_path.unlink()
    (b.snapdir / filename).unlink()


def clone_pairs(b, full_filename: str) -> None:
    runs = b.args.runs
    raw_file = b.root / "raw-dump-for-clone.sql"
    out_json = b.root / "clone.json"
    kept: list[str] = []

    def ours_snapshot() -> Sample:
        s = b.ours(["snapshot", "--label", "bench-clone", "--type", "clone", "--json"], DB, stdout=out_json)
        name = json.loads(out_json.read_text())["filename"]
        if kept:
            _drop_clone_files(b, name)
        else:
            kept.append(name)
        return s

    def raw_dump() -> Sample:
        s = b.raw([b.tool("pg_dump"), "--clean", "--if-exists", "--no-owner", "-f", str(raw_file)], DB)
        raw_file.unlink()
        return s

    pair = Pair("clone snapshot", Series("dbsage-tui snapshot --type clone"),
                Series("pg_dump --clean --if-exists --no-owner -f FILE"))
    alternate(pair, ours_snapshot, raw_dump, runs, b.args.warmup, b.settle, b.say)
    b.results["pairs"].append(pair)

    def ours_restore() -> Sample:
        before = {p.name for p in b.snapdir.glob("*.clone")}
        s = b.ours(["restore", kept[0], "--yes"], DB)
        for made in {p.name for p in b.snapdir.glob("*.clone")} - before:  # the pre-rollback clone
            _drop_clone_files(b, made)
        return s

    full = b.snapdir / full_filename
    pair = Pair("clone restore", Series("dbsage-tui restore FILE.clone --yes (pre-rollback clone kept)"),
                Series("psql -X -q -1 -v ON_ERROR_STOP=1 -f FULL_SNAPSHOT.sql"))
    alternate(pair, ours_restore,
              lambda: b.raw([b.tool("psql"), "-X", "-q", "-1", "-v", "ON_ERROR_STOP=1", "-f", str(full)], DB),
              runs, b.args.warmup, b.settle, b.say)
    b.results["pairs"].append(pair)
    _drop_clone_files(b, kept[0])
