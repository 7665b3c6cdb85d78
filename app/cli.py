"""The ``dbsage-tui`` command: the full-screen app with no subcommand, the engine's subcommands otherwise.

Every subcommand is a thin face over ``services``: parse arguments, call the service, print its events and
its result. Errors become one line on stderr (``error: ...``) and the exit code of the contract:
0 ok, 1 operation failed (database unchanged), 2 bad input, 3 invalid snapshot.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import json
import os
import signal
import sys
import traceback
from pathlib import Path

from services import __version__
from services.display import age_text, human_size
from services.errors import EXIT_FAILED, EXIT_OK, BadInput, DbsageError
from services.events import Event, Log, Progress, Step
from services.meta import migration_text, scope_facts
from services.store import Snapshot, format_ts
from services.workspace import Workspace, open_workspace


def _common(parser: argparse.ArgumentParser, suppress: bool) -> None:
    """Options accepted before or after the subcommand."""
    default = argparse.SUPPRESS if suppress else None
    parser.add_argument("--db-url", default=default, metavar="URL",
                        help="target database (else SUPABASE_DB_URL, DATABASE_URL, then PG* variables); "
                             "prefer the environment: argv is visible to other users in ps")
    parser.add_argument("--dir", default=default, metavar="DIR",
                        help="snapshot directory (else DBSAGE_SNAPSHOT_DIR, config file, ./supabase/snapshots)")
    parser.add_argument("--demo", action="store_true", default=argparse.SUPPRESS if suppress else False,
                        help="use the embedded sandbox PostgreSQL with a seeded demo database")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dbsage-tui",
        description="Labeled snapshots of a PostgreSQL / Supabase database, and an exact way back to any of them. "
                    "With no command, opens the full-screen app.")
    parser.add_argument("--version", action="version", version=f"dbsage-tui {__version__}")
    _common(parser, suppress=False)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def cmd(name: str, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        _common(p, suppress=True)
        return p

    p = cmd("snapshot", "take a labeled snapshot")
    p.add_argument("--label", required=True, help="1-64 letters, digits, '.', '_' or '-'")
    p.add_argument("--type", choices=["full", "schema", "clone"], default="full",
                   help="full: schema and data (default); schema: schema only (fast, small); clone: a copy "
                        "of the database on the same server (instant; local development servers only)")
    p.add_argument("--purpose", default="", help="why this snapshot exists (shown in lists)")
    p.add_argument("--notes", default="", help="free text stored in the metadata")
    p.add_argument("--schema", action="append", metavar="NAME",
                   help="snapshot only this schema (repeatable); default: every non-system schema")
    p.add_argument("--protect", action="store_true", help="mark it protected (cleanup never deletes it)")
    p.add_argument("--compress", choices=["none", "gzip", "zstd"], default=None,
                   help="write .sql.gz or .sql.zst (gunzip -c / zstd -dc give the SQL back); default: the "
                        "config file's 'compress', else none")
    p.add_argument("--json", action="store_true", help="print the metadata as JSON")
    lock_args(p, terminate=False)

    p = cmd("list", "list snapshots, newest first")
    p.add_argument("--json", action="store_true")

    for name, text in (("show", "show a snapshot's metadata"),
                       ("validate", "check a snapshot: metadata, size, sha256, structure")):
        p = cmd(name, text)
        p.add_argument("snapshot", metavar="SNAPSHOT", help="list number (1 = newest) or file name")
        p.add_argument("--json", action="store_true")

    p = cmd("restore", "restore a snapshot (exactly, in one transaction)")
    p.add_argument("snapshot", metavar="SNAPSHOT", help="list number (1 = newest) or file name")
    p.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    p.add_argument("--no-pre-snapshot", action="store_true",
                   help="skip the full pre-rollback snapshot of the current state")
    p.add_argument("--json", action="store_true")
    lock_args(p)

    p = cmd("rollback", "emergency rollback to the newest valid full snapshot, no questions asked")
    p.add_argument("--emergency", action="store_true", required=True,
                   help="required: confirms this is the no-questions emergency path")
    p.add_argument("--pre-timeout", type=float, default=None, metavar="SECONDS",
                   help="give up the pre-rollback snapshot after this long and restore anyway (default 120)")
    p.add_argument("--json", action="store_true")
    lock_args(p)

    for name, text in (("protect", "protect a snapshot from cleanup"), ("unprotect", "remove the protection")):
        p = cmd(name, text)
        p.add_argument("snapshot", metavar="SNAPSHOT")

    from app import cli_maintenance
    cli_maintenance.register(cmd)

    cmd("psql", "open psql on the target database, the password passed in the environment (never in "
                "argv); what follows goes to psql as it is, e.g. psql -c 'SELECT 1'")
    return parser


#: Our options that take a value (``--dir X``): what follows them is not a command.
_VALUED = ("--db-url", "--dir")


def lock_args(p, terminate: bool = True) -> None:
    p.add_argument("--lock-timeout", type=float, default=None, metavar="SECONDS",
                   help="give up, changing nothing, when another session's lock is held longer than this "
                        "(default: the config file's lock_timeout, else 30)")
    if terminate:
        p.add_argument("--terminate-blockers", action="store_true",
                       help="terminate exactly the sessions whose locks the restore waits for (audited)")


def lock_policy(args):
    """The ``LockPolicy`` of a command: --lock-timeout, else the config file's, else the default."""
    from services.config import lock_timeout_setting
    from services.locks import DEFAULT_LOCK_TIMEOUT, LockPolicy
    if args.lock_timeout is not None and args.lock_timeout <= 0:
        raise BadInput(f"--lock-timeout {args.lock_timeout:g} is not a positive number of seconds.", "Use e.g. 30.")
    timeout = args.lock_timeout or lock_timeout_setting() or DEFAULT_LOCK_TIMEOUT
    return LockPolicy(timeout=timeout, terminate=getattr(args, "terminate_blockers", False))


