"""Lock waits: a restore or a snapshot never waits silently, and never forever, behind another session.

Each pg_dump/psql an operation starts carries an ``application_name`` of its own (``LockWatch.app``). While it
runs, ``LockWatch`` looks every ``POLL`` seconds for that session waiting on a lock and, past ``REPORT_AFTER``
seconds, reports who is in the way (``Blocked``). The server gives up on its own at the policy's timeout
(``lock_timeout`` for psql, ``--lock-wait-timeout`` for pg_dump), which rolls the restore back;
``LockWatch.timed_out`` turns that into one sentence naming the blockers. When the policy says so
(``--terminate-blockers``, the TUI's key), exactly the sessions ``pg_blocking_pids`` names are terminated,
re-read on every look, never our own nor an autovacuum worker (the server cancels one in the way by itself);
each termination is written to the audit log.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from dataclasses import dataclass, field

import asyncpg

from services.config import DEFAULT_LOCK_TIMEOUT, ConnInfo
from services.errors import DbsageError, OperationFailed
from services.events import Blocked, Blocker, Log, Reporter
from services.server.catalog import closing, connect

#: Seconds of waiting before the blockers are reported.
REPORT_AFTER = 2.0
POLL = 0.5


@dataclass
class LockPolicy:
    """How long to wait for locks, and whether to clear the way. ``terminate`` may be switched on while the
    operation runs (the TUI's key): the watch reads it on every look."""

    timeout: float = DEFAULT_LOCK_TIMEOUT
    terminate: bool = False
    #: What the watch did under this policy: sessions terminated, and those it could not (pid -> why).
    terminated: list[Blocker] = field(default_factory=list)
    refused: dict[int, str] = field(default_factory=dict)
    #: Every pid asked to end, asked once whatever the answer: a terminated backend stays in the way
    #: until it has exited, and one ``pg_terminate_backend`` per session is what the audit log records.
    asked: set[int] = field(default_factory=set)

    @property
    def timeout_ms(self) -> int:
        return max(1, round(self.timeout * 1000))


_BLOCKERS = """
SELECT b.pid, coalesce(b.usename, '?') AS role, coalesce(b.application_name, '') AS application,
       coalesce(host(b.client_addr), 'local socket') AS client, coalesce(b.state, 'state hidden') AS state,
       extract(epoch FROM now() - coalesce(b.state_change, b.backend_start))::float8 AS seconds,
       left(regexp_replace(coalesce(b.query, ''), '\\s+', ' ', 'g'), 80) AS query,
       (SELECT extract(epoch FROM now() - min(l.waitstart))::float8 FROM pg_locks l
         WHERE l.pid = w.pid AND NOT l.granted) AS waited
FROM pg_stat_activity w
CROSS JOIN LATERAL unnest(pg_blocking_pids(w.pid)) AS blocking(pid)
JOIN pg_stat_activity b ON b.pid = blocking.pid
WHERE w.application_name = $1 AND b.application_name IS DISTINCT FROM $1 AND b.pid <> pg_backend_pid()
  -- an autovacuum worker in the way cancels itself once we have waited deadlock_timeout: never ours to end
  AND coalesce(b.backend_type, '') <> 'autovacuum worker'
ORDER BY b.pid"""

async def other_sessions(con: asyncpg.Connection, dbname: str) -> list[Blocker]:
    """Who else is connected to ``dbname`` (autovacuum excluded: the server stops it itself)."""
    return [Blocker(**dict(r)) for r in await con.fetch(
        """SELECT pid, coalesce(usename, '?') AS role,
                  coalesce(nullif(application_name, ''), backend_type, '') AS application,
                  coalesce(host(client_addr), 'local socket') AS client, coalesce(state, 'state hidden') AS state,
                  extract(epoch FROM now() - coalesce(state_change, backend_start))::float8 AS seconds,
                  left(regexp_replace(coalesce(query, ''), '\\s+', ' ', 'g'), 80) AS query
           FROM pg_stat_activity
           WHERE datname = $1 AND pid <> pg_backend_pid() AND coalesce(backend_type, '') <> 'autovacuum worker'
           ORDER BY pid""", dbname)]


async def sessions_now(conn: ConnInfo) -> list[Blocker]:
    """The sessions connected to the database besides ours: who a restore might wait for."""
    async with closing(connect(conn)) as con:
        return await other_sessions(con, conn.dbname)


@dataclass
class LockWatch:
    """Watches the sessions named ``app`` while an operation runs (``async with``), on a connection of its
    own (the operation's may be busy), opened in the background: nothing waits for it."""

    conn: ConnInfo
    operation: str
    policy: LockPolicy
    report: Reporter
    audit: Callable[..., None]  # SnapshotStore.audit: (action, outcome, **fields)
    app: str = ""
    #: Who was last seen in the way: what ``timed_out`` names.
    blockers: tuple[Blocker, ...] = ()
    _stopped: bool = False
    _task: asyncio.Task | None = None

    def __post_init__(self) -> None:
        self.app = self.app or f"dbsage-tui {self.operation} {os.getpid()}"

    async def __aenter__(self) -> LockWatch:
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc) -> None:
        # A flag as well as the cancel: asyncio.wait_for (in connect) can swallow a cancellation that
        # lands as the connection completes, and the watch must end all the same.
        self._stopped = True
        self._task.cancel()
        await asyncio.wait({self._task}, timeout=5)

    async def _run(self) -> None:
        try:
            async with closing(connect(self.conn)) as con:
                if not self._stopped:
                    await self._watch(con)
        except (DbsageError, asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
            return  # the watch is a help, never a reason to fail: the server's timeout still holds

    async def _watch(self, con: asyncpg.Connection) -> None:
        reported: frozenset[int] = frozenset()
        while not self._stopped:  # a first look at once: a short lock timeout may end before the second
            rows = await con.fetch(_BLOCKERS, self.app)
            blockers = tuple(Blocker(**{k: r[k] for k in r.keys() if k != "waited"}) for r in rows)
            waited = max((r["waited"] or 0.0 for r in rows), default=0.0)
            pids = frozenset(b.pid for b in blockers)
            if blockers:  # kept when a look finds none: the tool that gave up waiting no longer waits
                self.blockers = blockers
            if pids and waited >= REPORT_AFTER and pids != reported:
                reported = pids
                self.report(Blocked(self.operation, waited, blockers))
                for b in blockers:
                    self.report(Log(f"waiting {waited:.0f} s for a lock held by {b.text()}", level="warning"))
            if pids and self.policy.terminate:
                await self._terminate(con, blockers)
            await asyncio.sleep(POLL)

    async def _terminate(self, con: asyncpg.Connection, blockers: tuple[Blocker, ...]) -> None:
        refused, asked = self.policy.refused, self.policy.asked
        for b in blockers:
            if b.pid in asked:
                continue
            asked.add(b.pid)
            try:
                done = await con.fetchval("SELECT pg_terminate_backend($1)", b.pid)
            except asyncpg.PostgresError as exc:
                refused[b.pid] = str(exc).rstrip(".")
                self.report(Log(f"cannot terminate pid {b.pid} ({b.role}): {refused[b.pid]}", level="error"))
                self.audit("terminate", "refused", pid=b.pid, role=b.role, application=b.application,
                           target=self.conn.display, error=refused[b.pid])
                continue
            if done:
                self.policy.terminated.append(b)
                self.report(Log(f"terminated {b.text()}", level="warning"))
                self.audit("terminate", "ok", pid=b.pid, role=b.role, application=b.application,
                           client=b.client, state=b.state, query=b.query, target=self.conn.display,
                           reason=f"blocked dbsage-tui {self.operation}")

    def timed_out(self, what: str, can_terminate: bool = True) -> OperationFailed:
        """The server gave up waiting: one sentence naming who was in the way, and the ways forward; the
        blockers also in ``extra`` (for --json)."""
        who = "; ".join(b.text() for b in self.blockers) or "another session"
        refused = [f"pid {pid}: {why}" for pid, why in self.policy.refused.items()]
        err = OperationFailed(
            f"{what} gave up after waiting {self.policy.timeout:g} s for a lock held by {who}"
            + (f" (could not terminate {'; '.join(refused)})" if refused else "")
            + ". Nothing was changed.",
            "Stop that session, or run again with --terminate-blockers (in the app: k while it waits), "
            "or allow longer with --lock-timeout." if can_terminate else
            "Let that session finish (a migration holds its locks until it commits), or allow longer with "
            "--lock-timeout.")
        err.extra = {"blockers": [b.as_dict() for b in self.blockers]}
        return err
