"""Replaying a snapshot's SQL into psql, in a transaction of our own that commits only when verified.

Not psql's --single-transaction: at end of input psql -1 COMMITs, so if we died mid-stream a half-restored
database would be committed. With our own BEGIN, input that ends before our COMMIT leaves psql to exit with the
transaction open, and the server rolls it back. The COMMIT waits until psql echoes a marker placed after
everything else: by then every COPY has printed its row count, and the bytes fed have been hashed.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import re
import secrets
import time
from collections.abc import Callable

from services.errors import InvalidSnapshot, OperationFailed, explain_tool_failure
from services.events import Committing, Log, Progress, Reporter
from services.server.locks import LockWatch
from services.server.processes import PROGRESS_EVERY, child_kwargs, kill_process, make_pipe, pump_stderr, write_all
from services.server.replay_filter import ReplayFilter
from services.server.target import Target
from services.snapshots import compression
from services.snapshots.scanner import DumpScanner, ScanResult
from services.snapshots.store import Snapshot

_COPY_TAG = re.compile(rb"COPY (\d+)")


class _Feeder:
    """Runs in a worker thread: writes the prelude, then the snapshot's bytes (hashed and scanned on the way,
    made fit for this server by ``ReplayFilter``), into psql's stdin. Hashing while feeding closes the gap
    between validation and replay: COMMIT is only sent for the bytes the metadata vouches for. The scan lists
    the COPY blocks, to match with the ``COPY n`` tags psql prints; it counts their rows only when the
    metadata has no count per table (else the tags are held against those counts)."""

    def __init__(self, dst: int, snap: Snapshot, prelude: bytes, server_major: int) -> None:
        self.dst, self.snap, self.prelude, self.server_major = dst, snap, prelude, server_major
        self.digest = hashlib.sha256()
        self.scanner = DumpScanner(count_rows=not recorded_rows(snap))
        self.moved = 0  # bytes of the file hashed (their SQL, unless psql stopped reading, sent)
        self.damaged: str | None = None  # why the compressed stream could not be decoded
        self.psql_stopped = False

    def run(self) -> None:
        self._send(self.prelude)
        sql = ReplayFilter(self.server_major)
        with open(self.snap.path, "rb") as fh:
            raw = compression.HashingReader(fh, self.digest)
            try:
                for chunk in compression.iter_plain(raw, compression.method_of(self.snap.filename)):
                    self.moved = raw.read_bytes
                    self.scanner.feed(chunk)
                    self._send(sql.feed(chunk))
                self._send(sql.flush())
            except compression.CorruptCompressedData as exc:
                self.damaged = str(exc)  # not intact either: the rest of the file was not read
            self.moved = raw.read_bytes

    def _send(self, data: bytes) -> None:
        if data and not self.psql_stopped:
            try:
                write_all(self.dst, data)
            except BrokenPipeError:
                self.psql_stopped = True  # psql failed; keep hashing to tell a bad file apart

    @property
    def intact(self) -> bool:
        return (self.damaged is None and self.moved == self.snap.get("size_bytes")
                and self.digest.hexdigest() == self.snap.get("sha256"))


class PsqlSession:
    """One psql reading the prelude, the snapshot's bytes and the postlude from a pipe, inside our BEGIN. It is
    started before its input is ready (``start_psql``): it connects while the restore's last checks run, and if
    they refuse, ``close`` ends its input and it exits having run nothing. Its session is named ``watch.app``."""

    def __init__(self, target: Target, watch: LockWatch, report: Reporter) -> None:
        self.target, self.watch, self.report = target, watch, report
        self.marker = f"dbsage-fed-{secrets.token_hex(8)}".encode()
        self.stderr: list[str] = []
        self.tags: list[int] = []
        self.after_marker: list[bytes] = []
        self.echoed = asyncio.Event()
        self.committing = False  # COMMIT was sent (or is being sent): the restore may have happened
        self.pipe_w = -1

    async def start(self) -> PsqlSession:
        pipe_r, self.pipe_w = make_pipe()
        try:
            self.proc = await asyncio.create_subprocess_exec(
                self.target.tools.psql, "--no-psqlrc", "--no-password", "-v", "ON_ERROR_STOP=1", "--file=-",
                stdin=pipe_r, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                env=self.target.child_env(self.watch.app), **child_kwargs())
        except BaseException:
            self._close_input()
            raise
        finally:
            os.close(pipe_r)
        self.err_task = asyncio.create_task(pump_stderr(self.proc.stderr, "psql", self.report, self.stderr))
        self.out_task = asyncio.create_task(self._read_stdout(self.proc.stdout))
        return self

    async def close(self) -> None:
        """After a refusal, or whatever ``run`` left: no psql and no reader left behind."""
        self._close_input()
        await kill_process(self.proc)
        self.out_task.cancel()
        await asyncio.wait({self.err_task, self.out_task})

    async def run(self, snap: Snapshot, prelude: bytes, postlude: bytes) -> tuple[int, _Feeder, ScanResult, str | None]:
        """Feed psql and end its input; its exit code, the feeder, the scan, and why the rows disagree (if
        they do). psql's ``stderr``, ``COPY n`` ``tags`` and what followed the marker stay on the session."""
        self.snap = snap
        feeder = _Feeder(self.pipe_w, snap, prelude, self.target.info.major)
        feeding = asyncio.ensure_future(asyncio.to_thread(feeder.run))
        try:
            scan = await self._feed(feeder, feeding)
            mismatch = await self._commit_if_verified(feeder, scan, postlude)
            self._close_input()  # end of input: without our COMMIT, psql exits and the server rolls back
            rc = await self.proc.wait()
            await self.err_task
            await self.out_task
        except BaseException:
            await kill_process(self.proc)
            if not feeding.done():
                await asyncio.wait({feeding})
            raise
        finally:
            await self.close()
        return rc, feeder, scan, mismatch

    def _close_input(self) -> None:
        if self.pipe_w >= 0:
            os.close(self.pipe_w)
            self.pipe_w = -1

    async def _read_stdout(self, stdout: asyncio.StreamReader) -> None:
        """Command tags and query results; only ``COPY n`` lines before the marker and what follows it
        (COMMIT's tag) matter. Result rows never match: psql's aligned format indents them."""
        while line := await stdout.readline():
            text = line.rstrip(b"\n")
            if self.echoed.is_set():
                self.after_marker.append(text)
            elif text == self.marker:
                self.echoed.set()
            elif m := _COPY_TAG.fullmatch(text):
                self.tags.append(int(m.group(1)))

    async def _feed(self, feeder: _Feeder, feeding: asyncio.Future) -> ScanResult:
        total = self.snap.get("size_bytes") or self.snap.path.stat().st_size
        started = time.monotonic()
        while not feeding.done():
            await asyncio.wait({feeding}, timeout=PROGRESS_EVERY)
            self.report(Progress("restore", feeder.moved, total, time.monotonic() - started))
        feeding.result()
        return feeder.scanner.finish()

    async def _commit_if_verified(self, feeder: _Feeder, scan: ScanResult, postlude: bytes) -> str | None:
        """Send the postlude, wait for the marker, and COMMIT when the bytes and the row counts agree.
        Returns why the rows disagree, if they do."""
        if not (feeder.intact and scan.complete and not feeder.psql_stopped):
            return None
        with contextlib.suppress(BrokenPipeError):
            await asyncio.to_thread(write_all, self.pipe_w, postlude)
        waiting = asyncio.ensure_future(self.echoed.wait())
        await asyncio.wait({waiting, self.out_task}, return_when=asyncio.FIRST_COMPLETED)
        waiting.cancel()
        if not self.echoed.is_set():
            return None
        mismatch = loaded_mismatch(scan.copies, self.tags, self.snap)
        if mismatch is None:
            self.committing = True
            self.report(Committing())
            with contextlib.suppress(BrokenPipeError):
                write_all(self.pipe_w, b"COMMIT;\n")
        return mismatch


