"""The benchmark's one entry point: ``python -m bench.run [--size-mb 1000] [--scale 50] [--runs 5] [--keep]
[--out FILE]``.

It starts a private PostgreSQL (``services.sandbox.LocalServer``) in a temp directory, builds a database of
wide rows of the requested size and pgbench's narrow rows at the requested scale (``bench.dataset``), and
compares ``dbsage-tui`` with the raw tools from the same bin directory in alternating A/B runs on both
(``bench.pairs``); then ``list --json`` and the TUI with 10,000
snapshots, and key presses during a dump (``bench.listing``). It writes RESULTS.md, RESULTS.json (every
sample) and RESULTS.svg, prints progress on stderr, and destroys its server and temp directory whatever
happens, unless ``--keep``. Connection settings travel in the environment only (DATABASE_URL for
dbsage-tui, PG* for the raw tools), never in argv, so ``ps`` shows no password.
"""

from __future__ import annotations

import argparse
import compileall
import contextlib
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

from bench import clones, compression, dataset, facts, listing, pairs, report, topology
from bench.measure import Sample, cpu_gauge_ms, loadavg, run_timed
from services.errors import DbsageError
from services.sandbox import LocalServer
from services.server.processes import embedded_bindir

STEPS = ("dump", "schema", "restore", "apart", "compress", "clone", "list", "tui")
_T0 = time.monotonic()


def say(text: str) -> None:
    print(f"[{time.monotonic() - _T0:7.1f}s] {text}", file=sys.stderr, flush=True)


class Bench:
    """What every part needs: the server, the tools, the two environments, and the results so far."""

    say = staticmethod(say)

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
        self.results: dict = {"args": vars(args), "pairs": [], "single": [], "tui": {}}
        #: While a pair runs with the server on a core of its own (``topology``): the clients' CPUs.
        self.client_cpus: set[int] | None = None

    # -- environments: the connection never goes in argv ------------------------------------------------
    def _base_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("PG", "DBSAGE_")) and k not in ("DATABASE_URL", "SUPABASE_DB_URL")}
        env.update(DBSAGE_CONFIG=str(self.root / "no-config.yaml"), DBSAGE_DATA_DIR=str(self.root / "data"),
                   DBSAGE_PG_BINDIR=str(self.bindir))  # the very binaries the raw side runs
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
        env.update(PGHOST=c.host, PGPORT=str(c.port), PGUSER=c.user, PGPASSWORD=c.password,
                   PGDATABASE=dbname, PGAPPNAME="bench-raw")
        return env

    def tool(self, name: str) -> str:
        return str(self.bindir / name)

    def ours(self, argv: list[str], dbname: str, stdout: Path | None = None) -> Sample:
        return self._gauged(run_timed([self.dbsage, *argv, "--dir", str(self.snapdir)], self.env_ours(dbname),
                                      log=self.logs / "dbsage.log", stdout=stdout, cpus=self.client_cpus))

    def raw(self, argv: list[str], dbname: str) -> Sample:
        return self._gauged(run_timed(argv, self.env_raw(dbname), log=self.logs / "raw.log", cpus=self.client_cpus))

    def _gauged(self, sample: Sample) -> Sample:
        """The sample, with the host-speed gauge the ``settle`` before it read."""
        if self.results.get("settle"):
            sample.extra["gauge_ms"] = self.results["settle"][-1]["gauge_ms"]
        return sample

    @contextlib.contextmanager
    def server_apart(self):
        """The server on a core of its own and the clients on the others, while the block runs."""
        with topology.server_apart(topology.postmaster_pid(self.server.datadir)) as cpus:
            self.client_cpus = cpus
            try:
                yield cpus
            finally:
                self.client_cpus = None

    def settle(self) -> None:
        """Wait (up to 120 s) for autovacuum to go idle, CHECKPOINT, then ``sync``: every run starts on a
        quiet server, without dirty buffers left by the previous one, and on a page cache with nothing left
        to write back. The server runs with fsync=off, so a restore leaves its WAL and new tables in the
        page cache for the kernel to write out later, during whichever run comes next; how much each
        ``sync`` found is kept (``results["settle"]``) and reported, with the host-speed gauge read last."""
        busy = "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'autovacuum worker'"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and self.server.psql(busy).strip() != "0":
            time.sleep(0.5)
        self.server.psql("CHECKPOINT")
        dirty = facts.dirty_kb()
        t = time.monotonic()
        os.sync()
        synced = round(time.monotonic() - t, 2)
        self.results.setdefault("settle", []).append({"dirty_kb": dirty, "sync_s": synced,
                                                      "gauge_ms": round(cpu_gauge_ms(), 1)})

    # -- the run ----------------------------------------------------------------------------------------
    def precompile(self) -> None:
        """Byte-compile our packages, as ``pip install`` does for a regular install and as Python does on
        the first run of an editable one: without it, a machine with PYTHONDONTWRITEBYTECODE set would
        compile every module from source in every timed process (about 0.06 s per CLI run)."""
        repo = Path(__file__).resolve().parents[1]
        for package in ("app", "services", "widgets"):
            compileall.compile_dir(repo / package, quiet=1)

    def run(self) -> None:
        steps = set(self.args.only.split(",")) if self.args.only else set(STEPS)
        self.precompile()
        say(f"starting PostgreSQL in {self.root} (load average {loadavg()})")
        self.server.ensure_running()
        self.server.psql("ALTER SYSTEM SET max_wal_size = '4GB'")
        self.server.psql("SELECT pg_reload_conf()")
        self.results.update(started=facts.now_iso(), load_start=loadavg(),
                            versions=facts.versions(self.bindir, self.server), code=facts.code_state(),
                            server_settings=facts.server_settings(self.server))
        t = time.monotonic()
        built = dataset.build(self.server, "bench", self.args.size_mb, say)
        self.results["database"] = {"size_bytes": built.size_bytes, "tables": built.tables,
                                    "build_seconds": round(time.monotonic() - t, 1)}
        say(f"database: {report.mb(built.size_bytes)} on disk, {sum(built.tables.values()):,} rows in "
            f"{len(built.tables)} tables, built in {time.monotonic() - t:.0f}s")
        if self.args.scale and steps & {"dump", "restore"}:
            t = time.monotonic()
            narrow = dataset.build_narrow(self.server, pairs.NARROW, self.args.scale, say)
            self.results["narrow_database"] = {"size_bytes": narrow.size_bytes, "tables": narrow.tables,
                                               "build_seconds": round(time.monotonic() - t, 1),
                                               "scale": self.args.scale}
        full = pairs.snapshot_pair(self, "full") if steps & {"dump", "restore", "apart", "compress", "clone"} \
            else None
        if "schema" in steps:
            pairs.snapshot_pair(self, "schema")
        if "restore" in steps:
            pairs.restore_pair(self, full)
        if "narrow_database" in self.results:
            pairs.narrow_pairs(self, "restore" in steps)
        if "apart" in steps and full:
            pairs.apart_pairs(self, full)
        if "clone" in steps and full:
            clones.clone_pairs(self, full)
        if "compress" in steps:
            plain = self.snapdir / full if full else None
            compression.compression_pairs(self, plain.stat().st_size if plain and plain.exists() else None)
        if steps & {"list", "tui"}:
            listing.list_and_tui(self, "tui" in steps)
        self.results.update(finished=facts.now_iso(), load_end=loadavg())


