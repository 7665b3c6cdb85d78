"""The listing cache, ``.dbsage-index.json`` in the snapshot directory, and when processes may be forked
to make a large listing sooner.

The cache keeps each snapshot's parsed metadata and quick-check result, keyed by the size, mtime and inode
of its two files (``stat_key``), so that a listing of 10,000 snapshots parses only what changed. It is a
plain JSON file, best effort: unreadable, damaged or from another version, it is ignored and rewritten.
``services.store`` decides what goes in it; this module reads and writes it.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import threading
from pathlib import Path

INDEX_NAME = ".dbsage-index.json"
INDEX_VERSION = 1
#: Snapshots from which a listing shares the work with a forked child (the stat calls, and reading what
#: the cache has not got), and cache entries from which the cache is written behind (``write_behind``).
PARALLEL_MIN = 2000


def read(directory: Path) -> dict:
    """The cache's entries by file name ({} when there is none that this version can use)."""
    try:
        data = json.loads((directory / INDEX_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) and data.pop("version", None) == INDEX_VERSION else {}


def encode(index: dict) -> bytes:
    """The cache file's bytes: what ``json.dumps`` makes of ``{"version": ..., **index}``, one entry at a
    time. The C encoder holds the GIL for all of a call: for 10,000 entries at once, 0.1 s in which a
    listing in a TUI worker thread froze the app's event loop (after each new snapshot), where entry by
    entry lets the loop in between, for no more time in all."""
    # No cycles to look for: YAML without aliases (refused) has none. ASCII, so bytes at once.
    entry = json.JSONEncoder(separators=(",", ":"), check_circular=False).encode
    parts = [f'{{"version":{INDEX_VERSION}']
    parts.extend(f",{entry(name)}:{entry(value)}" for name, value in index.items())
    parts.append("}")
    return "".join(parts).encode("ascii")


def write(directory: Path, index: dict) -> None:
    """Best effort: a read-only directory or metadata that JSON cannot hold just means no cache."""
    try:
        data = encode(index)
    except (TypeError, ValueError, RecursionError):
        return
    # Unique per process and thread: a listing in a TUI worker may overlap another one.
    tmp = directory / f"{INDEX_NAME}.{os.getpid()}.{threading.get_ident()}.tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, directory / INDEX_NAME)
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink()


def write_behind(directory: Path, index: dict) -> None:
    """``write`` in a detached grandchild, so that the listing is not kept waiting for it: after a first
    listing of 10,000 snapshots, 10 MB of JSON (0.1-0.15 s). The grandchild has the index already (fork
    copies the process) and is reparented to init when its parent, which is waited for at once, exits; its
    write is atomic (a rename), so a listing meanwhile sees no cache or the whole one. Single-threaded
    processes only (``can_fork``: the caller checks)."""
    try:
        pid = os.fork()
    except OSError:
        write(directory, index)
        return
    if pid == 0:
        code = 1
        try:
            if os.fork() == 0:
                # Nothing of the parent's stays open here: not its locks or connections, and not its
                # stdout, or a pipeline reading it (``list --json | jq``) would wait for this write.
                devnull = os.open(os.devnull, os.O_RDWR)
                for fd in (0, 1, 2):
                    os.dup2(devnull, fd)
                os.closerange(3, 1 << 16)
                write(directory, index)
            code = 0
        finally:
            os._exit(code)
    os.waitpid(pid, 0)


def entry_ok(entry, key: list) -> bool:
    """A cache entry stands for files whose ``stat_key`` is ``key`` and has the shape
    ``SnapshotStore.list`` writes (the cache may have been edited or damaged): metadata or the reason
    there is none, a problem or none, the file's size."""
    if not isinstance(entry, dict) or entry.get("key") != key:
        return False
    meta, problem = entry.get("meta"), entry.get("problem")
    return (isinstance(meta, dict) or meta is None and isinstance(problem, str)) and \
        isinstance(problem, str | None) and type(entry.get("size")) is int


def stat_key(sql: os.DirEntry, meta: os.DirEntry | None) -> list | None:
    """What must be unchanged for a cached quick check to stand: both files' size, mtime and inode.
    None (never cached) for anything but a regular file."""
    try:
        st = sql.stat(follow_symlinks=False)
        if not stat.S_ISREG(st.st_mode):
            return None
        mst = meta.stat(follow_symlinks=False) if meta is not None else None
    except OSError:
        return None
    key = [st.st_size, st.st_mtime_ns, st.st_ino]
    return key + ([mst.st_size, mst.st_mtime_ns, mst.st_ino] if mst else [None, None, None])


#: The entries a listing reads: snapshots (of every kind) and their metadata.
LISTED = tuple(sfx + end for sfx in (".sql", ".sql.gz", ".sql.zst", ".clone") for end in ("", ".meta.yaml"))
#: Name -> (size, mtime_ns) of every entry in ``LISTED``: see ``directory_signature``.
Signature = dict[str, tuple[int, int]]


def directory_signature(directory: Path) -> Signature:
    """Name -> (size, mtime) of every snapshot and metadata file: any snapshot added, rewritten or removed
    changes it, so a caller that keeps the listing it made (the TUI) only lists again when something did
    change. Other entries are left out: a dump's ``.partial`` file grows all the time it streams, and the
    listing's own cache is rewritten by the listing; neither changes what the list shows."""
    out = {}
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return out
    for entry in entries:
        if not entry.name.endswith(LISTED):
            continue
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        out[entry.name] = (st.st_size, st.st_mtime_ns)
    return out


def sign(signature: Signature, name: str, key: list | None) -> None:
    """Put the stamps of a snapshot's two files, from its ``stat_key``, in a signature."""
    if key is not None:
        signature[name] = (key[0], key[1])
        if key[3] is not None:
            signature[name + ".meta.yaml"] = (key[3], key[4])


def complete_signature(signature: Signature, entries: dict[str, os.DirEntry]) -> None:
    """Add what ``directory_signature`` would have and the listing did not stamp (metadata without a
    snapshot, a file of another name or type): a stat each, and there are few."""
    for name, entry in entries.items():
        if name not in signature and name.endswith(LISTED):
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            signature[name] = (st.st_size, st.st_mtime_ns)


def dir_state(directory: Path) -> frozenset | None:
    """The directory's entries by name and inode number (readdir has both: no stat per file), but the
    cache's own files, which ``write_behind`` may be renaming into place. Metadata rewritten by
    ``write_meta`` (a rename over the old file) gets a new inode."""
    try:
        return entries_state(list(os.scandir(directory)))
    except OSError:
        return None


def entries_state(entries: list[os.DirEntry]) -> frozenset:
    """``dir_state`` of entries already read."""
    return frozenset((e.name, e.inode()) for e in entries if not e.name.startswith(INDEX_NAME))


def can_fork() -> bool:
    """Forking is safe and worth it: a single-threaded process (the CLI; the TUI has threads, and a
    fork copies none of them, or their locks' owners) with a second CPU to run the child on."""
    if not hasattr(os, "fork") or threading.active_count() != 1:
        return False
    cpus = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else range(os.cpu_count() or 1)
    return len(cpus) > 1
