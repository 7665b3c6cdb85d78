"""The snapshot directory without a database: listing, the metadata format, deletion, the lock."""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import hashlib
import json
import os

import pytest
import yaml

from services.errors import LockHeld
from services.snapshots.listing import directory_signature, format_ts
from services.snapshots.store import META_SUFFIX, SnapshotStore, load_meta
from tests.helpers import tamper

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


def test_listing_follows_changes(tmp_path):
    store = SnapshotStore(tmp_path / "s")
    t = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    a = make(store, "a", t)
    b = make(store, "b", t + dt.timedelta(hours=1))
    assert [s.filename for s in store.list()] == [b, a]
    # A change to metadata (protect) and a damaged file are both seen on the next listing, by this store
    # (which remembers what its last listing read, by the files' stamps) and by a new one.
    store.set_protected(store.resolve("1"), True)
    with open(store.directory / a, "ab") as fh:
        fh.write(b"junk")
    for lister in (store, SnapshotStore(store.directory), store):
        snaps = {s.filename: s for s in lister.list()}
        assert snaps[b].protected and snaps[b].valid
        assert not snaps[a].valid and "size" in snaps[a].problem
    # A new snapshot: this store and a new one list the same.
    c = make(store, "c", t + dt.timedelta(hours=2))
    assert [s.filename for s in store.list()] == [c, b, a]
    assert [(s.filename, s.meta, s.problem) for s in SnapshotStore(store.directory).list()] == \
        [(s.filename, s.meta, s.problem) for s in store.list()]
    # validate() reads everything afresh: a byte flipped without changing size or mtime is still caught.
    path = store.directory / b
    st = os.stat(path)
    tamper(path, b"1\n", b"7\n")
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


def test_our_metadata_is_json_formatted_yaml_read_without_pyyaml(tmp_path, monkeypatch):
    """What ``write_meta`` writes is indented JSON, keys in the writer's order: YAML readers read it as
    before, and a listing reads it with ``json.loads``, never PyYAML."""
    store = SnapshotStore(tmp_path / "s")
    name = make(store, "fast", dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
    meta_path = store.directory / (name + META_SUFFIX)
    text = meta_path.read_text()
    assert text.startswith('{\n  "snapshot": {\n    "label": "fast",\n    "timestamp": ')
    expected = yaml.safe_load(text)["snapshot"]
    assert json.loads(text)["snapshot"] == expected
    assert list(expected) == ["label", "timestamp", "type", "size_bytes", "sha256", "filename", "purpose",
                              "protected"]

    def no_pyyaml(*args, **kwargs):
        raise AssertionError("PyYAML was used for metadata that write_meta wrote")

    with monkeypatch.context() as m:
        m.setattr(yaml, "load", no_pyyaml)
        assert load_meta(meta_path) == expected
        assert store.list()[0].valid


def test_hand_edited_and_block_style_metadata_is_read_with_pyyaml(tmp_path):
    """An older block-style file with a comment, a flow list, a date and an integer key, as a hand edit
    might leave: PyYAML reads it (the date as a date); protecting it writes JSON that reads back."""
    store = SnapshotStore(tmp_path / "s")
    name = make(store, "edited", dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
    meta_path = store.directory / (name + META_SUFFIX)
    expected = load_meta(meta_path)
    meta_path.write_text("# edited\n" + yaml.safe_dump({"snapshot": expected}, sort_keys=False)
                         + "  schemas: [public, app]\n  reviewed: 2026-01-03\n  row_counts:\n    1: 5\n")
    snap = SnapshotStore(store.directory).list()[0]
    assert snap.valid, snap.problem
    assert snap.meta == {**expected, "schemas": ["public", "app"], "reviewed": dt.date(2026, 1, 3),
                         "row_counts": {1: 5}}
    store.set_protected(snap, True)
    again = json.loads(meta_path.read_text())["snapshot"]
    assert again["protected"] is True and again["reviewed"] == "2026-01-03"
    assert SnapshotStore(store.directory).list()[0].valid
    meta_path.write_text("snapshot: &a {label: *a}\n")
    assert "aliases" in SnapshotStore(store.directory).list()[0].problem


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


def test_listings_at_once_agree(tmp_path):
    store = SnapshotStore(tmp_path / "s")
    t = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    names = [make(store, f"n{i}", t + dt.timedelta(minutes=i)) for i in range(40)]
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: [(s.filename, s.valid, s.meta) for s in store.list()], range(8)))
    assert all(r == results[0] for r in results) and [n for n, *_ in results[0]] == names[::-1]


@pytest.mark.parametrize("how", ["first", "again, from what the store remembers"])
def test_the_signature_a_listing_returns_is_the_directorys(tmp_path, how):
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
    if how != "first":
        store.list()
    snaps, signature = store.list_signed()
    assert signature == directory_signature(d)
    assert "x.sql.partial" not in signature and "notes.sql" in signature
    assert [s.filename for s in snaps] == [s.filename for s in store.list()]
    # A change after the listing shows in the next signature: the TUI lists again.
    (d / names[7]).write_bytes(DUMP + b"-- more\n")
    assert directory_signature(d) != signature


def test_a_listing_from_names_alone_opens_no_file(tmp_path, monkeypatch):
    """``list_names`` (a large directory's first paint): the same snapshots in the same order, pending,
    no metadata read; the next listing that reads is not served from it."""
    store = SnapshotStore(tmp_path / "s")
    t = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    names = [make(store, f"n{i}", t + dt.timedelta(minutes=i)) for i in range(3)]
    real_open = os.open
    with monkeypatch.context() as m:
        m.setattr(os, "open", lambda *a, **k: (_ for _ in ()).throw(AssertionError(f"opened {a[0]}")))
        snaps = store.list_names()
    assert os.open is real_open
    assert [s.filename for s in snaps] == names[::-1]
    assert all(s.pending and s.meta is None and s.valid and s.file_size == len(DUMP) for s in snaps)
    read = store.list()
    assert all(not s.pending and s.meta["label"] == s.label and s.valid for s in read)
