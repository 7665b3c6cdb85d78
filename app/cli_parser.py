"""The ``dbsage-tui`` command line: its subcommands and options (``cli_commands`` runs them)."""

from __future__ import annotations

import argparse

from services import __version__


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
    """Options before or after the subcommand; ``psql`` takes the rest of the line as it is."""
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

    _snapshot_commands(cmd)
    _guard_command(cmd)
    _restore_commands(cmd)
    _maintenance_commands(cmd)
    return parser


def _snapshot_commands(cmd) -> None:
    """snapshot, list, adopt, show, validate."""
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

    p = cmd("adopt", "give a pg_dump file put in the snapshot directory by hand ({YYYYmmddHHMMSS}_{label}.sql, "
                     ".sql.gz, .sql.zst) its metadata, after a full check, so that it lists and restores")
    p.add_argument("file", metavar="FILE", help="the file name (or its list number)")
    p.add_argument("--json", action="store_true", help="print the metadata as JSON")

    for name, text in (("show", "show a snapshot's metadata"),
                       ("validate", "check a snapshot: metadata, size, sha256, structure")):
        p = cmd(name, text)
        p.add_argument("snapshot", metavar="SNAPSHOT", help="list number (1 = newest) or file name")
        p.add_argument("--json", action="store_true")


def _guard_command(cmd) -> None:
    p = cmd("guard", "take a snapshot, then run COMMAND (a migration) in this terminal; on failure, say how to "
                     "roll back, or roll back at once with --rollback-on-failure")
    p.add_argument("--type", choices=["full", "schema"], default="full",
                   help="full: schema and data (default); schema: schema only")
    p.add_argument("--label", default=None, help="default: from the command, e.g. before-db-push")
    p.add_argument("--purpose", default=None, help="default: the command line, passwords and URLs redacted")
    p.add_argument("--compress", choices=["none", "gzip", "zstd"], default=None,
                   help="default: the config file's 'compress', else none")
    p.add_argument("--rollback-on-failure", action="store_true",
                   help="when COMMAND fails, restore the snapshot at once (after a pre-rollback snapshot of the "
                        "failed state); exit 4 if that restore fails")
    p.add_argument("argv", nargs=argparse.REMAINDER, metavar="-- COMMAND [ARGS]",
                   help="the command, its stdin, output and terminal passed through; it gets the database "
                        "as DATABASE_URL, SUPABASE_DB_URL and PG* variables")
    lock_args(p, terminate=False)


def _restore_commands(cmd) -> None:
    """restore and the emergency rollback."""
    p = cmd("restore", "restore a snapshot (exactly, in one transaction)")
    p.add_argument("snapshot", metavar="SNAPSHOT", help="list number (1 = newest) or file name")
    p.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    p.add_argument("--no-pre-snapshot", action="store_true",
                   help="skip the full pre-rollback snapshot of the current state")
    p.add_argument("--dry-run", action="store_true",
                   help="change nothing: show what the restore would remove, bring back and change, the row "
                        "counts, the migrations it would undo and how long it may take")
    p.add_argument("--json", action="store_true")
    lock_args(p)

    p = cmd("rollback", "emergency rollback to the newest valid full snapshot, no questions asked")
    p.add_argument("--emergency", action="store_true", required=True,
                   help="required: confirms this is the no-questions emergency path")
    p.add_argument("--pre-timeout", type=float, default=None, metavar="SECONDS",
                   help="give up the pre-rollback snapshot after this long and restore anyway (default 120)")
    p.add_argument("--json", action="store_true")
    lock_args(p)


def _maintenance_commands(cmd) -> None:
    """protect, cleanup, diff, psql."""
    for name, text in (("protect", "protect a snapshot from cleanup"), ("unprotect", "remove the protection")):
        p = cmd(name, text)
        p.add_argument("snapshot", metavar="SNAPSHOT")

    p = cmd("cleanup", "apply the retention policy: show what is kept and deleted, and why")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--dry-run", action="store_true", help="only print the plan")
    mode.add_argument("--yes", "-y", action="store_true", help="delete without asking")
    p.add_argument("--remove-invalid", action="store_true",
                   help="also remove invalid snapshots and leftovers (stale .partial, metadata without a file)")
    p.add_argument("--json", action="store_true")

    p = cmd("diff", "compare two snapshots offline: schema changes and row counts, from the older to the newer "
                    "in either order")
    p.add_argument("snapshot_a", metavar="SNAPSHOT_A", help="one snapshot (list number or file name)")
    p.add_argument("snapshot_b", metavar="SNAPSHOT_B", help="the other one")
    p.add_argument("--json", action="store_true")


    cmd("psql", "open psql on the target database, the password passed in the environment (never in "
                "argv); what follows goes to psql as it is, e.g. psql -c 'SELECT 1'")


def lock_args(p, terminate: bool = True) -> None:
    p.add_argument("--lock-timeout", type=float, default=None, metavar="SECONDS",
                   help="give up, changing nothing, when another session's lock is held longer than this "
                        "(default: the config file's lock_timeout, else 30)")
    if terminate:
        p.add_argument("--terminate-blockers", action="store_true",
                       help="terminate exactly the sessions whose locks the restore waits for (audited)")


#: Our options that take a value (``--dir X``): what follows them is not a command.
_VALUED = ("--db-url", "--dir")


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
