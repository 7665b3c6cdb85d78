"""The snapshot directory's lock file and audit log: who is working in it now, and what was done to it."""

from __future__ import annotations

import contextlib
import fcntl
import getpass
import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path

from services.display import utcnow
from services.errors import LockHeld
from services.snapshots.listing import format_ts


@contextlib.contextmanager
def lock(path: Path, operation: str, target: str) -> Iterator[None]:
    """An exclusive flock on ``path``. The kernel drops it when the holder dies, so a ``kill -9`` never
    leaves a stale lock; the file names the holder for whoever is refused."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except (BlockingIOError, PermissionError):  # EWOULDBLOCK, EACCES: another holder
            raise LockHeld(f"Another dbsage-tui is busy here: {_holder(path)}.",
                           "Wait for it to finish, then try again.") from None
        info = {"pid": os.getpid(), "host": socket.gethostname(), "user": os_user(),
                "operation": operation, "target": target, "since": format_ts(utcnow())}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        info = {}
    if not info:
        return "another process holds the lock"
    return (f"pid {info.get('pid')} on {info.get('host')} ({info.get('user')}) is running "
            f"{info.get('operation')} on {info.get('target')} since {info.get('since')}")


def audit(path: Path, action: str, outcome: str, **fields) -> None:
    """Append one JSON line, fsynced, to the audit log at ``path`` (never a password: callers pass masked
    targets). A write that fails is dropped: the audit log never turns a good restore into a failure."""
    entry = {"time": format_ts(utcnow()), "action": action, "outcome": outcome, "os_user": os_user(),
             "host": socket.gethostname(), **fields}
    with contextlib.suppress(OSError), \
            os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "a", encoding="utf-8") as fh:
        fh.write(json.dumps(entry, default=str) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def read_audit(path: Path) -> list[dict]:
    """The audit log's entries, oldest first (a line that is not JSON is skipped)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
    out = []
    for line in lines:
        with contextlib.suppress(ValueError):
            out.append(json.loads(line))
    return out


def os_user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - getpass raises various errors without a passwd entry
        return str(os.getuid())
