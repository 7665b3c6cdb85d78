"""The snapshot directory's own operations, once for the CLI and the TUI: delete, protect, cleanup.

Each takes the directory's lock where it removes files, writes the audit entry and returns what it did;
the two faces only ask the question and print or show the answer. They are synchronous (file work and,
for a clone snapshot, dropping its database on the server): the TUI runs them in a thread worker, the CLI
with ``asyncio.to_thread``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from services.config import ConnInfo, Policy
from services.errors import BadInput
from services.snapshots import retention
from services.snapshots.store import Snapshot, SnapshotStore


def _drop_clone(conn: ConnInfo, snap: Snapshot) -> None:
    """A clone snapshot's database goes with it, which needs the server: without a target, deleting a clone
    stops, saying so."""
    from services.server import clone
    asyncio.run(clone.drop_clone(conn, snap))


def delete(store: SnapshotStore, snap: Snapshot, conn: ConnInfo | None, target: str) -> None:
    """Delete one snapshot (a clone's database first), under the directory's lock, audited."""
    with store.lock("delete", target):
        if snap.is_clone and snap.meta is not None:
            if conn is None:
                raise BadInput(f"Deleting {snap.filename} means dropping its clone database "
                               f"{snap.get('clone_database')}, which needs the database connection.",
                               "Set SUPABASE_DB_URL or DATABASE_URL, or pass --db-url.")
            _drop_clone(conn, snap)
        store.delete(snap)
    store.audit("delete", "ok", snapshot=snap.filename)


def disk_use(snaps: list[Snapshot]) -> tuple[int, int]:
    """Bytes the snapshot files take in the directory (as listed: ``stat``), and how many of them are
    pre-rollback snapshots (clone snapshots live on the server and take almost nothing here)."""
    total = pre = 0
    for s in snaps:
        if not s.is_clone:
            total += s.file_size
            pre += s.file_size if s.label == retention.PRE_ROLLBACK else 0
    return total, pre


def set_protected(store: SnapshotStore, snap: Snapshot, on: bool) -> str:
    """Protect a snapshot from cleanup (or take the protection back); the sentence that says so."""
    store.set_protected(snap, on)
    store.audit("protect" if on else "unprotect", "ok", snapshot=snap.filename)
    return f"{snap.filename} is {'protected' if on else 'no longer protected'}."


@dataclass
class CleanupPlan:
    """The retention policy's verdict on the directory as it is now, and the leftovers beside it
    (stale ``.partial`` files, metadata without a file), which go only with the invalid snapshots."""

    plan: retention.Plan
    snapshots: list[Snapshot]
    leftovers: list[Path]

    def to_json(self) -> dict:
        return {**self.plan.to_json(), "leftovers": [p.name for p in self.leftovers]}

    def removable(self, remove_invalid: bool) -> int:
        return len(self.plan.delete) + (len(self.plan.invalid) + len(self.leftovers) if remove_invalid else 0)


@dataclass(frozen=True)
class CleanupResult:
    deleted: list[str]  # file names, snapshots and leftovers
    kept: int  # snapshots left in the directory

    def text(self) -> str:
        return f"Deleted {len(self.deleted)} file(s); kept {self.kept} snapshot(s)."


def plan_cleanup(store: SnapshotStore, now: dt.datetime, policy: Policy) -> CleanupPlan:
    snaps = store.list()
    listed = {s.filename for s in snaps}
    leftovers = [p for p in store.orphans() if p.name not in listed]
    return CleanupPlan(retention.plan(retention.items_from_snapshots(snaps), now, policy), snaps, leftovers)


def cleanup(store: SnapshotStore, planned: CleanupPlan, conn: ConnInfo | None, *,
            delete: Collection[str] | None = None, remove: Collection[str] = ()) -> CleanupResult:
    """Delete what the user confirmed: the plan's deletions (all, or the names in ``delete``) and, named
    in ``remove``, invalid snapshots and leftovers. Never more than the plan: a name it does not list is
    ignored."""
    plan = planned.plan
    chosen = retention.Plan(keep=plan.keep,
                            delete=[d for d in plan.delete if delete is None or d.filename in delete],
                            invalid=[d for d in plan.invalid if d.filename in remove])
    with store.lock("cleanup", str(store.directory)):
        deleted = retention.apply(store, chosen, planned.snapshots, include_invalid=True,
                                  drop_clone=functools.partial(_drop_clone, conn) if conn else None)
        kept = len(planned.snapshots) - len(deleted)
        for path in planned.leftovers:
            if path.name in remove and path.exists():
                path.unlink()
                store.audit("delete", "ok", snapshot=path.name, reason="leftover")
                deleted.append(path.name)
        store.audit("cleanup", "ok", deleted=deleted, kept=kept)
    return CleanupResult(deleted, kept)
