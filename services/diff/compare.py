"""What changed between two snapshots, from the two files alone: each read once into a ``schema.Model``
(see there), the two compared object by object. A table added or removed carries its parts (columns,
constraints, indexes, triggers, policies, rules, comments, grants, owned sequences), not listed again. Row
counts come from both metadata files when both have them, else from the COPY blocks the scans counted; a
schema-only side has none (``data`` false, and a note says why). The result knows nothing of where it is
shown: ``to_json`` for ``--json``, ``format_text`` for humans.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path

from services.diff.canonical import RELATION_KINDS
from services.diff.schema import KINDS, Model, Obj, load_model
from services.errors import InvalidSnapshot
from services.events import Reporter, null_reporter
from services.snapshots import compression
from services.snapshots.listing import order_key

_SHORT = 100  # a change detail shows both values when they fit in this many characters


@dataclass(frozen=True)
class Change:
    kind: str
    name: str
    detail: str = ""


@dataclass(frozen=True)
class RowChange:
    """A table's row count before and after; None where the table does not exist on that side."""

    table: str
    before: int | None
    after: int | None

    @property
    def delta(self) -> int:
        return (self.after or 0) - (self.before or 0)


@dataclass
class DiffResult:
    """What ``diff`` found going from snapshot ``a`` (before) to ``b`` (after); lists sorted by kind, name."""

    a: str
    b: str
    added: list[Change] = field(default_factory=list)
    removed: list[Change] = field(default_factory=list)
    changed: list[Change] = field(default_factory=list)
    rows: list[RowChange] = field(default_factory=list)
    data: bool = True  # False when a side is schema-only: rows were not compared
    rows_source: str | None = None  # "metadata" | "scan" | None
    notes: list[str] = field(default_factory=list)
    #: ``diff_snapshots``: ``a`` is the older snapshot and ``b`` the newer; ``swapped`` when they were given
    #: the other way round. None for ``diff`` of two files, whose order is the caller's.
    swapped: bool | None = None

    @property
    def empty(self) -> bool:
        """Nothing to report (when ``data`` is False, rows were not compared, so only the schema is equal)."""
        return not (self.added or self.removed or self.changed or self.rows)

    def to_json(self) -> dict:
        return {
            "a": self.a, "b": self.b,
            "schema": {"added": [{"kind": c.kind, "name": c.name} for c in self.added],
                       "removed": [{"kind": c.kind, "name": c.name} for c in self.removed],
                       "changed": [{"kind": c.kind, "name": c.name, "detail": c.detail}
                                   for c in self.changed]},
            "rows": [{"table": r.table, "before": r.before, "after": r.after, "delta": r.delta}
                     for r in self.rows],
            "data": self.data, "rows_source": self.rows_source, "notes": list(self.notes),
            "swapped": bool(self.swapped),  # a, b: the older, the newer (see ``swapped``)
        }


# -- comparing two models --------------------------------------------------------------------------------

def _kind_order(change: Change) -> tuple:
    return (KINDS.index(change.kind) if change.kind in KINDS else len(KINDS), change.kind, change.name)


def _detail(a: Obj, b: Obj) -> str:
    """``default 3 → 5; nullable NULL → NOT NULL``: both values when short, else ``body changed``."""
    parts = []
    for prop in sorted(set(a.props) | set(b.props)):
        va, vb = a.props.get(prop), b.props.get(prop)
        if va == vb:
            continue
        if prop in ("body", "sql", "privileges") or len(va or "") + len(vb or "") > _SHORT:
            parts.append(f"{prop} changed")
        else:
            parts.append(f"{prop} {va or 'none'} → {vb or 'none'}")
    return "; ".join(parts)


def _only_in(model: Model, other: Model) -> list[Change]:
    """What ``model`` has and ``other`` lacks, sorted; the parts of an object missing whole (``Obj.parent``)
    folded into it."""
    keys = model.objects.keys() - other.objects.keys()
    whole = {f"{kind}:{name}" for kind, name in keys} | {f"rel:{name}" for kind, name in keys if kind in RELATION_KINDS}
    return sorted((Change(k, n) for k, n in keys if model.objects[(k, n)].parent not in whole), key=_kind_order)


def compare_schema(a: Model, b: Model) -> tuple[list[Change], list[Change], list[Change]]:
    """(added, removed, changed), sorted by kind then name; the parts of added/removed objects folded in."""
    changed = [Change(k, n, _detail(a.objects[(k, n)], b.objects[(k, n)]))
               for k, n in a.objects.keys() & b.objects.keys() if a.objects[(k, n)].props != b.objects[(k, n)].props]
    return _only_in(b, a), _only_in(a, b), sorted(changed, key=_kind_order)


def _has_data(meta: dict | None, model: Model) -> bool:
    if meta is not None:
        return meta.get("type") != "schema-only"
    # Without metadata: a dump with tables but no COPY block at all was taken --schema-only.
    return bool(model.row_counts) or not any(kind == "table" for kind, _ in model.objects)


