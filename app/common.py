"""What the two faces, the CLI and the TUI, show alike: progress lines and the file an unexpected error
leaves for a bug report."""

from __future__ import annotations

import traceback
from pathlib import Path

from services.display import human_size
from services.errors import DbsageError
from services.events import Progress


def progress_text(p: Progress) -> str:
    verb = {"dump": "dumping", "restore": "restoring"}.get(p.phase, p.phase)
    text = f"{verb}: {human_size(p.done)}"
    if p.total:
        text += f" of ~{human_size(p.total)}" if p.phase == "dump" else f" of {human_size(p.total)}"
        frac = p.fraction
        if frac is not None:
            text += f" ({frac:.0%})"
    if p.elapsed > 0.5:
        text += f", {human_size(int(p.rate))}/s"
        if p.eta is not None:
            text += f", ~{p.eta:.0f}s left"
    return text


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
    unexpected error its class and message, with the traceback kept in a file."""
    if isinstance(error, DbsageError):
        return error.one_line(), error.detail
    where = debug_log(error) if error is not None else None
    return (f"Unexpected error: {error.__class__.__name__}: {str(error).rstrip('.')}."
            + (f" Details in {where}." if where else "")), None
