"""The benchmark's one entry point: ``python -m bench.run [--size-mb 1000] [--runs 5] [--keep] [--out FILE]``.

It starts a private PostgreSQL (``services.sandbox.LocalServer``) in a temp directory, builds a database of
the requested size (``bench.dataset``), then compares ``dbsage-tui`` with the raw tools from the same bin
directory, alternating A/B runs: full snapshot vs ``pg_dump``, schema snapshot vs ``pg_dump --schema-only``,
restore vs ``psql -1``; then ``list --json`` and the TUI with 10,000 snapshots, and a key press during a
dump. It writes RESULTS.md (+ a JSON of every sample and an SVG chart beside it) and always destroys its
server, unless ``--keep``. Connection settings travel in the environment only (DATABASE_URL for us, PG*
for the raw tools), never in argv.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

from bench import dataset, report
from bench.measure import Pair, RunFailed, Sample, Series, alternate, loadavg, repeat, run_timed
from bench.snapdir import make_snapshot_dir
from services.pgtools import embedded_bindir
from services.sandbox import LocalServer

STEPS = ("dump", "schema", "restore", "list", "tui")
_T0 = time.monotonic()


def say(text: str) -> None:
    print(f"[{time.monotonic() - _T0:7.1f}s] {text}", file=sys.stderr, flush=True)


class Bench:
    """Everything one run needs: the server, the tools, the environments and the collected results."""

    def __init__(self, args, root: Path) -> None:
        self.args = args
        self.root = root
        self.bindir = embedded_bindir()
        self.dbsage = str(Path(sys.executable).with_name("dbsage-tui"))
        if not Path(self.dbsage).exists():
            self.dbsage = shutil.which("dbsage-tui") or "dbsage-tui"
        self.server = LocalServer(root / "pgdata", bindir=self.bindir)
        self.snapdir = root / "snapshots"
        self.logs = root / "logs"
        self.logs.mkdir()
        self.results: dict = {"pairs": [], "single": [], "tui": {}, "notes": []}

    # -- environments: the connection never goes in argv ----------------------------------------------
    def _base_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("PG", "DBSAGE_")) and k not in ("DATABASE_URL", "SUPABASE_DB_URL")}
        env.update(DBSAGE_CONFIG=str(self.root / "no-config.yaml"), DBSAGE_DATA_DIR=str(self.root / "data"),
                   DBSAGE_PG_BINDIR=str(self.bindir))  # the very tools the raw side uses
        return env

    def env_ours(self, dbname: str) -> dict[str, str]:
        c = self.server.conninfo(dbname)
        env = self._base_env()
        env["DATABASE_URL"] = (f"postgresql://{quote(c.user, safe='')}:{quote(c.password, safe='')}"
                               f"@{c.host}:{c.port}/{quote(dbname, safe='')}")
        return env

    def env_raw(self, dbname: str) -> dict[str, str]:
        c = self.server.conninfo(dbname)
        env = self._base_env()
        env.update(PGHOST=c.host, PGPORT=str(c.port), PGUSER=c.user, PGPASSWORD=c.password, PGDATABASE=dbname,
                   PGAPPNAME="bench-raw")
        return env

    def tool(self, name: str) -> str:
        return str(self.bindir / name)

    # -- fairness between runs ------------------------------------------------------------------------
    def settle(self) -> None:
        """Wait (up to 120 s) for autovacuum to go idle, then CHECKPOINT: each run starts from a quiet
        server with no dirty buffers left by the previous one."""
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            busy = self.server.psql("SELECT count(*) FROM pg_stat_activity "
                                    "WHERE backend_type = 'autovacuum worker'").strip()
            if busy == "0":
                break
            time.sleep(0.5)
        self.server.psql("CHECKPOINT")

    # -- the parts ------------------------------------------------------------------------------------
    def ours(self, argv: list[str], dbname: str, stdout: Path | None = None) -> Sample:
        return run_timed([self.dbsage, *argv, "--dir", str(self.snapdir)], self.env_ours(dbname),
                         log=self.logs / "dbsage.log", stdout=stdout)

    def raw(self, argv: list[str], dbname: str) -> Sample:
        return run_timed(argv, self.env_raw(dbname), log=self.logs / "raw.log")

    def snapshot_pair(self, kind: str) -> str:
        """Full or schema snapshot vs pg_dump; returns the file name of one of our snapshots (kept)."""
        db = "bench"
        kept: list[str] = []
        out_json = self.root / "snapshot.json"
        raw_file = self.root / "raw-dump.sql"
        sizes: dict[str, int] = {}

        def run_a() -> Sample:
            s = self.ours(["snapshot", "--label", f"bench-{kind}", "--type", kind, "--json"], db, stdout=out_json)
            meta = json.loads(out_json.read_text())
            sizes["ours"] = meta["size_bytes"]
            if kept:
                (self.snapdir / meta["filename"]).unlink()
                (self.snapdir / (meta["filename"] + ".meta.yaml")).unlink()
            else:
                kept.append(meta["filename"])
            return s

        def run_b() -> Sample:
            s = self.raw([self.tool("pg_dump"), "--clean", "--if-exists", "--no-owner",
                          *(["--schema-only"] if kind == "schema" else []), "-f", str(raw_file)], db)
            sizes["raw"] = raw_file.stat().st_size
            raw_file.unlink()
            return s

        title = "full snapshot" if kind == "full" else "schema snapshot"
        pair = Pair(title, Series(f"dbsage-tui snapshot --type {kind}"),
                    Series("pg_dump --clean --if-exists --no-owner" + (" --schema-only" if kind == "schema" else "")),
                    target=1.05 if kind == "full" else None)
        alternate(pair, run_a, run_b, self.args.runs, self.args.warmup, self.settle, say)
        pair.note = f"output: ours {report.mb(sizes.get('ours'))}, raw {report.mb(sizes.get('raw'))}"
        self.results["pairs"].append(pair)
        return kept[0]

    def restore_pair(self, filename: str) -> None:
        db = "bench"
        path = self.snapdir / filename
        pair = Pair("restore", Series("dbsage-tui restore --yes --no-pre-snapshot"),
                    Series("psql -X -q -1 -v ON_ERROR_STOP=1 -f FILE"), target=1.05)
        alternate(pair,
                  lambda: self.ours(["restore", filename, "--yes", "--no-pre-snapshot"], db),
                  lambda: self.raw([self.tool("psql"), "-X", "-q", "-1", "-v", "ON_ERROR_STOP=1",
                                    "-f", str(path)], db),
                  self.args.runs, self.args.warmup, self.settle, say)
        self.results["pairs"].append(pair)
        # Where our extra time goes: the pre-restore validation (sha256 + scan of every byte) ...
        validate = repeat(Series("dbsage-tui validate (part of restore)"),
                          lambda: self.ours(["validate", filename], db), min(3, self.args.runs), 0, say)
        # ... and the smoke test's exact count(*) of every table after the commit.
        counts = "".join(f"SELECT count(*) FROM {t};\n" for t in self.results["database"]["tables"])
        smoke = repeat(Series("count(*) of every table (restore's smoke test)"),
                       lambda: self.raw([self.tool("psql"), "-X", "-q", "-c", counts.replace("\n", " ")], db),
                       min(3, self.args.runs), 0, say)
        self.results["single"] += [validate, smoke]

    def list_and_tui(self) -> None:
        n = self.args.snapshots
        dataset.build_tiny(self.server, "tiny")
        tmpl_dir = self.root / "template"
        run_timed([self.dbsage, "snapshot", "--label", "template", "--dir", str(tmpl_dir)], self.env_ours("tiny"),
                  log=self.logs / "dbsage.log")
        template = next(tmpl_dir.glob("*_template.sql"))
        big = self.root / f"snapshots-{n}"
        t = time.monotonic()
        make_snapshot_dir(template, big, n)
        say(f"made {n} snapshots in {time.monotonic() - t:.1f}s")
        env = self.env_ours("tiny")
        runs = max(self.args.runs, 3)
        empty = self.root / "empty-dir"
        lst = repeat(Series(f"dbsage-tui list --json, {n} snapshots"),
                     lambda: run_timed([self.dbsage, "list", "--json", "--dir", str(big)], env,
                                       log=self.logs / "dbsage.log", stdout=self.root / "list.json"), runs, 1, say)
        listed = len(json.loads((self.root / "list.json").read_text()))
        base = repeat(Series("dbsage-tui list --json, empty directory (start-up)"),
                      lambda: run_timed([self.dbsage, "list", "--json", "--dir", str(empty)], env), runs, 1, say)
        self.results["single"] += [lst, base]
        self.results["list_count"] = listed
        self.results["list_profile"] = report.profile_list(big, env, self.root / "list.prof")
        if "tui" in self.steps:
            self.tui(big, n)

    def tui(self, big: Path, n: int) -> None:
        env = self.env_ours("bench")
        keys_dir = self.root / "snapshots-keys"
        make_snapshot_dir(next((self.root / "template").glob("*_template.sql")), keys_dir, 200)
        for subject, flag in (("app", []), ("stand-in", ["--standin"])):
            paints = []
            for i in range(max(self.args.runs, 3)):
                argv = [sys.executable, "-m", "bench.tui_probe", "paint", "--dir", str(big), "--expect", str(n),
                        *flag]
                res = _probe(argv + ["--spawned-at", str(time.monotonic())], env)
                say(f"TUI first paint ({subject}) run {i + 1}: {report.short(res)}")
                paints.append(res)
                if res.get("status") != "ok":
                    break
            keys = _probe([sys.executable, "-m", "bench.tui_probe", "keys", "--dir", str(keys_dir), *flag], env)
            say(f"key press during a dump ({subject}): {report.short(keys)}")
            self.results["tui"][subject] = {"paint": paints, "keys": keys}

    @property
    def steps(self) -> set[str]:
        return set(self.args.only.split(",")) if self.args.only else set(STEPS)

    def run(self) -> None:
        say(f"starting PostgreSQL in {self.root} (load average {loadavg()})")
        self.server.ensure_running()
        self.server.psql("ALTER SYSTEM SET max_wal_size = '4GB'")
        self.server.psql("SELECT pg_reload_conf()")
        self.results["started"] = report.now_iso()
        self.results["load_start"] = loadavg()
        self.results["args"] = vars(self.args)
        t = time.monotonic()
        built = dataset.build(self.server, "bench", self.args.size_mb, say)
        self.results["database"] = {"size_bytes": built.size_bytes, "tables": built.tables,
                                    "build_seconds": round(time.monotonic() - t, 1)}
        say(f"database: {report.mb(built.size_bytes)} on disk, {sum(built.tables.values()):,} rows "
            f"in {len(built.tables)} tables, built in {time.monotonic() - t:.0f}s")
        steps = self.steps
        full = None
        if "dump" in steps or "restore" in steps:
            full = self.snapshot_pair("full")
        if "schema" in steps:
            self.snapshot_pair("schema")
        if "restore" in steps and full:
            self.restore_pair(full)
        if "list" in steps or "tui" in steps:
            self.list_and_tui()
        self.results["finished"] = report.now_iso()
        self.results["load_end"] = loadavg()
        self.results["versions"] = report.versions(self.bindir, self.server)
        self.results["server_settings"] = report.server_settings(self.server)


def _probe(argv: list[str], env: dict[str, str]) -> dict:
    env = {**env, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    res = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=900,
                         cwd=str(Path(__file__).resolve().parents[1]))
    for line in reversed(res.stdout.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    return {"status": "probe failed", "reason": (res.stderr or res.stdout)[-800:]}


def _terminate(_signum, _frame) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n\n")[0])
    p.add_argument("--size-mb", type=int, default=1000, help="database size on disk to build (default 1000)")
    p.add_argument("--runs", type=int, default=5, help="timed runs per side (default 5)")
    p.add_argument("--warmup", type=int, default=1, help="untimed runs per side first (default 1)")
    p.add_argument("--snapshots", type=int, default=10000, help="snapshots for list/TUI (default 10000)")
    p.add_argument("--only", default="", help=f"comma list of steps to run: {','.join(STEPS)} (default all)")
    p.add_argument("--keep", action="store_true", help="keep the temp directory (server stopped) afterwards")
    p.add_argument("--out", default=str(Path(__file__).with_name("RESULTS.md")), help="report file")
    args = p.parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    root = Path(tempfile.mkdtemp(prefix="dbsage-bench-"))
    bench = Bench(args, root)
    code = 0
    try:
        bench.run()
    except KeyboardInterrupt:
        say("interrupted: cleaning up")
        code = 130
    except RunFailed as exc:
        say(f"a run failed: {exc}")
        code = 1
    finally:
        if args.keep:
            bench.server.stop()
            say(f"kept {root} (server stopped)")
        else:
            bench.server.destroy()
            shutil.rmtree(root, ignore_errors=True)
    if code == 0:
        out = Path(args.out)
        report.write(bench.results, out)
        say(f"wrote {out}")
        print(out.read_text())
    return code


if __name__ == "__main__":
    sys.exit(main())
