"""The backup & restore workflow file: loaded with a safe YAML loader and checked before the app starts.

The forms (create, restore confirmation) and the palette's ``*snapshot``-style commands are built from
``backup-restore-workflow.yaml`` so that wording, defaults and options live in one data file. The file is
data, never a script: each operation names one of the app's built-in actions (``ACTIONS``); keys this
module does not know (the story's shell ``command:`` steps among them) make the file invalid, so a typo
is a clear error at start instead of a form that silently lost a field.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import yaml

from services.errors import BadInput
from services.snapshots.store import check_label

WORKFLOW_FILE = "backup-restore-workflow.yaml"

#: The app actions an operation may name (methods ``action_<name>`` of the main screen).
ACTIONS = frozenset({"new_snapshot", "restore", "show_list", "cleanup", "diff"})
#: Operations the app needs, and the fields each must declare (name -> type).
REQUIRED = {
    "snapshot": {"label": "text", "snapshot_type": "choice", "purpose": "text"},
    "restore": {"pre_snapshot": "boolean"},
    "list": {},
    "cleanup": {},
}
FIELD_TYPES = frozenset({"text", "choice", "boolean"})

_TOP_KEYS = {"id", "name", "description", "version", "question", "operations"}
_OP_KEYS = {"id", "label", "palette", "action", "help", "fields", "confirm"}
_FIELD_KEYS = {"name", "label", "type", "default", "options"}
_CONFIRM_KEYS = {"question", "default", "options"}


@dataclass(frozen=True)
class Option:
    label: str
    value: str


@dataclass(frozen=True)
class Field:
    """One form input: ``text`` (an Input), ``choice`` (a radio set) or ``boolean`` (a checkbox)."""

    name: str
    label: str
    type: str
    default: str | bool | None = None
    options: tuple[Option, ...] = ()


@dataclass(frozen=True)
class Confirm:
    question: str
    default: str
    options: tuple[Option, ...]


@dataclass(frozen=True)
class Operation:
    id: str
    label: str
    action: str
    palette: str = ""
    help: str = ""
    fields: tuple[Field, ...] = ()
    confirm: Confirm | None = None

    def field(self, name: str) -> Field | None:
        return next((f for f in self.fields if f.name == name), None)


@dataclass(frozen=True)
class Workflow:
    """The file's ``id``, ``description``, ``version`` and ``question`` are checked, not used."""

    name: str
    operations: tuple[Operation, ...]

    def operation(self, op_id: str) -> Operation:
        return next(op for op in self.operations if op.id == op_id)


class _Broken(Exception):
    """What is wrong, in words; turned into one BadInput naming the file."""


def default_path() -> Path:
    return Path(str(resources.files("app").joinpath(WORKFLOW_FILE)))


def load_workflow(path: Path | None = None) -> Workflow:
    """Read and check the workflow file; a missing or broken file raises BadInput naming the problem."""
    path = Path(path) if path is not None else default_path()
    try:
        return _parse(yaml.safe_load(path.read_text(encoding="utf-8")))
    except OSError as exc:
        problem = f"it cannot be read ({exc.strerror or 'an I/O error'})"
    except UnicodeDecodeError:
        problem = "it is not UTF-8 text"
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = f"it is not valid YAML{where}"
    except _Broken as exc:
        problem = str(exc)
    raise BadInput(f"The workflow file {path} is broken: {problem}.",
                   "Fix it, or reinstall dbsage-tui to get the original back.")


def _mapping(value, where: str, allowed: set[str], required: set[str]) -> dict:
    if not isinstance(value, dict):
        raise _Broken(f"{where} is not a mapping")
    unknown = sorted(set(value) - allowed)
    if unknown:
        extra = " (shell commands are not supported: this file is data)" if "command" in unknown else ""
        raise _Broken(f"{where} has an unknown key {unknown[0]!r}{extra}")
    missing = sorted(k for k in required if k not in value)
    if missing:
        raise _Broken(f"{where} lacks the key {missing[0]!r}")
    return value


def _text(value, where: str, *, empty_ok: bool = False) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or (not empty_ok and not value.strip()):
        raise _Broken(f"{where} must be a non-empty string")
    return value


def _options(value, where: str) -> tuple[Option, ...]:
    if not isinstance(value, list) or not value:
        raise _Broken(f"{where} must be a non-empty list")
    opts = []
    for i, raw in enumerate(value, 1):
        m = _mapping(raw, f"{where} #{i}", {"label", "value"}, {"label", "value"})
        opts.append(Option(_text(m["label"], f"{where} #{i} label"),
                           _text(m["value"], f"{where} #{i} value")))
    if len({o.value for o in opts}) != len(opts):
        raise _Broken(f"{where} repeats a value")
    return tuple(opts)


