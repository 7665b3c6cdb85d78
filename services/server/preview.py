"""What a restore will cost, worked out against the live database before it runs, touching nothing.

- **Schema**: a schema-only pg_dump of the database now (the scope a snapshot taken now would have), compared
  with the snapshot file by the offline diff (``services.diff``): what will be gone, back, defined differently.
- **Rows**: per table, rows now against rows in the snapshot (``_count``).
- **Migrations**: the history rows newer than the snapshot's recorded head (``services.server.migrations``),
  and the project's ``supabase/migrations`` files the database will no longer have applied.
- **Duration**: from the audit log's earlier restores, scaled by size.

Only reads: no lock of ours is taken, pg_dump and every query give up after ``LOCK_WAIT`` seconds behind
another session's lock, and the temporary dump is removed.
"""

from __future__ import annotations

import asyncio
import mmap
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg

from services.config import ConnInfo
from services.diff.compare import Change, compare_schema
from services.diff.schema import load_model
from services.display import human_size
from services.errors import BadInput, explain_tool_failure
from services.server import catalog, migrations
from services.server.locks import LockPolicy
from services.server.processes import child_kwargs, kill_process
from services.server.target import Target, open_target
from services.snapshots import compression
from services.snapshots.store import Snapshot, SnapshotStore

#: Tables the planner estimates below this many rows are counted exactly; larger ones are estimated.
EXACT_ROWS = 1_000_000
#: Seconds any read waits behind another session's lock before giving up (a count falls back to the estimate).
LOCK_WAIT = 2.0
_MIGRATION_FILE = re.compile(r"^(\d+)_.*\.sql$")


@dataclass(frozen=True)
class TableRows:
    """A table's rows now and in the snapshot (None: the table does not exist on that side)."""

    table: str
    now: int | None
    exact: bool  # False: ``now`` is the planner's estimate
    snapshot: int | None

    @property
    def delta(self) -> int:
        return (self.snapshot or 0) - (self.now or 0)


@dataclass
class Preview:
    """What restoring ``snapshot`` over the database as it is now would do."""

    snapshot: str
    gone: list[Change] = field(default_factory=list)  # exist now, gone after the restore
    back: list[Change] = field(default_factory=list)  # in the snapshot, not in the database now
    changed: list[Change] = field(default_factory=list)  # details read "now → after the restore"
    rows: list[TableRows] = field(default_factory=list)
    #: tool -> the history rows the restore undoes (``{"version", "name"}``), newest last.
    undone: dict[str, list[dict]] = field(default_factory=dict)
    #: tool -> (head in the snapshot, head now), for every tool whose heads differ (each in ``undone`` too).
    heads: dict[str, tuple[dict | None, dict | None]] = field(default_factory=dict)
    local_files: list[str] = field(default_factory=list)  # supabase/migrations files no longer applied
    estimate_seconds: float | None = None
    estimate_basis: str | None = None
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        def changes(items):
            return [{"kind": c.kind, "name": c.name, **({"detail": c.detail} if c.detail else {})} for c in items]
        return {"snapshot": self.snapshot,
                "schema": {"gone": changes(self.gone), "back": changes(self.back), "changed": changes(self.changed)},
                "rows": [{"table": r.table, "now": r.now, "snapshot": r.snapshot, "delta": r.delta, "exact": r.exact}
                         for r in self.rows],
                "migrations": {tool: {"snapshot_head": self.heads[tool][0], "head_now": self.heads[tool][1],
                                      "undone": rows, "reapply_with": migrations.TOOLS[tool][1]}
                               for tool, rows in self.undone.items()},
                "local_migration_files": self.local_files,
                "estimate_seconds": self.estimate_seconds, "estimate_basis": self.estimate_basis,
                "notes": self.notes}


