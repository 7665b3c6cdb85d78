"""The snapshot directory without a database: listing, the metadata cache, deletion, the lock."""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import hashlib
import json
import os
import time
from pathlib import Path

import pytest
import yaml

from services import forkmap, listcache
from services.errors import LockHeld
from services.store import INDEX_NAME, META_SUFFIX, SnapshotStore, format_ts, load_meta

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
    # A change to metadata (protect) and a damaged file are both seen on the next listing, by this store
    # (from the cache its last listing left in memory) and by a new one (a new process: from the file).
    store.set_protected(store.resolve("1"), True)
    with open(store.directory / a, "ab") as fh:
        fh.write(b"junk")
    for lister in (store, SnapshotStore(store.directory), store):
        snaps = {s.filename: s for s in lister.list()}
        assert snaps[b].protected and snaps[b].valid
        assert not snaps[a].valid and "size" in snaps[a].problem
    # A new snapshot: the cache this store writes from memory holds every snapshot, and serves a new store.
    c = make(store, "c", t + dt.timedelta(hours=2))
    assert [s.filename for s in store.list()] == [c, b, a]
    assert set(json.loads((store.directory / INDEX_NAME).read_text())) == {"version", a, b, c}
    assert [(s.filename, s.meta, s.problem) for s in SnapshotStore(store.directory).list()] == \
        [(s.filename, s.meta, s.problem) for s in store.list()]
    # A corrupt cache is ignored, never trusted.
    (store.directory / INDEX_NAME).write_text("{not json")
    assert [s.filename for s in SnapshotStore(store.directory).list()] == [c, b, a]
    # validate() reads everything afresh: a byte flipped without changing size or mtime is still caught.
    path = store.directory / b
    st = os.stat(path)
    data = bytearray(path.read_bytes())
    data[data.index(b"1\n")] = ord("7")
    path.write_bytes(bytes(data))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert store.resolve(b).valid, "the quick check cannot see it ..."
    assert "sha256 mismatch" in store.validate(store.resolve(b)).reason, "... the full validation does"


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


