"""Pilot tests of the full-screen app against a real PostgreSQL 18: every flow a user drives with keys,
checked the way a user would check it (files in the snapshot directory, rows in the database).

The app is built by ``make_app`` exactly as ``dbsage-tui`` builds it. Nothing here fakes pg_dump, psql or
the server: a slow dump is made by holding a table lock in another session.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import html
import json
import socket
from pathlib import Path

import asyncpg
import pytest
import yaml
from textual.widgets import DataTable, Input, RadioButton, Static, Tree

from app.screens.cleanup import CleanupModal
from app.screens.confirm import ConfirmModal
from app.screens.create import CreateSnapshotModal
from app.screens.diff import DiffScreen
from app.screens.help import HelpScreen
from app.screens.main import MainScreen
from app.screens.operation import OperationScreen
from app.tui import make_app
from app.workflow import default_path, load_workflow
from services.config import ConnInfo, Settings
from services.errors import BadInput
from services.server import dump
from services.server.catalog import connect_kwargs
from services.snapshots.listing import directory_signature
from services.snapshots.store import SnapshotStore, suggest_label
from services.workspace import Workspace
from tests.helpers import (
    NOW,
    SERVER,
    listed,
    log_text,
    main_screen,
    open_restore,
    run_cli,
    seed_items,
    tamper,
    until,
    write_snapshot,
)
from widgets.snapshot_table import SnapshotTable

SIZE = (120, 36)
PASSWORD = "s3cr3t-Test-pw-7Q"  # the test server's password (tests/conftest.py): never on screen


def count_items(pg, db) -> int:
    return int(pg.psql("SELECT count(*) FROM items", db.dbname).strip())


def sql_files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.glob("*") if p.name.endswith((".sql", ".partial")))


def notices(app) -> list[str]:
    return [n.message for n in app._notifications]


def keys_of(table: SnapshotTable) -> list[str]:
    return table.keys


def assert_password_hidden(app) -> None:
    assert PASSWORD not in app.export_screenshot()
    assert PASSWORD not in log_text(app)
    assert all(PASSWORD not in text for text in notices(app))


# -- creating --------------------------------------------------------------------------------------------

def burst(app, keys: list[tuple[str, str | None]]) -> None:
    """Keys as a fast typist or a paste sends them: all at once, straight to the driver, without waiting
    for the app between them (``pilot.press`` waits)."""
    from textual import events
    for key, char in keys:
        event = events.Key(key, char)
        event.set_sender(app)
        app._driver.send_message(event)


async def test_a_label_typed_right_after_n_is_not_lost(pg18, db18, snapdir):
    """"n" and the label in one burst: the keys reach the dialog before its label field has focus. They
    are the label (replacing the suggestion), and Enter among them takes the snapshot."""
    seed_items(pg18, db18)
    store = SnapshotStore(snapdir)
    app = make_app(Workspace(conn=db18, store=store))
    async with app.run_test(size=SIZE) as pilot:
        await listed(pilot, 0)
        burst(app, [("n", "n"), *[(c if c.isalnum() else "minus", c) for c in "quick-one"], ("enter", None)])
        for _ in range(200):
            await pilot.pause(0.05)
            if isinstance(app.screen, MainScreen) and not app.workers._workers or sql_files(snapdir):
                break
        await app.workers.wait_for_complete()
        await listed(pilot, 1)
        assert [f.split("_", 1)[1] for f in sql_files(snapdir)] == ["quick-one.sql"]
        # Typed once the field has focus, as before: the suggestion is selected and replaced.
        await pilot.press("n")
        await pilot.press(*"slow", "enter")
        await app.workers.wait_for_complete()
        await listed(pilot, 2)
        assert sorted(f.split("_", 1)[1] for f in sql_files(snapdir)) == ["quick-one.sql", "slow.sql"]
        # The same for the filter field "/" opens: the keys behind it are the filter.
        burst(app, [("slash", "/"), ("s", "s"), ("l", "l")])
        await until(pilot, lambda: app.screen.query_one("#filter", Input).value == "sl", what="the filter typed")
        await listed(pilot, 1)


async def test_create_snapshots_from_the_form(pg18, db18, snapdir):
    seed_items(pg18, db18)
    store = SnapshotStore(snapdir)
    app = make_app(Workspace(conn=db18, store=store))
    async with app.run_test(size=SIZE) as pilot:
        await listed(pilot, 0)
        await pilot.press("n")
        assert isinstance(app.screen, CreateSnapshotModal)
        await pilot.press(*"before-change")            # replaces the selected default label
        await pilot.click("#field-purpose")
        await pilot.press(*"Before the change", "enter")
        await pilot.pause()
        assert isinstance(app.screen, MainScreen)
        await app.workers.wait_for_complete()
        table = await listed(pilot, 1)
        # The notice says so (it is gone after its 5 s: looked at now, not after the next two).
        saved = [t for t in notices(app) if t.startswith("Saved ")]
        assert len(saved) == 1 and saved[0].split()[1] == sql_files(snapdir)[0]

        # A second one, schema-only, chosen with the mouse.
        await pilot.press("n")
        await pilot.press(*"schema-copy")
        await pilot.click(app.screen.query(RadioButton)[1])
        await pilot.click("#create")
        await pilot.pause()
        await app.workers.wait_for_complete()
        await listed(pilot, 2)

        # A third, zstd-compressed: the hint shows the file name it will get.
        await pilot.press("n")
        await pilot.press(*"zipped")
        await pilot.click(app.screen.query_one("#field-compression").query(RadioButton)[1])
        assert "zipped.sql.zst" in str(app.screen.query_one("#label-hint").render())
        await pilot.click("#create")
        await pilot.pause()
        await app.workers.wait_for_complete()
        await listed(pilot, 3)
        assert_password_hidden(app)

    snaps = store.list()
    assert [s.label for s in snaps] == ["zipped", "schema-copy", "before-change"]
    assert all(s.valid for s in snaps)
    packed = snaps.pop(0)
    assert packed.filename.endswith("_zipped.sql.zst") and packed.get("compression") == "zstd"
    assert packed.get("row_counts") == {"public.items": 50} and store.validate(packed).ok
    full, schema = snaps[1], snaps[0]
    assert (full.type, full.purpose) == ("full", "Before the change")
    assert full.get("row_counts") == {"public.items": 50}
    assert schema.type == "schema-only"
    assert store.validate(full).ok
    assert keys_of(table) == [packed.filename, schema.filename, full.filename]


async def test_label_is_checked_live_and_a_suggestion_offered(tmp_path):
    store = SnapshotStore(tmp_path / "snaps")
    conn = ConnInfo(host="127.0.0.1", port=1, dbname="never", password="x")  # the form does not connect
    app = make_app(Workspace(conn=conn, store=store), server_info=SERVER)
    async with app.run_test(size=(100, 32)) as pilot:
        await listed(pilot, 0)
        await pilot.press("n")
        modal = app.screen
        await pilot.press(*"my label!")
        hint = modal.query_one("#label-hint", Static)
        assert "Invalid label" in str(hint.render()) and "Try: my-label" in str(hint.render())
        await pilot.press("enter")                       # refused: the form stays
        assert app.screen is modal
        await pilot.click("#use-suggestion")
        assert modal.query_one("#field-label", Input).value == suggest_label("my label!") == "my-label"
        assert "my-label.sql" in str(hint.render())
        await pilot.press("escape")                      # dismissed with None: nothing happens
        assert isinstance(app.screen, MainScreen)
        assert isinstance(app.focused, SnapshotTable)
        await app.workers.wait_for_complete()
    assert sql_files(store.directory) == []


async def test_cancel_a_running_dump_removes_the_partial_file(pg18, db18, snapdir):
    """pg_dump waits on a lock held by another session; escape kills it and nothing is left behind."""
    seed_items(pg18, db18)
    blocker = await asyncpg.connect(**connect_kwargs(db18))
    tx = blocker.transaction()
    await tx.start()
    await blocker.execute("LOCK TABLE items IN ACCESS EXCLUSIVE MODE")
    try:
        app = make_app(Workspace(conn=db18, store=SnapshotStore(snapdir)))
        async with app.run_test(size=SIZE) as pilot:
            await listed(pilot, 0)
            await pilot.press("n", *"blocked", "enter")
            await until(pilot, lambda: any(n.endswith(".partial") for n in sql_files(snapdir)),
                        what="pg_dump to start")
            await until(pilot, lambda: "pg_dump" in log_text(app), what="pg_dump output")
            main = app.screen
            assert main.check_action("cancel", ()) is True          # "esc Cancel" is in the footer now
            await pilot.press("escape")
            await app.workers.wait_for_complete()
            await pilot.pause()
            assert any("cancelled" in t for t in notices(app))
            assert "partial file removed" in log_text(app)
    finally:
        await tx.rollback()
        await blocker.close()
    assert sql_files(snapdir) == []
    audit = [json.loads(line) for line in (snapdir / "audit.log").read_text().splitlines()]
    assert audit[-1]["action"] == "snapshot" and audit[-1]["outcome"] == "cancelled"


async def test_quitting_during_a_dump_asks_then_cleans_up(pg18, db18, snapdir):
    seed_items(pg18, db18)
    blocker = await asyncpg.connect(**connect_kwargs(db18))
    tx = blocker.transaction()
    await tx.start()
    await blocker.execute("LOCK TABLE items IN ACCESS EXCLUSIVE MODE")
    try:
        app = make_app(Workspace(conn=db18, store=SnapshotStore(snapdir)))
        async with app.run_test(size=SIZE) as pilot:
            await listed(pilot, 0)
            await pilot.press("n", "enter")
            await until(pilot, lambda: any(n.endswith(".partial") for n in sql_files(snapdir)),
                        what="pg_dump to start")
            await pilot.press("q")
            assert isinstance(app.screen, ConfirmModal) and app.focused.id == "no"
            await pilot.click("#yes")
            await until(pilot, lambda: app.return_code == 0, what="the app to exit")
            assert sql_files(snapdir) == []                # cleaned up before the exit
    finally:
        await tx.rollback()
        await blocker.close()
    assert sql_files(snapdir) == []


# -- restoring -------------------------------------------------------------------------------------------

async def test_restore_after_confirming_brings_the_rows_back(pg18, db18, snapdir):
    seed_items(pg18, db18, 50)
    store = SnapshotStore(snapdir)
    snap = await dump.snapshot(db18, store, "baseline", purpose="fifty items")
    pg18.psql("DELETE FROM items WHERE id > 10", db18.dbname)
    app = make_app(Workspace(conn=db18, store=store))
    async with app.run_test(size=SIZE) as pilot:
        await listed(pilot, 1)
        modal = await open_restore(pilot)
        assert app.focused.id == "answer-no"                       # No is the default
        question = str(modal.query_one(".question", Static).render())
        assert question == "This will replace current database. Continue?"
        assert modal.query_one("#pre-snapshot").value is True
        await pilot.click("#answer-yes")
        await until(pilot, lambda: isinstance(app.screen, OperationScreen), what="the progress screen")
        op = app.screen
        await until(pilot, lambda: not op.running, timeout=60, what="the restore to end")
        summary = str(op.query_one("#summary", Static).render())
        assert "RESTORE OK" in summary
        assert count_items(pg18, db18) == 50
        pre = [s for s in store.list() if s.label == "pre-rollback"]
        assert len(pre) == 1 and pre[0].get("row_counts") == {"public.items": 10}
        assert f"To undo, restore {pre[0].filename}" in summary
        steps = op.query_one("StepList")
        assert [steps.get(n).status for n in ("validate", "pre-rollback snapshot", "restore", "smoke test")] \
            == ["ok"] * 4
        assert_password_hidden(app)
        await pilot.press("escape")                                  # closes once done
        await until(pilot, lambda: isinstance(app.screen, MainScreen), what="the main screen")
        await listed(pilot, 2)
    assert snap.filename in [s.filename for s in store.list()]


@pytest.mark.parametrize("how", ["enter", "escape"])
async def test_restore_declined_leaves_the_database_unchanged(pg18, db18, snapdir, how):
    seed_items(pg18, db18, 50)
    store = SnapshotStore(snapdir)
    await dump.snapshot(db18, store, "baseline")
    pg18.psql("DELETE FROM items WHERE id > 10", db18.dbname)
    app = make_app(Workspace(conn=db18, store=store))
    async with app.run_test(size=SIZE) as pilot:
        await listed(pilot, 1)
        await open_restore(pilot)
        await pilot.press(how)                                       # enter answers the focused "No"
        await pilot.pause()
        assert isinstance(app.screen, MainScreen)
        assert isinstance(app.focused, SnapshotTable)
        await app.workers.wait_for_complete()
        assert "Restore cancelled: nothing was changed." in log_text(app)
    assert count_items(pg18, db18) == 10
    assert len(store.list()) == 1                                    # no pre-rollback snapshot either


async def test_restore_without_pre_snapshot_and_a_schema_only_warning(pg18, db18, snapdir):
    seed_items(pg18, db18, 20)
    store = SnapshotStore(snapdir)
    await dump.snapshot(db18, store, "ddl-only", schema_only=True)
    app = make_app(Workspace(conn=db18, store=store))
    async with app.run_test(size=SIZE) as pilot:
        await listed(pilot, 1)
        modal = await open_restore(pilot)
        assert "SCHEMA-ONLY SNAPSHOT" in str(modal.query_one(".danger", Static).render())
        await pilot.click("#pre-snapshot")
        await pilot.click("#answer-yes")
        await until(pilot, lambda: isinstance(app.screen, OperationScreen))
        op = app.screen
        await until(pilot, lambda: not op.running, timeout=60, what="the restore to end")
        assert op.query_one("StepList").get("pre-rollback snapshot").status == "skipped"
        assert "cannot be undone" in str(op.query_one("#summary", Static).render())
    assert count_items(pg18, db18) == 0
    assert len(store.list()) == 1


async def fifty_then_ten(pg18, db18, snapdir) -> SnapshotStore:
    """A "baseline" snapshot of 50 items, then 40 of them deleted: what a restore brings back."""
    seed_items(pg18, db18, 50)
    store = SnapshotStore(snapdir)
    await dump.snapshot(db18, store, "baseline")
    pg18.psql("DELETE FROM items WHERE id > 10", db18.dbname)
    return store


async def test_cancelling_a_restore_leaves_the_database_as_it_was(pg18, db18, snapdir):
    """psql waits on a lock held by another session; escape kills it before anything commits."""
    store = await fifty_then_ten(pg18, db18, snapdir)
    blocker = await asyncpg.connect(**connect_kwargs(db18))
    tx = blocker.transaction()
    await tx.start()
    await blocker.execute("LOCK TABLE items IN ACCESS SHARE MODE")
    try:
        app = make_app(Workspace(conn=db18, store=store))
        async with app.run_test(size=SIZE) as pilot:
            await listed(pilot, 1)
            await open_restore(pilot)
            await pilot.click("#pre-snapshot")                        # straight to psql
            await pilot.click("#answer-yes")
            await until(pilot, lambda: isinstance(app.screen, OperationScreen))
            op = app.screen
            await until(pilot, lambda: op.query_one("StepList").get("restore").status == "running",
                        what="psql to start")
            await pilot.pause(0.5)
            await pilot.press("escape")                               # asks once, and says it is safe
            await until(pilot, lambda: isinstance(app.screen, ConfirmModal), what="the question")
            assert "the database stays unchanged" in str(app.screen.query_one(".question", Static).render())
            assert op.running and app.focused.id == "no"
            await pilot.click("#yes")
            await until(pilot, lambda: not op.running, timeout=20, what="the cancel")
            summary = str(op.query_one("#summary", Static).render())
            assert "CANCELLED" in summary and "nothing was committed" in summary
    finally:
        await tx.rollback()
        await blocker.close()
    assert count_items(pg18, db18) == 10
    assert len(store.list()) == 1


async def test_the_operation_screen_names_the_blocker_and_k_terminates_it(pg18, db18, snapdir):
    """A session idle in transaction holds a lock the restore needs: the restore dialog lists it before
    anything starts, the operation screen names it (pid, state), ``k`` appears and terminates exactly that
    session, and the restore completes."""
    store = await fifty_then_ten(pg18, db18, snapdir)
    blocker = await asyncpg.connect(**connect_kwargs(db18))
    pid = await blocker.fetchval("SELECT pg_backend_pid()")
    await blocker.execute("BEGIN; SELECT count(*) FROM items;")
    try:
        app = make_app(Workspace(conn=db18, store=store))
        async with app.run_test(size=SIZE) as pilot:
            await listed(pilot, 1)
            modal = await open_restore(pilot)
            await until(pilot, lambda: modal.query_one("#sessions").display, what="the other sessions")
            sessions = str(modal.query_one("#sessions", Static).render())
            # (the app's own start-up probe may still be closing its connection, so no exact count)
            assert "connected (the restore waits for their locks, up to 30 s):" in sessions
            assert f"pid {pid} " in sessions and "idle in transaction" in sessions
            await pilot.click("#pre-snapshot")
            await pilot.click("#answer-yes")
            await until(pilot, lambda: isinstance(app.screen, OperationScreen))
            op = app.screen
            assert op.check_action("terminate_blockers", ()) is False     # nothing in the way yet
            await until(pilot, lambda: f"pid {pid} " in str(op.query_one("#blocked", Static).render()),
                        timeout=10, what="the blocker to be named")
            assert "idle in transaction" in str(op.query_one("#blocked", Static).render())
            assert op.check_action("terminate_blockers", ()) is True
            await pilot.press("k")
            await until(pilot, lambda: not op.running, timeout=30, what="the restore to end")
            assert "RESTORE OK" in str(op.query_one("#summary", Static).render())
            assert f"terminated pid {pid} " in log_text(app)
        assert blocker.is_closed() or await blocker.fetchval("SELECT 1") is None
    except (asyncpg.exceptions.ConnectionDoesNotExistError, asyncpg.exceptions.AdminShutdownError,
            asyncpg.exceptions.InterfaceError, ConnectionError):
        pass  # the blocker's connection was terminated: what k is for
    finally:
        blocker.terminate()
    assert count_items(pg18, db18) == 50
    audit = [json.loads(line) for line in (snapdir / "audit.log").read_text().splitlines()]
    assert [(a["action"], a["pid"]) for a in audit if a["action"] == "terminate"] == [("terminate", pid)]


async def test_a_corrupt_snapshot_cannot_be_restored(pg18, db18, snapdir):
    """Same size, one byte changed: the quick listing check passes, the full sha256 check refuses."""
    seed_items(pg18, db18, 20)
    store = SnapshotStore(snapdir)
    snap = await dump.snapshot(db18, store, "tampered")
    tamper(snap.path, b"item 7", b"item X")
    pg18.psql("DELETE FROM items", db18.dbname)
    app = make_app(Workspace(conn=db18, store=store))
    async with app.run_test(size=SIZE) as pilot:
        await listed(pilot, 1)
        modal = await open_restore(pilot)
        assert "cannot be restored: sha256 mismatch" in str(modal.query_one(".danger", Static).render())
        assert not modal.query("#answer-yes")
        await pilot.press("enter")
        assert isinstance(app.screen, MainScreen)
    assert count_items(pg18, db18) == 0


async def test_emergency_rollback_runs_at_once_and_reports_recovery(pg18, db18, snapdir):
    seed_items(pg18, db18, 30)
    store = SnapshotStore(snapdir)
    good = await dump.snapshot(db18, store, "emergency-backup")
    pg18.psql("DROP TABLE items; CREATE TABLE junk (x int);", db18.dbname)
    app = make_app(Workspace(conn=db18, store=store))
    async with app.run_test(size=SIZE) as pilot:
        await listed(pilot, 1)
        await pilot.press("E")                                      # no question asked
        await until(pilot, lambda: isinstance(app.screen, OperationScreen))
        op = app.screen
        await until(pilot, lambda: not op.running, timeout=60, what="the rollback to end")
        summary = str(op.query_one("#summary", Static).render())
        assert "RECOVERY STATUS: OK" in summary
        assert good.filename in str(op.query_one("#subject", Static).render())
        steps = op.query_one("StepList")
        assert [steps.get(n).status for n in ("choose snapshot", "pre-rollback snapshot", "restore",
                                              "smoke test")] == ["ok"] * 4
    assert count_items(pg18, db18) == 30
    assert pg18.psql("SELECT to_regclass('public.junk') IS NULL", db18.dbname).strip() == "t"
    assert [s.label for s in store.list()] == ["pre-rollback", "emergency-backup"]
    assert json.loads((snapdir / "audit.log").read_text().splitlines()[-1])["action"] == "rollback"


async def test_emergency_without_a_full_snapshot_fails_clearly(pg18, db18, snapdir):
    """Nothing to roll back to: the failure arrives at once, and still after the step it ends."""
    seed_items(pg18, db18, 5)
    app = make_app(Workspace(conn=db18, store=SnapshotStore(snapdir)))
    async with app.run_test(size=SIZE) as pilot:
        await listed(pilot, 0)
        await pilot.press("E")
        await until(pilot, lambda: isinstance(app.screen, OperationScreen))
        op = app.screen
        await until(pilot, lambda: not op.running, what="the rollback to stop")
        assert "RECOVERY STATUS: FAILED" in str(op.query_one("#summary", Static).render())
        assert op.query_one("StepList").get("choose snapshot").status == "failed"
        assert op.query_one("#close").display and not op.query_one("#cancel").display
        assert any(t.startswith("No valid full snapshot to roll back to.") for t in notices(app))
        await pilot.press("escape")
        assert isinstance(app.screen, MainScreen)
    assert count_items(pg18, db18) == 5


# -- the live list ---------------------------------------------------------------------------------------

async def test_snapshots_from_another_process_appear_and_vanish(pg18, db18, snapdir):
    seed_items(pg18, db18, 5)
    store = SnapshotStore(snapdir)
    first = await dump.snapshot(db18, store, "first")
    app = make_app(Workspace(conn=db18, store=store))
    url = f"postgresql://{db18.user}:{db18.password}@{db18.host}:{db18.port}/{db18.dbname}"
    async with app.run_test(size=SIZE) as pilot:
        table = await listed(pilot, 1)
        res = await asyncio.to_thread(run_cli, "snapshot", "--label", "from-cli", "--dir", str(snapdir),
                                      env={"SUPABASE_DB_URL": url})
        assert res.returncode == 0, res.stderr
        loop = asyncio.get_running_loop()
        started = loop.time()
        await until(pilot, lambda: table.row_count == 2, timeout=5, what="the new row")
        assert loop.time() - started < 3
        new = store.list()[0]
        assert keys_of(table) == [new.filename, first.filename]     # newest first
        assert table.highlighted_key == first.filename              # the cursor stayed on its snapshot
        new.path.unlink()
        new.meta_path.unlink()
        await until(pilot, lambda: table.row_count == 1, timeout=5, what="the row to go")
        assert keys_of(table) == [first.filename]


async def test_ages_tick_and_the_24_hour_highlight_ends(tmp_path):
    store = SnapshotStore(tmp_path / "snaps")
    write_snapshot(store, "fresh", NOW - dt.timedelta(seconds=30))
    write_snapshot(store, "old", NOW - dt.timedelta(days=3))
    now = [NOW]
    app = make_app(Workspace(conn=None, store=store), clock=lambda: now[0])
    async with app.run_test(size=SIZE) as pilot:
        table = await listed(pilot, 2)
        await pilot.press("down")                                           # the cursor on the other row

        def cells():  # (age text, highlighted as younger than 24 h)
            row = table.get_row_at(0)
            return row[3].plain.strip(), "bold" in str(row[2].style)

        def painted(text: str) -> bool:  # the row as the table renders it, and as the screen shows it
            screen = html.unescape(app.export_screenshot()).replace("\xa0", " ")
            return text in table.render_line(1).text and text in screen

        assert cells() == ("30s", True)
        # Compact ages (the list gives its room to the purpose): whole units, ticking when they change.
        now[0] = NOW + dt.timedelta(seconds=95)
        await until(pilot, lambda: cells() == ("2m", True), timeout=3, what="the age to tick")
        now[0] = NOW + dt.timedelta(seconds=125)
        await until(pilot, lambda: painted(" 2m "), timeout=3, what="the age on screen")
        now[0] = NOW + dt.timedelta(hours=2)
        await until(pilot, lambda: cells() == ("2h", True), timeout=3, what="the age to tick")
        await until(pilot, lambda: painted(" 2h "), timeout=3, what="the new age on screen")
        now[0] = NOW + dt.timedelta(hours=3)  # the same width: only that row is repainted
        await until(pilot, lambda: painted(" 3h "), timeout=3, what="the next age on screen")
        now[0] = NOW + dt.timedelta(hours=25)
        await until(pilot, lambda: cells() == ("1d", False), timeout=3, what="the highlight to end")
        await until(pilot, lambda: painted(" 1d "), timeout=3, what="the highlight to end on screen")
        strip = table.render_line(1)
        assert not any(seg.style and seg.style.bold for seg in strip if "1d" in seg.text)
        assert table.highlighted_key == keys_of(table)[1] and table.cursor_row == 1  # the cursor stayed


async def test_filter_by_label_or_purpose(tmp_path):
    store = SnapshotStore(tmp_path / "snaps")
    write_snapshot(store, "v1.0", NOW - dt.timedelta(hours=1), purpose="Release")
    write_snapshot(store, "before-migration", NOW - dt.timedelta(hours=2), purpose="Pre-migration safety")
    write_snapshot(store, "baseline", NOW - dt.timedelta(days=3), purpose="Initial production baseline")
    app = make_app(Workspace(conn=None, store=store), clock=lambda: NOW)
    async with app.run_test(size=SIZE) as pilot:
        table = await listed(pilot, 3)
        await pilot.press("slash", *"MIGR")
        assert [k.split("_", 1)[1] for k in keys_of(table)] == ["before-migration.sql"]
        await pilot.press("backspace", "backspace", "backspace", "backspace", *"production")   # purpose
        assert [k.split("_", 1)[1] for k in keys_of(table)] == ["baseline.sql"]
        await pilot.press("enter")
        assert isinstance(app.focused, SnapshotTable)
        assert "1 of 3" in app.screen.query_one("#list-pane").border_title
        await pilot.press("escape")
        assert table.row_count == 3
        await pilot.press("slash", *"nothing-like-this")
        assert "No snapshot matches" in str(app.screen.query_one("#empty", Static).render())


# -- a long list ------------------------------------------------------------------------------------------

def write_many(store: SnapshotStore, count: int) -> list[str]:
    """``count`` snapshots an hour apart, alternately "nightly-N" and "release-N"; file names newest first."""
    names = []
    for i in range(count):
        kind = "nightly" if i % 2 else "release"
        names.append(write_snapshot(store, f"{kind}-{i}", NOW - dt.timedelta(hours=i),
                                    purpose=f"{kind} run {i}").name)
    return names


def row_text(table: SnapshotTable, row: int) -> str:
    return table.render_line(row + 1 - int(table.scroll_y)).text  # + 1: the header line


async def test_a_filter_over_many_rows_and_back_keeps_the_cursor_on_its_snapshot(tmp_path):
    store = SnapshotStore(tmp_path / "snaps")
    names = write_many(store, 120)
    app = make_app(Workspace(conn=None, store=store), clock=lambda: NOW)
    async with app.run_test(size=SIZE) as pilot:
        table = await listed(pilot, 120)
        assert keys_of(table) == names                                      # newest first
        await pilot.pause()
        assert table.highlighted_key == names[0]                            # the newest is highlighted,
        preview = app.screen.query_one("#preview-body", Static)
        assert "release-0" in str(preview.render())                         # and shown beside the list
        await pilot.press(*["down"] * 41)
        chosen = table.highlighted_key
        assert chosen == names[41] and "nightly-41" in chosen
        await pilot.press("slash", *"nightly", "enter")                    # 60 rows go at once
        await until(pilot, lambda: table.row_count == 60, what="the filtered rows")
        assert keys_of(table) == names[1::2]
        assert table.highlighted_key == chosen
        assert row_text(table, table.cursor_row).split()[:2] == ["42", "nightly-41"]   # "#" is the list number
        await pilot.press("escape")
        await until(pilot, lambda: table.row_count == 120, what="all rows back")
        assert keys_of(table) == names
        assert table.highlighted_key == chosen
        # A listing that changed under the table (a new snapshot) keeps the cursor where it was.
        write_snapshot(store, "newest", NOW + dt.timedelta(minutes=5))
        await pilot.press("ctrl+r")
        await until(pilot, lambda: table.row_count == 121, what="the new snapshot")
        assert keys_of(table)[1:] == names and "newest" in keys_of(table)[0]
        assert table.highlighted_key == chosen
        assert row_text(table, table.cursor_row).split()[:2] == ["43", "nightly-41"]


async def test_a_large_directory_is_shown_from_names_first_then_filled_in(tmp_path, monkeypatch):
    """From ``NAMES_FIRST`` snapshots the first listing is painted from names and sizes, then completed by
    the listing that reads every file: in the end the rows are those of a full listing."""
    from app.screens import jobs
    monkeypatch.setattr(jobs, "NAMES_FIRST", 2)
    store = SnapshotStore(tmp_path / "snaps")
    names = write_many(store, 4)
    app = make_app(Workspace(conn=None, store=store), clock=lambda: NOW)
    async with app.run_test(size=SIZE) as pilot:
        table = await listed(pilot, 4)
        await until(pilot, lambda: all(not s.pending for s in app.screen.snapshots), what="the files read")
        await pilot.pause()
        assert keys_of(table) == names
        assert all(" full " in row_text(table, i) and "…" not in row_text(table, i) for i in range(4))


async def test_the_cursor_moves_by_key_and_by_click_and_stays_in_view(tmp_path):
    """up/down/j/k, page up/down, home/end move the cursor and scroll it into view; a click on a row
    selects it (the header line is not a row); the preview follows."""
    store = SnapshotStore(tmp_path / "snaps")
    names = write_many(store, 120)
    app = make_app(Workspace(conn=None, store=store), clock=lambda: NOW)
    async with app.run_test(size=SIZE) as pilot:
        table = await listed(pilot, 120)
        await pilot.press("down", "j", "j", "k")
        assert table.cursor_row == 2 and table.highlighted_key == names[2]
        await pilot.press("end")
        assert table.cursor_row == 119 and table.scroll_y == 120 + 1 - table.scrollable_content_region.height
        assert row_text(table, 119).split()[:2] == ["120", "nightly-119"]
        await pilot.press("home")
        seen = table.scrollable_content_region.height - 1  # rows below the header
        await pilot.press("pagedown")
        assert table.cursor_row == seen and table.scroll_y == 1
        await pilot.press("pageup", "up")
        assert table.cursor_row == 0 and table.scroll_y == 0
        await pilot.click(table, offset=(5, 3))                  # the third row (line 0 is the header)
        await pilot.pause()
        assert table.highlighted_key == names[2]
        await until(pilot, lambda: names[2] in str(app.screen.query_one("#preview").render()) or
                    "release-2" in html.unescape(app.export_screenshot()), what="the preview to follow")
        await pilot.click(table, offset=(5, 0))                  # the header: the cursor stays
        assert table.highlighted_key == names[2]


async def test_new_and_removed_snapshots_renumber_the_rows_on_screen(tmp_path):
    """"#" is the list number (1 = newest, as `dbsage-tui restore 1`): a snapshot added at the top or
    removed above a row changes the number of every row below it, on the screen, and the column's width."""
    store = SnapshotStore(tmp_path / "snaps")
    names = write_many(store, 9)
    app = make_app(Workspace(conn=None, store=store), clock=lambda: NOW)

    def numbered() -> list[tuple[str, str]]:  # (the number as painted, the label) of each row
        return [(line[:3], line.split()[1]) for line in (row_text(table, i) for i in range(table.row_count))]

    async with app.run_test(size=SIZE) as pilot:
        table = await listed(pilot, 9)
        await pilot.pause()
        labels = [name.split("_", 1)[1].removesuffix(".sql") for name in names]
        assert numbered() == [(f" {i} "[:3], label) for i, label in enumerate(labels, 1)]
        write_snapshot(store, "newest", NOW + dt.timedelta(minutes=5))
        await pilot.press("ctrl+r")
        await until(pilot, lambda: table.row_count == 10, what="the new snapshot")
        await pilot.pause()
        # Right-aligned in a column one wider: "  1" ... " 10".
        assert numbered() == [(f"{i:>3}", label) for i, label in enumerate(["newest", *labels], 1)]
        for snap in store.list():
            if snap.label in ("newest", labels[4]):
                store.delete(snap)
        await pilot.press("ctrl+r")
        await until(pilot, lambda: table.row_count == 8, what="the rows to go")
        await pilot.pause()
        rest = labels[:4] + labels[5:]
        assert numbered() == [(f" {i} "[:3], label) for i, label in enumerate(rest, 1)]
        assert keys_of(table) == names[:4] + names[5:]
        # Filtered, a snapshot removed above that is not shown renumbers the rows that stay.
        await pilot.press("slash", *"nightly", "enter")
        await until(pilot, lambda: table.row_count == 4, what="the filtered rows")
        assert [number for number, _ in numbered()] == [" 2 ", " 4 ", " 5 ", " 7 "]
        store.delete(store.resolve(names[0]))                            # release-0, the newest
        await pilot.press("ctrl+r")
        await until(pilot, lambda: [number for number, _ in numbered()] == [" 1 ", " 3 ", " 4 ", " 6 "],
                    timeout=5, what="the shown rows renumbered")


