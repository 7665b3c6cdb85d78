"""The app at 80x24 (and 60x15): the list keeps the room, footers show exactly the keys that work, the help
scrolls, snapshots are reached by number, cleanup's verdicts are visible, and errors read as words.

Pictures (SVG) of the main screen, the help scrolled, the diff and the cleanup dialog at 80x24, then Pilot
tests of each behaviour, checked the way a user sees it (rows on screen, the footer's keys, files on disk).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import html
import re
from pathlib import Path

import pytest
from textual.widgets import Footer, Static

from app.common import failure_text
from app.screens.cleanup import CleanupModal
from app.screens.confirm import ConfirmModal
from app.screens.create import CreateSnapshotModal
from app.screens.diff import DiffScreen
from app.screens.help import HelpScreen
from app.screens.main import MainScreen
from app.screens.restore import RestoreModal
from app.tui import make_app
from app.workflow import load_workflow
from services.config import Policy
from services.errors import in_words
from services.server import dump
from services.snapshots.meta import load_meta
from services.snapshots.retention import policy_text
from services.snapshots.store import SnapshotStore
from services.workspace import Workspace
from tests.helpers import NOW, SERVER, TARGET, log_text, main_screen, seed_store, settle, tamper, until, write_snapshot
from widgets.snapshot_table import SnapshotTable

UTC = dt.UTC


@pytest.fixture(autouse=True)
def in_project(tmp_path, monkeypatch):
    """The snapshot directory shows as the default relative path, the same on every run."""
    monkeypatch.chdir(tmp_path)


def many(directory: Path = Path("supabase/snapshots")) -> SnapshotStore:
    """The seed, three snapshots of one day ten days ago (two due for deletion), a dozen older ones and a
    release almost two years old (its age the widest: ``1y11mo``)."""
    store = seed_store(directory)
    day = NOW - dt.timedelta(days=10)
    for hour, label in ((8, "morning"), (12, "noon"), (20, "evening")):
        write_snapshot(store, label, day.replace(hour=hour), purpose="nightly job")
    for i in range(12):
        write_snapshot(store, f"loop-{i}", NOW - dt.timedelta(days=60 + 3 * i), purpose=f"loop {i}")
    write_snapshot(store, "v0.9", NOW - dt.timedelta(days=700), purpose="The first release, kept by its label")
    return store


def app_with(store: SnapshotStore, conn=TARGET):
    return make_app(Workspace(conn=conn, store=store), clock=lambda: NOW, server_info=SERVER)


def screen_text(app) -> str:
    return html.unescape(app.export_screenshot()).replace("\xa0", " ")


def footer_keys(app) -> dict[str, bool]:
    """The keys the active screen's own footer shows (its bindings with ``show``): key -> enabled (False:
    dimmed)."""
    assert app.screen.query_one(Footer).display  # each screen has a footer of its own
    return {key: ab.enabled for key, ab in app.screen.active_bindings.items()
            if ab.binding.show and ab.node is not app}


def visible_numbers(table: SnapshotTable) -> list[int]:
    """The list numbers of the rows on screen (line 0 is the header)."""
    out = []
    for y in range(1, table.size.height):
        text = table.render_line(y).text.split()
        if text and text[0].isdigit():
            out.append(int(text[0]))
    return out


# -- pictures at 80x24 ------------------------------------------------------------------------------------

def test_main_screen_80x24(snap_compare):
    """Ten rows of the list; compact ages (``1y11mo`` does not push Purpose off); ◆ on the labels a cleanup
    keeps; the preview under the list; the log closed to its last line."""
    assert snap_compare(app_with(many()), terminal_size=(80, 24), run_before=settle)


def test_help_scrolled_80x24(snap_compare):
    """The help scrolled to its end with the keyboard: the retention policy and the shell commands."""
    async def run(pilot):
        await settle(pilot)
        await pilot.press("question_mark", "end")
        await pilot.pause(0.5)
    assert snap_compare(app_with(many()), terminal_size=(80, 24), run_before=run)


def test_diff_screen_80x24(snap_compare):
    """The row counts under the tree, with their after and delta columns whole; the screen's own footer."""
    async def run(pilot):
        await settle(pilot)
        await pilot.press("space", "down", "d")
        await settle(pilot)
    store = SnapshotStore(Path("supabase/snapshots"))
    write_snapshot(store, "before", NOW - dt.timedelta(hours=2), rows=40)
    write_snapshot(store, "after", NOW - dt.timedelta(hours=1), rows=35, extra_ddl=(
        "CREATE TABLE public.audit (id bigint NOT NULL, at timestamp with time zone DEFAULT now());\n\n"))
    assert snap_compare(app_with(store), terminal_size=(80, 24), run_before=run)