def _field(raw, where: str) -> Field:
    m = _mapping(raw, where, _FIELD_KEYS, {"name", "label", "type"})
    name = _text(m["name"], f"{where} name")
    where = f"field {name!r}"
    ftype = m["type"]
    if ftype not in FIELD_TYPES:
        raise _Broken(f"{where} has type {ftype!r}; use one of {', '.join(sorted(FIELD_TYPES))}")
    default = m.get("default")
    options: tuple[Option, ...] = ()
    if ftype == "choice":
        options = _options(m.get("options"), f"{where} options")
        if default is None:
            default = options[0].value
        if default not in {o.value for o in options}:
            raise _Broken(f"{where} default {default!r} is not one of its options")
    elif "options" in m:
        raise _Broken(f"{where} has options but is not a choice")
    elif ftype == "boolean":
        default = False if default is None else default
        if not isinstance(default, bool):
            raise _Broken(f"{where} default must be true or false")
    else:
        default = "" if default is None else _text(default, f"{where} default", empty_ok=True)
    return Field(name, _text(m["label"], f"{where} label"), ftype, default, options)


def _operation(raw, i: int) -> Operation:
    m = _mapping(raw, f"operation #{i}", _OP_KEYS, {"id", "label", "action"})
    op_id = _text(m["id"], f"operation #{i} id")
    where = f"operation {op_id!r}"
    if m["action"] not in ACTIONS:
        raise _Broken(f"{where} names the unknown action {m['action']!r}; "
                      f"use one of {', '.join(sorted(ACTIONS))}")
    raw_fields = m.get("fields") or []
    if not isinstance(raw_fields, list):
        raise _Broken(f"{where} fields must be a list")
    fields = tuple(_field(f, f"{where} field #{j}") for j, f in enumerate(raw_fields, 1))
    if len({f.name for f in fields}) != len(fields):
        raise _Broken(f"{where} declares a field twice")
    confirm = None
    if "confirm" in m:
        c = _mapping(m["confirm"], f"{where} confirm", _CONFIRM_KEYS, _CONFIRM_KEYS)
        opts = _options(c["options"], f"{where} confirm options")
        if {o.value for o in opts} != {"yes", "no"}:
            raise _Broken(f"{where} confirm options must be exactly 'yes' and 'no'")
        if c["default"] not in ("yes", "no"):
            raise _Broken(f"{where} confirm default must be 'yes' or 'no'")
        confirm = Confirm(_text(c["question"], f"{where} question"), c["default"], opts)
    palette = _text(m.get("palette", ""), f"{where} palette", empty_ok=True)
    return Operation(op_id, _text(m["label"], f"{where} label"), m["action"], palette,
                     _text(m.get("help", ""), f"{where} help", empty_ok=True), fields, confirm)


def _parse(data) -> Workflow:
    top = _mapping(data, "the file", {"workflow"}, {"workflow"})
    w = _mapping(top["workflow"], "workflow", _TOP_KEYS, _TOP_KEYS)
    if not isinstance(w["operations"], list):
        raise _Broken("workflow operations must be a list")
    ops = tuple(_operation(raw, i) for i, raw in enumerate(w["operations"], 1))
    by_id = {op.id: op for op in ops}
    if len(by_id) != len(ops):
        raise _Broken("two operations share an id")
    for op_id, needed in REQUIRED.items():
        if op_id not in by_id:
            raise _Broken(f"the operation {op_id!r} is missing")
        for name, ftype in needed.items():
            if not any(f.name == name and f.type == ftype for f in by_id[op_id].fields):
                raise _Broken(f"operation {op_id!r} needs a {ftype} field {name!r}")
    snap = by_id["snapshot"]
    if not {"full", "schema"} <= {o.value for o in snap.field("snapshot_type").options} <= {"full", "schema", "clone"}:
        raise _Broken("field 'snapshot_type' options must be 'full' and 'schema' (and optionally 'clone')")
    comp = snap.field("compression")
    if comp and (comp.type != "choice" or not {o.value for o in comp.options} <= {"none", "gzip", "zstd"}):
        raise _Broken("field 'compression' must be a choice of 'none', 'gzip' and 'zstd'")
    try:
        check_label(str(snap.field("label").default))
    except BadInput as exc:
        raise _Broken(f"field 'label' default: {exc.message}") from None
    if by_id["restore"].confirm is None:
        raise _Broken("operation 'restore' needs a confirm question")
    palettes = [op.palette for op in ops if op.palette]
    if len(set(palettes)) != len(palettes):
        raise _Broken("two operations share a palette command")
    texts = {key: _text(w[key], f"workflow {key}") for key in ("id", "name", "description", "version", "question")}
    return Workflow(texts["name"], ops)
