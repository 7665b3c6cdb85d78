"""Clone snapshots on disk: the pointer file (``{YYYYmmddHHMMSS}_{label}.clone``) that names the database
copy on the server, its free name, how it is written, read and checked, and where clones may be made at
all (local servers). ``services.server.clone`` does the server side: creating, restoring and dropping copies.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from collections.abc import Collection
from pathlib import Path

from services.config import ConnInfo
from services.errors import BadInput, OperationFailed
from services.server import catalog
from services.snapshots.listing import format_ts
from services.snapshots.store import (
    META_SUFFIX,
    PARTIAL_SUFFIX,
    TS_FORMAT,
    Snapshot,
    fsync_dir,
    write_atomic,
)

#: The first line of every pointer file (what a quick check looks for, as HEADER is for dumps).
POINTER_HEADER = "-- dbsage-tui clone snapshot"
LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", ""})
#: PostgreSQL's identifier limit (NAMEDATALEN - 1), in bytes.
MAX_IDENT_BYTES = 63
_POINTER_FIELD = re.compile(r"^-- (clone_database|source_database|server|server_id|created): (.*)$")


class CloneNotAllowed(BadInput):
    """Clone snapshots cannot be used for this target (exit 2): use a file snapshot instead."""


def is_local_host(host: str) -> bool:
    """localhost, a loopback address or a unix socket directory: the only servers clones are made on."""
    return host in LOCAL_HOSTS or host.startswith(("/", "@"))


def check_local(conn: ConnInfo) -> None:
    """Refuse a non-local host before connecting (no network round trip to say no)."""
    if not is_local_host(conn.host):
        raise CloneNotAllowed(f"Clone snapshots are only for local development servers, and {conn.host} is not "
                              "local.", "Take a file snapshot instead (leave out --type clone).")


def clone_name(dbname: str, ts: dt.datetime, taken: Collection[str] = (), tag: str = "dbsage") -> str:
    """``{dbname}__{tag}_{YYYYmmddHHMMSS}``: lower-case letters, digits and '_' only (no quoting surprises
    in the pointer file or by hand), at most 63 bytes, and not in ``taken`` (``_2``, ``_3``... if it is)."""
    prefix = re.sub(r"[^a-z0-9_]", "_", dbname.lower()) or "db"
    for n in range(1, 10_000):
        tail = f"__{tag}_{ts.strftime(TS_FORMAT)}" + (f"_{n}" if n > 1 else "")
        name = prefix[:MAX_IDENT_BYTES - len(tail)] + tail
        if name not in taken:
            return name
    raise OperationFailed("No free database name for the clone.", "Drop old clone databases, then retry.")


def write_pointer(path: Path, clone_db: str, source_db: str, server: str, server_id: str | None,
                  ts: dt.datetime) -> bytes:
    """Write the pointer file atomically (temp, fsync, rename), mode 0600; returns the bytes written."""
    q = catalog.quote_ident(clone_db)
    data = "\n".join([
        POINTER_HEADER,
        f"-- The data of this snapshot is not in this file: it is the database {q} on the PostgreSQL server",
        f"-- at {server}, a copy of database {json.dumps(source_db)} taken at {format_ts(ts)}.",
        "-- Do not drop that database by hand while this snapshot is listed: delete the snapshot with",
        "-- dbsage-tui, which drops the database too.",
        "--",
        f"-- Restore: dbsage-tui restore {path.name}",
        f"-- Inspect: psql -d postgres -c 'ALTER DATABASE {q} ALLOW_CONNECTIONS true', then psql -d {clone_db}",
        "--          (and set it back to false after: what you change there, a restore brings back).",
        "--",
        f"-- clone_database: {clone_db}",
        f"-- source_database: {json.dumps(source_db)}",
        f"-- server: {server}",
        f"-- server_id: {server_id or ''}",
        f"-- created: {format_ts(ts)}",
        "",
    ]).encode("utf-8")
    write_atomic(path, data, path.with_name(path.name + PARTIAL_SUFFIX))
    return data


def check_pointer(snap: Snapshot) -> str | None:
    """Why this clone snapshot's files cannot be trusted, or None: size and sha256 of the pointer match
    the metadata, and pointer and metadata name the same database. (The database itself is checked
    against the server by ``restore_clone``.) For the store's quick check and ``validate``."""
    if snap.meta is None:
        return snap.problem or "metadata is missing"
    if snap.meta.get("type") != "clone" or not snap.meta.get("clone_database"):
        return "metadata does not describe a clone snapshot"
    try:
        data = snap.path.read_bytes()
        text = data.decode("utf-8")
    except OSError as exc:
        return str(exc)
    except UnicodeDecodeError:
        return "pointer file unreadable (not UTF-8 text)"
    if not text.startswith(POINTER_HEADER + "\n"):
        return "not a clone pointer file (header missing)"
    fields = {m.group(1): m.group(2) for line in text.splitlines() if (m := _POINTER_FIELD.match(line))}
    if not fields.get("clone_database"):
        return "pointer file names no clone database"
    if len(data) != snap.meta.get("size_bytes") or hashlib.sha256(data).hexdigest() != snap.meta.get("sha256"):
        return "pointer file does not match its metadata (size or sha256)"
    if fields["clone_database"] != snap.meta["clone_database"]:
        return "pointer file and metadata name different clone databases"
    return None


def remove_files(pointer: Path) -> None:
    """The pointer and its metadata (``write_atomic`` leaves no temporary file behind, even on failure)."""
    pointer.with_name(pointer.name + META_SUFFIX).unlink(missing_ok=True)
    pointer.unlink(missing_ok=True)
    fsync_dir(pointer.parent)
