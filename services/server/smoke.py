"""After a restore, file or clone: the smoke test, the typed result, and the audit line that closes it."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from services.config import ConnInfo
from services.display import how_many
from services.errors import DbsageError
from services.events import Blocker, Log, Reporter, Step
from services.server import catalog
from services.snapshots.store import Snapshot, SnapshotStore


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


async def smoke_test(conn: ConnInfo, snap: Snapshot, loaded: dict[str, int] | None = None) -> list[SmokeCheck]:
    """After a restore: a fresh connection works, the scope holds exactly the snapshot's tables, and (for a
    file snapshot) the rows loaded (``loaded``: psql's COPY results, already matched with the metadata
    before COMMIT). A clone snapshot's scope is the whole database, as it was copied."""
    try:
        con = await catalog.connect(conn)
    except DbsageError as exc:
        return [SmokeCheck("connection", False, exc.message)]
    try:
        checks = [SmokeCheck("connection", True, f"connected to {conn.display}")]
        schemas = (await catalog.resolve_scope(con, False, None)).schemas if snap.is_clone \
            else list(snap.get("schemas") or [])
        want_tables = snap.get("tables_count")
        got_tables = await catalog.tables_count(con, schemas)
        checks.append(SmokeCheck("tables", got_tables == want_tables,
                                 f"{how_many(got_tables, 'table')} (snapshot: {want_tables})"))
        if loaded is not None:
            checks.append(await _row_counts(con, snap, schemas, loaded))
    finally:
        await con.close()
    return checks


async def _row_counts(con, snap: Snapshot, schemas: list[str], loaded: dict[str, int]) -> SmokeCheck:
    want_rows = snap.get("row_counts")
    if not (snap.is_full and isinstance(want_rows, dict)):
        return SmokeCheck("row counts", True, "schema-only snapshot: tables are empty by design")
    present = {r["name"] for r in await catalog.user_tables(con, schemas, ["r"])}
    missing = sorted(set(want_rows) - present)
    extra = sorted(present - set(want_rows))
    # The rows loaded per table were matched with the metadata before COMMIT (``replay.loaded_mismatch``).
    detail = (f"{how_many(len(want_rows), 'table')}, {how_many(sum(loaded.values()), 'row')} loaded as recorded "
              "(checked before COMMIT)")
    if missing:
        detail += f"; missing after COMMIT: {', '.join(missing[:3])}"
    if extra:
        detail += f"; tables not in snapshot: {', '.join(extra[:3])}"
    return SmokeCheck("row counts", not missing and not extra, detail)


async def seal_restore(store: SnapshotStore, conn: ConnInfo, result: RestoreResult, report: Reporter, *,
                       action: str, started: float, loaded: dict[str, int] | None = None,
                       **fields) -> RestoreResult:
    """The end of every committed restore: the smoke test, its report, the audit line ("ok" or
    "smoke-test-failed"); ``fields`` go into that line."""
    report(Step("smoke test", "running", ""))
    result.checks = await smoke_test(conn, result.snapshot, loaded)
    for c in result.checks:
        report(Log(f"{'ok' if c.ok else 'FAILED'}: {c.name}: {c.detail}", source="check",
                   level="info" if c.ok else "error"))
    report(Step("smoke test", "ok" if result.smoke_ok else "failed",
                "all checks passed" if result.smoke_ok else "some checks failed"))
    result.duration = round(time.monotonic() - started, 3)
    store.audit(action, "ok" if result.smoke_ok else "smoke-test-failed", snapshot=result.snapshot.filename,
                **fields, target=conn.display,
                pre_snapshot=result.pre_snapshot.filename if result.pre_snapshot else None,
                duration_seconds=result.duration, checks={c.name: c.ok for c in result.checks},
                warnings=result.warnings or None)
    return result
