"""Pictures of the app (pytest-textual-snapshot SVGs): the main screen and every dialog, at fixed sizes.

The input never changes: a snapshot directory written here with fixed timestamps (tiny but valid dumps and
metadata written with the engine's own ``write_meta``), a fixed clock, and a target whose server facts are
given rather than fetched, so no database is contacted and no port number can leak into a picture.
Update the baselines with ``pytest tests/test_tui_snapshots.py --snapshot-update`` after looking at them.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from textual.widgets import Input

from app.screens.messages import EngineLog, EngineProgress, EngineStep
from app.screens.operation import OperationScreen
from app.tui import make_app
from services.config import ConnInfo
from services.events import Log, Progress, Step
from services.server.catalog import ServerInfo
from services.server.restore import RestoreResult, SmokeCheck
from services.snapshots.store import Snapshot, SnapshotStore
from services.workspace import Workspace
from tests.helpers import NOW, SERVER, TARGET, seed_store, settle, until, write_snapshot

UTC = dt.UTC


@pytest.fixture(autouse=True)
def in_project(tmp_path, monkeypatch):
    """Run from a project directory so that the snapshot directory shows as the default relative path
    (a tmp path in the picture would differ on every run)."""
    monkeypatch.chdir(tmp_path)


def app_for(tmp_path: Path, conn: ConnInfo | None = TARGET, demo: bool = False, server: ServerInfo = SERVER):
    store = seed_store(Path("supabase/snapshots"))
    return make_app(Workspace(conn=conn, store=store, demo=demo), clock=lambda: NOW, server_info=server)


def go_to(label: str):
    """run_before: put the cursor on the row of ``label``."""
    async def run(pilot) -> None:
        await settle(pilot)
        table = pilot.app.screen.query_one("SnapshotTable")
        key = next(k for k in table.keys if k.endswith(f"_{label}.sql"))
        table.select_key(key)
        await pilot.pause()
    return run


@pytest.mark.parametrize("size", [(140, 40), (80, 24), (200, 50)], ids=lambda s: f"{s[0]}x{s[1]}")
def test_main_screen(snap_compare, tmp_path, size):
    """Newest first; the last 24 h in bold green; ✗ on the truncated one; ◆ on the protected one; the
    preview of the highlighted snapshot; Supabase and the server version in the header."""
    assert snap_compare(app_for(tmp_path), terminal_size=size, run_before=settle)


def test_main_screen_sandbox_with_a_mark(snap_compare, tmp_path):
    """The SANDBOX badge first in the header; one snapshot marked for diff (space), the cursor below it."""
    async def run(pilot):
        await go_to("baseline")(pilot)
        await pilot.press("space", "down")
    sandbox = ServerInfo(version="PostgreSQL 18.1", version_num=180001, current_user="postgres",
                         superuser=True, supabase=False, supabase_version=None, database="shop")
    sandbox_conn = ConnInfo(host="127.0.0.1", port=54329, user="postgres", dbname="shop", password="pw")
    app = app_for(tmp_path, conn=sandbox_conn, demo=True, server=sandbox)
    assert snap_compare(app, terminal_size=(140, 40), run_before=run)


def test_main_screen_without_database(snap_compare, tmp_path):
    """No database configured: the list still works and the header says how to configure one."""
    assert snap_compare(app_for(tmp_path, conn=None), terminal_size=(120, 30), run_before=settle)


def test_first_launch(snap_compare, tmp_path):
    """An empty snapshot directory: the table's header is laid out as for a typical row (it does not jump
    when the first snapshot comes in), and the empty table and the preview say to press n."""
    app = make_app(Workspace(conn=TARGET, store=SnapshotStore(Path("supabase/snapshots"))), clock=lambda: NOW,
                   server_info=SERVER)

    async def run(pilot):
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()
    assert snap_compare(app, terminal_size=(100, 24), run_before=run)


def test_filter(snap_compare, tmp_path):
    """/ opens the filter; rows that match neither label nor purpose are hidden."""
    async def run(pilot):
        await settle(pilot)
        await pilot.press("slash", *"prod")
    assert snap_compare(app_for(tmp_path), terminal_size=(140, 40), run_before=run)


def test_create_modal(snap_compare, tmp_path):
    """The create form from the workflow file, with the live label check failing and its suggestion."""
    async def run(pilot):
        await settle(pilot)
        await pilot.press("n", *"before RLS")
    assert snap_compare(app_for(tmp_path), terminal_size=(100, 32), run_before=run)


def test_create_modal_80x24(snap_compare, tmp_path):
    async def run(pilot):
        await settle(pilot)
        await pilot.press("n")
        await settle(pilot)
        for field in pilot.app.screen.query(Input):  # the picture, not a phase of the cursor's blink
            field.cursor_blink = False
    assert snap_compare(app_for(tmp_path), terminal_size=(80, 24), run_before=run)


@pytest.mark.parametrize("label", ["v1.0", "before-migration", "nightly"])
def test_restore_modal(snap_compare, tmp_path, label):
    """Full snapshot: metadata, verified, No focused. Schema-only: the loud warning. Truncated: refused."""
    async def run(pilot):
        await go_to(label)(pilot)
        await pilot.press("r")
        # The dialog (or the refusal) opens once the validation's lines are in the log.
        await until(pilot, lambda: len(pilot.app.screen_stack) > 1, what="the restore dialog or the refusal")
        await settle(pilot)
    assert snap_compare(app_for(tmp_path), terminal_size=(120, 40), run_before=run)


def test_delete_confirmation(snap_compare, tmp_path):
    async def run(pilot):
        await go_to("baseline")(pilot)
        await pilot.press("delete")
    assert snap_compare(app_for(tmp_path), terminal_size=(100, 30), run_before=run)


def test_help(snap_compare, tmp_path):
    async def run(pilot):
        await settle(pilot)
        await pilot.press("question_mark")
    assert snap_compare(app_for(tmp_path), terminal_size=(120, 44), run_before=run)


def test_emergency_recovery_status(snap_compare, tmp_path):
    """The emergency screen as it ends: each step's status, the recovery status and what to do next
    (rendered from a result; the pilot tests run the real rollback)."""
    async def run(pilot):
        await settle(pilot)
        store = pilot.app.ws.store
        snaps = {s.label: s for s in store.list()}
        target = TARGET.display
        op = OperationScreen("EMERGENCY ROLLBACK",
                             f"Restoring {snaps['emergency-backup'].filename} (newest valid full snapshot, "
                             f"labeled for emergencies) into {target}",
                             emergency=True, audit_path=str(store.directory / "audit.log"))
        await pilot.app.push_screen(op)
        pre = Snapshot(path=store.directory / "20241027150000_pre-rollback.sql", label="pre-rollback",
                       timestamp=NOW)
        for name, status, detail in [("choose snapshot", "ok", snaps["emergency-backup"].filename),
                                     ("pre-rollback snapshot", "ok", pre.filename),
                                     ("restore", "ok", f"{snaps['emergency-backup'].filename} committed"),
                                     ("smoke test", "ok", "all checks passed")]:
            op.post_message(EngineStep(Step(name, status, detail)))
        await pilot.pause()  # the steps' messages first, as the engine's arrive before its result
        op.finish(RestoreResult(
            snapshot=snaps["emergency-backup"], pre_snapshot=pre, duration=2.4,
            checks=[SmokeCheck("connection", True, f"connected to {target}"),
                    SmokeCheck("tables", True, "1 table (snapshot: 1)"),
                    SmokeCheck("row counts", True, "1 table, 25 rows match")]))
        await pilot.pause()
    assert snap_compare(app_for(tmp_path), terminal_size=(110, 36), run_before=run)


def test_restore_in_progress(snap_compare, tmp_path):
    """A restore under way: steps so far, the progress bar with bytes, rate and ETA, psql's output."""
    async def run(pilot):
        await settle(pilot)
        snap = {s.label: s for s in pilot.app.ws.store.list()}["v1.0"]
        op = OperationScreen(f"Restore {snap.label}", f"{snap.filename} → {TARGET.display}", emergency=False,
                             audit_path="supabase/snapshots/audit.log",
                             done={"validate": ("ok", "sha256, size and structure match")})
        await pilot.app.push_screen(op)
        for message in [EngineStep(Step("pre-rollback snapshot", "ok", "20241027150000_pre-rollback.sql")),
                        EngineStep(Step("restore", "running", snap.filename)),
                        EngineLog(Log(f"Replaying {snap.filename} into {TARGET.display} in one transaction")),
                        EngineLog(Log("psql:<stdin>:12: NOTICE:  table \"old\" does not exist, skipping",
                                      source="psql")),
                        EngineProgress(Progress("restore", 36_000_000, 120_000_000, 3.0))]:
            op.post_message(message)
        await pilot.pause()
    assert snap_compare(app_for(tmp_path), terminal_size=(110, 36), run_before=run)