def split_psql_args(argv: list[str]) -> tuple[list[str], list[str]]:
    """``argv`` for our parser, and the arguments that go to psql as they are: everything after the
    ``psql`` command but our own options right after it (``psql --demo -c ...``). argparse cannot be
    given these: psql's ``-c``, ``-f``, ``-h`` would be read as ours."""
    i = 0
    while i < len(argv) and argv[i].startswith("-"):
        i += 2 if argv[i] in _VALUED else 1
    if i >= len(argv) or argv[i] != "psql":
        return argv, []
    head, rest = argv[:i + 1], argv[i + 1:]
    while rest and (rest[0] == "--demo" or rest[0].split("=")[0] in _VALUED):
        take = 2 if rest[0] in _VALUED else 1
        head, rest = head + rest[:take], rest[take:]
    return head, rest


# -- output helpers -----------------------------------------------------------------------------------------

class Printer:
    """Turns engine events into terminal output: a live progress line on a TTY, log lines otherwise."""

    def __init__(self, json_mode: bool, verbose: bool = False) -> None:
        self.json_mode = json_mode
        self.tty = sys.stderr.isatty()
        self.verbose = verbose
        self._progress_shown = False

    def __call__(self, event: Event) -> None:
        if isinstance(event, Progress):
            if self.tty and not self.json_mode:
                sys.stderr.write("\r\x1b[2K" + progress_text(event))
                sys.stderr.flush()
                self._progress_shown = True
            return
        self._clear()
        if isinstance(event, Log):
            if event.source != "dbsage" and not (self.verbose or event.level == "error"):
                return
            prefix = "" if event.source == "dbsage" else f"{event.source}: "
            sys.stderr.write(f"{prefix}{event.text}\n")
        elif isinstance(event, Step):
            if event.status != "running":
                mark = {"ok": "✔", "skipped": "–", "failed": "✘", "warning": "!"}.get(event.status, "·")
                sys.stderr.write(f"{mark} {event.name}: {event.detail}\n")

    def _clear(self) -> None:
        if self._progress_shown:
            sys.stderr.write("\r\x1b[2K")
            self._progress_shown = False


