"""Engine events as Textual messages, so that work running in a worker never touches a widget directly.

The engine calls ``report(event)`` synchronously from the worker; ``bridge`` turns each event into a small
message posted to every screen that shows the work. Progress messages coalesce: when several are queued,
only the newest is handled, so a fast dump cannot flood the UI."""

from __future__ import annotations

from textual.message import Message
from textual.message_pump import MessagePump

from services.events import Blocked, Event, Log, Progress, Reporter, Step


class EngineLog(Message):
    """A line for the log pane."""

    def __init__(self, event: Log) -> None:
        super().__init__()
        self.event = event


class EngineStep(Message):
    """A step of a multi-step operation changed status."""

    def __init__(self, event: Step) -> None:
        super().__init__()
        self.event = event


class EngineProgress(Message):
    """Bytes moved so far; a newer one replaces an older one still in the queue."""

    def __init__(self, event: Progress) -> None:
        super().__init__()
        self.event = event

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, EngineProgress)


class EngineBlocked(Message):
    """The work has waited a while for locks other sessions hold: who they are."""

    def __init__(self, event: Blocked) -> None:
        super().__init__()
        self.event = event


_WRAP = {Log: EngineLog, Step: EngineStep, Progress: EngineProgress, Blocked: EngineBlocked}


def bridge(*targets: MessagePump) -> Reporter:
    """A ``report`` callable for the engine that posts each event to every target (thread-safe)."""

    def report(event: Event) -> None:
        wrap = _WRAP.get(type(event))
        if wrap is None:
            return
        for target in targets:
            target.post_message(wrap(event))

    return report
