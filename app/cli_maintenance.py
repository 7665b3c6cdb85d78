"""CLI faces of retention cleanup and snapshot diff (``cleanup``, ``diff``), registered by ``app.cli``."""

from __future__ import annotations

import asyncio
import sys

from services import maintenance
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


def _print_plan(planned: maintenance.CleanupPlan) -> None:
    plan = planned.plan
    for title, decisions in (("Keep", plan.keep), ("Delete", plan.delete), ("Invalid", plan.invalid)):
        if decisions:
            print(f"{title} ({len(decisions)}):")
            for d in decisions:
                print(f"  {d.filename}  — {d.reason}")
    if planned.leftovers:
        print(f"Leftovers ({len(planned.leftovers)}), removed only with --remove-invalid:")
        for path in planned.leftovers:
            print(f"  {path.name}")


async def cmd_cleanup(ws, args) -> int:
    from app.cli import confirm, print_json
    planned = maintenance.plan_cleanup(ws.store, utcnow(), ws.settings.retention)
    if not args.json:
        _print_plan(planned)
    removing = planned.removable(args.remove_invalid)
    if args.dry_run or removing == 0:
        if args.json:
            print_json({**planned.to_json(), "deleted": []})
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
    remove = ([d.filename for d in planned.plan.invalid] + [p.name for p in planned.leftovers]
              if args.remove_invalid else [])
    result = await asyncio.to_thread(maintenance.cleanup, ws.store, planned, ws.conn, remove=remove)
    if args.json:
        print_json({**planned.to_json(), "deleted": result.deleted})
    else:
        print(result.text())
    return EXIT_OK


async def cmd_diff(ws, args) -> int:
    from app.cli import print_json
    from services import diff as diff_service  # pglast is imported only when diffing
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
