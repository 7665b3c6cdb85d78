"""The subcommands: each a thin face over one operation of ``services``. Parse nothing (``cli_parser``
did), call the service, print its events and its result (``cli_output``)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import sys

from app.cli_output import (
    Printer,
    confirm,
    describe,
    print_json,
    print_snapshot_table,
    snapshot_json,
)
from services.display import how_many, human_size, utcnow
from services.errors import EXIT_FAILED, EXIT_INVALID_SNAPSHOT, EXIT_OK, BadInput, DbsageError
from services.snapshots import maintenance
from services.snapshots.adopt import adopt, adoptable
from services.workspace import Workspace


def lock_policy(ws: Workspace, args):
    """The ``LockPolicy`` of a command: --lock-timeout, else the config file's, else the default."""
    from services.server.locks import LockPolicy
    if args.lock_timeout is not None and args.lock_timeout <= 0:
        raise BadInput(f"--lock-timeout {args.lock_timeout:g} is not a positive number of seconds.", "Use e.g. 30.")
    return LockPolicy(timeout=args.lock_timeout or ws.settings.lock_timeout,
                      terminate=getattr(args, "terminate_blockers", False))


async def cmd_snapshot(ws: Workspace, args) -> int:
    from services.server import dump
    conn = ws.require_conn()
    printer = Printer(args.json)
    if args.type == "clone":
        from services.server import clone
        if args.compress not in (None, "none") or args.schema:
            raise BadInput("A clone snapshot copies the whole database on the server: --compress and --schema "
                           "do not apply.", "Leave them out, or take a file snapshot (--type full).")
        snap = await clone.create_clone(conn, ws.store, args.label, purpose=args.purpose, notes=args.notes,
                                        protected=args.protect, report=printer)
    else:
        snap = await dump.snapshot(conn, ws.store, args.label, schema_only=args.type == "schema",
                                   purpose=args.purpose, notes=args.notes, schemas=args.schema,
                                   protected=args.protect, compress=args.compress or ws.settings.compress,
                                   report=printer, locks=lock_policy(ws, args))
    if args.json:
        print_json(snap.meta)
    else:
        m = snap.meta
        size = m.get("clone_size_human", m["size_human"])
        print(f"Saved {snap.path} ({size}, {how_many(m['tables_count'], 'table')}, {m['duration_seconds']:.1f}s)")
        print(f"Restore with: {_again(ws, args)} restore {snap.filename}")
    return EXIT_OK


def _again(ws: Workspace, args) -> str:
    """How to call ``dbsage-tui`` again on the same database and directory, for copy-paste hints."""
    import shlex
    return "dbsage-tui" + (" --demo" if ws.demo else "") + (f" --dir {shlex.quote(args.dir)}" if args.dir else "")


async def cmd_guard(ws: Workspace, args) -> int:
    from services import guard
    conn = ws.require_conn()
    argv = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
    if args.rollback_on_failure and args.type == "schema":
        raise BadInput("--rollback-on-failure needs a full snapshot: restoring a schema snapshot empties "
                       "every table.", "Leave out --type schema, or roll back by hand.")
    printer = Printer(False)
    guarded = await guard.take_snapshot(conn, ws.store, argv, label=args.label, purpose=args.purpose,
                                        schema_only=args.type == "schema", report=printer, locks=lock_policy(ws, args),
                                        compress=args.compress or ws.settings.compress)
    name = guarded.snapshot.filename
    print(f"guard: snapshot {name} taken; running: {guarded.command}", file=sys.stderr, flush=True)
    code, duration = guard.run_guarded(conn, argv)
    if code != 0:
        print(f"guard: the command failed with exit code {code} after {duration:.1f}s."
              + (" Rolling back." if args.rollback_on_failure else ""), file=sys.stderr, flush=True)
    guarded = await guard.finish(conn, ws.store, guarded, code, duration, rollback=args.rollback_on_failure,
                                 locks=lock_policy(ws, args), report=printer)
    restore_hint = f"{_again(ws, args)} restore {name}"
    if code == 0:
        print(f"guard: the command succeeded in {duration:.1f}s; snapshot {name} is kept. "
              f"Roll back with: {restore_hint}", file=sys.stderr)
        return EXIT_OK
    if guarded.rollback_error:
        print(f"guard: ROLLBACK FAILED: {guarded.rollback_error} The database is in the failed state. "
              f"Roll back with: {restore_hint}", file=sys.stderr)
        return guard.EXIT_ROLLBACK_FAILED
    if guarded.rollback is not None:
        with contextlib.redirect_stdout(sys.stderr):
            finish_restore(guarded.rollback, False, "rollback", _again(ws, args))
        return guard.EXIT_ROLLBACK_FAILED if guarded.rollback_failed else code
    print(f"guard: the database is as the command left it. Roll back with: {restore_hint}", file=sys.stderr)
    return code