def test_our_metadata_is_read_without_pyyaml_and_hand_edits_with_it(tmp_path, monkeypatch):
    store = SnapshotStore(tmp_path / "s")
    name = make(store, "fast", dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
    meta_path = store.directory / (name + META_SUFFIX)
    expected = yaml.safe_load(meta_path.read_text())["snapshot"]

    def no_pyyaml(*args, **kwargs):
        raise AssertionError("PyYAML was used for metadata that write_meta wrote")

    with monkeypatch.context() as m:
        m.setattr(yaml, "load", no_pyyaml)  # the module the store imports on first use
        assert load_meta(meta_path) == expected
        assert store.list()[0].valid
    # A comment and a flow list, as someone editing by hand might leave: PyYAML reads it, same result.
    meta_path.write_text(meta_path.read_text().replace("snapshot:\n", "# edited\nsnapshot:\n") +
                         "  schemas: [public, app]\n")
    assert load_meta(meta_path) == {**expected, "schemas": ["public", "app"]}
    assert store.list()[0].valid


def test_the_cache_keeps_only_what_json_gives_back_unchanged(tmp_path):
    """A hand-written date or integer key would come back from JSON as a string: such metadata is parsed
    on every listing instead of being cached, and the other snapshots are still cached."""
    store = SnapshotStore(tmp_path / "s")
    t = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    plain = make(store, "plain", t)
    odd = make(store, "odd", t + dt.timedelta(hours=1))
    odd_meta = store.directory / (odd + META_SUFFIX)
    odd_meta.write_text(odd_meta.read_text() + "  reviewed: 2026-01-03\n  row_counts:\n    1: 5\n")
    for _ in range(2):  # parsed, then from the cache for one and parsed again for the other
        snaps = {s.filename: s for s in SnapshotStore(store.directory).list()}
        assert snaps[odd].valid and snaps[odd].meta["reviewed"] == dt.date(2026, 1, 3)
        assert snaps[odd].meta["row_counts"] == {1: 5}
        index = json.loads((store.directory / INDEX_NAME).read_text())
        assert plain in index and odd not in index


def test_the_cache_is_written_as_json_dumps_would_write_it():
    """The cache is encoded one entry at a time (a TUI worker thread lets the event loop in between):
    byte for byte what one ``json.dumps`` of it gives, and read back the same."""
    index = {f"2026010100000{i}_l{i}.sql": {"key": [10 + i, 1 << 60, i, None, None, None], "problem": None,
                                            "meta": {"label": f"l{i}", "purpose": "ünïcode “quoted” \\ \"x\"",
                                                     "row_counts": {"public.t": i}, "ratio": 0.5,
                                                     "schemas": ["public", "app"], "protected": False},
                                            "size": 4} for i in range(3)}
    index["20260101000009_bad.sql"] = {"key": [1, 2, 3, 4, 5, 6], "meta": None, "problem": "no metadata",
                                       "size": 0}
    whole = json.dumps({"version": listcache.INDEX_VERSION, **index}, separators=(",", ":")).encode("ascii")
    assert listcache.encode(index) == whole
    assert listcache.encode({}) == json.dumps({"version": listcache.INDEX_VERSION}).replace(" ", "").encode()
    assert json.loads(listcache.encode(index)) == {"version": listcache.INDEX_VERSION, **index}


def test_damaged_cache_entries_are_not_served(tmp_path):
    store = SnapshotStore(tmp_path / "s")
    name = make(store, "a", dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
    store.list()
    path = store.directory / INDEX_NAME
    index = json.loads(path.read_text())
    for damage in ({"meta": 5}, {"problem": ["x"]}, {"size": "big"}, {"meta": None, "problem": None}):
        path.write_text(json.dumps({**index, name: {**index[name], **damage}}))
        snap = SnapshotStore(store.directory).list()[0]  # a new process reads the file
        assert snap.valid and snap.meta["label"] == "a" and snap.file_size == len(DUMP)


def test_quick_check_of_a_large_file_reads_both_ends(tmp_path):
    store = SnapshotStore(tmp_path / "s")
    body = DUMP.replace(b"\\.\n", b"".join(b"%d\n" % i for i in range(3000)) + b"\\.\n")
    assert len(body) > 8192
    name = make(store, "big", dt.datetime(2026, 1, 1, tzinfo=dt.UTC), body)
    assert store.list()[0].valid
    cut = body[:body.rindex(b"-- PostgreSQL database dump complete")]
    make(store, "big", dt.datetime(2026, 1, 1, tzinfo=dt.UTC), cut)
    assert "trailer is missing" in store.list()[0].problem
    (store.directory / name).write_bytes(b"x" * len(cut))
    assert "header missing" in store.list()[0].problem


def test_listings_at_once_agree_and_leave_a_valid_cache(tmp_path):
    store = SnapshotStore(tmp_path / "s")
    t = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    names = [make(store, f"n{i}", t + dt.timedelta(minutes=i)) for i in range(40)]
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: [(s.filename, s.valid, s.meta) for s in store.list()], range(8)))
    assert all(r == results[0] for r in results) and [n for n, *_ in results[0]] == names[::-1]
    assert set(json.loads((store.directory / INDEX_NAME).read_text())) == {"version", *names}
    assert not list(store.directory.glob("*.tmp"))


