"""What the two faces, the CLI and the TUI, show alike: progress lines, text cut to a column, and the file
an unexpected error leaves for a bug report."""

from __future__ import annotations

import traceback
from pathlib import Path

from services.display import human_size
from services.errors import DbsageError, in_words
from services.events import Progress


def progress_text(p: Progress) -> str:
    """``restoring 30%, ~7s left: 36.0 MB of 120.0 MB at 12.0 MB/s``: what matters first, as a line that is
    cut at its end in a narrow terminal."""
    verb = {"dump": "dumping", "restore": "restoring"}.get(p.phase, p.phase)
    frac = p.fraction if p.total else None
    head = verb + (f" {frac:.0%}" if frac is not None else "")
    moving = p.elapsed > 0.5
    if moving and p.eta is not None:
        head += f", ~{p.eta:.0f}s left"
    text = f"{head}: {human_size(p.done)}"
    if p.past_estimate:
        text += f", past the ~{human_size(p.total)} estimated"
    elif p.total:
        text += f" of ~{human_size(p.total)}" if p.phase == "dump" else f" of {human_size(p.total)}"
    if moving:
        text += f" at {human_size(int(p.rate))}/s"
    return text


def cut(text: str, width: int) -> str:
    """``text`` in at most ``width`` characters, a ``…`` where it is cut."""
    return text if len(text) <= width else text[:max(width - 1, 0)] + "…"


def debug_log(exc: BaseException) -> Path | None:
    """Keep the traceback of an unexpected error in a file the user can attach to a bug report."""
    try:
        from services.config import data_dir
        path = data_dir() / "last-error.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(traceback.format_exception(exc)))
        return path
    except OSError:
        return None


def failure_text(error: BaseException | None) -> tuple[str, str | None]:
    """How a failed operation is told: the engine's one line (and its detail for the log), or for an
    unexpected error its message in words (``in_words``), with the traceback kept in a file."""
    if isinstance(error, DbsageError):
        return error.one_line(), error.detail
    where = debug_log(error) if error is not None else None
    text = in_words(error).rstrip(".") if error is not None else "unexpected error"
    return text[0].upper() + text[1:] + "." + (f" Details in {where}." if where else ""), None