async def test_columns_fit_their_cells_and_the_purpose_takes_the_rest(tmp_path):
    store = SnapshotStore(tmp_path / "snaps")
    long_label = "a-very-long-label-for-a-migration-of-billing"
    write_snapshot(store, long_label, NOW - dt.timedelta(days=40), purpose="Long " * 30, protected=True)
    write_snapshot(store, "v1", NOW - dt.timedelta(minutes=5), purpose="Short")
    app = make_app(Workspace(conn=None, store=store), clock=lambda: NOW)
    async with app.run_test(size=SIZE) as pilot:
        table = await listed(pilot, 2)
        await pilot.pause()
        header, first, second = (table.render_line(y).text for y in range(3))
        assert header.split() == ["#", "Label", "Date", "(UTC)", "Age", "Type", "Size", "Purpose"]
        assert first.split()[:6] == ["1", "◆", "v1", (NOW - dt.timedelta(minutes=5)).strftime("%Y-%m-%d"),
                                     (NOW - dt.timedelta(minutes=5)).strftime("%H:%M"), "5m"]  # ◆: its label
        assert f"◆ {long_label[:29]}…" in second                         # cut at 32 cells, marked
        assert " 1mo " in second and "Long Long" in second
        assert second.rstrip().endswith("…") and len(second) <= table.size.width  # fits: no scrolling
        await pilot.resize_terminal(80, 24)
        await pilot.pause()
        row = table.render_line(2).text                                    # the rest scrolls sideways
        assert f"◆ {long_label[:29]}…" in row and " 1mo " in row


