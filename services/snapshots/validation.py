"""Checking a snapshot file against its metadata: the quick check a listing makes of every snapshot
(size, and what can be checked without reading the file through) and the full validation made before a
restore and by ``validate`` (every byte hashed, the dump's structure scanned as it streams).

The store reads the metadata (``SnapshotStore._load``) and hands the snapshot over: this module reads
only the snapshot files themselves, and knows a snapshot only by what it uses of one (``SnapshotFile``), so
that the store, which calls it, is not imported back.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from services.snapshots import compression
from services.snapshots.scanner import HEADER, DumpScanner, trailer_ok

#: The first line of a clone snapshot's pointer file (services.server.clone writes it; a test keeps them equal).
CLONE_HEADER = b"-- dbsage-tui clone snapshot\n"


class SnapshotFile(Protocol):
    """What the checks use of a ``store.Snapshot``."""

    path: Path
    meta: dict | None
    problem: str | None
    file_size: int

    @property
    def filename(self) -> str: ...

    @property
    def is_clone(self) -> bool: ...


@dataclass
class Validation:
    """A full validation's outcome: ok, the first reason it is not, and each check made (name, passed,
    detail), as the CLI's ``validate`` and the TUI's preview list them."""

    ok: bool
    reason: str | None
    checks: list[tuple[str, bool, str]] = field(default_factory=list)


def quick_check(snap: SnapshotFile) -> str | None:
    """Size, and what can be checked without reading the file through: a dump's header and trailer;
    a compressed dump's magic number (its trailer is checked as it streams, before any COMMIT); a clone
    pointer's first line."""
    if snap.file_size != snap.meta.get("size_bytes"):
        return f"size is {snap.file_size} bytes, metadata says {snap.meta.get('size_bytes')}"
    method = compression.method_of(snap.filename)
    if method != "none" or snap.is_clone:
        want = CLONE_HEADER if snap.is_clone else compression.MAGIC[method]
        try:
            with open(snap.path, "rb") as fh:
                head = fh.read(len(want))
        except OSError as exc:
            return f"file is unreadable ({exc.strerror})"
        if head != want:
            return "not a clone pointer file (header missing)" if snap.is_clone else \
                f"not a {method} file (wrong magic number)"
        return None
    start = max(0, snap.file_size - 4096)
    try:
        fd = os.open(snap.path, os.O_RDONLY)
        try:
            if start <= len(HEADER):  # a small file: one read has both ends
                data = _read_from(fd, 0, snap.file_size)
                head, tail = data[:len(HEADER)], data[start:]
            else:
                head = os.pread(fd, len(HEADER), 0)
                tail = _read_from(fd, start, snap.file_size - start)
        finally:
            os.close(fd)
    except OSError as exc:
        return f"file is unreadable ({exc.strerror})"
    if not head.startswith(HEADER):
        return "not a pg_dump file (header missing)"
    if not trailer_ok(tail):
        return "truncated: the dump-complete trailer is missing"
    return None


def full_check(snap: SnapshotFile, fresh: SnapshotFile) -> Validation:
    """Metadata, size, sha256 over every byte, header and trailer, COPY blocks closed. ``fresh`` is the
    same snapshot read again by the store (metadata and quick check as they are on disk now); ``snap``
    gets its metadata when the file is valid."""
    checks: list[tuple[str, bool, str]] = []
    if fresh.meta is None or (fresh.problem and "metadata" in fresh.problem):
        checks.append(("metadata" if "metadata" in (fresh.problem or "metadata") else "file", False,
                       fresh.problem or "missing"))
        return Validation(False, fresh.problem, checks)
    checks.append(("metadata", True, "parses and matches the file name"))
    if fresh.problem:
        checks.append(("file", False, fresh.problem))
        return Validation(False, fresh.problem, checks)
    digest = hashlib.sha256()
    scanner = DumpScanner()
    damaged = None
    try:
        with open(snap.path, "rb") as fh:
            raw = compression.HashingReader(fh, digest)
            if snap.is_clone:
                while raw.read(1 << 20):
                    pass
            else:
                try:
                    for chunk in compression.iter_plain(raw, compression.method_of(snap.filename)):
                        scanner.feed(chunk)
                except compression.CorruptCompressedData as exc:
                    damaged = str(exc)
                    while raw.read(1 << 20):  # hash the rest: a size or sha256 mismatch explains more
                        pass
            size = raw.read_bytes
    except OSError as exc:
        reason = f"file is unreadable ({exc.strerror})"
        checks.append(("file", False, reason))
        return Validation(False, reason, checks)
    result = scanner.finish()
    if size != fresh.meta["size_bytes"]:
        reason = f"size is {size} bytes, metadata says {fresh.meta['size_bytes']}"
        checks.append(("size", False, reason))
        return Validation(False, reason, checks)
    checks.append(("size", True, f"{size} bytes"))
    if digest.hexdigest() != fresh.meta["sha256"]:
        reason = "sha256 mismatch: the file changed after the snapshot was taken"
        checks.append(("sha256", False, reason))
        return Validation(False, reason, checks)
    checks.append(("sha256", True, digest.hexdigest()[:16] + "…"))
    if snap.is_clone:
        checks.append(("structure", True, f"pointer to database {fresh.meta.get('clone_database')} "
                                          "(its presence on the server is checked by a restore)"))
        snap.meta, snap.problem = fresh.meta, None
        return Validation(True, None, checks)
    if damaged or not result.complete:
        reason = damaged or "truncated: the dump is incomplete"
        checks.append(("structure", False, reason))
        return Validation(False, reason, checks)
    method = compression.method_of(snap.filename)
    inside = f" inside the {method} stream" if method != "none" else ""
    checks.append(("structure", True, f"header, COPY blocks and dump-complete trailer present{inside}"))
    snap.meta, snap.problem = fresh.meta, None
    return Validation(True, None, checks)


def _read_from(fd: int, offset: int, expect: int) -> bytes:
    """Everything from ``offset`` to the end of the file (which is expected ``expect`` bytes on)."""
    data = os.pread(fd, expect + 1, offset)
    while len(data) > expect:  # the file grew since it was seen: read on to the end, as read() would
        more = os.pread(fd, 1 << 16, offset + len(data))
        if not more:
            break
        data += more
    return data
