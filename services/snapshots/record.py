"""The metadata record a new snapshot gets, file or clone: one builder, so that both kinds say the same
things the same way (``show``, the preview, retention and validation read them)."""

from __future__ import annotations

import datetime as dt
import socket

from services import __version__
from services.display import human_size
from services.snapshots import compression
from services.snapshots.listing import precise_ts
from services.snapshots.store import format_ts, os_user


def restore_instructions(filename: str, server_major: int, tools_major: int) -> str:
    """How to restore, for the metadata: our exact restore first, then plain psql (no secrets: the URL stays
    in the environment variable). Compressed files go through ``gunzip -c``/``zstd -dc`` first."""
    psql = "psql \"$SUPABASE_DB_URL\" --single-transaction -v ON_ERROR_STOP=1"
    method = compression.method_of(filename)
    source = f"{compression.BY_HAND[method]} {filename} | " if method != "none" else ""
    if server_major < 17 <= tools_major:
        # pg_dump 17+ writes SET transaction_timeout, which servers before 17 reject.
        strip = "sed '/^SET transaction_timeout = 0;$/d'"
        by_hand = (f"{source}{strip} | {psql} -f -" if source else f"{strip} {filename} | {psql} -f -")
    else:
        by_hand = f"{source}{psql} -f -" if source else f"{psql} -f {filename}"
    return (f"dbsage-tui restore {filename}\n"
            f"# or by hand (does not drop objects created after the snapshot):\n{by_hand}\n")


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