def progress_text(p: Progress) -> str:
    verb = {"dump": "dumping", "restore": "restoring"}.get(p.phase, p.phase)
    text = f"{verb}: {human_size(p.done)}"
    if p.total:
        text += f" of ~{human_size(p.total)}" if p.phase == "dump" else f" of {human_size(p.total)}"
        frac = p.fraction
        if frac is not None:
            text += f" ({frac:.0%})"
    if p.elapsed > 0.5:
        text += f", {human_size(int(p.rate))}/s"
        if p.eta is not None:
            text += f", ~{p.eta:.0f}s left"
    return text


def snapshot_json(snap: Snapshot, index: int | None = None) -> dict:
    data = {"index": index, "filename": snap.filename, "label": snap.label, "timestamp": format_ts(snap.timestamp),
            "type": snap.type if snap.meta else None, "size_bytes": snap.size_bytes, "purpose": snap.purpose,
            "protected": snap.protected, "valid": snap.valid, "migration": migration_text(snap.meta)}
    if not snap.valid:
        data["problem"] = snap.problem
    if index is None:
        data.pop("index")
    return data


def print_json(data, compact: bool = False) -> None:
    """JSON on stdout; ``compact`` for long lists (the C encoder, one line)."""
    print(json.dumps(data, indent=None if compact else 2, default=str))