def diff(path_a: Path | str, path_b: Path | str, meta_a: dict | None = None, meta_b: dict | None = None, *,
         report: Reporter = null_reporter) -> DiffResult:
    """Compare snapshot ``a`` (before) with ``b`` (after): each file read once, COPY data never held."""
    models = []
    for path in (Path(path_a), Path(path_b)):
        try:
            model = load_model(path, report=report)
        except OSError as exc:
            raise InvalidSnapshot(f"Cannot read {path.name}: {exc.strerror or exc}.",
                                  "Check that the file exists and is readable.") from None
        except compression.CorruptCompressedData as exc:
            raise InvalidSnapshot(f"Cannot read {path.name}: {exc}.", f"Run `dbsage-tui validate {path.name}`.") \
                from None
        if not model.has_header:
            raise InvalidSnapshot(f"{path.name} is not a pg_dump file.", "Pick a snapshot from the list.")
        if not model.complete:
            raise InvalidSnapshot(f"{path.name} is incomplete (no dump-complete trailer): its missing part "
                                  "would show as removed.", f"Run `dbsage-tui validate {path.name}`.")
        models.append(model)
    ma, mb = models
    result = DiffResult(a=Path(path_a).name, b=Path(path_b).name)
    result.added, result.removed, result.changed = compare_schema(ma, mb)
    for side, name, model in (("A", result.a, ma), ("B", result.b, mb)):
        if model.unparsed:
            n = len(model.unparsed)
            what = "1 entry pglast could not parse was" if n == 1 else f"{n} entries pglast could not parse were"
            result.notes.append(f"{side} ({name}): {what} compared as text: {', '.join(model.unparsed[:5])}"
                                + (", …" if n > 5 else ""))
    data_a, data_b = _has_data(meta_a, ma), _has_data(meta_b, mb)
    if not (data_a and data_b):
        result.data = False
        which = " and ".join(n for n, d in ((result.a, data_a), (result.b, data_b)) if not d)
        result.notes.append(f"No data comparison: {which} {'is' if data_a or data_b else 'are'} schema-only.")
        return result
    counts_a = meta_a.get("row_counts") if meta_a else None
    counts_b = meta_b.get("row_counts") if meta_b else None
    if isinstance(counts_a, dict) and isinstance(counts_b, dict):
        result.rows_source = "metadata"
    else:
        counts_a, counts_b, result.rows_source = ma.row_counts, mb.row_counts, "scan"
    # Tables whose count changed, appeared or disappeared (an unchanged count is not news).
    result.rows = [RowChange(t, counts_a.get(t), counts_b.get(t)) for t in sorted(counts_a.keys() | counts_b.keys())
                   if counts_a.get(t) != counts_b.get(t)]
    return result


def diff_snapshots(a, b, *, report: Reporter = null_reporter) -> DiffResult:
    """``diff`` for two ``store.Snapshot`` objects, in either order: the changes from the older to the newer
    (``listing.order_key``, the list's order), whichever was given first."""
    for snap in (a, b):
        if snap.path.name.endswith(".clone"):
            raise InvalidSnapshot(f"{snap.path.name} is a clone snapshot: its data is a database on the server, "
                                  "not a file to compare.", "Diff two file snapshots (full or schema).")
    older, newer = sorted((a, b), key=order_key)
    result = diff(older.path, newer.path, older.meta, newer.meta, report=report)
    result.swapped = older is not a
    return result


# -- text --------------------------------------------------------------------------------------------------

def format_text(result: DiffResult) -> str:
    """A readable summary: schema changes grouped by kind (+ added, - removed, ~ changed), then rows."""
    out = [f"{result.a} → {result.b}"]
    if result.swapped is not None:
        out.append("Changes from the older snapshot to the newer"
                   + (" (given newest first, so shown the other way round)." if result.swapped else "."))
    out.append("")
    if not (result.added or result.removed or result.changed):
        out += ["Schema: no changes.", ""]
    else:
        out.append(f"Schema: {len(result.added)} added, {len(result.removed)} removed, "
                   f"{len(result.changed)} changed")
        signed = sorted([(c, "+") for c in result.added] + [(c, "-") for c in result.removed]
                        + [(c, "~") for c in result.changed],
                        key=lambda cs: (_kind_order(cs[0])[:2], "+-~".index(cs[1]), cs[0].name))
        for _, group in itertools.groupby(signed, key=lambda cs: cs[0].kind):  # a blank line after each kind
            out += [f"  {sign} {c.kind.replace('_', ' ')} {c.name}" + (f": {c.detail}" if c.detail else "")
                    for c, sign in group] + [""]
    if not result.data:
        out.append("Rows: not compared.")
    elif not result.rows:
        out.append("Rows: no table's row count changed.")
    else:
        out.append(f"Rows: {len(result.rows)} table(s) changed")
        width = max(len("table"), *(len(r.table) for r in result.rows))
        out.append(f"  {'table':<{width}}  {'before':>10}  {'after':>10}  {'delta':>10}")
        for r in result.rows:
            before = "-" if r.before is None else f"{r.before:,}"
            after = "-" if r.after is None else f"{r.after:,}"
            out.append(f"  {r.table:<{width}}  {before:>10}  {after:>10}  {r.delta:>+10,}")
    out.extend(f"Note: {note}" for note in result.notes)
    return "\n".join(out) + "\n"