@pytest.mark.parametrize("child", ["works", "fails"])
def test_a_first_listing_shared_with_a_forked_child_gives_the_same_snapshots(tmp_path, monkeypatch, child):
    store = SnapshotStore(tmp_path / "s")
    t = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    names = [make(store, f"n{i}", t + dt.timedelta(minutes=i)) for i in range(30)]
    (store.directory / names[3]).write_bytes(b"junk")  # invalid: size and header
    (store.directory / (names[20] + META_SUFFIX)).unlink()  # invalid: no metadata
    odd = store.directory / (names[25] + META_SUFFIX)
    odd.write_text(odd.read_text() + "  reviewed: 2026-01-03\n")  # a date: the parent reads it again
    monkeypatch.setattr(listcache, "PARALLEL_MIN", 10**9)
    alone = [(s.filename, s.problem, s.meta, s.file_size) for s in store.list()]
    (store.directory / INDEX_NAME).unlink()
    monkeypatch.setattr(listcache, "PARALLEL_MIN", 2)
    if child == "fails":  # the child dies before sending anything: the parent reads its half too
        monkeypatch.setattr(forkmap.marshal, "dumps", lambda rows: os._exit(3))
    forks = []
    real_fork = os.fork
    monkeypatch.setattr(forkmap.os, "fork", lambda: forks.append(1) or real_fork())
    # A new store, as in a new process: a store keeps the cache its last listing left in memory.
    shared = [(s.filename, s.problem, s.meta, s.file_size) for s in SnapshotStore(store.directory).list()]
    assert shared == alone
    # One child shares the reading; a second writes the listing cache after the listing has returned.
    assert len(forks) == (2 if listcache.can_fork() else 0)
    assert dict((f, meta) for f, _, meta, _ in alone)[names[25]]["reviewed"] == dt.date(2026, 1, 3)
    for _ in range(500):
        if (store.directory / INDEX_NAME).exists():
            break
        time.sleep(0.01)
    assert json.loads((store.directory / INDEX_NAME).read_text()).keys() == {"version", *names} - {names[25]}


@pytest.mark.parametrize("how", ["first, alone", "first, with a forked child", "from the cache"])
def test_the_signature_a_listing_returns_is_the_directorys(tmp_path, monkeypatch, how):
    """The TUI keeps the signature a listing returns instead of stat'ing every file again: it must be the
    one ``directory_signature`` reads, or the next check of the directory would list it again (or, worse,
    miss a change). Odd entries too: metadata without a snapshot, a .sql of another name, a symlink, a
    directory named like a snapshot, a snapshot without metadata."""
    store = SnapshotStore(tmp_path / "s")
    t = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    names = [make(store, f"n{i}", t + dt.timedelta(minutes=i)) for i in range(12)]
    d = store.directory
    (d / (names[4] + META_SUFFIX)).unlink()
    (d / "20260101000000_lone.sql.meta.yaml").write_text("snapshot: {}\n")
    (d / "notes.sql").write_text("select 1;\n")
    (d / "20260102000000_link.sql").symlink_to(d / names[0])
    (d / "20260103000000_dir.sql").mkdir()
    (d / "x.sql.partial").write_text("growing")  # not listed, not in the signature
    monkeypatch.setattr(listcache, "PARALLEL_MIN", 2 if how == "first, with a forked child" else 10**9)
    if how == "from the cache":
        store.list()
        assert len(json.loads((d / INDEX_NAME).read_text())) == 1 + 12  # the version, the 12 regular files
    snaps, signature = store.list_signed()
    assert signature == listcache.directory_signature(d)
    assert "x.sql.partial" not in signature and "notes.sql" in signature
    assert [s.filename for s in snaps] == [s.filename for s in store.list()]
    # A change after the listing shows in the next signature: the TUI lists again.
    (d / names[7]).write_bytes(DUMP + b"-- more\n")
    assert listcache.directory_signature(d) != signature