def print_table(rows: list[list[str]], headers: list[str]) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    line = " | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    print(line.rstrip())
    print("-|-".join("-" * w for w in widths))
    for r in rows:
        print(" | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())


def describe(snap: Snapshot) -> list[str]:
    """The metadata preview shown before a restore and by ``show``."""
    m = snap.meta or {}
    lines = [f"Snapshot:  {snap.filename}",
             f"Label:     {snap.label}" + ("  [protected]" if snap.protected else ""),
             f"Purpose:   {snap.purpose or '-'}",
             f"Taken:     {format_ts(snap.timestamp)} ({age_text(snap.timestamp)})",
             f"Type:      {m.get('type', '?')}",
             f"Size:      {human_size(snap.size_bytes)}"
             + (f" ({m['compression']}; {human_size(m.get('sql_bytes'))} of SQL)"
                if m.get("compression", "none") != "none" else ""),
             f"Database:  {m.get('database', '?')} on {m.get('host', '?')} ({m.get('database_version', '?')})",
             f"Tables:    {m.get('tables_count', '?')}   Schemas: {', '.join(m.get('schemas') or []) or '?'}"]
    lines += [f"{name + ':':<10} {text}" for name, text in scope_facts(m)]
    if not snap.valid:
        lines.append(f"INVALID:   {snap.problem}")
    return lines


def default_compression() -> str:
    """The config file's ``compress: none|gzip|zstd`` (a bad value is a clear error), else none."""
    from services.config import load_config
    value = str(load_config().get("compress") or "none")
    if value not in ("none", "gzip", "zstd"):
        raise BadInput(f"The config file's 'compress' is {value!r}.", "Use none, gzip or zstd.")
    return value


# -- commands ---------------------------------------------------------------------------------------------

async def cmd_snapshot(ws: Workspace, args) -> int:
    from services import dump
    conn = ws.require_conn()
    printer = Printer(args.json)
    if args.type == "clone":
        from services import clone
        if args.compress not in (None, "none") or args.schema:
            raise BadInput("A clone snapshot copies the whole database on the server: --compress and --schema "
                           "do not apply.", "Leave them out, or take a file snapshot (--type full).")
        snap = await clone.create_clone(conn, ws.store, args.label, purpose=args.purpose, notes=args.notes,
                                        protected=args.protect, report=printer)
    else:
        snap = await dump.snapshot(conn, ws.store, args.label, schema_only=args.type == "schema",
                                   purpose=args.purpose, notes=args.notes, schemas=args.schema,
                                   protected=args.protect, compress=args.compress or default_compression(),
                                   report=printer, locks=lock_policy(args))
    if args.json:
        print_json(snap.meta)
    else:
        m = snap.meta
        size = m.get("clone_size_human", m["size_human"])
        print(f"Saved {snap.path} ({size}, {m['tables_count']} tables, {m['duration_seconds']:.1f}s)")
        print(f"Restore with: dbsage-tui restore {snap.filename}")
    return EXIT_OK


async def cmd_list(ws: Workspace, args) -> int:
    snaps = ws.store.list()
    if args.json:
        print_json([snapshot_json(s, i) for i, s in enumerate(snaps, 1)], compact=True)
        return EXIT_OK
    stale = [p.name for p in ws.store.orphans() if p.name.endswith(".partial")]
    if stale:
        print(f"! {len(stale)} unfinished snapshot file(s) from an interrupted run ({', '.join(stale[:3])}): "
              "remove with `dbsage-tui cleanup --remove-invalid`\n")
    if not snaps:
        print(f"No snapshots in {ws.store.directory}. Take one with: dbsage-tui snapshot --label before-migration")
        return EXIT_OK
    print(f"Available snapshots in {ws.store.directory} (newest first):\n")
    rows = []
    heads = [migration_text(s.meta) for s in snaps]
    for i, (s, head) in enumerate(zip(snaps, heads, strict=True), 1):
        flags = ("!" if not s.valid else "") + ("P" if s.protected else "")
        rows.append([str(i), s.label, s.timestamp.strftime("%Y-%m-%d %H:%M"), age_text(s.timestamp),
                     s.type if s.meta else "?", human_size(s.size_bytes), s.purpose[:40],
                     *([(head or "-").split(" ")[0]] if any(heads) else []), flags])
    print_table(rows, ["#", "Label", "Date (UTC)", "Age", "Type", "Size", "Purpose",
                       *(["Migration"] if any(heads) else []), ""])
    bad = [s for s in snaps if not s.valid]
    if bad:
        print(f"\n! {len(bad)} invalid: " + "; ".join(f"{s.filename}: {s.problem}" for s in bad[:5]))
    print("\nSelect a snapshot by number or file name, e.g. dbsage-tui restore 1")
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
    from services.errors import EXIT_INVALID_SNAPSHOT
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


def confirm(question: str) -> bool:
    try:
        answer = input(f"{question} [y/N] ")
    except EOFError:
        return False
    return answer.strip().lower() in ("y", "yes")


async def cmd_restore(ws: Workspace, args) -> int:
    from services import restore
    conn = ws.require_conn()
    snap = ws.store.resolve(args.snapshot)
    printer = Printer(args.json)
    if not args.json:
        print("\n".join(describe(snap)))
        print(f"Target:    {('SANDBOX ' if ws.demo else '') + conn.display}")
    # Refuse an invalid snapshot before asking anything or touching the database (full sha256 check
    # up front when a pre-rollback snapshot will be taken; otherwise it runs inline, before COMMIT).
    check = restore.quick_check_or_refuse if args.no_pre_snapshot else restore.validate_or_refuse
    check(ws.store, snap, printer)
    if snap.type == "schema-only" and not args.json:
        print("\n*** WARNING: this is a SCHEMA-ONLY snapshot. Every row in its tables will be lost. ***\n")
    locks = lock_policy(args)
    if not args.yes:
        if not sys.stdin.isatty():
            raise BadInput("Refusing to restore without confirmation: no terminal to ask on.",
                           "Pass --yes to confirm in scripts.")
        from services.locks import sessions_now
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
    return finish_restore(result, args.json, "restore")


def finish_restore(result, json_mode: bool, action: str) -> int:
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
            print(f"Undo this restore with: dbsage-tui restore {result.pre_snapshot.filename}")
        print("Next: run your application's checks; see the audit log (audit.log) in the snapshot directory.")
    return EXIT_OK if result.smoke_ok else EXIT_FAILED


async def cmd_rollback(ws: Workspace, args) -> int:
    from services import restore
    conn = ws.require_conn()
    kwargs = {} if args.pre_timeout is None else {"pre_timeout": args.pre_timeout}
    result = await restore.emergency_rollback(conn, ws.store, report=Printer(args.json), locks=lock_policy(args),
                                              **kwargs)
    return finish_restore(result, args.json, "rollback")


async def cmd_psql(ws: Workspace, args) -> int:
    from services.pgtools import psql_command, run_psql
    conn = ws.require_conn()
    argv, relay = psql_command(conn, args.psql_args)
    return run_psql(argv, conn, relay)


async def cmd_protect(ws: Workspace, args) -> int:
    snap = ws.store.resolve(args.snapshot)
    on = args.command == "protect"
    ws.store.set_protected(snap, on)
    ws.store.audit(args.command, "ok", snapshot=snap.filename)
    print(f"{snap.filename} is {'protected' if on else 'no longer protected'}.")
    return EXIT_OK


COMMANDS = {"snapshot": cmd_snapshot, "list": cmd_list, "show": cmd_show, "validate": cmd_validate,
            "restore": cmd_restore, "rollback": cmd_rollback, "protect": cmd_protect, "unprotect": cmd_protect,
            "psql": cmd_psql}


def debug_log(exc: BaseException) -> Path | None:
    """Keep the traceback of an unexpected error in a file the user can attach to a bug report."""
    try:
        from services.config import data_dir
        path = data_dir() / "last-error.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(traceback.format_exception(exc)))
        return path
    except OSError:
        return None


def _terminate(_signum, _frame) -> None:
    """SIGTERM cancels like Ctrl-C: the running operation stops its child and removes partial files."""
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, _terminate)
    parser = build_parser()
    argv, psql_args = split_psql_args(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    args.psql_args = psql_args
    json_mode = bool(getattr(args, "json", False))
    ws = None
    try:
        ws = open_workspace(args.db_url, args.dir, args.demo)
        if args.command is None:
            return importlib.import_module("app.tui").run_tui(ws)
        if ws.demo:
            print(f"SANDBOX: embedded PostgreSQL, demo database {ws.conn.dbname} at {ws.conn.display}; "
                  f"snapshots in {ws.store.directory}", file=sys.stderr)
        handler = COMMANDS.get(args.command)
        if handler is None:
            from app import cli_maintenance
            handler = cli_maintenance.COMMANDS[args.command]
        return asyncio.run(handler(ws, args))
    except DbsageError as exc:
        return _fail(exc.one_line(), exc.exit_code, json_mode, exc.extra)
    except KeyboardInterrupt:
        return _fail("Cancelled: work in progress was stopped and cleaned up.", EXIT_FAILED, json_mode)
    except BrokenPipeError:
        # The reader of our output went away (``dbsage-tui list | head``): nothing to tell it. Later
        # writes to stdout go nowhere instead of raising again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILED
    except Exception as exc:  # noqa: BLE001 - never a traceback on the user's terminal
        where = debug_log(exc)
        return _fail(f"Unexpected error: {exc.__class__.__name__}: {exc}."
                     + (f" Details in {where}." if where else ""), EXIT_FAILED, json_mode)
    finally:
        if ws is not None and ws.demo_started:
            from services.demo import release_demo
            with contextlib.suppress(Exception):  # the command's own outcome is what the user needs
                release_demo()


def _fail(message: str, code: int, json_mode: bool, extra: dict | None = None) -> int:
    if json_mode:
        print(json.dumps({"error": message, "exit_code": code, **(extra or {})}))
    print(f"error: {message}", file=sys.stderr)
    return code


def entry() -> None:
    """The console script: ``main``, then a quick exit. Everything that matters is done when ``main``
    returns (files fsynced, children reaped, locks released, the terminal restored), so the interpreter's
    own teardown, which frees every object one by one (about 30 ms after a snapshot), is skipped; only
    what is still buffered on stdout and stderr is written first."""
    code = main()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (``| head``): nothing more can reach it
            pass
    os._exit(code)


if __name__ == "__main__":  # pragma: no cover
    # ``python -m app.cli`` (the benchmark's profile, a debugger): an ordinary exit, which they need to
    # see the end of the run; the console script is ``entry``.
    sys.exit(main())
