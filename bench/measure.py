"""Timing one process, its own peak memory and CPU, and alternating A/B pairs.

Why these choices:
- Wall time is taken around the whole process (start-up included): that is what a user or a script waits.
- Peak RSS is ``VmHWM`` from ``/proc/PID/status`` of that one process, polled every few milliseconds. It is
  the kernel's own high-water mark, so polling only has to read it before the process exits; it never
  counts children (``getrusage(RUSAGE_CHILDREN)`` and ``wait4`` would fold pg_dump/psql into our number).
  The process is reaped by a separate thread with ``wait4`` so the end time is exact, not rounded up to
  the polling interval. The same polling runs for the raw tools, so both sides pay the same observer.
- CPU seconds are utime+stime of the process itself (``/proc/PID/stat``), again without its children:
  on a 2-core machine a third busy process (ours, next to pg_dump and the server backend) costs wall time.
- A and B alternate and swap order every run (AB, BA, AB, ...), so drift in the machine's load or caches
  hits both sides alike; ``settle`` runs before every timed run (CHECKPOINT, idle autovacuum).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

_TICK = os.sysconf("SC_CLK_TCK")
POLL_SECONDS = 0.005


@dataclass
class Sample:
    """One timed run of one process."""

    seconds: float
    peak_rss_kb: int | None = None  # VmHWM of the process itself
    cpu_seconds: float | None = None  # its own user+system time, children excluded
    returncode: int = 0
    extra: dict = field(default_factory=dict)


class RunFailed(RuntimeError):
    pass


def _read_status(pid: int) -> tuple[int | None, float | None]:
    hwm = cpu = None
    try:
        with open(f"/proc/{pid}/status", "rb") as fh:
            for line in fh:
                if line.startswith(b"VmHWM:"):
                    hwm = int(line.split()[1])
                    break
        with open(f"/proc/{pid}/stat", "rb") as fh:
            fields = fh.read().rsplit(b")", 1)[1].split()
            cpu = (int(fields[11]) + int(fields[12])) / _TICK  # utime, stime (fields 14, 15)
    except (OSError, ValueError, IndexError):
        pass
    return hwm, cpu


def run_timed(argv: list[str], env: dict[str, str], *, log: Path | None = None,
              stdout: Path | None = None, timeout: float = 3600, cpus: set[int] | None = None) -> Sample:
    """Run ``argv`` to completion, on ``cpus`` only when given (its children too); raise RunFailed (with
    the log's tail) on a non-zero exit."""
    out = open(stdout, "wb") if stdout else subprocess.DEVNULL
    err = open(log, "ab") if log else subprocess.DEVNULL
    try:
        started = time.perf_counter()
        pin = (lambda: os.sched_setaffinity(0, cpus)) if cpus else None
        proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                preexec_fn=pin)
        done: dict = {}

        def reap() -> None:
            _, status, _ = os.wait4(proc.pid, 0)
            done["end"] = time.perf_counter()
            done["rc"] = os.waitstatus_to_exitcode(status)

        reaper = threading.Thread(target=reap, daemon=True)
        reaper.start()
        peak = cpu = None
        while reaper.is_alive():
            hwm, c = _read_status(proc.pid)
            if hwm is not None:
                peak = hwm
            if c is not None:
                cpu = c
            reaper.join(POLL_SECONDS)
            if time.perf_counter() - started > timeout:
                proc.kill()
                reaper.join()
                raise RunFailed(f"{argv[0]} timed out after {timeout:.0f}s")
        proc.returncode = done["rc"]
    finally:
        if stdout:
            out.close()
        if log:
            err.close()
    sample = Sample(seconds=done["end"] - started, peak_rss_kb=peak, cpu_seconds=cpu, returncode=done["rc"])
    if done["rc"] != 0:
        tail = log.read_text(errors="replace")[-1500:] if log and log.exists() else ""
        raise RunFailed(f"{' '.join(argv[:3])} ... exited with {done['rc']}\n{tail}")
    return sample


@dataclass
class Series:
    """Samples of one side, with the statistics the report prints."""

    name: str
    samples: list[Sample] = field(default_factory=list)

    def values(self, attr: str = "seconds") -> list[float]:
        return [getattr(s, attr) for s in self.samples if getattr(s, attr) is not None]

    def stats(self, attr: str = "seconds") -> tuple[float, float, float] | None:
        vals = self.values(attr)
        if not vals:
            return None
        return min(vals), statistics.median(vals), max(vals)


@dataclass
class Pair:
    """An A/B comparison: A is ours, B the raw tool; ``ratios`` are per-run A/B (paired)."""

    title: str
    a: Series
    b: Series
    note: str = ""

    @property
    def ratios(self) -> list[float]:
        return [x.seconds / y.seconds for x, y in zip(self.a.samples, self.b.samples, strict=False)]

    @property
    def median_ratio(self) -> float | None:
        return statistics.median(self.ratios) if self.ratios else None

    @property
    def ratio_of_medians(self) -> float | None:
        sa, sb = self.a.stats(), self.b.stats()
        return sa[1] / sb[1] if sa and sb else None


def alternate(pair: Pair, run_a: Callable[[], Sample], run_b: Callable[[], Sample], runs: int, warmup: int,
              settle: Callable[[], None], progress: Callable[[str], None]) -> Pair:
    """Warm-up (untimed) then ``runs`` timed pairs, swapping the order each time."""
    for i in range(warmup):
        progress(f"{pair.title}: warm-up {i + 1}/{warmup}")
        settle()
        run_a()
        settle()
        run_b()
    for i in range(runs):
        order = [("A", run_a, pair.a), ("B", run_b, pair.b)]
        if i % 2:
            order.reverse()
        for side, fn, series in order:
            settle()
            sample = fn()
            series.samples.append(sample)
            rss = f", peak RSS {sample.peak_rss_kb / 1024:.0f} MB" if sample.peak_rss_kb else ""
            progress(f"{pair.title}: run {i + 1}/{runs} {side} ({series.name}) {sample.seconds:.2f}s{rss}")
    return pair


def repeat(series: Series, fn: Callable[[], Sample], runs: int, warmup: int,
           progress: Callable[[str], None]) -> Series:
    """A single-sided measurement (no raw tool to compare with)."""
    for _ in range(warmup):
        fn()
    for i in range(runs):
        s = fn()
        series.samples.append(s)
        progress(f"{series.name}: run {i + 1}/{runs} {s.seconds:.3f}s")
    return series


#: Iterations of the host-speed gauge's loop: 8-19 ms per pass on the 2-core EPYC host (runs K and L).
GAUGE_LOOP = 200_000


def cpu_gauge_ms() -> float:
    """How long a fixed pure-Python loop takes right now, in ms (best of 3 passes): how fast this host's
    cores are running at the moment. On a shared VM the same loop has taken 0.49 s and 0.98 s minutes
    apart with no steal time reported, which moves every wall-clock number here; timed before each run,
    it tells a slow moment of the host from slow code."""
    best = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        acc = 0
        for i in range(GAUGE_LOOP):
            acc += i * i
        best = min(best, time.perf_counter() - t)
    return best * 1000


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"
