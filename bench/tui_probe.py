"""Measures the TUI in a fresh process, driven by Textual's ``App.run_test()``; prints one JSON line.

    python -m bench.tui_probe paint --dir DIR --expect 10000 --spawned-at T
    python -m bench.tui_probe keys  --dir DIR --presses 40 --min-bytes N   (DATABASE_URL in the environment)

A fresh process per measurement, because start-up (imports, app construction, listing the directory) is
part of what a user waits for; ``--spawned-at`` is the parent's ``time.monotonic()`` just before the
spawn (CLOCK_MONOTONIC is system-wide on Linux), so "from spawn" includes the interpreter start.

paint: time until the snapshot table on the screen holds ``--expect`` rows, then until the next refresh after that
(``call_after_refresh``) — "first painted table"; and until no row waits for its metadata any more.

keys: starts a full snapshot from the app (its ``new_snapshot`` action and the create form, as a user
would), waits until the dump has streamed ``--min-bytes``, then sends cursor keys straight to
the driver (``pilot.press`` waits for CPU idle, which never comes during a dump) and times each until the
table's cursor has moved, and until the next refresh. A loop-lag monitor (10 ms sleeps) runs alongside: a
key can never be handled faster than the loop lets any task run. Then it lets the dump finish, as a user
waits for it, and times the new snapshot's way into the table (``landing``): from its file's rename into
place until the table holds one more row and has refreshed, with the longest loop stall meanwhile (the
app lists the directory again and renumbers every row).

Both modes report ``stalls``: where the loop thread was when it stalled for more than 50 ms
(``bench.stalls``), so that a slow number comes with its cause. keys also reports ``gc_passes``: the
cycle collector's passes of 5 ms or more in the window, on any thread, with their CPU time (a pass in a
worker thread holds the GIL, which the sampler cannot see), ``worst_at_s`` for the longest stall and
``dump_seen_done_at_s``, both in seconds from the start of the window.

Exit status 0 with ``{"status": "not measurable yet", ...}`` when the real app is not there yet.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import inspect
import json
import os
import statistics
import sys
import time
from pathlib import Path

from bench.stalls import GcWatch, StallSampler


class NotReady(Exception):
    """The real app cannot be measured yet (no factory, or it has no table / no snapshot action)."""


def build_app(snapshot_dir: Path):
    """The app exactly as users get it: ``app.tui.make_app`` with a workspace from the environment
    (DATABASE_URL) and ``--dir``. Any signature change is matched by parameter name."""
    from services.workspace import open_workspace
    ws = open_workspace(None, str(snapshot_dir), False)
    try:
        tui = importlib.import_module("app.tui")
    except Exception as exc:  # noqa: BLE001 - a half-built module is "not ready", not a crash
        raise NotReady(f"app.tui does not import: {exc.__class__.__name__}: {exc}") from None
    factory = getattr(tui, "make_app", None)
    if factory is None:
        raise NotReady("app.tui.make_app does not exist yet")
    by_name = {"ws": ws, "workspace": ws, "store": ws.store, "conn": ws.conn, "snapshot_dir": snapshot_dir,
               "directory": snapshot_dir, "dir": snapshot_dir, "db_url": None, "demo": False}
    args, kwargs = [], {}
    for i, p in enumerate(inspect.signature(factory).parameters.values()):
        if p.name in by_name:
            kwargs[p.name] = by_name[p.name]
        elif p.default is inspect.Parameter.empty and i == 0:
            args.append(ws)  # an unknown first parameter: the workspace is the likeliest
    return factory(*args, **kwargs)


def _tables(app):
    from widgets.snapshot_table import SnapshotTable
    try:
        return list(app.screen.query(SnapshotTable))
    except Exception:  # noqa: BLE001 - screen changing under us
        return []


async def _wait_rows(app, expect: int, timeout: float):
    """The snapshot table with the most rows once it has ``expect``; (None, best count) on timeout."""
    deadline = time.monotonic() + timeout
    best = 0
    while time.monotonic() < deadline:
        tables = _tables(app)
        if tables:
            table = max(tables, key=lambda t: t.row_count)
            best = table.row_count
            if best >= expect:
                return table, best
        await asyncio.sleep(0.002)
    return None, best


async def _filled_in(app) -> None:
    """Until no listed snapshot waits for its metadata to be read (``Snapshot.pending``), and a refresh."""
    while any(getattr(s, "pending", False) for s in getattr(app.screen, "snapshots", ())):
        await asyncio.sleep(0.005)
    await _after_refresh(app)


async def _after_refresh(app) -> None:
    done = asyncio.Event()
    app.call_after_refresh(done.set)
    await done.wait()


async def probe_paint(args) -> dict:
    t0 = time.monotonic()
    # Stalls while the app is built (before the sampler's thread starts) are not sampled.
    app = build_app(Path(args.dir))
    sampler = StallSampler().start()
    stop = asyncio.Event()
    heartbeat = asyncio.create_task(_lag_monitor([], stop, sampler))
    try:
        result = await _paint(app, args, t0)
    finally:
        stop.set()
        await heartbeat
        sampler.stop()
    result["stalls"] = sampler.top()
    return result


async def _paint(app, args, t0: float) -> dict:
    t_built = time.monotonic()
    async with app.run_test(size=(160, 50)) as _pilot:
        t_ready = time.monotonic()
        table, rows = await _wait_rows(app, args.expect, args.timeout)
        if table is None:
            if rows == 0 and not _tables(app):
                raise NotReady("the app shows no snapshot table")
            return {"status": "timeout", "rows": rows, "expect": args.expect, "timeout": args.timeout}
        t_rows = time.monotonic()
        await _after_refresh(app)
        t_paint = time.monotonic()
        # A large directory is painted from names and sizes first: also time until every row shows what
        # its metadata says and that is painted.
        await _filled_in(app)
        t_filled = time.monotonic()
    base = args.spawned_at or t0
    return {"status": "ok", "rows": rows, "from_spawn_to_paint": t_paint - base, "in_process_to_paint":
            t_paint - t0, "import_and_start": t0 - base if args.spawned_at else None,
            "build_app": t_built - t0, "ready": t_ready - t0, "rows_in": t_rows - t0,
            "from_spawn_to_filled_in": t_filled - base}


async def _start_dump(app, label: str) -> str:
    """Start a full snapshot the way a user would; returns how it was started."""
    from textual.widgets import Input
    for target in (app.screen, app):
        if hasattr(target, "action_new_snapshot"):
            await target.run_action("new_snapshot")
            break
    else:
        raise NotReady("neither the app nor its screen has the new_snapshot action")
    for _ in range(500):
        if app.screen.query("#field-label"):
            break
        await asyncio.sleep(0.01)
    else:
        raise NotReady("new_snapshot did not open a form with a #field-label input")
    box = app.screen.query_one("#field-label", Input)
    box.value = label
    box.focus()
    await asyncio.sleep(0.05)
    _send_key(app, "enter")
    return "new_snapshot action + create form"


def _send_key(app, key: str) -> None:
    from textual import events
    event = events.Key(key, None)
    event.set_sender(app)
    app._driver.send_message(event)  # what pilot.press does, minus its wait for CPU idle


async def _lag_monitor(samples: list[float], stop: asyncio.Event, sampler: StallSampler,
                       worst: list[float] | None = None, timed: list[tuple[float, float]] | None = None) -> None:
    """Loop lag samples; ``worst``, if given, gets [lag, perf_counter() when it began] of the longest;
    ``timed``, if given, gets (perf_counter() when it began, lag) of each."""
    while not stop.is_set():
        t = time.perf_counter()
        await asyncio.sleep(0.01)
        sampler.tick()
        lag = time.perf_counter() - t - 0.01
        samples.append(lag)
        if timed is not None:
            timed.append((t, lag))
        if worst is not None and (not worst or lag > worst[0]):
            worst[:] = [lag, t]


class PartialFile:
    """The size of the dump's ``.partial`` file, -1 when there is none (not started yet, or renamed when
    done). The directory is searched only until the file is found, then only that file is stat'ed: a
    glob over 20,000 entries takes tens of milliseconds, and the probe runs on the app's event loop, so
    it would measure its own stalls."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path: Path | None = None

    def size(self) -> int:
        if self.path is None:
            found = [Path(e.path) for e in os.scandir(self.directory) if e.name.endswith(".partial")]
            if not found:
                return -1
            self.path = max(found, key=lambda p: p.stat().st_size)
        try:
            return self.path.stat().st_size
        except FileNotFoundError:
            return -1