def test_a_dump_in_progress_does_not_change_the_directory_signature(tmp_path):
    """The list is re-read only when its files change: a growing .partial file (a dump streaming) or the
    listing's own cache are not snapshots."""
    store = SnapshotStore(tmp_path / "snaps")
    write_snapshot(store, "v1", NOW)
    before = directory_signature(store.directory)
    store.list()
    (store.directory / "20241027150000_next.sql.partial").write_bytes(b"x" * 1000)
    assert directory_signature(store.directory) == before
    write_snapshot(store, "v2", NOW + dt.timedelta(hours=1))
    assert directory_signature(store.directory) != before


# -- no database, errors ---------------------------------------------------------------------------------

async def test_without_a_database_the_list_works_and_actions_explain(tmp_path):
    store = SnapshotStore(tmp_path / "snaps")
    write_snapshot(store, "v1.0", NOW, rows=4)
    app = make_app(Workspace(conn=None, store=store), clock=lambda: NOW)
    async with app.run_test(size=SIZE) as pilot:
        await listed(pilot, 1)
        assert "no database configured" in str(app.screen.query_one("#header", Static).render())
        # Keys that need a database are dimmed in the footer and do nothing; the log says what to do.
        for key in ("n", "r", "E", "s"):
            assert not app.screen.active_bindings[key].enabled
            await pilot.press(key)
            await pilot.pause()
            assert isinstance(app.screen, MainScreen)
        assert notices(app) == []
        assert "--demo" in log_text(app) and "SUPABASE_DB_URL" in log_text(app)
        assert app.screen.active_bindings["v"].enabled
        await pilot.press("v")                                      # validation needs no database
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert any("is valid" in t for t in notices(app))
        assert "verified" in str(app.screen.query_one("#preview-body", Static).render())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_an_unreachable_database_is_one_notice_never_a_traceback(tmp_path):
    conn = ConnInfo(host="127.0.0.1", port=free_port(), user="postgres", dbname="app", password=PASSWORD)
    store = SnapshotStore(tmp_path / "snaps")
    app = make_app(Workspace(conn=conn, store=store))
    async with app.run_test(size=SIZE) as pilot:
        await listed(pilot, 0)
        await until(pilot, lambda: notices(app), what="the probe to fail")
        assert "not reachable" in str(app.screen.query_one("#header", Static).render())
        await pilot.press("n", "enter")                             # try to snapshot anyway
        await app.workers.wait_for_complete()
        await until(pilot, lambda: len(notices(app)) == 2, what="the snapshot to fail")
        assert all(t.startswith("Connecting to postgres@127.0.0.1") for t in notices(app))
        assert not any("Traceback" in t for t in notices(app))
        assert "Traceback" not in log_text(app)
        assert app.is_running
        assert_password_hidden(app)
    assert sql_files(store.directory) == []


