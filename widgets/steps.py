"""The steps of a multi-step operation (pre-rollback snapshot, restore, smoke test) with live status. A step
the engine names that is not listed yet is appended, so a new engine step shows up without a UI change."""

from __future__ import annotations

from dataclasses import dataclass

from textual.content import Content
from textual.widgets import Static

#: status -> (glyph, style). "pending" is ours: a step the engine has not reached yet.
GLYPHS = {
    "pending": ("○", "$text-muted"),
    "running": ("◐", "bold $text-accent"),
    "ok": ("✔", "$text-success"),
    "skipped": ("–", "$text-muted"),  # noqa: RUF001 - the CLI prints the same dash
    "failed": ("✘", "bold $text-error"),
    "warning": ("!", "bold $text-warning"),
    "cancelled": ("■", "$text-warning"),
}


@dataclass
class StepState:
    name: str
    status: str = "pending"
    detail: str = ""


class StepList(Static):
    """One line per step: glyph, name, detail."""

    def __init__(self, names: list[str], initial: dict[str, tuple[str, str]] | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.steps = [StepState(n, *(initial or {}).get(n, ("pending", ""))) for n in names]

    def on_mount(self) -> None:
        self._render_steps()

    def set(self, name: str, status: str, detail: str = "") -> None:
        step = self.get(name)
        if step is None:
            step = StepState(name)
            self.steps.append(step)
        step.status, step.detail = status, detail
        self._render_steps()

    def get(self, name: str) -> StepState | None:
        return next((s for s in self.steps if s.name == name), None)

    def end_running(self, status: str, detail: str) -> None:
        """Work stopped: whatever was still running gets ``status`` (failed or cancelled)."""
        for step in self.steps:
            if step.status == "running":
                step.status, step.detail = status, detail
        self._render_steps()

    def _render_steps(self) -> None:
        width = max(len(s.name) for s in self.steps) if self.steps else 0
        lines = []
        for s in self.steps:
            glyph, style = GLYPHS.get(s.status, ("·", ""))
            lines.append(Content.assemble((glyph, style), " ", (f"{s.name:<{width}}", "bold"),
                                          ("  " + s.detail if s.detail else "", "$text-muted")))
        self.update(Content("\n").join(lines))
