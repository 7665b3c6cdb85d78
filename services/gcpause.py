"""Keeping Python's cycle collector off the event loop while thousands of objects are made at once.

Listing 10,000 snapshots and putting them in the table makes some 300,000 objects, none of them in a
reference cycle. The cycle collector runs a full pass (over every object of the process, the whole of
Textual included) each time the objects have grown by a quarter: five or six passes of 50-100 ms on the
event loop during a first listing, more time than building the rows. ``paused_gc`` pauses it while such
work runs: it collects nothing then that would not be freed anyway (objects without cycles are freed as
soon as they are unused), and runs as usual afterwards. Pauses nest and may come from several threads (the
listing runs in a worker thread while the loop fills the table). ``SnapshotStore.list`` pauses it in any
process (about 10% of a listing of 10,000 in the CLI); the TUI also pauses it while it fills the table.

``freeze_start_up`` is the usual companion of a big start-up (``gc.freeze``): what exists once the first
listing is on screen (Textual, the app, the listing, the rows) is moved out of the collector's sight, so
that its later passes do not walk it again. Those objects are still freed by reference counting when they
go (a new listing replaces the old one that way); only a reference cycle among them would never be
collected, which the listing and the rows do not make. Done during the first start-up of the process.
"""

from __future__ import annotations

import contextlib
import gc
import threading
from collections.abc import Iterator

_lock = threading.Lock()
_depth = 0
_was_enabled = True
_started = False


@contextlib.contextmanager
def paused_gc() -> Iterator[None]:
    global _depth, _was_enabled
    with _lock:
        if _depth == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _was_enabled:
                gc.enable()


def freeze_start_up(done: bool = False) -> None:
    """Freeze what exists now, if the process is still starting up; ``done`` ends the start-up."""
    global _started
    if not _started:
        gc.freeze()
        _started = done