# -- protect, delete, mark, palette, help ------------------------------------------------------------------

async def test_protect_and_delete_with_confirmation(tmp_path):
    store = SnapshotStore(tmp_path / "snaps")
    path = write_snapshot(store, "baseline", NOW, rows=4)
    app = make_app(Workspace(conn=None, store=store), clock=lambda: NOW)
    async with app.run_test(size=SIZE) as pilot:
        table = await listed(pilot, 1)
        await pilot.press("p")
        await app.workers.wait_for_complete()
        await until(pilot, lambda: "◆" in table.get_row_at(0)[1].plain, what="the protected mark")
        assert store.list()[0].protected is True
        await pilot.press("delete")
        assert isinstance(app.screen, ConfirmModal)
        assert app.focused.id == "no"
        assert "PROTECTED" in str(app.screen.query_one(".question", Static).render())
        await pilot.press("enter")                                  # "Keep it"
        await pilot.pause()
        assert path.exists()
        await pilot.press("delete")
        await pilot.click("#yes")
        await app.workers.wait_for_complete()
        await until(pilot, lambda: table.row_count == 0, what="the row to go")
    assert not path.exists() and not path.with_name(path.name + ".meta.yaml").exists()
    audit = (store.directory / "audit.log").read_text().splitlines()
    actions = [json.loads(line)["action"] for line in audit]
    assert actions == ["protect", "delete"]


