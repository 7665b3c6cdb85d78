"""Issue 31 in the app: a guarded snapshot is marked in the list (its outcome at a glance, the preview
telling the command), and after an emergency rollback the operation screen tells what the rollback undid.

Pilot tests, checked the way a user sees them: the list's cells and legend, the preview's text, the
operation screen's summary after a real rollback on PostgreSQL 18.
"""

from __future__ import annotations

import datetime as dt
import html

from textual.widgets import Static

from app.screens.operation import OperationScreen
from app.tui import make_app
from services.server import dump
from services.snapshots.record import guard_outcome, guard_record
from services.snapshots.store import SnapshotStore
from services.workspace import Workspace
from tests.helpers import NOW, SERVER, TARGET, listed, seed_items, settle, until, write_snapshot
from widgets.snapshot_table import LEGEND, SnapshotTable

SIZE = (80, 24)


def guarded(store: SnapshotStore, label: str, when: dt.datetime, exit_code: int | None) -> None:
    """A snapshot as ``dbsage-tui guard`` leaves it: the metadata's ``guard`` block, with the command's
    outcome (None: dbsage-tui was stopped while the command ran, so none was recorded)."""
    path = write_snapshot(store, label, when, purpose="guard: supabase db push")
    meta = next(s for s in store.list() if s.filename == path.name).meta
    record = guard_record(command="supabase db push", cwd="/srv/app",
                          git={"commit": "0123456789abcdef", "branch": "main", "dirty": False},
                          migrations={"supabase": {"version": "20241020120000", "name": "add_orders"}})
    if exit_code is not None:
        record = guard_outcome(record, exit_code=exit_code, duration=3.2,
                               outcome="succeeded" if exit_code == 0 else "failed")
    store.write_meta(path, {**meta, "guard": record})


async def test_guarded_snapshots_are_marked_and_a_failed_guard_stands_out(tmp_path):
    store = SnapshotStore(tmp_path / "snaps")
    guarded(store, "before-db-push", NOW - dt.timedelta(hours=1), 0)
    guarded(store, "before-bad-push", NOW - dt.timedelta(hours=2), 1)
    guarded(store, "before-stopped", NOW - dt.timedelta(hours=3), None)
    write_snapshot(store, "plain", NOW - dt.timedelta(hours=4))
    app = make_app(Workspace(conn=TARGET, store=store), clock=lambda: NOW, server_info=SERVER)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        main = app.screen
        table = main.query_one(SnapshotTable)
        labels = {k.split("_", 1)[1].removesuffix(".sql"): table.get_row_at(i)[1] for i, k in enumerate(table.keys)}
        assert labels["before-db-push"].plain == " ⚑ before-db-push"
        assert labels["before-bad-push"].plain == " ⚑ before-bad-push"
        assert labels["before-stopped"].plain == " ⚑ before-stopped"
        assert labels["plain"].plain == " plain"
        colors = app.theme_variables

        def mark_style(label: str) -> str:
            text = labels[label]
            return str(next(span.style for span in text.spans if text.plain[span.start:span.end] == "⚑ "))
        assert mark_style("before-bad-push") == f"bold {colors['text-error']}"
        assert mark_style("before-db-push") == colors["text-success"]
        assert mark_style("before-stopped") == colors["text-warning"]
        # The legend in the list's border says what the mark means, and fits at 80 columns.
        assert "⚑ guarded (red: failed)" in LEGEND and main.query_one("#list-pane").border_subtitle == LEGEND
        assert LEGEND in html.unescape(app.export_screenshot()).replace("\xa0", " ")
        # The preview tells the command, its outcome and the migration head.
        await pilot.press("2")
        body = main.query_one("#preview-body", Static)
        await until(pilot, lambda: "before-bad-push  #2" in str(body.render()), what="the preview of #2")
        text = str(body.render())
        assert "supabase db push" in text and "failed (exit 1, 3.2s)" in text
        assert "supabase 20241020120000 add_orders" in text


async def test_after_an_emergency_rollback_the_screen_tells_what_it_undid(pg18, db18, snapdir):
    """A table added, rows deleted and a migration applied after the snapshot: E rolls back, and the
    operation screen, at 80x24, says which migration it took back (and how to apply it again), lists the
    table as gone, and counts the rest (the rows, before the rollback → now)."""
    seed_items(pg18, db18, 30)
    pg18.psql("CREATE SCHEMA supabase_migrations; CREATE TABLE supabase_migrations.schema_migrations "
              "(version text PRIMARY KEY, name text); INSERT INTO supabase_migrations.schema_migrations "
              "VALUES ('20261201000000', 'items');", db18.dbname)
    store = SnapshotStore(snapdir)
    await dump.snapshot(db18, store, "emergency-backup")
    pg18.psql("CREATE TABLE junk (x int); INSERT INTO junk SELECT generate_series(1, 7);"
              "DELETE FROM items WHERE id > 20; INSERT INTO supabase_migrations.schema_migrations "
              "VALUES ('20261202000000', 'junk');", db18.dbname)
    app = make_app(Workspace(conn=db18, store=store))
    async with app.run_test(size=SIZE) as pilot:
        await listed(pilot, 1)
        await pilot.press("E")
        await until(pilot, lambda: isinstance(app.screen, OperationScreen))
        op = app.screen
        await until(pilot, lambda: not op.running, timeout=60, what="the rollback to end")
        assert "RECOVERY STATUS: OK" in str(op.query_one("#summary", Static).render())
        undone = op.query_one("#undone", Static)
        await until(pilot, lambda: "Rollback undid: 1 gone" in str(undone.render()), timeout=30,
                    what="what the rollback undid")
        text = str(undone.render())
        assert text.splitlines() == [
            "Rollback undid: 1 gone · 0 back · 0 redefined · rows in 3 of 3 tables",
            "  migrations (supabase): 20261202000000 junk → 20261201000000 items; to apply them again: "
            "supabase migration up (local) or supabase db push (linked project)",
            "  gone: table public.junk",
            "  … and 3 more"]  # the rows: 20 → 30 in items, 7 → gone in junk, 2 → 1 in the history
        # The status, what the rollback undid and Close are on the 80x24 screen together (Close replaces
        # "Stop / close" once the end is shown, after a refresh).
        shown = ("RECOVERY STATUS: OK", "gone: table public.junk", " Close ")
        await until(pilot, lambda: all(t in html.unescape(app.export_screenshot()).replace("\xa0", " ")
                                       for t in shown), what="the status, what it undid and Close on one screen")
    assert pg18.psql("SELECT count(*) FROM items", db18.dbname).strip() == "30"
