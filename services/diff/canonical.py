"""Canonical SQL and names of pglast parse nodes, for ``services.diff.schema``: the same object written
two ways (``character varying`` or ``varchar``, pg_dump's OID comments, columns options the server stamps
itself) prints the same, and every object gets the name PostgreSQL gives it."""

from __future__ import annotations

import json

from pglast import ast, enums
from pglast.stream import RawStream

from services.server.replay_filter import SERVER_STAMPED_OPTIONS

RELATION_KINDS = ("table", "view", "materialized_view")


def canon(node) -> str:
    """Canonical SQL for a node; the location-free parse tree when pglast has no printer for it."""
    try:
        return RawStream()(node)
    except Exception:  # noqa: BLE001 - any printer gap; the tree itself is just as canonical
        return json.dumps(_no_locations(node()), sort_keys=True, default=str)


def canon_without(node, part=None, **blanked) -> str:
    """``canon(node)`` with some attributes of ``part`` (default: the node) set aside for the call: how a
    table's definition is told apart from its columns. Cheaper than a deep copy, which dominated the time."""
    part = node if part is None else part
    saved = {key: getattr(part, key) for key in blanked}
    try:
        for key, value in blanked.items():
            setattr(part, key, value)
        return canon(node)
    finally:
        for key, value in saved.items():
            setattr(part, key, value)


def without_server_stamps(cmds):
    """ALTER TABLE commands without the column options a server sets itself (``replay_filter``; like the OIDs in
    pg_dump's comments, not something a snapshot or a restore can carry); a SET of nothing else goes."""
    out = []
    for cmd in cmds or ():
        if cmd.subtype == enums.AlterTableType.AT_SetOptions and cmd.def_:
            kept = tuple(d for d in cmd.def_ if d.defname not in SERVER_STAMPED_OPTIONS)
            if not kept:
                continue
            cmd.def_ = kept
        out.append(cmd)
    return tuple(out)


def _no_locations(value):
    if isinstance(value, dict):
        return {k: _no_locations(v) for k, v in value.items() if "location" not in k}
    if isinstance(value, (list, tuple)):
        return [_no_locations(v) for v in value]
    return value


def body_sql(body) -> str:
    if isinstance(body, tuple):
        return "; ".join(body_sql(b) for b in body if b is not None)
    return canon(body) if body is not None else ""


def rv_name(rv: ast.RangeVar) -> str:
    return f"{rv.schemaname}.{rv.relname}" if rv.schemaname else rv.relname


def dotted(names) -> str:
    return ".".join(n.sval if isinstance(n, ast.String) else canon(n) for n in names or ())


_NO_ARG_MODES = (enums.FunctionParameterMode.FUNC_PARAM_OUT, enums.FunctionParameterMode.FUNC_PARAM_TABLE)


def signature(names, params) -> str:
    """``schema.f(integer, text)``: the identity arguments, as PostgreSQL names a routine (no OUT args)."""
    args = [canon(p.argType) for p in params or () if p.mode not in _NO_ARG_MODES]
    return f"{dotted(names)}({', '.join(args)})"


def object_target(objtype, obj) -> tuple[str, str, str]:
    """The (kind word, name, parent token) of a COMMENT's or GRANT's object."""
    word = objtype.name.removeprefix("OBJECT_").lower()
    word = {"matview": "materialized_view", "tabconstraint": "constraint", "foreign_table": "table",
            "domain": "type", "routine": "function"}.get(word, word)
    if isinstance(obj, ast.RangeVar):
        name = rv_name(obj)
    elif isinstance(obj, ast.ObjectWithArgs):
        name = f"{dotted(obj.objname)}({', '.join(canon(t) for t in obj.objargs or ())})"
    elif isinstance(obj, ast.TypeName):
        name = dotted(obj.names)
    elif isinstance(obj, ast.String):
        name = obj.sval
    elif isinstance(obj, tuple):
        name = dotted(obj)
    else:
        name = canon(obj)
    return word, name, (f"rel:{name}" if word in RELATION_KINDS else f"{word}:{name}")
