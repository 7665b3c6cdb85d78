"""The retention policy: each tier and each reason on concrete cases, the policy's invariants as properties
(hypothesis), and one cleanup run on real snapshot files and metadata in a temporary directory."""

from __future__ import annotations

import datetime as dt
import hashlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.errors import BadInput
from services.snapshots import retention
from services.snapshots.listing import format_ts
from services.snapshots.retention import Item, Policy, is_protected_label, items_from_snapshots, plan
from services.snapshots.store import TS_FORMAT, SnapshotStore

NOW = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.UTC)


def item(ts: dt.datetime, label: str = "nightly", **kw) -> Item:
    return Item(filename=f"{ts.strftime(TS_FORMAT)}_{label}.sql", label=label, timestamp=ts, **kw)


def ago(days: float = 0, hours: float = 0) -> dt.datetime:
    return NOW - dt.timedelta(days=days, hours=hours)


def reasons(p: retention.Plan) -> dict[str, str]:
    return {d.filename: d.reason for d in p.keep + p.delete + p.invalid}


def kept(p: retention.Plan) -> set[str]:
    return {d.filename for d in p.keep}


# -- concrete cases, one per tier and per reason -----------------------------------------------------------

def test_everything_younger_than_seven_days_is_kept():
    items = [item(ago(hours=1)), item(ago(days=1)), item(ago(days=1, hours=1)), item(ago(days=6, hours=23))]
    p = plan(items, NOW)
    assert not p.delete and not p.invalid
    assert set(reasons(p).values()) == {"kept: < 7 days"}


def test_seven_to_thirty_days_keeps_the_newest_of_each_day():
    day = dt.datetime(2026, 11, 10, tzinfo=dt.UTC)  # 15 days before NOW
    morning, noon, evening = (item(day.replace(hour=h)) for h in (8, 12, 18))
    other_day = item(dt.datetime(2026, 11, 9, 23, 59, tzinfo=dt.UTC))
    p = plan([morning, noon, evening, other_day], NOW)
    assert kept(p) == {evening.filename, other_day.filename}
    r = reasons(p)
    assert r[evening.filename] == "kept: newest of 2026-11-10"
    assert r[other_day.filename] == "kept: newest of 2026-11-09"
    assert r[morning.filename] == f"delete: older snapshot of 2026-11-10 superseded by {evening.filename}"
    assert r[noon.filename] == f"delete: older snapshot of 2026-11-10 superseded by {evening.filename}"


def test_thirty_to_365_days_keeps_the_newest_of_each_iso_week():
    monday = dt.datetime(2026, 9, 21, 10, tzinfo=dt.UTC)  # ISO week 2026-W39, about 65 days old
    sunday = dt.datetime(2026, 9, 27, 10, tzinfo=dt.UTC)  # same ISO week
    next_monday = dt.datetime(2026, 9, 28, 10, tzinfo=dt.UTC)  # 2026-W40
    items = [item(monday), item(sunday), item(next_monday)]
    p = plan(items, NOW)
    r = reasons(p)
    assert r[items[1].filename] == "kept: newest of 2026-W39"
    assert r[items[2].filename] == "kept: newest of 2026-W40"
    assert r[items[0].filename] == f"delete: older snapshot of 2026-W39 superseded by {items[1].filename}"


def test_iso_week_across_new_year_uses_the_iso_year():
    items = [item(dt.datetime(2025, 12, 29, tzinfo=dt.UTC)), item(dt.datetime(2026, 1, 2, tzinfo=dt.UTC))]
    p = plan(items, NOW)
    assert reasons(p)[items[1].filename] == "kept: newest of 2026-W01"
    assert [d.filename for d in p.delete] == [items[0].filename]


def test_older_than_a_year_keeps_the_newest_of_each_month():
    items = [item(dt.datetime(2024, 10, d, tzinfo=dt.UTC)) for d in (1, 3, 30)]
    items.append(item(dt.datetime(2024, 11, 2, tzinfo=dt.UTC)))
    p = plan(items, NOW)
    r = reasons(p)
    assert kept(p) == {items[2].filename, items[3].filename}
    assert r[items[2].filename] == "kept: newest of 2024-10"
    assert r[items[0].filename] == f"delete: older snapshot of 2024-10 superseded by {items[2].filename}"


