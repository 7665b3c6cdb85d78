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
    for name, (help_text, arguments, json_help, locks) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        _common(p, suppress=True)
        group = None  # of the options marked "exclusive" (cleanup's --dry-run and --yes): one or the other
        for names, options in arguments:
            if options.get("exclusive"):
                group = group or p.add_mutually_exclusive_group()
            (group if options.get("exclusive") else p).add_argument(
                *((names,) if isinstance(names, str) else names),
                **{k: v for k, v in options.items() if k != "exclusive"})
        if json_help is not None:
            p.add_argument("--json", action="store_true", help=json_help or None)
        if locks is not None:
            p.add_argument("--lock-timeout", type=float, default=None, metavar="SECONDS",
                           help="give up, changing nothing, when another session's lock is held longer than "
                                "this (default: the config file's lock_timeout, else 30)")
        if locks:
            p.add_argument("--terminate-blockers", action="store_true",
                           help="terminate exactly the sessions whose locks the restore waits for (audited)")
    return parser


def _flag(help_text: str) -> dict:
    return {"action": "store_true", "help": help_text}


SNAPSHOT = ("snapshot", {"metavar": "SNAPSHOT", "help": "list number (1 = newest) or file name"})
COMPRESS = ["none", "gzip", "zstd"]
#: Each subcommand: its help; its own arguments, as (name or names, ``add_argument``'s keywords, and
#: ``exclusive`` for the options of which one at most is given); the help of its --json (None: no --json;
#: "": none); its lock options (None: none; True: with --terminate-blockers).
SUBCOMMANDS: dict[str, tuple[str, list, str | None, bool | None]] = {
    "snapshot": ("take a labeled snapshot", [
        ("--label", {"required": True, "help": "1-64 letters, digits, '.', '_' or '-'"}),
        ("--type", {"choices": ["full", "schema", "clone"], "default": "full",
                    "help": "full: schema and data (default); schema: schema only (fast, small); clone: a copy "
                            "of the database on the same server (instant; local development servers only)"}),
        ("--purpose", {"default": "", "help": "why this snapshot exists (shown in lists)"}),
        ("--notes", {"default": "", "help": "free text stored in the metadata"}),
        ("--schema", {"action": "append", "metavar": "NAME",
                      "help": "snapshot only this schema (repeatable); default: every non-system schema"}),
        ("--protect", _flag("mark it protected (cleanup never deletes it)")),
        ("--compress", {"choices": COMPRESS, "default": None,
                        "help": "write .sql.gz or .sql.zst (gunzip -c / zstd -dc give the SQL back); default: "
                                "the config file's 'compress', else none"})],
        "print the metadata as JSON", False),
    "list": ("list snapshots, newest first", [], "", None),
    "adopt": ("give a pg_dump file put in the snapshot directory by hand ({YYYYmmddHHMMSS}_{label}.sql, "
              ".sql.gz, .sql.zst) its metadata, after a full check, so that it lists and restores",
              [("file", {"metavar": "FILE", "help": "the file name (or its list number)"})],
              "print the metadata as JSON", None),
    "show": ("show a snapshot's metadata", [SNAPSHOT], "", None),
    "validate": ("check a snapshot: metadata, size, sha256, structure", [SNAPSHOT], "", None),
    "guard": ("take a snapshot, then run COMMAND (a migration) in this terminal; on failure, say how to roll "
              "back, or roll back at once with --rollback-on-failure", [
        ("--type", {"choices": ["full", "schema"], "default": "full",
                    "help": "full: schema and data (default); schema: schema only"}),
        ("--label", {"default": None, "help": "default: from the command, e.g. before-db-push"}),
        ("--purpose", {"default": None, "help": "default: the command line, passwords and URLs redacted"}),
        ("--compress", {"choices": COMPRESS, "default": None,
                        "help": "default: the config file's 'compress', else none"}),
        ("--rollback-on-failure", _flag("when COMMAND fails, restore the snapshot at once (after a pre-rollback "
                                        "snapshot of the failed state); exit 4 if that restore fails")),
        ("argv", {"nargs": argparse.REMAINDER, "metavar": "-- COMMAND [ARGS]",
                  "help": "the command, its stdin, output and terminal passed through; it gets the database "
                          "as DATABASE_URL, SUPABASE_DB_URL and PG* variables"})],
        None, False),
    "restore": ("restore a snapshot (exactly, in one transaction)", [
        SNAPSHOT,
        (("--yes", "-y"), _flag("do not ask for confirmation")),
        ("--no-pre-snapshot", _flag("skip the full pre-rollback snapshot of the current state")),
        ("--dry-run", _flag("change nothing: show what the restore would remove, bring back and change, the row "
                            "counts, the migrations it would undo and how long it may take"))],
        "", True),
    "rollback": ("emergency rollback to the newest valid full snapshot, no questions asked", [
        ("--emergency", {**_flag("required: confirms this is the no-questions emergency path"), "required": True}),
        ("--pre-timeout", {"type": float, "default": None, "metavar": "SECONDS",
                           "help": "give up the pre-rollback snapshot after this long and restore anyway "
                                   "(default 120)"})],
        "", True),
    "protect": ("protect a snapshot from cleanup", [("snapshot", {"metavar": "SNAPSHOT"})], None, None),
    "unprotect": ("remove the protection", [("snapshot", {"metavar": "SNAPSHOT"})], None, None),
    "cleanup": ("apply the retention policy: show what is kept and deleted, and why", [
        ("--dry-run", {**_flag("only print the plan"), "exclusive": True}),
        (("--yes", "-y"), {**_flag("delete without asking"), "exclusive": True}),
        ("--remove-invalid", _flag("also remove invalid snapshots and leftovers (stale .partial, metadata "
                                   "without a file)"))],
        "", None),
    "diff": ("compare two snapshots offline: schema changes and row counts, from the older to the newer in "
             "either order", [
        ("snapshot_a", {"metavar": "SNAPSHOT_A", "help": "one snapshot (list number or file name)"}),
        ("snapshot_b", {"metavar": "SNAPSHOT_B", "help": "the other one"})],
        "", None),
    "psql": ("open psql on the target database, the password passed in the environment (never in argv); "
             "what follows goes to psql as it is, e.g. psql -c 'SELECT 1'", [], None, None),
}


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
