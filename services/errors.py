"""Errors users see: one sentence of what happened, one of what to do next, and an exit code.

Exit codes are part of the CLI contract: 0 ok, 1 operation failed (database left unchanged),
2 bad input, 3 invalid snapshot.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Callable, Iterator

from services.events import Reporter, Step

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_INVALID_SNAPSHOT = 3


class DbsageError(Exception):
    """A failure with a message fit for a user; ``detail`` holds raw tool output for the log pane."""

    exit_code = EXIT_FAILED

    def __init__(self, message: str, hint: str | None = None, detail: str | None = None) -> None:
        super().__init__(message)
        self.message, self.hint, self.detail = message, hint, detail
        #: Facts for ``--json`` output beside the message (e.g. the sessions in the way).
        self.extra: dict = {}

    def one_line(self) -> str:
        """The message and the hint as the single line the CLI prints and the TUI notifies: two sentences."""
        if not self.hint:
            return self.message
        return f"{self.message}{'' if self.message.endswith(('.', '!', '?')) else '.'} {self.hint}"


class BadInput(DbsageError):
    exit_code = EXIT_BAD_INPUT


class InvalidSnapshot(DbsageError):
    exit_code = EXIT_INVALID_SNAPSHOT


class OperationFailed(DbsageError):
    exit_code = EXIT_FAILED


class LockHeld(OperationFailed):
    """Another dbsage-tui process holds the directory or database lock."""


# What pg_dump / psql / the server say, mapped to what to do next (the seed story's error table, extended).
_KNOWN_ERRORS: list[tuple[re.Pattern[str], str, str]] = [
    (re.compile(r"dbsage-tui TLS: (.*?)\.?$", re.MULTILINE),  # the TLS relay could not reach the server
     "{0}.",
     "Check the host, sslmode and sslrootcert in the connection URL."),
    (re.compile(r"password authentication failed|no password supplied|authentication failed"),
     "Authentication failed for the database user.",
     "Check the password in {where} (percent-encode special characters)."),
    (re.compile(r"database \"([^\"]+)\" does not exist"),
     "The database {0} does not exist on the server.",
     "Check the database name in the connection URL."),
    (re.compile(r"server does not support SSL|SSL is not enabled on the server|rejected SSL upgrade"),
     "The server does not support SSL but the connection requires it.",
     "Use sslmode=prefer or disable, or enable SSL on the server."),
    (re.compile(r"timeout expired|timed out"),
     "Timed out connecting to the database server.",
     "Check the host and port, and that the server is running and reachable."),
    (re.compile(r"connection to server .* failed|could not connect|Connection refused|could not translate host"
                r"|Name or service not known|server closed the connection unexpectedly|terminating connection"
                r"|no connection to the server|connection to server was lost"),
     "Connection to the database server failed.",
     "Check the database is running and {where} is right{test}."),
    (re.compile(r"permission denied for (schema|table|sequence|function|database|relation) ([^\s]+)"),
     "Permission denied for {0} {1}.",
     "Use a role that owns the objects (on Supabase: the postgres / service role), or GRANT the access."),
    (re.compile(r"No space left on device|could not write .*: No space"),
     "No space left on device.",
     "Free up disk space, use a schema-only snapshot, or delete old snapshots with `dbsage-tui cleanup`."),
    (re.compile(r"File too large"),
     "The snapshot file hit the file size limit.",
     "Free up disk space or raise the limit (ulimit -f), use a schema-only snapshot, "
     "or delete old snapshots with `dbsage-tui cleanup`."),
    (re.compile(r"role \"([^\"]+)\" does not exist"),
     "Role {0} does not exist on this server.",
     "Create the role first, or restore into a database that has it."),
    (re.compile(r"must be owner of (\w+) ([^\s]+)"),
     "The restoring user must own {0} {1}.",
     "Restore as a role that owns them or is a member of their owner."),
    (re.compile(r"relation \"([^\"]+)\" already exists"),
     "Relation {0} already exists.",
     "The snapshot was not made with --clean; restore it with dbsage-tui, which drops the objects first."),
    (re.compile(r"deadlock detected"),
     "a deadlock with another session aborted it",
     "Retry, or first stop the application that writes to these tables."),
    (re.compile(r"server version mismatch"),
     "pg_dump is older than the server.",
     "Install a pg_dump whose major version is at least the server's."),
]


def in_words(exc: BaseException) -> str:
    """What went wrong, for a person (a dialog, the log, the audit log): never an exception's class name."""
    if isinstance(exc, DbsageError):
        return exc.one_line()
    if isinstance(exc, asyncio.CancelledError | KeyboardInterrupt):
        return "cancelled by the user"
    return f"unexpected error: {str(exc).strip() or 'no message'}"


@contextlib.contextmanager
def audit_failure(audit: Callable[..., None], action: str, *, report: Reporter | None = None,
                  step: str | None = None, started: float | None = None, **fields) -> Iterator[dict]:
    """Around an operation's work (every snapshot and restore): when it raises, cancellation included,
    report ``Step(step, "failed")`` and write one line with ``audit`` (``SnapshotStore.audit``): outcome
    "cancelled" (Escape, Ctrl-C) or "failed", ``fields`` (the block may add to the dict it is given), the
    time since ``started`` and the error's one line. The error goes on."""
    try:
        yield fields
    except BaseException as exc:
        outcome = "cancelled" if isinstance(exc, asyncio.CancelledError | KeyboardInterrupt) else "failed"
        msg = in_words(exc)
        if step and report:
            report(Step(step, outcome, msg))
        if started is not None:
            fields["duration_seconds"] = round(time.monotonic() - started, 3)
        audit(action, outcome, **fields, error=msg)
        raise


def explain_tool_failure(stderr: str, action: str, source: str = "SUPABASE_DB_URL") -> OperationFailed:
    """Turn a pg_dump/psql failure into one clear sentence; the raw stderr stays in ``detail``. ``source``:
    where the connection settings came from (``ConnInfo.source``), named in the advice."""
    for pattern, message, hint in _KNOWN_ERRORS:
        if m := pattern.search(stderr):
            return OperationFailed(f"{action} failed: {message.format(*m.groups())}",
                                   hint.format(**_where(source)), detail=stderr)
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    # The first line that reads like an error, without the tool-name prefix; else the last line.
    first = next((ln for ln in lines if "ERROR:" in ln or "error:" in ln or "FATAL:" in ln), None)
    last = re.sub(r"^(pg_dump|psql|pg_restore)(:[^:]*:\d+)?: (error: )?", "", first).strip() if first \
        else lines[-1] if lines else "the tool exited with an error"
    return OperationFailed(f"{action} failed: {last}", "See the log for the full output.", detail=stderr)


def _where(source: str) -> dict[str, str]:
    """The words for where the settings came from: the variable a user set, or the option they gave."""
    if source.endswith("_URL"):
        return {"where": source, "test": f"; test with: psql \"${source}\" -c 'SELECT 1'"}
    named = {"--db-url": "the URL given with --db-url", "PG* environment": "the PG* variables",
             "sandbox": "the demo server (dbsage-tui --demo starts it)"}
    return {"where": named.get(source, "SUPABASE_DB_URL / DATABASE_URL"), "test": ""}