def test_a_first_listing_made_before_the_app_starts_is_the_one_it_shows(tmp_path):
    """``prefetch`` (the TUI calls it before it starts) lists a large uncached directory at once; the next
    ``list`` returns that listing if nothing changed in the directory since, and lists afresh if it did.
    In a fresh process: prefetch only works while the process has one thread, as dbsage-tui has when it
    starts (this one has the test loop's worker threads)."""
    import subprocess
    import sys
    import textwrap
    script = textwrap.dedent("""
        import datetime as dt, json, sys, time
        from services import listcache
        from services.store import INDEX_NAME, META_SUFFIX, SnapshotStore
        from tests.test_store import make
        listcache.PARALLEL_MIN = 3  # "large": 10,000 in the benchmark
        store = SnapshotStore(sys.argv[1])
        t = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
        names = [make(store, f"n{i}", t + dt.timedelta(minutes=i)) for i in range(6)]
        (store.directory / names[2]).write_bytes(b"junk")
        calls = []  # what the TUI imports meanwhile: called once, whether a child was forked or not
        store.prefetch(meanwhile=lambda: calls.append("forked"))
        for _ in range(500):  # listed now, not when the app asks: its cache is written right after
            if (store.directory / INDEX_NAME).exists():
                break
            time.sleep(0.01)
        assert len(json.loads((store.directory / INDEX_NAME).read_text())) == 7  # version + 6
        assert not list(store.directory.glob("*.tmp"))
        fresh = [(s.filename, s.problem, s.meta) for s in SnapshotStore(store.directory).list()]
        assert [(s.filename, s.problem, s.meta) for s in store.list()] == fresh
        assert [f for f, *_ in fresh] == names[::-1] and "size is 4 bytes" in fresh[3][1]
        # A snapshot written between the two: the directory changed, so the listing is made again.
        time.sleep(0.3)  # (each listing's cache is written just after it, by a detached process)
        (store.directory / INDEX_NAME).unlink()
        store = SnapshotStore(store.directory)  # a new process, and no cache
        store.prefetch()
        newer = make(store, "later", t + dt.timedelta(hours=1))
        assert [s.filename for s in store.list()] == [newer, *names[::-1]]
        # Metadata rewritten between the two (protect): a rename over the file, seen by its new inode.
        time.sleep(0.3)
        (store.directory / INDEX_NAME).unlink()
        store = SnapshotStore(store.directory)  # a new process, and no cache
        store.prefetch()
        store.set_protected(SnapshotStore(store.directory).resolve(names[0]), True)
        assert [s.protected for s in store.list() if s.filename == names[0]] == [True]
        # With a listing cache, prefetch lists too (the child makes its share of the stat calls): what it
        # keeps is what a listing made afresh says, a snapshot changed since it was cached included.
        time.sleep(0.3)
        store.list()
        store = SnapshotStore(store.directory)  # a new process: it reads the cache file
        (store.directory / newer).unlink()
        (store.directory / (newer + META_SUFFIX)).unlink()
        (store.directory / names[4]).write_bytes(b"junk2")
        # (the imports' stand-in takes long enough for the child to take every chunk)
        store.prefetch(meanwhile=lambda: (time.sleep(0.3), calls.append("cached")))
        assert calls == ["forked", "cached"], calls
        primed = store.take_primed()
        fresh = [(s.filename, s.problem, s.meta) for s in SnapshotStore(store.directory).list()]
        assert primed is not None and [(s.filename, s.problem, s.meta) for s in primed[0]] == fresh
        assert [f for f, *_ in fresh] == names[::-1] and "size is 5 bytes" in fresh[1][1]
        assert primed[1] == listcache.directory_signature(store.directory)
        time.sleep(0.5)
        assert newer not in json.loads((store.directory / INDEX_NAME).read_text())
        # An import that fails meanwhile is the caller's error, not a listing problem to hide.
        (store.directory / INDEX_NAME).unlink()
        try:
            SnapshotStore(store.directory).prefetch(meanwhile=lambda: __import__("no_such_module_here"))
        except ImportError:
            print("ok")
        """)
    res = subprocess.run([sys.executable, "-c", script, str(tmp_path / "s")], capture_output=True, text=True,
                         timeout=60, cwd=Path(__file__).resolve().parents[1])
    assert res.stdout.strip() == "ok", res.stderr
