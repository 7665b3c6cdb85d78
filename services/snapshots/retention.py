"""The retention policy: which snapshots a cleanup keeps, which it deletes, and why, for each one.

Recent snapshots are the likeliest to be rolled back to, so they are all kept; older ones thin out to the
newest of each calendar day (UTC), then of each ISO week, then of each month (the tiers: ``config.Policy``).
Protected snapshots (metadata ``protected: true``, a version-like label, ``before-migration``, ``baseline``)
are kept forever; of the pre-rollback snapshots (a full copy each restore takes) only the newest few.

The newest valid full snapshot is never deleted, even when newer schema-only ones supersede it in its
bucket: it is the only way back to the data. Snapshots whose quick check fails are never deleted by the
policy (their age cannot be trusted and they may be the only copy of something); they are listed apart, and
removed only when the user asks.

``plan`` is pure (no I/O, the clock is a parameter) so that the CLI's ``--dry-run``, the TUI's preview and
the property tests all see exactly what ``apply`` will do. Each bucket is its tier plus its calendar key,
so a day that straddles the 7-day edge keeps its recent snapshots *and* the newest of its older ones.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field

from services.config import Policy
from services.errors import OperationFailed
from services.snapshots.meta import parse_ts
from services.snapshots.store import Snapshot, SnapshotStore

#: ``v`` followed by a digit anywhere (v1, v1.0, app-v2), or a dotted version number (2.3, release-2.3.1).
_VERSION_RE = re.compile(r"v\d|\d+\.\d+", re.IGNORECASE)
#: Labels that mark a state someone will want back however old it is (``_`` and ``-`` are equivalent).
PROTECTED_LABELS = frozenset({"before-migration", "baseline"})
#: The label of the snapshot a restore takes of the state it replaces.
PRE_ROLLBACK = "pre-rollback"


@dataclass(frozen=True)
class Item:
    """What the policy needs to know about one snapshot (see ``items_from_snapshots``)."""

    filename: str
    label: str
    timestamp: dt.datetime  # aware; from the metadata when it has one
    protected_meta: bool = False
    valid: bool = True
    full: bool = True
    problem: str | None = None  # why an invalid snapshot failed its quick check


@dataclass(frozen=True)
class Decision:
    filename: str
    reason: str


@dataclass
class Plan:
    """Every item lands in exactly one list, newest first. ``invalid`` is deleted only on request."""

    keep: list[Decision] = field(default_factory=list)
    delete: list[Decision] = field(default_factory=list)
    invalid: list[Decision] = field(default_factory=list)

    def verdicts(self) -> dict[str, str]:
        """Each snapshot's file name -> what a cleanup now would do with it, and why."""
        return {d.filename: d.reason for d in self.keep + self.delete + self.invalid}

    def to_json(self) -> dict:
        return {key: [asdict(d) for d in getattr(self, key)] for key in ("keep", "delete", "invalid")}


def policy_text(policy: Policy) -> str:
    """The policy in one sentence, with the configured tiers (the help and the CLI say the same)."""
    return (f"every snapshot of the last {policy.keep_all_days} days; the newest of each day up to "
            f"{policy.daily_days} days, of each ISO week up to {policy.weekly_days} days, of each month beyond; "
            f"the newest {policy.pre_rollback} pre-rollback snapshots; protected ones (p, or a label such as "
            "v1.0, before-migration, baseline) forever; the newest valid full snapshot always")


@functools.lru_cache(maxsize=1024)  # a listing asks once per snapshot; labels repeat
def is_protected_label(label: str) -> bool:
    """A version marker (``v1``, ``v1.0``, ``release-2.3.1``) or a label such as ``before-migration``."""
    return bool(_VERSION_RE.search(label)) or label.lower().replace("_", "-") in PROTECTED_LABELS


def is_protected(snap: Snapshot) -> bool:
    """Protected by its metadata (``p``) or by its label: a cleanup never deletes it."""
    return snap.protected or is_protected_label(snap.label)


def items_from_snapshots(snaps: Iterable[Snapshot]) -> list[Item]:
    """Items for ``plan``: the metadata timestamp when there is one (the file name's otherwise)."""
    return [Item(s.filename, s.label, (s.meta and parse_ts(s.meta.get("timestamp"))) or s.timestamp,
                 protected_meta=s.protected, valid=s.valid, full=s.is_full, problem=s.problem) for s in snaps]