async def probe_keys(args) -> dict:
    directory = Path(args.dir)
    app = build_app(directory)
    async with app.run_test(size=(160, 50)) as pilot:
        table, _ = await _wait_rows(app, 1, 30)
        if table is None:
            raise NotReady("the app shows no snapshot table with rows")
        await _filled_in(app)  # "listed": every row shows its metadata, not only its name
        listed = table.row_count
        how = await _start_dump(app, "bench-keypress")
        partial = PartialFile(directory)
        deadline = time.monotonic() + 60
        while partial.size() < args.min_bytes:
            if time.monotonic() > deadline:
                return {"status": "dump did not start", "how": how}
            await asyncio.sleep(0.05)
        lags: list[float] = []
        worst: list[float] = []
        stop = asyncio.Event()
        sampler = StallSampler().start()
        gcw = GcWatch().start()
        monitor = asyncio.create_task(_lag_monitor(lags, stop, sampler, worst))
        handled, painted, skipped = [], [], 0
        ended_at = None
        for _ in range(args.presses):
            if partial.size() < 0:
                ended_at = time.perf_counter() - gcw.t0
                break  # dump finished
            tables = _tables(app)
            if not tables:
                skipped += 1
                await asyncio.sleep(args.interval)
                continue
            table = max(tables, key=lambda t: t.row_count)
            if app.focused is not table:
                table.focus()
                await asyncio.sleep(0.05)
            before = table.cursor_row
            key = "down" if before < table.row_count - 1 else "up"
            t = time.perf_counter()
            _send_key(app, key)
            while table.cursor_row == before and time.perf_counter() - t < 5:
                await asyncio.sleep(0.001)
            handled.append(time.perf_counter() - t)
            await _after_refresh(app)
            painted.append(time.perf_counter() - t)
            await asyncio.sleep(args.interval)
        written = partial.size()
        stop.set()
        await monitor
        sampler.stop()
        gc_passes = gcw.stop()
        landing = await _landing(app, partial, listed)
        app.workers.cancel_all()
        await pilot.pause(0.5)
    for leftover in directory.glob("*_bench-keypress.sql*"):  # the directory stays as it was given
        leftover.unlink()
    lags.sort()
    return {"status": "ok" if handled else "no key measured", "how": how, "presses": len(handled),
            "skipped": skipped, "dump_bytes_at_end": written,
            "handled_ms": _ms_stats(handled), "painted_ms": _ms_stats(painted),
            "loop_lag_ms": {"max": round(lags[-1] * 1000, 1) if lags else None,
                            "p99": round(lags[int(len(lags) * 0.99)] * 1000, 1) if lags else None,
                            "median": round(statistics.median(lags) * 1000, 2) if lags else None,
                            "samples": len(lags),
                            "worst_at_s": round(worst[1] - gcw.t0, 3) if worst else None},
            "dump_seen_done_at_s": round(ended_at, 3) if ended_at is not None else None,
            "gc_passes": gc_passes, "stalls": sampler.top(), "landing": landing}