def _terminate(_signum, _frame) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.run", description=(
        "Benchmark dbsage-tui against pg_dump/psql on a private PostgreSQL it starts and destroys; "
        "writes bench/RESULTS.md. Not a test: nothing asserts on time."))
    p.add_argument("--size-mb", type=int, default=1000, help="database size on disk to build (default 1000)")
    p.add_argument("--scale", type=int, default=50,
                   help="pgbench -i scale of the narrow-row database (default 50; 0: wide data only)")
    p.add_argument("--runs", type=int, default=5, help="timed runs per side (default 5)")
    p.add_argument("--warmup", type=int, default=1, help="untimed runs per side first (default 1)")
    p.add_argument("--snapshots", type=int, default=10000, help="snapshots for list and TUI (default 10000)")
    p.add_argument("--only", default="", help=f"comma list of steps: {','.join(STEPS)} (default: all)")
    p.add_argument("--keep", action="store_true", help="keep the temp directory (server stopped) afterwards")
    p.add_argument("--out", default=str(Path(__file__).with_name("RESULTS.md")), help="the report to write")
    args = p.parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    root = Path(tempfile.mkdtemp(prefix="dbsage-bench-"))
    try:
        bench = Bench(args, root)
    except DbsageError as exc:  # no server binaries (outside the project's venv, say): one line, no traceback
        shutil.rmtree(root, ignore_errors=True)
        say(f"cannot start: {exc.one_line()}")
        return 1
    code = 0
    try:
        bench.run()
    except KeyboardInterrupt:
        say("interrupted: cleaning up")
        code = 130
    except Exception as exc:  # noqa: BLE001 - a RunFailed or anything else: report what was measured
        say(f"failed: {exc.__class__.__name__}: {exc}")
        bench.results["error"] = f"{exc.__class__.__name__}: {exc}"
        code = 1
    finally:
        if args.keep:
            bench.server.stop()
            say(f"kept {root} (server stopped; logs in {bench.logs})")
        else:
            bench.server.destroy()
            shutil.rmtree(root, ignore_errors=True)
    if code != 130 and "database" in bench.results:
        out = Path(args.out)
        report.write(bench.results, out)
        say(f"wrote {out}{' (incomplete: see the error at the top)' if code else ''}")
        print(out.read_text())
    return code


if __name__ == "__main__":
    sys.exit(main())
