"""Guarding a command, typically a migration: a snapshot first, then the command in this terminal, its
outcome written into the snapshot's metadata, and on failure the way back (taken at once when asked).

The command runs as if typed in the shell: the same stdin, stdout, stderr and terminal, the same
environment plus the database we resolved (as ``DATABASE_URL``, ``SUPABASE_DB_URL`` and libpq's ``PG*``
variables, so that it works on the very database the snapshot is of). Ctrl-C reaches it, not us: it
decides what an interrupt means, and its exit then counts as a failure like any other.
"""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from services.config import ConnInfo
from services.errors import BadInput, DbsageError
from services.events import Reporter, null_reporter
from services.server import catalog, dump, migrations
from services.server.locks import LockPolicy
from services.server.restore import RestoreResult, restore
from services.snapshots.record import guard_outcome, guard_record
from services.snapshots.store import Snapshot, SnapshotStore, check_label, suggest_label

#: The exit code when the command failed and the rollback asked for failed too: the database is in the
#: failed state (and the command's own code is in the output and the metadata).
EXIT_ROLLBACK_FAILED = 4
#: Words of a command line that say nothing about what it does (wrappers), left out of its default label.
_WRAPPERS = {"supabase", "npx", "bunx", "pnpm", "yarn", "uv", "poetry", "pipenv", "run", "exec", "sudo", "env"}
_URL_PASSWORD = re.compile(r"(\b[a-z][a-z0-9+.-]*://[^/\s:@]*:)[^@\s/]*(@)", re.IGNORECASE)
_KEY_PASSWORD = re.compile(r"\b((?:password|passwd|pwd|PGPASSWORD)\s*[=:]\s*)('[^']*'|\"[^\"]*\"|[^\s&;]+)",
                           re.IGNORECASE)
_OPT_PASSWORD = re.compile(r"(--password(?:\s+|=))(\S+)", re.IGNORECASE)


def redact(text: str, secrets: tuple[str, ...] = ()) -> str:
    """``text`` with every password in it replaced by ``****``: the ones we know (``secrets``), those in
    URLs (``postgresql://user:PASSWORD@host``) and after ``password=`` / ``--password``."""
    for secret in filter(None, secrets):
        text = text.replace(secret, "****").replace(quote(secret, safe=""), "****")
    text = _URL_PASSWORD.sub(r"\1****\2", text)
    text = _KEY_PASSWORD.sub(r"\1****", text)
    return _OPT_PASSWORD.sub(r"\1****", text)


def default_label(argv: list[str]) -> str:
    """``before-db-push`` for ``supabase db push``: the program and the words up to its first option or
    path, without wrappers, at most three words."""
    kept = []
    for word in [Path(argv[0]).name, *argv[1:]]:
        if word.startswith("-") or "/" in word or "=" in word or len(kept) == 3:
            break
        if word not in _WRAPPERS:
            kept.append(word)
    return check_label(suggest_label("before-" + "-".join(kept or ["command"]))[:64].rstrip("-."))