async def test_mark_diff_cleanup_palette_and_help(tmp_path):
    store = SnapshotStore(tmp_path / "snaps")
    write_snapshot(store, "new", NOW)
    write_snapshot(store, "old", NOW - dt.timedelta(days=2))
    app = make_app(Workspace(conn=None, store=store), clock=lambda: NOW)
    async with app.run_test(size=SIZE) as pilot:
        table = await listed(pilot, 2)
        await pilot.press("d")
        assert "Mark one snapshot with space" in notices(app)[-1]
        await pilot.press("space", "j", "d")
        assert "●" in table.get_row_at(0)[1].plain
        await until(pilot, lambda: isinstance(app.screen, DiffScreen), what="the diff screen")
        assert "no schema changes" in tree_text(app.screen)
        await pilot.press("escape")
        await pilot.press("c")                                      # the plan, even when nothing is due
        await until(pilot, lambda: isinstance(app.screen, CleanupModal), what="the cleanup plan")
        await pilot.pause()
        assert "Nothing to delete: the policy keeps all 2" in str(app.screen.query_one("#plan-summary",
                                                                                        Static).render())
        await pilot.press("q")
        # The palette offers the story's commands; *snapshot-list clears the filter.
        await pilot.press("slash", *"zzz", "enter")
        assert table.row_count == 0
        await pilot.press("ctrl+p")
        await pilot.press(*"*snapshot-list")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, MainScreen) and table.row_count == 2,
                    what="the palette command")
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        text = str(app.screen.query_one("#help-body", Static).render())
        assert "*snapshot-cleanup" in text and "Emergency" in text
        await pilot.press("escape")
        assert isinstance(app.screen, MainScreen)