async def cmd_list(ws: Workspace, args) -> int:
    snaps = ws.store.list()
    if args.json:
        print_json([snapshot_json(s, i) for i, s in enumerate(snaps, 1)], compact=True)
        return EXIT_OK
    stale = [p.name for p in ws.store.orphans() if p.name.endswith(".partial")]
    if stale:
        print(f"! {len(stale)} unfinished snapshot file(s) from an interrupted run ({', '.join(stale[:3])}): "
              f"remove with `{_again(ws, args)} cleanup --remove-invalid`\n")
    if not snaps:
        print(f"No snapshots in {ws.store.directory}. "
              f"Take one with: {_again(ws, args)} snapshot --label before-migration")
        return EXIT_OK
    print(f"Available snapshots in {ws.store.directory} (newest first):\n")
    styled = sys.stdout.isatty() and not os.environ.get("NO_COLOR")
    print_snapshot_table(snaps, columns=shutil.get_terminal_size((0, 0)).columns, styled=styled, now=utcnow())
    bad = [s for s in snaps if not s.valid]
    if bad:
        print(f"\n! {len(bad)} invalid: " + "; ".join(
            f"{s.filename}: {s.problem}" + (f" (adopt it with `{_again(ws, args)} adopt {s.filename}`)"
                                           if adoptable(s) else "") for s in bad[:5]))
    total, pre = maintenance.disk_use(snaps)
    print(f"\n{how_many(len(snaps), 'snapshot')}, {human_size(total)} on disk"
          + (f" ({human_size(pre)} in pre-rollback snapshots; cleanup keeps the newest "
             f"{ws.settings.retention.pre_rollback})" if pre else ""))
    print(f"Select a snapshot by number or file name, e.g. {_again(ws, args)} restore 1")
    return EXIT_OK


async def cmd_adopt(ws: Workspace, args) -> int:
    snap = adopt(ws.store, args.file, ws.conn)
    if args.json:
        print_json(snap.meta)
    else:
        m = snap.meta
        rows = f", {sum(m['row_counts'].values()):,} rows" if m["row_counts"] is not None else ""
        print(f"Adopted {snap.filename}: {m['type']}, {m['size_human']}, {how_many(m['tables_count'], 'table')}{rows}, "
              f"schemas {', '.join(m['schemas']) or 'none'}; dumped from {m['database_version']}")
        print(f"Restore with: {_again(ws, args)} restore {snap.filename}")
    return EXIT_OK


async def cmd_show(ws: Workspace, args) -> int:
    snap = ws.store.resolve(args.snapshot)
    if args.json:
        print_json({**snapshot_json(snap), "metadata": snap.meta})
    else:
        print("\n".join(describe(snap)))
        if snap.meta:
            print("\nRestore instructions:\n  " + str(snap.get("restore_instructions", "")).strip()
                  .replace("\n", "\n  "))
    return EXIT_OK


async def cmd_validate(ws: Workspace, args) -> int:
    snap = ws.store.resolve(args.snapshot)
    v = ws.store.validate(snap)
    if args.json:
        print_json({"filename": snap.filename, "valid": v.ok, "reason": v.reason,
                    "checks": [{"check": n, "ok": ok, "detail": d} for n, ok, d in v.checks]})
    else:
        for name, ok, detail in v.checks:
            print(f"{'✔' if ok else '✘'} {name}: {detail}")
        print(f"{snap.filename}: {'valid' if v.ok else 'INVALID: ' + str(v.reason)}")
    return EXIT_OK if v.ok else EXIT_INVALID_SNAPSHOT


