"""Adopting a dump made outside dbsage-tui: a ``{YYYYmmddHHMMSS}_{label}.sql`` (``.sql.gz``, ``.sql.zst``)
put in the snapshot directory by hand has no metadata, so it lists as invalid and cannot be restored.
``adopt`` reads it through once, as the full validation does (sha256 of the file, the SQL inside through
``DumpScanner``: header, versions, COPY row counts, trailer), and writes the ``.meta.yaml`` a snapshot of
that content would have had, marked ``adopted``.

What the file cannot tell is left as such: the database and host it came from are "unknown", and its
scope is the schemas it holds (mode "only"), so a restore replaces those schemas and leaves any other
schema alone, whatever the dump was made with.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
from dataclasses import dataclass, field

from services.config import ConnInfo
from services.display import utcnow
from services.errors import BadInput, InvalidSnapshot
from services.snapshots import compression
from services.snapshots.listing import format_ts
from services.snapshots.meta import check_meta
from services.snapshots.record import restore_instructions, snapshot_record
from services.snapshots.scanner import TOC_RE, DumpScanner, ScanResult
from services.snapshots.store import Snapshot, SnapshotStore

#: The problem ``SnapshotStore`` reports for a snapshot file whose ``.meta.yaml`` does not exist.
_NO_META = "metadata file is missing"


def adoptable(snap: Snapshot) -> bool:
    """A regular dump file without metadata: what ``adopt`` may give metadata (the listing's hint)."""
    return snap.meta is None and not snap.is_clone and snap.problem == _NO_META


@dataclass
class _Read:
    """One read of the file: the scanner's result, the file's size and sha256, and what the dump's TOC
    comments say beyond the scanner's counts (its schemas and its tables)."""

    scan: ScanResult | None = None
    size: int = 0
    sha256: str = ""
    schemas: set[str] = field(default_factory=set)
    tables: int = 0
    creates_database: bool = False  # pg_dump --create: CREATE DATABASE and \connect, not ours to replay
    archive: bool = False  # pg_dump -Fc/-Ft: what pg_restore reads, not SQL

    def on_line(self, line: bytes) -> None:
        self.archive = self.archive or line.startswith(b"PGDMP")
        if not line.startswith(b"-- Name: ") or not (m := TOC_RE.match(line.decode("utf-8", "replace"))):
            return
        if m["type"] == "SCHEMA":
            self.schemas.add(m["name"])
        elif m["schema"] != "-":
            self.schemas.add(m["schema"])
        self.tables += m["type"] == "TABLE"
        self.creates_database |= m["type"] == "DATABASE"


def _read(snap: Snapshot) -> _Read:
    """One pass over the file: its sha256 and size, and the SQL inside scanned. Refuses (exit 3) what is
    not a complete plain pg_dump; a file that changes while it is read is refused too."""
    read, digest = _Read(), hashlib.sha256()
    scanner = DumpScanner(on_line=read.on_line)
    try:
        fd = os.open(snap.path, os.O_RDONLY | os.O_NOFOLLOW)
        with os.fdopen(fd, "rb") as fh:
            before = os.fstat(fh.fileno())
            if not stat.S_ISREG(before.st_mode):
                raise BadInput(f"{snap.filename} is not a regular file.", "Adopt a pg_dump file.")
            raw = compression.HashingReader(fh, digest)
            for chunk in compression.iter_plain(raw, compression.method_of(snap.filename)):
                scanner.feed(chunk)
            after = os.fstat(fh.fileno())
    except compression.CorruptCompressedData as exc:
        raise InvalidSnapshot(f"{snap.filename} cannot be adopted: {exc}.") from None
    except OSError as exc:
        raise BadInput(f"{snap.filename} cannot be read ({exc.strerror}).", "Check the file.") from None
    if (before.st_size, before.st_mtime_ns) != (after.st_size, after.st_mtime_ns):
        raise InvalidSnapshot(f"{snap.filename} changed while it was read.", "Adopt it once it is written.")
    read.scan, read.size, read.sha256 = scanner.finish(), raw.read_bytes, digest.hexdigest()
    return read


def _refusal(read: _Read) -> str | None:
    """Why the content is not a complete plain pg_dump that can restore a database, or None."""
    scan = read.scan
    if not scan.has_header:
        return ("a pg_dump archive (-Fc), not SQL: `pg_restore -f FILE.sql ARCHIVE` writes the plain dump to "
                "adopt") if read.archive else "not a plain-format pg_dump (its header is missing)"
    if not (scan.dumped_from and scan.dumped_by):
        return "the pg_dump header names no server or pg_dump version"
    if scan.in_copy_at_end or not scan.has_trailer:
        return "truncated: the dump-complete trailer is missing"
    if read.creates_database:
        return "made with pg_dump --create (it creates the database itself); dump without --create"
    if scan.copies and not read.tables:
        return "a data-only dump (it creates no tables), which cannot restore a database"
    return None


def _major(version: str) -> int:
    return int(re.match(r"\d*", version).group() or 0)


def _record(snap: Snapshot, read: _Read, conn: ConnInfo) -> dict:
    """The metadata of the adopted file, built as a new snapshot's is (``snapshot_record``)."""
    scan, name = read.scan, snap.filename
    kind = "schema-only" if read.tables and not scan.copies else "full"
    now = utcnow()
    return snapshot_record(
        label=snap.label, purpose="", ts=snap.timestamp, kind=kind, filename=name, size=read.size,
        notes=f"Adopted by dbsage-tui: a pg_dump {scan.dumped_by} file made outside it.",
        sha256=read.sha256, database_version=f"PostgreSQL {scan.dumped_from}", database="unknown",
        host="unknown", tables=read.tables,
        row_counts=None if kind == "schema-only" else dict(sorted(scan.row_counts.items())),
        instructions=restore_instructions(name, _major(scan.dumped_from), _major(scan.dumped_by), conn),
        duration=0.0, protected=False, details={
            "compression": compression.method_of(name), "sql_bytes": scan.bytes_scanned,
            "pg_dump_version": scan.dumped_by, "schemas": sorted(read.schemas), "scope": {"mode": "only"},
            "outside_dependents": [], "outside_owners": [], "adopted": True, "adopted_at": format_ts(now)})


def adopt(store: SnapshotStore, arg: str, conn: ConnInfo | None = None) -> Snapshot:
    """Give the dump file ``arg`` (a file name in the directory or a list number) its metadata after a full
    read. Refuses a file that has metadata or is no snapshot file (exit 2) and one that is not a complete
    plain pg_dump (exit 3); nothing is written then. ``conn``: for the restore instructions' wording."""
    snap = store.resolve(arg)
    if snap.is_clone:
        raise BadInput(f"{snap.filename} is a clone pointer, not a dump.", "Only .sql, .sql.gz and .sql.zst adopt.")
    with store.lock("adopt", snap.filename):
        if snap.meta_path.exists():
            raise BadInput(f"{snap.filename} already has metadata ({snap.meta_path.name}).",
                           f"Check it with: dbsage-tui validate {snap.filename}")
        read = _read(snap)
        meta = None if (why := _refusal(read)) else _record(snap, read, conn or ConnInfo())
        why = why or check_meta(meta, snap.path, snap.label, snap.timestamp)
        if why:
            store.audit("adopt", "refused", snapshot=snap.filename, error=why)
            raise InvalidSnapshot(f"{snap.filename} cannot be adopted: {why}.", "Nothing was written.")
        store.write_meta(snap.path, meta)
        store.audit("adopt", "ok", snapshot=snap.filename, type=meta["type"], size_bytes=read.size,
                    sha256=read.sha256)
    return Snapshot(path=snap.path, label=snap.label, timestamp=snap.timestamp, meta=meta, file_size=read.size)