async def test_the_config_keymap_rebinds_keys_and_compress_is_the_default(tmp_path):
    """``keymap:`` rebinds by binding id (the footer, the help and the palette follow); ``compress:`` is
    the create dialog's default compression."""
    settings = Settings(compress="zstd", keymap={"new-snapshot": "ctrl+n", "help": "f1"})
    app = make_app(Workspace(conn=ConnInfo(host="127.0.0.1", port=free_port(), user="u", dbname="d"),
                             store=SnapshotStore(tmp_path / "snaps"), settings=settings), server_info=SERVER)
    async with app.run_test(size=SIZE) as pilot:
        await listed(pilot, 0)
        await pilot.press("n")
        assert isinstance(app.screen, MainScreen)  # n is no longer bound
        await pilot.press("f1")
        assert isinstance(app.screen, HelpScreen)
        text = str(app.screen.query_one("#help-body", Static).render())
        assert "ctrl+n" in text and "f1" in text
        await pilot.press("escape", "ctrl+n")
        await until(pilot, lambda: isinstance(app.screen, CreateSnapshotModal), what="the create dialog")
        chosen = [b.label.plain for b in app.screen.query(RadioButton) if b.value]
        assert "zstd (.sql.zst)" in chosen


def tree_text(screen) -> str:
    tree = screen.query_one(Tree)
    out = []

    def walk(node):
        out.append(str(node.label))
        for child in node.children:
            walk(child)
    walk(tree.root)
    return "\n".join(out)


