"""The "new snapshot" form, built from the workflow file's ``snapshot`` operation.

The label is checked live with the engine's own ``check_label`` (the only place the label rule lives);
when it fails, the engine's suggestion is offered as a one-click fix. Enter (or the button) returns a
``CreateRequest``; escape returns None and the caller's focus comes back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from textual import events
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Checkbox, Footer, Input, Label, RadioButton, RadioSet, Static

from app.workflow import Field, Operation
from services.errors import BadInput
from services.snapshots.compression import SUFFIXES
from services.snapshots.store import check_label, suggest_label


@dataclass(frozen=True)
class CreateRequest:
    label: str
    schema_only: bool
    purpose: str
    compression: str = "none"
    clone: bool = False


class CreateSnapshotModal(ModalScreen[CreateRequest | None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q", "dismiss", "Cancel", tooltip="Close without taking a snapshot")]

    def __init__(self, operation: Operation, target: str, compression: str = "none") -> None:
        super().__init__()
        self.operation = operation
        self.target = target
        #: The config file's ``compress:`` is the default choice (the workflow's when there is none).
        self.compression = compression
        self._typed_ahead = False

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="dialog", classes="dialog", can_focus=False):
            yield Label(self.operation.label, classes="dialog-title")
            yield Static(f"Database: {self.target}", classes="dialog-target", markup=False)
            for f in self.operation.fields:
                yield from self._field(f)
            with Horizontal(classes="buttons"):
                yield Button("Cancel", id="cancel", compact=True)
                yield Button("Take snapshot", variant="primary", id="create", compact=True)
        yield Footer(compact=True)

    def _field(self, f: Field) -> ComposeResult:
        if f.type == "boolean":
            yield Checkbox(f.label, value=bool(f.default), id=f"field-{f.name}", compact=True)
            return
        yield Label(f.label, classes="field-label", markup=False)
        if f.type == "choice":
            default = self.compression if f.name == "compression" else f.default
            with RadioSet(id=f"field-{f.name}", compact=True):
                for opt in f.options:
                    yield RadioButton(opt.label, value=opt.value == default)
        else:
            # validate_on=[]: ``-invalid`` is set with the label's hint (``_show_label_check``)
            yield Input(str(f.default or ""), id=f"field-{f.name}", validate_on=[], compact=True)
            if f.name == "label":
                yield Static("", id="label-hint", markup=False)
                yield Button("Use suggestion", id="use-suggestion", compact=True)

    def on_mount(self) -> None:
        self._show_label_check(self.query_one("#field-label", Input).value)
        self.query_one("#field-label", Input).focus()

    def on_key(self, event: events.Key) -> None:
        """Keys typed (or pasted) right after "n" reach the dialog before its label field has focus (it
        gets it once the dialog is mounted): they are the label, replacing the suggestion, as if the field
        had had focus; Enter among them takes the snapshot. Nothing else is ever typed into the field."""
        if self.focused is not None:
            return
        box = self.query_one("#field-label", Input)
        if event.is_printable and event.character:
            event.stop()
            box.value = (box.value if self._typed_ahead else "") + event.character
            box.cursor_position = len(box.value)
            box.select_on_focus = False  # focus arriving now must not select (and so replace) the typing
            self._typed_ahead = True
        elif event.key == "enter" and self._typed_ahead:
            event.stop()
            self._submit()

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "field-label":
            self._show_label_check(event.value)

    def on_radio_set_changed(self) -> None:  # the type and the compression change the suffix in the hint
        self._show_label_check(self.query_one("#field-label", Input).value)

    def _choice(self, name: str) -> str | None:
        """The value chosen in a choice field (its default before any choice), None if there is no field."""
        field = self.operation.field(name)
        if field is None:
            return None
        idx = self.query_one(f"#field-{name}", RadioSet).pressed_index
        return field.options[idx].value if idx >= 0 else field.default

    def _show_label_check(self, value: str) -> None:
        try:
            check_label(value)
            suffix = ".clone" if self._choice("snapshot_type") == "clone" else \
                SUFFIXES.get(self._choice("compression") or "none", ".sql")
            text, invalid = f"✔ saved as <timestamp>_{value}{suffix}", False
        except BadInput as exc:
            text, invalid = exc.one_line(), True
        hint = self.query_one("#label-hint", Static)
        hint.update(text)
        hint.set_class(invalid, "-invalid")
        self.query_one("#field-label", Input).set_class(invalid, "-invalid")
        self.query_one("#use-suggestion", Button).display = invalid

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "cancel":
            self.dismiss(None)
        elif event.button.id == "create":
            self._submit()
        elif event.button.id == "use-suggestion":
            box = self.query_one("#field-label", Input)
            box.value = suggest_label(box.value)
            box.focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self._submit()

    def _submit(self) -> None:
        box = self.query_one("#field-label", Input)
        try:
            check_label(box.value)
        except BadInput:
            box.focus()
            return
        kind = self._choice("snapshot_type")
        self.dismiss(CreateRequest(label=box.value, schema_only=kind == "schema", clone=kind == "clone",
                                   purpose=self.query_one("#field-purpose", Input).value.strip(),
                                   compression=self._choice("compression") or "none"))