async def preview_restore(conn: ConnInfo, store: SnapshotStore, snap: Snapshot,
                          project_dir: Path | None = None) -> Preview:
    """``Preview`` of restoring ``snap`` onto ``conn``'s database; ``project_dir``: where to look for
    ``supabase/migrations`` (default: the current directory)."""
    if snap.is_clone:
        raise BadInput(f"{snap.filename} is a clone snapshot: a dry run compares a snapshot file with the "
                       "database.", "Restore it, or preview a file snapshot.")
    # The snapshot file is read in a thread from the start; meanwhile pg_dump reads the database's schema
    # and our connection counts rows: the three overlap.
    loading = asyncio.ensure_future(asyncio.to_thread(schema_model, snap))
    result = Preview(snapshot=snap.filename)
    target = await open_target(conn, LockPolicy(timeout=LOCK_WAIT))
    try:
        recorded = catalog.Scope.of_snapshot(snap)
        # The scope a snapshot taken now would have (the snapshot's own schemas when it named them).
        scope = recorded if recorded.mode == "only" else \
            await catalog.resolve_scope(target.con, target.info.supabase, None)
        schemas = await catalog.current_scope_schemas(target.con, recorded)
        dumping = asyncio.ensure_future(_live_model(target, scope))
        try:
            now = await _live_rows(target.con, schemas)
            await _migrations(target.con, snap, result)
        finally:
            live = await dumping
        snap_model = await loading
    finally:
        await target.close()
        if not loading.done():
            await asyncio.wait({loading})
    result.back, result.gone, result.changed = compare_schema(live, snap_model)
    # Rows per table after the restore: the metadata's counts (a full snapshot), else what the file's COPY
    # blocks hold (a schema snapshot keeps the migration history's rows); every other table empty.
    counts = snap.get("row_counts")
    after = {name: 0 for kind, name in snap_model.objects if kind == "table"} | (
        counts if isinstance(counts, dict) else snap_model.row_counts)
    result.rows = [TableRows(t, *now.get(t, (None, True)), after.get(t)) for t in sorted(now.keys() | after.keys())]
    result.local_files = local_files_undone(project_dir or Path.cwd(), result.undone.get("supabase") or [])
    result.estimate_seconds, result.estimate_basis = estimate_duration(store, snap)
    if snap.type == "schema-only":
        result.notes.append("schema-only snapshot: every table comes back empty")
    return result