def test_cleanup_dialog_80x24(snap_compare):
    """Time, label and reason per row; the highlighted row's whole reason under the table; ctrl+d in the
    footer."""
    async def run(pilot):
        await settle(pilot)
        await pilot.press("c")
        await settle(pilot)
    assert snap_compare(app_with(many()), terminal_size=(80, 24), run_before=run)


# -- item 2: the list has priority --------------------------------------------------------------------------

async def test_the_list_keeps_the_room_at_80x24_and_60x15():
    app = app_with(many())
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        main = app.screen
        table = main.query_one(SnapshotTable)
        assert visible_numbers(table) == list(range(1, 11))                 # ten rows at 80x24
        assert main.activity.has_class("-collapsed")
        text = screen_text(app)
        assert "Log · l opens it" in text and "v0.9" not in text              # #21 is below the fold
        await pilot.press("G")
        row = table.render_line(table.cursor_row - int(table.scroll_y) + 1).text
        assert "v0.9" in row and " 1y11mo " in row and "The first" in row     # the purpose still shows
        await pilot.press("l")                                                # the log opens, and closes
        assert not main.activity.has_class("-collapsed")
        assert main.activity.size.height > 3
        await pilot.press("l")
        assert main.activity.has_class("-collapsed") and main.activity.outer_size.height == 2
        await pilot.resize_terminal(60, 15)
        await pilot.pause()
        assert not main.query_one("#preview").display or main.query_one("#preview").size.height == 0
        assert len(visible_numbers(table)) >= 6
        assert table.highlighted_key.endswith("_v0.9.sql") and 21 in visible_numbers(table)  # still in view


async def test_progress_leads_with_percent_and_time_left():
    from app.common import progress_text
    from services.events import Progress
    text = progress_text(Progress("restore", 36_000_000, 120_000_000, 3.0))
    assert text.startswith("restoring 30%, ~7s left: 36.0 MB of 120.0 MB")
    assert progress_text(Progress("dump", 1000, None, 0.1)) == "dumping: 1.0 kB"
    # Issue 30, item 6: a dump that outgrew its estimate shows no percentage and no time left, only the truth.
    past = Progress("dump", 88_700_000, 311_300, 4.0)
    assert past.fraction is None and past.eta is None
    assert progress_text(past) == "dumping: 88.7 MB, past the ~311.3 kB estimated at 22.2 MB/s"


# -- item 4: footers tell the truth ---------------------------------------------------------------------

async def test_each_screen_shows_its_own_keys_and_q_closes_every_dialog():
    app = app_with(many())
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        assert "escape" not in footer_keys(app)
        await pilot.press("slash", *"loop")
        assert footer_keys(app).get("escape") is True
        await pilot.press("enter", "escape")
        await pilot.pause()
        assert "escape" not in footer_keys(app)                               # not stuck after the filter
        for key, dialog, own in (("n", CreateSnapshotModal, "escape"), ("c", CleanupModal, "ctrl+d"),
                                 ("question_mark", HelpScreen, "escape"), ("delete", ConfirmModal, "escape")):
            await pilot.press(key)
            await until(pilot, lambda dialog=dialog: isinstance(app.screen, dialog), what=dialog.__name__)
            await pilot.pause()
            keys = footer_keys(app)
            assert own in keys and "n" not in keys and "r" not in keys, (dialog, keys)  # not the main keys
            assert main_screen(app).query_one(Footer).visible is False                  # the one under it is hidden
            if dialog is CreateSnapshotModal:
                await pilot.press("escape")                                   # q types into the label
            else:
                await pilot.press("q")
            await until(pilot, lambda: isinstance(app.screen, MainScreen), what=f"{dialog.__name__} to close")
        await pilot.press("space", "down", "d")
        await until(pilot, lambda: isinstance(app.screen, DiffScreen), what="the diff")
        await pilot.pause()
        assert footer_keys(app) == {"escape": True, "q": True}
        await pilot.press("q")
        assert isinstance(app.screen, MainScreen)