def test_tier_edges_are_inclusive_of_the_older_tier():
    exactly_7 = item(ago(days=7))
    just_under_7 = item(ago(days=7) + dt.timedelta(seconds=1), label="b")
    p = plan([exactly_7, just_under_7], NOW)
    assert reasons(p)[just_under_7.filename] == "kept: < 7 days"
    assert reasons(p)[exactly_7.filename] == "kept: newest of 2026-11-18"


def test_protected_by_metadata_is_kept_and_does_not_stand_for_its_bucket():
    day = dt.datetime(2026, 11, 10, tzinfo=dt.UTC)
    protected = item(day.replace(hour=20), protected_meta=True)
    newest, older = item(day.replace(hour=18)), item(day.replace(hour=8))
    p = plan([protected, newest, older], NOW)
    r = reasons(p)
    assert r[protected.filename] == "kept: protected (metadata)"
    assert r[newest.filename] == "kept: newest of 2026-11-10"
    assert r[older.filename] == f"delete: older snapshot of 2026-11-10 superseded by {newest.filename}"


@pytest.mark.parametrize("label", ["v1", "v1.0", "V2", "release-2.3.1", "app-v3", "2.3", "before-migration",
                                   "before_migration", "baseline", "BASELINE"])
def test_protected_labels(label):
    assert is_protected_label(label)
    old = item(dt.datetime(2023, 1, 1, tzinfo=dt.UTC), label=label)
    newer = item(dt.datetime(2023, 1, 2, tzinfo=dt.UTC))
    p = plan([old, newer], NOW)
    assert reasons(p)[old.filename] == f"kept: protected label {label}"
    assert not p.delete


@pytest.mark.parametrize("label", ["nightly", "daily-backup", "before-deploy", "x", "migration", "2024"])
def test_ordinary_labels(label):
    assert not is_protected_label(label)


def test_newest_valid_full_snapshot_survives_newer_schema_only_ones():
    day = dt.datetime(2026, 11, 10, tzinfo=dt.UTC)
    schema_only = item(day.replace(hour=20), label="schema", full=False)
    full = item(day.replace(hour=10), label="full")
    older_full = item(day.replace(hour=5), label="older")
    p = plan([schema_only, full, older_full], NOW)
    r = reasons(p)
    assert r[schema_only.filename] == "kept: newest of 2026-11-10"
    assert r[full.filename] == "kept: newest valid full snapshot"
    assert r[older_full.filename].startswith("delete: older snapshot of 2026-11-10")


def test_invalid_snapshots_are_listed_apart_never_deleted_by_the_policy():
    bad = item(dt.datetime(2023, 1, 1, tzinfo=dt.UTC), label="broken", valid=False,
               problem="metadata file is missing")
    bad_v1 = item(dt.datetime(2023, 1, 1, 1, tzinfo=dt.UTC), label="v1", valid=False, problem="truncated")
    good = item(dt.datetime(2023, 1, 2, tzinfo=dt.UTC))
    p = plan([bad, bad_v1, good], NOW)
    assert [d.filename for d in p.invalid] == [bad.filename]
    assert p.invalid[0].reason == "invalid (metadata file is missing): removed only when asked"
    assert reasons(p)[bad_v1.filename] == "kept: protected label v1 (invalid: truncated)"
    assert not p.delete


def test_timestamps_in_other_zones_are_bucketed_by_utc_day():
    tz = dt.timezone(dt.timedelta(hours=5))
    late = item(dt.datetime(2026, 11, 11, 2, 0, tzinfo=tz), label="a")  # 2026-11-10 21:00 UTC
    early = item(dt.datetime(2026, 11, 10, 9, 0, tzinfo=dt.UTC), label="b")
    p = plan([late, early], NOW)
    assert reasons(p)[late.filename] == "kept: newest of 2026-11-10"
    assert [d.filename for d in p.delete] == [early.filename]


def test_custom_policy_and_its_validation():
    p = plan([item(ago(days=2)), item(ago(days=2, hours=1), label="b")], NOW, Policy(1, 2, 3))
    assert len(p.keep) == 1 and len(p.delete) == 1
    assert p.keep[0].reason.startswith("kept: newest of ")  # 2 days old is in the weekly tier of (1, 2, 3)
    with pytest.raises(BadInput):
        Policy(keep_all_days=10, daily_days=5)


def test_plan_json_shape():
    p = plan([item(ago(days=10, hours=1)), item(ago(days=10), label="b")], NOW)
    data = p.to_json()
    assert set(data) == {"keep", "delete", "invalid"}
    assert data["keep"] == [{"filename": p.keep[0].filename, "reason": p.keep[0].reason}]
    assert set(data["delete"][0]) == {"filename", "reason"}


