"""What a listing of the snapshot directory sees of each file without reading it: the stamps (size,
mtime, inode) that tell whether a snapshot changed since it was last read, and the directory's signature,
by which a caller that keeps its listing (the TUI, checking every second) knows when to list again.
Reading and checking the files is ``SnapshotStore.list``'s part; the order of a listing is ``order_key``.
"""

from __future__ import annotations

import datetime as dt
import os
import stat
from pathlib import Path

#: The entries a listing reads: snapshots (of every kind) and their metadata.
LISTED = tuple(sfx + end for sfx in (".sql", ".sql.gz", ".sql.zst", ".clone") for end in ("", ".meta.yaml"))
#: Name -> (size, mtime_ns) of every entry in ``LISTED``: see ``directory_signature``.
Signature = dict[str, tuple[int, int]]


def directory_signature(directory: Path) -> Signature:
    """Name -> (size, mtime) of every snapshot and metadata file: any snapshot added, rewritten or removed
    changes it, so a caller that keeps its listing lists again only when something did change. Other
    entries are left out: a dump's ``.partial`` file grows all the time it streams, and changes nothing
    the list shows."""
    out: Signature = {}
    try:
        entries = {e.name: e for e in os.scandir(directory)}
    except OSError:
        return out
    sign_rest(out, entries)
    return out


def sign_rest(signature: Signature, entries: dict[str, os.DirEntry]) -> None:
    """Put in ``signature`` each entry of ``LISTED`` that is not in it yet."""
    for name, entry in entries.items():
        if name not in signature and name.endswith(LISTED):
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            signature[name] = (st.st_size, st.st_mtime_ns)


def stamp_of(sql: os.DirEntry, meta: os.DirEntry | None) -> tuple | None:
    """What must be unchanged for a snapshot read before to stand: both files' size, mtime and inode
    (metadata rewritten by ``write_meta``, a rename, gets a new inode). None for anything but a regular
    file, which is then always read afresh."""
    try:
        st = sql.stat(follow_symlinks=False)
        if not stat.S_ISREG(st.st_mode):
            return None
        mst = meta.stat(follow_symlinks=False) if meta is not None else None
    except OSError:
        return None
    return (st.st_size, st.st_mtime_ns, st.st_ino,
            *((mst.st_size, mst.st_mtime_ns, mst.st_ino) if mst else (None, None, None)))


def name_ts(stamp: str) -> dt.datetime:
    """YYYYmmddHHMMSS as an aware UTC datetime (strptime is much slower, and lists can be long)."""
    try:
        return dt.datetime(int(stamp[:4]), int(stamp[4:6]), int(stamp[6:8]), int(stamp[8:10]),
                           int(stamp[10:12]), int(stamp[12:14]), tzinfo=dt.UTC)
    except ValueError:  # e.g. month 13: sorts first, and check_meta reports the mismatch
        return dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def format_ts(ts: dt.datetime) -> str:
    """``ts`` to the second, UTC: the metadata's ``timestamp``, the audit log's ``time``."""
    return ts.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def precise_ts(ts: dt.datetime | None = None) -> str:
    """``ts`` (now by default) to the microsecond, UTC, at one fixed width, so that its text sorts as its
    time: the metadata's ``created``."""
    return (ts or dt.datetime.now(dt.UTC)).astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def order_key(snap) -> tuple[str, str, str]:
    """Sorts ``store.Snapshot`` objects oldest to newest: by the second in the name (fixed width, UTC),
    then by the metadata's ``created`` (``precise_ts``), then by name. Snapshots of one second are thus in
    the order they were taken (``loop-9`` before ``loop-10``); one not read yet, or whose metadata predates
    ``created``, falls back on its name."""
    created = snap.meta.get("created") if snap.meta else None
    name = snap.filename
    return name[:14], created if isinstance(created, str) else "", name
