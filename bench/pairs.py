"""The A/B pairs: snapshot vs ``pg_dump -f FILE && sync FILE``, schema snapshot vs the same with
``--schema-only``, restore vs psql; on the wide data and, with a ``suffix``, on pgbench's narrow rows.

Each side does the same job on the same database with the same binaries. The raw side gets the flags our
engine gives pg_dump (``--clean --if-exists --no-owner``) so that both write the same file, and a
``sync FILE`` after it (coreutils' fsync of the file): a snapshot is on disk before it is renamed into
place, which a plain ``pg_dump -f`` never waits for, so the durability baseline is the pair of them. The
two run as two processes, back to back: the raw pg_dump's own time is kept beside the pair's, to compare
with pg_dump's run inside ours (``pg_dump_seconds`` in our metadata). The restore side replays our
snapshot's very file. Our restore also checks the file (sha256 while streaming, row counts before COMMIT)
and opens a fresh connection after; a full validation is timed on its own.
"""

from __future__ import annotations

import json

from bench.measure import Pair, Sample, Series, alternate, repeat

DB = "bench"
#: The narrow-row database (``bench.dataset.build_narrow``) and the suffix of its pairs' titles.
NARROW = "narrow"
NARROW_TITLE = ", narrow rows"
#: The title suffix of the pairs run with the server on a core of its own (``bench.topology``).
APART = ", server on its own core"


def dump_and_sync(b, argv: list[str], db: str, path) -> Sample:
    """``pg_dump ... -f path && sync path``, timed as its two processes; ``pg_dump_seconds`` is the
    first's wall time."""
    dumped = b.raw([*argv, "-f", str(path)], db)
    synced = b.raw(["sync", str(path)], db)
    return Sample(seconds=dumped.seconds + synced.seconds, peak_rss_kb=dumped.peak_rss_kb,
                  cpu_seconds=dumped.cpu_seconds, extra={**dumped.extra, "pg_dump_seconds": dumped.seconds,
                                                         "sync_seconds": synced.seconds})


def snapshot_pair(b, kind: str, suffix: str = "", db: str = DB) -> str | None:
    """``kind`` is "full" or "schema"; returns the file name of one of our snapshots (kept for restore;
    with the ``APART`` suffix, none is kept)."""
    kept: list[str] = [""] if suffix == APART else []
    out_json = b.root / "snapshot.json"
    raw_file = b.root / "raw-dump.sql"
    sizes: dict[str, int] = {}
    schema_only = ["--schema-only"] if kind == "schema" else []
    flags = ["--clean", "--if-exists", "--no-owner", *schema_only]

    def ours() -> Sample:
        s = b.ours(["snapshot", "--label", f"bench-{kind}", "--type", kind, "--json"], db, stdout=out_json)
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
        s = dump_and_sync(b, [b.tool("pg_dump"), *flags], db, raw_file)
        sizes["raw"] = raw_file.stat().st_size
        raw_file.unlink()
        return s

    pair = Pair(("full snapshot" if kind == "full" else "schema snapshot") + suffix,
                Series(f"dbsage-tui snapshot --type {kind}"),
                Series(" ".join(["pg_dump", *flags, "-f FILE && sync FILE"])))
    alternate(pair, ours, raw, b.args.runs, b.args.warmup, b.settle, b.say)
    pair.note = f"dump size: ours {sizes.get('ours', 0):,} bytes, raw {sizes.get('raw', 0):,} bytes"
    b.results["pairs"].append(pair)
    if kind == "full" and not suffix:
        context_pairs(b, ours, raw_file)
    return kept[0] or None


#: Context pairs, not targets: our snapshot against a plain ``pg_dump -f`` (no durability), and against
#: what gives our checksum by hand (the metadata records the file's sha256).
CONTEXT_PAIRS = (
    ("full snapshot vs pg_dump alone", '"$1" --clean --if-exists --no-owner -f "$2"',
     "pg_dump --clean --if-exists --no-owner -f FILE"),
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


def narrow_pairs(b, restore: bool) -> None:
    """The full snapshot pair, and the restore pair of what it kept, on pgbench's narrow rows."""
    kept = snapshot_pair(b, "full", NARROW_TITLE, NARROW)
    if restore and kept:
        restore_pair(b, kept, NARROW_TITLE, NARROW)


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


def restore_pair(b, filename: str, suffix: str = "", db: str = DB) -> None:
    path = b.snapdir / filename
    pair = Pair("restore" + suffix, Series("dbsage-tui restore --yes --no-pre-snapshot"),
                Series("psql -X -q -1 -v ON_ERROR_STOP=1 -f FILE"))
    alternate(pair,
              lambda: b.ours(["restore", filename, "--yes", "--no-pre-snapshot"], db),
              lambda: b.raw([b.tool("psql"), "-X", "-q", "-1", "-v", "ON_ERROR_STOP=1", "-f", str(path)], db),
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
