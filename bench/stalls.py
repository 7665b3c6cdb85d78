"""A tiny sampling profiler for event-loop stalls: what was the UI thread doing when keys had to wait?

A key press is handled as soon as the asyncio loop gets a turn, so the worst case for any key is the
longest stretch in which the loop did not run. A heartbeat task ticks every 10 ms; a background thread
checks every 5 ms and, when the heartbeat is late by more than ``threshold``, records the loop thread's
stack (``sys._current_frames``). Counting identical stacks gives where the stall time went, like py-spy
would, without installing anything.
"""

from __future__ import annotations

import gc
import sys
import threading
import time
from collections import Counter
from pathlib import Path

#: Frames from the repository (not the bench) name the code to fix; the innermost says what it was doing.
_REPO = str(Path(__file__).resolve().parents[1]) + "/"
_BENCH = str(Path(__file__).resolve().parent) + "/"


def _where(frame) -> str:
    """The innermost three repository functions (``f < caller < caller``), by function name so that
    samples group; when no repository code is on the stack, the innermost Textual function."""
    ours, textual, innermost = [], None, None
    while frame is not None and len(ours) < 3:
        name, func = frame.f_code.co_filename, frame.f_code.co_name
        if innermost is None:
            innermost = f"{'/'.join(name.rsplit('/', 2)[-2:])}:{func}"
        if name.startswith(_REPO) and not name.startswith(_BENCH):
            ours.append(f"{name[len(_REPO):]}:{func}")
        elif textual is None and "/textual/" in name:
            textual = f"textual/{name.split('/textual/', 1)[1]}:{func}"
        frame = frame.f_back
    # Neither ours nor Textual's: the innermost frame (the loop waiting in select() means the process was
    # not given the CPU, or another thread held the GIL).
    return " < ".join(ours) if ours else f"library only: {textual or innermost or '?'}"


class StallSampler:
    """Create it on the loop's thread; call ``tick()`` from a task every ~10 ms; ``top()`` at the end."""

    def __init__(self, threshold: float = 0.05, every: float = 0.005) -> None:
        self.threshold, self.every = threshold, every
        self.loop_thread = threading.get_ident()
        self.last_tick = time.perf_counter()
        self.samples: Counter[str] = Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="stall-sampler")

    def start(self) -> StallSampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def tick(self) -> None:
        self.last_tick = time.perf_counter()

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            if time.perf_counter() - self.last_tick > self.threshold:
                frame = sys._current_frames().get(self.loop_thread)
                if frame is not None:
                    self.samples[_where(frame)] += 1

    def top(self, n: int = 6) -> list[dict]:
        """The stacks seen most during stalls, with roughly how long (samples x interval); the first entry
        is the total."""
        total = {"ms": round(sum(self.samples.values()) * self.every * 1000), "where": "(all stalls > 50 ms)"}
        return [total] + [{"ms": round(count * self.every * 1000), "where": where}
                          for where, count in self.samples.most_common(n)]


class GcWatch:
    """Collector passes of ``min_ms`` or longer while it watches (``gc.callbacks``): which generation, on
    which thread, how long, and when (seconds after ``start``). A pass in a worker thread holds the GIL,
    so the loop thread waits without any of its frames running: the stall sampler cannot name that time,
    this can."""

    def __init__(self, min_ms: float = 5.0) -> None:
        self.min_ms = min_ms
        self.passes: list[dict] = []
        self.t0 = 0.0
        self._began: dict[int, tuple[float, float]] = {}  # thread -> (wall, thread CPU) at a pass's start

    def _callback(self, phase: str, info: dict) -> None:
        now, cpu = time.perf_counter(), time.thread_time()
        ident = threading.get_ident()
        if phase == "start":
            self._began[ident] = (now, cpu)
            return
        began = self._began.pop(ident, None)
        if began is not None and (now - began[0]) * 1000 >= self.min_ms:
            self.passes.append({"at_s": round(began[0] - self.t0, 3), "ms": round((now - began[0]) * 1000, 1),
                                "cpu_ms": round((cpu - began[1]) * 1000, 1), "gen": info.get("generation"),
                                "collected": info.get("collected"), "thread": threading.current_thread().name})

    def start(self) -> GcWatch:
        self.t0 = time.perf_counter()
        gc.callbacks.append(self._callback)
        return self

    def stop(self) -> list[dict]:
        if self._callback in gc.callbacks:
            gc.callbacks.remove(self._callback)
        return self.passes
