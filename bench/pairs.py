"""The A/B pairs: snapshot vs ``pg_dump``, schema snapshot vs ``pg_dump --schema-only``, restore vs psql.

Each side does the same job on the same database with the same binaries. The raw side gets the flags our
engine gives pg_dump (``--clean --if-exists --no-owner``) so that both write the same file; the restore
side replays that very file. Our restore also validates the file before and smoke-tests the database
after (that is its promise); those two parts are timed on their own so that the gap can be attributed.
"""

from __future__ import annotations

import json

from bench.measure import Pair, Sample, Series, alternate, repeat

DB = "bench"


def snapshot_pair(b, kind: str) -> str:
    """``kind`` is "full" or "schema"; returns the file name of one of our snapshots (kept for restore)."""
    kept: list[str] = []
    out_json = b.root / "snapshot.json"
    raw_file = b.root / "raw-dump.sql"
    sizes: dict[str, int] = {}
    schema_only = ["--schema-only"] if kind == "schema" else []

    def ours() -> Sample:
        s = b.ours(["snapshot", "--label", f"bench-{kind}", "--type", kind, "--json"], DB, stdout=out_json)
        meta = json.loads(out_json.read_text())
        sizes["ours"] = meta["size_bytes"]
        if kept:  # keep the first; the others would only fill the disk
            (b.snapdir / meta["filename"]).unlink()
            (b.snapdir / (meta["filename"] + ".meta.yaml")).unlink()
        else:
            kept.append(meta["filename"])
        return s

    def raw() -> Sample:
        s = b.raw([b.tool("pg_dump"), "--clean", "--if-exists", "--no-owner", *schema_only,
                   "-f", str(raw_file)], DB)
        sizes["raw"] = raw_file.stat().st_size
        raw_file.unlink()
        return s

    pair = Pair("full snapshot" if kind == "full" else "schema snapshot",
                Series(f"dbsage-tui snapshot --type {kind}"),
                Series(" ".join(["pg_dump --clean --if-exists --no-owner", *schema_only, "-f FILE"])))
    alternate(pair, ours, raw, b.args.runs, b.args.warmup, b.settle, b.say)
    pair.note = f"dump size: ours {sizes.get('ours', 0):,} bytes, raw {sizes.get('raw', 0):,} bytes"
    b.results["pairs"].append(pair)
    return kept[0]


def restore_pair(b, filename: str) -> None:
    path = b.snapdir / filename
    pair = Pair("restore", Series("dbsage-tui restore --yes --no-pre-snapshot"),
                Series("psql -X -q -1 -v ON_ERROR_STOP=1 -f FILE"))
    alternate(pair,
              lambda: b.ours(["restore", filename, "--yes", "--no-pre-snapshot"], DB),
              lambda: b.raw([b.tool("psql"), "-X", "-q", "-1", "-v", "ON_ERROR_STOP=1", "-f", str(path)], DB),
              b.args.runs, b.args.warmup, b.settle, b.say)
    b.results["pairs"].append(pair)
    runs = min(3, b.args.runs)
    # Where our extra time goes: validation before (sha256 and a scan of every byte) ...
    validate = repeat(Series("dbsage-tui validate FILE (restore does this first)"),
                      lambda: b.ours(["validate", filename], DB), runs, 0, b.say)
    # ... and the smoke test after the commit (an exact count(*) of every table).
    counts = " ".join(f"SELECT count(*) FROM {t};" for t in b.results["database"]["tables"])
    smoke = repeat(Series("count(*) of every table (restore's smoke test does this after)"),
                   lambda: b.raw([b.tool("psql"), "-X", "-q", "-c", counts], DB), runs, 0, b.say)
    b.results["single"] += [validate, smoke]
