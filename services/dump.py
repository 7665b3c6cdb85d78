"""Taking a snapshot: pg_dump writes into a pipe; one thread turns its SQL into ``NAME.partial``.

The thread (``SnapshotPump``) reads 1 MiB at a time, scans it (COPY row counts, trailer), comments out
the lines no restore as this role could run (another role's default privileges), compresses it when
asked, hashes and writes it, and starts its writeback as it goes: memory stays flat whatever the database
size, the sha256 is of the bytes in the file, and the fsync before the rename is short. After pg_dump's
trailer comes the appendix: the objects outside the scope that depend on it (``services.dependents``).
Only a dump that pg_dump finished with exit 0 *and* whose trailer is present becomes ``NAME.sql``
(``.sql.gz``, ``.sql.zst``); its metadata is written after the rename. Any failure or cancellation kills
pg_dump and removes what was written.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import asyncpg

from . import __version__, codec, dependents, inspect
from .config import ConnInfo
from .errors import LockHeld, OperationFailed, audit_outcome, explain_tool_failure
from .events import Log, Progress, Reporter, null_reporter
from .locks import LockPolicy, watching
from .meta import preload_meta_writer
from .pgtools import PgTools, candidate_bindirs, find_tools, probe
from .scanner import DumpScanner, ScanResult
from .store import (
    META_SUFFIX,
    PARTIAL_SUFFIX,
    Snapshot,
    SnapshotStore,
    check_label,
    format_ts,
    free_name,
    fsync_dir,
    human_size,
    os_user,
)
from .tls import TlsRelay

CHUNK = 1 << 20
#: Bytes of snapshot between two requests to start writing them to disk (``start_writeback``).
WRITEBACK_EVERY = 8 << 20
#: How often progress events are emitted while bytes stream (seconds).
PROGRESS_EVERY = 0.1
#: A key for pg_try_advisory_lock: one dbsage-tui operation per database at a time, whatever the directory.
ADVISORY_KEY = 0x6462736167  # "dbsag"


@dataclass
class Target:
    """An open connection to the database being worked on, with what we learned about it."""

    conn: ConnInfo
    con: asyncpg.Connection
    info: inspect.ServerInfo
    tools: PgTools
    #: Where pg_dump/psql connect when our session is encrypted (``services.tls``), else None.
    relay: TlsRelay | None = None
    locks: LockPolicy = field(default_factory=LockPolicy)

    def child_env(self, app: str | None = None) -> dict[str, str]:
        """pg_dump/psql's environment: through the TLS relay whenever our own session uses TLS; ``app``
        names the session (``LockWatch`` finds it by that name)."""
        env = self.relay.child_env() if self.relay else self.conn.child_env()
        if app:
            env["PGAPPNAME"] = app
        return env

    @property
    def tls(self) -> dict:
        """What the metadata and ``show`` say about encryption: never a secret."""
        protocols = self.relay.protocols if self.relay and self.relay.protocols else [self.info.tls or "none"]
        return {"protocol": protocols[-1], "sslmode": self.conn.sslmode}

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.con.close(), 5)
        if self.relay:
            await asyncio.to_thread(self.relay.close)


async def open_target(conn: ConnInfo, locks: LockPolicy | None = None) -> Target:
    # Ask the first candidate pg_dump its version (a short process; cached) while we connect.
    first = candidate_bindirs()[:1]
    probing = asyncio.ensure_future(asyncio.to_thread(probe, first[0])) if first else None
    locks = locks or LockPolicy()
    try:
        # Our own session's queries are catalog reads; should one ever wait for a lock, never forever.
        con = await inspect.connect(conn, {"lock_timeout": str(locks.timeout_ms)})
    finally:
        if probing is not None:
            await asyncio.wait({probing})
            if not probing.cancelled():
                probing.exception()  # retrieved: find_tools probes again and reports any error
    try:
        info = await inspect.server_info(con)
        tools = find_tools(info.major)
        relay = await asyncio.to_thread(TlsRelay(conn).start) if info.tls and conn.uses_tcp else None
    except BaseException:
        await con.close()
        raise
    return Target(conn=conn, con=con, info=info, tools=tools, relay=relay, locks=locks)


@contextlib.asynccontextmanager
async def database_lock(target: Target, operation: str):
    """Session advisory lock: a second dbsage-tui working on the same database is refused at once."""
    got = await target.con.fetchval("SELECT pg_try_advisory_lock($1)", ADVISORY_KEY)
    if not got:
        holder = await target.con.fetchval(
            """SELECT format('pid %s (%s, from %s) since %s', a.pid, a.application_name,
                             coalesce(a.client_addr::text, 'local'), to_char(a.backend_start, 'HH24:MI:SS'))
               FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
               WHERE l.locktype = 'advisory' AND l.objid = $1 AND l.granted LIMIT 1""", ADVISORY_KEY & 0xFFFFFFFF)
        raise LockHeld(f"Another dbsage-tui is working on database {target.conn.dbname}: backend {holder}.",
                       "Wait for it to finish, then try again.")
    try:
        yield
    finally:
        with contextlib.suppress(Exception):
            await target.con.execute("SELECT pg_advisory_unlock($1)", ADVISORY_KEY)


def restore_instructions(filename: str, server_major: int, tools_major: int) -> str:
    """How to restore, for the metadata: our exact restore first, then plain psql (no secrets: the URL stays
    in the environment variable). Compressed files go through ``gunzip -c``/``zstd -dc`` first."""
    psql = "psql \"$SUPABASE_DB_URL\" --single-transaction -v ON_ERROR_STOP=1"
    method = codec.method_of(filename)
    source = f"{codec.BY_HAND[method]} {filename} | " if method != "none" else ""
    if server_major < 17 <= tools_major:
        # pg_dump 17+ writes SET transaction_timeout, which servers before 17 reject.
        strip = "sed '/^SET transaction_timeout = 0;$/d'"
        by_hand = (f"{source}{strip} | {psql} -f -" if source else f"{strip} {filename} | {psql} -f -")
    else:
        by_hand = f"{source}{psql} -f -" if source else f"{psql} -f {filename}"
    return (f"dbsage-tui restore {filename}\n"
            f"# or by hand (does not drop objects created after the snapshot):\n{by_hand}\n")


def _die_with_parent() -> None:
    """In the child before exec: get SIGKILL when dbsage-tui dies, so that a ``kill -9`` of us never
    leaves a pg_dump waiting on a lock or a psql holding a half-fed transaction (Linux only)."""
    try:
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def child_kwargs() -> dict:
    """Options for every pg_dump/psql we start: own session (a Ctrl-C reaches us, and we stop the child
    cleanly), and death with the parent."""
    return {"start_new_session": True, "preexec_fn": _die_with_parent if sys.platform == "linux" else None}


def make_pipe() -> tuple[int, int]:
    """A pipe with a 1 MiB buffer where the kernel allows it (fewer wake-ups than the 64 KiB default)."""
    r, w = os.pipe()
    with contextlib.suppress(OSError, AttributeError):
        fcntl.fcntl(w, getattr(fcntl, "F_SETPIPE_SZ", 1031), CHUNK)
    return r, w


def start_writeback(fd: int, start: int, length: int) -> None:
    """Ask the kernel to start writing ``length`` bytes from ``start`` to disk, without waiting: on Linux,
    POSIX_FADV_DONTNEED starts the writeback of the range's dirty pages (and drops only pages already
    clean). The final fsync then waits for the last few MiB instead of the whole dump."""
    with contextlib.suppress(AttributeError, OSError):
        os.posix_fadvise(fd, start, length, os.POSIX_FADV_DONTNEED)


class SnapshotPump:
    """In a worker thread: reads pg_dump's SQL from a pipe, scans it (COPY row counts, trailer, lines to
    rewrite), compresses it when asked, hashes and writes the file, and starts its writeback as it goes
    (``start_writeback``), so that the final fsync is short. pg_dump's own writes go to a 1 MiB pipe
    instead of a file, which takes them off its path. ``moved`` counts SQL bytes (progress), ``written``
    file bytes (size and sha256 are of the file).

    A line the scanner rewrites (``DumpScanner.edits``) is written as rewritten: while a statement line is
    incomplete at the end of a chunk it is held back (DDL lines are short; COPY data is never held)."""

    def __init__(self, src: int, dst: int, digest, scanner: DumpScanner,
                 compressor: codec.Compressor | None = None) -> None:
        self.src, self.dst, self.digest, self.scanner, self.compressor = src, dst, digest, scanner, compressor
        self.moved = 0
        self.written = 0
        self._flushed = 0
        self._held = b""

    def run(self) -> None:
        while chunk := os.read(self.src, CHUNK):
            self.feed(chunk)

    def finish(self, tail: bytes) -> None:
        """After pg_dump's output: ``tail`` (the appendix), what was held back, the compressor's end."""
        if tail:
            self.feed(tail)
        self._put(self._held)
        self._held = b""
        if self.compressor is not None:
            self._write(self.compressor.flush())

    def feed(self, chunk: bytes) -> None:
        self.scanner.feed(chunk)
        self.moved += len(chunk)
        if not self.scanner.edits and not self._held and self.scanner.settled == self.moved:
            self._put(chunk)  # nearly always: no copy
            return
        data = self._held + chunk
        start = self.moved - len(data)
        out, pos = [], 0
        for begin, end, new in self.scanner.edits:
            out += [data[pos:begin - start], new]
            pos = end - start
        self.scanner.edits.clear()
        cut = self.scanner.settled - start
        out.append(data[pos:cut])
        self._held = data[cut:]
        self._put(b"".join(out))

    def _put(self, sql: bytes) -> None:
        self._write(self.compressor.compress(sql) if self.compressor is not None else sql)

    def _write(self, data: bytes) -> None:
        if not data:
            return
        self.digest.update(data)
        self.written += len(data)
        view = memoryview(data)
        while view:
            view = view[os.write(self.dst, view):]
        if self.written - self._flushed >= WRITEBACK_EVERY:
            start_writeback(self.dst, self._flushed, self.written - self._flushed)
            self._flushed = self.written


def others_default_privileges(roles: list[str], seen: set[str]):
    """A ``DumpScanner`` rewrite that comments out ``ALTER DEFAULT PRIVILEGES FOR ROLE r`` lines of the
    ``roles`` (as pg_dump quotes them) the connecting role cannot act as: it could never set them, and a
    restore leaves them as they are (on Supabase, supabase_admin's in public). ``seen`` collects them."""
    heads = {f"ALTER DEFAULT PRIVILEGES FOR ROLE {r} ".encode(): r for r in roles}

    def rewrite(line: bytes) -> bytes | None:
        if not line.startswith(b"ALTER DEFAULT PRIVILEGES FOR ROLE "):
            return None
        for head, role in heads.items():
            if line.startswith(head):
                seen.add(role)
                return b"-- dbsage-tui: another role's, left as it is: " + line
        return None

    return rewrite


async def kill_process(proc: asyncio.subprocess.Process) -> None:
    """Stop a child: SIGTERM, then SIGKILL after 3 s. Used on cancel and on failure."""
    if proc.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(proc.wait(), 3)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()


async def pump_stderr(stream: asyncio.StreamReader, source: str, report: Reporter, keep: list[str]) -> None:
    """Forward a child's stderr line by line to the reporter; keep the lines for error messages."""
    while True:
        line = await stream.readline()
        if not line:
            return
        text = line.decode("utf-8", "replace").rstrip()
        keep.append(text)
        if len(keep) > 400:
            del keep[:100]
        level = "error" if ("error:" in text or "ERROR:" in text or "FATAL:" in text) else "info"
        report(Log(text, source=source, level=level))


@dataclass
class _Streamed:
    """What streaming a dump into its file measured."""

    tables: int
    scan: ScanResult
    outside: list[dependents.Dependent]
    pg_dump_seconds: float


async def _stream(target: Target, args: list[str], pump: SnapshotPump, wfd: int, scope: inspect.Scope,
                  schema_only: bool, report: Reporter, started: float, audit: Callable[..., None]) -> _Streamed:
    """Run pg_dump into the pump's pipe (``wfd``: its write end, closed here), then append what the
    snapshot records of the world outside its scope. Any failure or cancellation kills pg_dump."""
    proc = pumping = None
    try:
        async with watching(target.conn, "snapshot", target.locks, report, audit) as watch:
            spawned = time.monotonic()
            proc = await asyncio.create_subprocess_exec(
                *args, f"--lock-wait-timeout={target.locks.timeout_ms}", stdin=asyncio.subprocess.DEVNULL,
                stdout=wfd, stderr=asyncio.subprocess.PIPE, env=target.child_env(watch.app), **child_kwargs())
            os.close(wfd)  # pg_dump holds the only write end: its exit is the pump's end of input
            wfd = -1
            stderr_lines: list[str] = []
            err_task = asyncio.create_task(pump_stderr(proc.stderr, "pg_dump", report, stderr_lines))
            pumping = asyncio.ensure_future(asyncio.to_thread(pump.run))
            preload_meta_writer()
            # Asked while pg_dump starts (round trips before it count on a hosted database).
            tables = await inspect.tables_count(target.con, scope.schemas)
            estimate = await inspect.estimate_dump_bytes(target.con, scope.schemas, schema_only)
            if estimate:
                report(Log(f"about {human_size(estimate)} of table data to dump"))
            report(Progress("dump", 0, estimate, 0.0))
            outside = await _outside(target, scope, report)
            exited = asyncio.ensure_future(proc.wait())
            while not exited.done():
                await asyncio.wait({exited} if pumping.done() else {exited, pumping}, timeout=PROGRESS_EVERY,
                                   return_when=asyncio.FIRST_COMPLETED)
                if pumping.done():  # a failed reader/writer fails the dump at once
                    pumping.result()
                report(Progress("dump", pump.moved, estimate, time.monotonic() - started))
            rc = exited.result()
            pg_dump_seconds = round(time.monotonic() - spawned, 3)
            await err_task
        if rc < 0:
            raise OperationFailed(f"pg_dump failed: it was killed by signal {-rc}.",
                                  "Nothing was saved; take the snapshot again.")
        if rc != 0:
            # --lock-wait-timeout is a statement_timeout around pg_dump's LOCK TABLE statements.
            if "due to statement timeout" in "\n".join(stderr_lines):
                raise watch.timed_out("The snapshot", can_terminate=False)
            raise explain_tool_failure("\n".join(stderr_lines), "pg_dump")
        try:
            await pumping
            await asyncio.to_thread(pump.finish, dependents.appendix(outside) if outside else b"")
        except OSError as exc:
            raise explain_tool_failure(f"{exc.strerror}", "Writing the snapshot") from None
        scan = pump.scanner.finish()
        if not scan.complete:
            raise OperationFailed("pg_dump's output is incomplete (no dump-complete trailer).",
                                  "Check the server log; nothing was saved.")
        return _Streamed(tables, scan, outside, pg_dump_seconds)
    except BaseException:
        if proc is not None:
            await kill_process(proc)
        if pumping is not None:
            await asyncio.wait({pumping})  # pg_dump is gone: the pump reads its end of input
            if not pumping.cancelled():
                pumping.exception()  # retrieved: the error that matters is being handled here
        raise
    finally:
        if wfd >= 0:
            os.close(wfd)


async def _outside(target: Target, scope: inspect.Scope, report: Reporter) -> list[dependents.Dependent]:
    """Objects outside the scope that depend on it (and, when the dump has no publications, the scope's
    publication memberships), as they are now: the file's appendix."""
    found, blocked = await dependents.read(target.con, scope.schemas)
    for why in blocked:
        report(Log(f"WARNING: {why}; a restore will refuse while it exists", level="warning"))
    if not scope.dumps_everything:
        found += await dependents.publication_members(target.con, scope.schemas)
    for dep in found:
        report(Log(f"recorded outside the scope: {dep.what}"))
    return found


def _metadata(target: Target, scope: inspect.Scope, filename: str, ts, kind: str, pump: SnapshotPump,
              streamed: _Streamed, left_alone: set[str], duration: float, *, label: str, purpose: str, notes: str,
              protected: bool, compress: str) -> dict:
    """The ``.meta.yaml`` of a snapshot just renamed into place."""
    info = target.info
    return {
        "label": label,
        "purpose": purpose or "",
        "timestamp": format_ts(ts),
        "database_version": info.version,
        "supabase_version": info.supabase_version,
        "migration": info.migration,
        "type": kind,
        "size_bytes": pump.written,
        "size_human": human_size(pump.written),
        "compression": compress,
        "sql_bytes": pump.moved,
        "tables_count": streamed.tables,
        "restore_instructions": restore_instructions(filename, info.major, target.tools.major),
        "notes": notes or "",
        "filename": filename,
        "sha256": pump.digest.hexdigest(),
        "pg_dump_version": target.tools.version,
        "database": info.database,
        "host": f"{target.conn.host}:{target.conn.port}",
        "role": info.current_user,
        "tls": target.tls,
        "schemas": scope.schemas,
        "scope": scope.to_meta(),
        "outside_dependents": [dep.what for dep in streamed.outside],
        "outside_owners": sorted({dep.owner_of for dep in streamed.outside}),
        "default_privileges_left_alone": sorted(left_alone),
        "row_counts": None if kind == "schema-only" else dict(sorted(streamed.scan.row_counts.items())),
        "duration_seconds": duration,
        "pg_dump_seconds": streamed.pg_dump_seconds,
        "tool_version": __version__,
        "protected": bool(protected),
        "created_by": f"{os_user()}@{socket.gethostname()}",
    }


async def create_snapshot(target: Target, store: SnapshotStore, label: str, *, schema_only: bool = False,
                          purpose: str = "", notes: str = "", schemas: list[str] | None = None,
                          protected: bool = False, compress: str = "none",
                          report: Reporter = null_reporter) -> Snapshot:
    """Dump ``target`` into a new snapshot. The caller holds the locks (see ``snapshot`` for the
    standalone operation)."""
    check_label(label)
    codec.check_method(compress)
    store.ensure_dir()
    started = time.monotonic()
    info = target.info
    scope = await inspect.resolve_scope(target.con, info.supabase, schemas)
    if not scope.schemas:
        raise OperationFailed("There is nothing to snapshot: no schema in scope.",
                              "Check the connection's role can use the schemas, or name them with --schema.")
    others = [] if info.superuser else await inspect.roles_not_ours(target.con)
    ts, final = free_name(store.directory, label, codec.SUFFIXES[compress])
    partial = final.with_name(final.name + PARTIAL_SUFFIX)
    kind = "schema-only" if schema_only else "full"
    args = [target.tools.pg_dump, "--clean", "--if-exists", "--no-owner", "--verbose", "--no-password",
            *scope.pg_dump_args(target.tools.major, schema_only)]
    report(Log(f"Taking a {kind} snapshot of {target.conn.display} with pg_dump {target.tools.version}"
               + (f", {compress}-compressed" if compress != "none" else "")))
    report(Log("scope: " + ", ".join(scope.schemas)
               + (f" (excluded: {', '.join(scope.excluded)})" if scope.excluded else "")))
    left_alone: set[str] = set()
    scanner = DumpScanner(rewrite=others_default_privileges(others, left_alone) if others else None)
    digest = hashlib.sha256()
    renamed = False
    compressor = codec.Compressor(compress) if compress != "none" else None
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    rfd, wfd = make_pipe()  # _stream closes the write end, whatever happens
    try:
        pump = SnapshotPump(rfd, fd, digest, scanner, compressor)
        streamed = await _stream(target, args, pump, wfd, scope, schema_only, report, started, store.audit)
        await asyncio.to_thread(os.fsync, fd)  # can take a while for a large dump: keep the loop free
        os.close(fd)
        fd = -1
        os.rename(partial, final)
        renamed = True
        fsync_dir(store.directory)
        duration = round(time.monotonic() - started, 3)
        meta = _metadata(target, scope, final.name, ts, kind, pump, streamed, left_alone, duration,
                         label=label, purpose=purpose, notes=notes, protected=protected, compress=compress)
        store.write_meta(final, meta)
        report(Progress("dump", pump.written, pump.written, time.monotonic() - started))
        report(Log(f"Saved {final.name} ({human_size(pump.written)}, {streamed.tables} tables, {duration:.1f}s)"))
        snap = Snapshot(path=final, label=label, timestamp=ts, meta=meta, file_size=pump.written)
        store.audit("snapshot", "ok", snapshot=final.name, type=kind, target=target.conn.display,
                    size_bytes=pump.written, duration_seconds=duration, pg_dump_seconds=streamed.pg_dump_seconds)
        return snap
    except BaseException as exc:
        if fd >= 0:
            os.close(fd)
        partial.unlink(missing_ok=True)
        if renamed:
            final.unlink(missing_ok=True)
            final.with_name(final.name + META_SUFFIX).unlink(missing_ok=True)
        outcome, msg = audit_outcome(exc)
        store.audit("snapshot", outcome, snapshot=final.name, type=kind, target=target.conn.display, error=msg)
        if isinstance(exc, OSError):
            raise explain_tool_failure(str(exc), "Writing the snapshot") from None
        raise
    finally:
        os.close(rfd)


async def snapshot(conn: ConnInfo, store: SnapshotStore, label: str, *, locks: LockPolicy | None = None,
                   **kwargs) -> Snapshot:
    """The standalone operation: connect, take both locks, dump."""
    check_label(label)
    with store.lock("snapshot", conn.display):
        target = await open_target(conn, locks)
        try:
            async with database_lock(target, "snapshot"):
                return await create_snapshot(target, store, label, **kwargs)
        finally:
            await target.close()
