"""How the CLI prints: the engine's events as lines (a live progress line on a terminal), tables, JSON,
a snapshot's description, and the yes/no question."""

from __future__ import annotations

import json
import sys

from app.common import progress_text
from services.events import Event, Log, Progress, Step
from services.snapshots.meta import migration_text
from services.snapshots.record import facts
from services.snapshots.retention import is_protected
from services.snapshots.store import Snapshot, format_ts


class Printer:
    """Turns engine events into terminal output: a live progress line on a TTY, log lines otherwise."""

    def __init__(self, json_mode: bool, verbose: bool = False) -> None:
        self.json_mode = json_mode
        self.tty = sys.stderr.isatty()
        self.verbose = verbose
        self._progress_shown = False

    def __call__(self, event: Event) -> None:
        if isinstance(event, Progress):
            if self.tty and not self.json_mode:
                sys.stderr.write("\r\x1b[2K" + progress_text(event))
                sys.stderr.flush()
                self._progress_shown = True
            return
        self._clear()
        if isinstance(event, Log):
            if event.source != "dbsage" and not (self.verbose or event.level == "error"):
                return
            prefix = "" if event.source == "dbsage" else f"{event.source}: "
            sys.stderr.write(f"{prefix}{event.text}\n")
        elif isinstance(event, Step):
            if event.status != "running":
                mark = {"ok": "✔", "skipped": "–", "failed": "✘", "warning": "!"}.get(event.status, "·")
                sys.stderr.write(f"{mark} {event.name}: {event.detail}\n")

    def _clear(self) -> None:
        if self._progress_shown:
            sys.stderr.write("\r\x1b[2K")
            self._progress_shown = False


def snapshot_json(snap: Snapshot, index: int | None = None) -> dict:
    data = {"index": index, "filename": snap.filename, "label": snap.label, "timestamp": format_ts(snap.timestamp),
            "type": snap.type if snap.meta else None, "size_bytes": snap.size_bytes, "purpose": snap.purpose,
            "protected": is_protected(snap), "valid": snap.valid, "migration": migration_text(snap.meta)}
    if not snap.valid:
        data["problem"] = snap.problem
    if index is None:
        data.pop("index")
    return data


def print_json(data, compact: bool = False) -> None:
    """JSON on stdout; ``compact`` for long lists (the C encoder, one line)."""
    print(json.dumps(data, indent=None if compact else 2, default=str))


def print_table(rows: list[list[str]], headers: list[str]) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    line = " | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    print(line.rstrip())
    print("-|-".join("-" * w for w in widths))
    for r in rows:
        print(" | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())


def describe(snap: Snapshot) -> list[str]:
    """The metadata preview shown before a restore and by ``show``: the preview panel's facts, as text."""
    lines = [f"Snapshot:  {snap.filename}",
             f"Label:     {snap.label}" + ("  [protected]" if is_protected(snap) else "")]
    lines += [f"{name + ':':<10} {text}" for name, text in facts(snap)]
    if not snap.valid:
        lines.append(f"INVALID:   {snap.problem}")
    return lines


def confirm(question: str) -> bool:
    try:
        answer = input(f"{question} [y/N] ")
    except EOFError:
        return False
    return answer.strip().lower() in ("y", "yes")
