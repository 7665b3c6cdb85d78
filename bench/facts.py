"""What the report must state besides the numbers: machine, versions, server settings, and profiles.

A benchmark result without the machine and versions beside it cannot be compared with the next one; the
cProfile summary is there so that a slow number arrives with its explanation.
"""

from __future__ import annotations

import datetime as dt
import io
import os
import platform
import pstats
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def machine() -> dict:
    info = {"cores": os.cpu_count(), "kernel": platform.release(), "cpu": "?", "memory": "?"}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                info["memory"] = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    return info


def dirty_kb() -> int | None:
    """Page-cache data not yet on disk (``Dirty`` + ``Writeback`` in /proc/meminfo), in kB."""
    try:
        fields = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
        return int(fields["Dirty"].split()[0]) + int(fields["Writeback"].split()[0])
    except (OSError, KeyError, ValueError):
        return None


def versions(bindir: Path, server) -> dict:
    import asyncpg
    import textual
    import yaml

    from services import __version__

    def out(*argv: str) -> str:
        return subprocess.run(argv, capture_output=True, text=True).stdout.strip()

    return {"dbsage-tui": __version__, "python": platform.python_version(), "textual": textual.__version__,
            "asyncpg": asyncpg.__version__, "pyyaml": yaml.__version__,
            "yaml C loader": bool(getattr(yaml, "CSafeLoader", None)),
            "server": server.psql("SELECT version()").strip().split(" on ")[0],
            "pg_dump": out(str(bindir / "pg_dump"), "--version"),
            "psql": out(str(bindir / "psql"), "--version"), "bindir": str(bindir)}


def code_state() -> str:
    """The commit measured, and whether the code under test had uncommitted changes (others may be
    editing it while the benchmark runs)."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True).stdout.rstrip()

    head = git("rev-parse", "--short", "HEAD") or "?"
    dirty = git("status", "--porcelain", "--", "services", "app", "widgets", "styles")
    changed = sorted({line[3:].split("/")[0] + "/" for line in dirty.splitlines()})
    return head + (f" + uncommitted changes in {', '.join(changed)}" if changed else "")


def server_settings(server) -> dict:
    names = "shared_buffers,max_wal_size,maintenance_work_mem,work_mem,fsync,synchronous_commit"
    rows = server.psql("SELECT name, current_setting(name) FROM pg_settings "
                       f"WHERE name = ANY('{{{names}}}') ORDER BY 1")
    return dict(line.split("|", 1) for line in rows.splitlines() if line)


def profile_list(directory: Path, env: dict[str, str], prof: Path, top: int = 14) -> str:
    """cProfile of one ``dbsage-tui list --json`` (``-m app.cli``: the console script's own code)."""
    subprocess.run([sys.executable, "-m", "cProfile", "-o", str(prof), "-m", "app.cli", "list", "--json",
                    "--dir", str(directory)], env={**env, "PYTHONPATH": str(REPO)}, cwd=str(REPO),
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    buf = io.StringIO()
    pstats.Stats(str(prof), stream=buf).strip_dirs().sort_stats("tottime").print_stats(top)
    text = buf.getvalue()
    head = [ln.strip() for ln in text.splitlines() if "function calls" in ln]
    return "\n".join(head + [""] + text[text.find("   ncalls"):].rstrip().splitlines())