async def test_diff_of_two_real_snapshots_shows_the_changes(pg18, db18, snapdir):
    seed_items(pg18, db18, rows=20)
    store = SnapshotStore(snapdir)
    await dump.snapshot(db18, store, "before")
    pg18.psql("CREATE TABLE extra (x int); ALTER TABLE items DROP COLUMN name; DELETE FROM items WHERE id > 15;",
              db18.dbname)
    await dump.snapshot(db18, store, "after")
    app = make_app(Workspace(conn=db18, store=store))
    async with app.run_test(size=SIZE) as pilot:
        await listed(pilot, 2)
        await pilot.press("space", "j", "d")        # mark the newest, compare with the older: order by time
        await until(pilot, lambda: isinstance(app.screen, DiffScreen), what="the diff screen")
        text = tree_text(app.screen)
        assert "+ public.extra" in text and "- public.items.name" in text
        rows = app.screen.query_one("#diff-rows", DataTable)
        cells = [[str(c) for c in rows.get_row_at(i)] for i in range(rows.row_count)]
        assert ["public.items", "20", "15", "-5"] in cells and ["public.extra", "-", "0", "+0"] in cells
        assert app.screen.result.a.endswith("_before.sql")
        await pilot.press("escape")
        assert isinstance(app.screen, MainScreen)


