"""The snapshot directory without a database: listing, the metadata cache, deletion, the lock."""

from __future__ import annotations

import datetime as dt
import hashlib
import os

import pytest

from services.errors import LockHeld
from services.store import INDEX_NAME, SnapshotStore, format_ts

DUMP = (b"--\n-- PostgreSQL database dump\n--\n\nCOPY public.t (x) FROM stdin;\n1\n2\n\\.\n\n"
        b"--\n-- PostgreSQL database dump complete\n--\n\n\\unrestrict k\n\n")


def make(store: SnapshotStore, label: str, ts: dt.datetime, body: bytes = DUMP) -> str:
    store.ensure_dir()
    name = f"{ts:%Y%m%d%H%M%S}_{label}.sql"
    (store.directory / name).write_bytes(body)
    store.write_meta(store.directory / name, {
        "label": label, "timestamp": format_ts(ts), "type": "full", "size_bytes": len(body),
        "sha256": hashlib.sha256(body).hexdigest(), "filename": name, "purpose": "", "protected": False})
    return name


def test_cache_follows_changes(tmp_path):
    store = SnapshotStore(tmp_path / "s")
    t = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    a = make(store, "a", t)
    b = make(store, "b", t + dt.timedelta(hours=1))
    assert [s.filename for s in store.list()] == [b, a]
    assert (store.directory / INDEX_NAME).exists()
    # A change to metadata (protect) and a damaged file are both seen on the next listing.
    store.set_protected(store.resolve("1"), True)
    with open(store.directory / a, "ab") as fh:
        fh.write(b"junk")
    snaps = {s.filename: s for s in store.list()}
    assert snaps[b].protected and snaps[b].valid
    assert not snaps[a].valid and "size" in snaps[a].problem
    # A corrupt cache is ignored, never trusted.
    (store.directory / INDEX_NAME).write_text("{not json")
    assert [s.filename for s in store.list()] == [b, a]
    # validate() reads everything afresh: a byte flipped without changing size or mtime is still caught.
    path = store.directory / b
    st = os.stat(path)
    data = bytearray(path.read_bytes())
    data[data.index(b"1\n")] = ord("7")
    path.write_bytes(bytes(data))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert store.list()[0].valid, "the quick check cannot see it ..."
    assert "sha256 mismatch" in store.validate(store.list()[0]).reason, "... the full validation does"


def test_delete_removes_both_files_and_lock_is_exclusive(tmp_path):
    store = SnapshotStore(tmp_path / "s")
    name = make(store, "gone", dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
    store.delete(store.resolve(name))
    assert not list(store.directory.glob("*.sql*"))
    with store.lock("restore", "db"):
        with pytest.raises(LockHeld) as err, SnapshotStore(tmp_path / "s").lock("snapshot", "db"):
            pass
        assert f"pid {os.getpid()}" in err.value.message and "restore" in err.value.message
    with store.lock("again", "db"):
        pass
