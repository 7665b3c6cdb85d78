"""The metadata record a new snapshot gets, file or clone: one builder, so that both kinds say the same
things the same way (``show``, the preview, retention and validation read them); and ``facts``, what a
record tells a person, once for ``show`` and the preview."""

from __future__ import annotations

import datetime as dt
import socket

from services import __version__
from services.config import ConnInfo
from services.display import age_text, human_size
from services.snapshots import compression
from services.snapshots.journal import os_user
from services.snapshots.listing import format_ts, precise_ts
from services.snapshots.meta import scope_facts
from services.snapshots.store import Snapshot


def restore_instructions(filename: str, server_major: int, tools_major: int, conn: ConnInfo) -> str:
    """How to restore, for the metadata: our exact restore first, then plain psql (no secrets: the URL stays
    in the environment variable it came from). Compressed files go through ``gunzip -c``/``zstd -dc`` first.
    The demo's server runs only while dbsage-tui does, so it gets no psql line."""
    ours = f"{conn.command} restore {filename}\n"
    if conn.source == "--demo":
        return ours
    url = "" if conn.source == "PG* environment" else \
        f'"${conn.source}" ' if conn.source.endswith("_URL") else '"$SUPABASE_DB_URL" '
    psql = f"psql {url}--single-transaction -v ON_ERROR_STOP=1"
    method = compression.method_of(filename)
    steps = [f"{compression.BY_HAND[method]} {filename}"] if method != "none" else []
    if server_major < 17 <= tools_major:  # pg_dump 17+ writes SET transaction_timeout, which servers before 17 reject
        steps.append("sed '/^SET transaction_timeout = 0;$/d'" + ("" if steps else f" {filename}"))
    by_hand = " | ".join([*steps, f"{psql} -f -"]) if steps else f"{psql} -f {filename}"
    return f"{ours}# or by hand (does not drop objects created after the snapshot):\n{by_hand}\n"


def snapshot_record(*, label: str, purpose: str, notes: str, ts: dt.datetime, kind: str, filename: str,
                    size: int, sha256: str, database_version: str, database: str, host: str, tables: int,
                    row_counts: dict | None, instructions: str, duration: float, protected: bool,
                    details: dict) -> dict:
    """The ``.meta.yaml`` mapping of a snapshot just made. ``details``: what only this kind records (the
    dump's scope and tools, the clone's database), placed after the common facts."""
    return {
        "label": label,
        "purpose": purpose or "",
        "timestamp": format_ts(ts),
        "created": precise_ts(),  # taken under the directory's lock: orders snapshots of one second
        "database_version": database_version,
        "type": kind,
        "size_bytes": size,
        "size_human": human_size(size),
        "tables_count": tables,
        "row_counts": row_counts,
        "restore_instructions": instructions,
        "notes": notes or "",
        "filename": filename,
        "sha256": sha256,
        "database": database,
        "host": host,
        **details,
        "duration_seconds": duration,
        "tool_version": __version__,
        "protected": bool(protected),
        "created_by": f"{os_user()}@{socket.gethostname()}",
    }


def guard_record(*, command: str, cwd: str, git: dict | None, migrations: dict) -> dict:
    """The ``guard`` mapping of a snapshot taken by ``dbsage-tui guard``, before the command runs: what it
    guards (the command line, secrets redacted), where it ran, the project's git state and the newest
    applied migration of each tool. ``guard_outcome`` adds how the command ended."""
    return {"command": command, "cwd": cwd, "git": git, "migrations": migrations,
            "outcome": "running", "exit_code": None, "duration_seconds": None}


def guard_outcome(record: dict, *, exit_code: int, duration: float, outcome: str, **more) -> dict:
    """``record`` with the command's end: its exit code, how long it ran, and in words what became of it
    ("succeeded", "failed", "failed, rolled back", "failed, rollback failed"); ``more``: e.g. the
    pre-rollback snapshot holding the failed state."""
    return {**record, "outcome": outcome, "exit_code": exit_code, "duration_seconds": round(duration, 3), **more}


def _head_text(head) -> str:
    return " ".join(str(x) for x in (head.get("version"), head.get("name")) if x) if isinstance(head, dict) else "none"


def guard_facts(meta: dict | None) -> list[tuple[str, str]]:
    """What a guarded snapshot says of its command, as (field, text) pairs for ``show`` and the preview:
    the command, how it ended, the migration heads before it ran, the project's git state."""
    guard = (meta or {}).get("guard")
    if not isinstance(guard, dict):
        return []
    facts = [("Guarded", str(guard.get("command", "?")))]
    code, seconds = guard.get("exit_code"), guard.get("duration_seconds")
    if code is None:
        facts.append(("Outcome", "not recorded (dbsage-tui was stopped while the command ran)"))
    else:
        took = f", {seconds:.1f}s" if isinstance(seconds, int | float) else ""
        facts.append(("Outcome", f"{guard.get('outcome', '?')} (exit {code}{took})"))
    if isinstance(heads := guard.get("migrations"), dict) and heads:
        facts.append(("Heads", "; ".join(f"{tool} {_head_text(h)}" for tool, h in heads.items())))
    if isinstance(git := guard.get("git"), dict) and git.get("commit"):
        facts.append(("Git", f"{git.get('branch') or '?'} {str(git['commit'])[:12]}"
                      + (" (uncommitted changes)" if git.get("dirty") else "")))
    return facts


KINDS = {"full": "full (schema + data)", "schema-only": "schema-only (no rows)",
         "clone": "clone (a copy of the database on the server)"}


def facts(snap: Snapshot, now: dt.datetime | None = None) -> list[tuple[str, str]]:
    """What a snapshot is, as (field, text) pairs, in the order ``show`` and the preview tell them."""
    m = snap.meta or {}
    packed = m.get("compression") if m.get("compression") not in (None, "none") else None
    size = human_size(snap.size_bytes) + (f" {packed} ({human_size(m.get('sql_bytes'))} of SQL)" if packed else "")
    out = [("Purpose", snap.purpose or "-"), ("Taken", f"{snap.timestamp:%Y-%m-%d %H:%M:%S} UTC"),
           ("Age", age_text(snap.timestamp, now)), ("Type", f"{KINDS.get(snap.type, '?')} · {size}")]
    if snap.meta is None:
        return out
    supabase = m.get("supabase_version") and f"Supabase {m['supabase_version']}"
    out += [("Server", " · ".join(str(x) for x in (m.get("database_version"), supabase) if x) or "?"),
            ("Database", f"{m.get('database', '?')} on {m.get('host', '?')}"),
            ("Schemas", ", ".join(m.get("schemas") or []) or "?"),
            ("Tables", _tables_text(snap)), ("sha256", str(m.get("sha256", "?")))]
    return out + scope_facts(m) + guard_facts(m)


def _tables_text(snap: Snapshot) -> str:
    tables, rows = snap.get("tables_count", "?"), snap.get("row_counts")
    if snap.type == "clone":
        return f"{tables} · in database {snap.get('clone_database', '?')}"
    if not snap.is_full:
        return f"{tables} · no rows (schema only)"
    if not isinstance(rows, dict):
        return f"{tables} · row counts unknown"
    return f"{tables} · {sum(v for v in rows.values() if isinstance(v, int)):,} rows"