async def test_cleanup_dialog_deletes_only_what_was_confirmed(tmp_path):
    store = SnapshotStore(tmp_path / "snaps")
    day = NOW - dt.timedelta(days=10)
    keep_newest = write_snapshot(store, "evening", day.replace(hour=20))
    older = write_snapshot(store, "noon", day.replace(hour=12))
    oldest = write_snapshot(store, "morning", day.replace(hour=8))
    write_snapshot(store, "recent", NOW - dt.timedelta(hours=1))
    app = make_app(Workspace(conn=None, store=store), clock=lambda: NOW)
    async with app.run_test(size=SIZE) as pilot:
        await listed(pilot, 4)
        await pilot.press("c")
        await until(pilot, lambda: isinstance(app.screen, CleanupModal), what="the cleanup plan")
        plan = app.screen.query_one("#plan", DataTable)
        assert plan.row_count == 4
        assert str(plan.get_row_at(0)[0]) == "DELETE" and str(plan.get_row_at(1)[0]) == "DELETE"
        assert "delete: older snapshot of" in str(plan.get_row_at(0)[3])  # the reason column (cut to fit)
        detail = str(app.screen.query_one("#plan-detail", Static).render())  # the whole of it, under the table
        assert "superseded by" in detail and keep_newest.name in detail
        await pilot.press("space")                  # keep the first deletion after all
        assert str(plan.get_row_at(0)[0]) == "keep"
        await pilot.press("ctrl+d")
        await app.workers.wait_for_complete()
        await until(pilot, lambda: main_screen(app).query_one(SnapshotTable).row_count == 3, what="the listing")
    names = {p.name for p in store.directory.glob("*.sql")}
    assert keep_newest.name in names
    assert (older.name in names) != (oldest.name in names), "exactly one of the two was deleted"
    deleted = [json.loads(line) for line in (store.directory / "audit.log").read_text().splitlines()]
    assert [e["action"] for e in deleted] == ["delete", "cleanup"]


# -- the workflow file -----------------------------------------------------------------------------------

def test_the_shipped_workflow_builds_the_forms():
    wf = load_workflow()
    assert [op.id for op in wf.operations][:4] == ["snapshot", "restore", "list", "cleanup"]
    assert {op.palette for op in wf.operations} >= {"*snapshot", "*rollback", "*snapshot-list",
                                                    "*snapshot-cleanup", "*snapshot-diff"}
    snap = wf.operation("snapshot")
    assert snap.field("label").default == "manual"
    assert [o.value for o in snap.field("snapshot_type").options] == ["full", "schema", "clone"]
    assert [o.value for o in snap.field("compression").options] == ["none", "zstd", "gzip"]
    assert wf.operation("restore").confirm.default == "no"
    assert "command:" not in default_path().read_text().replace("`command:`", "")


@pytest.mark.parametrize("change, problem", [
    (lambda d: d["workflow"]["operations"][2].update(command="ls -1t supabase/snapshots"),
     "unknown key 'command' (shell commands are not supported"),
    (lambda d: d["workflow"]["operations"].pop(3), "the operation 'cleanup' is missing"),
    (lambda d: d["workflow"]["operations"][0]["fields"][0].update(default="bad label"),
     "field 'label' default"),
    (lambda d: d["workflow"]["operations"][0].update(action="rm_rf"), "unknown action 'rm_rf'"),
    (lambda d: d["workflow"]["operations"][1]["confirm"].update(default="maybe"), "confirm default"),
    (lambda d: d["workflow"]["operations"][0]["fields"][2]["options"].append({"label": "rar", "value": "rar"}),
     "field 'compression' must be a choice of 'none', 'gzip' and 'zstd'"),
])
def test_a_broken_workflow_file_is_one_clear_error(tmp_path, change, problem):
    data = yaml.safe_load(default_path().read_text())
    change(data)
    broken = tmp_path / "wf.yaml"
    broken.write_text(yaml.safe_dump(data))
    with pytest.raises(BadInput) as err:
        make_app(Workspace(conn=None, store=SnapshotStore(tmp_path)), workflow_path=broken)
    assert str(broken) in err.value.message and problem in err.value.message
    broken.write_text("workflow: [unclosed\n")
    with pytest.raises(BadInput, match="not valid YAML at line"):
        load_workflow(broken)
