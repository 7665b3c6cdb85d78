"""The A/B pairs: snapshot vs ``pg_dump``, schema snapshot vs ``pg_dump --schema-only``, restore vs psql.

Each side does the same job on the same database with the same binaries. The raw side gets the flags our
engine gives pg_dump (``--clean --if-exists --no-owner``) so that both write the same file; the restore
side replays that very file. Our restore also checks the file (sha256 while streaming, row counts before
COMMIT) and opens a fresh connection after; a full validation is timed on its own.
"""

from __future__ import annotations

import json

from bench.measure import Pair, Sample, Series, alternate, repeat

DB = "bench"


#: The title suffix of the pairs run with the server on a core of its own (``bench.topology``).
APART = ", server on its own core"


def snapshot_pair(b, kind: str, suffix: str = "") -> str | None:
    """``kind`` is "full" or "schema"; returns the file name of one of our snapshots (kept for restore;
    with a ``suffix``, none is kept)."""
    kept: list[str] = [""] if suffix else []
    out_json = b.root / "snapshot.json"
    raw_file = b.root / "raw-dump.sql"
    sizes: dict[str, int] = {}
    schema_only = ["--schema-only"] if kind == "schema" else []

    def ours() -> Sample:
        s = b.ours(["snapshot", "--label", f"bench-{kind}", "--type", kind, "--json"], DB, stdout=out_json)
        meta = json.loads(out_json.read_text())
        sizes["ours"] = meta["size_bytes"]
        s.extra["pg_dump_seconds"] = meta.get("pg_dump_seconds")
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

    pair = Pair(("full snapshot" if kind == "full" else "schema snapshot") + suffix,
                Series(f"dbsage-tui snapshot --type {kind}"),
                Series(" ".join(["pg_dump --clean --if-exists --no-owner", *schema_only, "-f FILE"])))
    alternate(pair, ours, raw, b.args.runs, b.args.warmup, b.settle, b.say)
    pair.note = f"dump size: ours {sizes.get('ours', 0):,} bytes, raw {sizes.get('raw', 0):,} bytes"
    b.results["pairs"].append(pair)
    if kind == "full" and not suffix:
        context_pairs(b, ours, raw_file)
    return kept[0] or None


#: Context pairs, not targets: our snapshot against what gives the same guarantee by hand. A snapshot is
#: on disk before it is renamed into place, which a plain ``pg_dump -f`` never waits for (``sync FILE``
#: is coreutils' fsync of the file); and our metadata records the file's sha256.
CONTEXT_PAIRS = (
    ("full snapshot vs pg_dump + sync", '"$1" --clean --if-exists --no-owner -f "$2" && sync "$2"',
     "pg_dump --clean --if-exists --no-owner -f FILE && sync FILE"),
    ("full snapshot vs pg_dump + sha256sum", '"$1" --clean --if-exists --no-owner -f "$2" && sha256sum "$2" >/dev/null',
     "pg_dump --clean --if-exists --no-owner -f FILE && sha256sum FILE"),
)


def context_pairs(b, ours, raw_file) -> None:
    for name, script, shown in CONTEXT_PAIRS:
        def raw(script=script) -> Sample:
            s = b.raw(["sh", "-c", script, "sh", b.tool("pg_dump"), str(raw_file)], DB)
            raw_file.unlink()
            return s

        pair = Pair(name, Series("dbsage-tui snapshot --type full"), Series(shown))
        alternate(pair, ours, raw, min(3, b.args.runs), 0, b.settle, b.say)
        b.results["pairs"].append(pair)


def apart_pairs(b, filename: str) -> None:
    """The full snapshot and restore pairs again, with the server on a core of its own and both sides'
    clients on the others: what the ratios are when the database is not on the tools' cores."""
    with b.server_apart() as cpus:
        if cpus is None:
            b.say("one CPU only: no pairs with the server apart")
            return
        b.say(f"server pinned to the first CPU, clients to {sorted(cpus)}")
        snapshot_pair(b, "full", APART)
        restore_pair(b, filename, APART)


def restore_pair(b, filename: str, suffix: str = "") -> None:
    path = b.snapdir / filename
    pair = Pair("restore" + suffix, Series("dbsage-tui restore --yes --no-pre-snapshot"),
                Series("psql -X -q -1 -v ON_ERROR_STOP=1 -f FILE"))
    alternate(pair,
              lambda: b.ours(["restore", filename, "--yes", "--no-pre-snapshot"], DB),
              lambda: b.raw([b.tool("psql"), "-X", "-q", "-1", "-v", "ON_ERROR_STOP=1", "-f", str(path)], DB),
              b.args.runs, b.args.warmup, b.settle, b.say)
    b.results["pairs"].append(pair)
    if suffix:
        return
    runs = min(3, b.args.runs)
    # Where our extra time goes when a pre-rollback snapshot is taken: a full validation first (sha256 and
    # a scan of every byte). Without one (as timed above) only the metadata, size, header and trailer are
    # read first; the sha256 and the row counts are checked while the bytes stream, before COMMIT.
    validate = repeat(Series("dbsage-tui validate FILE (a restore with a pre-rollback snapshot does this first)"),
                      lambda: b.ours(["validate", filename], DB), runs, 0, b.say)
    b.results["single"].append(validate)