async def start_psql(target: Target, report: Reporter, audit: Callable[..., None]) -> PsqlSession:
    """A restore's psql, started now, idle until ``replay`` feeds it (the caller ``close``s it if not)."""
    return await PsqlSession(target, LockWatch(target.conn, "restore", target.locks, report, audit), report).start()


async def replay(session: PsqlSession, snap: Snapshot, prelude: list[str], postlude: list[str]) -> dict[str, int]:
    """Feed ``session``'s psql the clearing ``prelude``, the snapshot and the ``postlude``; COMMIT only when
    the bytes matched the metadata and the server loaded exactly the rows the snapshot holds. Returns the
    rows loaded per table (psql's ``COPY n`` tags)."""
    target = session.target
    head = "\n".join(["BEGIN;", "SET LOCAL client_min_messages = warning;",
                      f"SET LOCAL lock_timeout = {target.locks.timeout_ms};", *prelude, ""]).encode()
    tail = "\n".join(["", "SET search_path = pg_catalog;", *postlude, f"\\echo {session.marker.decode()}", ""]).encode()
    session.report(Log(f"Replaying {snap.filename} into {target.conn.display} with psql {target.tools.version} "
               "in one transaction"))
    async with session.watch as watch:
        rc, feeder, scan, mismatch = await session.run(snap, head, tail)
    rolled_back = "Nothing was committed: the database is unchanged. Choose another snapshot."
    if feeder.damaged:
        raise InvalidSnapshot(f"Snapshot {snap.filename} is damaged: {feeder.damaged}.", rolled_back)
    if not feeder.intact:
        raise InvalidSnapshot(f"Snapshot {snap.filename} does not match its metadata (sha256 or size): it is "
                              "corrupt or changed after it was taken.", rolled_back)
    if not scan.complete:
        raise InvalidSnapshot(f"Snapshot {snap.filename} is incomplete: its SQL has no dump-complete trailer.",
                              rolled_back)
    if rc != 0:
        stderr = "\n".join(session.stderr)
        if "lock timeout" in stderr:
            raise watch.timed_out("The restore")
        raise _restore_failure(stderr, head.count(b"\n"), snap)
    if mismatch is not None:
        raise OperationFailed(f"Restore failed: {mismatch}. The transaction was rolled back: the database is "
                              "unchanged.", "Validate the snapshot (`dbsage-tui validate`) and check its metadata.")
    if b"COMMIT" not in session.after_marker:
        raise OperationFailed("Restore failed: psql ended without committing. The transaction was rolled back: "
                              "the database is unchanged.", "See the log for psql's output.")
    return _per_table(scan.copies, session.tags)


