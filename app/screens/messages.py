"""Engine events as Textual messages, so that work running in a worker never touches a widget directly.
Progress messages coalesce: when several are queued, only the newest is handled, so a fast dump cannot
flood the UI."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from textual.message import Message
from textual.message_pump import MessagePump

from services.events import Blocked, Event, Log, Progress, Reporter, Step

if TYPE_CHECKING:
    import datetime as dt

    from services.diff.compare import DiffResult
    from services.server.catalog import ServerInfo
    from services.snapshots.listing import Signature
    from services.snapshots.maintenance import CleanupPlan
    from services.snapshots.store import Snapshot
    from services.snapshots.validation import Validation


@dataclass
class EngineLog(Message):
    """A line for the log pane."""
    event: Log


@dataclass
class EngineStep(Message):
    """A step of a multi-step operation changed status."""
    event: Step


@dataclass
class EngineProgress(Message):
    """Bytes moved so far; a newer one replaces an older one still in the queue."""
    event: Progress

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, EngineProgress)


@dataclass
class EngineBlocked(Message):
    """The work has waited a while for locks other sessions hold: who they are."""
    event: Blocked


_WRAP = {Log: EngineLog, Step: EngineStep, Progress: EngineProgress, Blocked: EngineBlocked}


def bridge(*targets: MessagePump) -> Reporter:
    """A ``report`` callable for the engine that posts each event to every target (thread-safe)."""

    def report(event: Event) -> None:
        if wrap := _WRAP.get(type(event)):
            for target in targets:
                target.post_message(wrap(event))

    return report


# -- what the main screen's workers found: one message each, handled with @on -----------------------------

@dataclass
class Scanned(Message):
    """One look at the directory: per-entry (size, mtime), the directory's mtime, when, and the new listing
    when something changed (None when nothing did), with its retention verdicts (``Housekeeping.plan_verdicts``)
    once its files are read; the next look compares with it."""
    signature: Signature
    dir_mtime: int | None
    at: float
    snapshots: list[Snapshot] | None
    verdicts: tuple[dt.datetime, dict[str, str]] | None = None


@dataclass
class ServerProbed(Message):
    """The server answered: its version and what kind it is."""
    info: ServerInfo


@dataclass
class SnapshotTaken(Message):
    snapshot: Snapshot


@dataclass
class Validated(Message):
    """A full check ended; ``stamp`` identifies the version of the files checked; ``then_restore`` when
    the check was the first step of a restore."""
    snapshot: Snapshot
    validation: Validation
    stamp: tuple
    then_restore: bool


@dataclass
class FilesChanged(Message):
    """A snapshot was deleted, protected or cleaned up: the sentence that says what happened."""
    text: str


@dataclass
class CleanupPlanned(Message):
    planned: CleanupPlan


@dataclass
class DiffReady(Message):
    result: DiffResult