async def test_without_a_database_the_keys_that_need_one_are_dimmed_and_the_empty_list_says_why():
    app = make_app(Workspace(conn=None, store=SnapshotStore(Path("supabase/snapshots"))), clock=lambda: NOW)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()
        keys = footer_keys(app)
        assert keys["n"] is False and keys["r"] is False and keys["E"] is False and keys["v"] is True
        text = screen_text(app)
        assert "Press n" not in text and "needs a database" in text


# -- item 3: the help scrolls from the keyboard ------------------------------------------------------------

async def test_help_scrolls_with_down_pagedown_end_and_home():
    app = app_with(many())
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("question_mark")
        await pilot.pause()
        box = app.screen.query_one("#dialog")
        assert box.max_scroll_y > 0 and box.scroll_y == 0
        await pilot.press("down")
        await until(pilot, lambda: box.scroll_y == 1, what="one line down")
        await pilot.press("pagedown")
        await until(pilot, lambda: box.scroll_y > 1, what="a page down")
        await pilot.press("end")
        await until(pilot, lambda: box.scroll_y == box.max_scroll_y, what="the end")
        assert "Quit" in screen_text(app) or "dbsage-tui snapshot --label" in screen_text(app)
        assert "dbsage-tui snapshot --label" in screen_text(app)
        await pilot.press("home")
        await until(pilot, lambda: box.scroll_y == 0, what="the top")


# -- item 9: navigation ------------------------------------------------------------------------------------

async def test_go_to_a_number_the_ends_and_filter_by_file_name_and_type():
    app = app_with(many())
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        main = app.screen
        table = main.query_one(SnapshotTable)
        number = lambda: main._by_name[table.highlighted_key]  # noqa: E731 - the highlighted row's "#"
        await pilot.press("1", "2")
        assert number() == 12 and 12 in visible_numbers(table)
        await until(pilot, lambda: "#12" in str(main.query_one("#preview-body", Static).render()),
                    what="the preview to follow")
        await pilot.press("colon", "3")
        assert number() == 3
        await pilot.pause(1.6)                                                # a pause starts a new number
        await pilot.press("5")
        assert number() == 5
        await pilot.press("9", "9")                                           # no #99: stays, and says so
        assert number() == 9 or number() == 5
        await pilot.press("G")
        assert number() == 21 and 21 in visible_numbers(table)
        await pilot.press("g")
        assert number() == 1
        await pilot.press("end")
        assert number() == 21
        await pilot.press("home")
        assert number() == 1
        # The filter matches the file name (its date) and the type.
        stamp = (NOW - dt.timedelta(days=10)).strftime("%Y%m%d")
        await pilot.press("slash", *stamp, "enter")
        assert sorted(k.split("_", 1)[1] for k in table.keys) == ["evening.sql", "morning.sql", "noon.sql"]
        await pilot.press("escape", "slash", *"schema", "enter")
        assert [k.split("_", 1)[1] for k in table.keys] == ["before-migration.sql"]
        await pilot.press("escape")
        assert table.row_count == 21


async def test_the_highlighted_row_stays_in_view_after_a_resize_and_a_cleanup():
    store = many()
    app = app_with(store)
    async with app.run_test(size=(140, 40)) as pilot:
        await settle(pilot)
        main = app.screen
        table = main.query_one(SnapshotTable)
        await pilot.press("1", "9")
        key = table.highlighted_key
        await pilot.resize_terminal(80, 24)
        await pilot.pause()
        await pilot.pause()
        assert table.highlighted_key == key and 19 in visible_numbers(table)
        await pilot.press("c")
        await until(pilot, lambda: isinstance(app.screen, CleanupModal), what="the plan")
        await pilot.press("ctrl+d")
        await until(pilot, lambda: isinstance(app.screen, MainScreen) and table.row_count < 21, what="the cleanup")
        await settle(pilot)
        shown = visible_numbers(table)
        assert main._by_name[table.highlighted_key] in shown
        assert table.highlighted_key.split("_", 1)[1] in str(main.query_one("#preview-body", Static).render())