def test_cleanup_dialog(snap_compare, tmp_path):
    """c: the retention plan with a reason on every row; the policy's deletions marked DELETE."""
    async def run(pilot):
        await settle(pilot)
        await pilot.press("c")
        await settle(pilot)
    store = seed_store(Path("supabase/snapshots"))
    day = NOW - dt.timedelta(days=10)
    for hour, label in ((8, "morning"), (12, "noon"), (20, "evening")):
        write_snapshot(store, label, day.replace(hour=hour), purpose="nightly job")
    write_snapshot(store, "last-month", NOW - dt.timedelta(days=40), purpose="old")
    app = make_app(Workspace(conn=TARGET, store=store), clock=lambda: NOW, server_info=SERVER)
    assert snap_compare(app, terminal_size=(140, 40), run_before=run)


def test_diff_screen(snap_compare, tmp_path):
    """space on one snapshot, d on another: schema changes as a tree, row counts as a table."""
    async def run(pilot):
        await go_to("after")(pilot)
        await pilot.press("space", "down", "d")
        await settle(pilot)
    store = SnapshotStore(Path("supabase/snapshots"))
    write_snapshot(store, "before", NOW - dt.timedelta(hours=2), rows=40)
    write_snapshot(store, "after", NOW - dt.timedelta(hours=1), rows=35, extra_ddl=(
        "CREATE TABLE public.audit (id bigint NOT NULL, at timestamp with time zone DEFAULT now());\n\n"
        "CREATE INDEX items_name_idx ON public.items USING btree (name);\n\n"))
    app = make_app(Workspace(conn=TARGET, store=store), clock=lambda: NOW, server_info=SERVER)
    assert snap_compare(app, terminal_size=(140, 40), run_before=run)
