"""``list --json`` and the TUI over a directory of many snapshots (default 10,000), cold and warm.

Cold: only the snapshot files are there, as after an upgrade or on a copied directory: anything
dbsage-tui added itself (an audit log, a listing cache of older versions) is removed before the run. Warm:
the directory as the previous run left it, as on every later start. dbsage-tui keeps nothing between runs
for a listing, so the two differ by what the page cache holds.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from bench import dataset, facts, report
from bench.measure import Sample, Series, repeat, run_timed
from bench.snapdir import make_snapshot_dir


class SnapshotDir:
    """A generated directory that can be put back to "cold" (only what the generator wrote)."""

    def __init__(self, path: Path, template: Path, count: int) -> None:
        self.path = path
        make_snapshot_dir(template, path, count)
        self.baseline = set(os.listdir(path))

    def cold(self) -> None:
        for name in set(os.listdir(self.path)) - self.baseline:
            (self.path / name).unlink()


def list_and_tui(b, with_tui: bool) -> None:
    n = b.args.snapshots
    dataset.build_tiny(b.server, "tiny")
    tmpl_dir = b.root / "template"
    run_timed([b.dbsage, "snapshot", "--label", "template", "--dir", str(tmpl_dir)], b.env_ours("tiny"),
              log=b.logs / "dbsage.log")
    template = next(tmpl_dir.glob("*_template.sql"))
    t = time.monotonic()
    big = SnapshotDir(b.root / f"snapshots-{n}", template, n)
    b.say(f"made {n:,} snapshots in {time.monotonic() - t:.1f}s")
    env = b.env_ours("tiny")
    out = b.root / "list.json"

    def list_json(directory: Path, cold: bool = False) -> Sample:
        if cold:
            big.cold()
        b.settle()  # as before every pair's runs: autovacuum idle, CHECKPOINT, sync
        return run_timed([b.dbsage, "list", "--json", "--dir", str(directory)], env,
                         log=b.logs / "dbsage.log", stdout=out)

    runs = max(b.args.runs, 3)
    b.results["single"] += [
        repeat(Series(f"dbsage-tui list --json, {n} snapshots, cold"), lambda: list_json(big.path, True),
               runs, 0, b.say),
        repeat(Series(f"dbsage-tui list --json, {n} snapshots, warm"), lambda: list_json(big.path), runs, 1,
               b.say)]
    b.results["list_count"] = len(json.loads(out.read_text()))
    b.results["single"].append(repeat(Series("dbsage-tui list --json, empty directory (start-up)"),
                                      lambda: list_json(b.root / "empty"), runs, 1, b.say))
    big.cold()
    b.results["list_profile"] = {"cold": facts.profile_list(big.path, env, b.root / "cold.prof")}
    b.results["list_profile"]["warm"] = facts.profile_list(big.path, env, b.root / "warm.prof")
    if with_tui:
        tui(b, big, template)


def tui(b, big: SnapshotDir, template: Path) -> None:
    """First paint cold and warm (3 runs each); then key presses during a dump with a short and a long list."""
    n = b.args.snapshots
    env = b.env_ours("bench")
    res = b.results["tui"]

    def paint(label: str) -> dict:
        b.settle()  # as before every pair's runs: autovacuum idle, CHECKPOINT, sync
        argv = [sys.executable, "-m", "bench.tui_probe", "paint", "--dir", str(big.path), "--expect", str(n),
                "--timeout", "40", "--spawned-at", str(time.monotonic())]
        r = probe(argv, env)
        b.say(f"TUI first paint, {label}: {report.short(r)}")
        return r

    res["paint_cold"] = []
    for i in range(max(b.args.runs, 3)):  # a median, as for every other row
        big.cold()
        res["paint_cold"].append(paint(f"cold, run {i + 1}"))
        if res["paint_cold"][-1].get("status") != "ok":
            break
    big.cold()
    run_timed([b.dbsage, "list", "--dir", str(big.path)], env)  # warm it, as any listing does
    res["paint_warm"] = []
    for i in range(max(b.args.runs, 3)):
        res["paint_warm"].append(paint(f"warm, run {i + 1}"))
        if res["paint_warm"][-1].get("status") != "ok":
            break
    small = SnapshotDir(b.root / "snapshots-200", template, 200)
    run_timed([b.dbsage, "list", "--dir", str(small.path)], env)
    # Start pressing once 2% of the database (at most 20 MB) has streamed: the dump is well under way.
    min_bytes = str(min(20 << 20, b.results["database"]["size_bytes"] // 50))
    res["keys"] = {}
    for directory, count in ((small.path, 200), (big.path, n)):
        r = probe([sys.executable, "-m", "bench.tui_probe", "keys", "--dir", str(directory),
                   "--min-bytes", min_bytes], env)
        b.say(f"key presses during a dump, {count:,} snapshots listed: {report.short(r)}")
        res["keys"][str(count)] = r


def probe(argv: list[str], env: dict[str, str]) -> dict:
    """Run a ``bench.tui_probe`` process; its last stdout line is the JSON result."""
    res = subprocess.run(argv, env={**env, "PYTHONPATH": str(facts.REPO)}, capture_output=True, text=True,
                         timeout=900, cwd=str(facts.REPO))
    for line in reversed(res.stdout.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    return {"status": "probe failed", "reason": (res.stderr or res.stdout)[-800:]}
