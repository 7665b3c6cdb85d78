"""Restoring a snapshot exactly, in one transaction, and the emergency rollback built on it.

The snapshot is validated (sha256 and structure) before the database is touched. psql then receives, inside
one BEGIN ... COMMIT with ``ON_ERROR_STOP``: our prelude (empty the snapshot's scope, set aside outside objects
that depend on it), the snapshot's bytes, and our postlude (put those objects back). Either all of it commits
or nothing does: a failure, a kill of psql or of us, or a server crash leaves the database as it was. The psql
session and its verified COMMIT are ``services.server.replay``; the smoke test and the result,
``services.server.smoke``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import asyncpg

from services.config import ConnInfo
from services.display import how_many
from services.errors import DbsageError, InvalidSnapshot, OperationFailed, audit_failure
from services.events import Log, Reporter, Step, null_reporter
from services.server import catalog, dependents
from services.server.clearing import plan_clear
from services.server.dump import create_snapshot
from services.server.locks import LockPolicy
from services.server.replay import PsqlSession, replay, start_psql
from services.server.smoke import RestoreResult, SmokeCheck, seal_restore
from services.server.target import Target, opened
from services.snapshots.store import Snapshot, SnapshotStore

__all__ = ["EMERGENCY_PRE_TIMEOUT", "OperationFailed", "RestoreResult", "SmokeCheck", "emergency_candidate",
           "emergency_rollback", "quick_check_or_refuse", "restore", "validate_or_refuse"]

#: Seconds the emergency rollback gives its pre-rollback snapshot of a possibly broken database.
EMERGENCY_PRE_TIMEOUT = 120


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


def _drop_pre_snapshot(store: SnapshotStore, pre: Snapshot, report: Reporter) -> None:
    """The restore did not happen (no COMMIT was sent), so its pre-rollback snapshot is a copy of the
    database as it still is: it goes, rather than piling up a full copy per attempt."""
    try:
        store.delete(pre)
    except OSError as exc:
        report(Log(f"could not remove the unneeded pre-rollback snapshot {pre.filename}: {exc.strerror}",
                   level="warning"))
        return
    store.audit("delete", "ok", snapshot=pre.filename, reason="its restore did not happen: the database is unchanged")
    report(Log(f"removed {pre.filename}: the restore did not happen, the database is unchanged"))


async def _analyze(target: Target, scope: catalog.Scope, report: Reporter) -> None:
    """Statistics for the restored tables that the snapshot did not bring back. The restore is committed:
    a failure here is a warning."""
    report(Step("analyze", "running", "statistics for the planner"))
    try:
        n, kept = await catalog.analyze(target.con, await catalog.current_scope_schemas(target.con, scope),
                                        target.conn)
    except asyncpg.PostgresError as exc:
        report(Step("analyze", "warning", f"ANALYZE failed ({exc}); autovacuum will catch up"))
        return
    came = f"the statistics of {how_many(kept, 'table')} came with the snapshot" if kept else ""
    done = f"{how_many(n, 'table')} analyzed" if n or not kept else ""
    report(Step("analyze", "ok", "; ".join(filter(None, (done, came)))))


def _warn_schema_only(snap: Snapshot, result: RestoreResult, report: Reporter) -> None:
    if snap.type != "schema-only":
        return
    history = catalog.HISTORY_SCHEMA in (snap.get("schemas") or []) and (snap.get("scope") or {}).get("supabase")
    warn = (f"{snap.filename} is schema-only: every row in its tables will be lost "
            "(tables come back empty" + (", the migration history as it was)." if history else ")."))
    result.warnings.append(warn)
    report(Log("WARNING: " + warn, level="warning"))


async def _pre_rollback_snapshot(target: Target, store: SnapshotStore, snap: Snapshot, result: RestoreResult,
                                 report: Reporter, action: str, pre_timeout: float | None) -> None:
    """A full snapshot of the current state. With ``pre_timeout`` (the emergency rollback), a failure or
    a timeout is a warning and the restore goes on; without, it stops the restore."""
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


async def _replace(target: Target, snap: Snapshot, scope: catalog.Scope, result: RestoreResult, report: Reporter,
                   psql: PsqlSession) -> dict[str, int]:
    """Clear the scope as it is now and replay the snapshot, in one transaction; the rows loaded."""
    schemas = await catalog.current_scope_schemas(target.con, scope)
    plan = await plan_clear(target.con, schemas, scope.dumps_everything, recorded=snap.get("outside_dependents"))
    for p in plan.preserved:
        report(Log(f"re-created outside the scope: {p}"))
    result.preserved = plan.preserved
    return await replay(psql, snap, plan.prelude, plan.postlude)


async def _preflight(target: Target, store: SnapshotStore, snap: Snapshot, scope: catalog.Scope,
                     report: Reporter, action: str) -> None:
    """Before anything is touched (the pre-rollback snapshot included): the role can drop and re-create
    the scope as it is now and the outside objects the snapshot re-creates, and nothing outside the scope
    depends on it in a way a restore cannot undo. A refusal is audited."""
    schemas = await catalog.current_scope_schemas(target.con, scope)
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
                  locks: LockPolicy | None = None, pre_snapshot: bool = True, report: Reporter = null_reporter,
                  action: str = "restore", pre_timeout: float | None = None) -> RestoreResult:
    """The standalone operation: validate, lock, (pre-snapshot), replay, smoke test, audit.
    ``validated``: the caller has just run ``validate_or_refuse`` (the CLI does, before asking).
    A clone snapshot is restored by ``clone.restore_clone`` (a server-side copy and a rename swap)."""
    if snap.is_clone:
        from services.server.clone import restore_clone  # clone snapshots need no pg tools: loaded only for them
        return await restore_clone(conn, store, snap, pre_snapshot=pre_snapshot, report=report, action=action)
    # Refuse an invalid snapshot before even connecting. With a pre-rollback snapshot to take first, a full
    # read up front is cheap by comparison and spares that dump when the file is bad; without one, the
    # inline check is enough.
    if not validated:
        (validate_or_refuse if pre_snapshot else quick_check_or_refuse)(store, snap, report)
    async with opened(conn, store, action, locks) as target:
        started = time.monotonic()
        result = RestoreResult(snapshot=snap, pre_snapshot=None)
        _warn_schema_only(snap, result, report)
        scope = catalog.Scope.of_snapshot(snap)
        # psql connects while the checks run (after the pre-rollback snapshot, if any); a refusal closes it.
        psql = None if pre_snapshot else await start_psql(target, report, store.audit)
        try:
            await _preflight(target, store, snap, scope, report, action)
            if pre_snapshot:
                await _pre_rollback_snapshot(target, store, snap, result, report, action, pre_timeout)
            else:
                report(Step("pre-rollback snapshot", "skipped", "--no-pre-snapshot"))
            report(Step("restore", "running", snap.filename))
            with audit_failure(store.audit, action, report=report, step="restore", started=started,
                               snapshot=snap.filename, target=target.conn.display) as fields:
                fields["pre_snapshot"] = result.pre_snapshot.filename if result.pre_snapshot else None
                psql = psql or await start_psql(target, report, store.audit)
                loaded = await _replace(target, snap, scope, result, report, psql)
        except BaseException:
            if result.pre_snapshot and not (psql and psql.committing):
                _drop_pre_snapshot(store, result.pre_snapshot, report)
            raise
        finally:
            if psql is not None:
                await psql.close()
        report(Step("restore", "ok", f"{snap.filename} committed"))
        result.terminated = target.locks.terminated
        await _analyze(target, scope, report)
        return await seal_restore(store, target.conn, result, report, action=action, started=started, loaded=loaded)


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
                             pre_timeout: float = EMERGENCY_PRE_TIMEOUT, locks: LockPolicy | None = None,
                             chosen: Callable[[Snapshot, str], None] | None = None) -> RestoreResult:
    """Restore the newest valid full snapshot (``emergency_candidate``), with a pre-rollback snapshot that may
    fail or time out (``pre_timeout``) without stopping the rollback. The choice reads every byte of the
    candidates it checks, so it runs in a thread, within a "choose snapshot" step; ``chosen(snap, why)`` is then
    called, before the database is touched, for a caller that names the restore (the TUI's subject line)."""
    report(Step("choose snapshot", "running", "newest valid full snapshot (checking sha256)"))
    try:
        snap, why = await asyncio.to_thread(emergency_candidate, store)
    except DbsageError as exc:
        report(Step("choose snapshot", "failed", exc.one_line()))
        raise
    report(Step("choose snapshot", "ok", snap.filename))
    if chosen is not None:
        chosen(snap, why)
    report(Log(f"EMERGENCY ROLLBACK to {snap.filename}: {why}", level="warning"))
    return await restore(conn, store, snap, pre_snapshot=True, pre_timeout=pre_timeout, report=report,
                         action="rollback", validated=True, locks=locks)