def _utc(ts: dt.datetime) -> dt.datetime:
    return ts.replace(tzinfo=dt.UTC) if ts.tzinfo is None else ts.astimezone(dt.UTC)


def _bucket(ts: dt.datetime, now: dt.datetime, policy: Policy) -> str | None:
    """The bucket an unprotected snapshot competes in, or None inside the keep-all window."""
    days = (now - ts).days
    if days < policy.keep_all_days:
        return None
    if days < policy.daily_days:
        return ts.strftime("%Y-%m-%d")
    return ts.strftime("%G-W%V" if days < policy.weekly_days else "%Y-%m")  # ISO year and week


def plan(items: Iterable[Item], now: dt.datetime, policy: Policy | None = None) -> Plan:
    """Decide every item's fate. Pure: same items, same ``now``, same plan."""
    policy = policy or Policy()
    now = _utc(now)
    order = sorted(items, key=lambda i: (_utc(i.timestamp), i.filename), reverse=True)  # newest first
    newest_full = next((i.filename for i in order if i.valid and i.full), None)
    result = Plan()
    winners: dict[str, str] = {}  # bucket -> filename of its newest snapshot (the first seen)
    pre_rollbacks = 0
    for item in order:
        protection = "kept: protected (metadata)" if item.protected_meta else \
            f"kept: protected label {item.label}" if is_protected_label(item.label) else None
        if not item.valid:
            verdict, why = ("keep", f"{protection} (invalid: {item.problem})") if protection else \
                ("invalid", f"invalid ({item.problem or 'unknown'}): removed only when asked")
        elif protection:
            verdict, why = "keep", protection
        elif item.label == PRE_ROLLBACK:
            pre_rollbacks += 1
            verdict, why = ("keep", f"kept: one of the {policy.pre_rollback} newest pre-rollback snapshots") \
                if pre_rollbacks <= policy.pre_rollback else \
                ("delete", f"delete: pre-rollback snapshot older than the newest {policy.pre_rollback}")
        elif (bucket := _bucket(_utc(item.timestamp), now, policy)) is None:
            verdict, why = "keep", f"kept: < {policy.keep_all_days} days"
        elif bucket not in winners:
            winners[bucket] = item.filename
            verdict, why = "keep", f"kept: newest of {bucket}"
        else:
            verdict, why = "delete", f"delete: older snapshot of {bucket} superseded by {winners[bucket]}"
        if verdict == "delete" and item.filename == newest_full:
            verdict, why = "keep", "kept: newest valid full snapshot"
        getattr(result, verdict).append(Decision(item.filename, why))
    return result


def apply(store: SnapshotStore, plan: Plan, snapshots: Iterable[Snapshot], *,
          include_invalid: bool = False, drop_clone: Callable[[Snapshot], object] | None = None) -> list[str]:
    """Delete the plan's deletions (and its invalid snapshots when asked), metadata first, one audit line
    each. The caller holds ``store.lock("cleanup", ...)``: taking it here would refuse the caller's own lock.
    A clone snapshot's database is dropped first with ``drop_clone`` (which needs the server); without it,
    clone snapshots stop the cleanup. Stops at the first snapshot that cannot be removed; what was deleted
    before it is in the audit log."""
    by_name = {s.filename: s for s in snapshots}
    deleted: list[str] = []
    for decision in plan.delete + (plan.invalid if include_invalid else []):
        if (snap := by_name.get(decision.filename)) is None:
            continue  # gone since the plan was made: nothing to do
        if snap.is_clone and snap.meta is not None:
            if drop_clone is None:
                raise OperationFailed(f"Deleting {decision.filename} means dropping its clone database "
                                      f"{snap.get('clone_database')}, which needs the database connection.",
                                      f"Set SUPABASE_DB_URL or DATABASE_URL; {len(deleted)} snapshot(s) were "
                                      "deleted before it.")
            drop_clone(snap)
        try:
            store.delete(snap)
        except OSError as exc:
            store.audit("delete", "failed", snapshot=decision.filename, reason=decision.reason,
                        error=exc.strerror or str(exc))
            raise OperationFailed(f"Could not delete {decision.filename}: {exc.strerror or exc}.",
                                  f"Check the permissions of {store.directory}; {len(deleted)} snapshot(s) "
                                  "were deleted before it.") from None
        store.audit("delete", "ok", snapshot=decision.filename, reason=decision.reason)
        deleted.append(decision.filename)
    return deleted
