"""The snapshot directory: naming, listing, the lock and the audit log (metadata files: ``meta``; checking
the snapshot files: ``validation``; what a listing sees without reading: ``listing``).

A snapshot is ``{YYYYmmddHHMMSS}_{label}.sql`` (or ``.sql.gz``, ``.sql.zst``, or a ``.clone`` pointer to a
database copy on the server) plus ``{filename}.meta.yaml``; nothing else in the directory lists as one. Work
in progress is ``{filename}.partial`` until it is complete, so a crash never leaves a file that looks like one.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import gc
import os
import re
from dataclasses import dataclass
from pathlib import Path

from services.display import utcnow
from services.errors import BadInput, InvalidSnapshot, OperationFailed
from services.snapshots import compression, journal, validation
from services.snapshots.listing import Signature, name_ts, order_key, sign_rest, stamp_of
from services.snapshots.meta import check_meta, load_meta, meta_text

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


def free_name(directory: Path, label: str, suffix: str) -> tuple[dt.datetime, Path]:
    """Timestamp and path of a new snapshot (``suffix``: ``.sql``, ``.sql.gz``, ``.sql.zst`` or ``.clone``).
    If ``{timestamp}_{label}`` is taken by any snapshot, finished or not (two of one label in a second,
    whatever their kind), the next second is used, so that the name and the metadata timestamp stay the
    same instant."""
    ts = utcnow()
    while True:
        stem = f"{ts.strftime(TS_FORMAT)}_{label}"
        taken = [directory / (stem + sfx + end) for sfx in (*compression.SUFFIXES.values(), CLONE_SUFFIX)
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
    #: Listed from its name and ``stat`` alone (``list_names``): its files are not read yet.
    pending: bool = False

    @functools.cached_property  # a listing asks for it many times, and ``Path.name`` is computed each time
    def filename(self) -> str:
        return self.path.name

    @property
    def meta_path(self) -> Path:
        return self.path.with_name(self.path.name + META_SUFFIX)

    @property
    def valid(self) -> bool:
        return self.problem is None

    def get(self, key: str, default=None):
        meta = self.meta
        return meta.get(key, default) if meta else default

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
        return self.filename.endswith(".clone")


class SnapshotStore:
    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        #: What the last listing read, by file name: (``listing.stamp_of`` of its files, the Snapshot). A file
        #: whose stamp is unchanged is not read again, and lists as the same object (which the engine keeps
        #: as its files say: it replaces the metadata it rewrites): the TUI lists after every change it sees.
        self._memo: dict[str, tuple] = {}

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
        """Snapshots newest first (``listing.order_key``), each quick-checked.
        Within one store, a snapshot whose two files are unchanged (size, mtime, inode) since the last
        listing is not read again; ``validate`` always reads afresh."""
        return self.list_signed(False)[0]

    def list_names(self) -> list[Snapshot]:
        """Snapshots newest first, each ``pending``: known by its name and size alone, no file opened, so
        that a large directory can be shown at once and filled in by a listing that reads."""
        snaps = []
        # Sorted by name, which is ``order_key`` of a snapshot not read yet.
        for entry in sorted(self._entries(), key=lambda e: e.name, reverse=True):
            if m := FILENAME_RE.match(entry.name):
                try:
                    size = entry.stat(follow_symlinks=False).st_size
                except OSError:
                    size = 0
                snaps.append(Snapshot(self.directory / entry.name, m.group(2), name_ts(m.group(1)),
                                      file_size=size, pending=True))
        return snaps

    def list_signed(self, sign: bool = True) -> tuple[list[Snapshot], Signature | None]:
        """``list``, and the directory's ``listing.directory_signature`` as the listing saw it (each stamp taken
        before its file was read): a caller that keeps the listing knows when to list again."""
        entries = {e.name: e for e in self._entries()}
        signature: Signature | None = {} if sign else None
        fresh, snaps = {}, []
        # A listing allocates some fifty containers per snapshot and makes no reference cycles: the cyclic
        # collector's passes over them, many per thousand snapshots, would find nothing to free.
        collecting = gc.isenabled()
        gc.disable()
        try:
            for name, entry in entries.items():
                if (m := FILENAME_RE.match(name)) is None:
                    continue
                stamp = stamp_of(entry, entries.get(name + META_SUFFIX))
                known = self._memo.get(name)
                if stamp is not None and known is not None and known[0] == stamp:
                    snap = known[1]
                else:
                    snap = self._load(self.directory / name, m, None if stamp is None else stamp[0])
                if stamp is not None:
                    fresh[name] = (stamp, snap)
                    if signature is not None:
                        signature[name] = stamp[0:2]
                        if stamp[3] is not None:
                            signature[name + META_SUFFIX] = stamp[3:5]
                snaps.append(snap)
            self._memo = fresh
            if signature is not None:
                sign_rest(signature, entries)
            snaps.sort(key=order_key, reverse=True)
        finally:
            if collecting:
                gc.enable()
        return snaps, signature

    def _load(self, path: Path, m: re.Match, size: int | None = None) -> Snapshot:
        """Read and quick-check one snapshot. ``size`` is given by ``list`` when it has just seen (lstat) a
        regular file there; ``validate`` looks at everything afresh."""
        ts = name_ts(m.group(1))
        snap = Snapshot(path=path, label=m.group(2), timestamp=ts)
        if size is None:
            try:
                st = path.stat()
            except OSError:
                snap.problem = "file is unreadable"
                return snap
            if not path.is_file() or path.is_symlink():
                snap.problem = "not a regular file"
                return snap
            size = st.st_size
        snap.file_size = size
        try:
            snap.meta = load_meta(os.fspath(path) + META_SUFFIX)
        except ValueError as exc:
            snap.problem = str(exc)
            return snap
        snap.problem = check_meta(snap.meta, path, snap.label, ts) or validation.quick_check(snap)
        return snap

    def validate(self, snap: Snapshot) -> validation.Validation:
        """Full check (``validation.full_check``) against the metadata as it is on disk now."""
        fresh = self._load(snap.path, FILENAME_RE.match(snap.filename))
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
        """A SNAPSHOT argument: a list index (1 = newest) or a file name in the directory. A name is read on
        its own (the directory is listed for an index only, or when ``snapshots`` is given)."""
        arg = (arg or "").strip()
        if re.fullmatch(r"[+-]?\d+", arg) and not FILENAME_RE.match(arg):
            snaps = self.list() if snapshots is None else snapshots
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
        if snapshots is None and (m := FILENAME_RE.match(name)) and os.path.lexists(self.directory / name):
            return self._load(self.directory / name, m)
        for s in snapshots or []:
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
        write_atomic(target, meta_text(meta).encode("utf-8"), target.with_name(target.name + ".tmp"))

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

    # -- lock and audit (``journal``) -------------------------------------------------------------------
    def lock(self, operation: str, target: str) -> contextlib.AbstractContextManager[None]:
        self.ensure_dir()
        return journal.lock(self.directory / LOCK_NAME, operation, target)

    def audit(self, action: str, outcome: str, **fields) -> None:
        self.ensure_dir()
        journal.audit(self.directory / AUDIT_NAME, action, outcome, **fields)

    def read_audit(self) -> list[dict]:
        return journal.read_audit(self.directory / AUDIT_NAME)


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