async def cmd_restore(ws: Workspace, args) -> int:
    from services.server import restore
    conn = ws.require_conn()
    snap = ws.store.resolve(args.snapshot)
    printer = Printer(args.json)
    if not args.json:
        print("\n".join(describe(snap)))
        print(f"Target:    {('SANDBOX ' if ws.demo else '') + conn.display}")
    # Refuse an invalid snapshot before asking anything or touching the database (full sha256 check
    # up front when a pre-rollback snapshot will be taken; otherwise it runs inline, before COMMIT).
    # A dry run reads the file whole anyway: the cheap checks are enough for it.
    quick = args.no_pre_snapshot or args.dry_run
    (restore.quick_check_or_refuse if quick else restore.validate_or_refuse)(ws.store, snap, printer)
    if snap.type == "schema-only" and not args.json:
        print("\n*** WARNING: this is a SCHEMA-ONLY snapshot. Every row in its tables will be lost. ***\n")
    if not args.yes or args.dry_run:  # the diff machinery only when a preview is shown
        from services.server.preview import preview_restore, summary_lines
    if args.dry_run:  # against the live database; nothing is changed
        result = await preview_restore(conn, ws.store, snap)
        if args.json:
            print_json(result.to_json())
        else:
            print("\nDry run: nothing was changed. Restoring it would, compared with the database now:")
            print("\n".join(summary_lines(result, limit=50)))
        return EXIT_OK
    locks = lock_policy(ws, args)
    if not args.yes:
        if not sys.stdin.isatty():
            raise BadInput("Refusing to restore without confirmation: no terminal to ask on.",
                           "Pass --yes to confirm in scripts.")
        try:  # what the restore will remove, bring back and undo; without it, the question is asked all the same
            print("Compared with the database now:\n  "
                  + "\n  ".join(summary_lines(await preview_restore(conn, ws.store, snap))))
        except DbsageError as exc:
            print(f"Preview:   not available ({exc.one_line()})")
        from services.server.locks import sessions_now
        others = await sessions_now(conn)
        print(f"Sessions:  {len(others) or 'no'} other session{'s' if len(others) != 1 else ''} connected"
              + (" (a restore waits for their locks, up to --lock-timeout):" if others else ""))
        for b in others:
            print(f"  {b.text()}")
        if not confirm("This will replace current database. Continue?"):
            print("Cancelled: nothing was changed.")
            return EXIT_OK
    result = await restore.restore(conn, ws.store, snap, pre_snapshot=not args.no_pre_snapshot, report=printer,
                                   validated=True, locks=locks)
    return finish_restore(result, args.json, "restore", _again(ws, args))


def finish_restore(result, json_mode: bool, action: str, again: str) -> int:
    data = {"action": action, "snapshot": result.snapshot.filename,
            "pre_snapshot": result.pre_snapshot.filename if result.pre_snapshot else None,
            "status": "ok" if result.smoke_ok else "smoke-test-failed", "duration_seconds": result.duration,
            "checks": [{"check": c.name, "ok": c.ok, "detail": c.detail} for c in result.checks],
            "warnings": result.warnings, "preserved": result.preserved,
            "terminated": [b.as_dict() for b in result.terminated]}
    if json_mode:
        print_json(data)
    else:
        title = "RECOVERY STATUS" if action == "rollback" else "Restore summary"
        print(f"\n{title}: {'OK' if result.smoke_ok else 'SMOKE TEST FAILED'} "
              f"— {result.snapshot.filename} restored in {result.duration:.1f}s")
        for c in result.checks:
            print(f"  {'✔' if c.ok else '✘'} {c.name}: {c.detail}")
        for w in result.warnings:
            print(f"  ! {w}")
        for b in result.terminated:
            print(f"  ! terminated {b.text()} (it blocked the restore)")
        if result.pre_snapshot:
            print(f"Undo this restore with: {again} restore {result.pre_snapshot.filename}")
        print("Next: run your application's checks; see the audit log (audit.log) in the snapshot directory.")
    return EXIT_OK if result.smoke_ok else EXIT_FAILED


async def cmd_rollback(ws: Workspace, args) -> int:
    from services.server import restore
    conn = ws.require_conn()
    kwargs = {} if args.pre_timeout is None else {"pre_timeout": args.pre_timeout}
    result = await restore.emergency_rollback(conn, ws.store, report=Printer(args.json), locks=lock_policy(ws, args),
                                              **kwargs)
    return finish_restore(result, args.json, "rollback", _again(ws, args))


async def cmd_psql(ws: Workspace, args) -> int:
    from services.server.processes import psql_command, run_psql
    conn = ws.require_conn()
    argv, relay = psql_command(conn, args.psql_args)
    return run_psql(argv, conn, relay)


async def cmd_protect(ws: Workspace, args) -> int:
    print(maintenance.set_protected(ws.store, ws.store.resolve(args.snapshot), args.command == "protect"))
    return EXIT_OK


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
    from services.diff import compare  # pglast is imported only when diffing
    snaps = ws.store.list()
    a = ws.store.resolve(args.snapshot_a, snaps)
    b = ws.store.resolve(args.snapshot_b, snaps)
    result = compare.diff_snapshots(a, b)  # older to newer, whatever the order given
    if args.json:
        print_json(result.to_json())
    else:
        sys.stdout.write(compare.format_text(result))
    return EXIT_OK


COMMANDS = {"snapshot": cmd_snapshot, "guard": cmd_guard, "list": cmd_list, "adopt": cmd_adopt, "show": cmd_show,
            "validate": cmd_validate, "restore": cmd_restore, "rollback": cmd_rollback, "protect": cmd_protect,
            "unprotect": cmd_protect, "psql": cmd_psql, "cleanup": cmd_cleanup, "diff": cmd_diff}
