"""The snapshot directory: naming, listing, the lock and the audit log (metadata files: ``meta``; checking
the snapshot files: ``validation``).

A snapshot is ``{YYYYmmddHHMMSS}_{label}.sql`` (or ``.sql.gz``, ``.sql.zst``, or a ``.clone`` pointer to a
database copy on the server) plus ``{filename}.meta.yaml``; nothing else in the directory
lists as one. Work in progress is ``{filename}.partial`` until it is complete, so a crash never leaves a file
that looks like a snapshot.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import fcntl
import getpass
import json
import os
import re
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from . import codec, forkmap, listcache, validation
from .errors import BadInput, DbsageError, InvalidSnapshot, LockHeld, OperationFailed
from .gcpause import paused_gc
from .listcache import INDEX_NAME
from .meta import (  # noqa: F401 - load_meta and parse_ts are also this module's interface (tests, bench)
    check_meta,
    json_faithful,
    load_meta,
    meta_text,
    parse_ts,
    preload_reader,
    read_meta,
)
from .validation import Validation

#: 1-64 letters, digits, '.', '_' or '-', not starting with '-' or '.' (no option look-alikes, no hidden
#: or parent-directory names). Used for new snapshots; FILENAME_RE accepts what is already on disk.
LABEL_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,63}$")
FILENAME_RE = re.compile(r"^(\d{14})_([A-Za-z0-9._-]{1,64}?)(\.sql|\.sql\.gz|\.sql\.zst|\.clone)$")
META_SUFFIX = ".meta.yaml"
PARTIAL_SUFFIX = ".partial"
LOCK_NAME = ".dbsage.lock"
AUDIT_NAME = "audit.log"
TS_FORMAT = "%Y%m%d%H%M%S"
CLONE_SUFFIX = ".clone"


def suggest_label(label: str) -> str:
    """A valid label close to what the user typed."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", label.strip()).strip("-.")
    cleaned = re.sub(r"-{2,}", "-", cleaned)[:64].strip("-.")
    return cleaned or "snapshot"


def check_label(label: str) -> str:
    if not LABEL_RE.match(label or ""):
        raise BadInput(f"Invalid label {label!r}: use 1-64 letters, digits, '.', '_' or '-', "
                       "starting with a letter, digit or '_'.",
                       f"Try: {suggest_label(label or '')}")
    return label


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def format_ts(ts: dt.datetime) -> str:
    return ts.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def human_size(n: int | None) -> str:
    if n is None:
        return "?"
    import humanize  # on first use: 2 ms of start-up, and a snapshot only needs it at its end
    return humanize.naturalsize(n, binary=False)


def free_name(directory: Path, label: str, suffix: str) -> tuple[dt.datetime, Path]:
    """Timestamp and path of a new snapshot (``suffix``: ``.sql``, ``.sql.gz``, ``.sql.zst`` or ``.clone``).
    If ``{timestamp}_{label}`` is taken by any snapshot, finished or not (two of one label in a second,
    whatever their kind), the next second is used, so that the name and the metadata timestamp stay the
    same instant."""
    ts = utcnow()
    while True:
        stem = f"{ts.strftime(TS_FORMAT)}_{label}"
        taken = [directory / (stem + sfx + end) for sfx in (*codec.SUFFIXES.values(), CLONE_SUFFIX)
                 for end in ("", PARTIAL_SUFFIX)]
        if not any(p.exists() for p in taken):
            return ts, directory / (stem + suffix)
        ts += dt.timedelta(seconds=1)


@dataclass
class Snapshot:
    """A ``.sql`` file in the directory and what its metadata says (or why it cannot be trusted)."""

    path: Path
    label: str
    timestamp: dt.datetime
    meta: dict | None = None
    problem: str | None = None  # why the quick check fails; None when it passes
    file_size: int = 0

    @property
    def filename(self) -> str:
        return self.path.name

    @property
    def meta_path(self) -> Path:
        return self.path.with_name(self.path.name + META_SUFFIX)

    @property
    def valid(self) -> bool:
        return self.problem is None

    def get(self, key: str, default=None):
        return (self.meta or {}).get(key, default)

    @property
    def type(self) -> str:
        return str(self.get("type", "?"))

    @property
    def is_full(self) -> bool:
        return self.type == "full"

    @property
    def purpose(self) -> str:
        return str(self.get("purpose") or "")

    @property
    def protected(self) -> bool:
        return self.get("protected") is True

    @property
    def size_bytes(self) -> int:
        """Bytes of the file on disk (compressed if it is); for a clone, of its database on the server."""
        val = self.get("clone_bytes") if self.type == "clone" else None
        if not isinstance(val, int):
            val = self.get("size_bytes")
        return val if isinstance(val, int) else self.file_size

    @property
    def is_clone(self) -> bool:
        return self.path.name.endswith(".clone")


