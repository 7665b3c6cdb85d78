"""The snapshot table's cells: what each column shows of a snapshot, from plain values.

``SnapshotTable`` keeps, per row, each column's inputs (values it can compare) and builds the Rich ``Text``
of a cell only when the row is drawn, so only rows on the screen are ever built. ``cell_widths`` gives the
widths the cells will have from the same inputs, so that the table sizes its columns without building them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from rich.text import Text

from services.display import human_size

#: (header, key) of each column, in order. "#" is the list number of the CLI (1 = newest).
COLUMNS = (("#", "index"), ("Label", "label"), ("Date (UTC)", "date"), ("Age", "age"), ("Type", "type"),
           ("Size", "size"), ("Purpose", "purpose"))
#: Glyphs in front of a label; the help screen and the table's subtitle explain them.
INVALID_MARK, PROTECTED_MARK, GUARD_MARK, DIFF_MARK = "✗", "◆", "⚑", "●"
#: Labels longer than this are shortened in the table (the preview shows them whole).
MAX_LABEL = 32


def number_width(index: int) -> int:
    """The width of the "#" cell of list number ``index``."""
    return len(str(index)) + 1


_SIZES: dict[int, str] = {}
_TYPES = {"full": " full", "schema-only": " schema", "clone": " clone", "…": " …"}  # the preview spells it out


def _size_text(size: int) -> str:
    text = _SIZES.get(size)
    if text is None:
        text = _SIZES[size] = " " + human_size(size)
    return text


def guard_state(meta: dict | None) -> str | None:
    """What the label's guard mark says of a snapshot taken by ``dbsage-tui guard``: "ok" (the command
    succeeded), "failed" (it failed, rolled back or not), "unknown" (no outcome recorded: dbsage-tui was
    stopped while it ran), None (not guarded). The preview tells the whole outcome."""
    guard = (meta or {}).get("guard")
    if not isinstance(guard, dict):
        return None
    code = guard.get("exit_code")
    return "unknown" if code is None else "ok" if code == 0 else "failed"


_GUARD_COLORS = {"ok": ("text-success", "green"), "failed": ("text-error", "red"),
                 "unknown": ("text-warning", "yellow")}


def _marks(valid: bool, protected: bool, guard: str | None, marked: bool) -> int:
    return (not valid) + protected + (guard is not None) + marked


def _label_width(label: str, valid: bool, protected: bool, guard: str | None, marked: bool, recent: bool) -> int:
    # A label is ASCII (the snapshot file name pattern), one cell a character.
    return min(1 + 2 * _marks(valid, protected, guard, marked) + len(label), MAX_LABEL + 1)


def _index_cell(index: int, colors: dict) -> Text:
    return Text(f" {index}", justify="right")


def _label_cell(label: str, valid: bool, protected: bool, guard: str | None, marked: bool, recent: bool,
                colors: dict) -> Text:
    text = Text(" ", no_wrap=True)
    if not valid:
        text.append(INVALID_MARK + " ", colors.get("text-error", "red"))
    if protected:
        text.append(PROTECTED_MARK + " ", colors.get("text-warning", "yellow"))
    if guard is not None:
        name, fallback = _GUARD_COLORS[guard]
        text.append(GUARD_MARK + " ", ("bold " if guard == "failed" else "") + colors.get(name, fallback))
    if marked:
        text.append(DIFF_MARK + " ", colors.get("text-accent", "magenta"))
    text.append(label, "bold" if recent else "")
    text.truncate(MAX_LABEL + 1, overflow="ellipsis")
    return text


def _fresh(recent: bool, colors: dict) -> str:
    return f"bold {colors.get('text-success', 'green')}" if recent else ""


def _date_cell(ts: dt.datetime, recent: bool, colors: dict) -> Text:
    return Text(f" {ts:%Y-%m-%d %H:%M}", _fresh(recent, colors))


def _age_cell(age: str, recent: bool, colors: dict) -> Text:
    return Text(" " + age, _fresh(recent, colors))


def _type_cell(kind: str, colors: dict) -> Text:
    return Text(_TYPES.get(kind, " ?"))


def _size_cell(size: int, colors: dict) -> Text:
    return Text(_size_text(size), justify="right")


def _purpose_cell(purpose: str, problem: str | None, colors: dict) -> Text:
    # Cut to the column's width (with "…") when rendered, so that a resize rebuilds no cell.
    if problem is None:
        return Text(" " + purpose, no_wrap=True, overflow="ellipsis")
    return Text(f" invalid: {problem}", colors.get("text-error", "red"), no_wrap=True, overflow="ellipsis")


BUILDERS: dict[str, Callable[..., Text]] = {
    "index": _index_cell, "label": _label_cell, "date": _date_cell, "age": _age_cell, "type": _type_cell,
    "size": _size_cell, "purpose": _purpose_cell,
}
KEYS = tuple(key for _, key in COLUMNS)
BUILT = tuple(BUILDERS[key] for key in KEYS)


def cell_widths(label: tuple, age: str, kind: str, size: int) -> tuple[int, ...]:
    """The widths of a row's cells but the number's (``number_width``) and the purpose's (that column gets
    the room left), in COLUMNS order, from the same inputs, without building them."""
    return (_label_width(*label), 17, len(age) + 1,  # date: " YYYY-mm-dd HH:MM"; an age is ASCII
            len(_TYPES.get(kind, " ?")), len(_size_text(size)))