# -- item 7: what cleanup keeps is visible ------------------------------------------------------------------

async def test_label_protection_shows_and_the_preview_tells_the_verdict():
    app = app_with(many())
    async with app.run_test(size=(140, 40)) as pilot:
        await settle(pilot)
        main = app.screen
        table = main.query_one(SnapshotTable)
        cells = {k.split("_", 1)[1]: table.get_row_at(i)[1].plain for i, k in enumerate(table.keys)}
        assert "◆" in cells["v1.0.sql"] and "◆" in cells["before-migration.sql"] and "◆" in cells["v0.9.sql"]
        assert "◆" in cells["baseline.sql"] and "◆" not in cells["nightly.sql"]
        async def preview_says(*texts: str) -> None:
            body = main.query_one("#preview-body", Static)
            await until(pilot, lambda: all(t in str(body.render()) for t in texts), what=str(texts))

        await pilot.press("2")
        await preview_says("#2", "protected (label)", "Cleanup  kept: protected label before-migration")
        day = (NOW - dt.timedelta(days=10)).strftime("%Y-%m-%d")
        rows = {k.split("_", 1)[1]: i for i, k in enumerate(table.keys, 1)}
        await pilot.pause(1.6)
        await pilot.press(*str(rows["evening.sql"]))
        await preview_says(f"#{rows['evening.sql']}", f"kept: newest of {day}")
        await pilot.pause(1.6)
        await pilot.press(*str(rows["noon.sql"]))
        await preview_says(f"#{rows['noon.sql']}", f"delete: older snapshot of {day}")


# -- item 11: words a user understands ----------------------------------------------------------------------

def test_errors_are_told_in_words_never_by_class_name(tmp_path):
    assert in_words(asyncio.CancelledError()) == "cancelled by the user"
    text, _ = failure_text(RuntimeError("the socket closed"))
    assert text.startswith("Unexpected error: the socket closed.") and "RuntimeError" not in text
    meta = tmp_path / "x.sql.meta.yaml"
    meta.write_bytes(b"label: x\x07\n")                                   # a control character: ReaderError
    with pytest.raises(ValueError) as caught:
        load_meta(meta)
    assert "Error" not in str(caught.value) and "not valid YAML" in str(caught.value)
    meta.write_bytes(b"label: \xff\xfe\n")                               # not UTF-8: UnicodeDecodeError
    with pytest.raises(ValueError) as caught:
        load_meta(meta)
    assert "Error" not in str(caught.value)


def test_help_and_create_texts_match_the_policy_and_the_benchmark():
    wf = load_workflow()
    label = wf.operation("snapshot").field("compression").label
    results = (Path(__file__).parent.parent / "bench" / "RESULTS.md").read_text()
    measured = {m["tool"]: float(m["ratio"]) for m in re.finditer(  # what the last benchmark run measured
        r"^- (?P<tool>gzip|zstd) snapshot: .*?, (?P<ratio>[\d.]+)x smaller", results, re.M)}
    assert f"zstd: about {round(measured['zstd'])}x smaller" in label, (label, measured)
    assert f"gzip: about {measured['gzip']:.1f}x" in label, (label, measured)
    assert "monthly" not in wf.operation("cleanup").help
    text = policy_text(Policy())
    assert "the last 7 days" in text and "each ISO week up to 365 days" in text and "each month beyond" in text


async def test_a_refused_restore_is_not_called_cancelled_and_escape_asks_before_stopping(pg18, db18, snapdir):
    pg18.psql("CREATE TABLE items (id int PRIMARY KEY); INSERT INTO items SELECT generate_series(1, 20);",
              db18.dbname)
    store = SnapshotStore(snapdir)
    snap = await dump.snapshot(db18, store, "tampered")
    tamper(snap.path, b"\n1\n", b"\n9\n")
    app = make_app(Workspace(conn=db18, store=store))
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: main_screen(app).query_one(SnapshotTable).row_count == 1, what="the listing")
        await pilot.press("r")
        await until(pilot, lambda: isinstance(app.screen, RestoreModal), what="the refusal")
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, MainScreen), what="the dialog to close")
        assert "Restore cancelled" not in log_text(app) and "Not restored" in log_text(app)
