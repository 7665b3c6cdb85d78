"""CLI faces of retention cleanup and snapshot diff (``cleanup``, ``diff``), registered by ``app.cli``."""

from __future__ import annotations

import asyncio
import sys

from services import retention
from services.config import load_config
from services.errors import EXIT_OK, BadInput
from services.store import utcnow


def register(cmd) -> None:
    p = cmd("cleanup", "apply the retention policy: show what is kept and deleted, and why")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--dry-run", action="store_true", help="only print the plan")
    mode.add_argument("--yes", "-y", action="store_true", help="delete without asking")
    p.add_argument("--remove-invalid", action="store_true",
                   help="also remove invalid snapshots and leftovers (stale .partial, metadata without a file)")
    p.add_argument("--json", action="store_true")

    p = cmd("diff", "compare two snapshots offline: schema changes and row counts")
    p.add_argument("snapshot_a", metavar="SNAPSHOT_A", help="the older snapshot (list number or file name)")
    p.add_argument("snapshot_b", metavar="SNAPSHOT_B", help="the newer snapshot")
    p.add_argument("--json", action="store_true")


def policy_from_config() -> retention.Policy:
    """Retention tiers from the config file's ``retention:`` mapping (keep_all_days, daily_days,
    weekly_days); the story's 7/30/365 days otherwise."""
    cfg = load_config().get("retention") or {}
    if not isinstance(cfg, dict):
        raise BadInput("The config file's retention: is not a mapping.", "Fix or remove it.")
    try:
        return retention.Policy(**{k: int(v) for k, v in cfg.items()
                                   if k in ("keep_all_days", "daily_days", "weekly_days")})
    except (TypeError, ValueError):
        raise BadInput("The config file's retention values are not whole numbers of days.",
                       "Fix or remove them.") from None


def _print_plan(plan: retention.Plan, leftovers: list) -> None:
    for title, decisions in (("Keep", plan.keep), ("Delete", plan.delete), ("Invalid", plan.invalid)):
        if decisions:
            print(f"{title} ({len(decisions)}):")
            for d in decisions:
                print(f"  {d.filename}  — {d.reason}")
    if leftovers:
        print(f"Leftovers ({len(leftovers)}), removed only with --remove-invalid:")
        for path in leftovers:
            print(f"  {path.name}")


def clone_dropper(ws):
    """For retention.apply, in a worker thread: drop a clone snapshot's database (None without a target)."""
    if ws.conn is None:
        return None

    def drop(snap) -> None:
        from services import clone
        asyncio.run(clone.drop_clone(ws.conn, snap))
    return drop


async def cmd_cleanup(ws, args) -> int:
    from app.cli import confirm, print_json
    store = ws.store
    snaps = store.list()
    plan = retention.plan(retention.items_from_snapshots(snaps), utcnow(), policy_from_config())
    leftovers = [p for p in store.orphans() if not p.name.endswith(".sql") or
                 p.name not in {s.filename for s in snaps}]
    data = {**plan.to_json(), "leftovers": [p.name for p in leftovers]}
    if not args.json:
        _print_plan(plan, leftovers)
    removing = len(plan.delete) + (len(plan.invalid) + len(leftovers) if args.remove_invalid else 0)
    if args.dry_run or removing == 0:
        if args.json:
            print_json({**data, "deleted": []})
        elif removing == 0:
            print("Nothing to delete.")
        return EXIT_OK
    if not args.yes:
        if not sys.stdin.isatty():
            raise BadInput("Refusing to delete without confirmation: no terminal to ask on.",
                           "Pass --yes to confirm, or --dry-run to see the plan.")
        if not confirm(f"Delete {removing} file(s)?"):
            print("Cancelled: nothing was deleted.")
            return EXIT_OK
    with store.lock("cleanup", str(store.directory)):
        deleted = await asyncio.to_thread(retention.apply, store, plan, snaps, include_invalid=args.remove_invalid,
                                          drop_clone=clone_dropper(ws))
        if args.remove_invalid:
            for path in leftovers:
                if path.exists():
                    path.unlink()
                    store.audit("delete", "ok", snapshot=path.name, reason="leftover")
                    deleted.append(path.name)
        store.audit("cleanup", "ok", deleted=deleted, kept=len(plan.keep))
    if args.json:
        print_json({**data, "deleted": deleted})
    else:
        print(f"Deleted {len(deleted)} file(s); kept {len(plan.keep)} snapshot(s).")
    return EXIT_OK


async def cmd_diff(ws, args) -> int:
    from app.cli import print_json
    from services import diff as diff_service  # pglast costs ~40 ms to import: only when diffing
    snaps = ws.store.list()
    a = ws.store.resolve(args.snapshot_a, snaps)
    b = ws.store.resolve(args.snapshot_b, snaps)
    result = diff_service.diff_snapshots(a, b)
    if args.json:
        print_json(result.to_json())
    else:
        sys.stdout.write(diff_service.format_text(result))
    return EXIT_OK


COMMANDS = {"cleanup": cmd_cleanup, "diff": cmd_diff}