def schema_model(snap: Snapshot):
    """The snapshot's schema (``diff.schema.Model``), read without its table data when that is safe: pg_dump
    writes pre-data, data, post-data, so in a plain dump what precedes the first ``-- Data for Name:`` and
    follows the last COPY block is the whole schema, read through a small temporary copy. A compressed file,
    or one whose metadata has no row counts (the model's COPY counts then stand in), is read whole."""
    if compression.method_of(snap.filename) != "none" or not isinstance(snap.get("row_counts"), dict):
        return load_model(snap.path)
    with open(snap.path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as data:
        first = data.find(b"\n-- Data for Name: ")
        last = data.rfind(b"\n\\.\n")
        if first < 0 or last < first:
            return load_model(snap.path)
        with tempfile.TemporaryDirectory(prefix="dbsage-preview-") as tmp:
            path = Path(tmp) / "schema.sql"
            with open(path, "wb") as out:
                out.write(data[:first + 1])
                out.write(data[last + 4:])
            return load_model(path)


async def _live_model(target: Target, scope: catalog.Scope):
    """The schema of the database now, read from a schema-only pg_dump of ``scope`` into a private
    temporary file (our connection is not used: it counts rows meanwhile)."""
    args = [target.tools.pg_dump, "--clean", "--if-exists", "--no-owner", "--no-password",
            f"--lock-wait-timeout={target.locks.timeout_ms}", *scope.pg_dump_args(target.tools.major, True)]
    with tempfile.TemporaryDirectory(prefix="dbsage-preview-") as tmp:
        path = Path(tmp) / "now.sql"
        with open(path, "wb") as out:
            proc = await asyncio.create_subprocess_exec(
                *args, stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=asyncio.subprocess.PIPE,
                env=target.child_env("dbsage-tui preview"), **child_kwargs())
            try:
                _, err = await proc.communicate()
            except BaseException:  # cancelled (the dialog closed): pg_dump goes too
                await kill_process(proc)
                raise
        if proc.returncode != 0:
            raise explain_tool_failure(err.decode("utf-8", "replace"), "Reading the database's schema")
        return await asyncio.to_thread(load_model, path)


async def _live_rows(con: asyncpg.Connection, schemas: list[str]) -> dict[str, tuple[int | None, bool]]:
    """Each table's rows now, and whether the count is exact (below ``EXACT_ROWS``)."""
    return {r["name"]: await _count(con, r["quoted"], r["estimate"])
            for r in await catalog.user_tables(con, schemas, ["r"])}


async def _count(con: asyncpg.Connection, quoted: str, estimate: int) -> tuple[int | None, bool]:
    """(rows, exact): ``count(*)`` when the planner expects fewer than ``EXACT_ROWS`` (or has no estimate:
    never analyzed), else the estimate; the estimate too when another session's lock is in the way."""
    if estimate >= EXACT_ROWS:
        return estimate, False
    try:
        return await con.fetchval(f"SELECT count(*) FROM {quoted}"), True
    except (asyncpg.LockNotAvailableError, asyncpg.QueryCanceledError):
        return (estimate if estimate >= 0 else None), False


async def _migrations(con: asyncpg.Connection, snap: Snapshot, result: Preview) -> None:
    """The history rows the restore undoes, per tool whose head the snapshot recorded (a guarded
    snapshot records every tool's; any snapshot the Supabase CLI's)."""
    guard = snap.get("guard")
    recorded = dict(guard["migrations"]) if isinstance(guard, dict) and isinstance(guard.get("migrations"), dict) \
        else {}
    if "supabase" not in recorded and snap.meta is not None and "migration" in snap.meta:
        recorded["supabase"] = snap.get("migration")
    now = await migrations.heads(con)
    for tool in sorted(set(now) if isinstance(guard, dict) else set(now) & set(recorded)):
        if migrations.text(recorded.get(tool)) != migrations.text(now[tool]):
            result.heads[tool] = (recorded.get(tool), now[tool])
        if undone := await migrations.applied_after(con, tool, recorded.get(tool)):
            result.undone[tool] = undone


def local_files_undone(project_dir: Path, undone: list[dict]) -> list[str]:
    """The project's ``supabase/migrations`` files whose version the restore takes out of the history."""
    versions = {str(row["version"]) for row in undone}
    folder = project_dir / "supabase" / "migrations"
    try:
        names = sorted(p.name for p in folder.iterdir())
    except OSError:
        return []
    return [f"supabase/migrations/{n}" for n in names if (m := _MIGRATION_FILE.match(n)) and m[1] in versions]


def estimate_duration(store: SnapshotStore, snap: Snapshot) -> tuple[float | None, str | None]:
    """Seconds a restore of ``snap`` may take, scaled from the newest earlier restore in the audit log
    whose snapshot is still listed (its size known), and what the figure is based on."""
    sizes = {s.filename: s.size_bytes for s in store.list()}
    for entry in reversed(store.read_audit()):
        size = sizes.get(str(entry.get("snapshot")))
        seconds = entry.get("duration_seconds")
        if entry.get("action") in ("restore", "rollback") and entry.get("outcome") == "ok" and size \
                and isinstance(seconds, int | float) and seconds > 0:
            estimate = round(seconds * max(snap.size_bytes, 1) / size, 1)
            return estimate, f"a restore of {human_size(size)} took {seconds:.1f}s on {entry.get('time', '?')}"
    return None, None


def _more(items: list[str], limit: int) -> list[str]:
    return items if len(items) <= limit else [*items[:limit - 1], f"… and {len(items) - limit + 1} more"]


def _rows_text(r: TableRows) -> str:
    now = "none" if r.now is None else ("" if r.exact else "~") + f"{r.now:,}"
    after = "gone" if r.snapshot is None else f"{r.snapshot:,}"
    return f"{r.table}: {now} → {after}" + (f" ({'' if r.exact else '~'}{r.delta:+,})" if r.delta else "")


def _moved(p: Preview) -> list[TableRows]:
    return [r for r in p.rows if r.delta or r.now is None or r.snapshot is None]


def headline(p: Preview) -> str:
    """The preview in one line: ``1 gone · 2 back · 0 redefined · rows differ in 1 of 5 tables · …``."""
    undone = sum(len(rows) for rows in p.undone.values())
    parts = [f"{len(p.gone)} gone", f"{len(p.back)} back", f"{len(p.changed)} redefined",
             f"rows differ in {len(_moved(p))} of {len(p.rows)} tables",
             f"{undone or 'no'} migration{'s' if undone != 1 else ''} undone"]
    if p.estimate_seconds is not None:
        parts.append(_seconds(p))
    return " · ".join(parts)


def _seconds(p: Preview) -> str:
    return f"~{p.estimate_seconds:.{0 if p.estimate_seconds >= 10 else 1}f}s"


def summary_lines(p: Preview, limit: int = 6) -> list[str]:
    """The preview as short lines (at most ``limit`` items per section), for the CLI's confirmation and the
    restore dialog."""
    out = [headline(p)]
    for title, items in (("Gone after the restore", p.gone), ("Back from the snapshot", p.back),
                         ("Defined differently", p.changed)):
        if items:
            out.append(f"{title} ({len(items)}):")
            out += ["  " + line for line in _more([f"{c.kind.replace('_', ' ')} {c.name}"
                                                   + (f": {c.detail}" if c.detail else "") for c in items], limit)]
    if not (p.gone or p.back or p.changed):
        out.append("Schema: the same as now.")
    if moved := _moved(p):
        out.append(f"Rows, now → after ({len(moved)} of {len(p.rows)} tables change):")
        out += ["  " + line for line in _more([_rows_text(r) for r in moved], limit)]
    else:
        out.append(f"Rows: the same in all {len(p.rows)} tables.")
    for tool, rows in p.undone.items():
        out.append(f"Migrations undone ({tool}, back to {migrations.text(p.heads[tool][0])}):")
        out += ["  " + line for line in _more([migrations.text(r) for r in rows], limit)]
        out.append(f"  re-apply afterwards with: {migrations.TOOLS[tool][1]}")
    if p.local_files:
        out.append("Local files no longer applied: " + ", ".join(_more(p.local_files, 3)))
    if p.estimate_seconds is not None:
        out.append(f"Expected duration: {_seconds(p)} ({p.estimate_basis})")
    out += [f"Note: {n}" for n in p.notes]
    return out
