"""The schema a plain pg_dump file holds, as objects with canonical properties: what ``diff`` compares.

- **Streaming.** The file passes once through ``DumpScanner``: COPY data goes by counted, never kept; the
  DDL is gathered one pg_dump TOC entry at a time (``-- Name: ...; Type: ...`` starts one) and parsed as
  the entry ends, so memory follows the largest single schema object, not the dump.
- **Parsed, not textual.** Each entry is parsed with pglast (PostgreSQL's own parser) and each object kept
  as canonical SQL (``canonical``), so formatting, ``varchar`` spellings, pg_dump's OIDs and the column
  options a server stamps itself never show up as changes. psql meta-commands (``\\restrict KEY``), COPY,
  the ``--clean`` DROPs, SETs and ``setval`` are not schema and are skipped; an entry pglast cannot parse
  is kept as whitespace-normalised text under its TOC name, and noted.
- **Objects, not statements.** A default set by a later ``ALTER TABLE`` belongs to its column, a constraint
  added so to its table, a GRANT or COMMENT to its object: each object records what it belongs to
  (``Obj.parent``), so that a table added or removed carries its columns, indexes, policies and the rest.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pglast import ast, enums, parse_sql
from pglast.parser import ParseError

from services.diff.canonical import (
    body_sql,
    canon,
    canon_without,
    dotted,
    object_target,
    rv_name,
    signature,
    without_server_stamps,
)
from services.events import Progress, Reporter, null_reporter
from services.snapshots import compression
from services.snapshots.scanner import TOC_RE, DumpScanner

#: Order of kinds in reports: containers first, then what lives in them.
KINDS = ("schema", "extension", "type", "sequence", "table", "column", "constraint", "index", "view",
         "materialized_view", "function", "procedure", "aggregate", "trigger", "policy", "rule", "comment",
         "grant")
_META_RE = re.compile(rb"^\\(restrict|unrestrict|connect)\b")
#: Statements that are not schema: session settings, the --clean DROPs, setval/set_config, matview refresh.
_SKIP = (ast.VariableSetStmt, ast.DropStmt, ast.SelectStmt, ast.RefreshMatViewStmt, ast.AlterOwnerStmt)


@dataclass
class Obj:
    """One schema object: named properties in canonical SQL, and the object it belongs to (for folding)."""

    props: dict[str, str | list[str]] = field(default_factory=dict)
    parent: str | None = None  # a token such as "rel:public.actor" or "function:public.f(integer)"


@dataclass
class Model:
    """What one dump holds: schema objects by (kind, name), COPY row counts, and what the scan found."""

    objects: dict[tuple[str, str], Obj] = field(default_factory=dict)
    row_counts: dict[str, int] = field(default_factory=dict)  # every COPY block's table, even of 0 rows
    complete: bool = False
    has_header: bool = False
    unparsed: list[str] = field(default_factory=list)  # TOC names compared as text


# -- building a model from one dump ------------------------------------------------------------------------

class _Builder:
    """Receives the dump's non-COPY lines, one TOC entry at a time, and turns statements into objects."""

    def __init__(self, model: Model, on_sql: Callable[[str], None] | None) -> None:
        self.model = model
        self.on_sql = on_sql
        self.lines: list[str] = []
        self.toc: tuple[str, str, str] | None = None  # (type, schema, name) of the entry being gathered

    def on_line(self, line: bytes) -> None:
        if line.startswith((b"-- Name: ", b"-- Data for Name: ", b"-- Statistics for Name: ")):
            self.flush()
            m = TOC_RE.match(line.decode("utf-8", "replace"))
            self.toc = (m["type"], m["schema"], m["name"]) if m else None
            return
        if self.toc and self.toc[0] == "STATISTICS DATA":
            return  # the planner's statistics (PostgreSQL 18 snapshots) are not part of the schema
        if _META_RE.match(line) or (line.startswith(b"COPY ") and line.rstrip().endswith(b"FROM stdin;")):
            return
        self.lines.append(line.decode("utf-8", "replace"))

    def flush(self) -> None:
        text, self.lines = "\n".join(self.lines), []
        if not text.strip():
            return
        if self.on_sql is not None:
            self.on_sql(text)
        try:
            stmts = parse_sql(text)
        except ParseError:
            body = " ".join(ln for ln in text.splitlines() if not ln.lstrip().startswith("--")).split()
            self.model.unparsed.append(self._by_toc("sql", " ".join(body), "?"))
            return
        for raw in stmts:
            self.statement(raw.stmt)

    def _by_toc(self, prop: str, value: str, unnamed: str) -> str:
        """Keep ``value`` under the TOC entry's name (what we have no model for); returns that name."""
        kind, schema, name = self.toc or ("OTHER", "-", unnamed)
        full = name if schema == "-" else f"{schema}.{name}"
        self.set(kind.lower().replace(" ", "_"), full, prop, value, append=True)
        return f"{kind.lower()} {full}"

    # -- objects ---------------------------------------------------------------------------------------
    def set(self, kind: str, name: str, prop: str, value: str | None, *, parent: str | None = None,
            append: bool = False) -> None:
        o = self.model.objects.setdefault((kind, name), Obj())
        if parent is not None:
            o.parent = parent
        if value is None:
            o.props.pop(prop, None)
        elif append:
            o.props.setdefault(prop, []).append(value)
        else:
            o.props[prop] = value

    def statement(self, n) -> None:
        if isinstance(n, _SKIP):
            return
        if whole := _WHOLE.get(type(n)):
            kind, name = whole
            self.set(kind, name(n), "definition", canon(n))
        elif on := _ON_RELATION.get(type(n)):
            kind, relation, name = on
            rel = rv_name(relation(n))
            self.set(kind, f"{rel}.{name(n)}", "definition", canon(n), parent=f"rel:{rel}")
        else:
            _HANDLERS.get(type(n), _Builder.other)(self, n)

    def other(self, n) -> None:
        """Anything we have no model for (publications, operators, text search...): by its TOC name."""
        self._by_toc("definition", canon(n), type(n).__name__)

    # -- tables and columns ----------------------------------------------------------------------------
    def create_table(self, n: ast.CreateStmt) -> None:
        table = rv_name(n.relation)
        self.set("table", table, "definition", canon_without(n, tableElts=None))
        self.set("table", table, "row level security", "disabled")
        for elt in n.tableElts or ():
            if isinstance(elt, ast.ColumnDef):
                self._column(table, elt)
            elif isinstance(elt, ast.Constraint) and elt.conname:
                self.set("constraint", f"{table}.{elt.conname}", "definition", canon(elt),
                         parent=f"rel:{table}")
            else:
                self.set("table", table, "elements", canon(elt), append=True)

    def create_foreign_table(self, n: ast.CreateForeignTableStmt) -> None:
        self.create_table(n.base)
        self.set("table", rv_name(n.base.relation), "definition", canon_without(n, n.base, tableElts=None))

    def _column(self, table: str, col: ast.ColumnDef) -> None:
        name, parent = f"{table}.{col.colname}", f"rel:{table}"
        typ = canon(col.typeName) + (f" {canon(col.collClause)}" if col.collClause else "")
        self.set("column", name, "type", typ, parent=parent)
        self.set("column", name, "nullable", "NULL")
        for c in col.constraints or ():
            ct = enums.ConstrType
            if c.contype == ct.CONSTR_NOTNULL:
                self.set("column", name, "nullable", "NOT NULL")
            elif c.contype == ct.CONSTR_DEFAULT:
                self.set("column", name, "default", canon(c.raw_expr))
            elif c.contype == ct.CONSTR_GENERATED:
                self.set("column", name, "generated", canon(c))
            elif c.contype == ct.CONSTR_IDENTITY:
                self.set("column", name, "identity", canon(c))
            elif c.conname:
                self.set("constraint", f"{table}.{c.conname}", "definition", canon(c), parent=parent)
            else:
                self.set("column", name, "constraints", canon(c), append=True)

    def alter_table(self, n: ast.AlterTableStmt) -> None:
        if n.missing_ok:  # ALTER TABLE IF EXISTS ... DROP CONSTRAINT: the --clean preamble
            return
        n.cmds = without_server_stamps(n.cmds)
        if not n.cmds:
            return
        rel = rv_name(n.relation)
        if n.objtype == enums.ObjectType.OBJECT_INDEX:
            # ATTACH PARTITION of an index follows from the table partitions and the indexes themselves.
            if any(c.subtype != enums.AlterTableType.AT_AttachPartition for c in n.cmds):
                self.set("index", rel, "alter", canon(n), append=True)
            return
        at = enums.AlterTableType
        for cmd in n.cmds:
            col = f"{rel}.{cmd.name}" if cmd.name else None
            if cmd.subtype == at.AT_AddConstraint and cmd.def_.conname:
                self.set("constraint", f"{rel}.{cmd.def_.conname}", "definition", canon(cmd.def_),
                         parent=f"rel:{rel}")
            elif cmd.subtype == at.AT_ColumnDefault and col:
                self.set("column", col, "default", canon(cmd.def_) if cmd.def_ else None, parent=f"rel:{rel}")
            elif cmd.subtype == at.AT_AddIdentity and col:
                self.set("column", col, "identity", canon(cmd.def_), parent=f"rel:{rel}")
            elif cmd.subtype == at.AT_SetNotNull and col:
                self.set("column", col, "nullable", "NOT NULL", parent=f"rel:{rel}")
            elif cmd.subtype == at.AT_AttachPartition:
                self.set("table", rv_name(cmd.def_.name), "partition of", f"{rel} {canon(cmd.def_.bound)}")
            elif cmd.subtype == at.AT_EnableRowSecurity:
                self.set("table", rel, "row level security", "enabled")
            elif cmd.subtype == at.AT_ForceRowSecurity:
                self.set("table", rel, "row level security forced", "yes")
            elif col:
                self.set("column", col, "alter", canon(n), append=True, parent=f"rel:{rel}")
            else:
                self.set("table", rel, "alter", canon(n), append=True)

    # -- relations that are not tables -----------------------------------------------------------------
    def index(self, n: ast.IndexStmt) -> None:
        self.set("index", f"{n.relation.schemaname}.{n.idxname}", "definition", canon(n),
                 parent=f"rel:{rv_name(n.relation)}")

    def create_table_as(self, n: ast.CreateTableAsStmt) -> None:
        kind = "materialized_view" if n.objtype == enums.ObjectType.OBJECT_MATVIEW else "table"
        self.set(kind, rv_name(n.into.rel), "definition", canon(n))

    def alter_seq(self, n: ast.AlterSeqStmt) -> None:
        seq = rv_name(n.sequence)
        for opt in n.options or ():
            if opt.defname == "owned_by":
                owner = dotted(opt.arg)
                table = owner.rsplit(".", 1)[0]
                self.set("sequence", seq, "owned by", owner, parent=f"rel:{table}" if "." in owner else None)
            else:
                self.set("sequence", seq, "alter", canon(opt), append=True)

    # -- routines and types ----------------------------------------------------------------------------
    def create_function(self, n: ast.CreateFunctionStmt) -> None:
        kind = "procedure" if n.is_procedure else "function"
        name = signature(n.funcname, n.parameters)
        body = next((o for o in n.options or () if o.defname == "as"), None)
        if body is not None:  # AS 'source' (or AS 'file', 'symbol' for C): compared verbatim, as stored
            parts = body.arg if isinstance(body.arg, tuple) else (body.arg,)
            text = "\n".join(p.sval for p in parts).strip()
        else:  # BEGIN ATOMIC ... END or RETURN expr: parsed SQL, compared canonically
            text = body_sql(n.sql_body)
        options = tuple(o for o in n.options or () if o.defname != "as") or None
        self.set(kind, name, "definition", canon_without(n, options=options, sql_body=None, returnType=None))
        self.set(kind, name, "returns", canon(n.returnType) if n.returnType else None)
        self.set(kind, name, "body", text)

    def define(self, n: ast.DefineStmt) -> None:
        ot = enums.ObjectType
        if n.kind == ot.OBJECT_AGGREGATE:
            params = n.args[0] if n.args and isinstance(n.args[0], tuple) else ()
            self.set("aggregate", signature(n.defnames, params), "definition", canon(n))
        elif n.kind == ot.OBJECT_TYPE:
            if n.definition:  # a shell type ("CREATE TYPE x;") is only a forward declaration
                self.set("type", dotted(n.defnames), "definition", canon(n))
        else:
            self.other(n)

    def alter_domain(self, n: ast.AlterDomainStmt) -> None:
        self.set("type", dotted(n.typeName), "alter", canon(n), append=True)

    # -- what belongs to another object ---------------------------------------------------------------
    def comment(self, n: ast.CommentStmt) -> None:
        word, name, token = object_target(n.objtype, n.object)
        self.set("comment", f"{word} {name}", "text", n.comment, parent=token)

    def grant(self, n: ast.GrantStmt) -> None:
        for obj in n.objects or ():
            word, name, token = object_target(n.objtype, obj)
            self.set("grant", f"{word} {name}", "privileges", canon(n), parent=token, append=True)


