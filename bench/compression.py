"""Compressed snapshots against the shell pipelines a user would write for the same result.

For each method: ``dbsage-tui snapshot --compress M`` vs ``pg_dump ... | gzip -6`` / ``| zstd -3`` (the
levels our snapshots use), then ``dbsage-tui restore FILE.sql.M`` vs ``gunzip -c`` / ``zstd -dc FILE | psql
-1``. The file sizes are reported against the plain dump. The raw side is a ``bash -o pipefail`` pipeline;
its CPU and RSS columns are bash's own (near zero), not the tools'.
"""

from __future__ import annotations

import json
import shlex
import shutil

from bench.measure import Pair, Sample, Series, alternate

DB = "bench"
TOOLS = {"gzip": ("gzip -6 -c", "gunzip -c"), "zstd": ("zstd -q -3 -c", "zstd -q -dc")}
SUFFIX = {"gzip": ".sql.gz", "zstd": ".sql.zst"}


def compression_pairs(b, plain_size: int | None) -> None:
    runs = min(3, b.args.runs)
    for method, (pack, unpack) in TOOLS.items():
        if not shutil.which(pack.split()[0]):
            b.say(f"{method}: the {pack.split()[0]} tool is missing; skipped")
            continue
        kept: list[str] = []
        out_json = b.root / f"snapshot-{method}.json"
        raw_file = b.root / f"raw-dump{SUFFIX[method]}"
        sizes: dict[str, int] = {}

        def ours(method=method, kept=kept, out_json=out_json, sizes=sizes) -> Sample:
            s = b.ours(["snapshot", "--label", f"bench-{method}", "--compress", method, "--json"], DB,
                       stdout=out_json)
            meta = json.loads(out_json.read_text())
            sizes["ours"] = meta["size_bytes"]
            if kept:
                (b.snapdir / meta["filename"]).unlink()
                (b.snapdir / (meta["filename"] + ".meta.yaml")).unlink()
            else:
                kept.append(meta["filename"])
            return s

        def raw(pack=pack, raw_file=raw_file, sizes=sizes) -> Sample:
            cmd = (f"{shlex.quote(b.tool('pg_dump'))} --clean --if-exists --no-owner | {pack} "
                   f"> {shlex.quote(str(raw_file))}")
            s = b.raw(["bash", "-o", "pipefail", "-c", cmd], DB)
            sizes["raw"] = raw_file.stat().st_size
            return s

        pair = Pair(f"{method} snapshot", Series(f"dbsage-tui snapshot --compress {method}"),
                    Series(f"pg_dump --clean --if-exists --no-owner | {pack.replace(' -c', '')} > FILE"))
        alternate(pair, ours, raw, runs, 1, b.settle, b.say)
        vs_plain = (f", {plain_size / sizes['ours']:.2f}x smaller than the plain dump ({plain_size:,} bytes)"
                    if plain_size and sizes.get("ours") else "")
        pair.note = (f"file size: ours {sizes.get('ours', 0):,} bytes, raw {sizes.get('raw', 0):,} bytes"
                     f"{vs_plain}")
        b.results["pairs"].append(pair)

        path = b.snapdir / kept[0]
        pair = Pair(f"{method} restore", Series(f"dbsage-tui restore FILE{SUFFIX[method]} --yes --no-pre-snapshot"),
                    Series(f"{unpack.replace(' -q', '')} FILE | psql -X -q -1 -v ON_ERROR_STOP=1"))
        psql = f"{shlex.quote(b.tool('psql'))} -X -q -1 -v ON_ERROR_STOP=1 -o /dev/null"
        alternate(pair,
                  lambda kept=kept: b.ours(["restore", kept[0], "--yes", "--no-pre-snapshot"], DB),
                  lambda path=path, unpack=unpack, psql=psql: b.raw(
                      ["bash", "-o", "pipefail", "-c", f"{unpack} {shlex.quote(str(path))} | {psql}"], DB),
                  runs, 1, b.settle, b.say)
        b.results["pairs"].append(pair)
        raw_file.unlink(missing_ok=True)
