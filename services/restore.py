"""Restoring a snapshot exactly, in one transaction, and the emergency rollback built on it.

The snapshot is validated (sha256 and structure) before the database is touched. psql then receives, on
stdin, inside one BEGIN ... COMMIT with ``ON_ERROR_STOP``: our prelude (empty the snapshot's scope,
set aside outside objects that depend on it), the snapshot's bytes, and our postlude (put those outside
objects back). Either all of it commits or nothing does: a failure, a kill of psql or of us, or a server
crash leaves the database as it was.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from . import codec, dependents, inspect
from .compat import ReplayFilter
from .config import ConnInfo
from .dump import (
    PROGRESS_EVERY,
    Target,
    child_kwargs,
    create_snapshot,
    database_lock,
    kill_process,
    make_pipe,
    open_target,
    pump_stderr,
)
from .errors import DbsageError, InvalidSnapshot, OperationFailed, audit_outcome, explain_tool_failure
from .events import Blocker, Log, Progress, Reporter, Step, null_reporter
from .locks import LockPolicy, watching
from .scanner import DumpScanner, ScanResult
from .store import Snapshot, SnapshotStore

#: Seconds the emergency rollback gives its pre-rollback snapshot of a possibly broken database.
EMERGENCY_PRE_TIMEOUT = 120


@dataclass
class SmokeCheck:
    name: str
    ok: bool
    detail: str


@dataclass
class RestoreResult:
    snapshot: Snapshot
    pre_snapshot: Snapshot | None
    checks: list[SmokeCheck] = field(default_factory=list)
    duration: float = 0.0
    preserved: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    #: Sessions terminated because they blocked the restore (``--terminate-blockers``).
    terminated: list[Blocker] = field(default_factory=list)

    @property
    def smoke_ok(self) -> bool:
        return all(c.ok for c in self.checks)


def validate_or_refuse(store: SnapshotStore, snap: Snapshot, report: Reporter) -> None:
    report(Step("validate", "running", snap.filename))
    v = store.validate(snap)
    for name, ok, detail in v.checks:
        report(Log(f"{'ok' if ok else 'FAILED'}: {name}: {detail}", source="check",
                   level="info" if ok else "error"))
    if not v.ok:
        report(Step("validate", "failed", v.reason or ""))
        raise InvalidSnapshot(f"Snapshot {snap.filename} is invalid: {v.reason}.",
                              "The database was not touched. Choose another snapshot (`dbsage-tui list`).")
    report(Step("validate", "ok", "sha256, size and structure match"))


class _Feeder:
    """Runs in a worker thread: writes the prelude, then the snapshot's bytes (hashed and scanned on the
    way, made fit for this server by ``compat.ReplayFilter``), into psql's stdin. Hashing while feeding
    closes the gap between validation and replay: the COMMIT is only sent if the bytes psql received are
    the ones the metadata vouches for. The scan lists the COPY blocks in order, to match against the
    ``COPY n`` tags psql prints."""

    def __init__(self, dst: int, snap: Snapshot, prelude: bytes, server_major: int) -> None:
        self.dst, self.snap, self.prelude, self.server_major = dst, snap, prelude, server_major
        self.digest = hashlib.sha256()
        self.scanner = DumpScanner()
        self.moved = 0  # bytes of the file hashed (their SQL, unless psql stopped reading, sent)
        self.damaged: str | None = None  # why the compressed stream could not be decoded
        self.psql_stopped = False

    def run(self) -> None:
        try:
            write_all(self.dst, self.prelude)
        except BrokenPipeError:
            self.psql_stopped = True
        sql = ReplayFilter(self.server_major)
        with open(self.snap.path, "rb") as fh:
            raw = codec.HashingReader(fh, self.digest)
            try:
                for chunk in codec.iter_plain(raw, codec.method_of(self.snap.filename)):
                    self.moved = raw.read_bytes
                    self.scanner.feed(chunk)
                    self._send(sql.feed(chunk))
                self._send(sql.flush())
            except codec.CorruptCompressedData as exc:
                self.damaged = str(exc)  # not intact either: the rest of the file was not read
            self.moved = raw.read_bytes

    def _send(self, data: bytes) -> None:
        if data and not self.psql_stopped:
            try:
                write_all(self.dst, data)
            except BrokenPipeError:
                self.psql_stopped = True  # psql failed; keep hashing to tell a bad file apart

    @property
    def intact(self) -> bool:
        return (self.damaged is None and self.moved == self.snap.get("size_bytes")
                and self.digest.hexdigest() == self.snap.get("sha256"))


def quick_check_or_refuse(store: SnapshotStore, snap: Snapshot, report: Reporter) -> None:
    """The cheap checks (metadata, size, header and trailer), read afresh. Enough before a restore that
    takes no pre-rollback snapshot: the sha256 is then verified while the bytes stream to psql, and a
    mismatch means no COMMIT."""
    fresh = store.resolve(snap.filename)
    if not fresh.valid:
        report(Step("validate", "failed", fresh.problem or ""))
        raise InvalidSnapshot(f"Snapshot {snap.filename} is invalid: {fresh.problem}.",
                              "The database was not touched. Choose another snapshot (`dbsage-tui list`).")
    snap.meta, snap.problem, snap.file_size = fresh.meta, None, fresh.file_size
    report(Step("validate", "ok", "metadata, size, header and trailer match; sha256 is checked while restoring"))


_COPY_TAG = re.compile(rb"COPY (\d+)")


@dataclass
class _Fed:
    """What feeding psql left: its exit code and stderr, the ``COPY n`` tags, what followed the marker."""

    rc: int
    stderr: str
    tags: list[int]
    after_marker: list[bytes]
    feeder: _Feeder
    scan: ScanResult
    mismatch: str | None


async def _replay(target: Target, snap: Snapshot, plan: inspect.ClearPlan, report: Reporter,
                  audit: Callable[..., None]) -> dict[str, int]:
    """Feed psql; COMMIT only when the bytes matched the metadata and the server loaded exactly the rows
    the snapshot holds. Returns the rows loaded per table (psql's ``COPY n`` tags)."""
    # The transaction is ours, not psql's --single-transaction: at end of input psql -1 COMMITs, so if we
    # died mid-stream a half-restored database would be committed. With our own BEGIN, input that ends
    # before our COMMIT leaves psql to exit with the transaction open, and the server rolls it back.
    # The COMMIT is held back until psql echoes a marker placed after everything else: by then every
    # COPY has printed its row count, which is checked first.
    marker = f"dbsage-fed-{secrets.token_hex(8)}"
    prelude = "\n".join(["BEGIN;", "SET LOCAL client_min_messages = warning;",
                         f"SET LOCAL lock_timeout = {target.locks.timeout_ms};", *plan.prelude, ""]).encode()
    postlude = "\n".join(["", "SET search_path = pg_catalog;", *plan.postlude, f"\\echo {marker}", ""]).encode()
    report(Log(f"Replaying {snap.filename} into {target.conn.display} with psql {target.tools.version} "
               "in one transaction"))
    async with watching(target.conn, "restore", target.locks, report, audit) as watch:
        fed = await _feed(target, snap, watch.app, (prelude, postlude, marker), report)
    rolled_back = "Nothing was committed: the database is unchanged. Choose another snapshot."
    if fed.feeder.damaged:
        raise InvalidSnapshot(f"Snapshot {snap.filename} is damaged: {fed.feeder.damaged}.", rolled_back)
    if not fed.feeder.intact:
        raise InvalidSnapshot(f"Snapshot {snap.filename} does not match its metadata (sha256 or size): it is "
                              "corrupt or changed after it was taken.", rolled_back)
    if not fed.scan.complete:
        raise InvalidSnapshot(f"Snapshot {snap.filename} is incomplete: its SQL has no dump-complete trailer.",
                              rolled_back)
    if fed.rc != 0:
        if "lock timeout" in fed.stderr:
            raise watch.timed_out("The restore")
        raise _restore_failure(fed.stderr, prelude.count(b"\n"), snap)
    if fed.mismatch is not None:
        raise OperationFailed(f"Restore failed: {fed.mismatch}. The transaction was rolled back: the database is "
                              "unchanged.", "Validate the snapshot (`dbsage-tui validate`) and check its metadata.")
    if b"COMMIT" not in fed.after_marker:
        raise OperationFailed("Restore failed: psql ended without committing. The transaction was rolled back: "
                              "the database is unchanged.", "See the log for psql's output.")
    loaded: dict[str, int] = {}
    for (table, _), rows in zip(fed.scan.copies, fed.tags, strict=True):
        loaded[table] = loaded.get(table, 0) + rows
    return loaded


async def _feed(target: Target, snap: Snapshot, app: str, script: tuple[bytes, bytes, str],
                report: Reporter) -> _Fed:
    """Run psql (named ``app``) on the prelude, the snapshot's bytes and the postlude; send COMMIT only
    after the marker came back and the row counts agree."""
    prelude, postlude, marker = script
    total = snap.get("size_bytes") or snap.path.stat().st_size
    args = [target.tools.psql, "--no-psqlrc", "--no-password", "-v", "ON_ERROR_STOP=1", "--file=-"]
    pipe_r, pipe_w = make_pipe()
    try:
        proc = await asyncio.create_subprocess_exec(
            *args, stdin=pipe_r, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            env=target.child_env(app), **child_kwargs())
    finally:
        os.close(pipe_r)
    lines: list[str] = []
    err_task = asyncio.create_task(pump_stderr(proc.stderr, "psql", report, lines))
    tags: list[int] = []
    fed = asyncio.Event()
    after_marker: list[bytes] = []

    async def read_stdout() -> None:
        # Command tags and query results; only ``COPY n`` lines before the marker and what follows it
        # (COMMIT's tag) matter. Result rows never match: psql's aligned format indents them.
        while line := await proc.stdout.readline():
            text = line.rstrip(b"\n")
            if fed.is_set():
                after_marker.append(text)
            elif text == marker.encode():
                fed.set()
            elif m := _COPY_TAG.fullmatch(text):
                tags.append(int(m.group(1)))

    out_task = asyncio.create_task(read_stdout())
    started = time.monotonic()
    feeder = _Feeder(pipe_w, snap, prelude, target.info.major)
    feeding = asyncio.ensure_future(asyncio.to_thread(feeder.run))
    mismatch = None
    try:
        while not feeding.done():
            await asyncio.wait({feeding}, timeout=PROGRESS_EVERY)
            report(Progress("restore", feeder.moved, total, time.monotonic() - started))
        feeding.result()
        scan = feeder.scanner.finish()
        if feeder.intact and scan.complete and not feeder.psql_stopped:
            with contextlib.suppress(BrokenPipeError):
                await asyncio.to_thread(write_all, pipe_w, postlude)
            waiting = asyncio.ensure_future(fed.wait())
            await asyncio.wait({waiting, out_task}, return_when=asyncio.FIRST_COMPLETED)
            waiting.cancel()
            if fed.is_set():
                mismatch = _loaded_mismatch(scan.copies, tags, snap)
                if mismatch is None:
                    with contextlib.suppress(BrokenPipeError):
                        write_all(pipe_w, b"COMMIT;\n")
        os.close(pipe_w)  # end of input: without our COMMIT, psql exits and the server rolls back
        pipe_w = -1
        rc = await proc.wait()
        await err_task
        await out_task
    except BaseException:
        await kill_process(proc)
        if not feeding.done():
            await asyncio.wait({feeding})
        out_task.cancel()
        raise
    finally:
        if pipe_w >= 0:
            os.close(pipe_w)
    return _Fed(rc, "\n".join(lines), tags, after_marker, feeder, scan, mismatch)


def _loaded_mismatch(copies: list[tuple[str, int]], tags: list[int], snap: Snapshot) -> str | None:
    """Why the rows the server loaded differ from the snapshot's, or None when they agree: one ``COPY n``
    tag per COPY block of the file, and per table the row counts recorded when the snapshot was taken."""
    if len(tags) != len(copies):
        return f"psql reported {len(tags)} COPY results for the {len(copies)} tables of data in the file"
    loaded: dict[str, int] = {}
    for (table, in_file), rows in zip(copies, tags, strict=True):
        if rows != in_file:
            return f"the server loaded {rows} rows into {table}, the file holds {in_file}"
        loaded[table] = loaded.get(table, 0) + rows
    recorded = snap.get("row_counts")
    if snap.is_full and isinstance(recorded, dict):
        for table, want in sorted(recorded.items()):
            if loaded.get(table, 0) != want:
                return (f"the server loaded {loaded.get(table, 0)} rows into {table}, the snapshot's metadata "
                        f"records {want}")
        extra = sorted(set(loaded) - set(recorded))
        if extra:
            return f"the file loads {extra[0]}, which the snapshot's metadata does not list"
    return None


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _restore_failure(stderr: str, prelude_lines: int, snap: Snapshot) -> OperationFailed:
    err = explain_tool_failure(stderr, "Restore")
    m = re.search(r"psql:<stdin>:(\d+): (?:ERROR|FATAL):\s*(.*)", stderr)
    where = ""
    if m:
        line = int(m.group(1))
        if line <= prelude_lines:
            where = " while clearing the current objects"
        else:
            where = f" at line {line - prelude_lines} of {snap.filename}"
        statement = m.group(2).strip()
        err.message = f"Restore failed{where}: {statement}"
    err.message = err.message.rstrip(".") + ". The transaction was rolled back: the database is unchanged."
    if not err.hint:
        err.hint = "See the log for psql's output."
    return err


async def smoke_test(target: Target, snap: Snapshot, loaded: dict[str, int]) -> list[SmokeCheck]:
    """After a restore: a fresh connection works, the scope holds exactly the snapshot's tables, and the
    rows loaded (``loaded``: psql's COPY results, already matched with the metadata before COMMIT)."""
    checks: list[SmokeCheck] = []
    try:
        con = await inspect.connect(target.conn)
    except DbsageError as exc:
        return [SmokeCheck("connection", False, exc.message)]
    try:
        checks.append(SmokeCheck("connection", True, f"connected to {target.conn.display}"))
        schemas = list(snap.get("schemas") or [])
        want_tables = snap.get("tables_count")
        got_tables = await inspect.tables_count(con, schemas)
        checks.append(SmokeCheck("tables", got_tables == want_tables,
                                 f"{got_tables} tables (snapshot: {want_tables})"))
        want_rows = snap.get("row_counts")
        if snap.is_full and isinstance(want_rows, dict):
            present = set(await inspect.table_names(con, schemas))
            missing = sorted(set(want_rows) - present)
            extra = sorted(present - set(want_rows))
            bad = [f"{t}: {loaded.get(t, 0)} rows loaded, snapshot {n}" for t, n in want_rows.items()
                   if loaded.get(t, 0) != n]
            total = sum(loaded.values())
            detail = (f"{len(want_rows)} tables, {total:,} rows loaded as recorded (checked before COMMIT)"
                      if not bad else "; ".join(bad[:3]))
            if missing:
                detail += f"; missing after COMMIT: {', '.join(missing[:3])}"
            if extra:
                detail += f"; tables not in snapshot: {', '.join(extra[:3])}"
            checks.append(SmokeCheck("row counts", not bad and not missing and not extra, detail))
        else:
            checks.append(SmokeCheck("row counts", True, "schema-only snapshot: tables are empty by design"))
    finally:
        await con.close()
    return checks


def report_checks(result: RestoreResult, report: Reporter) -> None:
    """The smoke test's checks as log lines, then its step: ok, or failed."""
    for c in result.checks:
        report(Log(f"{'ok' if c.ok else 'FAILED'}: {c.name}: {c.detail}", source="check",
                   level="info" if c.ok else "error"))
    report(Step("smoke test", "ok" if result.smoke_ok else "failed",
                "all checks passed" if result.smoke_ok else "some checks failed"))


async def restore_into(target: Target, store: SnapshotStore, snap: Snapshot, *, pre_snapshot: bool = True,
                       pre_timeout: float | None = None, report: Reporter = null_reporter,
                       action: str = "restore", validated: bool = False) -> RestoreResult:
    """Restore with the locks already held (see ``restore``)."""
    started = time.monotonic()
    result = RestoreResult(snapshot=snap, pre_snapshot=None)
    if not validated:
        # With a pre-rollback snapshot to take first, a full read up front is cheap by comparison and
        # spares that dump when the file is bad; without one, the inline check is enough.
        (validate_or_refuse if pre_snapshot else quick_check_or_refuse)(store, snap, report)
    if snap.type == "schema-only":
        history = inspect.HISTORY_SCHEMA in (snap.get("schemas") or []) and (snap.get("scope") or {}).get("supabase")
        warn = (f"{snap.filename} is schema-only: every row in its tables will be lost "
                "(tables come back empty" + (", the migration history as it was)." if history else ")."))
        result.warnings.append(warn)
        report(Log("WARNING: " + warn, level="warning"))
    scope = inspect.Scope.from_meta(snap.get("schemas") or [], snap.get("scope"))
    await _preflight(target, store, snap, scope, report, action)
    if pre_snapshot:
        report(Step("pre-rollback snapshot", "running", "full snapshot of the current state"))
        try:
            coro = create_snapshot(target, store, "pre-rollback", purpose=f"before restoring {snap.filename}",
                                   notes=f"Taken automatically by dbsage-tui {action}.", report=report)
            result.pre_snapshot = await (asyncio.wait_for(coro, pre_timeout) if pre_timeout else coro)
            report(Step("pre-rollback snapshot", "ok", result.pre_snapshot.filename))
        except (DbsageError, TimeoutError) as exc:
            if pre_timeout is None:
                report(Step("pre-rollback snapshot", "failed", getattr(exc, "message", "timed out")))
                raise
            why = exc.message if isinstance(exc, DbsageError) else f"timed out after {pre_timeout:.0f}s"
            warn = f"Pre-rollback snapshot skipped: {why}"
            result.warnings.append(warn)
            report(Step("pre-rollback snapshot", "warning", warn))
    else:
        report(Step("pre-rollback snapshot", "skipped", "--no-pre-snapshot"))

    report(Step("restore", "running", snap.filename))
    try:
        schemas = await inspect.current_scope_schemas(target.con, scope)
        plan = await inspect.plan_clear(target.con, schemas, dumped_global_default_acls=scope.dumps_everything,
                                        dumped_publications=scope.dumps_everything,
                                        recorded=snap.get("outside_dependents"))
        for p in plan.preserved:
            report(Log(f"re-created outside the scope: {p}"))
        result.preserved = plan.preserved
        loaded = await _replay(target, snap, plan, report, store.audit)
    except BaseException as exc:
        outcome, msg = audit_outcome(exc)
        report(Step("restore", "failed", msg))
        store.audit(action, outcome,
                    snapshot=snap.filename, target=target.conn.display,
                    pre_snapshot=result.pre_snapshot.filename if result.pre_snapshot else None,
                    duration_seconds=round(time.monotonic() - started, 3), error=msg)
        raise
    report(Step("restore", "ok", f"{snap.filename} committed"))
    result.terminated = target.locks.terminated

    report(Step("smoke test", "running", ""))
    result.checks = await smoke_test(target, snap, loaded)
    report_checks(result, report)
    result.duration = round(time.monotonic() - started, 3)
    store.audit(action, "ok" if result.smoke_ok else "smoke-test-failed", snapshot=snap.filename,
                target=target.conn.display,
                pre_snapshot=result.pre_snapshot.filename if result.pre_snapshot else None,
                duration_seconds=result.duration, checks={c.name: c.ok for c in result.checks},
                warnings=result.warnings or None)
    return result


async def _preflight(target: Target, store: SnapshotStore, snap: Snapshot, scope: inspect.Scope,
                     report: Reporter, action: str) -> None:
    """Before anything is touched (the pre-rollback snapshot included): the role can drop and re-create
    the scope as it is now and the outside objects the snapshot re-creates, and nothing outside the scope
    depends on it in a way a restore cannot undo. A refusal is audited."""
    schemas = await inspect.current_scope_schemas(target.con, scope)
    live, blocked = await dependents.read(target.con, schemas)
    recorded = snap.get("outside_owners")
    owners = [*(recorded if isinstance(recorded, list) else []), *(d.owner_of for d in live)]
    try:
        if blocked:
            raise dependents.blocked_error(blocked)
        await dependents.check_ownership(target.con, schemas, owners)
    except DbsageError as exc:
        report(Step("restore", "failed", exc.one_line()))
        store.audit(action, "refused", snapshot=snap.filename, target=target.conn.display, error=exc.one_line())
        raise
    report(Log(f"pre-flight: {target.info.current_user} can drop and re-create {', '.join(schemas) or 'the scope'}"
               + (f" and what the snapshot keeps on {', '.join(sorted(set(owners)))}" if owners else "")))


async def restore(conn: ConnInfo, store: SnapshotStore, snap: Snapshot, *, validated: bool = False,
                  locks: LockPolicy | None = None, **kwargs) -> RestoreResult:
    """The standalone operation: validate, lock, (pre-snapshot), replay, smoke test, audit.
    ``validated``: the caller has just run ``validate_or_refuse`` (the CLI does, before asking).
    A clone snapshot is restored by ``clone.restore_clone`` (a server-side copy and a rename swap)."""
    if snap.is_clone:
        from .clone import restore_clone
        return await restore_clone(conn, store, snap, pre_snapshot=kwargs.get("pre_snapshot", True),
                                   report=kwargs.get("report", null_reporter),
                                   action=kwargs.get("action", "restore"))
    # Refuse an invalid snapshot before even connecting.
    if not validated:
        check = validate_or_refuse if kwargs.get("pre_snapshot", True) else quick_check_or_refuse
        check(store, snap, kwargs.get("report", null_reporter))
    with store.lock(kwargs.get("action", "restore"), conn.display):
        target = await open_target(conn, locks)
        try:
            async with database_lock(target, "restore"):
                return await restore_into(target, store, snap, validated=True, **kwargs)
        finally:
            await target.close()


def emergency_candidate(store: SnapshotStore) -> tuple[Snapshot, str]:
    """The snapshot an emergency rollback restores, and why: the newest valid full snapshot. Pre-rollback
    snapshots are skipped (they hold the state being rolled back from); a snapshot labeled
    ``emergency*`` is preferred when it is the newest."""
    for snap in store.list():
        if not snap.valid or not snap.is_full or snap.label == "pre-rollback":
            continue
        if store.validate(snap).ok:
            why = ("newest valid full snapshot, labeled for emergencies" if snap.label.startswith("emergency")
                   else "newest valid full snapshot")
            return snap, why
    raise InvalidSnapshot("No valid full snapshot to roll back to.",
                          "Take one with `dbsage-tui snapshot --label emergency-backup` while the database is healthy.")


async def emergency_rollback(conn: ConnInfo, store: SnapshotStore, report: Reporter = null_reporter,
                             pre_timeout: float = EMERGENCY_PRE_TIMEOUT,
                             locks: LockPolicy | None = None) -> RestoreResult:
    snap, why = emergency_candidate(store)
    report(Log(f"EMERGENCY ROLLBACK to {snap.filename}: {why}", level="warning"))
    return await restore(conn, store, snap, pre_snapshot=True, pre_timeout=pre_timeout, report=report,
                         action="rollback", validated=True, locks=locks)