#: Statements that define one object, whole: node type -> (kind, its name). A later CREATE OR REPLACE wins.
_WHOLE = {
    ast.ViewStmt: ("view", lambda n: rv_name(n.view)),
    ast.CreateSeqStmt: ("sequence", lambda n: rv_name(n.sequence)),
    ast.CreateEnumStmt: ("type", lambda n: dotted(n.typeName)),
    ast.CreateRangeStmt: ("type", lambda n: dotted(n.typeName)),
    ast.CompositeTypeStmt: ("type", lambda n: rv_name(n.typevar)),
    ast.CreateDomainStmt: ("type", lambda n: dotted(n.domainname)),
    ast.CreateSchemaStmt: ("schema", lambda n: n.schemaname),
    ast.CreateExtensionStmt: ("extension", lambda n: n.extname),
}
#: Statements that define an object on a relation, named after it: node type -> (kind, relation, name).
_ON_RELATION = {
    ast.CreateTrigStmt: ("trigger", lambda n: n.relation, lambda n: n.trigname),
    ast.CreatePolicyStmt: ("policy", lambda n: n.table, lambda n: n.policy_name),
    ast.RuleStmt: ("rule", lambda n: n.relation, lambda n: n.rulename),
}
#: The statements modelled by a _Builder method; any other goes to ``_Builder.other``.
_HANDLERS = {
    ast.CreateStmt: _Builder.create_table, ast.CreateForeignTableStmt: _Builder.create_foreign_table,
    ast.AlterTableStmt: _Builder.alter_table, ast.IndexStmt: _Builder.index,
    ast.CreateTableAsStmt: _Builder.create_table_as, ast.AlterSeqStmt: _Builder.alter_seq,
    ast.CreateFunctionStmt: _Builder.create_function, ast.DefineStmt: _Builder.define,
    ast.AlterDomainStmt: _Builder.alter_domain, ast.CommentStmt: _Builder.comment, ast.GrantStmt: _Builder.grant,
}


def load_model(path: Path | str, *, on_sql: Callable[[str], None] | None = None,
               report: Reporter = null_reporter) -> Model:
    """Scan one dump file into a ``Model``. ``on_sql`` sees each TOC entry's SQL as it goes to the parser
    (the tests use it to prove COPY data never does)."""
    model = Model()
    builder = _Builder(model, on_sql)
    scanner = DumpScanner(on_line=builder.on_line)
    path = Path(path)
    total, started, last = path.stat().st_size, time.monotonic(), 0.0
    with open(path, "rb") as fh:
        raw = compression.HashingReader(fh)
        for chunk in compression.iter_plain(raw, compression.method_of(path.name)):
            scanner.feed(chunk)
            if (now := time.monotonic()) - last >= 0.1:
                last = now
                report(Progress("diff", raw.read_bytes, total, now - started))
    result = scanner.finish()
    builder.flush()
    model.row_counts, model.has_header, model.complete = result.row_counts, result.has_header, result.complete
    for obj in model.objects.values():  # repeated statements (GRANTs, ALTERs) compare as a set
        for key, value in obj.props.items():
            if isinstance(value, list):
                obj.props[key] = "\n".join(sorted(value))
    return model
