"""Taking a snapshot: pg_dump writes into a pipe; one thread (``SnapshotPump``) turns its SQL into
``NAME.partial``. After pg_dump's trailer comes the appendix: the objects outside the scope that depend on it
(``services.server.dependents``). Only a dump that pg_dump finished with exit 0 *and* whose trailer is present
becomes ``NAME.sql`` (``.sql.gz``, ``.sql.zst``); its metadata is written after the rename. Any failure or
cancellation kills pg_dump and removes what was written.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from services.config import ConnInfo
from services.display import how_many, human_size
from services.errors import OperationFailed, audit_failure, explain_tool_failure
from services.events import Log, Progress, Reporter, null_reporter
from services.server import catalog, dependents
from services.server.locks import LockPolicy, LockWatch
from services.server.processes import (
    CHUNK,
    PROGRESS_EVERY,
    child_kwargs,
    kill_process,
    make_pipe,
    pump_stderr,
    write_all,
)
from services.server.target import Target, database_lock, open_target, opened
from services.snapshots import compression
from services.snapshots.meta import preload_meta_writer
from services.snapshots.record import restore_instructions, snapshot_record
from services.snapshots.scanner import DumpScanner, ScanResult
from services.snapshots.store import (
    META_SUFFIX,
    PARTIAL_SUFFIX,
    Snapshot,
    SnapshotStore,
    check_label,
    free_name,
    fsync_dir,
)

__all__ = ["Target", "create_snapshot", "database_lock", "open_target", "snapshot"]

#: Bytes of snapshot between two requests to start writing them to disk (``SnapshotPump._write``).
WRITEBACK_EVERY = 8 << 20


class SnapshotPump:
    """Reads the pipe a chunk at a time; scans it (COPY row counts, trailer), comments out the lines no restore
    as this role could run (``others_default_privileges``), compresses, hashes and writes it, and starts its
    writeback as it goes: memory stays flat whatever the database size, the sha256 is of the bytes in the file,
    and the fsync before the rename is short. pg_dump's own writes go to a 1 MiB pipe instead of a file, which
    takes them off its path. ``moved`` counts SQL bytes (progress), ``written`` file bytes.

    A line the scanner rewrites (``DumpScanner.edits``) is written as rewritten: while a statement line is
    incomplete at the end of a chunk it is held back (DDL lines are short; COPY data is never held)."""

    def __init__(self, src: int, dst: int, digest, scanner: DumpScanner,
                 compressor: compression.Compressor | None = None) -> None:
        self.src, self.dst, self.digest, self.scanner, self.compressor = src, dst, digest, scanner, compressor
        self.moved = self.written = self._flushed = 0
        self._held = b""

    def run(self) -> None:
        while chunk := os.read(self.src, CHUNK):
            self.feed(chunk)

    def finish(self, tail: bytes) -> None:
        """After pg_dump's output: ``tail`` (the appendix), what was held back, the compressor's end."""
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
        write_all(self.dst, data)
        if self.written - self._flushed >= WRITEBACK_EVERY:
            # Start the writeback without waiting: on Linux, POSIX_FADV_DONTNEED starts writing the range's
            # dirty pages (and drops only pages already clean). The final fsync then waits for the last
            # few MiB instead of the whole dump.
            with contextlib.suppress(AttributeError, OSError):
                os.posix_fadvise(self.dst, self._flushed, self.written - self._flushed, os.POSIX_FADV_DONTNEED)
            self._flushed = self.written


def others_default_privileges(roles: list[str], seen: set[str]):
    """A ``DumpScanner`` rewrite that comments out ``ALTER DEFAULT PRIVILEGES FOR ROLE r`` lines of the
    ``roles`` (as pg_dump quotes them) the connecting role cannot act as: it could never set them, and a
    restore leaves them as they are (on Supabase, supabase_admin's in public). ``seen`` collects them."""
    heads = {f"ALTER DEFAULT PRIVILEGES FOR ROLE {r} ".encode(): r for r in roles}

    def rewrite(line: bytes) -> bytes | None:
        if line.startswith(b"ALTER DEFAULT PRIVILEGES FOR ROLE "):
            for head, role in heads.items():
                if line.startswith(head):
                    seen.add(role)
                    return b"-- dbsage-tui: another role's, left as it is: " + line
        return None

    return rewrite


@dataclass
class _Plan:
    """What a snapshot will be, decided before pg_dump starts, then what streaming it measured."""

    scope: catalog.Scope
    kind: str  # "full" | "schema-only"
    compress: str
    ts: dt.datetime
    final: Path
    args: list[str]
    scanner: DumpScanner
    left_alone: set[str]  # roles whose default privileges were commented out
    renamed: bool = False
    tables: int = 0
    outside: list[dependents.Dependent] = field(default_factory=list)  # the appendix
    scan: ScanResult | None = None
    pg_dump_seconds: float = 0.0

    @property
    def partial(self) -> Path:
        return self.final.with_name(self.final.name + PARTIAL_SUFFIX)


async def _plan(target: Target, store: SnapshotStore, label: str, schema_only: bool, schemas: list[str] | None,
                compress: str, report: Reporter) -> _Plan:
    """The scope, the file name and pg_dump's arguments; refuses an empty scope."""
    scope = await catalog.resolve_scope(target.con, target.info.supabase, schemas)
    if not scope.schemas:
        raise OperationFailed("There is nothing to snapshot: no schema in scope.",
                              "Check the connection's role can use the schemas, or name them with --schema.")
    others = [] if target.info.superuser else await catalog.roles_not_ours(target.con)
    ts, final = free_name(store.directory, label, compression.SUFFIXES[compress])
    kind = "schema-only" if schema_only else "full"
    # PostgreSQL 18 can restore the planner's statistics (pg_restore_*_stats): a full snapshot of an 18+
    # server carries them, and a restore puts them back instead of sampling every table again.
    statistics = not schema_only and min(target.info.major, target.tools.major) >= 18
    args = [target.tools.pg_dump, "--clean", "--if-exists", "--no-owner", "--verbose", "--no-password",
            *scope.pg_dump_args(target.tools.major, schema_only), *(["--statistics"] if statistics else [])]
    left_alone: set[str] = set()
    scanner = DumpScanner(rewrite=others_default_privileges(others, left_alone) if others else None)
    report(Log(f"Taking a {kind} snapshot of {target.conn.display} with pg_dump {target.tools.version}"
               + (f", {compress}-compressed" if compress != "none" else "")))
    report(Log("scope: " + ", ".join(scope.schemas)
               + (f" (excluded: {', '.join(scope.excluded)})" if scope.excluded else "")))
    return _Plan(scope, kind, compress, ts, final, args, scanner, left_alone)


async def _run(target: Target, plan: _Plan, fd: int, report: Reporter, started: float,
               audit: Callable[..., None]) -> SnapshotPump:
    """pg_dump into the pump's pipe, the pump into the partial file ``fd`` (closed here, fsynced), then
    the appendix: what the snapshot records of the world outside its scope. Any failure or cancellation
    kills pg_dump."""
    rfd, wfd = make_pipe()
    proc = pumping = None
    try:
        compressor = compression.Compressor(plan.compress) if plan.compress != "none" else None
        pump = SnapshotPump(rfd, fd, hashlib.sha256(), plan.scanner, compressor)
        async with LockWatch(target.conn, "snapshot", target.locks, report, audit) as watch:
            spawned = time.monotonic()
            proc = await asyncio.create_subprocess_exec(
                *plan.args, f"--lock-wait-timeout={target.locks.timeout_ms}", stdin=asyncio.subprocess.DEVNULL,
                stdout=wfd, stderr=asyncio.subprocess.PIPE, env=target.child_env(watch.app), **child_kwargs())
            os.close(wfd)  # pg_dump holds the only write end: its exit is the pump's end of input
            wfd = -1
            stderr_lines: list[str] = []
            err_task = asyncio.create_task(pump_stderr(proc.stderr, "pg_dump", report, stderr_lines))
            pumping = asyncio.ensure_future(asyncio.to_thread(pump.run))
            preload_meta_writer()
            estimate = await _survey(target, plan, report)
            rc = await _wait(proc, pumping, pump, estimate, report, started)
            plan.pg_dump_seconds = round(time.monotonic() - spawned, 3)
            await err_task
        if rc < 0:
            raise OperationFailed(f"pg_dump failed: it was killed by signal {-rc}.",
                                  "Nothing was saved; take the snapshot again.")
        if rc != 0:
            # --lock-wait-timeout is a statement_timeout around pg_dump's LOCK TABLE statements.
            if "due to statement timeout" in "\n".join(stderr_lines):
                raise watch.timed_out("The snapshot", can_terminate=False)
            raise explain_tool_failure("\n".join(stderr_lines), "pg_dump")
        plan.scan = await _finish(pump, pumping, plan.outside)
        await asyncio.to_thread(os.fsync, fd)  # can take a while for a large dump: keep the loop free
        return pump
    except BaseException:
        if proc is not None:
            await kill_process(proc)
        if pumping is not None:
            await asyncio.wait({pumping})  # pg_dump is gone: the pump reads its end of input
            if not pumping.cancelled():
                pumping.exception()  # retrieved: the error that matters is being handled here
        raise
    finally:
        for end in (wfd, fd, rfd):
            if end >= 0:
                os.close(end)


async def _survey(target: Target, plan: _Plan, report: Reporter) -> int | None:
    """Asked while pg_dump starts (round trips before it count on a hosted database): the tables, the
    objects outside the scope that depend on it (and, when the dump has no publications, the scope's
    publication memberships), as they are now: the file's appendix. Returns the size to expect."""
    schemas = plan.scope.schemas
    plan.tables = await catalog.tables_count(target.con, schemas)
    estimate = None if plan.kind == "schema-only" else await catalog.estimate_dump_bytes(target.con, schemas)
    if estimate:
        report(Log(f"about {human_size(estimate)} of table data to dump"))
    report(Progress("dump", 0, estimate, 0.0))
    plan.outside, blocked = await dependents.read(target.con, schemas)
    for why in blocked:
        report(Log(f"WARNING: {why}; a restore will refuse while it exists", level="warning"))
    if not plan.scope.dumps_everything:
        plan.outside += await dependents.publication_members(target.con, schemas)
    for dep in plan.outside:
        report(Log(f"recorded outside the scope: {dep.what}"))
    return estimate


async def _wait(proc: asyncio.subprocess.Process, pumping: asyncio.Future, pump: SnapshotPump,
                estimate: int | None, report: Reporter, started: float) -> int:
    """pg_dump's exit code, reporting progress meanwhile; a failed reader/writer fails the dump at once."""
    exited = asyncio.ensure_future(proc.wait())
    while not exited.done():
        await asyncio.wait({exited} if pumping.done() else {exited, pumping}, timeout=PROGRESS_EVERY,
                           return_when=asyncio.FIRST_COMPLETED)
        if pumping.done():
            pumping.result()
        report(Progress("dump", pump.moved, estimate, time.monotonic() - started))
    return exited.result()


async def _finish(pump: SnapshotPump, pumping: asyncio.Future, outside: list[dependents.Dependent]) -> ScanResult:
    """The pump's last bytes and the appendix; the dump must end with pg_dump's trailer."""
    try:
        await pumping
        await asyncio.to_thread(pump.finish, dependents.appendix(outside) if outside else b"")
    except OSError as exc:
        raise explain_tool_failure(f"{exc.strerror}", "Writing the snapshot") from None
    scan = pump.scanner.finish()
    if not scan.complete:
        raise OperationFailed("pg_dump's output is incomplete (no dump-complete trailer).",
                              "Check the server log; nothing was saved.")
    return scan


def _seal(target: Target, store: SnapshotStore, plan: _Plan, pump: SnapshotPump, started: float, report: Reporter,
          *, label: str, purpose: str, notes: str, protected: bool) -> Snapshot:
    """The partial file, fsynced, becomes the snapshot: rename, metadata, audit."""
    os.rename(plan.partial, plan.final)
    plan.renamed = True
    fsync_dir(store.directory)
    duration = round(time.monotonic() - started, 3)
    info, name, scope = target.info, plan.final.name, plan.scope
    meta = snapshot_record(
        label=label, purpose=purpose, notes=notes, ts=plan.ts, kind=plan.kind, filename=name, size=pump.written,
        sha256=pump.digest.hexdigest(), database_version=info.version, database=info.database,
        host=f"{target.conn.host}:{target.conn.port}", tables=plan.tables,
        row_counts=None if plan.kind == "schema-only" else dict(sorted(plan.scan.row_counts.items())),
        instructions=restore_instructions(name, info.major, target.tools.major, target.conn), duration=duration,
        protected=protected, details={
            "supabase_version": info.supabase_version, "migration": info.migration, "compression": plan.compress,
            "sql_bytes": pump.moved, "pg_dump_version": target.tools.version, "role": info.current_user,
            "tls": target.tls, "schemas": scope.schemas, "scope": scope.to_meta(),
            "outside_dependents": [dep.what for dep in plan.outside],
            "outside_owners": sorted({dep.owner_of for dep in plan.outside}),
            "default_privileges_left_alone": sorted(plan.left_alone), "pg_dump_seconds": plan.pg_dump_seconds,
            "statistics": "--statistics" in plan.args})
    store.write_meta(plan.final, meta)
    report(Progress("dump", pump.written, pump.written, time.monotonic() - started))
    report(Log(f"Saved {name} ({human_size(pump.written)}, {how_many(plan.tables, 'table')}, {duration:.1f}s)"))
    store.audit("snapshot", "ok", snapshot=name, type=plan.kind, target=target.conn.display,
                size_bytes=pump.written, duration_seconds=duration, pg_dump_seconds=plan.pg_dump_seconds)
    return Snapshot(path=plan.final, label=label, timestamp=plan.ts, meta=meta, file_size=pump.written)


async def create_snapshot(target: Target, store: SnapshotStore, label: str, *, schema_only: bool = False,
                          purpose: str = "", notes: str = "", schemas: list[str] | None = None,
                          protected: bool = False, compress: str = "none",
                          report: Reporter = null_reporter) -> Snapshot:
    """Dump ``target`` into a new snapshot. The caller holds the locks (see ``snapshot`` for the
    standalone operation)."""
    check_label(label)
    compression.check_method(compress)
    store.ensure_dir()
    started = time.monotonic()
    plan = await _plan(target, store, label, schema_only, schemas, compress, report)
    try:
        fd = os.open(plan.partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with audit_failure(store.audit, "snapshot", snapshot=plan.final.name, type=plan.kind,
                           target=target.conn.display):
            try:
                pump = await _run(target, plan, fd, report, started, store.audit)
                return _seal(target, store, plan, pump, started, report, label=label, purpose=purpose,
                             notes=notes, protected=protected)
            except BaseException:  # nothing of this snapshot stays on disk
                plan.partial.unlink(missing_ok=True)
                if plan.renamed:
                    plan.final.unlink(missing_ok=True)
                    plan.final.with_name(plan.final.name + META_SUFFIX).unlink(missing_ok=True)
                raise
    except OSError as exc:
        raise explain_tool_failure(str(exc), "Writing the snapshot") from None


async def snapshot(conn: ConnInfo, store: SnapshotStore, label: str, *, locks: LockPolicy | None = None,
                   **kwargs) -> Snapshot:
    """The standalone operation: connect, take both locks, dump."""
    check_label(label)
    async with opened(conn, store, "snapshot", locks) as target:
        return await create_snapshot(target, store, label, **kwargs)
