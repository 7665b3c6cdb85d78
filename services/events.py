"""Progress events the engine emits while it works. The CLI prints them; the TUI turns them into messages.

An operation takes a ``report`` callable and calls it synchronously with one of these small frozen
dataclasses; the callable must not block (the TUI posts a message, the CLI writes a line).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Log:
    """One line of output: from pg_dump/psql (``source``) or from dbsage itself."""

    text: str
    source: str = "dbsage"
    level: str = "info"  # info | warning | error


@dataclass(frozen=True)
class Progress:
    """Bytes moved so far in a phase; ``total`` is an estimate for dumps, exact for restores."""

    phase: str  # "dump" | "restore" | "validate" | "diff"
    done: int
    total: int | None
    elapsed: float

    @property
    def past_estimate(self) -> bool:
        """A dump that outgrew its estimate (table statistics are stale until ANALYZE): no percentage then."""
        return self.phase == "dump" and bool(self.total) and self.done > self.total

    @property
    def fraction(self) -> float | None:
        if not self.total or self.past_estimate:
            return None
        return min(self.done / self.total, 0.99 if self.phase == "dump" else 1.0)

    @property
    def rate(self) -> float:
        return self.done / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def eta(self) -> float | None:
        if not self.fraction or not self.rate:
            return None
        return max(self.total - self.done, 0) / self.rate


@dataclass(frozen=True)
class Step:
    """A named step of a multi-step operation (pre-rollback snapshot, restore, smoke test)."""

    name: str
    status: str  # running | ok | skipped | failed | warning
    detail: str = ""


@dataclass(frozen=True)
class Blocker:
    """Another session holding a lock we wait for (or, before a restore, just connected)."""

    pid: int
    role: str
    application: str
    client: str
    state: str
    seconds: float | None  # None: hidden from a role without pg_read_all_stats, as the query is
    query: str

    def text(self) -> str:
        app = f", {self.application}" if self.application else ""
        query = f': "{self.query.rstrip("; ")}"' if self.query else ""
        since = f" for {_duration(self.seconds)}" if self.seconds is not None else ""
        return f"pid {self.pid} ({self.role}{app}, from {self.client}) {self.state}{since}{query}"

    def as_dict(self) -> dict:
        return {**asdict(self), "seconds": None if self.seconds is None else round(self.seconds, 1)}


@dataclass(frozen=True)
class Blocked:
    """An event: ``operation`` has waited ``waited`` seconds for a lock these sessions hold."""

    operation: str
    waited: float
    blockers: tuple[Blocker, ...]


@dataclass(frozen=True)
class Committing:
    """An event: a restore's COMMIT is on its way to the server; from here the database may have changed."""


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


Event = Log | Progress | Step | Blocked | Committing
Reporter = Callable[[Event], None]


def null_reporter(_event: Event) -> None:
    """A reporter that drops everything (for callers that only want the result)."""
