"""How the CLI prints: the engine's events as lines (a live progress line on a terminal), tables, JSON,
a snapshot's description, and the yes/no question."""

from __future__ import annotations

import datetime as dt
import json
import sys

from app.common import cut, progress_text
from services.display import compact_age, human_size
from services.events import Event, Log, Progress, Step
from services.snapshots.listing import format_ts
from services.snapshots.meta import migration_text
from services.snapshots.record import facts
from services.snapshots.retention import is_protected
from services.snapshots.store import Snapshot


class Printer:
    """Turns engine events into terminal output: a live progress line on a TTY, log lines otherwise. The
    tools' own lines (pg_dump's, psql's) are shown when they are errors."""

    def __init__(self, json_mode: bool) -> None:
        self.live = sys.stderr.isatty() and not json_mode
        self._progress_shown = False

    def __call__(self, event: Event) -> None:
        if isinstance(event, Progress):
            if self.live:
                sys.stderr.write("\r\x1b[2K" + progress_text(event))
                sys.stderr.flush()
                self._progress_shown = True
            return
        if self._progress_shown:
            sys.stderr.write("\r\x1b[2K")
            self._progress_shown = False
        if isinstance(event, Log) and (event.source == "dbsage" or event.level == "error"):
            prefix = "" if event.source == "dbsage" else f"{event.source}: "
            sys.stderr.write(f"{prefix}{event.text}\n")
        elif isinstance(event, Step) and event.status != "running":
            mark = {"ok": "✔", "skipped": "–", "failed": "✘", "warning": "!"}.get(event.status, "·")
            sys.stderr.write(f"{mark} {event.name}: {event.detail}\n")


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


def table_width(widths: list[int]) -> int:
    return sum(widths) + 3 * (len(widths) - 1)


def column_widths(rows: list[list[str]], headers: list[str]) -> list[int]:
    return [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]


def print_table(rows: list[list[str]], headers: list[str], *, width: int = 0,
                shrink: tuple[tuple[int, int], ...] = (), bold: set[int] | frozenset[int] = frozenset()) -> None:
    """Columns separated by `` | ``. With ``width`` (the terminal's), the columns ``shrink`` names, as
    (column, narrowest), give up characters in that order until the table fits; text they cut ends in
    ``…``. Rows whose index is in ``bold`` are printed bold (the caller decides whether styles apply)."""
    widths = column_widths(rows, headers)
    over = table_width(widths) - width if width else 0
    for col, narrowest in shrink:
        give = min(max(over, 0), max(widths[col] - max(narrowest, len(headers[col])), 0))
        widths[col] -= give
        over -= give
    print(" | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip())
    print("-|-".join("-" * w for w in widths))
    for i, r in enumerate(rows):
        line = " | ".join(cut(c, w).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
        print(f"\x1b[1m{line}\x1b[0m" if i in bold else line)


#: Purpose text beyond this many characters is cut in ``list`` (``show`` has it whole).
PURPOSE_WIDTH = 40
FLAGS_LEGEND = "Flags: ! invalid  P protected"


def print_snapshot_table(snaps: list[Snapshot], *, columns: int, styled: bool, now: dt.datetime) -> None:
    """``list``'s table. ``columns``: the terminal's width (0 when unknown, e.g. a pipe): the table is made
    to fit it, purposes then labels cut first, and gets a File column when that fits too. Ages are the
    app list's short ones (``5h``, ``3d``): the date is beside them. ``styled``: snapshots younger than a
    day are bold."""
    heads = [migration_text(s.meta) for s in snaps]
    migration = any(heads)
    headers = ["#", "Label", "Date (UTC)", "Age", "Type", "Size", "Purpose", *(["Migration"] if migration else []),
               "File", "Flags"]
    rows = [[str(i), s.label, s.timestamp.strftime("%Y-%m-%d %H:%M"), compact_age(s.timestamp, now),
             s.type if s.meta else "?", human_size(s.size_bytes), cut(s.purpose, PURPOSE_WIDTH),
             *([(head or "-").split(" ")[0]] if migration else []), s.filename,
             ("!" if not s.valid else "") + ("P" if is_protected(s) else "")]
            for i, (s, head) in enumerate(zip(snaps, heads, strict=True), 1)]
    file_col = len(headers) - 2
    if not columns or table_width(column_widths(rows, headers)) > columns:
        del headers[file_col]
        for r in rows:
            del r[file_col]
    recent = {i for i, s in enumerate(snaps) if now - s.timestamp < dt.timedelta(days=1)} if styled else set()
    print_table(rows, headers, width=columns, shrink=((6, 12), (1, 16), (6, 7), (1, 10)), bold=recent)
    print(FLAGS_LEGEND)


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