def git_facts(cwd: Path) -> dict | None:
    """The project's commit, branch and whether its tree has uncommitted changes, from one ``git status``;
    None outside a git repository, before its first commit, or without git."""
    try:
        res = subprocess.run(["git", "status", "--porcelain=v2", "--branch", "--untracked-files=no"], cwd=cwd,
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = res.stdout.splitlines()
    head = dict(line[2:].split(" ", 1) for line in lines if line.startswith("# "))
    if res.returncode != 0 or head.get("branch.oid", "(initial)") == "(initial)":
        return None
    branch = head.get("branch.head")
    return {"commit": head["branch.oid"], "branch": "HEAD" if branch == "(detached)" else branch,
            "dirty": any(not line.startswith("# ") for line in lines)}


def command_env(conn: ConnInfo) -> dict[str, str]:
    """The command's environment: ours, with the database we resolved in every variable a migration tool
    reads (the URL variables and libpq's), so that it cannot work on another one than the snapshot's. The
    URL is the one the user gave when it came from the environment."""
    env = conn.child_env()
    for key, var in (("application_name", "PGAPPNAME"), ("connect_timeout", "PGCONNECT_TIMEOUT")):
        if key not in dict(conn.params) and var not in os.environ:
            env.pop(var, None)  # our own defaults for pg_dump, not the user's
    given = os.environ.get(conn.source) if conn.source in ("SUPABASE_DB_URL", "DATABASE_URL") else None
    env["DATABASE_URL"] = env["SUPABASE_DB_URL"] = given or conn.url(reveal=True)
    return env


def run_guarded(conn: ConnInfo, argv: list[str]) -> tuple[int, float]:
    """Run ``argv`` in this terminal (``command_env``) until it exits: its exit code (128 + N when signal N
    ended it) and how long it ran. While it runs, Ctrl-C is the command's (a handler, not SIG_IGN, so that
    the command starts with the default disposition) and a SIGTERM sent to us is passed on to it."""
    proc: subprocess.Popen | None = None
    previous = {sig: signal.signal(sig, handler) for sig, handler in (
        (signal.SIGINT, lambda *_: None), (signal.SIGTERM, lambda sig, _: proc and proc.send_signal(sig)))}
    started = time.monotonic()
    try:
        proc = subprocess.Popen(argv, env=command_env(conn))
        rc = proc.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 128 - rc if rc < 0 else rc, time.monotonic() - started


@dataclass
class Guarded:
    """A guarded command's snapshot and command line (secrets redacted), and the rollback if one ran."""

    snapshot: Snapshot
    command: str
    rollback: RestoreResult | None = None
    rollback_error: str | None = None

    @property
    def rollback_failed(self) -> bool:
        return self.rollback_error is not None or (self.rollback is not None and not self.rollback.smoke_ok)


async def take_snapshot(conn: ConnInfo, store: SnapshotStore, argv: list[str], *, label: str | None,
                        purpose: str | None, schema_only: bool, compress: str, locks: LockPolicy | None,
                        report: Reporter = null_reporter) -> Guarded:
    """The snapshot before the command, its metadata saying what it guards (the migration heads read
    just before the dump). A command that cannot start is refused before any snapshot."""
    if not argv:
        raise BadInput("No command to guard.", "Give it after --, e.g. dbsage-tui guard -- supabase db push.")
    if shutil.which(argv[0]) is None:
        raise BadInput(f"{argv[0]}: command not found (or not executable).",
                       "Check the name and PATH; nothing was snapshotted or run.")
    command = redact(shlex.join(argv), (conn.password or "",))
    label = check_label(label) if label else default_label(argv)
    async with catalog.closing(catalog.connect(conn)) as con:
        heads = await migrations.heads(con)
    snap = await dump.snapshot(conn, store, label, schema_only=schema_only, purpose=purpose or command,
                               notes="Taken by dbsage-tui guard before running the command.", compress=compress,
                               report=report, locks=locks)
    cwd = Path.cwd()
    _rewrite(store, snap, guard_record(command=command, cwd=str(cwd), migrations=heads,
                                       git=await asyncio.to_thread(git_facts, cwd)))
    return Guarded(snapshot=snap, command=command)


def _rewrite(store: SnapshotStore, snap: Snapshot, record: dict) -> None:
    """The snapshot's metadata with ``record`` as its ``guard`` mapping, written atomically."""
    meta = {**(snap.meta or {}), "guard": record}
    store.write_meta(snap.path, meta)
    snap.meta = meta


async def finish(conn: ConnInfo, store: SnapshotStore, guarded: Guarded, exit_code: int, duration: float, *,
                 rollback: bool, locks: LockPolicy | None, report: Reporter = null_reporter) -> Guarded:
    """After the command: its outcome in the metadata and the audit log; on failure with ``rollback``,
    the restore of the snapshot (which takes a pre-rollback snapshot of the failed state first)."""
    snap = guarded.snapshot
    outcome, more = ("succeeded" if exit_code == 0 else "failed"), {}
    if exit_code != 0 and rollback:
        try:
            guarded.rollback = await restore(conn, store, snap, pre_snapshot=True, report=report, locks=locks,
                                             action="rollback")
            pre = guarded.rollback.pre_snapshot
            more["failed_state"] = pre.filename if pre else None
        except DbsageError as exc:
            guarded.rollback_error = exc.one_line()
        outcome = "failed, rollback failed" if guarded.rollback_failed else "failed, rolled back"
    _rewrite(store, snap, guard_outcome(snap.get("guard") or {}, exit_code=exit_code, duration=duration,
                                        outcome=outcome, **more))
    store.audit("guard", outcome, snapshot=snap.filename, command=guarded.command, exit_code=exit_code,
                duration_seconds=round(duration, 3), rollback_error=guarded.rollback_error)
    return guarded