async def _landing(app, partial: PartialFile, listed: int, timeout: float = 900) -> dict:
    """Wait for the dump to end, then time from its ``.partial``'s rename into place until a table holds
    ``listed`` + 1 rows, and until the next refresh; the loop's longest stall in that window.

    The probe shares the app's event loop, so it may notice the rename only after the app has already
    listed the new file. The window therefore starts at the rename itself, read from the file's ctime
    (which a rename sets; the kernel's coarse clock, a few ms), and the loop is watched from before it."""
    deadline = time.monotonic() + timeout
    timed: list[tuple[float, float]] = []
    stop = asyncio.Event()
    sampler = StallSampler().start()
    monitor = asyncio.create_task(_lag_monitor([], stop, sampler, timed=timed))
    try:
        while partial.size() >= 0:
            if time.monotonic() > deadline:
                return {"status": "the dump did not finish"}
            await asyncio.sleep(0.01)
        if partial.path is None:
            return {"status": "not listed", "reason": "the dump's .partial file was never seen"}
        final = partial.path.with_name(partial.path.name.removesuffix(".partial"))
        try:
            renamed = time.perf_counter() - (time.time_ns() - final.stat().st_ctime_ns) / 1e9
        except FileNotFoundError:
            return {"status": "not listed", "reason": f"{final.name} is not there after its rename"}
        table, rows = await _wait_rows(app, listed + 1, 60)
        shown = time.perf_counter() - renamed
        if table is not None:
            await _after_refresh(app)
        painted = time.perf_counter()
    finally:
        stop.set()
        await monitor
        sampler.stop()
    if table is None:
        return {"status": "not listed", "reason": f"{rows} rows after 60 s, {listed + 1} expected"}
    # Every sample whose sleep overlapped the window: a stall that began before the rename still held
    # the loop during it.
    window = [lag for t, lag in timed if t + 0.01 + lag >= renamed and t <= painted]
    return {"status": "ok", "rows": rows, "listed_ms": round(shown * 1000),
            "painted_ms": round((painted - renamed) * 1000),
            "loop_lag_max_ms": round(max(window, default=0) * 1000, 1), "stalls": sampler.top()}


def _ms_stats(values: list[float]) -> dict | None:
    if not values:
        return None
    return {"min": round(min(values) * 1000, 1), "median": round(statistics.median(values) * 1000, 1),
            "max": round(max(values) * 1000, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.tui_probe")
    parser.add_argument("mode", choices=["paint", "keys"])
    parser.add_argument("--dir", required=True)
    parser.add_argument("--expect", type=int, default=10000)
    parser.add_argument("--timeout", type=float, default=60)
    parser.add_argument("--spawned-at", type=float, default=None)
    parser.add_argument("--presses", type=int, default=40)
    parser.add_argument("--interval", type=float, default=0.15)
    parser.add_argument("--min-bytes", type=int, default=20 << 20)
    args = parser.parse_args(argv)
    os.environ.setdefault("TEXTUAL_ANIMATIONS", "none")
    try:
        result = asyncio.run(probe_paint(args) if args.mode == "paint" else probe_keys(args))
    except NotReady as exc:
        result = {"status": "not measurable yet", "reason": str(exc)}
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