class SnapshotStore:
    #: How long a listing made by ``prefetch`` may wait for the ``list`` call it was made for.
    PRIMED_FOR = 30.0

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        #: (directory state, when, listing, signature): see prefetch.
        self._primed: tuple[frozenset, float, list[Snapshot], listcache.Signature] | None = None
        #: The listing cache as this process' last listing left it (see ``_list``).
        self._index: dict | None = None

    # -- directory -------------------------------------------------------------------------------------
    def ensure_dir(self) -> None:
        """Create the directory (0700) with a .gitignore that keeps snapshots out of git."""
        d = self.directory
        if d.exists() and not d.is_dir():
            raise BadInput(f"The snapshot directory {d} is a file, not a directory.", "Choose another --dir.")
        try:
            d.mkdir(mode=0o700, parents=True, exist_ok=True)
            gi = d / ".gitignore"
            if not gi.exists():
                gi.write_text("# dbsage-tui snapshots hold database contents: keep them out of git.\n*\n")
        except OSError as exc:  # permission denied, read-only file system, ...
            raise OperationFailed(f"The snapshot directory {d} is not writable ({exc.strerror}).",
                                  "Fix its permissions or choose another --dir.") from None
        if not os.access(d, os.W_OK | os.X_OK):
            raise OperationFailed(f"The snapshot directory {d} is not writable.",
                                  "Fix its permissions or choose another --dir.")

    # -- listing ---------------------------------------------------------------------------------------
    def _entries(self) -> list[os.DirEntry]:
        try:
            return list(os.scandir(self.directory))
        except FileNotFoundError:
            return []
        except NotADirectoryError:
            raise BadInput(f"The snapshot directory {self.directory} is a file, not a directory.",
                           "Choose another --dir.") from None
        except PermissionError:
            raise OperationFailed(f"The snapshot directory {self.directory} is not readable.",
                                  "Fix its permissions or choose another --dir.") from None

    def list(self) -> list[Snapshot]:
        """Snapshots newest first (by metadata timestamp, which equals the name's), each quick-checked.

        Parsed metadata and quick-check results are cached in ``.dbsage-index.json``, keyed by the size,
        mtime and inode of both files, so listing 10,000 snapshots parses only what changed. ``validate``
        never uses the cache."""
        return self.list_signed(False)[0]

    def list_signed(self, sign: bool = True) -> tuple[list[Snapshot], listcache.Signature | None]:
        """``list``, and the directory's ``listcache.directory_signature`` as the listing saw it (each
        file's stamp was taken before the file was read, so any change after it shows in the next
        signature). A caller that keeps the listing gets it without stat'ing 20,000 files again: on a
        busy interpreter (the TUI starting) that took longer than listing the cached directory."""
        primed = self.take_primed()
        if primed is not None:
            return primed[0], primed[1] if sign else None
        with paused_gc():  # a listing makes many objects and no cycles (see gcpause): 10% of its time
            return self._list(sign)

    def take_primed(self) -> tuple[list[Snapshot], listcache.Signature] | None:
        """The listing ``prefetch`` made, and its signature, if it is still the directory's (made within
        ``PRIMED_FOR`` seconds, and no entry added, removed or replaced since); else None. Given once."""
        primed, self._primed = self._primed, None
        if primed is not None and time.monotonic() - primed[1] < self.PRIMED_FOR and \
                listcache.dir_state(self.directory) == primed[0]:
            return primed[2], primed[3]
        return None

    def _list(self, sign: bool, meanwhile: Callable[[], None] = lambda: None,
              scanned: list[os.DirEntry] | None = None) -> tuple[list[Snapshot], listcache.Signature | None]:
        entries = {e.name: e for e in (self._entries() if scanned is None else scanned)}
        # The cache file is read once per store (a process has one). Its entries stand only for files whose
        # size, mtime and inode they name, so the last listing's are as good as the file's, and a TUI
        # listing again (in a worker thread, after each change) does not decode 10 MB of JSON: 0.1 s of
        # the GIL held, the app frozen.
        index = self._index if self._index is not None else listcache.read(self.directory)
        fresh_index: dict[str, dict] = {}
        signature: listcache.Signature | None = {} if sign else None
        snaps = []
        # (name, path, match, .sql entry, .meta.yaml entry) of every snapshot
        items = [(name, self.directory / name, m, entry, entries.get(name + META_SUFFIX))
                 for name, entry in entries.items() if (m := FILENAME_RE.match(name))]
        for (name, *_), (snap, key, cache_entry) in zip(items, self._load_all(items, index, meanwhile),
                                                         strict=True):
            if cache_entry is not None:
                fresh_index[name] = cache_entry
            if signature is not None:
                listcache.sign(signature, name, key)
            snaps.append(snap)
        if signature is not None:
            listcache.complete_signature(signature, entries)
        if fresh_index != index:
            if len(fresh_index) >= listcache.PARALLEL_MIN and listcache.can_fork():  # 0.1 s per 10,000
                listcache.write_behind(self.directory, fresh_index)
            else:
                listcache.write(self.directory, fresh_index)
        self._index = fresh_index
        # Newest first, by name: a name starts with its timestamp (fixed width, UTC), so this is the order
        # of (timestamp, name), without 130,000 comparisons of aware datetimes (60 ms for 10,000).
        snaps.sort(key=lambda s: s.path.name, reverse=True)
        return snaps, signature

    def prefetch(self, meanwhile: Callable[[], None] | None = None,
                 announce: Callable[[int], None] | None = None) -> None:
        """List a large directory now, while the process is single-threaded, and keep the listing for the
        next ``list`` call (within ``PRIMED_FOR`` seconds, and only if the directory has not changed
        since). The TUI calls this before it starts: its own listings run in a worker thread, where
        forking is unsafe, so a listing of 10,000 snapshots would be made by one CPU while the screen is
        being built by the same interpreter (from the listing cache: 0.6 s, against 0.45 s alone).

        ``meanwhile`` (the CLI passes the TUI's imports, 0.2 s) is called once whatever happens: while a
        forked child starts on its share of the listing, or before returning if nothing was forked.
        ``announce(count)`` is called first when the listing is the directory's first (no listing cache):
        every file is read then, about 1 s for 10,000, and 4 s or more when they are not in the page
        cache (after a reboot), with nothing on the screen yet; the caller can say what is being waited for."""
        pending = [meanwhile] if meanwhile is not None else []

        def run_pending() -> None:
            while pending:
                pending.pop()()

        self._prime(run_pending, announce)
        run_pending()

    def _prime(self, meanwhile: Callable[[], None], announce: Callable[[int], None] | None) -> None:
        if self._primed is not None or not listcache.can_fork():
            return
        try:
            entries = self._entries()
        except (BadInput, OperationFailed):
            return  # ``list`` reports it
        count = sum(1 for e in entries if FILENAME_RE.match(e.name))
        if count < listcache.PARALLEL_MIN:
            return
        if announce is not None and not any(e.name == INDEX_NAME for e in entries):
            announce(count)
        # The state the listing starts from (from the same readdir: 0.05-0.1 s less than another one for
        # 20,000 entries): any change after it, even while the listing is made, has the app list again.
        state = listcache.entries_state(entries)
        try:
            with paused_gc():
                snaps, signature = self._list(True, meanwhile, entries)
        except (DbsageError, OSError):
            return  # the app's own listing meets it again and shows it
        self._primed = (state, time.monotonic(), snaps, signature)

    def _load_all(self, items: list[tuple], index: dict, meanwhile: Callable[[], None]
                  ) -> list[tuple[Snapshot, list | None, dict | None]]:
        """Stat each snapshot in ``items``, take it from the listing cache ``index`` if its files are
        unchanged, else ``_load`` it: the snapshot, its cache key, its cache entry (None: not to be
        cached). With many and a second CPU, shared with a forked child (``forkmap``; ``meanwhile`` runs
        while the child starts on its share). Cached or not, the 20,000 stat calls of a directory of
        10,000 are the listing's largest part after the cache's JSON (0.1-0.15 s): before the TUI
        starts, the child makes them while the TUI's modules are imported here. What the child sends for
        a cached snapshot is only that it is one: its entry is this process' copy of the cache too. A
        result that marshal cannot carry (metadata that JSON cannot keep either, such as dates) is read
        here again."""
        def load(item: tuple) -> tuple[Snapshot, list | None, dict | None]:
            name, path, m, entry, meta_entry = item
            key = listcache.stat_key(entry, meta_entry)
            cached = index.get(name)
            if key is not None and listcache.entry_ok(cached, key):
                return Snapshot(path=path, label=m.group(2), timestamp=_name_ts(m.group(1)),
                                meta=cached["meta"], problem=cached["problem"], file_size=cached["size"]), \
                    key, cached
            snap, cacheable = self._load(path, m, None if key is None else key[0])
            return snap, key, (_cache_entry(snap, key) if key is not None and cacheable else None)

        def pack(loaded: tuple[Snapshot, list | None, dict | None]) -> bool | tuple | None:
            snap, key, cache_entry = loaded
            if cache_entry is None:
                return None
            if cache_entry is index.get(snap.path.name):
                return True
            return snap.meta, snap.problem, snap.file_size, key

        def unpack(item: tuple, packed: bool | tuple) -> tuple[Snapshot, list | None, dict | None]:
            name, path, m, _, _ = item
            if packed is True:
                entry = index[name]
                meta, problem, size, key = entry["meta"], entry["problem"], entry["size"], entry["key"]
            else:
                meta, problem, size, key = packed
                entry = None
            snap = Snapshot(path=path, label=m.group(2), timestamp=_name_ts(m.group(1)), meta=meta,
                            problem=problem, file_size=size)
            return snap, key, entry or _cache_entry(snap, key)

        if len(items) < listcache.PARALLEL_MIN or not listcache.can_fork():
            meanwhile()
            return [load(item) for item in items]
        if any(name not in index for name, *_ in items):
            # Imported once, before the fork, not in both processes. (For a cached file changed since,
            # it is imported by the process that reads the file.)
            preload_reader()
        return forkmap.forked_map(items, load, pack, unpack, meanwhile)

    def _load(self, path: Path, m: re.Match, size: int | None = None) -> tuple[Snapshot, bool]:
        """Read and quick-check one snapshot; also whether its metadata may be cached as JSON.

        ``size`` is given by ``list`` when it has just seen (lstat) a regular file there, which saves three
        more stat calls per file; ``validate`` looks at everything afresh."""
        ts = _name_ts(m.group(1))
        snap = Snapshot(path=path, label=m.group(2), timestamp=ts)
        if size is None:
            try:
                st = path.stat()
            except OSError:
                snap.problem = "file is unreadable"
                return snap, True
            if not path.is_file() or path.is_symlink():
                snap.problem = "not a regular file"
                return snap, True
            size = st.st_size
        snap.file_size = size
        try:
            snap.meta, faithful = read_meta(os.fspath(path) + META_SUFFIX)  # a str: no Path to build
        except ValueError as exc:
            snap.problem = str(exc)
            return snap, True
        snap.problem = check_meta(snap.meta, path, snap.label, ts) or validation.quick_check(snap)
        return snap, faithful or json_faithful(snap.meta)

    def validate(self, snap: Snapshot, report=None) -> Validation:
        """Full check (``validation.full_check``) against the metadata as it is on disk now."""
        fresh, _ = self._load(snap.path, FILENAME_RE.match(snap.filename))
        return validation.full_check(snap, fresh)

    def orphans(self) -> list[Path]:
        """Leftovers that are not snapshots: stale .partial files, metadata without a .sql, .sql without metadata."""
        out = []
        names = {e.name for e in self._entries()}
        for name in sorted(names):
            unfinished = name.endswith(PARTIAL_SUFFIX) or name.endswith(".meta.yaml.tmp")
            lone_meta = name.endswith(META_SUFFIX) and name[: -len(META_SUFFIX)] not in names
            lone_sql = FILENAME_RE.match(name) and name + META_SUFFIX not in names
            if unfinished or lone_meta or lone_sql:
                out.append(self.directory / name)
        return out

    def resolve(self, arg: str, snapshots: list[Snapshot] | None = None) -> Snapshot:
        """A SNAPSHOT argument: a list index (1 = newest) or a file name in the directory."""
        arg = (arg or "").strip()
        snaps = self.list() if snapshots is None else snapshots
        if re.fullmatch(r"[+-]?\d+", arg) and not FILENAME_RE.match(arg):
            idx = int(arg)
            if idx < 1 or idx > len(snaps):
                count = f"1 to {len(snaps)}" if snaps else "none: the directory has no snapshots"
                raise BadInput(f"There is no snapshot #{arg}.", f"Valid numbers: {count}.")
            return snaps[idx - 1]
        name = Path(arg).name
        if Path(arg).parent not in (Path("."), self.directory) and \
                Path(arg).resolve().parent != self.directory.resolve():
            raise BadInput(f"{arg} is not in the snapshot directory {self.directory}.",
                           "Give a list number or a file name from `dbsage-tui list`.")
        name = name.removesuffix(META_SUFFIX)
        for s in snaps:
            if s.filename == name:
                return s
        if (self.directory / name).exists() and not FILENAME_RE.match(name):
            raise BadInput(f"{name} is not a snapshot file name ({{YYYYmmddHHMMSS}}_{{label}}.sql, .sql.gz, "
                           ".sql.zst or .clone).",
                           "Give a list number or a file name from `dbsage-tui list`.")
        raise BadInput(f"No snapshot named {name} in {self.directory}.",
                       "Run `dbsage-tui list` to see the snapshots.")

    # -- writing ---------------------------------------------------------------------------------------
    def write_meta(self, sql_path: Path, meta: dict) -> None:
        """Write ``{file}.meta.yaml`` atomically (temp file, fsync, rename), mode 0600."""
        target = sql_path.with_name(sql_path.name + META_SUFFIX)
        tmp = target.with_name(target.name + ".tmp")
        write_atomic(target, meta_text(meta).encode("utf-8"), tmp)

    def set_protected(self, snap: Snapshot, protected: bool) -> None:
        if snap.meta is None:
            raise InvalidSnapshot(f"{snap.filename} has no usable metadata ({snap.problem}).")
        meta = dict(snap.meta)
        meta["protected"] = protected
        self.write_meta(snap.path, meta)
        snap.meta = meta

    def delete(self, snap: Snapshot) -> None:
        """Remove the metadata first, then the file: an interruption leaves an orphan .sql (listed as
        invalid), never metadata that points at nothing valid."""
        snap.meta_path.unlink(missing_ok=True)
        snap.path.unlink(missing_ok=True)
        fsync_dir(self.directory)

    # -- lock and audit --------------------------------------------------------------------------------
    @contextlib.contextmanager
    def lock(self, operation: str, target: str) -> Iterator[None]:
        """An exclusive flock on the directory's lock file. The kernel drops it when the holder dies, so a
        ``kill -9`` never leaves a stale lock; the file names the holder for whoever is refused."""
        self.ensure_dir()
        path = self.directory / LOCK_NAME
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EACCES):
                    raise
                holder = _read_holder(path)
                raise LockHeld(f"Another dbsage-tui is busy here: {holder}.",
                               "Wait for it to finish, then try again.") from None
            info = {"pid": os.getpid(), "host": socket.gethostname(), "user": os_user(),
                    "operation": operation, "target": target, "since": format_ts(utcnow())}
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(info).encode(), 0)
            try:
                yield
            finally:
                os.ftruncate(fd, 0)
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def audit(self, action: str, outcome: str, **fields) -> None:
        """Append one JSON line to the audit log (never a password: callers pass masked targets)."""
        entry = {"time": format_ts(utcnow()), "action": action, "outcome": outcome, "os_user": os_user(),
                 "host": socket.gethostname(), **fields}
        try:
            self.ensure_dir()
            fd = os.open(self.directory / AUDIT_NAME, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            with os.fdopen(fd, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(entry, default=str) + "\n")
                fh.flush()
                os.fsync(fh.fileno())
        except OSError:
            pass  # the audit log must never turn a good restore into a failure

    def read_audit(self) -> list[dict]:
        try:
            lines = (self.directory / AUDIT_NAME).read_text(encoding="utf-8").splitlines()
        except OSError:
            return []
        out = []
        for line in lines:
            with contextlib.suppress(ValueError):
                out.append(json.loads(line))
        return out


def _cache_entry(snap: Snapshot, key: list) -> dict:
    """What the listing cache keeps of a snapshot read afresh (``listcache.entry_ok`` checks it)."""
    return {"key": key, "meta": snap.meta, "problem": snap.problem, "size": snap.file_size}


def _name_ts(stamp: str) -> dt.datetime:
    """YYYYmmddHHMMSS as an aware UTC datetime (strptime is ten times slower, and lists can be long)."""
    try:
        return dt.datetime(int(stamp[:4]), int(stamp[4:6]), int(stamp[6:8]), int(stamp[8:10]),
                           int(stamp[10:12]), int(stamp[12:14]), tzinfo=dt.UTC)
    except ValueError:  # e.g. month 13: sorts first, and check_meta reports the mismatch
        return dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def _read_holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        info = {}
    if not info:
        return "another process holds the lock"
    return (f"pid {info.get('pid')} on {info.get('host')} ({info.get('user')}) is running "
            f"{info.get('operation')} on {info.get('target')} since {info.get('since')}")


def os_user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - getpass raises various errors without a passwd entry
        return str(os.getuid())


def write_atomic(path: Path, data: bytes, tmp: Path) -> None:
    """``data`` into ``path`` whole or not at all: ``tmp`` (mode 0600) written and fsynced, renamed over
    ``path``, the directory fsynced."""
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def age_text(ts: dt.datetime, now: dt.datetime | None = None) -> str:
    import humanize
    now = now or utcnow()
    return humanize.naturaltime(now - ts)


#: An age text of less than a day -> the age (whole seconds) at which it stops being the text: see
#: ``age_changes_at``.
_AGE_TEXT_ENDS: dict[str, int] = {}
_DAY = 86_400


def age_changes_at(ts: dt.datetime, now: dt.datetime, text: str | None = None) -> dt.datetime:
    """When ``age_text(ts, ...)`` will next read differently from what it reads at ``now``: a list that
    shows ages re-renders one then, and only then.

    Asked of ``age_text`` itself rather than assumed: humanize rounds minutes and hours to the nearest
    (half to even: 90 s is "2 minutes", 150 s still "2 minutes", 151 s "3 minutes"), and its rules have
    changed between releases. Under a day the text depends on the whole seconds of age alone, and each
    text holds for one stretch of ages, so where a text ends is searched for once and remembered; from a
    day on the text counts whole days (months and years are derived from days). ``text``: what
    ``age_text(ts, now)`` gave, if the caller has it (10,000 rows within a day: 16 ms instead of 57)."""
    age = (now - ts).total_seconds()
    if age < 0:  # a timestamp ahead of this clock ("in 5 minutes"): look again in a second
        return now + dt.timedelta(seconds=1)
    seconds = int(age)
    if seconds >= _DAY:
        return ts + dt.timedelta(days=seconds // _DAY + 1)

    def text_at(s: int) -> str:
        return age_text(ts, ts + dt.timedelta(seconds=s))

    current = age_text(ts, now) if text is None else text
    end = _AGE_TEXT_ENDS.get(current)
    if end is None or end <= seconds:
        lo, hi = seconds, _DAY  # text_at(lo) is the current text; the first age that reads otherwise is in (lo, hi]
        if text_at(hi) == current:  # "23 hours ago" rounds up to "a day ago": from a day on, days count
            end = hi
        else:
            while hi - lo > 1:
                mid = (lo + hi) // 2
                lo, hi = (mid, hi) if text_at(mid) == current else (lo, mid)
            end = hi
        _AGE_TEXT_ENDS[current] = end
    return ts + dt.timedelta(seconds=end)