# -- properties --------------------------------------------------------------------------------------------

LABELS = ["nightly", "pre-deploy", "x", "v1.0", "baseline", "release-2.3.1", "schema"]


#: Few distinct days so that buckets collide; -1 day for a clock running ahead of the snapshots.
DAYS = [-1, 0, 3, 6, 7, 8, 15, 29, 30, 31, 60, 61, 62, 200, 364, 365, 366, 400, 401, 700, 1100]


def _items(rows) -> list[Item]:
    out = []
    for i, (days, seconds, label, protect, valid, full) in enumerate(rows):
        ts = NOW - dt.timedelta(days=days, seconds=seconds)
        out.append(Item(filename=f"{ts.strftime(TS_FORMAT)}_{label}{i}.sql", label=label, timestamp=ts,
                        protected_meta=protect == 0, valid=valid > 0, full=full, problem="bad"))
    return out


# Flat tuples, built into items afterwards (hypothesis generates these much faster than a
# composite strategy drawing each field); 0-40 of them, spread evenly rather than mostly short lists.
_row = st.tuples(st.sampled_from(DAYS), st.integers(0, 86399), st.sampled_from(LABELS), st.integers(0, 3),
                 st.integers(0, 9), st.booleans())
item_lists = st.integers(0, 40).flatmap(lambda n: st.lists(_row, min_size=n, max_size=n)).map(_items)


policies = st.one_of(st.just(Policy()),
                     st.lists(st.integers(0, 400), min_size=3, max_size=3).map(lambda v: Policy(*sorted(v))))


def protected(i: Item) -> bool:
    return i.protected_meta or is_protected_label(i.label)


def oracle_bucket(i: Item, pol: Policy) -> str | None:
    """The bucket by the policy's definition, written independently of the module."""
    age = NOW - i.timestamp
    if age < dt.timedelta(days=pol.keep_all_days):
        return None
    if age < dt.timedelta(days=pol.daily_days):
        return "D" + i.timestamp.date().isoformat()
    if age < dt.timedelta(days=pol.weekly_days):
        return "W{}-{}".format(*i.timestamp.isocalendar()[:2])
    return "M" + i.timestamp.strftime("%Y-%m")


def newest_valid_full(items: list[Item]) -> str | None:
    fulls = [i for i in items if i.valid and i.full]
    return max(fulls, key=lambda i: (i.timestamp, i.filename)).filename if fulls else None


def every_item_in_exactly_one_list_and_no_protected_or_invalid_deleted(items, pol) -> None:
    p = plan(items, NOW, pol)
    names = [d.filename for d in p.keep + p.delete + p.invalid]
    assert sorted(names) == sorted(i.filename for i in items)
    by_name = {i.filename: i for i in items}
    for d in p.delete:
        assert by_name[d.filename].valid and not protected(by_name[d.filename])
        assert d.reason.startswith("delete: ")
    for d in p.invalid:
        assert not by_name[d.filename].valid and not protected(by_name[d.filename])
    for d in p.keep:
        assert d.reason.startswith("kept: ")


def one_kept_per_bucket_and_newest_valid_full_kept(items, pol) -> None:
    p = plan(items, NOW, pol)
    keep = kept(p)
    nvf = newest_valid_full(items)
    if nvf is not None:
        assert nvf in keep
    buckets: dict[str, list[Item]] = {}
    for i in items:
        if not i.valid or protected(i):
            continue
        b = oracle_bucket(i, pol)
        if b is None:
            assert i.filename in keep  # the keep-all window
        else:
            buckets.setdefault(b, []).append(i)
    for members in buckets.values():
        newest = max(members, key=lambda i: (i.timestamp, i.filename)).filename
        expected = {newest} | ({nvf} & {i.filename for i in members})
        assert {i.filename for i in members} & keep == expected


def idempotent(items, pol) -> None:
    first = plan(items, NOW, pol)
    survivors = [i for i in items if i.filename not in {d.filename for d in first.delete}]
    second = plan(survivors, NOW, pol)
    assert second.delete == []
    assert kept(second) == kept(first)
    assert second.invalid == first.invalid


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(item_lists, policies)
def test_properties_of_every_plan(items, pol):
    """Each property on the same 300 generated directories and policies (generating them is the cost)."""
    every_item_in_exactly_one_list_and_no_protected_or_invalid_deleted(items, pol)
    one_kept_per_bucket_and_newest_valid_full_kept(items, pol)
    idempotent(items, pol)