def recorded_rows(snap: Snapshot) -> dict | None:
    """The rows per table a full snapshot's metadata records, if it does."""
    recorded = snap.get("row_counts")
    return recorded if snap.is_full and isinstance(recorded, dict) else None


def loaded_mismatch(copies: list[tuple[str, int]], tags: list[int], snap: Snapshot) -> str | None:
    """Why the rows the server loaded differ from the snapshot's, or None when they agree: one ``COPY n``
    tag per COPY block of the file, and per table the row counts recorded when the snapshot was taken
    (or, without them, the rows counted in each block while feeding)."""
    if len(tags) != len(copies):
        return f"psql reported {len(tags)} COPY results for the {len(copies)} tables of data in the file"
    recorded = recorded_rows(snap)
    if recorded is None:
        return next((f"the server loaded {rows} rows into {table}, the file holds {in_file}"
                     for (table, in_file), rows in zip(copies, tags, strict=True) if rows != in_file), None)
    loaded = _per_table(copies, tags)
    for table, want in sorted(recorded.items()):
        if loaded.get(table, 0) != want:
            return f"the server loaded {loaded.get(table, 0)} rows into {table}, the snapshot's metadata records {want}"
    if extra := sorted(set(loaded) - set(recorded)):
        return f"the file loads {extra[0]}, which the snapshot's metadata does not list"
    return None


def _per_table(copies: list[tuple[str, int]], tags: list[int]) -> dict[str, int]:
    """The rows loaded per table: the ``COPY n`` tags summed over the table's COPY blocks."""
    loaded: dict[str, int] = {}
    for (table, _), rows in zip(copies, tags, strict=True):
        loaded[table] = loaded.get(table, 0) + rows
    return loaded


def _restore_failure(stderr: str, prelude_lines: int, snap: Snapshot) -> OperationFailed:
    err = explain_tool_failure(stderr, "Restore")
    if m := re.search(r"psql:<stdin>:(\d+): (?:ERROR|FATAL):\s*(.*)", stderr):
        line = int(m.group(1))
        where = " while clearing the current objects" if line <= prelude_lines \
            else f" at line {line - prelude_lines} of {snap.filename}"
        err.message = f"Restore failed{where}: {m.group(2).strip()}"
    err.message = err.message.rstrip(".") + ". The transaction was rolled back: the database is unchanged."
    if not err.hint:
        err.hint = "See the log for psql's output."
    return err