# -- a real cleanup on disk --------------------------------------------------------------------------------

DUMP = (b"--\n-- PostgreSQL database dump\n--\n\nSET client_encoding = 'UTF8';\n\n"
        b"--\n-- PostgreSQL database dump complete\n--\n\n")


def write_snapshot(store: SnapshotStore, ts: dt.datetime, label: str, *, protected: bool = False,
                   body: bytes = b"") -> tuple[bytes, bytes]:
    """A snapshot file and its metadata as the engine writes them; returns both files' bytes."""
    store.ensure_dir()
    data = DUMP.replace(b"SET client_encoding", body + b"SET client_encoding")
    path = store.directory / f"{ts.strftime(TS_FORMAT)}_{label}.sql"
    path.write_bytes(data)
    store.write_meta(path, {"label": label, "purpose": "", "timestamp": format_ts(ts), "type": "full",
                            "size_bytes": len(data), "sha256": hashlib.sha256(data).hexdigest(),
                            "filename": path.name, "tables_count": 0, "row_counts": {},
                            "protected": protected})
    return data, path.with_name(path.name + ".meta.yaml").read_bytes()


def test_apply_deletes_files_and_metadata_together_and_audits_each(tmp_path):
    store = SnapshotStore(tmp_path / "snaps")
    day = dt.datetime(2026, 11, 10, tzinfo=dt.UTC)
    written = {
        "keep_recent": write_snapshot(store, ago(days=1), "recent", body=b"-- a\n"),
        "keep_day": write_snapshot(store, day.replace(hour=18), "evening", body=b"-- b\n"),
        "gone_1": write_snapshot(store, day.replace(hour=8), "morning", body=b"-- c\n"),
        "gone_2": write_snapshot(store, day.replace(hour=9), "later", body=b"-- d\n"),
        "keep_protected": write_snapshot(store, day.replace(hour=7), "early", protected=True, body=b"-- e\n"),
        "keep_label": write_snapshot(store, day.replace(hour=6), "v1.0", body=b"-- f\n"),
    }
    orphan = store.directory / "20261110050000_orphan.sql"  # no metadata: invalid
    orphan.write_bytes(DUMP)
    snaps = store.list()
    assert sum(s.valid for s in snaps) == 6
    p = plan(items_from_snapshots(snaps), NOW)
    gone = {"20261110080000_morning.sql", "20261110090000_later.sql"}
    assert {d.filename for d in p.delete} == gone
    assert [d.filename for d in p.invalid] == [orphan.name]

    deleted = retention.apply(store, p, snaps)

    assert set(deleted) == gone
    on_disk = {f.name for f in store.directory.iterdir()}
    for name in gone:
        assert name not in on_disk and name + ".meta.yaml" not in on_disk
    for label_data, meta_bytes in (written[k] for k in written if k.startswith("keep")):
        match = [s for s in store.list() if s.path.read_bytes() == label_data]
        assert len(match) == 1 and match[0].meta_path.read_bytes() == meta_bytes and match[0].valid
    assert orphan.read_bytes() == DUMP  # invalid: untouched unless asked
    audit = [e for e in store.read_audit() if e["action"] == "delete"]
    assert {(e["snapshot"], e["outcome"]) for e in audit} == {(n, "ok") for n in gone}
    assert all(e["reason"].startswith("delete: older snapshot of 2026-11-10 superseded by "
                                      "20261110180000_evening.sql") for e in audit)

    # Planning again on what is left deletes nothing more; asking for invalid removal takes the orphan.
    snaps = store.list()
    again = plan(items_from_snapshots(snaps), NOW)
    assert again.delete == []
    assert retention.apply(store, again, snaps, include_invalid=True) == [orphan.name]
    assert not orphan.exists()
    assert store.read_audit()[-1]["reason"] == "invalid (metadata file is missing): removed only when asked"
    assert len(store.list()) == 4


def test_apply_skips_snapshots_already_gone(tmp_path):
    store = SnapshotStore(tmp_path / "snaps")
    day = dt.datetime(2026, 11, 10, tzinfo=dt.UTC)
    write_snapshot(store, day.replace(hour=18), "a")
    write_snapshot(store, day.replace(hour=8), "b")
    snaps = store.list()
    p = plan(items_from_snapshots(snaps), NOW)
    assert retention.apply(store, p, [s for s in snaps if s.label == "a"]) == []
    assert len(store.list()) == 2
